"""The fleet figures tell input a saturated server had not read when the run closed a session
from input a rotation lost without a notice, by identity (`statemachine/bench/ledger.py`).
The real SDK against the emulator, with the benchmark's own session code."""

from __future__ import annotations

import asyncio
import struct
from collections import Counter

from statemachine import websocket_args
from statemachine.bench import capacity
from statemachine.bench.ledger import Ledger, split
from statemachine.emulator import LiveEmulator

#: wall seconds per second of the session's time: 4 ms chunks, a turn every 2 s
PACE = 0.2


class Watched(list[str]):
    """A list only ever appended to, with a wait for how long it gets."""

    def __init__(self) -> None:
        super().__init__()
        self._wanted = 0
        self._reached = asyncio.Event()

    def append(self, identity: str) -> None:
        super().append(identity)
        if len(self) >= self._wanted:
            self._reached.set()

    async def reach(self, count: int) -> None:
        self._wanted = count
        if len(self) < count:
            self._reached.clear()
            await self._reached.wait()


def test_each_seq_names_the_input_the_emulator_records() -> None:
    """Journal numbers run over audio and turns alike, in the order sent; a ledger gives back
    the identity the emulator records for each (`track_inputs`), and None past its inputs."""
    ledger = Ledger(7)
    ledger.audio_sent()  # seq 1
    ledger.text_sent("s7 t1")  # seq 2
    ledger.audio_sent()  # seq 3
    ledger.audio_sent()  # seq 4
    audio = ["a:" + struct.pack(">II", 7, k).hex() for k in (1, 2, 3)]
    assert [ledger.identity(s) for s in range(6)] == [None, audio[0], "t:s7 t1", audio[1],
                                                      audio[2], None]
    assert ledger.inputs == 4
    for seq in (3, 4, 1):  # a resume reports a run seq by seq; another drop comes later
        ledger.dropped(seq)
    assert ledger.dropped_identities() == [audio[1], audio[2], audio[0]]


def test_split_counts_each_missing_input_once() -> None:
    """Reported dropped first, then held unread at the close; the rest is lost."""
    losses = split(["a", "b", "c", "d", "e"], Counter({"a": 1}), {"b", "c"}, {"c", "d"})
    assert losses == {"missing": 4, "dropped_missing": 2, "lost_unread_at_close": 1, "lost": 1,
                      "lost_examples": ["e"]}


async def test_audio_a_stalled_server_never_read_is_unread_at_close_not_lost() -> None:
    """A session of the benchmark streams audio; after its first turn's handle the server stops
    reading (a saturated one); the run ends and closes the session, whose last turn is never
    answered. The audio written
    after the stall never reached the model: it was still held uncovered in the session's
    journal when it was closed, so it counts as `lost_unread_at_close`, and nothing as lost.
    Counted as before (missing minus the drops reported), it was all lost."""
    loop = asyncio.get_running_loop()
    async with LiveEmulator(capacity.emulator_settings(pace=PACE)) as emu:
        client = emu.client(**websocket_args())
        probe = capacity.Probe(loop, loop.time(), loop.time() + 60)
        probe.sent = sent = Watched()
        emu.issued_handles = handles = Watched()
        stop = asyncio.Event()
        unconfirmed: list[int] = []
        session = loop.create_task(capacity._ours(0, client, probe, stop, 0.0, 1, unconfirmed,
                                                  pace=PACE))
        async with asyncio.timeout(30):
            # the handle after setup, then the one after the first turn: the next turn is due
            # in 2 s, so no handle comes after the stall (one would be issued without the
            # audio the server left unread: the limit of a round-trip window, docs/limits.md)
            await handles.reach(2)
            emu.connections[-1].stop_reading()
            await sent.reach(len(sent) + 100)  # the sends go on: the journal holds them
            stop.set()
            await session
        consumed: Counter[str] = Counter()
        for s in emu.sessions:
            consumed.update(s.context.consumed)
        emu.connections[-1].drop()  # the stalled socket would hold the emulator's shutdown
    losses = split(probe.sent, consumed, set(probe.dropped_ids), set(probe.unread_ids))
    assert probe.unmatched == 0 and unconfirmed[0] > 0
    assert losses["missing"] >= 100 - 10  # a few may have been read before the window closed
    assert losses["lost"] == 0, losses
    assert losses["lost_unread_at_close"] + losses["dropped_missing"] == losses["missing"]
    assert losses["lost_unread_at_close"] >= 1
    # every identity the ledger named is one the application sent
    assert set(probe.unread_ids) | set(probe.dropped_ids) <= set(probe.sent) | {"t:s0 end"}
    assert losses["missing"] - probe.dropped > 0  # the count alone called it lost
