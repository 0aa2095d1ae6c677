"""The sans-I/O lifecycle engine: events in, actions out. No sockets, no asyncio, no clock reads.

One `transitions.Machine`, built from `table.TRANSITIONS`, is shared by every session (each session
is a model added to it). Guards are evaluated from the engine's bookkeeping; the machine's
`after_state_change` writes the transition's audit record and runs the destination's entry
actions, and its `finalize_event` records triggers no guard let through. `feed()` writes one
audit record per event.
"""

from __future__ import annotations

import random
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import InvalidTransition, LocalMisuse, SessionClosed
from . import table
from .actions import (
    Action,
    ArmTimer,
    CancelTimer,
    CloseConnection,
    ContextLost,
    Ended,
    InputDropped,
    Notice,
    Notify,
    OpenConnection,
    RepeatedReply,
    ReplyInterrupted,
    Resumed,
    Send,
)
from .closecodes import Disposition, Phase, classify_close, classify_http, hint
from .events import (
    ClientInput,
    Close,
    Connect,
    ConnectionEvent,
    ConnectionLost,
    Event,
    FatalError,
    GenerationComplete,
    GoAway,
    InputKind,
    Interrupted,
    Latency,
    ModelOutput,
    ResumptionUpdate,
    SetupComplete,
    Timer,
    TimerFired,
    ToolCall,
    ToolCallCancellation,
    TurnComplete,
    Usage,
    is_turn_trigger,
)
from .journal import Entry, Journal
from .machine import MACHINE, STATES, Model, release
from .policy import Backend, OnExpired, Policy
from .records import (
    AuditRecord,
    AuditSink,
    default_sink,
    describe,
    fingerprint,
    notice_fields,
    notice_name,
)
from .table import Guard, State, Trigger


@attrs.frozen(kw_only=True)
class Loss:
    """Why the current connection is gone, classified."""

    disposition: Disposition
    why: str
    code: int | None = None
    reason: str = ""
    http_status: int | None = None


@attrs.define(kw_only=True, slots=True)
class Counters:
    """Running totals for the audit summary and the application."""

    inputs: int = 0
    sent: int = 0
    replayed: int = 0
    replayed_as_history: int = 0
    repeated_replies: int = 0
    dropped: int = 0
    confirmed: int = 0
    rotations: int = 0
    resumes: int = 0
    fresh_restarts: int = 0
    connections: int = 0


class Lifecycle:
    """One session's lifecycle. Feed it events; perform the actions it returns, in order."""

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        backend: Backend = Backend.GEMINI,
        session_id: str | None = None,
        audit: AuditSink | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = (policy or Policy()).for_backend(backend)
        self.backend = backend
        self.transparent = (
            self.policy.transparent
            if self.policy.transparent is not None
            else backend is Backend.VERTEX
        )
        self.session_id = session_id or uuid.uuid4().hex[:16]
        self._audit = audit if audit is not None else default_sink()
        self._wall = wall_clock
        self._rng = rng or random.Random()
        self.journal = Journal()
        self.counters = Counters()
        self.generation = 0
        self.connection_open = False
        self.setup_done = False
        self.handle: str | None = None
        self.handle_at: float | None = None
        self.compressed = False
        self.session_started_at: float | None = None
        self.video_sent = False
        self.last_prompt_tokens = 0
        self.turn_in_flight = False
        self.pending_tool_calls: set[str] = set()
        self.go_away_deadline: float | None = None
        self.rtt: float | None = None  # measured round trip of the current connection
        self.drop_attempts = 0
        self._attempts: deque[float] = deque()  # when each failure retry or fresh restart began
        self.loss: Loss | None = None
        self.end: Ended | None = None
        self._turn_text: list[str] = []
        self._timers: dict[Timer, int] = {}
        self._token = 0
        self._next_index = 1
        self._next_seq = 0
        self._audit_seq = 0
        self._now = 0.0
        self._actions: list[Action] = []
        self._followups: list[tuple[Trigger, dict[str, Any]]] = []
        self._cause: dict[str, Any] = {}
        self._fp_of: str | None = None
        self._fp: str | None = None
        self._model = Model(self)
        MACHINE.add_model(self._model)
        self._release = weakref.finalize(self, release, self._model)

    # -- public surface ------------------------------------------------------------------------

    @property
    def session_attempts(self) -> int:
        """Failure retries and fresh restarts within the retry policy's session window."""
        horizon = self._now - self.policy.retry.session_window
        while self._attempts and self._attempts[0] <= horizon:
            self._attempts.popleft()
        return len(self._attempts)

    @property
    def state(self) -> State:
        return STATES[self._model.state]

    @property
    def live(self) -> bool:
        """Whether a connection has completed setup and carries input now."""
        return self.state in table.LIVE and self.connection_open and self.setup_done

    def feed(self, event: Event) -> list[Action]:
        """Advance the lifecycle by one event; return what the I/O layer must do, in order."""
        self._now = event.at
        self._actions = []
        stale = isinstance(event, ConnectionEvent) and event.generation != self.generation
        name, cause = describe(event)
        self._record("event", name, cause=cause, stale=stale)
        if isinstance(event, ClientInput):
            self._on_input(event)
        elif isinstance(event, Connect):
            if self.state is not State.IDLE:
                raise InvalidTransition("connect", self.state.value, "a session connects only once")
            self._fire(Trigger.CONNECT, {})
        elif isinstance(event, Close):
            if self.state is not State.TERMINATED:
                self._fire(Trigger.CLOSE, {"reason": event.reason, "by_application": True})
        elif isinstance(event, FatalError):
            if self.state is not State.TERMINATED:
                self._fire(Trigger.FATAL_ERROR, {"reason": event.reason})
        elif isinstance(event, TimerFired):
            self._on_timer(event)
        elif not stale and self.state is not State.TERMINATED:
            self._on_connection_event(event)
        self._drain_followups()
        return self._actions

    def restore(self, handle: str, *, at: float, age: float, compressed: bool = False,
                generation: int = 0) -> None:
        """Seed a handle saved by an earlier process, `age` seconds old at monotonic time `at`,
        so `Connect` resumes it when still valid. Only before `Connect`."""
        if self.state is not State.IDLE:
            raise LocalMisuse(f"restore() only before connect, not in state {self.state.value!r}")
        self.handle = handle
        self.handle_at = at - age
        self.compressed = compressed
        self.generation = generation

    def note(self, name: str, *, at: float, **cause: Any) -> None:
        """An audit record (kind `notice`) for something the I/O layer saw, such as a store that
        became unreachable. No state changes."""
        self._now = at
        self._record("notice", name, cause=cause)

    def fire(self, trigger: Trigger, **cause: Any) -> bool:
        """Fire a trigger directly (tools and tests); the audit log records it like any other.
        Returns False when the table has no row for it here or no guard holds."""
        self._actions = []
        ok = self._fire(trigger, cause)
        self._drain_followups()
        return ok

    def snapshot(self) -> dict[str, Any]:
        """A plain view of the bookkeeping, for tests, debugging and the application."""
        return {
            "session": self.session_id,
            "state": self.state.value,
            "generation": self.generation,
            "connection_open": self.connection_open,
            "handle_fp": fingerprint(self.handle),
            "compressed": self.compressed,
            "journal": len(self.journal),
            "drop_attempts": self.drop_attempts,
            "session_attempts": self.session_attempts,
            "counters": attrs.asdict(self.counters),
        }

    # -- events --------------------------------------------------------------------------------

    def _on_input(self, event: ClientInput) -> None:
        if self.state is State.IDLE:
            raise LocalMisuse("cannot send before connect(): open the session first")
        if self.state is State.TERMINATED:
            reason = self.end.reason if self.end else "terminated"
            raise SessionClosed(f"cannot send: the session has ended ({reason})")
        self._next_seq += 1
        entry = Entry(
            seq=self._next_seq,
            kind=event.kind,
            payload=event.payload,
            created_at=event.at,
            turn_complete=event.turn_complete,
            trigger=is_turn_trigger(event),
            tool_ids=event.tool_ids,
        )
        self._count(inputs=1)
        self.journal.append(entry)
        if event.kind is InputKind.TOOL_RESPONSE:
            self.pending_tool_calls.difference_update(event.tool_ids)
        if event.kind is InputKind.VIDEO and not self.video_sent:
            self.video_sent = True
            self._arm_session_cap()
        if self.live and not self._held(entry):
            self._send(entry, replay=False, as_history=False)

    def _held(self, entry: Entry) -> bool:
        """While draining, a new turn would start on a connection about to end and be cut by the
        rotation: hold it (journaled) for the next connection. Tool responses still go out: the
        turn in flight needs them to finish."""
        return (
            self.state is State.DRAINING
            and entry.trigger
            and entry.kind is not InputKind.TOOL_RESPONSE
        )

    def _on_connection_event(self, event: Event) -> None:
        state = self.state
        if isinstance(event, SetupComplete):
            if state in (State.CONNECTING, State.RESUMING) and self.connection_open:
                self._fire(Trigger.SETUP_COMPLETE, {"session_id": event.session_id})
        elif isinstance(event, ConnectionLost):
            self._on_lost(event)
        elif isinstance(event, GoAway):
            self.go_away_deadline = event.at + event.time_left
            if state in (State.STREAMING, State.COMPRESSED):
                self._fire(Trigger.GO_AWAY, {"time_left": event.time_left})
        elif isinstance(event, ResumptionUpdate):
            self._on_update(event)
        elif isinstance(event, ModelOutput):
            self.turn_in_flight = True
            if event.text:
                self._turn_text.append(event.text)
        elif isinstance(event, ToolCall):
            self.turn_in_flight = True
            self.pending_tool_calls.update(event.ids)
        elif isinstance(event, ToolCallCancellation):
            self.pending_tool_calls.difference_update(event.ids)
            self._check_safe_point()
        elif isinstance(event, TurnComplete):
            self.turn_in_flight = False
            reply = event.reply_text if event.reply_text is not None else "".join(self._turn_text)
            self.journal.mark_answered(reply)
            self._turn_text = []
            self._check_safe_point()
        elif isinstance(event, Usage):
            self._on_usage(event)
        elif isinstance(event, Latency):
            self.rtt = event.rtt
        elif isinstance(event, GenerationComplete | Interrupted):
            pass

    def _on_update(self, event: ResumptionUpdate) -> None:
        if not (event.resumable and event.handle):
            return  # mid-turn or mid-tool-call: the last resumable handle stays in force
        self.handle = event.handle
        self.handle_at = event.at
        if self.transparent and event.last_consumed_index is not None:
            covered = self.journal.prune_by_index(self.generation, event.last_consumed_index)
        else:
            replay = self.policy.replay
            window = (self.rtt if self.rtt is not None else replay.crossing_default)
            covered = self.journal.prune_covered(
                self.generation, sent_before=event.at - window - replay.crossing_slack
            )
        self._count(confirmed=len(covered))
        self._check_safe_point()

    def _on_usage(self, event: Usage) -> None:
        previous = self.last_prompt_tokens
        self.last_prompt_tokens = event.prompt_tokens
        # The context only ever grows, except when the sliding window trims it; the server
        # trims before it reports, so the count is seen falling, never reaching the trigger.
        trimmed = (
            self.policy.compression
            and previous > self.policy.compression_target_tokens
            and event.prompt_tokens < previous
        )
        if trimmed and not self.compressed:
            self.compressed = True
            if self.state is State.STREAMING:
                self._fire(
                    Trigger.COMPRESSION_DETECTED,
                    {"prompt_tokens": event.prompt_tokens, "previous": previous},
                )

    def _on_lost(self, event: ConnectionLost) -> None:
        if not self.connection_open:
            return
        phase = Phase.SETUP if (event.during_setup or not self.setup_done) else Phase.LIVE
        if event.http_status is not None:
            disposition, why = classify_http(event.http_status)
        else:
            disposition, why = classify_close(event.code, event.reason, phase)
        if disposition is Disposition.REJECTED and self.state is not State.RESUMING:
            disposition, why = Disposition.FATAL, "setup refused as invalid on a new session"
        self.loss = Loss(
            disposition=disposition,
            why=why,
            code=event.code,
            reason=event.reason,
            http_status=event.http_status,
        )
        self.connection_open = False
        self.setup_done = False
        self._cancel(Timer.SETUP)
        cause = {
            "code": event.code,
            "reason": event.reason,
            "http_status": event.http_status,
            "disposition": disposition.value,
            "why": why,
        }
        if disposition is Disposition.REJECTED:
            self._fire(Trigger.RESUME_REJECTED, cause)
        else:
            self._fire(Trigger.CONNECTION_LOST, cause)

    def _on_timer(self, event: TimerFired) -> None:
        if self._timers.get(event.timer) != event.token:
            return  # cancelled or re-armed since
        del self._timers[event.timer]
        cause = {"timer": event.timer.value}
        if event.timer is Timer.SETUP:
            self._actions.append(
                CloseConnection(generation=self.generation, code=1000, reason="setup timeout")
            )
            self.loss = Loss(
                disposition=Disposition.BACKOFF,
                why=f"no setupComplete within {self.policy.limits.setup_timeout:g}s",
            )
            self.connection_open = False
            self._fire(Trigger.CONNECTION_LOST, {**cause, "why": self.loss.why})
        elif event.timer is Timer.ROTATE:
            self._fire(Trigger.ROTATION_DEADLINE, cause)
        elif event.timer is Timer.SESSION_CAP:
            self._fire(Trigger.SESSION_CAP, cause)
        elif event.timer is Timer.BACKOFF:
            if self.state is State.RESUMING and not self._check(Guard.HANDLE_VALID):
                self._fire(Trigger.HANDLE_EXPIRED, cause)
            elif self.state in (State.CONNECTING, State.RESUMING):
                self._open()

    # -- the machine -----------------------------------------------------------------------------

    def _fire(self, trigger: Trigger, cause: dict[str, Any]) -> bool:
        self._cause = cause
        if not table.rows_for(trigger, self.state):
            self._audit_trigger(trigger, None)
            return False
        result: bool = self._model.trigger(trigger.value)
        return result

    def _drain_followups(self) -> None:
        while self._followups:
            trigger, cause = self._followups.pop(0)
            self._fire(trigger, cause)

    def _check(self, guard: Guard) -> bool:
        retry = self.policy.retry
        if guard is Guard.CLOSE_IS_FATAL:
            return self.loss is not None and self.loss.disposition is Disposition.FATAL
        if guard is Guard.RETRY_BUDGET_LEFT:
            return (
                self.drop_attempts < retry.per_drop_attempts
                and self.session_attempts < retry.per_session_attempts
            )
        if guard is Guard.HANDLE_VALID:
            return (
                self.handle is not None
                and self.handle_at is not None
                and self._now - self.handle_at < self.policy.limits.handle_validity
            )
        if guard is Guard.WAS_COMPRESSED:
            return self.compressed
        if guard is Guard.FRESH_ALLOWED:
            return (
                self.policy.on_expired is OnExpired.FRESH
                and self.session_attempts < retry.per_session_attempts
            )
        raise AssertionError(f"guard {guard!r} has no implementation")

    def _entered(self, source: State, trigger: Trigger) -> None:
        """Entry actions of the destination state: the one place transitions become I/O."""
        state = self.state
        if state is State.CONNECTING:
            self._enter_connecting(trigger)
        elif state is State.RESUMING:
            self._enter_resuming(source, trigger)
        elif state in (State.STREAMING, State.COMPRESSED) and trigger is Trigger.SETUP_COMPLETE:
            self._enter_live(source)
        elif state is State.DRAINING:
            self._enter_draining()
        elif state is State.EXPIRED:
            self._leave_connection("session expired")
            for timer in (Timer.ROTATE, Timer.BACKOFF, Timer.SETUP, Timer.SESSION_CAP):
                self._cancel(timer)
            cause = {"reason": self._expiry_reason(trigger)}
            if self._check(Guard.FRESH_ALLOWED):
                self._followups.append((Trigger.RESTART_FRESH, cause))
            else:
                self._followups.append((Trigger.GIVE_UP, cause))
        elif state is State.TERMINATED:
            self._enter_terminated(trigger)

    def _enter_connecting(self, trigger: Trigger) -> None:
        if trigger is Trigger.RESTART_FRESH:
            self._count(fresh_restarts=1)
            self._attempts.append(self._now)
            self.drop_attempts = 0
            unsent = self.journal.take_all()
            for entry in unsent:
                self._drop(entry, "context lost: the session expired before it was confirmed")
            self._notify(ContextLost(reason=str(self._cause["reason"]), unsent=tuple(unsent)))
            self.handle = self.handle_at = None
            self.compressed = False
            self.last_prompt_tokens = 0
            self.session_started_at = None
            self.video_sent = False
            self.turn_in_flight = False
            self.pending_tool_calls.clear()
            self._turn_text = []
            self._open()
        elif trigger is Trigger.CONNECTION_LOST:
            self._retry(first_immediate=False)
        else:
            self._open()

    def _enter_resuming(self, source: State, trigger: Trigger) -> None:
        self._cancel(Timer.ROTATE)
        self._leave_connection("rotating to a new connection")
        if self.turn_in_flight and source in table.LIVE:
            self._notify(ReplyInterrupted(generation=self.generation, reason=trigger.value))
        self.turn_in_flight = False
        self.pending_tool_calls.clear()
        self._turn_text = []
        if trigger in table.ROTATIONS:
            self._count(rotations=1)
            self.drop_attempts = 0
            self._open()
        elif trigger is Trigger.CONNECT:  # a handle restored from a store
            self._open()
        else:
            first = source is not State.RESUMING
            self._retry(first_immediate=first and self.loss is not None
                        and self.loss.disposition is Disposition.RESUME)

    def _enter_live(self, source: State) -> None:
        self._cancel(Timer.SETUP)
        self.setup_done = True
        self.drop_attempts = 0
        self.go_away_deadline = None
        if self.session_started_at is None:
            self.session_started_at = self._now
            self._arm_session_cap()
        if source is State.RESUMING:
            self._count(resumes=1)
        plan = self.journal.plan_replay(self._now, self.policy.replay)
        for entry, reason in plan.dropped:
            self._drop(entry, reason, remove=False)
        history = repeated = 0
        for item in plan.items:
            replay = item.entry.sends > 0
            self._send(item.entry, replay=replay, as_history=item.as_history)
            if item.as_history:
                history += 1
            if item.repeated:
                repeated += 1
                self._notify(RepeatedReply(seq=item.entry.seq))
        self._count(replayed_as_history=history, repeated_replies=repeated)
        if source is State.RESUMING:
            self._notify(
                Resumed(
                    generation=self.generation,
                    replayed=sum(1 for i in plan.items if i.entry.sends > 1),
                    as_history=history,
                    repeated=repeated,
                    dropped=len(plan.dropped),
                )
            )

    def _enter_draining(self) -> None:
        deadline = self.go_away_deadline if self.go_away_deadline is not None else self._now
        rotate_at = deadline - self.policy.limits.go_away_margin
        self._arm(Timer.ROTATE, max(0.0, rotate_at - self._now))
        self._check_safe_point()

    def _enter_terminated(self, trigger: Trigger) -> None:
        self._leave_connection(str(self._cause.get("reason") or trigger.value))
        for timer in list(self._timers):
            self._cancel(timer)
        for entry in self.journal.take_all():
            if entry.sends == 0:
                self._drop(entry, "the session ended before it could be sent", remove=False)
        loss = self.loss
        by_app = trigger is Trigger.CLOSE
        if by_app:
            reason = str(self._cause.get("reason", "closed by the application"))
        elif trigger is Trigger.GIVE_UP:
            reason = (f"{self._cause['reason']}; policy does not start a fresh session: open a "
                      "new one and re-seed the conversation (OnExpired.FRESH does this itself)")
        elif loss is not None and trigger is Trigger.CONNECTION_LOST:
            if loss.disposition is Disposition.FATAL:
                todo = hint(loss.code, loss.http_status)
                reason = f"fatal close: {loss.why}" + (f"; {todo}" if todo else "")
            else:
                reason = (f"retry budget exhausted after: {loss.why}; the service kept failing: "
                          "try again later, or raise the RetryPolicy budgets")
        else:
            reason = str(self._cause.get("reason") or trigger.value)
        self.end = Ended(
            reason=reason,
            code=loss.code if (loss and not by_app) else None,
            by_application=by_app,
        )
        self._notify(self.end)
        self._release()

    def _expiry_reason(self, trigger: Trigger) -> str:
        limits = self.policy.limits
        loss = self.loss
        if trigger is Trigger.SESSION_CAP:
            cap = limits.session_cap_video if self.video_sent else limits.session_cap_audio
            return f"session duration cap ({cap:g}s) reached without context compression"
        if trigger is Trigger.RESUME_REJECTED and loss is not None:
            return f"the server refused the resumption handle (close {loss.code}: {loss.reason})"
        if trigger is Trigger.HANDLE_EXPIRED:
            return f"the resumption handle outlived its validity ({limits.handle_validity:g}s)"
        if trigger is Trigger.ROTATION_DEADLINE:
            return "goAway deadline reached without a valid resumable handle"
        if loss is not None:
            what = f"close {loss.code}" if loss.code is not None else loss.why
            if not self._check(Guard.HANDLE_VALID):
                return f"connection lost ({what}) with no valid resumable handle"
            return f"connection lost ({what}) and the retry budget is exhausted"
        return trigger.value

    # -- helpers ---------------------------------------------------------------------------------

    def _check_safe_point(self) -> None:
        if (
            self.state is State.DRAINING
            and not self.turn_in_flight
            and not self.pending_tool_calls
            and not self.journal.has_turn_input()
            and self._check(Guard.HANDLE_VALID)
            and not any(t is Trigger.SAFE_POINT for t, _ in self._followups)
        ):
            self._followups.append((Trigger.SAFE_POINT, {"journal": len(self.journal)}))

    def _retry(self, *, first_immediate: bool) -> None:
        self.drop_attempts += 1
        self._attempts.append(self._now)
        if first_immediate and self.drop_attempts == 1:
            self._open()
            return
        delay = self.policy.retry.delay(self.drop_attempts, self._rng.random())
        self._arm(Timer.BACKOFF, delay)

    def _open(self) -> None:
        self.generation += 1
        self.rtt = None
        self._next_index = 1
        self.connection_open = True
        self.setup_done = False
        self._count(connections=1)
        handle = self.handle if self.state is State.RESUMING else None
        self._actions.append(
            OpenConnection(generation=self.generation, handle=handle, transparent=self.transparent)
        )
        self._arm(Timer.SETUP, self.policy.limits.setup_timeout)

    def _leave_connection(self, reason: str) -> None:
        if self.connection_open:
            self._actions.append(
                CloseConnection(generation=self.generation, code=1000, reason=reason[:120])
            )
            self.connection_open = False
        self.setup_done = False

    def _send(self, entry: Entry, *, replay: bool, as_history: bool) -> None:
        self.journal.mark_sent(entry, self.generation, self._next_index, self._now)
        self._next_index += 1
        self._count(sent=1, replayed=1 if replay else 0)
        self._actions.append(
            Send(generation=self.generation, entry=entry, replay=replay, as_history=as_history)
        )

    def _drop(self, entry: Entry, reason: str, *, remove: bool = True) -> None:
        if remove:
            self.journal.remove([entry])
        self._count(dropped=1)
        self._notify(InputDropped(seq=entry.seq, kind=entry.kind.value, reason=reason))

    def _arm_session_cap(self) -> None:
        if self.policy.compression or self.session_started_at is None:
            return
        limits = self.policy.limits
        cap = limits.session_cap_video if self.video_sent else limits.session_cap_audio
        self._arm(Timer.SESSION_CAP, max(0.0, self.session_started_at + cap - self._now))

    def _arm(self, timer: Timer, delay: float) -> None:
        self._token += 1
        self._timers[timer] = self._token
        self._actions.append(ArmTimer(timer=timer, delay=delay, token=self._token))

    def _cancel(self, timer: Timer) -> None:
        if self._timers.pop(timer, None) is not None:
            self._actions.append(CancelTimer(timer=timer))

    def _notify(self, notice: Notice) -> None:
        self._actions.append(Notify(notice=notice))
        self._record("notice", notice_name(notice), cause=notice_fields(notice))

    def _count(self, **deltas: int) -> None:
        c = self.counters
        for key, delta in deltas.items():
            setattr(c, key, getattr(c, key) + delta)

    # -- audit -----------------------------------------------------------------------------------

    def _audit_trigger(self, trigger: Trigger, transition: Any) -> None:
        if transition is None:
            self._record(
                "rejected", trigger.value, cause=self._cause, source=self.state.value, dest=None
            )
        else:
            self._record(
                "transition",
                trigger.value,
                cause=self._cause,
                source=transition.source,
                dest=transition.dest,
            )

    def _handle_fp(self) -> str | None:
        if self._fp_of != self.handle:
            self._fp_of, self._fp = self.handle, fingerprint(self.handle)
        return self._fp

    def _record(self, kind: str, name: str, *, cause: dict[str, Any], **extra: Any) -> None:
        self._audit_seq += 1
        record: AuditRecord = {
            "session": self.session_id,
            "seq": self._audit_seq,
            "mono": self._now,
            "wall": self._wall(),
            "kind": kind,
            "name": name,
            "state": self._model.state,
            "cause": cause,
            "gen": self.generation,
            "handle_fp": self._handle_fp(),
            "attempt": self.drop_attempts,
            "journal": len(self.journal),
        }
        record.update(extra)
        self._audit(record)
