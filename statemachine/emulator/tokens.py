"""Ephemeral tokens (`auth_tokens/...`) the emulator mints, like the service's `auth_tokens.create`.

A token admits connections until `expire_time`; it starts at most `uses` new sessions, and only
until `new_session_expire_time`. Resuming a session does not spend a use, but the token's expiry
ends every connection that it opened, resumed or not."""

from __future__ import annotations

import secrets

import attrs

PREFIX = "auth_tokens/"


@attrs.define(kw_only=True)
class EphemeralToken:
    name: str
    #: emulator clock times (loop time, real seconds)
    expire_at: float
    new_session_until: float
    uses_left: int

    def expired(self, now: float) -> bool:
        return now >= self.expire_at


def new_token_name() -> str:
    return PREFIX + secrets.token_urlsafe(24)
