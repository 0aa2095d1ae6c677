"""Who holds a session's memory: tracemalloc allocations grouped by owner, the journal walked.

`by_owner` puts each allocation still held (a tracemalloc snapshot compared with one taken before
the sessions started) under the owner of the code that made it, by the file of its innermost
frame: the journal's entries and payloads, the session shell, the core, asyncio's tasks and
timers, TLS and WebSocket buffers, the SDK's objects. `journal_walk` counts what the sessions'
journals hold right now (entries, their payloads, packed runs counted per chunk, the pool of
reused entries) and the floor:
the bytes of input no handle covers yet that a resume would still send, which no journal can
hold less than.
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Iterable
from typing import Any

from ..aio import frames
from ..core.events import InputKind
from ..core.journal import Packed

#: owner: path fragments of the innermost frame's file (first match wins, in this order)
OWNERS: dict[str, tuple[str, ...]] = {
    #: the audio bytes it sends (those the journal holds stay: see `journal_walk`), the
    #: benchmark's own records (the same for both sides)
    "application (its audio, the benchmark)": ("/statemachine/bench/",),
    "journal payloads": ("/statemachine/aio/frames.py",),
    "journal entries and pool": ("/statemachine/core/journal.py",
                                 "<attrs generated init statemachine.core.journal.Entry>"),
    "core (engine, records, events)": ("/statemachine/core/", "<attrs generated"),
    "session shell (outbox, reader, writer)": ("/statemachine/aio/", "/statemachine/"),
    "TLS and socket buffers": ("/asyncio/sslproto.py", "/ssl.py", "/asyncio/selector_events.py",
                               "/asyncio/transports.py"),
    "WebSocket (frames, deflate)": ("/websockets/",),
    "tasks, futures and timers": ("/asyncio/",),
    "SDK objects (pydantic, configs)": ("/google/genai/", "/pydantic", "/copy.py"),
    "state machine (transitions)": ("/transitions/",),
}
OTHER = "other"
#: owners whose memory is per connection, not per session: a session being rotated when the
#: snapshot is taken holds two connections or none for a moment
CONNECTION_OWNERS = ("TLS and socket buffers", "WebSocket (frames, deflate)")


def owner(filename: str) -> str:
    for name, parts in OWNERS.items():
        if any(p in filename for p in parts):
            return name
    return OTHER


def by_owner(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> dict[str, int]:
    """Bytes allocated between the snapshots and still held, by owner."""
    out: dict[str, int] = {}
    for stat in after.compare_to(before, "filename"):
        name = owner(stat.traceback[0].filename)
        out[name] = out.get(name, 0) + stat.size_diff
    return out


def _payload_bytes(payload: Any) -> int:
    """What a journaled payload weighs (a packed run's: its lists and each chunk's bytes)."""
    if type(payload) is Packed:
        return (sys.getsizeof(payload) + sys.getsizeof(payload.heads)
                + sys.getsizeof(payload.created) + sys.getsizeof(payload.sent)
                + sum(map(sys.getsizeof, payload.heads)))
    return sys.getsizeof(payload) + (sum(map(sys.getsizeof, payload))
                                     if type(payload) is tuple else 0)


def input_bytes(entry: Any) -> int:
    """The bytes of input an entry stands for, as the application sent them (audio: PCM)."""
    payload = entry.payload
    if payload is None:
        return 0
    size = frames.data_size(payload)
    if size is not None:
        return size
    if entry.kind is InputKind.AUDIO and isinstance(payload, dict):
        audio = payload.get("audio")
        data = audio.get("data") if isinstance(audio, dict) else getattr(audio, "data", None)
        if isinstance(data, bytes | bytearray):
            return len(data)
    return len(repr(payload))


def _entry_bytes(entry: Any) -> int:
    """An entry and the numbers it alone holds (its payload apart)."""
    size = sys.getsizeof(entry)
    for value in (entry.created_at, entry.sent_at, entry.seq, entry.sent_index):
        if isinstance(value, float) or (isinstance(value, int) and not -5 <= value <= 256):
            size += sys.getsizeof(value)
    return size


def journal_walk(sessions: Iterable[Any], now: float) -> dict[str, float]:
    """Totals over `sessions` (LiveSessions) of what their journals hold at `now`: entries (and
    the inputs they stand for), payloads, reused entries waiting in the pool, and the floor:
    input bytes of uncovered entries a resume would send (audio within the replay window)."""
    out = {"entries": 0.0, "inputs": 0.0, "entry_bytes": 0.0, "payloads": 0.0,
           "payload_bytes": 0.0, "pool": 0.0, "pool_bytes": 0.0, "floor_bytes": 0.0}
    for session in sessions:
        core = session.core
        journal = core.journal
        staleness = core.policy.replay.audio_staleness
        out["inputs"] += len(journal)
        for entry in journal.entries():  # as held: a run is one entry
            out["entries"] += 1
            out["entry_bytes"] += _entry_bytes(entry)
            payload = entry.payload
            if type(payload) is Packed:  # a packed run: each chunk within the window
                out["payloads"] += entry.run
                out["payload_bytes"] += _payload_bytes(payload)
                out["floor_bytes"] += sum(
                    frames.data_size(payload.payload(k)) or len(repr(payload.heads[k]))
                    for k, at in enumerate(payload.created) if now - at <= staleness)
            elif payload is not None:
                out["payloads"] += 1
                out["payload_bytes"] += _payload_bytes(payload)
                if entry.kind is not InputKind.AUDIO or now - entry.created_at <= staleness:
                    out["floor_bytes"] += input_bytes(entry)
        for entry in journal.pool():
            out["pool"] += 1
            out["pool_bytes"] += _entry_bytes(entry)
    return out


def open_connections() -> int:
    """TLS connections whose protocol (and its 256 KB read buffer) is still alive."""
    import gc
    from asyncio import sslproto

    return sum(1 for o in gc.get_objects() if type(o) is sslproto.SSLProtocol)
