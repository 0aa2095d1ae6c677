"""The promise at its edges (issue 23): an application callback that raises is the
application's error, never the network's; every cut reply or input that will not complete is
marked in-band before anything later; odd `timeLeft` values; the goAway margin learned from
the reconnect time; a server that refuses resumes while it holds the old socket. Real SDK
against the emulator."""

from __future__ import annotations

import asyncio
import gc
import itertools
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


# -- 2. every cut reply, every input that will not complete, is marked before anything later --

M25 = "gemini-live-2.5-flash-preview"  # handles at turn boundaries only: none mid-reply


def _marker(m: types.LiveServerMessage) -> bool:
    sc = m.server_content
    return bool(sc and sc.interrupted and sc.turn_complete)


def _chunk(m: types.LiveServerMessage) -> bool:
    sc = m.server_content
    return bool(sc and sc.model_turn)


async def _start(emu: LiveEmulator, model: str = M25, **kw: Any) -> tuple[App, list[Any]]:
    """An App whose timeline holds notices (as on_notice sees them) and messages (as read)."""
    trace = Trace()
    timeline: list[Any] = []

    def on_notice(notice: Notice) -> None:
        timeline.append(notice)
        trace.notice(notice)

    session = await statemachine.connect(
        emu.client(**statemachine.websocket_args()), model=model,
        config=kw.pop("config", types.LiveConnectConfig(
            response_modalities=[types.Modality.TEXT])),
        policy=kw.pop("policy", fast_policy()), audit=trace.record, on_notice=on_notice,
        **kw).__aenter__()
    app = App(session, trace)
    trace.on_change = app.changed
    return app, timeline


@pytest.mark.parametrize("cut", ["drop", "go_away_now"])
async def test_a_first_turn_cut_before_any_handle_is_marked_before_the_fresh_reply(
        cut: str) -> None:
    """The first turn's reply is cut before the server issued any handle (a drop; a goAway
    with no time left): the fresh session answers the turn anew. The stream shows the partial
    reply, then interrupted + turnComplete, then the new reply; ReplyInterrupted came first.
    A reader that follows the README (discard a reply marked interrupted) gets the answer
    once, whole."""
    settings = EmulatorSettings(time_scale=0.01, chunk_interval=2.0, chunks_per_reply=20,
                                handle_on_setup=False)
    async with LiveEmulator(settings) as emu:
        app, _ = await _start(emu)
        await app.session.send_client_content(turns=user("first"), turn_complete=True)
        await app.wait_until(lambda: any(_chunk(m) for m in app.messages))
        assert app.session.core.handle is None
        if cut == "drop":
            emu.connections[-1].drop()
        else:
            await emu.connections[-1].send({"goAway": {"timeLeft": "0s"}})
        replies = await app.wait_replies(1, within=20)
        assert app.session.core.counters.fresh_restarts == 1
        cut_at = next(i for i, m in enumerate(app.messages) if _marker(m))
        assert any(_chunk(m) for m in app.messages[:cut_at])  # the partial reply, then
        assert not any(m.server_content and m.server_content.turn_complete
                       for m in app.messages[:cut_at])  # ... no turn end in between
        assert app.trace.notices_of(ReplyInterrupted)
        assert replies[0].count('"first"') == 1 and replies[0].startswith("Reply"), replies
        assert not app.trace.notices_of(ContextLost)  # the server held nothing yet
        await app.stop()


async def test_a_dropped_response_to_a_cancelled_call_never_marks_the_next_reply() -> None:
    """After a drop, a call the resumed session never issued is cancelled in-band (with the
    cut marked there). The application's late response to it, sent while the next reply is
    under way, is dropped with InputDropped, and no interrupted + turnComplete lands inside
    that reply: the good answer is not discarded."""
    settings = EmulatorSettings(time_scale=0.01, chunk_interval=2.0, chunks_per_reply=10)
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup")])]
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], tools=tools)
    async with LiveEmulator(settings) as emu:
        app, _ = await _start(emu, config=config)
        await app.session.send_client_content(turns=user("please call lookup"),
                                              turn_complete=True)
        await app.wait_until(lambda: any(m.tool_call for m in app.messages))
        first = str(next(m.tool_call for m in app.messages if m.tool_call)
                    .function_calls[0].id)  # type: ignore[union-attr, index]
        await app.wait_until(lambda: first in app.session.core.calls.pending)
        emu.connections[-1].drop()
        # the replayed turn: the model asks again, on the new connection
        await app.wait_until(lambda: sum(1 for m in app.messages if m.tool_call) >= 2)
        calls = [m for m in app.messages if m.tool_call]
        second = str(calls[-1].tool_call.function_calls[0].id)  # type: ignore[union-attr, index]
        start = app.messages.index(calls[-1])
        await app.session.send_tool_response(function_responses=[
            types.FunctionResponse(id=first, name="lookup", response={"answer": 1})])
        await app.session.send_tool_response(function_responses=[
            types.FunctionResponse(id=second, name="lookup", response={"answer": 2})])
        await app.wait_until(lambda: any(
            m.server_content and m.server_content.turn_complete
            and not m.server_content.interrupted for m in app.messages[start:]), within=20)
        dropped = [n for n in app.trace.notices_of(InputDropped) if "cancelled" in n.reason]
        assert dropped and not dropped[0].in_band
        assert not any(_marker(m) for m in app.messages[start:])
        assert 'lookup returned {"answer": 2}' in app.replies[-1]
        await app.stop()


async def test_a_turn_in_flight_when_the_session_ends_fatally_is_marked_and_dropped() -> None:
    """A quota close while a reply streams ends the session: the turn in flight is reported
    (ReplyInterrupted, InputDropped for its input) and marked in-band once, before the end;
    a turn still unsent is reported and marked too."""
    settings = EmulatorSettings(time_scale=0.01, chunk_interval=2.0, chunks_per_reply=20)
    async with LiveEmulator(settings) as emu:
        app, timeline = await _start(emu)
        await app.session.send_client_content(turns=user("in flight"), turn_complete=True)
        await app.wait_until(lambda: any(_chunk(m) for m in app.messages))
        seq = next(e.seq for e in app.session.core.journal if e.trigger)
        await emu.connections[-1].exhaust("quota")
        await app.wait_until(lambda: app.session.state == "terminated")
        with pytest.raises(SessionTerminated):
            async with asyncio.timeout(5):
                await app._task
        dropped = [n for n in app.trace.notices_of(InputDropped) if n.seq == seq]
        assert dropped and dropped[0].turn, app.trace.notices
        kinds = [type(n).__name__ for n in timeline]
        assert kinds.index("ReplyInterrupted") < kinds.index("Ended")
        last_chunk = max(i for i, m in enumerate(app.messages) if _chunk(m))
        assert sum(1 for m in app.messages[last_chunk:] if _marker(m)) == 1
        await app.session.close()


# -- 4. odd timeLeft values ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("-5s", 0.0), ("0s", 0.0), ("-0.001s", 0.0), ("0.5s", 0.5), ("nans", None), ("infs", None),
    ("soon", None), (None, None)])
def test_time_left_zero_or_negative_means_now(text: str | None, seconds: float | None) -> None:
    from statemachine.core.wire import parse_time_left

    assert parse_time_left(text) == seconds


@pytest.mark.parametrize("time_left", ["-5s", "0s"])
async def test_a_go_away_with_negative_time_left_rotates_now(time_left: str) -> None:
    """A goAway whose timeLeft is zero or negative: the server has given up already. The
    session rotates at once (the reply in flight is cut and marked), rather than planning with
    its own notice (`go_away_lead`, here 5 s) and finishing the reply first."""
    settings = EmulatorSettings(time_scale=0.01, chunk_interval=2.0, chunks_per_reply=20)
    async with LiveEmulator(settings) as emu:
        app, _ = await _start(emu, policy=fast_policy(go_away_lead=5.0))
        await app.ask("hello")
        await app.session.send_client_content(turns=user("long"), turn_complete=True)
        await app.wait_until(lambda: sum(1 for m in app.messages if _chunk(m)) >= 25)
        await emu.connections[-1].send({"goAway": {"timeLeft": time_left}})
        await app.wait_until(lambda: app.session.core.counters.rotations >= 1, within=10)
        assert ("rotation_deadline", "draining", "resuming") in app.transitions()
        assert app.trace.notices_of(ReplyInterrupted)
        replies = await app.wait_replies(2, within=20)
        assert replies[1].count('"long"') == 1
        await app.stop()


# -- 3. the goAway margin is learned from the reconnect time -----------------------------------


def test_the_margin_is_learned_from_reconnects_between_floor_and_cap() -> None:
    """Before any measurement the cap (`go_away_margin`); then 3x the slowest recent reconnect,
    never below the floor nor above the cap (a floor set above the cap yields to it)."""
    from statemachine import Limits
    from statemachine.core.margin import ReconnectTimes

    limits = Limits()
    times = ReconnectTimes()
    assert times.margin(limits) == limits.go_away_margin == 2.0
    times.add(0.01)
    assert times.margin(limits) == limits.go_away_margin_floor == 0.25
    times.add(0.2)
    assert times.margin(limits) == pytest.approx(0.6)
    times.add(5.0)
    assert times.margin(limits) == 2.0
    for _ in range(8):  # the slow one is forgotten after 8 newer
        times.add(0.01)
    assert times.margin(limits) == 0.25
    assert times.margin(Limits(go_away_margin=0.1)) == 0.1


async def test_a_short_go_away_waits_for_the_safe_point_it_has_time_for() -> None:
    """Real time, the default policy: a goAway with 1 s of notice (less than the old fixed
    2 s margin) while a reply has about 0.4 s to go. Reconnects here take milliseconds, so the
    learned margin leaves time: the reply finishes, the session rotates at the safe point, and
    nothing is cut or answered twice."""
    settings = EmulatorSettings(chunk_interval=0.05, chunks_per_reply=10)
    async with LiveEmulator(settings) as emu:
        app, _ = await _start(emu, policy=statemachine.Policy())
        await app.ask("hello")
        margin = app.session.core.go_away_margin
        assert margin < 1.0, margin  # learned from the first connection's setup
        await app.session.send_client_content(turns=user("long"), turn_complete=True)
        await app.wait_until(lambda: sum(1 for m in app.messages if _chunk(m)) >= 12)
        await emu.connections[-1].go_away(1.0)
        await app.wait_until(lambda: app.session.core.counters.rotations >= 1, within=10)
        assert ("safe_point", "draining", "resuming") in app.transitions()
        assert not app.trace.notices_of(ReplyInterrupted)
        replies = await app.wait_replies(2)
        assert replies[1].count('"long"') == 1
        assert not any(_marker(m) for m in app.messages)
        assert "long" in await app.ask("again")
        await app.stop()


def _text(messages: list[types.LiveServerMessage]) -> str:
    return "".join(p.text or "" for m in messages if _chunk(m)
                   for p in m.server_content.model_turn.parts or [])  # type: ignore[union-attr]


@pytest.mark.parametrize("model", [M25, "gemini-3.1-flash-live-preview"])
@pytest.mark.parametrize("surface", ["connect", "instrument"])
async def test_a_reply_that_must_be_cut_shows_interrupted_before_the_replayed_reply(
        surface: str, model: str) -> None:
    """A goAway with less notice than the reply needs: the reply is cut at the margin. A reader
    that stays in receive() (a framework, under `instrument()`, or an application on
    `connect()`) sees the partial reply, then interrupted + turnComplete, then the replayed
    reply whole: nothing of the old connection comes after the marker."""
    settings = EmulatorSettings(chunk_interval=0.03, chunks_per_reply=40)
    async with LiveEmulator(settings) as emu:
        messages: list[types.LiveServerMessage] = []
        changed = asyncio.Event()
        if surface == "instrument":
            statemachine.instrument(policy=statemachine.Policy(), audit=lambda record: None)
            try:
                opened = emu.client().aio.live.connect(
                    model=model, config=types.LiveConnectConfig(
                        response_modalities=[types.Modality.TEXT]))
                session: Any = await opened.__aenter__()
            finally:
                statemachine.uninstrument()
        else:
            opened = statemachine.connect(
                emu.client(**statemachine.websocket_args()), model=model,
                config=types.LiveConnectConfig(response_modalities=[types.Modality.TEXT]),
                policy=statemachine.Policy())
            session = await opened.__aenter__()

        async def read() -> None:
            while True:  # the SDK habit: receive() per turn, entered again and again
                async for message in session.receive():
                    messages.append(message)
                    changed.set()

        async def until(predicate: Callable[[], bool]) -> None:
            async with asyncio.timeout(20):
                while not predicate():
                    changed.clear()
                    await changed.wait()

        reader = asyncio.get_running_loop().create_task(read())
        await session.send_client_content(turns=user("hello"), turn_complete=True)
        await until(lambda: any(m.server_content and m.server_content.turn_complete
                                for m in messages))
        await session.send_client_content(turns=user("long"), turn_complete=True)
        start = len(messages)
        await until(lambda: sum(1 for m in messages[start:] if _chunk(m)) >= 3)
        await emu.connections[-1].go_away(0.3)
        await until(lambda: any(_marker(m) for m in messages[start:]))
        cut = next(i for i in range(start, len(messages)) if _marker(messages[i]))
        await until(lambda: any(m.server_content and m.server_content.turn_complete
                                for m in messages[cut + 1:]))
        end = next(i for i in range(cut + 1, len(messages))
                   if messages[i].server_content and messages[i].server_content.turn_complete)
        replayed = _text(messages[cut + 1:end + 1])
        assert replayed.startswith("Reply") and replayed.count('"long"') == 1, replayed[:80]
        assert not messages[end].server_content.interrupted  # type: ignore[union-attr]
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await opened.__aexit__(None, None, None)


# -- 5. a server that refuses resumes while it holds the old socket -----------------------------


def _time_in_resuming(trace: Trace) -> float:
    """The longest stretch the session spent in `resuming`, from the audit records."""
    longest, since = 0.0, None
    for record in trace.records:
        if record["kind"] != "transition":
            continue
        if record["dest"] == "resuming" and since is None:
            since = record["mono"]
        elif record["dest"] != "resuming" and since is not None:
            longest, since = max(longest, record["mono"] - since), None
    return longest


async def test_resumes_refused_for_an_old_socket_give_up_within_the_bound() -> None:
    """The defaults, in real time: the server never saw the old socket close and refuses every
    resume with 1011 for 30 s. The session tries again without spending its retry budget,
    says so each time (ResumeWaiting), and gives the handle up after
    `RetryPolicy.old_socket_wait` (5 s): a fresh session (ContextLost), well under 10 s in
    `resuming`."""
    from statemachine import ResumeWaiting

    settings = EmulatorSettings(old_socket_hold=30.0)
    async with LiveEmulator(settings) as emu:
        app, _ = await _start(emu, policy=statemachine.Policy())
        await app.ask("hello")
        emu.connections[-1].drop()
        await app.wait_until(lambda: app.noticed(ContextLost), within=20)
        assert ("connection_lost", "resuming", "expired") in app.transitions()
        waits = app.trace.notices_of(ResumeWaiting)
        assert waits and emu.old_socket_refusals == len(waits) + 1
        assert [w.attempt for w in waits] == list(range(1, len(waits) + 1))
        assert waits[0].gives_up_in == pytest.approx(5.0)
        assert all(a.gives_up_in > b.gives_up_in for a, b in itertools.pairwise(waits))
        wait = statemachine.Policy().retry.old_socket_wait
        assert wait <= _time_in_resuming(app.trace) < 10.0
        # the budget counts the drop's first resume and the fresh session, not the refusals
        assert len(app.session.core.budget.started) <= 2 < emu.old_socket_refusals
        assert "old socket" in app.trace.notices_of(ContextLost)[0].reason
        assert "hello" not in await app.ask("again")  # a fresh session, as ContextLost says
        await app.stop()


async def test_an_old_socket_released_within_the_bound_resumes_the_session() -> None:
    """The server lets the old socket go after a while shorter than the bound: the session
    resumes with its context, no budget spent, no context lost."""
    from statemachine import ResumeWaiting

    settings = EmulatorSettings(time_scale=0.01, chunk_interval=1.0, old_socket_hold=100.0)
    async with LiveEmulator(settings) as emu:
        # the socket is held 1 s; the policy waits up to 4 s
        app, _ = await _start(emu, policy=attrs_evolve_retry(fast_policy(), old_socket_wait=4.0))
        await app.ask("hello")
        emu.connections[-1].drop()
        await app.wait_until(lambda: app.session.core.counters.resumes >= 1, within=20)
        assert app.trace.notices_of(ResumeWaiting)
        assert not app.noticed(ContextLost)
        # only the drop's own first resume counts against the budgets, not the refusals
        assert len(app.session.core.budget.started) <= 1 < emu.old_socket_refusals
        assert "hello" in await app.ask("again")
        await app.stop()


def attrs_evolve_retry(policy: statemachine.Policy, **changes: Any) -> statemachine.Policy:
    import attrs

    return attrs.evolve(policy, retry=attrs.evolve(policy.retry, **changes))


def test_the_old_socket_wait_is_the_policy_s_and_bounded() -> None:
    """Sans-I/O: 1011 "old socket" at setup on a resume spends no budget, announces the next
    attempt (ResumeWaiting) and arms a backoff no longer than what is left of
    `old_socket_wait`; a refusal once it ran out takes the guarded row to `expired`, and the
    policy starts a fresh session. A live 1011 is still a transient fault."""
    import random

    from statemachine import Lifecycle, ResumeWaiting
    from statemachine.core.actions import ArmTimer
    from statemachine.core.events import ConnectionLost, Timer
    from statemachine.core.table import State

    from .drivers import Driver

    engine = Lifecycle(rng=random.Random(1), audit=lambda record: None)
    d = Driver(engine)
    d.feed(statemachine.core.events.Connect(at=d.tick()))
    d.feed(statemachine.core.events.SetupComplete(at=d.tick(), generation=d.gen))
    d.handle()
    d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1006))
    assert engine.state is State.RESUMING
    started = list(engine.budget.started)
    wait = engine.policy.retry.old_socket_wait
    first = d.now
    for _ in range(50):
        out = d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1011, during_setup=True,
                                    reason="Cannot resume: the old socket is still open."))
        if engine.state is not State.RESUMING:
            break
        notice = next(a.notice for a in out if isinstance(getattr(a, "notice", None),
                                                          ResumeWaiting))
        arm = next(a for a in out if isinstance(a, ArmTimer) and a.timer is Timer.BACKOFF)
        assert arm.delay <= notice.gives_up_in + 1e-3 and notice.gives_up_in <= wait
        d.now += arm.delay
        d.fire_timer(Timer.BACKOFF)
    assert engine.state is State.CONNECTING  # expired, then a fresh session
    assert engine.counters.fresh_restarts == 1
    assert len(engine.budget.started) == len(started) + 1  # the fresh session only
    assert d.now - first <= wait + 0.1


async def test_under_instrument_a_raising_callback_reaches_the_framework_as_its_own() -> None:
    """Under `instrument()` the framework's receive() gets CallbackError (the callback's
    exception chained), not the APIError of a closed connection that its reconnect logic would
    retry; nothing reconnects."""
    def on_notice(notice: Notice) -> None:
        if isinstance(notice, Resumed):
            raise AppBug("on_notice bug")

    async with LiveEmulator(EmulatorSettings(time_scale=0.01, chunk_interval=1.0)) as emu:
        statemachine.instrument(policy=fast_policy(), audit=lambda record: None,
                                on_notice=on_notice)
        try:
            opened = emu.client().aio.live.connect(
                model=M25, config=types.LiveConnectConfig(
                    response_modalities=[types.Modality.TEXT]))
            session: Any = await opened.__aenter__()
        finally:
            statemachine.uninstrument()
        await session.send_client_content(turns=user("hello"), turn_complete=True)
        async for _ in session.receive():
            pass
        emu.connections[-1].drop()
        with pytest.raises(CallbackError) as caught:
            async with asyncio.timeout(10):
                while True:
                    async for _ in session.receive():
                        pass
        assert isinstance(caught.value.__cause__, AppBug)
        assert len(emu.connections) == 2
        await opened.__aexit__(None, None, None)


async def test_a_store_that_raises_other_than_store_error_degrades_and_goes_on() -> None:
    """An application's own store whose save raises something other than `StoreError` (a bug
    in it): the failure is reported (`StoreDegraded`, naming the exception and the store's
    method), the session goes on in memory and the store is retried; no worker dies
    unnoticed ("Task exception was never retrieved")."""
    from statemachine import StoreDegraded
    from statemachine.stores import MemoryStore

    class BrokenStore(MemoryStore):
        async def save(self, key: str, record: Any) -> None:
            raise AppBug("the store's own bug")

    unretrieved = _Unretrieved()
    async with LiveEmulator(EmulatorSettings(time_scale=0.01, chunk_interval=1.0)) as emu:
        app, _ = await _start(emu, store=BrokenStore(), session_key="edges-broken-store")
        assert "hello" in await app.ask("hello")
        await app.wait_until(lambda: app.noticed(StoreDegraded))
        error = app.trace.notices_of(StoreDegraded)[0].error
        assert "AppBug" in error and "BrokenStore.save" in error
        assert "hello" in await app.ask("again")
        assert not await app.session.flush_handle(within=0.5)
        await app.stop()
    assert not unretrieved.done()
