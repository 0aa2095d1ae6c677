"""`RedisStore`: handles and leases in Redis, for applications that run many workers.

Keys are `{prefix}handle:{key}` (a JSON value whose TTL is the handle's remaining validity, so
Redis forgets expired handles by itself) and `{prefix}lease:{key}` (the holder, with the lease
TTL). Any redis-py URL works: `redis://`, `rediss://` (TLS), with user and password. Needs the
`redis` package (`pip install "gemini-live-statemachine[redis]"`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..core.persistence import StoredHandle
from ..errors import LeaseHeld, StoreError
from .base import Clock

# Atomic "update only if newer": a generation never goes backwards.
_SAVE = """
local current = redis.call('GET', KEYS[1])
if current then
  local gen = cjson.decode(current)['generation']
  if gen > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""
# Renew our lease, or take it again when it ran out and nobody took it meanwhile.
_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] or not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore:
    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "gemini-live:",
                 clock: Clock = time.time, client: Any = None, **redis_kwargs: Any) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                'RedisStore needs redis-py: pip install "gemini-live-statemachine[redis]"'
            ) from exc
        self.prefix = prefix
        self._clock = clock
        self._redis = client or aioredis.from_url(url, decode_responses=True, **redis_kwargs)
        self._errors = (aioredis.RedisError, OSError)
        self._save = self._redis.register_script(_SAVE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)

    def _hkey(self, key: str) -> str:
        return f"{self.prefix}handle:{key}"

    def _lkey(self, key: str) -> str:
        return f"{self.prefix}lease:{key}"

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except self._errors as exc:
            raise StoreError(f"Redis store ({what}): {exc}") from exc

    async def load(self, key: str) -> StoredHandle | None:
        raw = await self._call("load", self._redis.get(self._hkey(key)))
        if raw is None:
            return None
        data = json.loads(raw)
        record = StoredHandle(**data)
        return record if record.valid(self._clock()) else None

    async def save(self, key: str, record: StoredHandle) -> None:
        ttl_ms = int((record.expires_at - self._clock()) * 1000)
        if ttl_ms <= 0:
            return
        value = json.dumps({"handle": record.handle, "issued_at": record.issued_at,
                            "expires_at": record.expires_at, "generation": record.generation,
                            "compressed": record.compressed})
        await self._call("save", self._save(keys=[self._hkey(key)],
                                            args=[value, record.generation, ttl_ms]))

    async def delete(self, key: str) -> None:
        await self._call("delete", self._redis.delete(self._hkey(key)))

    async def acquire(self, key: str, holder: str, ttl: float) -> None:
        lkey = self._lkey(key)
        ttl_ms = max(1, int(ttl * 1000))
        while True:
            if await self._call("acquire", self._redis.set(lkey, holder, nx=True, px=ttl_ms)):
                return
            current = await self._call("acquire", self._redis.get(lkey))
            if current == holder:
                await self._call("acquire", self._redis.pexpire(lkey, ttl_ms))
                return
            if current is not None:
                left = await self._call("acquire", self._redis.pttl(lkey))
                raise LeaseHeld(key, current, max(0, left) / 1000)
            # it expired between SET NX and GET: try again

    async def renew(self, key: str, holder: str, ttl: float) -> bool:
        result = await self._call("renew", self._renew(
            keys=[self._lkey(key)], args=[holder, max(1, int(ttl * 1000))]))
        return bool(result)

    async def release(self, key: str, holder: str) -> None:
        await self._call("release", self._release(keys=[self._lkey(key)], args=[holder]))

    async def aclose(self) -> None:
        await self._redis.aclose()
