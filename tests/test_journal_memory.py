"""What a busy session's journal holds: payloads let go of once past the replay window, stale
audio folded into runs that still stand for every chunk, and a pool of reused entries bounded
by what the session needs now (issue 28)."""

from __future__ import annotations

from typing import Any

from statemachine import Policy
from statemachine.core import Lifecycle
from statemachine.core.actions import InputDropped, Resumed, Send
from statemachine.core.events import (
    ClientInput,
    Close,
    Connect,
    ConnectionLost,
    InputKind,
    Latency,
    ResumptionUpdate,
    SetupComplete,
)
from statemachine.core.journal import RELEASE_SLACK, inputs
from statemachine.core.policy import ReplayPolicy

from .drivers import Driver
from .test_core import notices

CHUNK = 0.02


def _session(staleness: float = 1.0) -> tuple[Lifecycle, Driver]:
    engine = Lifecycle(policy=Policy(replay=ReplayPolicy(audio_staleness=staleness)))
    d = Driver(engine)
    d.feed(Connect(at=d.tick()))
    d.feed(SetupComplete(at=d.tick(), generation=d.gen))
    d.feed(Latency(at=d.tick(), generation=1, rtt=0.01))
    return engine, d


def _audio(d: Driver, n: int, payload: Any = "pcm") -> list[Send]:
    out = []
    for _ in range(n):
        out += [a for a in d.feed(ClientInput(at=d.tick(CHUNK), kind=InputKind.AUDIO,
                                              payload=payload)) if isinstance(a, Send)]
    return out


def test_payloads_past_the_replay_window_are_let_go_of_within_the_slack() -> None:
    """Seconds of 20 ms chunks between two handles: only the replay window's payloads stay
    (plus at most `RELEASE_SLACK`), whatever the number of chunks."""
    engine, d = _session(staleness=1.0)
    _audio(d, 500)  # 10 s of audio, no handle
    held = [e for e in engine.journal if e.payload is not None]
    assert len(engine.journal) == 500
    assert all(d.now - e.created_at <= 1.0 + RELEASE_SLACK + CHUNK for e in held)
    assert len(held) <= (1.0 + RELEASE_SLACK) / CHUNK + 2


def test_stale_audio_is_one_entry_per_run_and_still_every_chunk_is_accounted_for() -> None:
    """Stale audio is folded into runs: the journal holds a handful of entries for 10 s of
    chunks, yet counts, iterates and drops each chunk: a resume reports every one of them
    dropped (with its own seq) and replays the rest."""
    engine, d = _session(staleness=1.0)
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="h0", resumable=True))
    _audio(d, 500)
    held = engine.journal.entries()
    assert len(held) < 70  # 1.1 s of live chunks and a run or two, not 500 entries
    assert len(engine.journal) == 500 == len(list(engine.journal))
    assert [e.seq for e in engine.journal] == list(range(1, 501))
    assert inputs(held) == 500
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    dropped = sorted(n.seq for n in notices(d, InputDropped))
    replayed = [a.entry.seq for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert sorted(dropped + replayed) == list(range(1, 501))
    assert not set(dropped) & set(replayed)
    [resumed] = notices(d, Resumed)
    assert resumed.dropped == len(dropped) and engine.counters.dropped == len(dropped)
    assert len(engine.journal) == len(replayed)


def test_a_handle_covers_a_run_as_the_chunks_it_stands_for() -> None:
    """A handle that covers a run confirms each of its chunks (and the pool takes back
    entries, never more than one per chunk made)."""
    engine, d = _session(staleness=1.0)
    _audio(d, 300)
    assert len(engine.journal.entries()) < 100
    d.tick(0.1)
    before = engine.counters.confirmed
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="h1", resumable=True))
    assert engine.counters.confirmed - before == 300
    assert len(engine.journal) == 0 and engine.journal.entries() == ()
    assert 0 < len(engine.journal.pool()) <= 300


def test_the_end_of_the_session_reports_each_unsent_chunk_of_a_run() -> None:
    """Chunks sent while no connection was up go stale and fold; when the session ends they
    are reported dropped one by one, as before."""
    engine, d = _session(staleness=0.5)
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1011, reason="bad"))
    seqs = [e.seq for e in engine.journal]
    _audio(d, 100)  # no connection: journaled, never sent
    unsent = [e.seq for e in engine.journal if e.seq not in seqs]
    assert len(unsent) == 100 and len(engine.journal.entries()) < 100
    d.feed(Close(at=d.tick()))
    ended = [n.seq for n in notices(d, InputDropped) if "ended before" in n.reason]
    assert sorted(ended) == unsent
    assert len(engine.journal) == 0


def test_the_pool_holds_what_the_session_needs_now() -> None:
    """Covered audio entries are reused, but the pool never holds more than the audio entries
    the session made since audio was last covered; a session that stops sending keeps none
    after its next handle."""
    engine, d = _session(staleness=1.0)
    _audio(d, 200)
    d.tick(0.5)
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="h1", resumable=True))
    pool = engine.journal.pool()
    assert 0 < len(pool) <= 200
    _audio(d, 50)  # a quieter stretch: it needs 50
    d.tick(0.5)
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="h2", resumable=True))
    assert len(engine.journal.pool()) <= 50
    d.tick(0.5)  # silence: nothing made since
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="h3", resumable=True))
    assert engine.journal.pool() == ()


def test_a_run_never_takes_in_audio_a_writer_still_holds() -> None:
    """Audio handed to a writer and not written yet keeps its payload and its own entry; once
    written it folds in at a later look."""
    engine, d = _session(staleness=0.5)
    stuck = engine.feed(ClientInput(at=d.tick(CHUNK), kind=InputKind.AUDIO, payload="q"))
    _audio(d, 100)
    entries = engine.journal.entries()
    assert any(e.payload == "q" and e.run == 1 for e in entries)
    [send] = [a for a in stuck if isinstance(a, Send)]
    engine.written(send.entry, 1, d.now)
    _audio(d, 30)
    assert all(e.payload != "q" for e in engine.journal)
    assert len(engine.journal) == 131
