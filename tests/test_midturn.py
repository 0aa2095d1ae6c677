"""Today's models (3.x) issue resumption handles mid-turn: a turn such a handle holds is neither
sent twice nor left unanswered after a resume (the engine asks the model to continue)."""

from __future__ import annotations

import attrs
import pytest
from google.genai import types

from statemachine.core.actions import InputDropped, ReplyInterrupted, Resumed
from statemachine.core.events import InputKind
from statemachine.emulator import ConnectionPlan, EmulatorSettings, LiveEmulator

from .app import SCALE, App, context_user_texts, start, user_texts_consumed
from .sdk import text_config, user
from .test_emulator_live import silence, tone

MODEL_3 = "gemini-3.1-flash-live-preview"
#: replies of 25 chunks 10 ms apart: a mid-turn handle follows each chunk
SLOW_REPLIES = EmulatorSettings(time_scale=SCALE, chunk_interval=1.0)


def chunks_seen(app: App) -> int:
    return sum(1 for m in app.messages if m.server_content and m.server_content.model_turn)


def held(app: App) -> bool:
    """A resumable handle holds a turn whose reply has not ended."""
    return any(e.held and not e.answered for e in app.session.core.journal)


@pytest.mark.parametrize("vertex", [False, True], ids=["gemini", "vertex"])
async def test_cut_reply_after_a_mid_turn_handle_is_continued_not_resent(vertex: bool) -> None:
    """The connection drops after some of the reply and a mid-turn handle: the resumed
    session holds the turn, so it is not sent again; the model is asked to continue and the
    application gets the whole reply once, after the cut one is marked interrupted. On Vertex
    the handle's consumed index says the turn was taken in; on the Gemini API the handle came
    while the reply streamed, a round trip after the turn went out."""
    async with LiveEmulator(SLOW_REPLIES) as emu:
        app = await start(emu, model=MODEL_3, vertex=vertex)
        await app.ask("one")
        before = chunks_seen(app)
        await app.session.send_client_content(turns=user("two"), turn_complete=True)
        await app.wait_until(lambda: chunks_seen(app) > before and held(app))
        emu.connections[-1].drop()
        replies = await app.wait_replies(2)
        assert replies[1].startswith('Reply 2 to "two". I remember "one"'), replies
        assert context_user_texts(emu) == ["one", "two"]
        assert user_texts_consumed(emu)["two"] == 1
        resumed = [n for n in app.notices if isinstance(n, Resumed)]
        assert [n.continued for n in resumed] == [1]
        assert app.noticed(ReplyInterrupted)
        assert await app.ask("three") == 'Reply 3 to "three". I remember "one"; "two".'
        await app.stop()


async def test_answered_turn_held_by_a_mid_turn_handle_is_not_answered_again() -> None:
    """The reply ended (turnComplete) but the connection dropped before the handle after it:
    the last mid-turn handle holds the turn and the whole reply, so nothing is sent for it and
    the model neither answers it again nor forgets it."""
    async with LiveEmulator(SLOW_REPLIES) as emu:
        emu.plan(ConnectionPlan(drop_at_turn_handle=2))
        app = await start(emu, model=MODEL_3)
        await app.ask("alpha")
        await app.ask("beta")  # the connection drops where the handle after it would come
        reply = await app.ask("gamma")
        assert reply.startswith('Reply 3 to "gamma". I remember "alpha"; "beta"'), reply
        assert len(app.replies) == 3
        assert user_texts_consumed(emu)["beta"] == 1
        counters = app.session.core.counters
        assert counters.continued == 0 and counters.replayed_as_history == 0
        assert context_user_texts(emu) == ["alpha", "beta", "gamma"]
        await app.stop()


async def test_tool_call_held_by_a_mid_turn_handle_is_answered_not_reissued() -> None:
    """A blocking call, the handle right after it, then a drop: the resumed session holds the
    turn and the open call; the response goes to it and the model, asked to continue, answers
    with the result. The turn is taken in once and the call is made once."""
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(
        name="lookup", behavior=types.Behavior.BLOCKING)])]
    # the model takes 100 ms to make the call, as a real one takes its time: the handle right
    # after the call then comes more than a round trip after the turn went out, so it holds it
    settings = attrs.evolve(SLOW_REPLIES, response_delay=10.0)
    async with LiveEmulator(settings) as emu:
        app = await start(emu, model=MODEL_3, config=text_config(tools=tools))
        await app.session.send_client_content(turns=user("please call lookup"),
                                              turn_complete=True)
        await app.wait_until(lambda: any(m.tool_call for m in app.messages))
        await app.wait_until(lambda: held(app))
        call = next(m.tool_call for m in app.messages if m.tool_call)
        emu.connections[-1].drop()
        await app.wait_until(lambda: app.noticed(Resumed))
        fc = call.function_calls[0]  # type: ignore[index]
        await app.session.send_tool_response(function_responses=[
            types.FunctionResponse(id=fc.id, name=fc.name, response={"answer": 42})])
        replies = await app.wait_replies(1)
        assert replies[0].startswith('lookup returned {"answer": 42}. Reply 1 to '
                                     '"please call lookup"'), replies
        assert sum(1 for m in app.messages if m.tool_call) == 1
        assert user_texts_consumed(emu)["please call lookup"] == 1
        assert context_user_texts(emu) == ["please call lookup"]
        await app.stop()


def speech_held(app: App) -> bool:
    """A resumable handle holds a reply to speech and the speech itself: no audio is left
    for a resume to send. Handles that come less than the crossing window (round trip, slack,
    the loop's lag) after the last chunk went out leave it in the journal, as the Gemini API
    cannot say they hold it (on a loaded machine that window can outlast a short reply)."""
    return held(app) and not any(e.kind is InputKind.AUDIO for e in app.session.core.journal)


async def test_cut_reply_to_speech_after_a_mid_turn_handle_is_continued() -> None:
    """Speech the service's activity detection ended is no turn input, and the handle holds
    it: the reply a drop cut after a mid-turn handle is still owed. The resume asks the model
    to continue, and the whole reply comes once."""
    # a reply of 40 chunks 20 ms apart: a handle holding the speech comes while it streams
    # even when the crossing window is a loaded machine's hundreds of milliseconds
    settings = attrs.evolve(SLOW_REPLIES, chunk_interval=2.0, chunks_per_reply=40)
    async with LiveEmulator(settings) as emu:
        app = await start(emu, model=MODEL_3)
        pcm = tone(400) + silence(600)
        for i in range(0, len(pcm), 640):
            await app.session.send_realtime_input(
                audio=types.Blob(data=pcm[i:i + 640], mime_type="audio/pcm;rate=16000"))
        await app.wait_until(lambda: chunks_seen(app) > 0 and speech_held(app))
        emu.connections[-1].drop()
        replies = await app.wait_replies(1)
        assert replies[0].startswith("I heard ") and len(replies) == 1, replies
        assert [n.continued for n in app.notices if isinstance(n, Resumed)] == [1]
        assert not any(isinstance(n, InputDropped) for n in app.notices)
        user_turns = [t for t in emu.sessions[-1].context.turns
                      if t.role == "user" and t.audio_bytes]
        assert len(user_turns) == 1
        await app.stop()
