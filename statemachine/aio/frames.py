"""Audio chunks encoded once, as the text google-genai would write for them.

For each `send_realtime_input(audio=...)` the SDK builds a pydantic model, runs its converter
and a generic walk over the result, then `json.dumps` it: about 75 us of the 130 us a 20 ms chunk
costs on the machine of the README's figures, the largest part of a voice session's CPU. The
text depends only on the chunk's bytes and MIME type, so a session checks the chunk once, when
the application sends, and journals it as a `Chunk`: the bytes and the MIME type's JSON text, a
pair the garbage collector stops walking at its first collection (a `Blob` in a dict is four
objects it walks until a handle covers the chunk). The writer (and a replay) writes
`text(chunk)` on the SDK's own websocket: base64 and a join, about 1 us, where journaling the
text itself held a third more memory per chunk (base64 and the JSON around it) for seconds.

It is used only while it is safe: `available()` runs the installed SDK's own send on a probe
and compares the text it writes with ours, and declines when `send_realtime_input` has been
wrapped (by tracing instrumentation, say: it would then no longer see the audio). Any other
input, or a chunk that is not plain bytes with a MIME type, goes through the SDK as before.
"""

from __future__ import annotations

import base64
import json
import types as pytypes
from typing import Any

from google import genai
from google.genai import live, types
from google.genai.live import AsyncSession

from . import sdk as adapter

_HEAD = '{"realtime_input": {"audio": {"data": "'
_MIME = '", "mime_type": '
_TAIL = "}}}"
_BLOB_FIELDS = {"data", "display_name", "mime_type"}
#: probes whose text both encoders must agree on: every byte value, and a MIME type JSON escapes
_PROBES = (
    types.Blob(data=bytes(range(256)) * 3 + b"\xfb\xff", mime_type="audio/pcm;rate=16000"),
    types.Blob(data=b"", mime_type='audio/x-"t\u00e9st"\\'),
)
_mime_text: dict[str, str] = {}
_verified: dict[bool, bool] = {}
#: False: sessions made from now on send every chunk through the SDK's own send (the capacity
#: benchmark sets it to measure the SDK's encoding under the lifecycle)
enabled = True


#: an audio chunk as journaled: its bytes and its MIME type as JSON text (`chunk`, `text`)
Chunk = tuple[bytes, str]


def _mime_json(mime_type: str) -> str:
    mime = _mime_text.get(mime_type)
    if mime is None:
        mime = json.dumps(mime_type)
        if len(_mime_text) < 64:  # a process uses a handful of MIME types
            _mime_text[mime_type] = mime
    return mime


def encode(data: bytes, mime_type: str) -> str:
    """The text of `{"realtime_input": {"audio": {...}}}`, as the SDK writes it."""
    return text((data, _mime_json(mime_type)))


def text(chunk: Chunk) -> str:
    """The text the SDK would write for a journaled chunk."""
    return _HEAD + base64.urlsafe_b64encode(chunk[0]).decode("ascii") + _MIME + chunk[1] + _TAIL


def is_chunk(payload: Any) -> bool:
    """Whether a journaled payload is a `Chunk` (else the SDK's own keyword arguments)."""
    return type(payload) is tuple


def data_size(payload: Any) -> int | None:
    """The bytes of audio a journaled `Chunk` holds; None for any other payload."""
    return len(payload[0]) if type(payload) is tuple else None


def audio_frame(audio: Any) -> str | None:
    """The text the SDK would write for `audio` when it is plain bytes and an audio MIME type (a
    `Blob` or the dict form); None for anything else, which the SDK converts (and checks)
    itself."""
    journaled = chunk(audio)
    return None if journaled is None else text(journaled)


def chunk(audio: Any) -> Chunk | None:
    """What a session journals for `audio` (see `audio_frame`: None when the SDK must convert
    it)."""
    if type(audio) is types.Blob:
        if audio.display_name is None:
            data, mime = audio.data, audio.mime_type
        else:
            return None
    elif type(audio) is dict and len(audio) == 2:
        data, mime = audio.get("data"), audio.get("mime_type")
    else:
        return None
    if type(data) is bytes and type(mime) is str and mime.startswith("audio/"):
        return (data, _mime_json(mime))
    return None  # the SDK refuses other MIME types: let it say so


def available(client: genai.Client) -> bool:
    """Whether sessions of `client` may send `audio_frame` text on the SDK's websocket: the
    installed SDK writes exactly that text for the probes (checked once per backend), keeps its
    websocket as `_ws`, and its `send_realtime_input` is its own, not wrapped."""
    if not enabled or not _unwrapped(AsyncSession.send_realtime_input):
        return False
    vertex = bool(client.vertexai)
    if vertex not in _verified:
        _verified[vertex] = _agrees(adapter.api_client(client))
    return _verified[vertex]


def _unwrapped(method: Any) -> bool:
    code = getattr(method, "__code__", None)
    return (type(method) is pytypes.FunctionType and code is not None
            and code.co_filename == live.__file__ and code.co_name == "send_realtime_input")


class _Capture:
    """A websocket that keeps what is sent on it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, message: Any) -> None:
        self.sent.append(message)


def _agrees(api_client: Any) -> bool:
    if set(types.Blob.model_fields) != _BLOB_FIELDS:
        return False  # a field we would not write
    capture = _Capture()
    try:
        session = AsyncSession(api_client=api_client, websocket=capture)  # type: ignore[arg-type]
        if adapter.websocket(session) is not capture:
            return False
        for probe in _PROBES:
            step = session.send_realtime_input(audio=probe)
            try:
                step.send(None)
            except StopIteration:
                pass
            else:  # it waited on something: not the plain conversion this replaces
                step.close()
                return False
    except Exception:  # any surprise means: leave it to the SDK
        return False
    return bool(capture.sent == [audio_frame(p) for p in _PROBES])
