"""The promise at its edges (issue 23): an application callback that raises is the
application's error, never the network's; every cut reply or input that will not complete is
marked in-band before anything later; odd `timeLeft` values; the goAway margin learned from
the reconnect time; a server that refuses resumes while it holds the old socket. Real SDK
against the emulator."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest
from google.genai import types

import statemachine
from statemachine import (
    CallbackError,
    ContextLost,
    Ended,
    InputDropped,
    Notice,
    ReplyInterrupted,
    Resumed,
    SessionTerminated,
)
from statemachine.emulator import EmulatorSettings, LiveEmulator
from statemachine.testing import Trace

from .app import App, fast_policy
from .sdk import MODEL, user


class AppBug(Exception):
    """What the application's own callback raises."""


def _open(emu: LiveEmulator, trace: Trace, **kw: Any) -> statemachine.LiveSession:
    kw.setdefault("policy", fast_policy())
    kw.setdefault("audit", trace.record)
    kw.setdefault("on_notice", trace.notice)
    return statemachine.connect(
        emu.client(**statemachine.websocket_args()), model=MODEL,
        config=types.LiveConnectConfig(response_modalities=[types.Modality.TEXT]), **kw)


class _Unretrieved:
    """Collects what asyncio reports through the loop's exception handler ("Task exception
    was never retrieved" and the like)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._loop = asyncio.get_running_loop()
        self._before = self._loop.get_exception_handler()
        self._loop.set_exception_handler(lambda _loop, context: self.seen.append(context))

    def done(self) -> list[str]:
        gc.collect()  # an unretrieved task exception is reported when the task is collected
        self._loop.set_exception_handler(self._before)
        return [str(c.get("message")) for c in self.seen]


async def _raising_callback_ends_the_session(
        make: Callable[[Trace, Callable[[Any], None]], dict[str, Any]],
        trigger: Callable[[Any], bool], name: str) -> None:
    """A session whose callback `name` raises on the first argument `trigger` accepts, after a
    dropped connection resumed: receive() raises CallbackError at once with the application's
    exception chained; nothing more is resumed or retried, and nothing blames the network."""
    unretrieved = _Unretrieved()
    settings = EmulatorSettings(time_scale=0.01, chunk_interval=1.0)
    async with LiveEmulator(settings) as emu:
        trace = Trace()
        raised: list[AppBug] = []

        def bad(arg: Any) -> None:
            if trigger(arg) and not raised:
                raised.append(AppBug(f"bug in the application's {name}"))
                raise raised[0]

        session = await _open(emu, trace, **make(trace, bad)).__aenter__()
        app = App(session, trace)
        trace.on_change = app.changed
        assert "hello" in await app.ask("hello")
        emu.connections[-1].drop()
        await app.wait_until(lambda: session.state == "terminated", within=10)
        async with asyncio.timeout(5):  # at once, never a hang
            with pytest.raises(CallbackError) as caught:
                await app._task
        error = caught.value
        assert error.__cause__ is raised[0]
        assert error.callback == name
        assert not isinstance(error, SessionTerminated | ConnectionError)
        text = str(error)
        assert name in text and "AppBug" in text
        assert "connect()" not in text and "network" not in text.split(";")[0]
        core = session.core
        assert core.counters.resumes <= 1 and core.counters.fresh_restarts == 0
        assert core.budget.drop_attempts <= 1  # the drop's own resume only
        assert len(emu.connections) <= 2  # nothing reconnected after the callback raised
        assert not trace.notices_of(ContextLost)
        end = trace.notices_of(Ended)[-1]
        assert end.failure == "callback" and not end.by_application
        with pytest.raises(statemachine.SessionClosed):
            await session.send_client_content(turns=user("after"), turn_complete=True)
        async with asyncio.timeout(5):
            await session.close()  # quiet: the error was the application's, and it has it
    assert not unretrieved.done()


async def test_an_on_notice_that_raises_ends_the_session_with_its_own_error() -> None:
    await _raising_callback_ends_the_session(
        lambda trace, bad: {"on_notice": lambda n: (trace.notice(n), bad(n))},
        lambda notice: isinstance(notice, Resumed), "on_notice")


async def test_an_on_event_that_raises_ends_the_session_with_its_own_error() -> None:
    await _raising_callback_ends_the_session(
        lambda trace, bad: {"on_event": bad},
        lambda record: record["name"] == "connection_lost", "on_event")


async def test_an_audit_sink_that_raises_ends_the_session_with_its_own_error() -> None:
    def make(trace: Trace, bad: Callable[[Any], None]) -> dict[str, Any]:
        def audit(record: Any) -> None:
            trace.record(record)
            bad(record)
        return {"audit": audit}

    await _raising_callback_ends_the_session(
        make, lambda record: record["name"] == "setup_complete" and record["gen"] == 2, "audit")


async def test_a_callback_that_raises_at_start_fails_the_start_with_its_error() -> None:
    """A callback raising on the very first record: entering the session raises CallbackError
    (never a connection error), and no connection is retried."""
    async with LiveEmulator(EmulatorSettings(time_scale=0.01)) as emu:
        def on_event(_record: Any) -> None:
            raise AppBug("first record")

        with pytest.raises(CallbackError) as caught:
            async with _open(emu, Trace(), on_event=on_event):
                pass
        assert isinstance(caught.value.__cause__, AppBug)
        assert len(emu.connections) <= 1
