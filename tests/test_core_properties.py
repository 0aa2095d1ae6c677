"""Random event sequences through the engine, with the invariants checked after every step."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from statemachine import Policy
from statemachine.core import Lifecycle
from statemachine.core.actions import (
    ArmTimer,
    CancelTimer,
    CloseConnection,
    InputDropped,
    Notify,
    OpenConnection,
    Send,
    ToolCallEnded,
    ToolCallRepeated,
)
from statemachine.core.events import (
    ClientInput,
    Close,
    Connect,
    ConnectionLost,
    Event,
    GoAway,
    InputKind,
    ModelOutput,
    ResumptionUpdate,
    SetupComplete,
    Timer,
    TimerFired,
    ToolCall,
    ToolCallCancellation,
    TurnComplete,
    Usage,
)
from statemachine.core.journal import OWED
from statemachine.core.policy import Limits, ReplayPolicy, RetryPolicy
from statemachine.core.table import FINAL, State

from . import strategies

POLICY = Policy(
    limits=Limits(handle_validity=600.0, go_away_lead=30.0, go_away_margin=2.0),
    retry=RetryPolicy(per_drop_attempts=3, per_session_attempts=12),
    # short: audio goes stale (its payload released, folded into runs) within a few steps
    replay=ReplayPolicy(audio_staleness=0.5),
)


class LifecycleMachine(RuleBasedStateMachine):
    """A fake I/O layer that follows the driver contract, fed random server/app/timer events."""

    @initialize(compression=st.booleans(), transparent=st.booleans())
    def start(self, compression: bool, transparent: bool) -> None:
        self.records: list[dict[str, Any]] = []
        policy = Policy(
            limits=POLICY.limits, retry=POLICY.retry, compression=compression,
            transparent=transparent, replay=POLICY.replay,
        )
        self.engine = Lifecycle(policy=policy, audit=self.records.append, rng=random.Random(1))
        self.now = 0.0
        self.fed = 0
        self.open: set[int] = set()
        self.timers: dict[Timer, int] = {}
        self.handles: dict[str, float] = {}  # resumable handles and when they were issued
        self.dropped: set[int] = set()
        self.sends: dict[tuple[int, int], int] = {}  # (seq, generation) -> count
        self.inputs = 0
        self.was_terminated = False
        self.calls: list[str] = []  # every tool call id the model issued
        self.ended: dict[str, str] = {}  # id -> its one outcome
        self.repeats: list[str] = []
        self.feed(Connect(at=self.now))

    def feed(self, event: Event) -> None:
        ended = self.engine.state in FINAL
        if not (isinstance(event, Close) and ended):  # a Close after the end records nothing
            self.fed += 1
        out = self.engine.feed(event)
        if isinstance(event, Close) and ended:
            assert out == [], "a Close after the end did something"
        for action in out:
            self.perform(action)

    def perform(self, action: Any) -> None:
        if isinstance(action, OpenConnection):
            assert not self.open, "a connection was opened while another was open"
            if action.handle is not None:
                issued = self.handles.get(action.handle)
                assert issued is not None, "resumed with a handle that was never resumable"
                limit = self.engine.handle_validity
                assert self.now - issued < limit, "resumed with an expired handle"
            self.open.add(action.generation)
        elif isinstance(action, CloseConnection):
            self.open.discard(action.generation)
        elif isinstance(action, ArmTimer):
            self.timers[action.timer] = action.token
        elif isinstance(action, CancelTimer):
            self.timers.pop(action.timer, None)
        elif isinstance(action, Send):
            assert action.generation in self.open, "sent on a connection that is not open"
            key = (action.entry.seq, action.generation)
            self.sends[key] = self.sends.get(key, 0) + 1
            assert action.entry.seq not in self.dropped, "sent an input after reporting it dropped"
            self.engine.written(action.entry, action.generation, self.now)
        elif isinstance(action, Notify) and isinstance(action.notice, InputDropped):
            assert action.notice.seq not in self.dropped, "dropped twice"
            self.dropped.add(action.notice.seq)
        elif isinstance(action, Notify) and isinstance(action.notice, ToolCallEnded):
            call = action.notice.id
            assert call in self.calls, "an outcome for a call never issued"
            assert call not in self.ended, f"{call} ended twice"
            self.ended[call] = action.notice.outcome
        elif isinstance(action, Notify) and isinstance(action.notice, ToolCallRepeated):
            self.repeats.append(action.notice.id)

    @property
    def gen(self) -> int:
        return self.engine.generation

    @rule(dt=strategies.time_steps)
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule(timer=st.sampled_from(list(Timer)), stale=st.booleans())
    def timer_fires(self, timer: Timer, stale: bool) -> None:
        token = self.timers.get(timer)
        if token is None:
            return
        if not stale:
            del self.timers[timer]
        self.feed(TimerFired(at=self.now, timer=timer, token=token - 1 if stale else token))

    @rule(old=st.booleans())
    def setup_complete(self, old: bool) -> None:
        self.feed(SetupComplete(at=self.now, generation=self.gen - 1 if old else self.gen))

    @rule(code=strategies.close_codes, during_setup=st.booleans(), old=st.booleans())
    def connection_lost(self, code: tuple[int | None, str], during_setup: bool, old: bool) -> None:
        gen = self.gen - 1 if old else self.gen
        self.open.discard(gen)
        self.feed(ConnectionLost(at=self.now, generation=gen, code=code[0], reason=code[1],
                                 during_setup=during_setup))

    @rule(left=st.floats(min_value=0.0, max_value=60.0))
    def go_away(self, left: float) -> None:
        self.feed(GoAway(at=self.now, generation=self.gen, time_left=left))

    @rule(resumable=st.booleans(), index=st.none() | st.integers(0, 20))
    def resumption_update(self, resumable: bool, index: int | None) -> None:
        handle = f"h{self.fed}" if resumable else ""
        if resumable:
            self.handles[handle] = self.now
        self.feed(ResumptionUpdate(at=self.now, generation=self.gen, handle=handle,
                                   resumable=resumable, last_consumed_index=index))

    @rule(text=st.sampled_from(["", "a", "bc"]))
    def model_output(self, text: str) -> None:
        self.feed(ModelOutput(at=self.now, generation=self.gen, text=text))

    @rule(key=st.sampled_from(["", "f({})", 'g({"a": 1})']))
    def tool_call(self, key: str) -> None:
        call = f"c{self.fed}"
        if self.engine.state not in FINAL:
            self.calls.append(call)
        self.feed(ToolCall(at=self.now, generation=self.gen, ids=(call,),
                           keys=(key,) if key else ()))

    @rule(pick=st.integers(0, 50), scheduled=st.booleans())
    def tool_response(self, pick: int, scheduled: bool) -> None:
        if self.engine.state is State.TERMINATED or not self.calls:
            return
        self.inputs += 1
        call = self.calls[pick % len(self.calls)]
        self.feed(ClientInput(at=self.now, kind=InputKind.TOOL_RESPONSE, tool_ids=(call,),
                              scheduled=scheduled))

    @rule(pick=st.integers(0, 50))
    def tool_call_cancellation(self, pick: int) -> None:
        if self.calls:
            call = self.calls[pick % len(self.calls)]
            self.feed(ToolCallCancellation(at=self.now, generation=self.gen, ids=(call,)))

    @rule()
    def turn_complete(self) -> None:
        self.feed(TurnComplete(at=self.now, generation=self.gen))

    @rule(tokens=st.integers(0, 40_000))
    def usage(self, tokens: int) -> None:
        self.feed(Usage(at=self.now, generation=self.gen, prompt_tokens=tokens))

    @rule(kind=strategies.input_kinds, turn_complete=st.booleans())
    def client_input(self, kind: InputKind, turn_complete: bool) -> None:
        if self.engine.state is State.TERMINATED:
            return
        self.inputs += 1
        self.feed(ClientInput(at=self.now, kind=kind, turn_complete=turn_complete))

    @rule(chunks=st.integers(1, 60))
    def audio_stream(self, chunks: int) -> None:
        """20 ms audio chunks in a row: past the replay window they fold into runs."""
        for _ in range(chunks):
            if self.engine.state is State.TERMINATED:
                return
            self.now += 0.02
            self.inputs += 1
            self.feed(ClientInput(at=self.now, kind=InputKind.AUDIO, payload=b"pcm"))

    @rule()
    def turn_ends_with_handle(self) -> None:
        self.turn_complete()
        self.resumption_update(True, None)

    @precondition(lambda self: self.fed > 50)
    @rule()
    def close(self) -> None:
        self.feed(Close(at=self.now))

    @invariant()
    def at_most_one_connection(self) -> None:
        assert len(self.open) <= 1

    @invariant()
    def terminated_is_final(self) -> None:
        if self.was_terminated:
            assert self.engine.state in FINAL
        self.was_terminated = self.engine.state in FINAL

    @invariant()
    def terminated_leaves_nothing_running(self) -> None:
        if self.engine.state is State.TERMINATED:
            assert not self.open and not self.timers

    @invariant()
    def every_input_accounted_for(self) -> None:
        # OWED stands for a reply a mid-turn handle holds, not for an input
        journal = {e.seq for e in self.engine.journal if e.seq != OWED}
        assert not journal & self.dropped
        confirmed = self.engine.counters.confirmed
        assert len(journal) + len(self.dropped) + confirmed <= self.inputs
        if self.engine.state is not State.TERMINATED:
            assert len(journal) + len(self.dropped) + confirmed == self.inputs
        assert all(n == 1 for n in self.sends.values()), "an input went out twice on one connection"

    @invariant()
    def the_journal_counts_every_input_once(self) -> None:
        journal = self.engine.journal
        seqs = [e.seq for e in journal]
        inputs = [seq for seq in seqs if seq != OWED]  # OWED entries stand for replies
        assert len(journal) == len(seqs) and len(inputs) == len(set(inputs))
        assert sum(e.run for e in journal.entries()) == len(journal)
        assert all(e.run == 1 for e in journal)

    @invariant()
    def every_tool_call_ends_once(self) -> None:
        """At most one outcome per call at any time; exactly one once the session ended."""
        if self.engine.state is State.TERMINATED:
            assert set(self.ended) == set(self.calls), set(self.calls) - set(self.ended)
        assert len(self.repeats) == len(set(self.repeats))

    @invariant()
    def one_audit_record_per_event_and_contiguous(self) -> None:
        assert sum(r["kind"] == "event" for r in self.records) == self.fed
        assert self.records[-1]["seq"] == len(self.records)


TestLifecycleProperties = LifecycleMachine.TestCase
TestLifecycleProperties.settings = settings(
    max_examples=200, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
