"""LiveSession end to end: the real google-genai client against the emulator over TLS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import attrs
import pytest
from google.genai import types

import statemachine
from statemachine import SessionTerminated, State
from statemachine.core import table
from statemachine.core.actions import (
    ContextLost,
    InputDropped,
    RepeatedReply,
    ReplyInterrupted,
    Resumed,
)
from statemachine.emulator import ConnectionPlan, EmulatorSettings, LiveEmulator
from statemachine.stores import MemoryStore

from .app import (
    FAST_ROTATION,
    SCALE,
    App,
    context_user_texts,
    fast_policy,
    open_session,
    start,
    user_texts_consumed,
)
from .sdk import MODEL, user


@pytest.fixture
async def emu() -> AsyncIterator[LiveEmulator]:
    async with LiveEmulator(FAST_ROTATION) as emulator:
        yield emulator


def no_leftovers(emu: LiveEmulator, app: App) -> None:
    """Every emulator-side socket is closed and the session's tasks are gone."""
    assert all(c.done.is_set() for c in emu.connections)
    assert not app.session._tasks and not app.session._timers


async def test_connect_turn_close(slow_emu: LiveEmulator) -> None:
    """connect -> streaming, a turn, close: receive() ends normally, nothing left running."""
    app = await start(slow_emu)
    assert app.session.state == "streaming"
    assert "Reply 1" in await app.ask("hello")
    await app.stop()
    assert app.session.state == "terminated" and app.error is None
    await asyncio.wait_for(slow_emu.connections[0].done.wait(), 5)
    no_leftovers(slow_emu, app)
    assert slow_emu.connections[0].closed_code == 1000


async def test_a_started_session_keeps_no_task_waiting_for_its_own_start_or_end(
        slow_emu: LiveEmulator) -> None:
    """start() waits for the session to be live or to end; once it returns, nothing is left
    waiting on either (a waiter for the end would live, and weigh, as long as the session)."""
    app = await start(slow_emu)
    waiting = [t for t in app.session._tasks
               if getattr(t.get_coro(), "__qualname__", "") == "Flag.wait"]
    _, pending = await asyncio.wait(waiting, timeout=1.0) if waiting else (set(), set())
    assert not pending, "a task still waits on the session's start or end"
    assert app.session.state == "streaming"
    await app.stop()


async def test_rotation_never_cuts_a_reply(emu: LiveEmulator) -> None:
    """goAway arrives mid-reply: the reply completes on the old connection, rotation follows at
    the safe point, and the next turn remembers everything."""
    # The service gives tens of seconds of notice for replies of seconds; here 3 s for the
    # rest of a 0.1 s reply, so a loaded machine's pauses (0.2-0.4 s were seen) cannot bring
    # the deadline before the safe point. The goAway comes right after the first chunk of
    # each of the first two connections' second reply: mid-reply, however slow the machine.
    emu.settings = EmulatorSettings(time_scale=SCALE, connection_lifetime=3600.0,
                                    go_away_lead=300.0, chunk_interval=2.0, chunks_per_reply=5)
    emu.plan(ConnectionPlan(go_away_in_reply=2), ConnectionPlan(go_away_in_reply=2))
    app = await start(emu)
    texts = [f"fact {i}" for i in range(6)]
    for text in texts:
        reply = await app.ask(text)
        assert reply.startswith(f'Reply {texts.index(text) + 1} to "{text}"')
        assert reply.endswith(".")  # complete, not cut
    assert app.session.core.counters.rotations == 2
    assert app.transitions().count(("safe_point", "draining", "resuming")) == 2
    assert len(emu.connections) == 3
    for conn in emu.connections[:-1]:
        sent = conn.sent
        go_away = next(i for i, m in enumerate(sent) if "goAway" in m)
        last_turn = max(i for i, m in enumerate(sent) if "serverContent" in m
                        and m["serverContent"].get("turnComplete"))
        assert "modelTurn" in sent[go_away - 1].get("serverContent", {}) and go_away < last_turn
        assert conn.closed_code == 1000  # closed by the client, before the deadline
        assert not any("modelTurn" in m.get("serverContent", {}) for m in sent[last_turn:])
    assert user_texts_consumed(emu) == {t: 1 for t in texts}
    assert context_user_texts(emu) == texts
    assert not [n for n in app.notices if isinstance(n, ReplyInterrupted)]
    await app.stop()


async def test_silent_server_after_go_away_rotates_at_deadline(slow_emu: LiveEmulator) -> None:
    """goAway mid-reply, then the server goes silent: the deadline timer rotates anyway, the
    application is told to discard the partial reply, and the turn is answered on the next one."""
    slow_emu.settings = EmulatorSettings(time_scale=SCALE, chunk_interval=10.0)
    app = await start(slow_emu)
    await app.ask("before")
    await app.session.send_client_content(turns=user("during silence"), turn_complete=True)
    await app.wait_until(lambda: bool(app.messages[-1].server_content
                                      and app.messages[-1].server_content.model_turn))
    conn = slow_emu.connections[-1]
    await conn.go_away(20.0)
    conn.silence()
    replies = await app.wait_replies(2)
    assert replies[1].startswith('Reply 2 to "during silence". I remember "before"')
    assert ("rotation_deadline", "draining", "resuming") in app.transitions()
    assert [type(n) for n in app.notices if isinstance(n, ReplyInterrupted)] == [ReplyInterrupted]
    assert context_user_texts(slow_emu) == ["before", "during silence"]
    await app.stop()


async def test_drop_mid_turn_resumes_and_replays(slow_emu: LiveEmulator) -> None:
    """An abrupt drop (1006) mid-reply: resume with the last handle, replay, answer once."""
    slow_emu.settings = EmulatorSettings(time_scale=SCALE, chunk_interval=10.0)
    app = await start(slow_emu)
    await app.ask("one")
    await app.session.send_client_content(turns=user("two"), turn_complete=True)
    await app.wait_until(lambda: bool(app.messages[-1].server_content
                                      and app.messages[-1].server_content.model_turn))
    slow_emu.connections[-1].drop()
    replies = await app.wait_replies(2)
    assert replies[1].startswith('Reply 2 to "two". I remember "one"')
    assert ("connection_lost", "streaming", "resuming") in app.transitions()
    assert context_user_texts(slow_emu) == ["one", "two"]
    assert any(isinstance(n, Resumed) and n.replayed == 1 for n in app.notices)
    await app.stop()


async def test_input_while_resuming_and_draining_is_delivered_once_in_order(
    slow_emu: LiveEmulator,
) -> None:
    """Input sent while draining and while resuming arrives exactly once, in order."""
    app = await start(slow_emu)
    await app.ask("first")
    slow_emu.plan(ConnectionPlan(setup_delay=20.0))  # the resume takes 0.2 s
    await slow_emu.connections[-1].go_away(30.0)
    await app.session.send_client_content(turns=user("while draining"), turn_complete=True)
    await app.wait_replies(2)
    slow_emu.connections[-1].drop()
    await app.wait_until(lambda: app.session.state == "resuming")
    for text in ["r1", "r2", "r3"]:
        await app.session.send_client_content(turns=user(text), turn_complete=True)
    await app.wait_replies(5)
    assert context_user_texts(slow_emu) == ["first", "while draining", "r1", "r2", "r3"]
    assert set(user_texts_consumed(slow_emu).values()) == {1}
    await app.stop()


@pytest.mark.skipif(MODEL.startswith("gemini-3"), reason="a 2.5 behaviour: 3.x tools are "
                    "non-blocking by default, so the model does not wait for the response")
async def test_pending_tool_call_is_not_cut_by_rotation(emu: LiveEmulator) -> None:
    """A goAway while a tool call is pending: rotation waits for the response and the reply."""
    # a 0.5 s goAway notice: the deadline stays well clear of the checks on a loaded machine
    emu.settings = EmulatorSettings(time_scale=SCALE, connection_lifetime=100.0,
                                    go_away_lead=50.0, chunk_interval=1.0)
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup")])]
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], tools=tools)
    app = await start(emu, config=config)
    await app.session.send_client_content(turns=user("please call lookup"), turn_complete=True)
    await app.wait_until(lambda: any(m.tool_call for m in app.messages))
    call = next(m.tool_call for m in app.messages if m.tool_call)
    await app.wait_until(lambda: app.session.state == "draining")  # goAway at 0.5 s
    await asyncio.sleep(0.1)  # and it stays draining: the call is pending
    assert app.session.state == "draining"
    fc = call.function_calls[0]  # type: ignore[index]
    await app.session.send_tool_response(function_responses=[
        types.FunctionResponse(id=fc.id, name=fc.name, response={"answer": 42})])
    replies = await app.wait_replies(1)
    assert replies[0].startswith('lookup returned {"answer": 42}')
    await app.ask("after")
    assert app.session.core.counters.rotations >= 1
    await app.stop()


@pytest.mark.skipif(MODEL.startswith("gemini-3"), reason="a 2.5 behaviour: handles only at "
                    "turn boundaries (3.x issues them mid-turn, so the reply's handle comes)")
async def test_answered_turn_without_handle_is_not_answered_twice(slow_emu: LiveEmulator) -> None:
    """The reply arrived, the covering handle did not: the resume replays input + reply as
    history, so the model does not answer again and remembers the turn."""
    slow_emu.plan(ConnectionPlan(drop_at_turn_handle=2))
    app = await start(slow_emu)
    await app.ask("alpha")
    await app.ask("beta")  # its handle never comes: the connection drops instead
    reply = await app.ask("gamma")
    assert '"alpha"; "beta"' in reply
    assert len(app.replies) == 3
    assert user_texts_consumed(slow_emu)["beta"] == 1
    assert app.session.core.counters.replayed_as_history == 1
    assert context_user_texts(slow_emu) == ["alpha", "beta", "gamma"]
    await app.stop()


async def test_repeat_policy_flags_the_second_answer(slow_emu: LiveEmulator) -> None:
    """With answered_turns="repeat" the model answers again and the application is warned."""
    import attrs
    slow_emu.plan(ConnectionPlan(drop_at_turn_handle=1))
    policy = fast_policy()
    policy = attrs.evolve(policy, replay=attrs.evolve(policy.replay, answered_turns="repeat"))
    app = await start(slow_emu, policy)
    await app.ask("alpha")
    await app.wait_replies(2)
    assert any(isinstance(n, RepeatedReply) for n in app.notices)
    assert app.session.core.counters.repeated_replies == 1
    await app.stop()


async def test_refused_resume_starts_fresh_and_says_context_lost(slow_emu: LiveEmulator) -> None:
    """A refused handle: expired, then a fresh session; the application is told to re-seed."""
    app = await start(slow_emu)
    await app.ask("remember me")
    slow_emu.refuse_resumes = True
    slow_emu.connections[-1].drop()
    await app.wait_until(lambda: app.noticed(ContextLost))
    lost = next(n for n in app.notices if isinstance(n, ContextLost))
    assert "refused the resumption handle" in lost.reason
    reply = await app.ask("who am I?")
    assert "nothing before" in reply
    assert ("setup_refused", "resuming", "expired") in app.transitions()
    assert ("restart_or_give_up", "expired", "connecting") in app.transitions()
    await app.stop()


async def test_expired_handle_starts_fresh(slow_emu: LiveEmulator) -> None:
    """A drop after the handle's validity: no resume attempt with a stale handle."""
    app = await start(slow_emu, fast_policy(handle_validity=0.1))
    await app.ask("old")
    await asyncio.sleep(0.15)
    slow_emu.connections[-1].drop()
    await app.wait_until(lambda: app.noticed(ContextLost))
    assert ("connection_lost", "streaming", "expired") in app.transitions()
    assert not any(c.resumed for c in slow_emu.connections)
    await app.stop()


async def test_unknown_model_fails_at_connect(slow_emu: LiveEmulator) -> None:
    """A fatal close at setup (1008) raises from connect with the reason, and nothing retries."""
    slow_emu.unknown_models.add("gemini-none")
    with pytest.raises(SessionTerminated) as err:
        async with open_session(slow_emu, model="gemini-none"):
            pass
    assert err.value.code == 1008 and "unknown model" in err.value.reason
    assert len(slow_emu.connections) == 1


async def test_transient_close_backs_off_then_resumes(slow_emu: LiveEmulator) -> None:
    """1011 "service unavailable" backs off, then resumes on the same session."""
    app = await start(slow_emu)
    await app.ask("one")
    await slow_emu.connections[-1].close(1011, "The service is currently unavailable.")
    assert "one" in await app.ask("two")
    lost = [r for r in app.records if r["name"] == "connection_lost" and r["kind"] == "transition"]
    assert lost[0]["cause"]["disposition"] == "backoff"
    assert any(r["cause"].get("timer") == "backoff" for r in app.records if r["kind"] == "event")
    await app.stop()


async def test_missing_setup_complete_times_out_and_retries(slow_emu: LiveEmulator) -> None:
    """No setupComplete: the session's own setup timeout (the SDK has none) retries."""
    slow_emu.plan(ConnectionPlan(no_setup=True))
    app = await start(slow_emu, fast_policy(setup_timeout=1.0))  # room for a loaded TLS setup
    assert app.session.state == "streaming"
    assert ("connection_lost", "connecting", "connecting") in app.transitions()
    assert len(slow_emu.connections) == 2
    await app.stop()


async def test_compression_detected_and_kept_across_resume(slow_emu: LiveEmulator) -> None:
    """A fall in promptTokenCount past the trigger moves to compressed; a resume returns there."""
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT],
        context_window_compression=types.ContextWindowCompressionConfig(
            trigger_tokens=100, sliding_window=types.SlidingWindow(target_tokens=50)))
    app = await start(slow_emu, config=config)
    for i in range(8):
        await app.ask(f"a fairly long message number {i} " * 2)
        if app.session.state == "compressed":
            break
    assert app.session.state == "compressed"
    slow_emu.connections[-1].drop()
    await app.ask("after drop")
    assert ("setup_complete", "resuming", "compressed") in app.transitions()
    await app.stop()


async def test_compression_on_by_default_and_can_be_turned_off(slow_emu: LiveEmulator) -> None:
    """Default: explicit SlidingWindow sent at setup. With compression off: none, and a cap."""
    app = await start(slow_emu)
    setup = slow_emu.connections[-1].received[0]["setup"]
    assert setup["context_window_compression"]["sliding_window"]["target_tokens"] > 0
    await app.stop()
    import attrs
    app = await start(slow_emu, attrs.evolve(fast_policy(), compression=False))
    assert "context_window_compression" not in slow_emu.connections[-1].received[0]["setup"]
    await app.stop()


async def test_session_cap_without_compression_starts_fresh() -> None:
    """Compression off: at the audio session cap the session expires and restarts fresh."""
    import attrs
    settings = EmulatorSettings(time_scale=SCALE, session_cap_audio=50.0, session_cap_video=20.0)
    async with LiveEmulator(settings) as emu:
        policy = attrs.evolve(fast_policy(session_cap_audio=0.4, session_cap_video=0.2),
                              compression=False)
        app = await start(emu, policy)
        await app.ask("before cap")
        await app.wait_until(lambda: app.noticed(ContextLost))
        assert ("session_cap", "streaming", "expired") in app.transitions()
        assert "nothing before" in await app.ask("after cap")
        await app.stop()


async def test_garbage_frame_is_survived(slow_emu: LiveEmulator) -> None:
    """A non-JSON frame breaks the SDK's receive; the session resumes and carries on."""
    slow_emu.plan(ConnectionPlan(garbage_after=20.0))
    app = await start(slow_emu)
    await app.ask("one")
    await app.wait_until(lambda: app.session.core.counters.resumes >= 1)
    assert '"one"' in await app.ask("two")
    assert len(slow_emu.connections) == 2
    await app.stop()


async def test_vertex_transparent_replays_by_index(slow_emu: LiveEmulator) -> None:
    """On Vertex the session uses transparent mode and replays exactly what was not consumed."""
    app = await start(slow_emu, vertex=True)
    assert slow_emu.connections[0].transparent
    await app.ask("one")
    for _ in range(3):
        await app.session.send_realtime_input(
            audio=types.Blob(data=b"\1\0" * 160, mime_type="audio/pcm;rate=16000"))
    slow_emu.connections[-1].drop()
    await app.session.send_realtime_input(audio_stream_end=True)
    await app.wait_replies(2)
    assert slow_emu.sessions[0].context.turns[-2].audio_bytes == 3 * 320
    await app.stop()


async def test_close_mid_rotation_never_reconnects(slow_emu: LiveEmulator) -> None:
    """Closing while a resume is in progress: no new connection, no task, no socket left."""
    app = await start(slow_emu)
    await app.ask("one")
    slow_emu.plan(ConnectionPlan(setup_delay=50.0))
    slow_emu.connections[-1].drop()
    await app.wait_until(lambda: app.session.state == "resuming")
    await app.stop()
    count = len(slow_emu.connections)
    await asyncio.sleep(0.6)
    assert len(slow_emu.connections) == count
    no_leftovers(slow_emu, app)
    with pytest.raises(statemachine.SessionClosed):
        await app.session.send_client_content(turns=user("late"))


async def test_cancelling_the_application_task_cleans_up(slow_emu: LiveEmulator) -> None:
    """Cancelling the task inside `async with` closes the socket and stops every task."""
    sessions: list[statemachine.LiveSession] = []
    live = asyncio.Event()

    async def application() -> None:
        async with open_session(slow_emu) as session:
            sessions.append(session)
            live.set()
            await asyncio.Event().wait()

    task = asyncio.get_running_loop().create_task(application())
    await asyncio.wait_for(live.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(slow_emu.connections[0].done.wait(), 5)
    assert sessions[0].state == "terminated"
    assert all(c.done.is_set() for c in slow_emu.connections)
    assert not sessions[0]._tasks


async def test_exception_in_application_code_cleans_up(slow_emu: LiveEmulator) -> None:
    """An exception inside `async with` propagates; the session is closed behind it."""
    sessions: list[statemachine.LiveSession] = []
    with pytest.raises(KeyError):
        async with open_session(slow_emu) as session:
            sessions.append(session)
            raise KeyError("application bug")
    await asyncio.wait_for(slow_emu.connections[0].done.wait(), 5)
    assert sessions[0].state == "terminated"
    assert all(c.done.is_set() for c in slow_emu.connections)


async def test_stale_audio_is_dropped_and_reported(slow_emu: LiveEmulator) -> None:
    """Audio older than the replay window is dropped on resume, and reported with the reason."""
    import attrs
    policy = fast_policy()
    policy = attrs.evolve(policy, replay=attrs.evolve(policy.replay, audio_staleness=0.05))
    app = await start(slow_emu, policy)
    await app.ask("one")
    for _ in range(3):
        await app.session.send_realtime_input(
            audio=types.Blob(data=b"\0\1" * 160, mime_type="audio/pcm;rate=16000"))
    await asyncio.sleep(0.1)
    slow_emu.connections[-1].drop()
    await app.wait_until(lambda: app.session.core.counters.resumes >= 1)
    drops = [n for n in app.notices if isinstance(n, InputDropped)]
    assert len(drops) == 3 and all("replay window" in d.reason for d in drops)
    await app.stop()


async def test_notices_seen_holds_the_last_ones_in_order_as_a_copy(slow_emu: LiveEmulator) -> None:
    """A resume dropping more stale chunks than `notices_seen` keeps: it holds the last
    `NOTICES_KEPT` notices the application was given, oldest first, and what is read is a copy
    (clearing it leaves the session's own as it was)."""
    from statemachine.aio.session import NOTICES_KEPT
    policy = fast_policy()
    policy = attrs.evolve(policy, replay=attrs.evolve(policy.replay, audio_staleness=0.05))
    app = await start(slow_emu, policy)
    await app.ask("one")
    for _ in range(NOTICES_KEPT + 4):
        await app.session.send_realtime_input(
            audio=types.Blob(data=b"\0\1" * 160, mime_type="audio/pcm;rate=16000"))
    await asyncio.sleep(0.1)
    slow_emu.connections[-1].drop()
    await app.wait_until(lambda: app.session.core.counters.resumes >= 1)
    await app.wait_until(lambda: sum(isinstance(n, InputDropped) for n in app.notices)
                         == NOTICES_KEPT + 4)
    seen = app.session.notices_seen
    assert list(seen) == app.notices[-NOTICES_KEPT:]
    seen.clear()
    assert list(app.session.notices_seen) == app.notices[-NOTICES_KEPT:]
    await app.stop()

async def _drive(target: State, emu: LiveEmulator) -> App | statemachine.LiveSession:
    """Make the target state's shortest path happen for real against the emulator."""
    if target in (State.IDLE, State.TERMINATED):
        records: list[dict[str, object]] = []
        session = statemachine.LiveSession(emu.client(), model="gemini-x", audit=records.append)
        if target is State.TERMINATED:
            await session.close()
        session.test_records = records  # type: ignore[attr-defined]
        return session
    if target in (State.RESUMING, State.COMPRESSED, State.EXPIRED):
        return await _from_stored_handle(target, emu)
    if target is State.HANDING_OFF:
        return await _handed_off(emu)
    app = await start(emu)
    if target is State.DRAINING:
        await app.wait_until(lambda: "draining" in app.states())  # goAway at 0.4 s
    return app


async def _handed_off(emu: LiveEmulator) -> App:
    """A live session with a store, handed off with a turn just sent: the hand-off's limit
    (1 ms) passes before the reply and its handle can come."""
    app = await start(emu, store=MemoryStore(), session_key="k")
    await app.session.send_client_content(turns=user("hello"))
    result = await app.session.hand_off(within=0.001)
    assert result.handed_off and "replayed" in result.cut, result  # what the limit cut
    return app


async def _from_stored_handle(target: State, emu: LiveEmulator) -> App:
    """A session whose key has a valid handle in the store: connect resumes it."""
    store = MemoryStore()
    first = await start(emu, store=store, session_key="k")
    await first.ask("hello")
    await first.session.flush_handle()
    await first.stop()
    saved = await store.load("k")
    assert saved is not None
    policy = fast_policy()
    if target is State.COMPRESSED:
        await store.save("k", attrs.evolve(saved, compressed=True, generation=saved.generation + 1))
    elif target is State.EXPIRED:  # valid when connecting, expired when that attempt fails
        validity = policy.limits.handle_validity
        # 1 s of validity left: enough to start resuming on a loaded machine, gone by the time
        # the resume's setup times out (1.5 s)
        await store.save("k", attrs.evolve(saved, issued_at=time.time() - validity + 1.0,
                                           generation=saved.generation + 1))
        emu.plan(ConnectionPlan(no_setup=True))
        policy = fast_policy(setup_timeout=1.5)
    app = await start(emu, policy, store=store, session_key="k")
    if target is State.EXPIRED:
        await app.wait_until(lambda: "expired" in app.states())
    return app


@pytest.mark.parametrize("target", list(State))
async def test_table_shortest_paths_end_to_end(target: State, emu: LiveEmulator) -> None:
    """Each state's shortest path from the table happens for real against the emulator, in
    order: the audit log's first transitions are exactly the path."""
    path = table.shortest_paths()[target]
    expected = [(row.trigger.value, src.value, row.dest.value) for src, row in path]
    driven = await _drive(target, emu)
    if isinstance(driven, App):
        taken = driven.transitions()
        await driven.stop()
    else:
        records = driven.test_records  # type: ignore[attr-defined]
        taken = [(r["name"], r["source"], r["dest"]) for r in records
                 if r["kind"] == "transition"]
    assert taken[: len(expected)] == expected
