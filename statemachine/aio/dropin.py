"""What makes a session a drop-in for google-genai's `AsyncSession`, beyond the three journaled
`send_*` calls: the deprecated `send` and `start_stream` (with the SDK's own deprecation
warnings), several kinds of realtime input in one call, and `media=`.

`LiveSession` and the instrumented session both use it; `tests/test_dropin.py` compares their
public methods and signatures with the installed SDK's, so a release that adds one fails CI.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Any

from google.genai import types

from ..core.events import InputKind

#: The SDK's warnings for its deprecated methods, word for word (checked against the installed
#: SDK by the tests), raised where the application called, as the SDK does.
SEND_DEPRECATED = (
    "The `session.send` method is deprecated and will be removed in a future version (not "
    "before Q3 2025).\nPlease use one of the more specific methods: `send_client_content`, "
    "`send_realtime_input`, or `send_tool_response` instead."
)
START_STREAM_DEPRECATED = (
    "Setting `AsyncSession.start_stream` is deprecated, and will be removed in a future release "
    "(not before Q3 2025). Please use the `receive`, and `send_realtime_input`, methods instead."
)


def warn_send(stacklevel: int = 3) -> None:
    warnings.warn(SEND_DEPRECATED, DeprecationWarning, stacklevel=stacklevel)


def warn_start_stream(stacklevel: int = 3) -> None:
    warnings.warn(START_STREAM_DEPRECATED, DeprecationWarning, stacklevel=stacklevel)


def realtime_parts(
    *, media: Any, audio: Any, audio_stream_end: bool | None, video: Any, text: str | None,
    activity_start: Any, activity_end: Any,
) -> list[tuple[InputKind, dict[str, Any]]]:
    """The inputs of one `send_realtime_input` call, one journal entry each, in the order the
    model should take them: activity start, media, audio, video, text, end of audio stream,
    activity end. `media` keeps its own field (the SDK writes it as `mediaChunks`); it counts
    as audio when its MIME type is audio/*, else as video."""
    parts: list[tuple[InputKind, dict[str, Any]]] = []
    if activity_start is not None:
        parts.append((InputKind.ACTIVITY_START, {"activity_start": activity_start}))
    if media is not None:
        kind = InputKind.AUDIO if is_audio(media) else InputKind.VIDEO
        parts.append((kind, {"media": media}))
    if audio is not None:
        parts.append((InputKind.AUDIO, {"audio": audio}))
    if video is not None:
        parts.append((InputKind.VIDEO, {"video": video}))
    if text is not None:
        parts.append((InputKind.TEXT, {"text": text}))
    if audio_stream_end:
        parts.append((InputKind.AUDIO_STREAM_END, {"audio_stream_end": True}))
    if activity_end is not None:
        parts.append((InputKind.ACTIVITY_END, {"activity_end": activity_end}))
    return parts


def is_audio(blob: Any) -> bool:
    mime = blob.get("mime_type") if isinstance(blob, dict) else getattr(blob, "mime_type", None)
    if mime is None and isinstance(blob, dict):
        mime = blob.get("mimeType")
    return str(mime or "").startswith("audio/")


def tool_response_ids(function_responses: Any) -> tuple[tuple[str, ...], bool]:
    """The call ids a tool response answers, and whether every part carries a `scheduling`
    (answers to NON_BLOCKING calls, which the model does not answer as a turn)."""
    responses = function_responses if isinstance(function_responses, list | tuple) \
        else [function_responses]
    ids: list[str] = []
    scheduled = bool(responses)
    for r in responses:
        if isinstance(r, dict):
            ids.append(str(r.get("id")))
            scheduled = scheduled and r.get("scheduling") is not None
        else:
            ids.append(str(getattr(r, "id", None)))
            scheduled = scheduled and getattr(r, "scheduling", None) is not None
    return tuple(ids), scheduled


def parse_send(input: Any) -> Any:
    """What the deprecated `send` was given, as the type the SDK reads it as: a dict with
    `data` is a blob, one with `name` and `response` (or a list of those) function responses,
    a dict of a client message's fields that message."""
    if isinstance(input, list) and input and all(
            isinstance(i, dict) and "name" in i and "response" in i for i in input):
        return [types.FunctionResponse.model_validate(i) for i in input]
    if not isinstance(input, dict):
        return input
    if "data" in input:
        return types.Blob.model_validate(input)
    for kind in (types.LiveClientContent, types.LiveClientRealtimeInput,
                 types.LiveClientToolResponse, types.FunctionResponse):
        if set(input) <= set(kind.model_fields) | {_camel(f) for f in kind.model_fields}:
            with contextlib.suppress(ValueError):
                return kind.model_validate(input)
    return input


def as_turns(input: Any) -> Any:
    """Content for the deprecated `send`: a string, or a list of strings and parts, is one
    user turn, as the SDK makes it; anything else is content already."""
    if isinstance(input, str):
        input = [input]
    if isinstance(input, list) and any(isinstance(i, str) for i in input):
        parts = [types.Part(text=i) if isinstance(i, str) else i for i in input]
        return types.Content(role="user", parts=parts)
    return input


def is_function_responses(input: Any) -> bool:
    return isinstance(input, types.FunctionResponse) or (
        isinstance(input, Sequence) and not isinstance(input, str) and bool(input)
        and all(isinstance(i, types.FunctionResponse) for i in input))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
