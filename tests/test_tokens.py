"""Ephemeral tokens: a provider gives every connection a fresh token, so a session outlives
each token's expiry (which ends every connection it opened, resumed or not)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from google.genai import types

import statemachine
from statemachine import Ended, SettingsError, Token, TokenExpiring, TokenProviderError
from statemachine.aio.tokens import fetch
from statemachine.core.events import ConnectionLost, SetupComplete, Timer, TokenIssued
from statemachine.core.table import State
from statemachine.emulator import EmulatorSettings, LiveEmulator

from .app import SCALE, start
from .sdk import text_config
from .test_core import notices, token_session

#: connections that would live 10 min: only the tokens (5 min each) make the session move
LONG_CONNECTIONS = EmulatorSettings(time_scale=SCALE, chunk_interval=1.0)
TOKEN_LIFE = 300.0  # emulated seconds (3 s here)


class Minter:
    """A token provider as an application writes one: a new token from the service each time
    (here the emulator's `auth_tokens.create`), with the expire_time it asked for."""

    def __init__(self, emu: LiveEmulator, *, same: bool = False, fail_first: int = 0,
                 sdk_type: bool = False) -> None:
        self.emu, self.same, self.fail_first, self.sdk_type = emu, same, fail_first, sdk_type
        self.given: list[str] = []
        self.calls = 0

    async def __call__(self) -> Token | types.AuthToken:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise ConnectionRefusedError("token service unreachable")
        if self.same and self.given:
            return self.token
        name = self.emu.mint_token(expire_in=TOKEN_LIFE, uses=1)
        self.given.append(name)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=TOKEN_LIFE * SCALE)
        if self.sdk_type:  # what client.aio.auth_tokens.create returns
            return types.AuthToken(name=name, uses=1,
                                   expire_time=expires.isoformat().replace("+00:00", "Z"))
        self.token = Token(value=name, expires_at=expires)
        return self.token


def secrets_absent(records: list[dict[str, Any]], notices: list[Any], values: list[str]) -> bool:
    text = repr(records) + repr(notices)
    return not any(v in text or v.split("/")[-1] in text for v in values)


async def test_a_session_outlives_its_tokens_with_a_provider() -> None:
    """Each connection dials with a fresh token; before a token expires the session moves to a
    new connection (announced by TokenExpiring) and keeps its context; no token's expiry ever
    closes a connection, and no token reaches a record or a notice."""
    async with LiveEmulator(LONG_CONNECTIONS) as emu:
        minter = Minter(emu, sdk_type=True)
        app = await start(emu, token_provider=minter)
        await app.ask("remember this")
        await app.wait_until(lambda: len(minter.given) >= 3, within=30)
        reply = await app.ask("and now?")
        assert '"remember this"' in reply
        renewing = [n.renewing for n in app.notices if isinstance(n, TokenExpiring)]
        assert renewing and all(renewing)
        assert all(c.token is not None and c.path.endswith("Constrained")
                   for c in emu.connections)
        assert len({id(c.token) for c in emu.connections}) == len(emu.connections)
        assert not [r for r in app.records if r["name"] == "connection_lost"
                    and r["kind"] == "event" and r["cause"].get("code") == 1008]
        assert len(emu.sessions) == 1  # resumed each time: one use of the first token only
        await app.stop()
        assert secrets_absent(app.records, app.notices, minter.given)


async def test_without_a_later_token_the_application_is_warned_then_the_session_ends() -> None:
    """A provider that keeps handing out the same token buys no time: the first move finds
    that out, the application is told the session ends at the expiry, and the expiry ends it
    with what to do."""
    async with LiveEmulator(LONG_CONNECTIONS) as emu:
        minter = Minter(emu, same=True)
        app = await start(emu, token_provider=minter)
        await app.ask("hello")
        await app.wait_until(lambda: app.session.state == "terminated", within=30)
        warned = [n for n in app.notices if isinstance(n, TokenExpiring)]
        assert [n.renewing for n in warned] == [True, False]
        end = next(n for n in app.notices if isinstance(n, Ended))
        assert end.failure == "token_provider" and "expired" in end.reason, end
        with pytest.raises(statemachine.SessionTerminated, match="token provider returned"):
            await app.stop()


async def test_a_failing_provider_is_retried_and_its_error_chained() -> None:
    """The provider fails twice: the session backs off and asks again; the audit says why."""
    async with LiveEmulator(LONG_CONNECTIONS) as emu:
        minter = Minter(emu, fail_first=2)
        app = await start(emu, token_provider=minter)
        assert await app.ask("hi")
        assert minter.calls == 3
        reasons = [str(r.get("cause", {}).get("reason", "")) for r in app.records
                   if r["name"] == "connection_lost" and r["kind"] == "event"]
        assert len(reasons) == 2 and all("token provider raised" in r for r in reasons)
        await app.stop()


async def test_a_provider_is_checked_when_the_session_is_made() -> None:
    """Not callable, or with a Vertex client (ephemeral tokens are a Gemini API feature)."""
    async with LiveEmulator(LONG_CONNECTIONS) as emu:
        with pytest.raises(SettingsError, match="callable"):
            statemachine.connect(emu.client(), model="gemini-live-2.5-flash-preview",
                                 config=text_config(), token_provider="auth_tokens/x")  # type: ignore[arg-type]
        with pytest.raises(SettingsError, match="Gemini API"):
            statemachine.connect(emu.client(vertexai=True), model="gemini-live-2.5-flash-preview",
                                 config=text_config(), token_provider=lambda: "auth_tokens/x")


async def test_what_a_provider_may_return() -> None:
    """A Token, an AuthToken, a str (no expiry known); anything else, an error or no answer
    within the bound is a TokenProviderError with the cause chained."""
    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    sdk = types.AuthToken(name="auth_tokens/a", expire_time="2030-01-01T00:00:00.123456789Z")
    assert (await fetch(lambda: sdk, 1)) == Token(
        value="auth_tokens/a", expires_at=at.replace(microsecond=123456))
    assert (await fetch(lambda: "auth_tokens/b", 1)) == Token(value="auth_tokens/b")
    assert "auth_tokens" not in repr(Token(value="auth_tokens/c"))
    with pytest.raises(TokenProviderError, match="returned int"):
        await fetch(lambda: 42, 1)

    async def never() -> str:
        await asyncio.Event().wait()
        return ""

    with pytest.raises(TokenProviderError, match=r"within 0\.05s") as err:
        await fetch(never, 0.05)
    assert isinstance(err.value.__cause__, TimeoutError)


def test_a_drop_soon_after_connecting_does_not_cancel_the_next_renewal() -> None:
    """The connection drops 10 s after it opened; the resumed one dials with a fresh token
    (30 min, like every token from this provider). Its expiry must still be planned for: at
    token_lead before it the session renews, instead of warning that it ends."""
    engine, d = token_session(expires_in=1800.0)
    d.handle()
    d.tick(10.0)
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(TokenIssued(at=d.tick(), generation=2, expires_at=d.now + 1800.0))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    d.tick(1800.0 - engine.policy.limits.token_lead)
    d.fire_timer(Timer.TOKEN)
    assert [n.renewing for n in notices(d, TokenExpiring)] == [True]
    assert engine.state is State.RESUMING  # nothing in flight: it moves at once


async def test_a_drop_soon_after_connecting_live() -> None:
    """Real client and emulator: the first connection drops at once; the session resumes with
    a fresh token. Its expiry must then be renewed ahead (TokenExpiring renewing) rather than
    announced as the end and hit by the service's 1008 close."""
    from statemachine.emulator import LiveEmulator


    async with LiveEmulator(LONG_CONNECTIONS) as emu:
        minter = Minter(emu)
        app = await start(emu, token_provider=minter)
        await app.ask("hello")
        emu.connections[-1].drop()
        await app.wait_until(lambda: app.session.core.counters.resumes == 1)
        await app.wait_until(lambda: any(isinstance(n, TokenExpiring) for n in app.notices),
                             within=30)
        warned = [n.renewing for n in app.notices if isinstance(n, TokenExpiring)]
        closed_1008 = [r for r in app.records if r["name"] == "connection_lost"
                       and r["kind"] == "event" and r["cause"].get("code") == 1008]
        assert warned == [True], (warned, closed_1008)
        await app.stop()


async def test_a_blocking_provider_does_not_stall_the_event_loop() -> None:
    """An application's provider is often synchronous (`client.auth_tokens.create(...)` is a
    blocking HTTP call). While it runs, the event loop must keep going (other sessions' audio,
    timers), and the setup bound must be able to fire. Here the provider waits (at most 1 s)
    for a callback the loop was asked to run at once."""
    import asyncio
    import threading

    from statemachine.aio.tokens import fetch

    loop_ran = threading.Event()

    def provider() -> str:
        loop_ran.wait(timeout=1.0)
        return "auth_tokens/ok" if loop_ran.is_set() else "auth_tokens/loop-was-blocked"

    asyncio.get_running_loop().call_soon(loop_ran.set)
    assert (await fetch(provider, 5.0)).value == "auth_tokens/ok"


def test_the_token_client_stays_a_gemini_api_client_whatever_the_environment(
        monkeypatch: object) -> None:
    """GOOGLE_GENAI_USE_VERTEXAI in the environment must not turn the client made for an
    ephemeral token into a Vertex client (the token would go to another service)."""
    from google import genai

    from statemachine.aio import sdk

    mp: pytest.MonkeyPatch = monkeypatch  # type: ignore[assignment]
    mp.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    mp.setenv("GOOGLE_CLOUD_PROJECT", "p")
    mp.setenv("GOOGLE_CLOUD_LOCATION", "us-central1")
    base = genai.Client(api_key="AIza-x", vertexai=False)
    assert not sdk.with_token(base, "auth_tokens/abc").vertexai


async def test_a_provider_that_always_raises_is_named_not_the_service() -> None:
    """A provider with a bug (here a positional `Token(...)`, a TypeError) ends the session
    once the budget is spent with a reason that blames the provider, not the service, and the
    provider's own exception at the end of the cause chain."""
    policy = statemachine.Policy(retry=statemachine.RetryPolicy(
        per_drop_attempts=2, per_session_attempts=2, base_delay=0.01, max_delay=0.02))

    def buggy() -> Token:
        return Token("auth_tokens/x")  # type: ignore[misc]  # keyword-only: a TypeError

    async with LiveEmulator(LONG_CONNECTIONS) as emu:
        with pytest.raises(statemachine.SessionTerminated) as caught:
            async with emu.connect(config=text_config(), policy=policy, token_provider=buggy):
                pass
    message = str(caught.value)
    assert "token provider kept failing" in message and "service kept failing" not in message
    cause: BaseException | None = caught.value
    while cause is not None and not isinstance(cause, TypeError):
        cause = cause.__cause__
    assert isinstance(cause, TypeError), caught.value
