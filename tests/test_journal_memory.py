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


# -- packed runs: written audio within the replay window, one entry for many chunks ----------

MIME = '"audio/pcm;rate=16000"'


def _chunks(d: Driver, n: int, start: int = 0) -> list[tuple[bytes, str]]:
    """n journaled chunks (bytes, MIME text), each its own bytes, sent 20 ms apart."""
    out = []
    for k in range(start, start + n):
        chunk = (k.to_bytes(4, "big") * 160, MIME)
        d.feed(ClientInput(at=d.tick(CHUNK), kind=InputKind.AUDIO, payload=chunk))
        out.append(chunk)
    return out


def _replayed(d: Driver, generation: int) -> list[Send]:
    return [a for a in d.actions if isinstance(a, Send) and a.generation == generation]


def test_written_audio_within_the_window_is_packed_and_still_every_chunk_is_its_own() -> None:
    """Two seconds of written chunks, none stale yet, are held in a handful of entries; the
    journal still counts and iterates each chunk with its own payload, creation and send time
    and connection index, and a resume sends each chunk again, in order, as it was sent."""
    engine, d = _session(staleness=3.0)
    [first] = [a for a in d.feed(ClientInput(at=d.tick(CHUNK), kind=InputKind.AUDIO,
                                             payload=(b"x" * 640, MIME))) if isinstance(a, Send)]
    index = first.entry.sent_index
    assert index is not None
    sent = [(b"x" * 640, MIME), *_chunks(d, 99)]
    assert len(engine.journal) == 100
    assert len(engine.journal.entries()) < 20  # not one per chunk
    members = list(engine.journal)
    assert [e.seq for e in members] == list(range(1, 101))
    assert [e.payload for e in members] == sent
    assert [e.sent_index for e in members] == list(range(index, index + 100))
    assert all(e.run == 1 and e.sent_at is not None for e in members)
    created = [e.created_at for e in members]
    assert created == sorted(created) and len(set(created)) == 100
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = _replayed(d, 2)
    assert [a.entry.seq for a in replay] == list(range(1, 101))
    assert [a.entry.payload for a in replay] == sent
    assert [a.entry.created_at for a in replay] == created
    assert not notices(d, InputDropped)


def test_a_handle_covers_the_chunks_of_a_packed_run_sent_a_round_trip_before_it() -> None:
    """Gemini API: a handle covers the chunks written at least a round trip before it arrived,
    one by one, even inside a packed run; the rest stays, payloads and all, and is replayed."""
    engine, d = _session(staleness=5.0)
    sent = _chunks(d, 100)
    members = list(engine.journal)
    assert len(engine.journal.entries()) < 20
    # arrives right after chunk 60 was written: the crossing window is the rtt (0.01) + slack
    cut = members[59].sent_at
    assert cut is not None
    window = 0.01 + engine.policy.replay.crossing_slack
    d.now = cut + window + 1e-6  # chunks 1..60 went out before `at - window`, 61.. after
    before = engine.counters.confirmed
    d.feed(ResumptionUpdate(at=d.now, generation=1, handle="h1", resumable=True))
    expected = [e.seq for e in members if e.sent_at is not None and e.sent_at < d.now - window]
    assert engine.counters.confirmed - before == len(expected) == 60
    left = list(engine.journal)
    assert [e.seq for e in left] == list(range(61, 101))
    assert [e.payload for e in left] == sent[60:]
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    assert [a.entry.seq for a in _replayed(d, 2)] == list(range(61, 101))
    assert [a.entry.payload for a in _replayed(d, 2)] == sent[60:]


def test_vertex_index_covers_a_packed_run_chunk_by_chunk() -> None:
    """Vertex: the server's last consumed index falls inside a packed run: exactly the chunks
    up to it leave; the others are replayed."""
    from statemachine.core.policy import Backend

    engine = Lifecycle(backend=Backend.VERTEX,
                       policy=Policy(replay=ReplayPolicy(audio_staleness=5.0)))
    d = Driver(engine)
    d.feed(Connect(at=d.tick()))
    d.feed(SetupComplete(at=d.tick(), generation=1))
    assert engine.transparent
    sent = _chunks(d, 80)
    assert len(engine.journal.entries()) < 20
    index = {e.seq: e.sent_index for e in engine.journal}
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="H", resumable=True,
                            last_consumed_index=index[37]))
    assert [e.seq for e in engine.journal] == list(range(38, 81))
    assert engine.counters.confirmed == 37
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = _replayed(d, 2)
    assert [a.entry.seq for a in replay] == list(range(38, 81))
    assert [a.entry.payload for a in replay] == sent[37:]


def test_a_packed_run_going_stale_lets_go_of_its_old_chunks_and_each_is_reported() -> None:
    """A packed run whose first chunks pass the replay window lets go of their payloads (they
    fold into a stale run) and keeps the rest; a resume reports each stale chunk dropped, in
    order, with the reason, and replays the others as they were sent."""
    engine, d = _session(staleness=1.0)
    sent = []
    for k in range(150):  # 3 s: the first 2 s go stale; what is within the window stays whole
        sent += _chunks(d, 1, start=k)
        assert all(e.payload == sent[e.seq - 1] for e in engine.journal
                   if e.payload is not None)
        # every chunk of the last second keeps its payload (a run's young chunks too)
        kept = sum(e.run for e in engine.journal.entries() if e.payload is not None)
        assert kept >= min(k + 1, round(1.0 / CHUNK) - 1)
    held = [e for e in engine.journal.entries() if e.payload is not None]
    assert len(engine.journal.entries()) < 20
    assert sum(e.run for e in held) <= (1.0 + RELEASE_SLACK) / CHUNK + 2
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    dropped = notices(d, InputDropped)
    replay = _replayed(d, 2)
    assert [n.seq for n in dropped] == list(range(1, len(dropped) + 1))  # one each, in order
    assert all(n.reason == "audio older than the replay window (1s)" for n in dropped)
    assert [a.entry.seq for a in replay] == list(range(len(dropped) + 1, 151))
    assert [a.entry.payload for a in replay] == sent[len(dropped):]
    assert all(d.now - a.entry.created_at <= 1.0 for a in replay)
    assert 45 <= len(replay) <= 51


def test_chunks_of_another_shape_or_connection_are_not_packed_together() -> None:
    """A run holds chunks alike in what it keeps once: one MIME text, one connection, one
    count of sends. A chunk of another MIME type starts a run of its own, and whole payloads
    (not pairs) come back whole."""
    engine, d = _session(staleness=5.0)
    a = _chunks(d, 30)
    other = (b"\x01" * 640, '"audio/pcm;rate=24000"')
    d.feed(ClientInput(at=d.tick(CHUNK), kind=InputKind.AUDIO, payload=other))
    b = _chunks(d, 30, start=30)
    whole = [bytes([k]) * 640 for k in range(30)]
    for w in whole:
        d.feed(ClientInput(at=d.tick(CHUNK), kind=InputKind.AUDIO, payload=w))
    assert len(engine.journal.entries()) < 20
    assert [e.payload for e in engine.journal] == [*a, other, *b, *whole]


def test_the_pool_holds_what_packing_frees_till_the_next_pass_not_the_whole_window() -> None:
    """Written chunks are packed every `RELEASE_SLACK` and their entries kept for the next
    chunks: the pool holds about as many as the session makes between two passes, never the
    hundreds of chunks it streams between two handles, nor the window's worth a resume sends
    again (unpacked, one entry each, then packed once written)."""
    engine, d = _session(staleness=2.0)
    per_pass = RELEASE_SLACK / CHUNK + 2
    for k in range(500):  # 10 s of audio, no handle
        _chunks(d, 1, start=k)
        assert len(engine.journal.pool()) <= per_pass
        if k == 300:  # a resume sends the window's chunks again
            d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
            d.feed(SetupComplete(at=d.tick(), generation=2))
            assert len(_replayed(d, 2)) > 90
    assert len(engine.journal) == 500 - len(notices(d, InputDropped))
    assert len(engine.journal.entries()) < 20
