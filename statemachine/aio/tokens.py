"""Ephemeral tokens from the application's provider: a fresh one for every connection.

An ephemeral token's expiry ends every connection opened with it, resumed or not, so a session
outlives its first token only if later connections dial with later tokens. The session asks
the provider before each connection; the core tracks the expiry (`TokenIssued`) and moves to a
fresh token in time (`TokenExpiring`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import re
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import TokenProviderError


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)  # naive: UTC, as the service's expire_time is
    return value


def _when(value: object) -> dt.datetime | None:
    """A datetime, or an RFC 3339 time as the service writes it (up to nanoseconds, `Z`)."""
    if isinstance(value, dt.datetime) or value is None:
        return value
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(value)).replace("Z", "+00:00")
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise TokenProviderError(f"the token's expire_time {value!r} is not an RFC 3339 time"
                                 ) from exc


@attrs.frozen(kw_only=True)
class Token:
    """An ephemeral token (`auth_tokens/...`, the `name` of what `client.auth_tokens.create`
    returns) and its `expire_time` as given when it was created (None: not known, so no
    expiry is planned for)."""

    value: str = attrs.field(repr=False)
    expires_at: dt.datetime | None = attrs.field(default=None, converter=_aware)

    def seconds_left(self, now: dt.datetime | None = None) -> float | None:
        if self.expires_at is None:
            return None
        now = now or dt.datetime.now(dt.UTC)
        return (self.expires_at - now).total_seconds()


#: Called before every connection; may be a coroutine function. It returns a `Token`, what
#: google-genai's `auth_tokens.create` returns (a `types.AuthToken`: its `name` and
#: `expire_time` are read), or a plain string (a token whose expiry is not known).
TokenProvider = Callable[[], Any]


async def fetch(provider: TokenProvider, within: float) -> Token:
    """The provider's next token, waited for at most `within` seconds. A provider that is not
    a coroutine function runs in a worker thread: a blocking one (google-genai's synchronous
    `auth_tokens.create`) must not stop every session on the event loop."""
    try:
        async with asyncio.timeout(within):
            if inspect.iscoroutinefunction(provider):
                got = await provider()
            else:
                got = await asyncio.to_thread(provider)
            if inspect.isawaitable(got):
                got = await got
    except TimeoutError as exc:
        raise TokenProviderError(
            f"the token provider gave no token within {within:g}s (the setup timeout): make "
            "it answer faster, or raise Limits.setup_timeout") from exc
    except Exception as exc:
        raise TokenProviderError(
            f"the token provider raised {type(exc).__name__}: see the cause; the session "
            "retries it like a failed connection") from exc
    if isinstance(got, str):
        got = Token(value=got)
    elif not isinstance(got, Token) and isinstance(getattr(got, "name", None), str):
        # google.genai.types.AuthToken: expire_time is an RFC 3339 string
        got = Token(value=got.name, expires_at=_when(getattr(got, "expire_time", None)))
    if not isinstance(got, Token) or not got.value:
        raise TokenProviderError(
            f"the token provider returned {type(got).__name__}, not a statemachine.Token, an "
            "AuthToken or a non-empty str")
    return got
