"""A hostile service and a careless application: a server that stops reading, a second reader,
a reader cancelled by a timeout during a rotation. The session goes on; nothing hangs. Real SDK
against the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import pytest
from google.genai import types

from statemachine import ContextLost, InputDropped, LocalMisuse, ToolCallsCancelled
from statemachine.emulator import ConnectionPlan, EmulatorSettings, LiveEmulator

from .app import FAST_ROTATION, App, fast_policy, start
from .sdk import user

N = 64
#: 256 KiB of noise each (incompressible: permessage-deflate would shrink a pattern to nothing);
#: with the server's window closed the client's buffers fill after a dozen
CHUNK = os.urandom(262_144)


async def test_a_server_that_stops_reading_does_not_hold_the_rotation() -> None:
    """The server stops reading and the application's sends back up. The goAway rotation still
    happens, the backed-up input is replayed on the new connection, and close() returns."""
    settings = EmulatorSettings(time_scale=0.01, chunk_interval=1.0, track_inputs=True)
    async with LiveEmulator(settings) as emu:
        app = await start(emu, fast_policy())
        await app.ask("hello")
        old = emu.connections[-1]
        old.stop_reading()
        for i in range(N):
            await app.session.send_realtime_input(
                audio={"data": bytes([i]) + b"\x01\x02" * 4 + CHUNK,
                       "mime_type": "audio/pcm;rate=16000"})
        await app.wait_until(lambda: any(  # the writer is blocked now
            c.writer is not None and not c.outbox.empty() for c in app.session._conns.values()),
            within=20)
        await old.go_away(30)
        await app.wait_until(lambda: app.session.core.counters.rotations >= 1, within=20)
        await app.wait_until(lambda: app.session.state == "streaming", within=20)
        assert emu.connections[-1] is not old
        consumed = emu.sessions[-1].context.consumed
        await app.wait_until(
            lambda: all(f"a:{bytes([i]).hex()}0102" in "".join(consumed) for i in range(N)),
            within=20)
        assert "hello" in await app.ask("and now?")
        async with asyncio.timeout(10):  # bounded: it used to take 28 s
            await app.stop()


async def test_sends_held_back_by_a_slow_server_arrive_once_and_in_order() -> None:
    """The server stops reading for a while. The send that finds the socket full is finished by
    the connection's writer and those after it queue behind it; the application's own sends
    never wait. When the server reads again every chunk arrives once, in order, on the same
    connection."""
    async with LiveEmulator(EmulatorSettings(track_inputs=True)) as emu:
        app = await start(emu)
        await app.ask("hello")
        conn = emu.connections[-1]
        conn.stop_reading()
        for i in range(N):
            async with asyncio.timeout(5):  # would block here if the send waited for the socket
                await app.session.send_realtime_input(
                    audio={"data": bytes([i]) + b"\x01\x02" * 4 + CHUNK,
                           "mime_type": "audio/pcm;rate=16000"})
        await app.wait_until(lambda: any(  # held back now
            not c.outbox.idle for c in app.session._conns.values()), within=20)
        # the rest wait in the journal: the socket's buffer took one send past its limit, not all
        sdk = next(iter(app.session._conns.values())).sdk
        assert sdk is not None
        assert sdk._ws.transport.get_write_buffer_size() < 4 * len(CHUNK)
        conn.resume_reading()
        marks = [f"a:{bytes([i]).hex()}0102" for i in range(N)]

        def audio() -> list[str]:
            return [c for c in emu.sessions[-1].context.consumed if c.startswith("a:")]

        assert len(audio()) < N
        assert "hello" in await app.ask("and now?")  # taken in after every chunk before it
        assert [next(m for m in marks if a.startswith(m)) for a in audio()] == marks
        assert emu.connections[-1] is conn and app.session.core.counters.rotations == 0
        await app.stop()


async def test_a_second_reader_gets_local_misuse_and_the_first_goes_on(
        slow_emu: LiveEmulator) -> None:
    """A second task iterating receive() while the first waits in it gets LocalMisuse; the
    session and the first reader are untouched."""
    app = await start(slow_emu)
    await app.ask("one")

    async def second() -> None:
        async for _ in app.session.receive():
            pass

    await asyncio.sleep(0)  # the application's reader is waiting in receive()
    try:
        async with asyncio.timeout(5):
            await second()
    except LocalMisuse as exc:
        assert "another task" in str(exc)
    else:
        raise AssertionError("a second concurrent receive() was allowed")
    assert "one" in await app.ask("two")
    assert app.error is None
    await app.stop()


async def test_a_reader_cancelled_by_timeouts_during_rotations_does_not_stall_them() -> None:
    """The application wraps receive() in a short asyncio.timeout again and again while the
    connection rotates: every rotation completes and no message is lost to a cancelled read
    (each turn's reply reaches the application whole: nothing is awaited between reading a
    message and acting on it)."""
    async with LiveEmulator(FAST_ROTATION) as emu:
        from .app import open_session

        session = await open_session(emu, fast_policy()).__aenter__()
        turns = 0
        async with asyncio.timeout(60):
            while session.core.counters.rotations < 4:
                await session.send_client_content(
                    turns={"role": "user", "parts": [{"text": f"t{turns}"}]},
                    turn_complete=True)
                text, done = "", False
                while not done:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.003):
                            async for message in session.receive():
                                content = message.server_content
                                if content and content.model_turn:
                                    text += "".join(p.text or "" for p in
                                                    content.model_turn.parts or [])
                                if content and content.turn_complete:
                                    done = not content.interrupted
                                    if not done:
                                        text = ""  # cut by a rotation: replayed, comes again
                                    break
                assert text.startswith("Reply") and f'"t{turns}"' in text, text
                turns += 1
        await asyncio.sleep(0)
        assert session.state in ("streaming", "draining", "resuming")
        assert session.core.counters.resumes >= 4 or session.state == "resuming"
        await session.close()



TOOLS = [types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup")])]


async def _call_then_drop(emu: LiveEmulator, model: str) -> tuple[App, str]:
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], tools=TOOLS)
    app = await start(emu, config=config, model=model)
    await app.session.send_client_content(turns=user("please call lookup"), turn_complete=True)
    await app.wait_until(lambda: any(m.tool_call for m in app.messages))
    call = next(m.tool_call for m in app.messages if m.tool_call)
    assert call is not None and call.function_calls
    first_id = str(call.function_calls[0].id)
    await app.wait_until(lambda: first_id in app.session.core.calls.pending)
    emu.connections[-1].drop()
    await app.wait_until(lambda: app.session.core.counters.resumes >= 1)
    return app, first_id


def _responses_seen(emu: LiveEmulator, conn_index: int) -> list[str]:
    return [str(r.get("id")) for m in emu.connections[conn_index].received
            for r in (m.get("tool_response") or {}).get("function_responses") or []]


async def test_a_call_the_resumed_session_never_issued_is_cancelled_not_answered(
        slow_emu: LiveEmulator) -> None:
    """2.5 issues no handle while a call is pending: after a drop the resumed session does not
    know the call. The application sees toolCallCancellation in-band; its late response is
    dropped (never sent to a server that would close with 1007); the replayed turn makes the
    model ask again, and that call is answered normally."""
    app, first = await _call_then_drop(slow_emu, "gemini-live-2.5-flash-preview")
    await app.wait_until(lambda: app.noticed(ToolCallsCancelled))
    assert any(m.tool_call_cancellation and first in (m.tool_call_cancellation.ids or [])
               for m in app.messages)
    await app.session.send_tool_response(function_responses=[
        types.FunctionResponse(id=first, name="lookup", response={"answer": 1})])
    assert any(isinstance(n, InputDropped) and "cancelled" in n.reason for n in app.notices)
    await app.wait_until(lambda: sum(1 for m in app.messages if m.tool_call) >= 2)
    again = [m.tool_call for m in app.messages if m.tool_call][-1]
    assert again is not None and again.function_calls
    second = str(again.function_calls[0].id)
    assert second != first
    await app.session.send_tool_response(function_responses=[
        types.FunctionResponse(id=second, name="lookup", response={"answer": 2})])
    replies = await app.wait_replies(1)
    assert 'lookup returned {"answer": 2}' in replies[-1]
    assert first not in _responses_seen(slow_emu, -1)
    assert app.session.state == "streaming"
    await app.stop()


async def test_a_call_the_resumed_session_knows_waits_for_its_answer(
        slow_emu: LiveEmulator) -> None:
    """3.x issues a handle after the toolCall: the resumed session knows the call and waits
    for it; the application's response goes to the new connection, once."""
    app, first = await _call_then_drop(slow_emu, "gemini-3.1-flash-live-preview")
    assert not app.noticed(ToolCallsCancelled)
    await app.session.send_tool_response(function_responses=[
        types.FunctionResponse(id=first, name="lookup", response={"answer": 3})])
    replies = await app.wait_replies(1)
    assert 'lookup returned {"answer": 3}' in replies[-1] or "answer" in replies[-1]
    assert _responses_seen(slow_emu, -1).count(first) == 1
    await app.stop()


async def test_a_turn_dropped_with_context_lost_is_marked_in_the_stream(
        slow_emu: LiveEmulator) -> None:
    """A refused resume loses the context: the turn that waited for an answer is reported
    dropped and marked in-band (interrupted + turnComplete), so `async for` does not wait
    forever for its reply."""
    app = await start(slow_emu)
    await app.ask("remember me")
    slow_emu.connections[-1].silence()
    await app.session.send_client_content(turns=user("never answered"), turn_complete=True)
    slow_emu.refuse_resumes = True
    slow_emu.connections[-1].drop()
    await app.wait_until(lambda: app.noticed(ContextLost))
    dropped = [n for n in app.notices if isinstance(n, InputDropped) and n.turn]
    assert dropped
    await app.wait_until(lambda: sum(
        1 for m in app.messages if m.server_content and m.server_content.interrupted
        and m.server_content.turn_complete) >= 1)
    await app.stop()


async def test_secrets_echoed_by_the_server_never_reach_notices_records_or_errors(
        slow_emu: LiveEmulator) -> None:
    """A server that echoes the resumption handle and the API key in its close reason: the
    records, the notices and the exception (with its chained cause) show neither."""
    app = await start(slow_emu)
    await app.ask("hello")
    handle = app.session.core.handle
    assert handle is not None
    reason = f"bad {handle[:40]} key {slow_emu.api_key}"[:120]
    await slow_emu.connections[-1].close(1007, reason)  # fatal on a live connection
    await app.wait_until(lambda: app.session.state == "terminated")
    text = repr(app.records) + repr(app.notices) + repr(app.error) + repr(
        app.error.__cause__ if app.error else None)
    assert slow_emu.api_key not in text
    assert handle[:40] not in text
    assert "[api key]" in text
    await app.session.close()


async def test_websockets_debug_logs_never_show_the_key_or_a_handle(
        slow_emu: LiveEmulator, caplog: pytest.LogCaptureFixture) -> None:
    """With every logger at DEBUG, websockets' own lines for the library's connections hide
    the x-goog-api-key header and the handles in frames."""
    caplog.set_level(logging.DEBUG)
    app = await start(slow_emu)
    await app.ask("hello")
    handle = app.session.core.handle
    await app.stop()
    # the client's side (the emulator's own server logger is the test's server, not ours)
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if not r.name.startswith("websockets.server"))
    assert "x-goog-api-key" in logged.lower()  # the header line is there, its value is not
    assert slow_emu.api_key not in logged
    assert handle is not None and handle not in logged


@pytest.mark.parametrize("code", [1007, 1008])
async def test_a_refused_resume_starts_fresh_and_a_second_refusal_is_fatal(
        slow_emu: LiveEmulator, code: int) -> None:
    """1007 or 1008 at setup on a resume of a session that worked: the handle was refused,
    a fresh session starts (ContextLost); only when that one is refused too does the
    session end, with the fatal error."""
    app = await start(slow_emu)
    await app.ask("hello")
    slow_emu.plan(ConnectionPlan(refuse_resume=code))
    slow_emu.connections[-1].drop()
    await app.wait_until(lambda: app.noticed(ContextLost))
    assert ("setup_refused", "resuming", "expired") in app.transitions()
    assert "hello" not in await app.ask("again")
    await app.stop()


@pytest.mark.parametrize("kind", ["text", "array", "binary", "oversized"])
@pytest.mark.parametrize("reader", ["application", "background"])
async def test_a_malformed_frame_ends_in_a_resume(slow_emu: LiveEmulator, kind: str,
                                                  reader: str) -> None:
    """Not JSON, JSON that is not an object, bytes that are not text, a frame over the size
    limit: the connection is dropped and the session resumes, whichever task was reading,
    with no AttributeError from inside the library."""
    app = await start(slow_emu)
    await app.ask("before")
    if reader == "background":  # the application is away: the background reader meets it
        app._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app._task
    await slow_emu.connections[-1].send_garbage(kind)
    await app.wait_until(lambda: app.session.core.counters.resumes >= 1, within=20)
    if reader == "background":
        app.restart_receiving()
    assert "before" in await app.ask("after")
    assert app.error is None
    causes = [r["cause"] for r in app.records
              if r["kind"] == "event" and r["name"] == "connection_lost"]
    assert [c["failure"] for c in causes] in (["malformed"], ["closed"])  # oversized: 1009
    assert all(c["reason"].startswith("malformed server frame") for c in causes
               if c["failure"] == "malformed")
    await app.stop()

