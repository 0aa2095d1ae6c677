"""The emulator, driven by the real google-genai client over TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import os
import ssl
import subprocess
import sys

import pytest
from google import genai
from google.genai import errors, types
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from statemachine.emulator import ConnectionPlan, EmulatorSettings, LiveEmulator
from statemachine.emulator.wire import close_reason, duration, normalize

from .conftest import FAST
from .sdk import MODEL, collect, is_handle, reply_text, text_config, turn_complete, user

RESUMABLE = text_config(session_resumption=types.SessionResumptionConfig())


async def first_handle(session: genai.live.AsyncSession) -> str:
    msgs = await collect(session, is_handle)
    handle = msgs[-1].session_resumption_update.new_handle  # type: ignore[union-attr]
    assert handle
    return handle


async def turn(session: genai.live.AsyncSession, text: str) -> tuple[str, str]:
    """Send a text turn; return the reply and the resumable handle issued after it."""
    await session.send_client_content(turns=user(text), turn_complete=True)
    msgs = await collect(session, turn_complete)
    rest = await collect(session, is_handle)
    return reply_text(msgs), rest[-1].session_resumption_update.new_handle  # type: ignore


async def test_setup_and_text_turn_stream_in_order(emu: LiveEmulator) -> None:
    """setupComplete first; a text turn streams chunks, then generationComplete, turnComplete with
    usage, then the resumable handle."""
    async with emu.client().aio.live.connect(model=MODEL, config=RESUMABLE) as session:
        await first_handle(session)
        await session.send_client_content(turns=user("hello"), turn_complete=True)
        msgs = await collect(session, is_handle)
    kinds = []
    for m in msgs:
        sc = m.server_content
        if m.session_resumption_update:
            kinds.append("update" if m.session_resumption_update.resumable else "busy")
        elif sc and sc.model_turn:
            kinds.append("chunk")
        elif sc and sc.generation_complete:
            kinds.append("generation_complete")
        elif sc and sc.turn_complete:
            kinds.append("turn_complete")
            assert m.usage_metadata and m.usage_metadata.prompt_token_count
    assert kinds == ["busy", "chunk", "chunk", "chunk", "generation_complete", "turn_complete",
                     "update"]
    assert reply_text(msgs) == 'Reply 1 to "hello". I remember nothing before.'
    first = emu.connections[0].frames
    assert first[0].direction == "in" and "setup" in first[0].data
    assert first[1].data == {"setupComplete": {}}


async def test_token_counts_grow_with_the_conversation(emu: LiveEmulator) -> None:
    """promptTokenCount grows turn after turn."""
    counts = []
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        for text in ["one", "two", "three"]:
            await session.send_client_content(turns=user(text), turn_complete=True)
            msgs = await collect(session, turn_complete)
            counts.append(msgs[-1].usage_metadata.prompt_token_count)  # type: ignore[union-attr]
    assert counts[0] < counts[1] < counts[2]


async def test_audio_turn_gets_audio_reply(emu: LiveEmulator) -> None:
    """Audio in (16 kHz PCM) ending with audioStreamEnd gets audio/pcm;rate=24000 out."""
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    async with emu.client().aio.live.connect(model=MODEL, config=config) as session:
        for _ in range(5):
            blob = types.Blob(data=b"\x01\x02" * 320, mime_type="audio/pcm;rate=16000")
            await session.send_realtime_input(audio=blob)
        await session.send_realtime_input(audio_stream_end=True)
        msgs = await collect(session, turn_complete)
    parts = [p for m in msgs if m.server_content and m.server_content.model_turn
             for p in m.server_content.model_turn.parts or []]
    assert parts and all(p.inline_data.mime_type == "audio/pcm;rate=24000" for p in parts)  # type: ignore[union-attr]
    assert sum(len(p.inline_data.data or b"") for p in parts) > 0  # type: ignore[union-attr]


async def test_tool_call_waits_for_response_and_is_not_resumable(emu: LiveEmulator) -> None:
    """A tool call waits for its response (updates say resumable:false); the reply uses it."""
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(name="get_time")])]
    config = text_config(tools=tools, session_resumption=types.SessionResumptionConfig())
    async with emu.client().aio.live.connect(model=MODEL, config=config) as session:
        await first_handle(session)
        await session.send_client_content(turns=user("please call get_time"), turn_complete=True)
        msgs = await collect(session, lambda m: m.tool_call is not None)
        call = msgs[-1].tool_call.function_calls[0]  # type: ignore[union-attr,index]
        assert call.name == "get_time"
        updates = [m.session_resumption_update for m in msgs if m.session_resumption_update]
        assert updates and not any(u.resumable for u in updates)
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id=call.id, name=call.name,
                                                       response={"time": "noon"})]
        )
        msgs = await collect(session, turn_complete)
    assert reply_text(msgs).startswith('get_time returned {"time": "noon"}.')


async def test_new_input_interrupts_generation(emu: LiveEmulator) -> None:
    """Client input mid-generation yields interrupted, then turnComplete, then the new reply."""
    emu.settings = EmulatorSettings(time_scale=FAST, chunk_interval=20.0)
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_client_content(turns=user("long story"), turn_complete=True)
        await collect(session, lambda m: bool(m.server_content and m.server_content.model_turn))
        await session.send_client_content(turns=user("stop"), turn_complete=True)
        msgs = await collect(
            session, lambda m: bool(m.server_content and m.server_content.interrupted)
        )
        nxt = await collect(session, turn_complete)
        assert turn_complete(nxt[0])  # the interrupted turn ends first
        final = await collect(session, turn_complete)
    assert msgs[-1].server_content.interrupted  # type: ignore[union-attr]
    assert '"stop"' in reply_text(final)


async def test_resume_restores_the_conversation(emu: LiveEmulator) -> None:
    """A handle restores the conversation exactly: the resumed session's reply quotes it."""
    client = emu.client()
    async with client.aio.live.connect(model=MODEL, config=RESUMABLE) as session:
        await first_handle(session)
        _, handle = await turn(session, "my name is Ada")
        await turn(session, "this turn is after the handle")
    config = text_config(session_resumption=types.SessionResumptionConfig(handle=handle))
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await first_handle(session)
        reply, _ = await turn(session, "what is my name?")
    assert '"my name is Ada"' in reply
    assert "after the handle" not in reply
    assert emu.connections[1].session is emu.connections[0].session


async def test_unknown_and_expired_handles_are_refused(emu: LiveEmulator) -> None:
    """An unknown handle, or one past its validity, is refused before setupComplete (1007)."""
    client = emu.client()
    bad = text_config(session_resumption=types.SessionResumptionConfig(handle="no-such-handle"))
    with pytest.raises(errors.APIError) as err:
        async with client.aio.live.connect(model=MODEL, config=bad):
            pass
    assert err.value.code == 1007
    emu.settings = EmulatorSettings(time_scale=FAST, handle_validity=10.0)  # 0.1 s
    async with client.aio.live.connect(model=MODEL, config=RESUMABLE) as session:
        handle = await first_handle(session)
    await asyncio.sleep(0.15)
    old = text_config(session_resumption=types.SessionResumptionConfig(handle=handle))
    with pytest.raises(errors.APIError) as err:
        async with client.aio.live.connect(model=MODEL, config=old):
            pass
    assert err.value.code == 1007


async def test_refused_resumes_use_the_configured_code(emu: LiveEmulator) -> None:
    """Refusing resumes on demand, with a configurable close code."""
    emu.settings = EmulatorSettings(time_scale=FAST, reject_resume_code=1008)
    client = emu.client()
    async with client.aio.live.connect(model=MODEL, config=RESUMABLE) as session:
        handle = await first_handle(session)
    emu.refuse_resumes = True
    config = text_config(session_resumption=types.SessionResumptionConfig(handle=handle))
    with pytest.raises(errors.APIError) as err:
        async with client.aio.live.connect(model=MODEL, config=config):
            pass
    assert err.value.code == 1008
    emu.refuse_resumes = False
    emu.plan(ConnectionPlan(refuse_resume=1007))
    with pytest.raises(errors.APIError) as err:
        async with client.aio.live.connect(model=MODEL, config=config):
            pass
    assert err.value.code == 1007


async def test_resume_while_old_socket_open_is_refused_1011(emu: LiveEmulator) -> None:
    """One socket per session: resuming while the old one is open fails with 1011."""
    client = emu.client()
    async with client.aio.live.connect(model=MODEL, config=RESUMABLE) as session:
        handle = await first_handle(session)
        config = text_config(session_resumption=types.SessionResumptionConfig(handle=handle))
        with pytest.raises(errors.APIError) as err:
            async with client.aio.live.connect(model=MODEL, config=config):
                pass
        assert err.value.code == 1011


async def test_go_away_then_deadline_close(emu: LiveEmulator) -> None:
    """goAway carries timeLeft a lead before the end, then 1011 "Deadline expired..."."""
    emu.settings = EmulatorSettings(time_scale=FAST, connection_lifetime=30.0, go_away_lead=10.0)
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        msgs = await collect(session, lambda m: m.go_away is not None)
        assert msgs[-1].go_away.time_left == "0.100s"  # type: ignore[union-attr]
        with pytest.raises(errors.APIError) as err:
            await collect(session, lambda m: False)
    assert err.value.code == 1011
    assert err.value.details == "Deadline expired before operation could complete."


async def test_go_away_in_reply_comes_after_its_first_chunk_then_the_deadline(
        emu: LiveEmulator) -> None:
    """`ConnectionPlan.go_away_in_reply`: the goAway comes right after the first chunk of that
    reply (mid-reply, however slow the machine), the reply goes on, and the connection closes
    with 1011 when the notice has run out."""
    emu.settings = EmulatorSettings(time_scale=FAST, go_away_lead=10.0, chunks_per_reply=3)
    emu.plan(ConnectionPlan(go_away_in_reply=2))
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_client_content(turns=user("one"), turn_complete=True)
        first = await collect(session, turn_complete)
        assert not any(m.go_away for m in first)
        await session.send_client_content(turns=user("two"), turn_complete=True)
        second = await collect(session, turn_complete)
        kinds = ["go_away" if m.go_away else "chunk" if m.server_content and
                 m.server_content.model_turn else "other" for m in second]
        assert kinds[kinds.index("chunk"):kinds.index("go_away") + 2] == [
            "chunk", "go_away", "chunk"]
        assert reply_text(second).startswith('Reply 2 to "two"')
        with pytest.raises(errors.APIError) as err:
            await collect(session, lambda m: False)
    assert err.value.code == 1011
    assert emu.connections[0].closed_code == 1011


async def test_a_server_close_after_the_clients_close_leaves_the_clients_code(
        emu: LiveEmulator) -> None:
    """The client closed first: a close the server makes after its close frame came (its
    deadline, due while a loaded loop had not yet ended the connection) neither claims the
    connection nor changes the code recorded: the client's 1000."""
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_client_content(turns=user("one"), turn_complete=True)
        await collect(session, turn_complete)
    conn = emu.connections[0]
    await conn.close(1011, "Deadline expired before operation could complete.")
    await asyncio.wait_for(conn.done.wait(), 5)
    assert (conn.closed_code, conn.closed_reason) == (1000, "")


async def test_silence_after_go_away_keeps_socket_open(emu: LiveEmulator) -> None:
    """The silent fault: goAway, then nothing, and no close at the deadline."""
    emu.settings = EmulatorSettings(time_scale=FAST, connection_lifetime=20.0, go_away_lead=5.0)
    emu.plan(ConnectionPlan(silent_after_go_away=True))
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await collect(session, lambda m: m.go_away is not None)
        await session.send_client_content(turns=user("anyone?"), turn_complete=True)
        with pytest.raises(TimeoutError):
            await collect(session, lambda m: True, within=0.3)
        assert not emu.connections[0].done.is_set()


@pytest.mark.parametrize(("video", "cap_setting"), [(False, "session_cap_audio"),
                                                    (True, "session_cap_video")])
async def test_session_caps_without_compression(video: bool, cap_setting: str) -> None:
    """Without compression the session ends at 15 min (audio) or 2 min once video was sent."""
    settings = EmulatorSettings(time_scale=0.001, session_cap_audio=300.0, session_cap_video=100.0)
    async with LiveEmulator(settings) as emu:
        client = emu.client()
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with client.aio.live.connect(model=MODEL, config=text_config()) as session:
            if video:
                await session.send_realtime_input(
                    video=types.Blob(data=b"\xff\xd8jpeg", mime_type="image/jpeg"))
            with pytest.raises(errors.APIError) as err:
                await collect(session, lambda m: False)
        elapsed = loop.time() - start
    assert err.value.code == 1011
    assert elapsed >= settings.seconds(cap_setting) * 0.9
    assert elapsed < settings.seconds("session_cap_audio") or not video


async def test_compression_is_visible_in_prompt_tokens(emu: LiveEmulator) -> None:
    """With contextWindowCompression the context is trimmed past the trigger, and
    promptTokenCount shows the drop."""
    compression = types.ContextWindowCompressionConfig(
        trigger_tokens=120, sliding_window=types.SlidingWindow(target_tokens=60))
    counts = []
    async with emu.client().aio.live.connect(
        model=MODEL, config=text_config(context_window_compression=compression)
    ) as session:
        for i in range(8):
            await session.send_client_content(turns=user(f"message number {i} " * 4),
                                              turn_complete=True)
            msgs = await collect(session, turn_complete)
            counts.append(msgs[-1].usage_metadata.prompt_token_count)  # type: ignore[union-attr]
    drops = [b for a, b in itertools.pairwise(counts) if b < a]
    assert drops and min(drops) <= 60
    assert emu.sessions[0].context.compressions >= 1


async def test_transparent_index_on_vertex_path(emu: LiveEmulator) -> None:
    """Vertex, transparent: lastConsumedClientMessageIndex counts from 1 on each connection."""
    client = emu.client(vertexai=True)
    config = text_config(session_resumption=types.SessionResumptionConfig(transparent=True))
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        first = await collect(session, is_handle)
        assert first[-1].session_resumption_update.last_consumed_client_message_index == 0  # type: ignore[union-attr]
        for _ in range(3):
            await session.send_realtime_input(
                audio=types.Blob(data=b"\0" * 64, mime_type="audio/pcm;rate=16000"))
        await session.send_client_content(turns=user("hi"), turn_complete=True)
        msgs = await collect(session, is_handle)
        handle = msgs[-1].session_resumption_update.new_handle  # type: ignore[union-attr]
        assert msgs[-1].session_resumption_update.last_consumed_client_message_index == 4  # type: ignore[union-attr]
    config = text_config(session_resumption=types.SessionResumptionConfig(handle=handle,
                                                                          transparent=True))
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        await collect(session, is_handle)
        await session.send_client_content(turns=user("again"), turn_complete=True)
        msgs = await collect(session, is_handle)
        assert msgs[-1].session_resumption_update.last_consumed_client_message_index == 1  # type: ignore[union-attr]
    assert "aiplatform" in emu.connections[0].path
    raw = [f.data for f in emu.connections[0].frames if f.direction == "out"
           and "sessionResumptionUpdate" in f.data]
    assert raw[-1]["sessionResumptionUpdate"]["lastConsumedClientMessageIndex"] == "4"


async def test_transparent_refused_by_sdk_on_gemini_api(emu: LiveEmulator) -> None:
    """On the Gemini API the SDK itself refuses transparent=True before connecting."""
    config = text_config(session_resumption=types.SessionResumptionConfig(transparent=True))
    with pytest.raises(ValueError, match="transparent"):
        async with emu.client().aio.live.connect(model=MODEL, config=config):
            pass
    assert not emu.connections


async def test_abrupt_drop_is_1006(emu: LiveEmulator) -> None:
    """A drop with no close frame reaches the SDK as APIError 1006."""
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        emu.connections[0].drop()
        with pytest.raises(errors.APIError) as err:
            await collect(session, lambda m: False)
    assert err.value.code == 1006


@pytest.mark.parametrize(("code", "reason"), [(1011, "The service is currently unavailable."),
                                              (1000, ""), (1007, "x" * 300)])
async def test_close_with_any_code(emu: LiveEmulator, code: int, reason: str) -> None:
    """Scripted closes carry any code; reasons are cut to 123 bytes."""
    emu.plan(ConnectionPlan(close_after=1.0, close_code=code, close_reason=reason))
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        with pytest.raises(errors.APIError) as err:
            await collect(session, lambda m: False)
    assert err.value.code == code
    assert len((err.value.details or "").encode()) <= 123
    assert len(close_reason("é" * 100).encode()) <= 123


async def test_slow_and_missing_setup_complete(emu: LiveEmulator) -> None:
    """setupComplete can be delayed, or never sent (the SDK waits forever: callers time out)."""
    emu.plan(ConnectionPlan(setup_delay=20.0), ConnectionPlan(no_setup=True))
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()):
        assert loop.time() - start >= 0.2
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            async with emu.client().aio.live.connect(model=MODEL, config=text_config()):
                pass


async def test_unknown_model_is_1008(emu: LiveEmulator) -> None:
    """An unknown model is refused at setup with 1008 and a reason naming it."""
    with pytest.raises(errors.APIError) as err:
        async with emu.client().aio.live.connect(model="no-such-model", config=text_config()):
            pass
    assert err.value.code == 1008
    assert "models/no-such-model is not found" in (err.value.details or "")


async def test_non_json_frame_breaks_the_sdk_receive(emu: LiveEmulator) -> None:
    """A non-JSON frame makes the SDK raise ValueError, as with the real service."""
    emu.plan(ConnectionPlan(garbage_after=1.0))
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        with pytest.raises(ValueError, match="Failed to parse response"):
            await collect(session, lambda m: False)


async def test_missing_api_key_is_401_and_unknown_path_404(emu: LiveEmulator) -> None:
    """Handshakes without the key get HTTP 401; unknown paths get 404."""
    ctx = ssl.create_default_context(cafile=emu.ca_file)
    url = emu.base_url.replace("https", "wss")
    path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    with pytest.raises(InvalidStatus) as err:
        async with ws_connect(url + path, ssl=ctx, proxy=None):
            pass
    assert err.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as err:
        async with ws_connect(url + "/ws/elsewhere", ssl=ctx, proxy=None,
                              additional_headers={"x-goog-api-key": emu.api_key}):
            pass
    assert err.value.response.status_code == 404
    wrong = genai.Client(api_key="wrong", http_options=emu.http_options())
    with pytest.raises(InvalidStatus):
        async with wrong.aio.live.connect(model=MODEL, config=text_config()):
            pass


async def test_every_frame_is_recorded_per_connection(emu: LiveEmulator) -> None:
    """The record holds every frame in and out, per connection, with snake_case client keys."""
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_realtime_input(text="typed")
        await collect(session, turn_complete)
    conn = emu.connections[0]
    assert [m for m in conn.received if "realtime_input" in m] == [
        {"realtime_input": {"text": "typed"}}]
    assert sum("serverContent" in m for m in conn.sent) >= 3


def test_wire_helpers() -> None:
    """Durations in protobuf JSON form; both key spellings; user data left alone."""
    assert duration(50) == "50s" and duration(0.5) == "0.500s"
    assert normalize({"turnComplete": True, "x_y": {"aB": 1}, "args": {"keepMe": 1}}) == {
        "turn_complete": True, "x_y": {"a_b": 1}, "args": {"keepMe": 1}}


async def test_env_configured_client_reaches_emulator(emu: LiveEmulator) -> None:
    """A user's own client configured with base_url and the CA file (no helper) works."""
    ctx = ssl.create_default_context(cafile=emu.ca_file)
    client = genai.Client(api_key=emu.api_key, http_options=types.HttpOptions(
        base_url=emu.base_url, async_client_args={"ssl": ctx, "proxy": None}))
    async with client.aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_client_content(turns=user("hi"), turn_complete=True)
        assert reply_text(await collect(session, turn_complete))


def test_standalone_command_prints_how_to_connect() -> None:
    """`python -m statemachine emulator` starts, prints the settings to use, and serves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "statemachine", "emulator", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        text = "".join(lines)
        assert "GOOGLE_GEMINI_BASE_URL=https://127.0.0.1:" in text
        assert "SSL_CERT_FILE=" in text and "GOOGLE_API_KEY=" in text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
