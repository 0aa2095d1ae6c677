"""Hand-off and write-through are the core's decisions: checked on the sans-I/O core. When an
input waits for the store, what a hand-over holds, what a failed one does, what the next worker
replays and reports."""

from __future__ import annotations

import random
from typing import Any

from statemachine.core import Lifecycle, handoff
from statemachine.core.actions import (
    AudioGap,
    Ended,
    HandedOff,
    HandOffFailed,
    HandOver,
    InputDropped,
    Notify,
    Reclaim,
    ReplyInterrupted,
    SaveHandle,
    Send,
    TookOver,
    WriteJournal,
)
from statemachine.core.events import (
    ClientInput,
    Connect,
    ConnectionLost,
    HandOff,
    InputKind,
    LeaseLost,
    ModelOutput,
    SetupComplete,
    StoreDone,
    StoreFailed,
    StoreOp,
    Timer,
)
from statemachine.core.journal import Entry
from statemachine.core.persistence import Persistence
from statemachine.core.table import State
from statemachine.testing import Trace

from .drivers import Driver


def durable() -> tuple[Lifecycle, Driver, Trace]:
    trace = Trace()
    engine = Lifecycle(audit=trace.record, rng=random.Random(3),
                       persistence=Persistence(key="k", lease_ttl=3.0), wall_clock=lambda: 1e9)
    d = Driver(engine)
    d.feed(Connect(at=d.tick()))
    d.feed(SetupComplete(at=d.tick(), generation=d.gen))
    return engine, d, trace


def of(actions: list[Any], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def notices(actions: list[Any], kind: type) -> list[Any]:
    return [a.notice for a in actions if isinstance(a, Notify) and isinstance(a.notice, kind)]


def text(d: Driver, words: str) -> list[Any]:
    return d.feed(ClientInput(at=d.tick(), kind=InputKind.TEXT, payload={"text": words}))


def audio(d: Driver, n: int = 1) -> list[Any]:
    out: list[Any] = []
    for _ in range(n):
        out += d.feed(ClientInput(at=d.tick(0.02), kind=InputKind.AUDIO, payload="chunk"))
    return out


def test_a_turn_goes_on_the_wire_only_after_the_store_holds_it_and_order_is_kept() -> None:
    """A turn input is written through first; audio sent meanwhile waits behind it, and all of
    it goes out in order once the store answers. Audio alone is never written."""
    _, d, _ = durable()
    assert not of(audio(d), WriteJournal) and of(d.actions[-1:], Send)
    out = text(d, "hello")
    writes = of(out, WriteJournal)
    assert len(writes) == 1 and [e.kind for e in writes[0].put] == [InputKind.TEXT]
    assert not of(out, Send)
    assert not of(audio(d, 2), Send)  # behind the turn
    sent = of(d.feed(StoreDone(at=d.tick(), op=StoreOp.WRITE)), Send)
    assert [s.entry.kind for s in sent] == [InputKind.TEXT, InputKind.AUDIO, InputKind.AUDIO]


def test_a_store_that_fails_the_write_lets_input_go_and_gets_it_when_back() -> None:
    """A failed write-through degrades: the waiting input goes out at once, later turns are not
    held; once the store answers again, what it missed is written."""
    engine, d, _ = durable()
    text(d, "one")
    out = d.feed(StoreFailed(at=d.tick(), op=StoreOp.WRITE, error="unreachable"))
    assert [s.entry.payload for s in of(out, Send)] == [{"text": "one"}]
    assert engine.durable.degraded
    later = text(d, "two")
    assert of(later, Send) and not of(later, WriteJournal)
    d.fire_timer(Timer.STORE_RETRY)
    back = d.feed(StoreDone(at=d.tick(), op=StoreOp.RENEW))
    resync = of(back, WriteJournal)
    assert [e.payload for e in resync[0].put] == [{"text": "one"}, {"text": "two"}]


def test_covered_inputs_leave_the_store_only_with_the_handle_that_covers_them() -> None:
    """A turn the handle covers is forgotten in the same write as that handle, never before."""
    _, d, _ = durable()
    text(d, "one")
    d.feed(StoreDone(at=d.tick(), op=StoreOp.WRITE))
    seq = d.actions[-1].entry.seq
    d.handle()
    saves = of(d.actions, SaveHandle)
    assert saves and saves[-1].forget == (seq,)


def test_hand_off_waits_for_the_reply_holds_new_turns_and_hands_over_the_journal() -> None:
    """hand_off mid-reply: a new turn is held back, the hand-over comes at the safe point with
    the latest handle and every uncovered input (audio included); once the store has it the
    session ends, saying it was handed off, and later input is reported dropped."""
    engine, d, _ = durable()
    d.handle("h1")
    text(d, "question")
    d.feed(StoreDone(at=d.tick(), op=StoreOp.WRITE))
    d.feed(ModelOutput(at=d.tick(), generation=d.gen, text="answer"))
    d.feed(HandOff(at=d.tick(), limit=5.0))
    assert engine.state is State.STREAMING
    held = text(d, "held turn")
    assert not of(held, Send)  # held back: it would start a reply the hand-off cuts
    d.feed(StoreDone(at=d.tick(), op=StoreOp.WRITE))
    audio(d, 3)
    d.handle("h2")  # the reply ends and its handle comes: a safe point
    assert engine.state is State.HANDING_OFF
    over = of(d.actions, HandOver)[-1]
    assert over.record is not None and over.record.handle.startswith("h2")
    assert [e.kind for e in over.entries] == [InputKind.TEXT] + [InputKind.AUDIO] * 3
    audio(d, 2)  # after the hand-over was queued
    done = d.feed(StoreDone(at=d.tick(), op=StoreOp.HAND_OVER))
    assert engine.state is State.TERMINATED
    gap = notices(done, AudioGap)
    assert len(gap) == 1 and gap[0].chunks == 2 and not gap[0].at_least
    handed = notices(done, HandedOff)
    assert handed and handed[0].transferred == 4 and handed[0].cut == ""
    end = notices(done, Ended)[0]
    assert end.by_application and "handed off" in end.reason
    assert not of(done, WriteJournal) and not of(done, SaveHandle)  # the store is the next's


def test_hand_off_at_its_limit_cuts_the_reply_and_says_so() -> None:
    engine, d, _ = durable()
    d.handle("h1")
    text(d, "long question")
    d.feed(StoreDone(at=d.tick(), op=StoreOp.WRITE))
    d.feed(ModelOutput(at=d.tick(), generation=d.gen, text="a long"))
    d.feed(HandOff(at=d.tick(), limit=1.0))
    d.fire_timer(Timer.HAND_OFF)
    assert engine.state is State.HANDING_OFF
    assert notices(d.actions, ReplyInterrupted)
    over = of(d.actions, HandOver)[-1]
    assert "reply in flight" in over.cut
    assert [e.payload for e in over.entries] == [{"text": "long question"}]
    done = d.feed(StoreDone(at=d.tick(), op=StoreOp.HAND_OVER))
    assert "reply in flight" in notices(done, HandedOff)[0].cut


def test_a_failed_hand_over_takes_the_lease_back_and_goes_on_here() -> None:
    """The store fails the hand-over: the session reclaims its lease, says why, and goes on
    where it was (a resume replays what it holds, input sent meanwhile included)."""
    engine, d, _ = durable()
    d.handle("h1")
    d.feed(HandOff(at=d.tick(), limit=5.0))
    assert engine.state is State.HANDING_OFF
    out = d.feed(StoreFailed(at=d.tick(), op=StoreOp.HAND_OVER, error="timed out"))
    assert of(out, Reclaim)
    text(d, "meanwhile")
    back = d.feed(StoreDone(at=d.tick(), op=StoreOp.RECLAIM))
    failed = notices(back, HandOffFailed)
    assert failed and "timed out" in failed[0].reason
    assert engine.state is State.RESUMING and engine.handoff is None
    d.feed(SetupComplete(at=d.tick(), generation=d.gen))
    assert [a.entry.payload for a in of(d.actions[-4:], Send)] == [{"text": "meanwhile"}]


def test_a_hand_over_whose_answer_was_lost_but_that_another_worker_took_ends_here() -> None:
    engine, d, _ = durable()
    d.handle("h1")
    d.feed(HandOff(at=d.tick(), limit=5.0))
    d.feed(StoreFailed(at=d.tick(), op=StoreOp.HAND_OVER, error="connection reset"))
    done = d.feed(LeaseLost(at=d.tick()))  # the reclaim found another owner
    assert engine.state is State.TERMINATED and notices(done, HandedOff)


def test_a_worker_fenced_off_ends_and_never_writes_again() -> None:
    """A write refused because another worker owns the key ends the session, and its end
    writes nothing to the store (only the lease release, a no-op for a non-holder)."""
    engine, d, _ = durable()
    text(d, "one")
    out = d.feed(LeaseLost(at=d.tick()))
    assert engine.state is State.TERMINATED
    assert not of(out, WriteJournal) and not of(out, SaveHandle)


def restored(seq: int, kind: InputKind, **kw: Any) -> Entry:
    return Entry(seq=seq, kind=kind, payload={}, created_at=0.0, turn_complete=True,
                 trigger=kind is not InputKind.AUDIO, stored=True, sends=1, **kw)


def test_the_next_worker_replays_the_journal_and_reports_what_a_crash_cost() -> None:
    """Taking a key over after a crash: the journal is replayed once live (a tool response to
    a call the resumed handle cannot know is dropped, as a local resume does), the takeover is
    announced, and the audio the dead worker had is reported as a gap."""
    trace = Trace()
    engine = Lifecycle(audit=trace.record, persistence=Persistence(key="k"))
    d = Driver(engine)
    engine.restore("h", at=0.0, age=1.0)
    out = engine.restore_journal(
        [restored(7, InputKind.TEXT), restored(8, InputKind.TOOL_RESPONSE, tool_ids=("c1",))],
        handed_off=False, audio=(100.0, 101.5, 75))
    took = notices(out, TookOver)[0]
    assert took.restored == 2 and not took.handed_off
    gap = notices(out, AudioGap)[0]
    assert (gap.since, gap.until, gap.chunks, gap.at_least) == (100.0, 101.5, 75, True)
    assert [n.kind for n in notices(out, InputDropped)] == ["tool_response"]
    d.feed(Connect(at=d.tick()))
    assert engine.state is State.RESUMING
    d.feed(SetupComplete(at=d.tick(), generation=d.gen))
    assert [a.entry.seq for a in of(d.actions, Send)] == [7]
    new = text(d, "next")
    write = of(new, WriteJournal)[0]
    assert write.put[0].seq == 9  # numbering goes on
    assert write.audio == ""  # the dead worker's audio mark is reported once, then replaced


def test_a_hand_off_asked_for_before_a_drop_waits_for_the_next_connection() -> None:
    """The connection drops while the hand-off waits for its reply: the session resumes, the
    turn is replayed and answered, and the hand-off comes at the safe point after it (no reply
    is cut); its limit passing meanwhile makes it at once when the connection is up, and the
    record says the limit the application gave (5 s), not a placeholder."""
    engine, d, trace = durable()
    d.handle("h1")
    text(d, "question")
    d.feed(StoreDone(at=d.tick(), op=StoreOp.WRITE))
    d.feed(ModelOutput(at=d.tick(), generation=d.gen, text="half"))
    d.feed(HandOff(at=d.tick(), limit=5.0))
    d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1006))
    assert engine.state is State.RESUMING
    d.fire_timer(Timer.HAND_OFF)  # the limit passes with no connection
    assert engine.state is State.RESUMING
    d.feed(SetupComplete(at=d.tick(), generation=d.gen))
    assert engine.state is State.HANDING_OFF
    assert [e.payload for e in of(d.actions, HandOver)[-1].entries] == [{"text": "question"}]
    [deadline] = trace.named("transition", "hand_off_deadline")
    assert deadline["cause"]["limit"] == 5.0


def test_a_store_that_holds_nothing_of_another_worker_is_no_take_over() -> None:
    """What the store held decides whether the session took a key over: nothing (no entry,
    no hand-off marker, no audio mark) is told nothing; a hand-off marker alone is."""
    engine = Lifecycle(persistence=Persistence(key="k"))
    assert engine.restore_journal([], handed_off=False, audio=None) == []
    other = Lifecycle(persistence=Persistence(key="k"))
    took = notices(other.restore_journal([], handed_off=True, audio=None), TookOver)
    assert len(took) == 1 and took[0].handed_off and took[0].restored == 0


def test_a_drain_leaves_the_store_its_time_within_the_deadline() -> None:
    """The hand-off limit of a drain: 80% of the deadline, less when the store's write needs
    more of what is left, never below 50 ms."""
    assert handoff.drain_limit(25.0, 2.0) == 20.0
    assert handoff.drain_limit(5.0, 2.0) == 3.0
    assert handoff.drain_limit(1.0, 2.0) == 0.05
