"""The sans-I/O lifecycle engine: timestamped events in, actions out. No sockets, no asyncio,
no monotonic clock of its own: its time is the latest event's stamp. Records carry wall time too,
read from the `wall_clock` it is given (the shell's `time.time`, a test's fake).

One `transitions.Machine`, built from `table.TRANSITIONS`, is shared by every session; sessions
are not added to it as models (see `machine.py`): the engine fires a trigger on itself, and the
machine reads and writes its state attribute. Guards are the pure functions of `guards.py`; the
machine's `after_state_change` writes the transition's audit record and runs the destination's
entry actions (`_enter_<state>`, documented in `table.ENTRY_ACTIONS`), and its `finalize_event`
records triggers no guard let through. `feed()` writes one audit record per event (but a `Close`
after the end, which changes nothing). The engine asks the table whether a trigger applies
(`_can`, `_offer`); it keeps no list of states of its own.

Each concern has an owner the engine asks: `budget.py` (attempt counts, backoff), `guards.py`
(conditions), `wording.py` (end and expiry reasons), `secrets.py` (redaction), `journal.py`
(input until a handle covers it), `context.py`, `margin.py`, `oldsocket.py`. Four owners run
steps of their own: the store side (`storesync.py`), the hand-off (`handoff.py`), the tool
calls (`toolcalls.py`) and the tokens (`tokens.py`). Like the guards they are functions of the
engine (the state stays in its records, so a session pays for no extra object), and they act
through its private steps (`_emit`, `_arm`, `_cancel`, `_notify`, `_fire`, `_drop`, `_send`,
`_lose`, `_leave_connection`), so their actions come out in order with the rest. The engine
keeps dispatch, entry actions, timers and records; its bookkeeping records are in
`bookkeeping.py`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import InvalidTransition, LocalMisuse, SessionClosed, SettingsError
from . import failures, handoff, storesync, table, tokens, toolcalls, wording, writethrough
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
    ResumeWaiting,
    Send,
)
from .bookkeeping import Connection, Counters, Loss, Resumption, Span, Turn
from .budget import RetryBudget
from .closecodes import (
    TOKEN_REFUSED_HINT,
    Disposition,
    Phase,
    classify_failure,
    close_rule,
    rule_hint,
)
from .context import SetupContext
from .events import (
    CallbackFailed,
    ClientInput,
    Close,
    Connect,
    ConnectionEvent,
    ConnectionLost,
    Event,
    Failure,
    FatalError,
    GenerationComplete,
    GoAway,
    HandOff,
    InputKind,
    InteractionStatus,
    Interrupted,
    Latency,
    LeaseLost,
    ModelOutput,
    ResumptionUpdate,
    SendRefused,
    SetupComplete,
    StoreDone,
    StoreFailed,
    Timer,
    TimerFired,
    TokenIssued,
    ToolCall,
    ToolCallCancellation,
    TurnComplete,
    Usage,
    is_turn_trigger,
)
from .guards import GUARDS
from .handoff import HandOffRequest
from .journal import OWED, Entry, Journal, cover, inputs
from .machine import STATES, fire
from .margin import ReconnectTimes
from .oldsocket import OldSocketWait
from .persistence import Persistence
from .policy import Backend, Policy
from .records import (
    AuditRecord,
    AuditSink,
    captured,
    default_sink,
    describe,
    describe_input,
    fingerprint,
    notice_fields,
    notice_name,
)
from .secrets import Secrets
from .storesync import Durability
from .table import Guard, State, Trigger
from .tokens import Tokens
from .toolcalls import CallOutcomes, Calls

#: retry jitter for sessions not given a generator of their own (one per session: 2.5 KB each)
_RNG = random.Random()


class Lifecycle:
    """One session's lifecycle. Feed it events; perform the actions it returns, in order."""

    __slots__ = (
        "__weakref__",
        "_actions",
        "_audit",
        "_audit_seq",
        "_cause",
        "_cut_marks",
        "_followups",
        "_fp",
        "_fp_of",
        "_machine_state",
        "_next_seq",
        "_now",
        "_rng",
        "_timers",
        "_token",
        "_wall",
        "backend",
        "budget",
        "calls",
        "conn",
        "counters",
        "durable",
        "end",
        "handoff",
        "journal",
        "loss",
        "old_socket",
        "outcomes",
        "persistence",
        "policy",
        "reconnects",
        "resumption",
        "secrets",
        "session_id",
        "setup_context",
        "span",
        "tokens",
        "transparent",
        "turn",
    )

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        backend: Backend = Backend.GEMINI,
        session_id: str | None = None,
        audit: AuditSink | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        persistence: Persistence | None = None,
        fresh_tokens: bool = False,
    ) -> None:
        """`fresh_tokens`: the I/O layer asks a token provider for a fresh ephemeral token for
        every connection (and reports it with `TokenIssued`)."""
        self.policy = (policy or Policy()).for_backend(backend)
        limits = self.policy.limits
        if fresh_tokens and limits.go_away_margin >= limits.token_lead:
            raise SettingsError(
                f"Limits.go_away_margin ({limits.go_away_margin:g}s) must be smaller than "
                f"token_lead ({limits.token_lead:g}s) with a token provider: each move to a "
                "fresh token would be forced at once and cut the reply in progress")
        self.backend = backend
        self.transparent = (
            self.policy.transparent
            if self.policy.transparent is not None
            else backend is Backend.VERTEX
        )
        self.session_id = session_id or uuid.uuid4().hex[:16]
        self._audit = captured(audit if audit is not None else default_sink())
        self._wall = wall_clock
        self._rng = rng or _RNG
        self.journal = Journal()
        self.counters = Counters()
        self.conn = Connection()
        self.resumption = Resumption()
        self.span = Span()
        self.turn = Turn()
        #: the model's tool calls and the outcome of each (`toolcalls.py` decides with them)
        self.calls = Calls()
        self.outcomes = CallOutcomes()
        self.setup_context = SetupContext()
        self.budget = RetryBudget(policy=self.policy.retry)
        self.persistence = persistence
        #: the store side's state (`storesync.py` decides with it)
        self.durable = Durability()
        #: the hand-off asked for and not failed (`handoff.py` runs it)
        self.handoff: HandOffRequest | None = None
        self.tokens = Tokens(fresh=fresh_tokens)
        #: how long connections took to come up: the goAway margin is learned from them
        self.reconnects = ReconnectTimes()
        #: resumes refused for an old socket the server still holds (bounded: oldsocket.py)
        self.old_socket = OldSocketWait()
        self.loss: Loss | None = None
        self.end: Ended | None = None
        self._timers: dict[Timer, int] = {}
        self._token = 0
        self._next_seq = 0
        self._audit_seq = 0
        self._now = 0.0
        self._actions: list[Action] = []
        self._followups: list[tuple[Trigger, dict[str, Any]]] = []
        self._cause: dict[str, Any] = {}
        #: turns whose cut reply the stream has just marked (`ReplyInterrupted`): dropping
        #: such a turn needs no second marker; a new reply beginning clears it
        self._cut_marks = 0
        self._fp_of: str | None = None
        self._fp: str | None = None
        #: values never to show: keys and tokens (the shell's) and the latest handles
        self.secrets = Secrets()
        #: the state's name, read and written by the shared machine (`machine.MODEL_ATTRIBUTE`)
        self._machine_state: str = table.INITIAL.value

    # -- public surface ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state of the table (`table.State`)."""
        return STATES[self._machine_state]

    @property
    def generation(self) -> int:
        """The current connection's generation (1 for the first connection)."""
        return self.conn.generation

    @property
    def handle(self) -> str | None:
        """The latest resumable handle (secret: never log it; see `records.fingerprint`)."""
        return self.resumption.handle

    @property
    def session_attempts(self) -> int:
        """Failure retries and fresh restarts within the retry policy's session window."""
        return self.budget.session_attempts(self._now)

    @property
    def now(self) -> float:
        """The engine's time: the latest event's stamp (it never runs backwards)."""
        return self._now

    @property
    def handle_validity(self) -> float:
        """How long a handle stays valid on this backend (`Policy.for_backend` filled it in)."""
        validity = self.policy.limits.handle_validity
        assert validity is not None
        return validity

    @property
    def go_away_margin(self) -> float:
        """What a rotation keeps in hand before a goAway deadline now: learned from the
        measured reconnect times, within `Limits.go_away_margin_floor` and `go_away_margin`."""
        return self.reconnects.margin(self.policy.limits)

    @property
    def live(self) -> bool:
        """Whether a connection has completed setup and carries input now."""
        return self.state in table.LIVE and self.conn.open and self.conn.setup_done

    @property
    def store_settled(self) -> bool:
        """Whether the store holds the latest handle (nothing queued or in flight) or is down."""
        return storesync.settled(self)

    @property
    def sends_wait_for_store(self) -> bool:
        """Whether an input just given waits for the store before it goes on the wire
        (write-through, `writethrough.py`): the application's send call waits with it."""
        return storesync.holds_sends(self)

    @property
    def store_holds_handle(self) -> bool:
        """Whether the store holds the latest handle (and is not down)."""
        return storesync.holds_handle(self)

    def feed(self, event: Event) -> list[Action]:
        """Advance the lifecycle by one event; return what the I/O layer must do, in order.

        Events may come from several tasks and be stamped slightly out of order; the engine's
        time never runs backwards (an older stamp counts as now)."""
        self._now = max(self._now, event.at)
        self._actions = []
        if type(event) is ClientInput:  # the hot path, 50 a second: what the rest does for it
            self._record("event", "client_input", cause=describe_input(event), stale=False)
            self._on_input(event)
            if self._followups:
                self._drain_followups()
            if self.persistence is not None:
                storesync.after_event(self)
            return self._actions
        if self.secrets and isinstance(event, ConnectionLost | FatalError | StoreFailed
                                        | SendRefused | CallbackFailed):
            event = self._redacted(event)
        if type(event) is ConnectionLost:  # what the shell saw, settled as what it was
            event = failures.settle(event)
        elif type(event) is Close and self.state in table.FINAL:
            return []  # already ended: nothing to do, nothing to record
        stale = isinstance(event, ConnectionEvent) and event.generation != self.conn.generation
        name, cause = describe(event)
        self._record("event", name, cause=cause, stale=stale)
        if isinstance(event, ClientInput):
            self._on_input(event)
        elif isinstance(event, Connect):
            if not self._can(Trigger.CONNECT):
                raise InvalidTransition("connect", self.state.value, "a session connects only once")
            storesync.start(self)
            self._fire(Trigger.CONNECT, {})
        elif isinstance(event, Close):
            if self._can(Trigger.CLOSE):
                self._fire(Trigger.CLOSE, {"reason": event.reason, "by_application": True})
        elif isinstance(event, FatalError):
            if self._can(Trigger.FATAL_ERROR):
                self._fire(Trigger.FATAL_ERROR, {"reason": event.reason})
        elif isinstance(event, TimerFired):
            self._on_timer(event)
        elif isinstance(event, StoreDone | StoreFailed | LeaseLost):
            storesync.on_event(self, event)
        elif isinstance(event, SendRefused):
            self._on_refused(event)
        elif isinstance(event, HandOff):
            handoff.asked(self, event)
        elif isinstance(event, CallbackFailed):
            self._on_callback_failed(event)
        elif not stale and self.state not in table.FINAL:
            self._on_connection_event(event)
        self._drain_followups()
        storesync.after_event(self)
        return self._actions

    def add_secret(self, value: str, shown_as: str) -> None:
        """A value (an API key, a token) to replace by `shown_as` wherever text from outside
        (a close reason, an error) would carry it into a record, a notice or an error."""
        self.secrets.add(value, shown_as)

    def add_token(self, token: str) -> None:
        """An ephemeral token a connection dials with: never shown (the latest few are kept:
        `secrets.TOKENS_KEPT`)."""
        self.secrets.add_token(token)

    def forget_secret(self, value: str) -> None:
        """Stop looking for a value added with `add_secret` (an ephemeral token long replaced)."""
        self.secrets.forget(value)

    def redact(self, text: str) -> str:
        """`text` with every secret the engine knows replaced (handles by their fingerprint)."""
        return self.secrets.redact(text)

    def _redacted(self, event: ConnectionLost | FatalError | StoreFailed | SendRefused
                  | CallbackFailed) -> Event:
        """`event` with every secret the engine knows replaced in its text from outside."""
        if isinstance(event, StoreFailed | CallbackFailed):
            return attrs.evolve(event, error=self.redact(event.error))
        if isinstance(event, ConnectionLost) and event.sent_reason:
            event = attrs.evolve(event, sent_reason=self.redact(event.sent_reason))
        return attrs.evolve(event, reason=self.redact(event.reason))

    def model_chunk(self, generation: int, text: str) -> bool:
        """A model chunk's text (the bulk path: no audit record per chunk). True when the I/O
        layer must also feed `ModelOutput`: the first chunk of a turn, which the lifecycle acts
        on; the engine keeps the turn's text for history replay."""
        if generation != self.conn.generation:
            return False
        if text:
            self.turn.text.append(text)
        return not self.turn.in_flight

    def written(self, entry: Entry, generation: int, at: float) -> None:
        """The I/O layer wrote a `Send`'s entry on connection `generation` at `at` (the bulk
        path: no audit record). Until then no resumable handle counts as covering it."""
        Journal.written(entry, generation, at)

    def restore(self, handle: str, *, at: float, age: float, compressed: bool = False,
                generation: int = 0, expires_in: float | None = None) -> bool:
        """Seed a handle saved by an earlier process, `age` seconds old at monotonic time `at`,
        so `Connect` resumes it when still valid. Only before `Connect`. A handle the store
        says has expired (`expires_in` <= 0) is never offered: False, and nothing is seeded
        (the session starts fresh, and the audit log says why)."""
        if self.state is not table.INITIAL:
            raise LocalMisuse(f"restore() only before connect, not in state {self.state.value!r}")
        if expires_in is not None and expires_in <= 0:
            self.note("stored_handle_expired", at=at, age_s=round(age, 3),
                      expired_s_ago=round(-expires_in, 3), generation=generation)
            return False
        self.resumption = Resumption(handle=handle, at=at - age)
        self.secrets.add_handle(handle)
        self.span.compressed = compressed
        self.span.confirmed = True
        self.conn = Connection(generation=generation)
        storesync.restored(self, handle)
        return True

    def note(self, name: str, *, at: float, **cause: Any) -> None:
        """An audit record (kind `notice`) for something the I/O layer saw, such as a handle
        restored from a store. No state changes."""
        self._now = max(self._now, at)
        self._record("notice", name, cause=cause)

    def fire(self, trigger: Trigger, **cause: Any) -> list[Action]:
        """Fire a trigger directly (tools and tests); the audit log records it like any other,
        as rejected when the table has no row for it here or no guard holds. Returns the
        actions to perform, like `feed`."""
        self._actions = []
        self._fire(trigger, cause)
        self._drain_followups()
        storesync.after_event(self)
        return self._actions

    def snapshot(self) -> dict[str, Any]:
        """A plain view of the bookkeeping, for tests, debugging and the application."""
        return {
            "session": self.session_id,
            "state": self.state.value,
            "generation": self.conn.generation,
            "connection_open": self.conn.open,
            "handle_fp": fingerprint(self.resumption.handle),
            "compressed": self.span.compressed,
            "journal": len(self.journal),
            "drop_attempts": self.budget.drop_attempts,
            "session_attempts": self.session_attempts,
            "store_degraded": self.durable.degraded,
            "counters": attrs.asdict(self.counters),
        }

    # -- events --------------------------------------------------------------------------------

    def _on_input(self, event: ClientInput) -> None:
        """A client message: journal it, then send it now if the connection carries input
        and nothing holds it (a draining state or a hand-off holds new turns; a write-through
        holds everything behind it). Raises for a send before `connect()` or after the end."""
        # the hot path (50 audio chunks a second per session): the state is read once
        state = self.state
        if state is table.INITIAL:
            raise LocalMisuse("cannot send before connect(): open the session first")
        if state in table.FINAL:
            reason = self.end.reason if self.end else "terminated"
            raise SessionClosed(f"cannot send: the session has ended ({reason})")
        self._next_seq += 1
        if event.kind is InputKind.AUDIO:  # 50 a second: made again from covered ones
            entry = self.journal.audio(self._next_seq, event.payload, event.at)
        else:
            entry = Entry(
                seq=self._next_seq,
                kind=event.kind,
                payload=event.payload,
                created_at=event.at,
                turn_complete=event.turn_complete,
                trigger=is_turn_trigger(event),
                tool_ids=event.tool_ids,
            )
        self.counters.inputs += 1
        self.journal.append(entry)
        # at once when nothing is due (most inputs); folds stale audio into runs when it is
        self.journal.release_stale_audio(self._now - self.policy.replay.audio_staleness)
        if event.kind is InputKind.TOOL_RESPONSE:
            if toolcalls.responded(self, entry):
                return  # dropped: every call it answers was cancelled
        elif event.kind is InputKind.CONTEXT_UPDATE:
            self.setup_context.sent(event.payload)
        elif entry.trigger:  # a new user turn: a call is a repeat only within its turn
            self.outcomes.new_turn()
        if event.kind is InputKind.VIDEO and not self.span.video_sent:
            self.span.video_sent = True
            self._arm_session_cap()
        conn = self.conn
        if self.persistence is not None and event.kind is not InputKind.AUDIO \
                and writethrough.written_through(event.kind):
            storesync.write_through(self, entry)
        if state in table.LIVE and conn.open and conn.setup_done and not self._held(entry):
            if self.durable.waiting:
                return  # it goes out once the store has it, in order (`storesync._release_waiting`)
            self._send(entry, replay=False, as_history=False)

    def _on_refused(self, event: SendRefused) -> None:
        """The SDK would not send an input: it leaves the journal, and the application is told,
        in-band when it was a turn (a replay would only be refused again)."""
        for entry in self.journal:
            if entry.seq == event.seq:
                self._drop(entry, f"google-genai refused to send it ({event.reason}): check what "
                                  "was passed to the send call")
                return

    def _on_callback_failed(self, event: CallbackFailed) -> None:
        """An application callback raised: the application's bug, not a connection failure.
        The session ends at once (a fatal error: no resume, no retry budget spent) with a
        reason that names the callback; the shell raises the application's own exception,
        chained, from `receive()`. After the end there is nothing left to decide."""
        if not self._can(Trigger.FATAL_ERROR):
            return
        why = (f"the application's {event.callback} callback raised {event.error}: the "
               "session was ended (an error in application code, not a connection failure); "
               "fix the callback, which must not raise")
        self.loss = Loss(disposition=Disposition.FATAL, why=why, failure=Failure.CALLBACK,
                         spends_budget=False)
        self._fire(Trigger.FATAL_ERROR, {"reason": why, "callback": event.callback})

    def _held(self, entry: Entry) -> bool:
        """In a state that holds turns (draining), or with a hand-off asked for, a new turn would
        start on a connection about to end and be cut: hold it (journaled) for the next
        connection or worker. Tool responses still go out: the turn in flight needs them."""
        return (
            entry.trigger
            and entry.kind is not InputKind.TOOL_RESPONSE
            and (self.state in table.HOLDS_TURNS or self.handoff is not None)
        )

    def _on_connection_event(self, event: Event) -> None:
        """An event of the current connection, from the server or the shell's reading of it."""
        if isinstance(event, SetupComplete):
            if self.conn.open and self._can(Trigger.SETUP_COMPLETE):
                self._fire(Trigger.SETUP_COMPLETE, {"session_id": event.session_id})
        elif isinstance(event, ConnectionLost):
            self._on_lost(event)
        elif isinstance(event, GoAway):
            left = event.time_left
            if left is None:  # no usable timeLeft: the shortest notice the policy plans for
                left = self.policy.limits.go_away_lead
            deadline = event.at + max(0.0, left)  # zero or negative: the server ends it now
            current = self.conn.go_away_deadline
            self.conn.go_away_deadline = deadline if current is None else min(current, deadline)
            if self._can(Trigger.GO_AWAY):
                self._fire(Trigger.GO_AWAY, {"time_left": event.time_left,
                                             "margin": round(self.go_away_margin, 4)})
        elif isinstance(event, ResumptionUpdate):
            self._on_update(event)
        elif isinstance(event, ModelOutput):
            self._began(event.at)
            if event.text:
                self.turn.text.append(event.text)
        elif isinstance(event, ToolCall):
            self._began(event.at)
            toolcalls.issued(self, event)
        elif isinstance(event, ToolCallCancellation):
            toolcalls.server_cancelled(self, event.ids)
            self._offer_safe_point()
        elif isinstance(event, TurnComplete):
            self.conn.answered = True
            reply = event.reply_text if event.reply_text is not None else "".join(self.turn.text)
            if self.journal.mark_answered(reply):
                self.span.confirmed = True
            self.turn = Turn(busy=event.interaction_idle is False)
            toolcalls.turn_ended(self)
            self._offer_safe_point()
        elif isinstance(event, InteractionStatus):
            self.turn.busy = not event.idle
            self._offer_safe_point()
        elif isinstance(event, Usage):
            self._on_usage(event)
        elif isinstance(event, Latency):
            self.conn.rtt = event.rtt
        elif isinstance(event, TokenIssued):
            tokens.issued(self, event)
        elif isinstance(event, GenerationComplete | Interrupted):
            pass

    def _began(self, at: float) -> None:
        """A reply (or a tool call) began: the turn is in flight from `at`."""
        turn = self.turn
        if not turn.in_flight:
            turn.in_flight, turn.began_at = True, at
            self._cut_marks = 0  # a new reply: an earlier cut's marker is behind it

    def _on_update(self, event: ResumptionUpdate) -> None:
        """`sessionResumptionUpdate`: a resumable one becomes the handle a resume uses, and
        what it covers leaves the journal (`journal.cover`); a non-resumable one changes
        nothing."""
        if not (event.resumable and event.handle):
            return  # mid-turn or mid-tool-call: the last resumable handle stays in force
        self.resumption = Resumption(handle=event.handle, at=event.at)
        self.secrets.add_handle(event.handle)
        toolcalls.covered(self, event.at)
        # a handle issued while a reply streams (3.x) holds the turn and the reply so far
        began = self.turn.began_at
        covered = cover(self.journal, self.conn.generation, at=event.at, lag=event.lag,
                        last_consumed=event.last_consumed_index, transparent=self.transparent,
                        rtt=self.conn.rtt, policy=self.policy.replay,
                        reply=None if began is None else (began, sum(map(len, self.turn.text))))
        self.setup_context.cover(covered)
        self._count(confirmed=inputs(covered))
        storesync.forget(self, covered, covered=True)
        self.span.confirmed = True  # the server has a session worth resuming
        self._offer_safe_point()

    def _on_usage(self, event: Usage) -> None:
        """`usageMetadata`: a prompt count that falls past the compression target means the
        server's sliding window trimmed the context: the session is compressed."""
        previous = self.span.prompt_tokens
        self.span.prompt_tokens = event.prompt_tokens
        # The context only ever grows, except when the sliding window trims it; the server
        # trims before it reports, so the count is seen falling, never reaching the trigger.
        trimmed = (
            self.policy.compression
            and previous > self.policy.compression_target_tokens
            and event.prompt_tokens < previous
        )
        if trimmed and not self.span.compressed:
            self.span.compressed = True
            if self._can(Trigger.COMPRESSION_DETECTED):
                self._fire(
                    Trigger.COMPRESSION_DETECTED,
                    {"prompt_tokens": event.prompt_tokens, "previous": previous},
                )

    def _on_lost(self, event: ConnectionLost) -> None:
        """The connection is gone: classify why (`closecodes.py`) and let the table decide."""
        if not self.conn.open:
            return
        during_setup = event.during_setup or not self.conn.setup_done
        disposition, why = classify_failure(
            event.failure, code=event.code, reason=event.reason, http_status=event.http_status,
            during_setup=during_setup, fresh_tokens=self.tokens.fresh,
        )
        rule = None
        if event.failure is Failure.CLOSED and event.http_status is None:
            rule = close_rule(event.code, event.reason,
                              Phase.SETUP if during_setup else Phase.LIVE)
        todo = rule_hint(rule, event.reason)
        if self.tokens.fresh and event.http_status == 401:
            todo = TOKEN_REFUSED_HINT
        self._lose(Loss(disposition=disposition, why=why, code=event.code, reason=event.reason,
                        http_status=event.http_status, failure=event.failure,
                        spends_budget=rule.spends_budget if rule else True, hint=todo), {})

    def _lose(self, loss: Loss, cause: dict[str, Any]) -> None:
        """The current connection is gone: record why, then let the table decide what follows.
        A connection that stayed up ends the drop; one that did not counts against it."""
        if self._stayed_up():
            self.budget.streak_over()
        if loss.disposition is Disposition.WAIT and self.state is State.RESUMING:
            self.old_socket.refused(self._now)
        else:
            self.old_socket.reset()
        self.loss = loss
        self.conn.open = False
        self.conn.setup_done = False
        self._cancel(Timer.SETUP)
        self._cancel(Timer.TOKEN)
        cause = {
            **cause,
            "code": loss.code,
            "reason": loss.reason,
            "http_status": loss.http_status,
            "failure": loss.failure.value,
            "disposition": loss.disposition.value,
            "why": loss.why,
        }
        trigger = (Trigger.SETUP_REFUSED if loss.disposition is Disposition.REJECTED
                   else Trigger.CONNECTION_LOST)
        self._fire(trigger, cause)

    def _on_timer(self, event: TimerFired) -> None:
        """A timer the engine armed fell due (a stale token means it was cancelled or re-armed)."""
        if self._timers.get(event.timer) != event.token:
            return  # cancelled or re-armed since
        del self._timers[event.timer]
        cause = {"timer": event.timer.value}
        if event.timer is Timer.SETUP:
            self._actions.append(
                CloseConnection(generation=self.conn.generation, code=1000, reason="setup timeout")
            )
            why = f"no setupComplete within {self.policy.limits.setup_timeout:g}s"
            self._lose(Loss(disposition=Disposition.BACKOFF, why=why,
                            failure=Failure.SETUP_TIMEOUT), cause)
        elif event.timer is Timer.ROTATE:
            if self._takes(Trigger.ROTATION_DEADLINE):
                self._fire(Trigger.ROTATION_DEADLINE, cause)
            else:  # no resumable handle yet and time left (guards `handle_valid`,
                # `deadline_passed`): wait for the deadline itself, the turn may bring one
                deadline = self.conn.go_away_deadline
                assert deadline is not None
                self._arm(Timer.ROTATE, deadline - self._now)
        elif event.timer is Timer.SESSION_CAP:
            self._fire(Trigger.SESSION_CAP, cause)
        elif event.timer is Timer.TOKEN:
            tokens.expiring(self, cause)
        elif event.timer is Timer.BACKOFF:
            self._fire(Trigger.RETRY, cause)
        elif event.timer is Timer.LEASE:
            storesync.renew_lease(self)
        elif event.timer is Timer.STORE_RETRY:
            storesync.retry_store(self)
        elif event.timer is Timer.HAND_OFF:
            handoff.at_limit(self)

    def restore_journal(self, entries: list[Entry], *, handed_off: bool,
                        audio: tuple[float, float, int] | None) -> list[Action]:
        """Seed the journal another worker left in the store (after `restore()` of its handle,
        before `Connect`): the entries are replayed once the session is live, as after a local
        resume. `audio`: the audio mark it left (since, until, chunks), reported as a gap.
        Returns the actions to perform (notices; none when the store held no entry, no
        hand-off marker and no audio mark: nothing was taken over)."""
        if self.state is not table.INITIAL:
            raise LocalMisuse(f"restore_journal() only before connect, not in state "
                              f"{self.state.value!r}")
        if self.persistence is None:
            raise LocalMisuse("restore_journal() needs a store: connect(..., store=..., "
                              "session_key=...)")
        self._actions = []
        handoff.take_over(self, entries, handed_off=handed_off, audio=audio)
        return self._actions

    # -- the machine -----------------------------------------------------------------------------

    def _can(self, trigger: Trigger) -> bool:
        """Whether the table has a row for `trigger` from the current state."""
        return bool(table.rows_for(trigger, self.state))

    def _fire(self, trigger: Trigger, cause: dict[str, Any]) -> bool:
        """Fire `trigger` with `cause` through the shared machine; a trigger the table has no row
        for here is recorded as rejected. True when a transition happened."""
        self._cause = cause
        if not self._can(trigger):
            self._audit_trigger(trigger, None)
            return False
        return fire(self, trigger)

    def _drain_followups(self) -> None:
        """Fire, in order, the triggers queued while an event or an entry action ran."""
        while self._followups:
            trigger, cause = self._followups.pop(0)
            self._fire(trigger, cause)

    def _check(self, guard: Guard) -> bool:
        """A guard of the table, evaluated now (`guards.py`)."""
        return GUARDS[guard](self)

    def _takes(self, trigger: Trigger) -> bool:
        """Whether the table has a row for `trigger` from here whose guards hold now."""
        return any(all(GUARDS[g](self) for g in row.guards)
                   for row in table.rows_for(trigger, self.state))

    def _offer(self, trigger: Trigger, cause: dict[str, Any]) -> None:
        """Queue `trigger` when the table has a row for it from here whose guards hold now
        (once: a queued one stands)."""
        if not any(t is trigger for t, _ in self._followups) and self._takes(trigger):
            self._followups.append((trigger, cause))

    def _entered(self, source: State, trigger: Trigger) -> None:
        """Entry actions of the destination state (`table.ENTRY_ACTIONS`): the one place
        transitions become I/O."""
        getattr(self, f"_enter_{self.state.value}")(source, trigger)

    def _enter_idle(self, source: State, trigger: Trigger) -> None:
        """The initial state: nothing to do (no row enters it)."""
        pass  # the initial state has no entering row

    def _enter_connecting(self, source: State, trigger: Trigger) -> None:
        """Open a connection: the first, a fresh session after expiry (`restart_or_give_up`:
        what the old context held is reported lost), or again after a backoff."""
        if trigger is Trigger.RESTART_OR_GIVE_UP:
            self._count(fresh_restarts=1)
            toolcalls.all_lost(self, "context lost: a fresh session started, which never "
                                     "issued it")
            self.old_socket.reset()
            if self.span.confirmed:
                taken = self.journal.take_all()
                unsent = [e for e in taken if e.seq != OWED
                          and e.kind is not InputKind.CONTEXT_UPDATE]
                for entry in taken:  # the new setup delivers them (`_open`)
                    if entry.kind is InputKind.CONTEXT_UPDATE:
                        self.journal.append(entry)
                for entry in unsent:
                    self._drop(entry, "context lost: the session expired before it was "
                                      "confirmed")
                self._notify(ContextLost(reason=str(self._cause["reason"]),
                                         unsent=tuple(unsent)))
            # else the server held nothing yet: the journal goes to the fresh session as is
            self.resumption = Resumption()
            self.span = Span()
            self.turn = Turn()
            toolcalls.forget_all(self)
            if self.loss is None or self._stayed_up():
                self.budget.streak_over()  # not a failure streak (a cap, a good connection)
            if self.budget.fresh_at_once(self._now):
                self._open()
            else:  # the connections before kept failing: no fresh one at once either
                self._retry_later()
        elif trigger is Trigger.CONNECTION_LOST:
            self._retry_later()
        else:
            self._open()

    def _enter_streaming(self, source: State, trigger: Trigger) -> None:
        """Setup completed: the connection carries input (`_enter_live`)."""
        if trigger is Trigger.SETUP_COMPLETE:
            self._enter_live(source)

    def _enter_compressed(self, source: State, trigger: Trigger) -> None:
        """As `streaming`, on a session whose context the server compressed."""
        if trigger is Trigger.SETUP_COMPLETE:
            self._enter_live(source)

    def _enter_live(self, source: State) -> None:
        """The connection is set up: replay the journal (`journal.plan_replay`), arm the caps
        and the token timer, tell the application of a resume, and go on with a hand-off
        that waited for a connection."""
        self._cancel(Timer.SETUP)
        self.conn.setup_done = True
        self.conn.live_at = self._now
        self.old_socket.reset()
        if self.conn.opened_at is not None:
            self.reconnects.add(self._now - self.conn.opened_at)
        self.conn.go_away_deadline = None
        self.loss = None  # whatever ended the last connection is over
        if self.span.started_at is None:
            self.span.started_at = self._now
            self._arm_session_cap()
        if source is State.RESUMING:
            self._count(resumes=1)
        tokens.arm_timer(self)
        plan = self.journal.plan_replay(self._now, self.policy.replay)
        for entry, reason in plan.dropped:
            self._drop(entry, reason, remove=False)
        storesync.forget(self, plan.settled, covered=True)
        replayed = history = repeated = continued = 0
        barrier = min((e.seq for e in self.journal if e.storing), default=None)
        for item in plan.items:
            if barrier is not None and item.entry.seq >= barrier:
                continue  # behind a write-through: `storesync._release_waiting` sends it
            # read before `_send` counts this send: sent on an earlier connection
            replay = item.entry.sends > 0 and not item.continuation
            self._send(item.entry, replay=replay, as_history=item.as_history,
                       continuation=item.continuation)
            replayed += replay
            if item.as_history:
                history += 1
            if item.continuation:
                continued += 1
            if item.repeated:
                repeated += 1
                self._notify(RepeatedReply(seq=item.entry.seq,
                                           possible=not item.entry.answered))
        self._count(replayed_as_history=history, repeated_replies=repeated, continued=continued,
                    confirmed=inputs(plan.settled))
        if source is State.RESUMING:
            self._notify(
                Resumed(
                    generation=self.conn.generation,
                    replayed=replayed,
                    as_history=history,
                    repeated=repeated,
                    dropped=len(plan.dropped),
                    continued=continued,
                )
            )
        handoff.live_again(self)

    def _enter_draining(self, source: State, trigger: Trigger) -> None:
        """A goAway (or an expiring token): rotate at the next safe point, or at the deadline
        minus the learned margin."""
        deadline = self.conn.go_away_deadline
        if deadline is None:
            deadline = self._now
        rotate_at = deadline - self.go_away_margin
        self._arm(Timer.ROTATE, max(0.0, rotate_at - self._now))
        self._offer_safe_point()

    def _enter_resuming(self, source: State, trigger: Trigger) -> None:
        """Leave the connection and resume on a new one: at once (a rotation, a restored
        handle, a retry whose backoff elapsed, a failed hand-off, the first attempt after a
        resumable close), after a wait for an old socket the server holds, or after a backoff
        (`RetryBudget` says which)."""
        self._cancel(Timer.ROTATE)
        self._leave_connection("rotating to a new connection")
        self._mark_cut(source, trigger)
        toolcalls.cancel_unknown(self,
            self.resumption.at if self.resumption.handle is not None else None)
        if trigger in table.ROTATIONS:
            self._count(rotations=1)
            self.budget.streak_over()
            self._open()
        elif trigger in (Trigger.CONNECT, Trigger.RETRY, Trigger.HAND_OFF_FAILED):
            self._open()
        elif (self.loss is not None and self.loss.disposition is Disposition.WAIT
              and self.old_socket.since is not None):
            self._wait_for_old_socket()
        elif self.loss is not None and self.budget.at_once_after_close(
                self._now, resumable=self.loss.disposition is Disposition.RESUME,
                spends=self.loss.spends_budget):
            self._open()  # the first attempt after a resumable close of a good connection
        else:
            self._retry_later()

    def _wait_for_old_socket(self) -> None:
        """The server refused the resume for an old socket it still holds: try again after
        a backoff that spends no budget, within `RetryPolicy.old_socket_wait`, and say so."""
        retry, wait = self.policy.retry, self.old_socket
        delay = wait.delay(self._now, retry, self._rng)
        self._notify(ResumeWaiting(
            reason=self.loss.why if self.loss is not None else "", attempt=wait.tries,
            retry_in=round(delay, 4), gives_up_in=round(wait.gives_up_in(self._now, retry), 4)))
        self._arm(Timer.BACKOFF, delay)

    def _enter_handing_off(self, source: State, trigger: Trigger) -> None:
        """Give the session to the store for another worker (`handoff.enter`)."""
        handoff.enter(self, source, trigger)

    def _enter_expired(self, source: State, trigger: Trigger) -> None:
        """The session can no longer be resumed: mark the cut reply, stop the timers, and ask
        the table whether to start fresh or give up."""
        self._leave_connection("session expired")
        self._mark_cut(source, trigger)  # before the fresh session's reply can begin
        for timer in (Timer.ROTATE, Timer.BACKOFF, Timer.SETUP, Timer.SESSION_CAP, Timer.TOKEN):
            self._cancel(timer)
        self._followups.append(
            (Trigger.RESTART_OR_GIVE_UP, {"reason": self._expiry_reason(trigger)}))

    def _enter_terminated(self, source: State, trigger: Trigger) -> None:
        """The end: every input not delivered is reported dropped, every open tool call lost,
        the store told (`storesync.at_end`), then `Ended`."""
        self._leave_connection(str(self._cause.get("reason") or trigger.value))
        for timer in list(self._timers):
            self._cancel(timer)
        if trigger is Trigger.HANDED_OFF:
            self.end = handoff.end(self)
            self._notify(self.end)
            return
        by_app = trigger is Trigger.CLOSE
        if not by_app:  # the application that closed reads no more; anyone else is told
            self._mark_cut(source, trigger)
        for entry in self.journal.take_all():
            if entry.sends == 0:
                self._drop(entry, "the session ended before it could be sent", remove=False)
            elif not by_app and entry.trigger and not entry.answered and entry.seq != OWED:
                self._drop(entry, "the session ended before the model answered it",
                           remove=False)
        toolcalls.all_lost(self, "the session ended before it was answered")
        storesync.at_end(self)
        lost = self.loss is not None and not by_app and (trigger in (
            Trigger.CONNECTION_LOST, Trigger.SETUP_REFUSED, Trigger.RESTART_OR_GIVE_UP)
            or self.loss.failure is Failure.CALLBACK)
        self.end = Ended(
            reason=self._end_reason(trigger),
            code=self.loss.code if (self.loss and not by_app) else None,
            by_application=by_app,
            failure=self.loss.failure.value if lost and self.loss else None,
        )
        self._notify(self.end)

    def _end_reason(self, trigger: Trigger) -> str:
        """Why the session ended, in words (`wording.end_reason`)."""
        return wording.end_reason(self, trigger, self._cause)

    def _expiry_reason(self, trigger: Trigger) -> str:
        """Why the session expired, in words (`wording.expiry_reason`)."""
        return wording.expiry_reason(self, trigger)

    # -- helpers ---------------------------------------------------------------------------------

    def _offer_safe_point(self) -> None:
        """Something a safe point depends on changed: offer `safe_point`, which the table takes
        when its guard `at_safe_point` holds; with a hand-off asked for, offer `hand_off`
        instead (guard `at_hand_off_point`). It decides nothing itself."""
        if self.handoff is not None:
            handoff.check(self)
            return
        self._offer(Trigger.SAFE_POINT, {"journal": len(self.journal)})

    def _stayed_up(self) -> bool:
        """Whether the current connection worked: it answered a turn, or stayed up for
        `RetryPolicy.stable_after` after setup."""
        live_at = self.conn.live_at
        return live_at is not None and (
            self.conn.answered or self._now - live_at >= self.policy.retry.stable_after)

    def _retry_later(self) -> None:
        """Count a failure retry and arm the backoff; `retry` fires when it elapses."""
        self._arm(Timer.BACKOFF, self.budget.backoff(self._now, self._rng.random()))

    def _open(self) -> None:
        """A new connection: resume with the handle when resuming, else a new session whose
        setup carries the latest context (`context.py`)."""
        self.conn = Connection(generation=self.conn.generation + 1, open=True,
                               opened_at=self._now)
        self._count(connections=1)
        handle = self.resumption.handle if self.state is State.RESUMING else None
        if handle is not None:
            context = self.setup_context.for_resume()
        else:
            context, delivered = self.setup_context.for_new_session(self.journal)
            self._count(confirmed=delivered)  # the setup delivers them
        self._actions.append(
            OpenConnection(generation=self.conn.generation, handle=handle,
                           transparent=self.transparent, context=context)
        )
        self._arm(Timer.SETUP, self.policy.limits.setup_timeout)

    def _leave_connection(self, reason: str) -> None:
        """Close the current connection (if open) with `reason`."""
        self._cancel(Timer.TOKEN)  # the token's expiry ends that connection only
        if self.conn.open:
            self._actions.append(
                CloseConnection(generation=self.conn.generation, code=1000, reason=reason[:120])
            )
            self.conn.open = False
        self.conn.setup_done = False

    def _send(self, entry: Entry, *, replay: bool, as_history: bool,
              continuation: bool = False) -> None:
        """Put `entry` on the current connection, in order; a tool response's first send
        answers its calls."""
        conn = self.conn
        self.journal.mark_sent(entry, conn.generation, conn.next_index)
        conn.next_index += 1
        counters = self.counters
        counters.sent += 1
        if replay:
            counters.replayed += 1
        toolcalls.sent(self, entry)
        self._actions.append(
            Send(generation=conn.generation, entry=entry, replay=replay, as_history=as_history,
                 continuation=continuation)
        )

    def _mark_cut(self, source: State, trigger: Trigger) -> None:
        """The connection is left: a reply in flight on it will not complete. The application
        is told (`ReplyInterrupted`, which the stream marks in-band right here, before any
        later reply); the turn it answered then needs no marker of its own if dropped."""
        if self.turn.in_flight and source in table.LIVE:
            self._notify(ReplyInterrupted(generation=self.conn.generation, reason=trigger.value))
            self._cut_marks = 1
        self.turn = Turn()

    def _drop(self, entry: Entry, reason: str, *, remove: bool = True,
              marked: bool = False, owed: bool = True) -> None:
        """Report an input that will never reach the model. A turn is marked in-band
        (`InputDropped.in_band`) unless its end is marked already: `marked` (a response to
        a cancelled call, whose cut was marked where it happened), or the cut reply just
        marked was its answer. `owed=False`: no reply was owed to it (a response to a call the
        server cancelled): it is no turn."""
        if remove:
            self.journal.remove([entry])
        storesync.forget(self, (entry,), covered=False)
        self._count(dropped=1)
        turn = owed and entry.trigger and not entry.answered
        if turn and not marked and entry.sends and self._cut_marks:
            self._cut_marks -= 1
            marked = True
        self._notify(InputDropped(seq=entry.seq, kind=entry.kind.value, reason=reason,
                                  turn=turn, in_band=turn and not marked))
        toolcalls.dropped(self, entry, reason)

    def _arm_session_cap(self) -> None:
        """Arm the server's session cap (`Limits.session_cap_audio`, or `session_cap_video`
        once video was sent) from the span's start, unless context-window compression is
        configured, which lifts the cap."""
        started = self.span.started_at
        if self.policy.compression or started is None:
            return
        limits = self.policy.limits
        cap = limits.session_cap_video if self.span.video_sent else limits.session_cap_audio
        self._arm(Timer.SESSION_CAP, max(0.0, started + cap - self._now))

    def _emit(self, action: Action) -> None:
        """An action for the shell, in order with the others this event causes."""
        self._actions.append(action)

    def _arm(self, timer: Timer, delay: float) -> None:
        """Arm `timer` (re-arming replaces it): the shell feeds `TimerFired` with this token."""
        self._token += 1
        self._timers[timer] = self._token
        self._actions.append(ArmTimer(timer=timer, delay=delay, token=self._token))

    def _cancel(self, timer: Timer) -> None:
        """Cancel `timer` if armed."""
        if self._timers.pop(timer, None) is not None:
            self._actions.append(CancelTimer(timer=timer))

    def _notify_all(self, notices: list[Notice]) -> None:
        """Tell the application each notice, in order."""
        for notice in notices:
            self._notify(notice)

    def _notify(self, notice: Notice) -> None:
        """Tell the application (`Notify`), and record it in the audit log."""
        self._actions.append(Notify(notice=notice))
        self._record("notice", notice_name(notice), cause=notice_fields(notice))

    def _count(self, **deltas: int) -> None:
        """Add to the running counters."""
        c = self.counters
        for key, delta in deltas.items():
            setattr(c, key, getattr(c, key) + delta)

    # -- audit -----------------------------------------------------------------------------------

    def _audit_trigger(self, trigger: Trigger, transition: Any) -> None:
        """The audit record of a trigger: a transition, or rejected when no row took it."""
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
        """The latest handle's fingerprint, computed once per handle."""
        handle = self.resumption.handle
        if self._fp_of != handle:
            self._fp_of, self._fp = handle, fingerprint(handle)
        return self._fp

    def _record(self, kind: str, name: str, *, cause: dict[str, Any], **extra: Any) -> None:
        """Write one audit record: the event, transition or notice, with the engine's state."""
        self._audit_seq += 1
        record: AuditRecord = {
            "session": self.session_id,
            "seq": self._audit_seq,
            "mono": self._now,
            "wall": self._wall(),
            "kind": kind,
            "name": name,
            "state": self._machine_state,
            "cause": cause,
            "gen": self.conn.generation,
            "handle_fp": self._handle_fp(),
            "attempt": self.budget.drop_attempts,
            "journal": len(self.journal),
        }
        record.update(extra)
        self._audit(record)
