"""From a google-genai server message to the core's events: a pure translation, no I/O.

Model chunks are the bulk of the traffic: their text goes to the core's turn
(`Lifecycle.model_chunk`), and only the first chunk of a turn becomes an event (the driver
contract in `core/actions.py`). The shell asks `chunk_text` first, then `translate` for the rest.
"""

from __future__ import annotations

import json
from typing import Any

from google.genai import types

from ..core.events import (
    Event,
    GenerationComplete,
    GoAway,
    InteractionStatus,
    Interrupted,
    ResumptionUpdate,
    ToolCall,
    ToolCallCancellation,
    TurnComplete,
    Usage,
)
from ..core.toolcalls import call_key
from ..core.wire import parse_time_left

Message = types.LiveServerMessage


def interaction_idle(content: Any) -> bool | None:
    """The service's `interactionStatus` (3.x) as the core reads it: True for IDLE, False for
    any other stated status, None when none was sent."""
    status = getattr(content, "interaction_status", None) if content is not None else None
    if status is None or status.name == "INTERACTION_STATUS_UNSPECIFIED":
        return None
    return bool(status.name == "IDLE")


def audio_tokens(details: list[types.ModalityTokenCount] | None) -> int | None:
    """The audio part of a `usageMetadata` token count (None when not itemised)."""
    if not details:
        return None
    return sum(d.token_count or 0 for d in details
               if d.modality is not None and d.modality.name == "AUDIO")


def chunk_text(message: Message) -> str | None:
    """The text a model chunk adds to the turn (its parts, else its output transcription); None
    when the message carries no model turn."""
    sc = message.server_content
    if sc is None or sc.model_turn is None:
        return None
    text = "".join(p.text or "" for p in sc.model_turn.parts or [] if not p.thought)
    if not text and sc.output_transcription is not None:
        text = sc.output_transcription.text or ""
    return text


def only_model_turn(message: Message) -> bool:
    """A plain model chunk: nothing in it but `serverContent.modelTurn` (and transcriptions)."""
    sc = message.server_content
    return (
        sc is not None
        and not (sc.turn_complete or sc.generation_complete or sc.interrupted)
        and message.usage_metadata is None
        and message.tool_call is None
        and message.tool_call_cancellation is None
        and message.go_away is None
        and message.session_resumption_update is None
    )


def translate(message: Message, *, generation: int, now: float, lag: float) -> list[Event]:
    """The core's events for everything in a message but its model chunk, in the order the
    core must see them. `lag`: how long the message may have waited before `now` (a bound on
    when a resumption update arrived)."""
    gen = generation
    sc = message.server_content
    events: list[Event] = []
    if sc is not None:
        if sc.generation_complete:
            events.append(GenerationComplete(at=now, generation=gen))
        if sc.interrupted:
            events.append(Interrupted(at=now, generation=gen))
    usage = message.usage_metadata
    if usage is not None and usage.prompt_token_count:
        events.append(Usage(
            at=now, generation=gen, prompt_tokens=usage.prompt_token_count,
            total_tokens=usage.total_token_count, response_tokens=usage.response_token_count,
            prompt_audio_tokens=audio_tokens(usage.prompt_tokens_details),
            response_audio_tokens=audio_tokens(usage.response_tokens_details)))
    idle = interaction_idle(sc)
    if sc is not None and sc.turn_complete:
        events.append(TurnComplete(at=now, generation=gen, interaction_idle=idle))
    elif idle is not None:
        events.append(InteractionStatus(at=now, generation=gen, idle=idle))
    if message.tool_call is not None:
        ids = tuple(c.id or "" for c in message.tool_call.function_calls or [])
        events.append(ToolCall(at=now, generation=gen, ids=ids,
                               keys=call_keys(message.tool_call)))
    if message.tool_call_cancellation is not None:
        events.append(ToolCallCancellation(
            at=now, generation=gen, ids=tuple(message.tool_call_cancellation.ids or ())))
    if message.go_away is not None:
        events.append(GoAway(at=now, generation=gen,
                             time_left=parse_time_left(message.go_away.time_left)))
    update = message.session_resumption_update
    if update is not None:
        index = update.last_consumed_client_message_index
        events.append(ResumptionUpdate(
            at=now, generation=gen, handle=update.new_handle, resumable=bool(update.resumable),
            last_consumed_index=int(index) if index is not None else None, lag=lag))
    return events


def call_keys(tool_call: types.LiveServerToolCall) -> tuple[str, ...]:
    """Each call's name and arguments as canonical text: an identical call repeated in a turn
    has the same key (`core.toolcalls`)."""
    return tuple(
        call_key(c.name or "", json.dumps(c.args or {}, sort_keys=True, default=str))
        for c in tool_call.function_calls or []
    )
