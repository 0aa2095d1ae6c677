"""Audio chunks encoded once (`statemachine.aio.frames`): the text is exactly what the installed
google-genai writes, the service receives the same messages as from the SDK, and whatever the
encoder does not cover, or an SDK whose send was wrapped, still goes through the SDK."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from google import genai
from google.genai import types
from google.genai.live import AsyncSession
from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine.aio import frames
from statemachine.core.events import InputKind
from statemachine.emulator import LiveEmulator

from .app import start
from .sdk import MODEL, text_config


class _Capture:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, message: Any) -> None:
        self.sent.append(message)


def sdk_text(audio: Any, *, vertex: bool = False) -> str:
    """What the installed SDK writes for `send_realtime_input(audio=audio)`."""
    client = (genai.Client(vertexai=True, project="p", location="us-central1") if vertex
              else genai.Client(api_key="k"))
    capture = _Capture()
    session = AsyncSession(api_client=client._api_client, websocket=capture)  # type: ignore[arg-type]
    with pytest.raises(StopIteration):
        session.send_realtime_input(audio=audio).send(None)
    assert len(capture.sent) == 1
    return str(capture.sent[0])


MIME_TYPES = st.one_of(st.text(max_size=30), st.text(max_size=30).map(lambda t: "audio/" + t))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), mime=MIME_TYPES, vertex=st.booleans(),
       as_dict=st.booleans())
def test_the_text_is_the_sdks_own(data: bytes, mime: str, vertex: bool, as_dict: bool) -> None:
    """Where the encoder answers, the SDK writes the same text; where it does not, the SDK
    refuses the chunk (a MIME type not audio/...), and says so itself."""
    audio: Any = ({"data": data, "mime_type": mime} if as_dict
                  else types.Blob(data=data, mime_type=mime))
    ours = frames.audio_frame(audio)
    if ours is None:
        with pytest.raises(ValueError, match="Unsupported mime type"):
            sdk_text(audio, vertex=vertex)
    else:
        assert ours == sdk_text(audio, vertex=vertex)


def test_what_the_encoder_does_not_cover_is_left_to_the_sdk() -> None:
    audio = "audio/pcm"
    assert frames.audio_frame(types.Blob(data=b"x", mime_type=audio, display_name="n")) is None
    assert frames.audio_frame(types.Blob(data=b"x")) is None  # no MIME type
    assert frames.audio_frame({"data": b"x", "mime_type": audio, "display_name": "n"}) is None
    assert frames.audio_frame({"data": "eA==", "mime_type": audio}) is None  # base64 text
    assert frames.audio_frame({"data": bytearray(b"x"), "mime_type": audio}) is None
    assert frames.audio_frame(b"x") is None
    assert frames.audio_frame({"data": b"x", "mime_type": "video/mp4"}) is None


def test_it_is_used_with_the_installed_sdk_on_both_backends() -> None:
    assert frames.available(genai.Client(api_key="k"))
    assert frames.available(genai.Client(vertexai=True, project="p", location="us-central1"))


async def test_the_service_receives_what_the_sdk_would_have_sent(slow_emu: LiveEmulator) -> None:
    """The same chunks through a session and through the SDK alone arrive as the same messages;
    the session journals them as their bytes and MIME text (a pair the garbage collector stops
    walking at its first collection), a third smaller than the text it writes."""
    chunks: list[Any] = [types.Blob(data=bytes([i]) * 640, mime_type="audio/pcm;rate=16000")
                         for i in range(3)]
    chunks.append({"data": b"\x00\xff" * 8, "mime_type": "audio/pcm"})
    app = await start(slow_emu)
    for chunk in chunks:
        await app.session.send_realtime_input(audio=chunk)
    journaled = [e.payload for e in app.session.core.journal if e.kind is InputKind.AUDIO]
    assert len(journaled) == 4 and all(frames.is_chunk(p) for p in journaled)
    assert [frames.data_size(p) for p in journaled] == [640, 640, 640, 16]
    assert "hello" in await app.ask("hello")
    ours = [m for m in slow_emu.connections[-1].received if "realtime_input" in m]
    await app.stop()
    async with slow_emu.client().aio.live.connect(model=MODEL, config=text_config()) as sdk:
        for chunk in chunks:
            await sdk.send_realtime_input(audio=chunk)
        await sdk.send_client_content(turns=types.Content(role="user", parts=[
            types.Part(text="hello")]), turn_complete=True)
        async for _ in sdk.receive():
            pass
    theirs = [m for m in slow_emu.connections[-1].received if "realtime_input" in m]
    assert ours == theirs and len(ours) == 4


async def test_a_wrapped_sdk_send_still_sees_every_chunk(
        slow_emu: LiveEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing instrumentation that wraps `send_realtime_input` before the session is made keeps
    seeing the audio: the session leaves it to the SDK."""
    seen: list[Any] = []
    original = AsyncSession.send_realtime_input

    @functools.wraps(original)
    async def traced(self: AsyncSession, **kw: Any) -> None:
        seen.append(kw.get("audio"))
        await original(self, **kw)

    monkeypatch.setattr(AsyncSession, "send_realtime_input", traced)
    app = await start(slow_emu)
    for i in range(3):
        await app.session.send_realtime_input(
            audio=types.Blob(data=bytes([i]) * 64, mime_type="audio/pcm;rate=16000"))
    assert "hello" in await app.ask("hello")
    assert len([a for a in seen if a is not None]) == 3
    await app.stop()
