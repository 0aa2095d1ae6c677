"""`RedisStore`: handles and leases in Redis, for applications that run many workers.

Keys are `{prefix}handle:{key}` (a JSON value whose TTL is the handle's remaining validity, so
Redis forgets expired handles by itself), `{prefix}lease:{key}` (the holder, with the lease
TTL), `{prefix}owner:{key}` (the holder that acquired the lease last: the fencing token) and
`{prefix}journal:{key}` (a hash: entries `e:<seq>`, the `audio` mark, the `handoff` marker).
Every lease and journal change is one Lua script, so the owner check and the change are atomic.
Any redis-py URL works: `redis://`, `rediss://` (TLS), with user and password. Needs the
`redis` package (`pip install "gemini-live-statemachine[redis]"`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..core.persistence import JournalWrite, StoredHandle, StoredJournal
from ..errors import LeaseFenced, LeaseHeld, StoreError
from .base import JOURNAL_TTL, OWNER_TTL, Clock

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
# KEYS: lease, owner. ARGV: holder, lease ms, owner ms. Take the lease unless another holds it.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then
  return {0, current, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
return {1}
"""
# Whether ARGV[1] owns the key: nobody else holds the lease, nobody else acquired it last.
_OWNS = """
local function owns(lease, owner, holder)
  local current = redis.call('GET', lease)
  if current and current ~= holder then return false end
  local last = redis.call('GET', owner)
  return (not last) or last == holder
end
"""
# KEYS: lease, owner, journal. ARGV: holder, lease ms, owner ms, reclaim ('1': also remove the
# hand-off marker). Renew our lease, or take it again when it ran out and nobody took it since.
_RENEW = _OWNS + """
if not owns(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
if ARGV[4] == '1' then redis.call('HDEL', KEYS[3], 'handoff') end
return 1
"""
# KEYS: lease, owner, journal, handle. ARGV[1]: the change, JSON. All of it, by the owner only.
_WRITE = _OWNS + """
local c = cjson.decode(ARGV[1])
if not owns(KEYS[1], KEYS[2], c.holder) then return 0 end
redis.call('SET', KEYS[2], c.holder, 'PX', c.owner_ms)
if c.record then
  local current = redis.call('GET', KEYS[4])
  local newer = true
  if current and cjson.decode(current)['generation'] > c.generation then newer = false end
  if newer and c.record_ms > 0 then redis.call('SET', KEYS[4], c.record, 'PX', c.record_ms) end
end
if c.clear then redis.call('DEL', KEYS[3]) end
for _, seq in ipairs(c.forget) do redis.call('HDEL', KEYS[3], 'e:' .. seq) end
for _, e in ipairs(c.put) do redis.call('HSET', KEYS[3], 'e:' .. e[1], e[2]) end
if c.audio then
  if c.audio == '' then redis.call('HDEL', KEYS[3], 'audio')
  else redis.call('HSET', KEYS[3], 'audio', c.audio) end
end
if c.handoff then
  redis.call('HSET', KEYS[3], 'handoff', c.handoff)
  redis.call('DEL', KEYS[1])
else
  redis.call('HDEL', KEYS[3], 'handoff')
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], c.journal_ms) end
return 1
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
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._write = self._redis.register_script(_WRITE)
        self._release = self._redis.register_script(_RELEASE)

    def _hkey(self, key: str) -> str:
        return f"{self.prefix}handle:{key}"

    def _lkey(self, key: str) -> str:
        return f"{self.prefix}lease:{key}"

    def _okey(self, key: str) -> str:
        return f"{self.prefix}owner:{key}"

    def _jkey(self, key: str) -> str:
        return f"{self.prefix}journal:{key}"

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
        value = _encode(record)
        await self._call("save", self._save(keys=[self._hkey(key)],
                                            args=[value, record.generation, ttl_ms]))

    async def delete(self, key: str) -> None:
        await self._call("delete", self._redis.delete(self._hkey(key)))

    async def acquire(self, key: str, holder: str, ttl: float) -> None:
        result = await self._call("acquire", self._acquire(
            keys=[self._lkey(key), self._okey(key)],
            args=[holder, max(1, int(ttl * 1000)), int(OWNER_TTL * 1000)]))
        if not int(result[0]):
            raise LeaseHeld(key, str(result[1]), max(0, int(result[2])) / 1000)

    async def renew(self, key: str, holder: str, ttl: float) -> bool:
        return await self._renewing("renew", key, holder, ttl, reclaim=False)

    async def reclaim(self, key: str, holder: str, ttl: float) -> bool:
        return await self._renewing("reclaim", key, holder, ttl, reclaim=True)

    async def _renewing(self, what: str, key: str, holder: str, ttl: float, *,
                        reclaim: bool) -> bool:
        result = await self._call(what, self._renew(
            keys=[self._lkey(key), self._okey(key), self._jkey(key)],
            args=[holder, max(1, int(ttl * 1000)), int(OWNER_TTL * 1000),
                  "1" if reclaim else "0"]))
        return bool(result)

    async def write(self, key: str, holder: str, change: JournalWrite) -> None:
        record = change.record
        body: dict[str, Any] = {
            "holder": holder, "owner_ms": int(OWNER_TTL * 1000),
            "journal_ms": int(JOURNAL_TTL * 1000), "clear": change.clear,
            "forget": list(change.forget),
            "put": [[seq, entry] for seq, entry in change.put],
        }
        if record is not None:
            body["record"] = _encode(record)
            body["generation"] = record.generation
            body["record_ms"] = int((record.expires_at - self._clock()) * 1000)
        if change.audio is not None:
            body["audio"] = change.audio
        if change.hand_off is not None:
            body["handoff"] = change.hand_off
        done = await self._call("write", self._write(
            keys=[self._lkey(key), self._okey(key), self._jkey(key), self._hkey(key)],
            args=[json.dumps(body)]))
        if not int(done):
            raise LeaseFenced(key, holder)

    async def load_journal(self, key: str) -> StoredJournal:
        raw = await self._call("load_journal", self._redis.hgetall(self._jkey(key)))
        entries = sorted((int(field[2:]), value) for field, value in raw.items()
                         if field.startswith("e:"))
        return StoredJournal(entries=tuple(entries), audio=raw.get("audio"),
                             hand_off=raw.get("handoff"))

    async def release(self, key: str, holder: str) -> None:
        await self._call("release", self._release(keys=[self._lkey(key)], args=[holder]))

    async def aclose(self) -> None:
        await self._redis.aclose()


def _encode(record: StoredHandle) -> str:
    return json.dumps({"handle": record.handle, "issued_at": record.issued_at,
                       "expires_at": record.expires_at, "generation": record.generation,
                       "compressed": record.compressed})
