"""Which input each journal sequence number of one of ours' benchmark sessions stands for, so
the fleet, scale and capacity figures tell losses apart by identity, not by count.

A benchmark input's identity is what the emulator records of it (`track_inputs`): an audio
chunk by its first 8 bytes (the session's index and the chunk's number, `capacity._speak`), a
text turn by its text. The engine numbers a session's client messages 1, 2, 3... in the order
they are sent (`Engine._on_input`), so a ledger needs to keep only where the text turns fell:
the k-th audio chunk is the input whose number is k plus the turns before it. Nothing per
chunk is kept (drops, reported seq by seq, are kept as runs of consecutive numbers), so the
traced memory of a busy session does not grow with what it sends.

At the end of a run each session's inputs fall in one of four sets: taken in by the model,
reported dropped (`InputDropped`, by its seq), still held uncovered in the journal when the
session closed (no handle covered it yet: a saturated server may simply not have read it), and
the rest. Only the rest is a real loss: input the library lost without a notice (`split`).
"""

from __future__ import annotations

import bisect
import struct
from array import array
from collections.abc import Collection, Iterable
from typing import Any

from ..core.journal import OWED


class Ledger:
    """One session's map from its journal sequence numbers to input identities."""

    __slots__ = ("_drops", "audio", "names", "session", "texts")

    def __init__(self, session: int) -> None:
        self.session = session
        self.audio = 0  # audio chunks sent so far
        self.texts = array("q")  # the seq of each text turn, ascending
        self.names: list[str] = []  # each text turn's identity
        #: seqs reported dropped (`InputDropped`), as runs: first, last, first, last, ...
        self._drops = array("q")

    @property
    def inputs(self) -> int:
        """Client messages sent so far (the engine's last seq)."""
        return self.audio + len(self.texts)

    def audio_sent(self) -> None:
        self.audio += 1

    def text_sent(self, text: str) -> None:
        self.texts.append(self.inputs + 1)
        self.names.append("t:" + text)

    def dropped(self, seq: int) -> None:
        """`InputDropped(seq=seq)` was reported."""
        drops = self._drops
        if drops and drops[-1] + 1 == seq:
            drops[-1] = seq
        else:
            drops.extend((seq, seq))

    def dropped_identities(self) -> list[str]:
        drops = self._drops
        return self.identities(s for k in range(0, len(drops), 2)
                               for s in range(drops[k], drops[k + 1] + 1))

    def identity(self, seq: int) -> str | None:
        """The identity of the input numbered `seq`, or None for a number no input of the
        ledger stands behind."""
        if seq < 1 or seq > self.inputs:
            return None
        k = bisect.bisect_left(self.texts, seq)
        if k < len(self.texts) and self.texts[k] == seq:
            return self.names[k]
        return "a:" + struct.pack(">II", self.session, seq - k).hex()

    def identities(self, seqs: Iterable[int]) -> list[str]:
        return [x for x in map(self.identity, seqs) if x is not None]

    def uncovered(self, entries: Iterable[Any]) -> list[str]:
        """The identities of the inputs a journal's `entries()` still hold that no handle
        covers: every entry (a run stands for `run` consecutive inputs from its seq) but one a
        handle holds already (`held`: the resumed session has that turn)."""
        return self.identities(s for e in entries if e.seq != OWED and not e.held
                               for s in range(e.seq, e.seq + e.run))


def split(sent: Iterable[str], consumed: Collection[str], dropped: Collection[str],
          unread_at_close: Collection[str], examples: int = 10) -> dict[str, Any]:
    """What the model never took in of `sent`, told apart by identity: `dropped_missing`
    (reported dropped), `lost_unread_at_close` (held uncovered by its session when the session
    was closed: the server may not have read it yet, and closing is the application's choice),
    and `lost`: the rest, lost without a notice (a breach of the library's promise), with the
    identities of the first `examples` of it (`lost_examples`) to look for in the audit."""
    missing = [k for k in sent if k not in consumed]
    dropped_missing = unread = 0
    lost: list[str] = []
    for k in missing:
        if k in dropped:
            dropped_missing += 1
        elif k in unread_at_close:
            unread += 1
        else:
            lost.append(k)
    return {"missing": len(missing), "dropped_missing": dropped_missing,
            "lost_unread_at_close": unread, "lost": len(lost),
            "lost_examples": lost[:examples]}
