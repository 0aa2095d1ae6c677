"""Mid-turn handles (3.x) and consumed indexes (Vertex): held tool responses, replies to
speech, turns racing a handle, calls a handle holds open. Each case a review found."""

from __future__ import annotations

from statemachine.core.actions import Send
from statemachine.core.events import (
    ConnectionLost,
    GoAway,
    InputKind,
    ModelOutput,
    ResumptionUpdate,
    SetupComplete,
    ToolCall,
    TurnComplete,
)
from statemachine.core.table import State

from .test_core import send, session


def test_a_held_tool_response_leaves_the_journal_once_its_turn_is_answered() -> None:
    """A tool response a mid-turn handle holds is not resent after the resume; once the
    continued turn is answered and a handle covers it, the journal must be empty and the
    session must be able to rotate at a safe point."""
    engine, d, _ = session()
    d.handle()
    send(d)  # turn A
    d.feed(ToolCall(at=d.tick(), generation=1, ids=("c1",)))
    send(d, kind=InputKind.TOOL_RESPONSE, turn_complete=False, tool_ids=("c1",))
    d.tick(1.0)  # well beyond a round trip: the handle holds the response
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="mid-1", resumable=True))
    assert all(e.held for e in engine.journal)
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = [(a.entry.kind, a.continuation) for a in d.actions
              if isinstance(a, Send) and a.generation == 2]
    assert replay == [(InputKind.CONTENT, True)]
    d.feed(ModelOutput(at=d.tick(), generation=2, text="the result"))
    d.handle()  # the continued turn completes; a handle at the boundary covers it
    assert [(e.kind, e.sent_generation, e.answered) for e in engine.journal] == []
    d.feed(GoAway(at=d.tick(), generation=2, time_left=30.0))
    assert engine.state is State.RESUMING  # a safe point: nothing in flight, nothing owed


async def test_a_held_tool_response_does_not_block_the_safe_point_live() -> None:
    """Real client, 3.x emulator: the tool response went out, the reply to it streams and a
    mid-turn handle holds both; a drop. After the continued reply and the handle after it, a
    goAway must rotate at the safe point (not wait for the deadline)."""
    from google.genai import types

    from statemachine.emulator import LiveEmulator

    from .app import start
    from .sdk import text_config
    from .test_midturn import MODEL_3, SLOW_REPLIES, chunks_seen

    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(
        name="lookup", behavior=types.Behavior.BLOCKING)])]
    async with LiveEmulator(SLOW_REPLIES) as emu:
        app = await start(emu, model=MODEL_3, config=text_config(tools=tools))
        await app.session.send_client_content(turns=[types.Content(role="user", parts=[
            types.Part(text="please call lookup")])], turn_complete=True)
        await app.wait_until(lambda: any(m.tool_call for m in app.messages))
        call = next(m.tool_call for m in app.messages if m.tool_call)
        fc = call.function_calls[0]  # type: ignore[index]
        await app.session.send_tool_response(function_responses=[
            types.FunctionResponse(id=fc.id, name=fc.name, response={"answer": 42})])
        journal = app.session.core.journal
        # the handle holds the response (it leaves the journal) and the turn (held)
        await app.wait_until(lambda: chunks_seen(app) > 0 and any(e.held for e in journal)
                             and not any(e.kind is InputKind.TOOL_RESPONSE for e in journal))
        emu.connections[-1].drop()
        await app.wait_replies(1)
        await app.wait_until(lambda: not any(e.trigger and e.sent_generation == 2
                                             for e in journal))
        await emu.connections[-1].go_away(600.0)
        await app.wait_until(lambda: app.session.core.counters.rotations == 1, within=30)
        names = [t[0] for t in app.transitions()]
        assert "safe_point" in names and "rotation_deadline" not in names, (
            names, [(e.kind, e.sent_generation, e.answered) for e in journal])
        await app.stop()


def test_vertex_owed_reply_to_speech_leaves_the_journal_once_answered() -> None:
    """Vertex (transparent mode), 3.x: a reply to speech streams and a mid-turn handle comes;
    the reply ends and a handle at the boundary follows, on the same connection. Nothing is
    owed any more: the journal must be empty and a goAway must rotate at the safe point."""
    from statemachine.core.policy import Backend

    engine, d, _ = session(backend=Backend.VERTEX)
    send(d, kind=InputKind.AUDIO, turn_complete=False)
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="h0", resumable=True,
                            last_consumed_index=1))
    d.feed(ModelOutput(at=d.tick(), generation=1, text="I heard"))
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="mid", resumable=True,
                            last_consumed_index=1))
    d.feed(ModelOutput(at=d.tick(), generation=1, text=" you"))
    d.feed(TurnComplete(at=d.tick(), generation=1))
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="after", resumable=True,
                            last_consumed_index=1))
    assert [(e.seq, e.answered) for e in engine.journal] == []
    d.feed(GoAway(at=d.tick(), generation=1, time_left=30.0))
    assert engine.state is State.RESUMING


async def test_vertex_reply_to_speech_does_not_block_the_safe_point_live() -> None:
    """Real client, Vertex, 3.x emulator, no fault: speech, its reply with mid-turn handles,
    the handle after it. A goAway then must rotate at the safe point."""
    from google.genai import types

    from statemachine.emulator import LiveEmulator

    from .app import start
    from .test_emulator_live import silence, tone
    from .test_midturn import MODEL_3, SLOW_REPLIES

    async with LiveEmulator(SLOW_REPLIES) as emu:
        app = await start(emu, model=MODEL_3, vertex=True)
        pcm = tone(400) + silence(600)
        for i in range(0, len(pcm), 640):
            await app.session.send_realtime_input(
                audio=types.Blob(data=pcm[i:i + 640], mime_type="audio/pcm;rate=16000"))
        await app.wait_replies(1)
        handles = len(emu.issued_handles)
        await app.wait_until(lambda: len(emu.issued_handles) > handles)  # the boundary handle
        await emu.connections[-1].go_away(600.0)
        await app.wait_until(lambda: app.session.core.counters.rotations == 1, within=30)
        names = [t[0] for t in app.transitions()]
        journal = [(e.seq, e.kind, e.answered) for e in app.session.core.journal]
        assert "rotation_deadline" not in names, (names, journal)
        await app.stop()


def test_vertex_consumed_tool_response_at_a_turn_boundary_leaves_the_journal() -> None:
    """Vertex, any model: a (non-blocking) call's response is consumed by the server and a
    handle at the turn boundary says so; the connection drops before its result is spoken.
    Before these commits the response was pruned (consumed); now it is held, skipped by the
    replay and must still leave the journal once the next turn is answered and covered."""
    from statemachine.core.policy import Backend

    engine, d, _ = session(backend=Backend.VERTEX)
    send(d)  # turn A (index 1)
    d.feed(ToolCall(at=d.tick(), generation=1, ids=("c1",)))
    d.feed(ModelOutput(at=d.tick(), generation=1, text="I started it"))
    d.feed(TurnComplete(at=d.tick(), generation=1))
    send(d, kind=InputKind.TOOL_RESPONSE, turn_complete=False, tool_ids=("c1",))  # index 2
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="H", resumable=True,
                            last_consumed_index=2))
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    send(d)  # turn B on the new connection (index 1 there)
    d.feed(ModelOutput(at=d.tick(), generation=2, text="reply B"))
    d.feed(TurnComplete(at=d.tick(), generation=2))
    d.feed(ResumptionUpdate(at=d.tick(), generation=2, handle="H2", resumable=True,
                            last_consumed_index=1))
    assert [(e.kind, e.sent_generation, e.held) for e in engine.journal] == []


def test_a_response_to_a_call_the_handle_holds_is_not_dropped_as_history() -> None:
    """3.x: a handle right after the model's call holds the turn and the open call. The
    response goes out, the reply with the result ends, the connection drops before another
    handle. The resumed session has the call open (3.x waits for it): the response must be
    sent, not dropped as "covered by history replay" (nothing answers the call then)."""
    from statemachine.core.actions import InputDropped

    from .test_core import notices

    _, d, _ = session()
    d.handle()
    send(d)  # turn A
    d.feed(ToolCall(at=d.tick(), generation=1, ids=("c1",)))
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="after-call", resumable=True))
    send(d, kind=InputKind.TOOL_RESPONSE, turn_complete=False, tool_ids=("c1",))
    d.feed(ModelOutput(at=d.tick(), generation=1, text="lookup returned 42."))
    d.feed(TurnComplete(at=d.tick(), generation=1))
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = [a.entry.kind for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert not notices(d, InputDropped), notices(d, InputDropped)
    assert InputKind.TOOL_RESPONSE in replay, replay


def test_only_the_latest_held_turn_is_continued() -> None:
    """Vertex: two turns consumed, neither answered (the second cut the first's reply). Only
    the latest is owed a reply: one continuation, not two (a second would cut the first's
    answer and the application would get one reply twice)."""
    from statemachine.core.policy import Backend

    engine, d, _ = session(backend=Backend.VERTEX)
    send(d)
    d.feed(ModelOutput(at=d.tick(), generation=1, text="first rep"))
    send(d)
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="H", resumable=True,
                            last_consumed_index=2))
    assert [e.held for e in engine.journal] == [True, True]
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = [(a.entry.seq, a.continuation) for a in d.actions
              if isinstance(a, Send) and a.generation == 2]
    assert replay == [(2, True)]
    assert [e.seq for e in engine.journal] == [2]
