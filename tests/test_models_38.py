"""gemini-3.8-live as the emulator plays it (each behaviour a switch of its profile), and tool
calls the 3.8 way: a call the server cancelled is never answered, a NON_BLOCKING call survives
a rotation, a repeat is told, and every call id ends in exactly one outcome."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

import statemachine
from statemachine.core.actions import InputDropped, ToolCallEnded, ToolCallRepeated
from statemachine.emulator import DEFAULT_MODEL, EmulatorSettings, LiveEmulator

from .app import SCALE, App, fast_policy, start
from .sdk import collect, reply_text, text_config, turn_complete, user

MODEL_38 = "gemini-3.8-live"
#: 3.8 with text out, so the tests read replies as text (the one switch turned off)
TEXT_38 = EmulatorSettings(time_scale=SCALE, chunk_interval=1.0,
                           profile_switches={"audio_only": False})


def tools(behavior: types.Behavior | None = None) -> list[types.Tool]:
    return [types.Tool(function_declarations=[types.FunctionDeclaration(
        name="lookup", behavior=behavior)])]


def calls(app: App) -> list[types.FunctionCall]:
    return [c for m in app.messages if m.tool_call for c in m.tool_call.function_calls or []]


def outcomes(app: App) -> Counter[tuple[str, str]]:
    return Counter((n.id, n.outcome) for n in app.notices if isinstance(n, ToolCallEnded))


def tool_responses(emu: LiveEmulator) -> list[dict[str, Any]]:
    return [r for c in emu.connections for m in c.received if "tool_response" in m
            for r in m["tool_response"].get("function_responses") or []]


def test_the_default_model_is_38() -> None:
    assert DEFAULT_MODEL == MODEL_38


# -- the profile's switches ----------------------------------------------------------------------

@pytest.mark.parametrize(("config", "why"), [
    (text_config(), "text output"),
    (types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO],
                             thinking_config=types.ThinkingConfig(
                                 thinking_level=types.ThinkingLevel.LOW)), "thinking level"),
    (types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO],
                             proactivity=types.ProactivityConfig(proactive_audio=False)),
     "proactive audio off"),
])
async def test_38_refuses_what_its_notes_say(config: types.LiveConnectConfig, why: str) -> None:
    async with LiveEmulator(EmulatorSettings(time_scale=SCALE)) as emu:
        with pytest.raises(errors.APIError) as err:
            async with emu.client().aio.live.connect(model=MODEL_38, config=config):
                pass
        assert err.value.code == 1007, why


async def test_a_switch_turns_one_behaviour_off() -> None:
    async with LiveEmulator(TEXT_38) as emu, emu.client().aio.live.connect(
            model=MODEL_38, config=text_config()) as s:
        await s.send_client_content(turns=user("hi"), turn_complete=True)
        assert await collect(s, turn_complete)
    with pytest.raises(statemachine.SettingsError):
        EmulatorSettings(profile_switches={"no_such_switch": True})


async def test_38_waits_for_turn_complete_after_incomplete_content() -> None:
    """Content without turnComplete: the model waits, even for realtime text; the
    turnComplete that follows gets the reply. 3.1 answers the text at once."""
    async with LiveEmulator(TEXT_38) as emu:
        async with emu.client().aio.live.connect(model=MODEL_38, config=text_config()) as s:
            await s.send_client_content(turns=user("context first"), turn_complete=False)
            await s.send_realtime_input(text="and now?")
            await s.send_client_content(turns=user("go"), turn_complete=True)
            messages = await collect(s, turn_complete)
        # the first reply answers the turnComplete, with the text that waited in the context
        assert reply_text(messages).startswith('Reply 3 to "go". I remember "context first"; '
                                               '"and now?"'), reply_text(messages)
    async with LiveEmulator(TEXT_38) as emu:
        client = emu.client()
        async with client.aio.live.connect(model="gemini-3.1-flash-live-preview",
                                           config=text_config()) as s:
            await s.send_client_content(turns=user("context first"), turn_complete=False)
            await s.send_realtime_input(text="and now?")
            assert await collect(s, turn_complete)


# -- API versions --------------------------------------------------------------------------------

async def test_a_model_the_api_version_does_not_serve_is_refused_naming_the_version() -> None:
    """google-genai 3.x dials v1; a -latest alias exists only on v1beta. The service's 1008,
    and the error the application gets says to dial v1beta; on v1beta it connects."""
    model = "gemini-2.5-flash-native-audio-latest"
    async with LiveEmulator(EmulatorSettings(time_scale=SCALE)) as emu:
        v1 = emu.http_options()
        v1.api_version = "v1"  # google-genai 3.x's default (2.x dialed v1beta)
        session = statemachine.connect(
            genai.Client(api_key=emu.api_key, http_options=v1), model=model,
            config=text_config(), policy=fast_policy(), audit=lambda r: None)
        with pytest.raises(statemachine.SessionTerminated) as err:
            await session.__aenter__()
        assert err.value.code == 1008
        assert 'api_version="v1beta"' in str(err.value), err.value
        assert "API version v1," in str(err.value)
        options = emu.http_options()
        options.api_version = "v1beta"
        client = genai.Client(api_key=emu.api_key, http_options=options)
        async with statemachine.connect(client, model=model, config=text_config(),
                                        policy=fast_policy(), audit=lambda r: None):
            pass


# -- tool calls the 3.8 way ----------------------------------------------------------------------

async def test_a_call_the_server_cancelled_is_never_answered_and_the_app_is_told() -> None:
    """3.8 on Vertex: new input while a BLOCKING call runs cancels it. The stream carries
    `toolCallCancellation`; the response the application sends anyway is dropped, never
    sent; the call's one outcome is `cancelled`."""
    async with LiveEmulator(TEXT_38) as emu:
        app = await start(emu, model=MODEL_38, vertex=True,
                          config=text_config(tools=tools(types.Behavior.BLOCKING)))
        await app.session.send_client_content(turns=user("please call lookup"))
        await app.wait_until(lambda: bool(calls(app)))
        # input that starts no turn (20 ms of silence): on 3.8 with Vertex it still cancels
        await app.session.send_realtime_input(
            audio=types.Blob(data=bytes(640), mime_type="audio/pcm;rate=16000"))
        await app.wait_until(lambda: any(m.tool_call_cancellation for m in app.messages))
        call = calls(app)[0]
        await app.session.send_tool_response(function_responses=[types.FunctionResponse(
            id=call.id, name=call.name, response={"result": "late"})])
        await app.wait_until(lambda: app.noticed(InputDropped))
        assert tool_responses(emu) == []
        assert outcomes(app) == Counter({(call.id, "cancelled"): 1})
        assert (await app.ask("never mind")).startswith('Reply 2 to "never mind"')
        await app.stop()


async def test_a_repeated_call_is_told_as_a_repeat_and_every_call_has_one_outcome() -> None:
    """3.8 calls a tool that returned nothing again, same name and arguments: the repeat is
    told with the first call's id, the application answers it from its cache, and each of the
    two call ids ends once, answered."""
    async with LiveEmulator(TEXT_38) as emu:
        app = await start(emu, model=MODEL_38,
                          config=text_config(tools=tools(types.Behavior.BLOCKING)))
        await app.session.send_client_content(
            turns=user('please call lookup {"city": "Paris"}'))
        await app.wait_until(lambda: bool(calls(app)))
        first = calls(app)[0]
        assert first.args == {"city": "Paris"}
        await app.session.send_tool_response(function_responses=[types.FunctionResponse(
            id=first.id, name="lookup", response={})])  # nothing: 3.8 will ask again
        await app.wait_until(lambda: app.noticed(ToolCallRepeated))
        repeat = next(n for n in app.notices if isinstance(n, ToolCallRepeated))
        second = calls(app)[1]
        assert (repeat.id, repeat.first, repeat.name) == (second.id, first.id, "lookup")
        await app.session.send_tool_response(function_responses=[types.FunctionResponse(
            id=second.id, name="lookup", response={"weather": "sunny"})])
        reply = (await app.wait_replies(1))[0]
        assert reply.startswith('lookup returned {"weather": "sunny"}'), reply
        assert outcomes(app) == Counter({(first.id, "answered"): 1, (second.id, "answered"): 1})
        # a new turn: the same call is no repeat
        await app.session.send_client_content(
            turns=user('please call lookup {"city": "Paris"}'))
        await app.wait_until(lambda: len(calls(app)) == 3)
        assert sum(isinstance(n, ToolCallRepeated) for n in app.notices) == 1
        await app.stop()


async def test_a_non_blocking_call_with_scheduling_survives_a_drop() -> None:
    """3.8 (NON_BLOCKING by default): the call, a handle that holds it, then the connection
    drops. The response, sent after the resume with its `scheduling`, reaches the resumed
    session (which, like every 3.x, waits for the calls the old connection left open before
    it replies again): the next reply carries the result, once; the response went out once;
    one outcome."""
    async with LiveEmulator(TEXT_38) as emu:
        app = await start(emu, model=MODEL_38, config=text_config(tools=tools()))
        await app.session.send_client_content(turns=user("please call lookup"))
        first = await app.wait_replies(1)
        assert first[0].startswith("I started lookup"), first
        call = calls(app)[0]
        emu.connections[-1].drop()
        await app.wait_until(lambda: len(emu.connections) == 2
                             and app.session.state == "streaming")
        await app.session.send_tool_response(function_responses=[types.FunctionResponse(
            id=call.id, name="lookup", response={"n": 7},
            scheduling=types.FunctionResponseScheduling.WHEN_IDLE)])
        reply = await app.ask("and?")
        assert reply.startswith('lookup returned {"n": 7}. Reply 2 to "and?"'), reply
        assert [r["id"] for r in tool_responses(emu)] == [call.id]
        assert outcomes(app) == Counter({(call.id, "answered"): 1})
        # a scheduled response is no turn the model answers: nothing waits on it
        assert not app.session.core.journal.has_turn_input()
        await app.stop()


async def test_a_non_blocking_call_survives_a_go_away_rotation() -> None:
    """The same across a rotation: goAway while the call is open; the session rotates (the
    handle after the call holds it), and the response sent then reaches the new connection,
    once, and the model's next reply uses it."""
    async with LiveEmulator(TEXT_38) as emu:
        app = await start(emu, model=MODEL_38, config=text_config(tools=tools()))
        await app.session.send_client_content(turns=user("please call lookup"))
        await app.wait_replies(1)
        call = calls(app)[0]
        await emu.connections[-1].go_away(20.0)
        await app.wait_until(lambda: app.session.core.counters.rotations == 1
                             and app.session.state == "streaming")
        await app.session.send_tool_response(function_responses=[types.FunctionResponse(
            id=call.id, name="lookup", response={"n": 8},
            scheduling=types.FunctionResponseScheduling.INTERRUPT)])
        reply = await app.ask("and?")
        assert reply.startswith('lookup returned {"n": 8}. Reply 2 to "and?"'), reply
        assert [r["id"] for r in tool_responses(emu)] == [call.id]
        assert any("tool_response" in m for m in emu.connections[-1].received)  # the new one
        assert outcomes(app) == Counter({(call.id, "answered"): 1})
        await app.stop()


async def test_a_silent_response_holds_no_rotation_up() -> None:
    """A SILENT result is never answered as a turn: the journal does not wait for a reply to
    it (it would hold every safe point, and so every rotation, until the deadline)."""
    async with LiveEmulator(TEXT_38) as emu:
        app = await start(emu, model=MODEL_38, config=text_config(tools=tools()))
        await app.session.send_client_content(turns=user("please call lookup"))
        await app.wait_replies(1)
        call = calls(app)[0]
        await app.session.send_tool_response(function_responses=[types.FunctionResponse(
            id=call.id, name="lookup", response={"n": 1},
            scheduling=types.FunctionResponseScheduling.SILENT)])
        await app.wait_until(lambda: bool(tool_responses(emu)))
        assert not app.session.core.journal.has_turn_input()
        assert outcomes(app) == Counter({(call.id, "answered"): 1})
        await app.stop()


async def test_a_call_lost_with_its_connection_is_reported_lost() -> None:
    """2.5: the connection that issued a call drops before a handle covers it: the resumed
    session never knew it; its outcome is `lost`, once."""
    async with LiveEmulator(EmulatorSettings(time_scale=SCALE, chunk_interval=1.0)) as emu:
        app = await start(emu, model="gemini-live-2.5-flash-preview",
                          config=text_config(tools=tools(types.Behavior.BLOCKING)))
        await app.session.send_client_content(turns=user("please call lookup"))
        await app.wait_until(lambda: bool(calls(app)))
        call = calls(app)[0]
        emu.connections[-1].drop()
        await app.wait_until(lambda: bool(outcomes(app)))
        assert outcomes(app) == Counter({(call.id, "lost"): 1})
        await app.stop()
