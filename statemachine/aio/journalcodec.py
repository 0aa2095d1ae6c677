"""Journal entries as text for a store, and back: what the next worker needs to replay them.

An entry's payload is what the application passed to a `send_*` call: plain values, bytes and
google-genai's pydantic types. Each is tagged so it comes back as it went in (a model as its
JSON, through its own class; bytes as base64). Times go to the store as Unix time (stores are
shared between processes) and come back on the reading session's clock.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from google.genai import types
from pydantic import BaseModel

from ..core.events import InputKind
from ..core.journal import Entry


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, BaseModel):
        return {"$m": type(value).__name__, "j": value.model_dump_json(exclude_none=True)}
    if isinstance(value, tuple):  # audio is journaled as (bytes, MIME text): kept a tuple
        return {"$t": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"$d": {str(k): _encode(v) for k, v in value.items()}}
    raise TypeError(f"cannot store a {type(value).__name__} in the journal")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$t" in value:
        return tuple(_decode(v) for v in value["$t"])
    if "$b" in value:
        return base64.b64decode(value["$b"])
    if "$m" in value:
        model = getattr(types, value["$m"], None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ValueError(f"unknown google-genai type {value['$m']!r} in a stored entry")
        return model.model_validate_json(value["j"])
    return {k: _decode(v) for k, v in value["$d"].items()}


def encode(entry: Entry, wall_of: Callable[[float], float]) -> str:
    """`entry` as text; `wall_of` turns the session's clock into Unix time."""
    return json.dumps({
        "seq": entry.seq, "kind": entry.kind.value, "payload": _encode(entry.payload),
        "created": wall_of(entry.created_at), "turn_complete": entry.turn_complete,
        "trigger": entry.trigger, "tool_ids": list(entry.tool_ids), "sends": entry.sends,
        "answered": entry.answered, "reply_text": entry.reply_text, "held": entry.held,
        "held_chars": entry.held_chars, "crossed": entry.crossed, "run": entry.run,
    }, separators=(",", ":"))


def decode(text: str, clock_of: Callable[[float], float]) -> Entry:
    """An entry from `encode`'s text; `clock_of` turns Unix time into the session's clock."""
    data = json.loads(text)
    return Entry(
        seq=int(data["seq"]), kind=InputKind(data["kind"]), payload=_decode(data["payload"]),
        created_at=clock_of(float(data["created"])), turn_complete=bool(data["turn_complete"]),
        trigger=bool(data["trigger"]), tool_ids=tuple(data["tool_ids"]), sends=int(data["sends"]),
        answered=bool(data["answered"]), reply_text=str(data["reply_text"]),
        held=bool(data["held"]), held_chars=int(data["held_chars"]),
        crossed=bool(data["crossed"]), run=int(data.get("run", 1)), stored=True)
