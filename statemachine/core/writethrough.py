"""What a crash may cost, decided here: which inputs are written through to the store before
they go on the wire, and what the store is told of the audio it does not hold.

A worker can die (SIGKILL, an OOM kill) between sending an input and the handle that covers it.
Turn inputs, tool responses, context updates and every other input that is not audio or video
are **written through**: the core asks the store to write the entry (`WriteJournal`) and sends
it, and every input after it, only once the store answered (`StoreDone`). The next worker that
opens the key reads them back and replays them as a local resume would. They are a few per
turn, so the wait (one store round trip) is paid a few times per turn, not per audio chunk.

Audio (50 chunks a second) and video frames are not stored per chunk: a store write each would
cost more than the session. Instead each store write carries an **audio mark**: how many audio
chunks no handle covers, from when to when. After a crash the next worker reports that gap
(`AudioGap`, `at_least`: the worker may have taken more after its last write); the mark is also
refreshed with each lease renewal while audio flows.

While the store is down (degraded) inputs go out at once, unwritten; once it answers again
every input it misses is written (`resync`). A crash in between loses them, as the
`StoreDegraded` notice says.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from .events import InputKind
from .journal import OWED, Entry

#: kinds never written through (their volume is the session's bulk)
BULK = frozenset({InputKind.AUDIO, InputKind.VIDEO})


def written_through(kind: InputKind) -> bool:
    """Whether an input of this kind is written to the store before it goes on the wire."""
    return kind not in BULK


def unstored(entries: Iterable[Entry]) -> tuple[Entry, ...]:
    """Entries to write through that the store does not hold (after it was down)."""
    return tuple(e for e in entries if e.seq != OWED and not e.stored and not e.storing
                 and e.kind not in BULK)


def audio_mark(entries: Iterable[Entry], wall_of: Callable[[float], float]) -> str:
    """The audio no handle covers, encoded for the store ("" when there is none): first and
    last chunk's Unix time and how many chunks. `wall_of` turns the core's clock into Unix
    time."""
    first = last = None
    chunks = 0
    for entry in entries:
        if entry.kind is InputKind.AUDIO:
            chunks += entry.run  # a run of stale audio stands for several chunks
            if first is None:
                first = entry.created_at
            last = entry.created_at
    if first is None or last is None:
        return ""
    return json.dumps({"since": round(wall_of(first), 3), "until": round(wall_of(last), 3),
                       "chunks": chunks})


def read_mark(mark: str | None) -> tuple[float, float, int] | None:
    """(since, until, chunks) from an audio mark, None when there is none or it is unreadable."""
    if not mark:
        return None
    try:
        data = json.loads(mark)
        return float(data["since"]), float(data["until"]), int(data["chunks"])
    except (ValueError, KeyError, TypeError):
        return None
