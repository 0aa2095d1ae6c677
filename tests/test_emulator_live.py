"""Today's service in the emulator: voice activity, server fields, context updates, tools that do
not block, media by type, model names and the two model generations. All through the real
google-genai client over TLS."""

from __future__ import annotations

import asyncio
import math
import struct

import pytest
from google import genai
from google.genai import errors, types

from statemachine.emulator import EmulatorSettings, LiveEmulator
from statemachine.emulator.wire import CLOSE_ACTIVITY

from .conftest import FAST
from .sdk import MODEL, collect, is_handle, reply_text, text_config, turn_complete, user

MODEL_3 = "gemini-3.1-flash-live-preview"
PCM = "audio/pcm;rate=16000"
Session = genai.live.AsyncSession


def tone(ms: int, amplitude: int = 8000) -> bytes:
    """A 440 Hz tone: speech as far as an energy detector can tell."""
    n = 16 * ms
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * 440 * i / 16000))
                                    for i in range(n)))


def silence(ms: int) -> bytes:
    return bytes(32 * ms)


async def speak(session: Session, pcm: bytes) -> None:
    """Stream PCM in 20 ms chunks, as a microphone would."""
    for i in range(0, len(pcm), 640):
        await session.send_realtime_input(audio=types.Blob(data=pcm[i:i + 640], mime_type=PCM))


def first(messages: list[types.LiveServerMessage], what: str) -> int:
    """Index of the first message with server content field `what` set."""
    return next(i for i, m in enumerate(messages)
                if m.server_content and getattr(m.server_content, what))


def first_chunk(m: types.LiveServerMessage) -> bool:
    return bool(m.server_content and m.server_content.model_turn)


# -- voice activity --

async def test_speech_then_silence_ends_the_turn(emu: LiveEmulator) -> None:
    """With automatic activity detection (the default) speech followed by silence ends the
    user's turn without audioStreamEnd; the requested input transcription comes with it."""
    config = text_config(input_audio_transcription=types.AudioTranscriptionConfig())
    async with emu.client().aio.live.connect(model=MODEL, config=config) as session:
        await speak(session, silence(200) + tone(400) + silence(600))
        msgs = await collect(session, turn_complete)
    assert reply_text(msgs).startswith("I heard 1100 ms of audio.")  # 500 ms of silence ends it
    heard = [m.server_content.input_transcription for m in msgs
             if m.server_content and m.server_content.input_transcription]
    assert heard and heard[0].finished
    assert not any(m.get("realtime_input", {}).get("audio_stream_end")
                   for m in emu.connections[0].received)


async def test_silence_alone_is_no_turn_and_low_noise_is_silence(emu: LiveEmulator) -> None:
    """Quiet noise never starts a turn; the first word afterwards does."""
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await speak(session, tone(600, amplitude=300) + silence(600))
        await speak(session, tone(300) + silence(600))
        msgs = await collect(session, turn_complete)
    assert reply_text(msgs).startswith("I heard 2000 ms")
    assert sum(1 for m in emu.connections[0].sent if "turnComplete" in str(m)) == 1


async def test_barge_in_interrupts_the_reply(emu: LiveEmulator) -> None:
    """Speech during a reply cuts it: `interrupted`, then the new audio turn is answered."""
    emu.settings = EmulatorSettings(time_scale=FAST, chunk_interval=50.0)
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_client_content(turns=user("tell me a long story"), turn_complete=True)
        await collect(session, first_chunk)
        await speak(session, tone(200))
        cut = await collect(session, turn_complete)
        await speak(session, silence(600))
        answer = await collect(session, turn_complete)
    assert cut[first(cut, "interrupted")].server_content.interrupted  # type: ignore[union-attr]
    assert reply_text(answer).startswith("I heard 700 ms")


async def test_barge_in_cancels_the_pending_tool_call(emu: LiveEmulator) -> None:
    """Speech while a (blocking) call is pending: toolCallCancellation with its id, then
    `interrupted`."""
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(name="get_time")])]
    async with emu.client().aio.live.connect(model=MODEL, config=text_config(tools=tools)) as s:
        await s.send_client_content(turns=user("please call get_time"), turn_complete=True)
        calls = await collect(s, lambda m: m.tool_call is not None)
        call_id = calls[-1].tool_call.function_calls[0].id  # type: ignore[union-attr,index]
        await speak(s, tone(100))
        msgs = await collect(s, turn_complete)
    cancel = next(m.tool_call_cancellation for m in msgs if m.tool_call_cancellation)
    assert cancel.ids == [call_id]
    assert first(msgs, "interrupted") > msgs.index(next(m for m in msgs
                                                        if m.tool_call_cancellation))
    assert not emu.sessions[0].context.open_calls


async def test_explicit_activity_needs_detection_disabled(emu: LiveEmulator) -> None:
    """activityStart/End with automatic detection on: the service's 1007. With it disabled they
    mark the turn, and silence no longer ends it."""
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        with pytest.raises(errors.APIError) as err:
            await collect(session, lambda m: False)
    assert err.value.code == 1007 and err.value.details == CLOSE_ACTIVITY
    manual = text_config(realtime_input_config=types.RealtimeInputConfig(
        automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)))
    async with emu.client().aio.live.connect(model=MODEL, config=manual) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await speak(session, tone(200) + silence(600))
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        msgs = await collect(session, turn_complete)
    assert reply_text(msgs).startswith("I heard 800 ms")  # all of it: silence did not end it


# -- server fields --

async def test_output_transcription_and_usage_per_modality(emu: LiveEmulator) -> None:
    """Audio replies carry the requested output transcription; usage has per-modality details."""
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO],
                                     output_audio_transcription=types.AudioTranscriptionConfig())
    async with emu.client().aio.live.connect(model=MODEL, config=config) as session:
        await speak(session, tone(300) + silence(600))
        msgs = await collect(session, turn_complete)
    said = "".join(m.server_content.output_transcription.text or "" for m in msgs
                   if m.server_content and m.server_content.output_transcription)
    assert said.startswith("I heard 800 ms of audio.")
    usage = msgs[-1].usage_metadata
    assert usage is not None
    prompt = {d.modality: d.token_count for d in usage.prompt_tokens_details or []}
    assert prompt[types.MediaModality.AUDIO] and usage.prompt_token_count == sum(prompt.values())
    response = usage.response_tokens_details or []
    assert [d.modality for d in response] == [types.MediaModality.AUDIO]


async def test_empty_turn_waits_for_input(emu: LiveEmulator) -> None:
    """A turn with nothing in it: no reply, turnComplete with NEED_MORE_INPUT and
    waitingForInput."""
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_client_content(turns=user(""), turn_complete=True)
        msgs = await collect(session, turn_complete)
    content = msgs[-1].server_content
    assert content is not None and not reply_text(msgs)
    assert content.turn_complete_reason == types.TurnCompleteReason.NEED_MORE_INPUT
    assert content.waiting_for_input


async def test_context_update_changes_instructions_and_tools(emu: LiveEmulator) -> None:
    """send_context_update is accepted: the system instruction and tools change mid-session."""
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_context_update(
            system_instruction="Be brief.",
            tools=[types.Tool(function_declarations=[types.FunctionDeclaration(name="f")])])
        await session.send_client_content(turns=user("please call f"), turn_complete=True)
        msgs = await collect(session, lambda m: m.tool_call is not None)
    assert msgs[-1].tool_call.function_calls[0].name == "f"  # type: ignore[union-attr,index]
    assert emu.sessions[0].context.system == "Be brief."
    async with asyncio.timeout(10):
        await emu.connections[0].done.wait()
    assert emu.connections[0].closed_code == 1000  # closed by the client, not refused (1007)


# -- tools --

def non_blocking(name: str = "lookup") -> list[types.Tool]:
    return [types.Tool(function_declarations=[types.FunctionDeclaration(
        name=name, behavior=types.Behavior.NON_BLOCKING)])]


def result(call: types.FunctionCall, scheduling: types.FunctionResponseScheduling
           ) -> types.FunctionResponse:
    return types.FunctionResponse(id=call.id, name=call.name, response={"v": 1},
                                  scheduling=scheduling)


async def start_call(session: Session) -> types.FunctionCall:
    """Ask for the non-blocking call; the model answers at once and the call stays open."""
    await session.send_client_content(turns=user("please call lookup"), turn_complete=True)
    msgs = await collect(session, turn_complete)
    assert reply_text(msgs).startswith("I started lookup.")
    call = next(m.tool_call for m in msgs if m.tool_call).function_calls[0]  # type: ignore
    return call  # type: ignore[no-any-return]


@pytest.mark.parametrize("scheduling", [types.FunctionResponseScheduling.WHEN_IDLE,
                                        types.FunctionResponseScheduling.SILENT])
async def test_non_blocking_result_when_idle_or_silent(emu: LiveEmulator,
                                                       scheduling: types.FunctionResponseScheduling
                                                       ) -> None:
    """A NON_BLOCKING call does not hold the turn; its result is spoken when the model is idle
    (WHEN_IDLE) or only taken in (SILENT)."""
    config = text_config(tools=non_blocking())
    async with emu.client().aio.live.connect(model=MODEL, config=config) as session:
        call = await start_call(session)
        await session.send_tool_response(function_responses=[result(call, scheduling)])
        if scheduling is types.FunctionResponseScheduling.SILENT:
            await session.send_client_content(turns=user("next"), turn_complete=True)
        spoken = reply_text(await collect(session, turn_complete))
    if scheduling is types.FunctionResponseScheduling.SILENT:
        assert spoken.startswith('Reply 2 to "next"')
    else:
        assert spoken == 'lookup returned {"v": 1}.'
    assert not emu.sessions[0].context.open_calls
    assert emu.sessions[0].context.turns[2].tool is not None  # taken in either way


async def test_non_blocking_result_interrupts(emu: LiveEmulator) -> None:
    """scheduling=INTERRUPT cuts the reply in progress and speaks the result."""
    emu.settings = EmulatorSettings(time_scale=FAST, chunk_interval=50.0)
    async with emu.client().aio.live.connect(model=MODEL,
                                             config=text_config(tools=non_blocking())) as session:
        await session.send_client_content(turns=user("please call lookup"), turn_complete=True)
        calls = await collect(session, lambda m: m.tool_call is not None)
        call = calls[-1].tool_call.function_calls[0]  # type: ignore[union-attr,index]
        await collect(session, first_chunk)
        await session.send_tool_response(function_responses=[
            result(call, types.FunctionResponseScheduling.INTERRUPT)])
        cut = await collect(session, turn_complete)
        spoken = await collect(session, turn_complete)
    assert any(m.server_content and m.server_content.interrupted for m in cut)
    assert reply_text(spoken) == 'lookup returned {"v": 1}.'


# -- media by type --

@pytest.mark.parametrize("field", ["media", "video"])
async def test_images_count_as_video_whatever_the_field(field: str) -> None:
    """An image/* blob makes the session audio+video (2-minute cap) in any realtime field."""
    settings = EmulatorSettings(time_scale=0.001, session_cap_audio=900.0, session_cap_video=60.0)
    frame = types.Blob(data=b"\xff\xd8jpeg", mime_type="image/jpeg")
    async with LiveEmulator(settings) as emu, emu.client().aio.live.connect(
            model=MODEL, config=text_config()) as session:
        await session.send_realtime_input(**{field: frame})
        with pytest.raises(errors.APIError) as err:
            await collect(session, lambda m: False)
    wire = {"media": "media_chunks", "video": "video"}[field]
    assert wire in emu.connections[0].received[1]["realtime_input"]
    assert err.value.code == 1011 and emu.sessions[0].video_sent
    assert emu.sessions[0].context.pending_video == 1
    assert emu.sessions[0].context.pending_audio == 0


# -- models and generations --

@pytest.mark.parametrize("model", ["gemini-live-2.5-flash-preview", MODEL_3,
                                   "gemini-2.5-flash-native-audio-preview-09-2025",
                                   "gemini-live-2.5-flash-native-audio"])
async def test_live_models_are_accepted(emu: LiveEmulator, model: str) -> None:
    """The guide's Live models and the native-audio ones connect."""
    async with emu.client().aio.live.connect(model=model, config=text_config()) as session:
        await session.send_client_content(turns=user("hi"), turn_complete=True)
        assert reply_text(await collect(session, turn_complete))


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1alpha"])
async def test_other_models_are_refused_naming_the_api_version(emu: LiveEmulator,
                                                               version: str) -> None:
    """Any other name: 1008 with the service's text, naming the API version dialed."""
    options = emu.http_options()
    options.api_version = version
    client = genai.Client(api_key=emu.api_key, http_options=options)
    with pytest.raises(errors.APIError) as err:
        async with client.aio.live.connect(model="gemini-2.5-flash", config=text_config()):
            pass
    assert err.value.code == 1008
    assert err.value.details == (f"models/gemini-2.5-flash is not found for API version "
                                 f"{version}, or is not supported for bidiGenerateContent.")


RESUMABLE = text_config(session_resumption=types.SessionResumptionConfig())


async def test_generation_25_withholds_handles_mid_turn(emu: LiveEmulator) -> None:
    """2.5: resumable:false while generating, a handle after turnComplete, no
    interactionStatus."""
    async with emu.client().aio.live.connect(model=MODEL, config=RESUMABLE) as session:
        await collect(session, is_handle)
        await session.send_client_content(turns=user("hello"), turn_complete=True)
        msgs = await collect(session, is_handle)
    done = next(i for i, m in enumerate(msgs) if turn_complete(m))
    updates = [i for i, m in enumerate(msgs) if m.session_resumption_update]
    assert [msgs[i].session_resumption_update.resumable for i in updates] == [False, True]  # type: ignore[union-attr]
    assert updates[-1] > done
    assert msgs[done].server_content.interaction_status is None  # type: ignore[union-attr]


async def test_generation_3_issues_handles_mid_turn(emu: LiveEmulator) -> None:
    """3.x: resumable handles between reply chunks, and interactionStatus IDLE with
    turnComplete; resuming a mid-turn handle keeps what was said so far."""
    client = emu.client()
    async with client.aio.live.connect(model=MODEL_3, config=RESUMABLE) as session:
        await collect(session, is_handle)
        await session.send_client_content(turns=user("hello"), turn_complete=True)
        msgs = await collect(session, turn_complete)
    chunks = [i for i, m in enumerate(msgs) if first_chunk(m)]
    mid = [i for i, m in enumerate(msgs) if is_handle(m) and i < len(msgs) - 1]
    assert mid and min(mid) > chunks[0] and min(mid) < chunks[-1]
    assert not any(m.session_resumption_update and not m.session_resumption_update.resumable
                   for m in msgs)
    assert msgs[-1].server_content.interaction_status == types.InteractionStatus.IDLE  # type: ignore[union-attr]
    handle = msgs[min(mid)].session_resumption_update.new_handle  # type: ignore[union-attr]
    config = text_config(session_resumption=types.SessionResumptionConfig(handle=handle))
    async with client.aio.live.connect(model=MODEL_3, config=config):
        pass
    turns = emu.sessions[0].context.turns
    assert turns[-1].role == "model" and turns[-1].text
    assert reply_text(msgs).startswith(turns[-1].text) and reply_text(msgs) != turns[-1].text


async def test_turn_complete_without_turns_answers_the_turn_a_mid_turn_handle_holds(
    emu: LiveEmulator,
) -> None:
    """`turnComplete` with no turns means "generate from what you have": after resuming a
    mid-turn handle the model answers the cut turn again, in full, without taking a new user
    turn; with nothing owed it waits for input (NEED_MORE_INPUT, no reply)."""
    client = emu.client()
    async with client.aio.live.connect(model=MODEL_3, config=RESUMABLE) as session:
        await collect(session, is_handle)
        await session.send_client_content(turns=user("hello"), turn_complete=True)
        msgs = await collect(session, turn_complete)
    mid = next(m for m in msgs[1:] if is_handle(m) and msgs.index(m) < len(msgs) - 1)
    config = text_config(session_resumption=types.SessionResumptionConfig(
        handle=mid.session_resumption_update.new_handle))  # type: ignore[union-attr]
    async with client.aio.live.connect(model=MODEL_3, config=config) as session:
        await session.send_client_content(turn_complete=True)
        again = await collect(session, turn_complete)
        await session.send_client_content(turn_complete=True)
        idle = await collect(session, turn_complete)
    assert reply_text(again) == reply_text(msgs)
    assert reply_text(idle) == ""
    assert idle[-1].server_content.turn_complete_reason == (  # type: ignore[union-attr]
        types.TurnCompleteReason.NEED_MORE_INPUT)
    assert emu.sessions[0].context.user_texts() == ["hello"]


async def test_generation_3_extended_thinking_keeps_status_in_progress() -> None:
    """3.x with extended thinking: turnComplete says IN_PROGRESS, IDLE follows; the setup must
    name a thinking level (else 1007); proactive audio cannot be turned off (1007)."""
    async with LiveEmulator(EmulatorSettings(time_scale=FAST, extended_thinking=5.0)) as emu:
        client = emu.client()
        with pytest.raises(errors.APIError) as err:
            async with client.aio.live.connect(model=MODEL_3, config=text_config()):
                pass
        assert err.value.code == 1007
        thinking = text_config(thinking_config=types.ThinkingConfig(thinking_budget=1024))
        async with client.aio.live.connect(model=MODEL_3, config=thinking) as session:
            await session.send_client_content(turns=user("think"), turn_complete=True)
            done = await collect(session, turn_complete)
            idle = await collect(session, lambda m: bool(
                m.server_content and m.server_content.interaction_status))
        assert done[-1].server_content.interaction_status == types.InteractionStatus.IN_PROGRESS  # type: ignore[union-attr]
        assert idle[-1].server_content.interaction_status == types.InteractionStatus.IDLE  # type: ignore[union-attr]
        off = text_config(thinking_config=types.ThinkingConfig(thinking_budget=1024),
                          proactivity=types.ProactivityConfig(proactive_audio=False))
        with pytest.raises(errors.APIError) as err:
            async with client.aio.live.connect(model=MODEL_3, config=off):
                pass
        assert err.value.code == 1007


@pytest.mark.parametrize("model", [MODEL, MODEL_3])
async def test_resumed_session_and_the_old_connections_open_calls(emu: LiveEmulator,
                                                                  model: str) -> None:
    """3.x tools are non-blocking by default, and a resumed session stays blocked on the call
    the old connection left open: its next reply waits for the answer. 2.5 blocks on the call
    in the turn itself, so its handles never hold an open call."""
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(name="get_time")])]
    config = text_config(tools=tools, session_resumption=types.SessionResumptionConfig())
    client = emu.client()
    async with client.aio.live.connect(model=model, config=config) as session:
        handles = await collect(session, is_handle)
        await session.send_client_content(turns=user("please call get_time"), turn_complete=True)
        msgs = await collect(session, lambda m: m.tool_call is not None)
        call = msgs[-1].tool_call.function_calls[0]  # type: ignore[union-attr,index]
        if model == MODEL_3:
            handles = await collect(session, is_handle)  # right after the call: mid-turn
        handle = handles[-1].session_resumption_update.new_handle  # type: ignore[union-attr]
    resume = text_config(tools=tools, session_resumption=types.SessionResumptionConfig(
        handle=handle))
    async with client.aio.live.connect(model=model, config=resume) as session:
        await session.send_client_content(turns=user("hello"), turn_complete=True)
        await session.send_tool_response(function_responses=[types.FunctionResponse(
            id=call.id, name=call.name, response={"time": "noon"})])
        reply = reply_text(await collect(session, turn_complete))
    if model == MODEL_3:
        assert reply.startswith('get_time returned {"time": "noon"}. Reply')
    else:
        assert reply.startswith('Reply 1 to "hello"') and "returned" not in reply
