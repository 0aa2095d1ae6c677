"""The lifecycle of one Live API session: the one and only transition table.

Everything that describes the lifecycle lives here. `machine.py` builds the one shared
`transitions.Machine` from `TRANSITIONS` (the engine, `engine.py`, fires its triggers), the
diagrams render it, the audit validator checks logs against it. Nothing else may restate which
state a trigger leads to. The guards are implemented in `guards.py`, one pure function each.

Theory of operation
-------------------
A session starts `idle`. `connect` opens a connection without a handle (`connecting`), or, when a
valid handle was restored from a store, resumes it (`resuming`); the server's `setupComplete`
makes it `streaming`. A `goAway` moves it to `draining` (a later, shorter `goAway` moves the
deadline earlier): the turn in flight finishes while input is still sent and journaled, and at the
first safe point (or at the deadline minus a margin) the session moves to `resuming`: the old
socket is closed first, a new one is opened with the latest resumable handle, and the journal is
replayed after `setupComplete`. An unexpected close is classified by its close code (data in
`closecodes.py`): fatal closes terminate, others resume when a valid handle exists, after a
backoff (`retry`) when the close calls for one. A setup the server refuses (`setup_refused`)
expires a resumed session (its handle was refused) and ends a new one.
A session that cannot continue is `expired`; policy then starts a fresh one (the application is
told its context was lost) or gives up (`restart_or_give_up`). `terminated` is final.
A session the application hands to another worker (`hand_off`, at a safe point or at the
hand-off's limit) is `handing_off`: its connection is closed and its handle and journal are
being written to the store; it ends (`handed_off`) once they are, or, when the store fails,
takes its lease back and goes on where it was (`hand_off_failed`).

Where a trigger has several rows for one source, the rows are tried in table order and the first
whose guards all hold wins; a row without guards is the fallback and must come last. The engine
fires a trigger the table has no row for only to record it as rejected; it asks the table (never a
list of its own) whether a trigger applies in the current state.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping

import attrs

from ..errors import TableError


class State(enum.StrEnum):
    """Lifecycle states; the values appear verbatim in logs and diagrams."""

    IDLE = "idle"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    COMPRESSED = "compressed"
    DRAINING = "draining"
    RESUMING = "resuming"
    EXPIRED = "expired"
    HANDING_OFF = "handing_off"
    TERMINATED = "terminated"


INITIAL = State.IDLE
FINAL = frozenset({State.TERMINATED})

#: States in which a connection has completed setup and carries traffic.
LIVE = frozenset({State.STREAMING, State.COMPRESSED, State.DRAINING})

#: States that hold new turns back for the next connection (a turn started now would be cut by
#: the rotation to come); other input still goes out.
HOLDS_TURNS = frozenset({State.DRAINING})

STATE_DOCS: Mapping[State, str] = {
    State.IDLE: "created, not yet connected",
    State.CONNECTING: "opening a new session (no handle): connect + setup, until setupComplete",
    State.STREAMING: "live; input flows",
    State.COMPRESSED: "live, and the server's sliding window has trimmed the context "
    "(same exits as streaming, except the session cap, which compression lifts)",
    State.DRAINING: "goAway received (or the ephemeral token nears its expiry): finish the turn, "
    "keep journaling, rotate at a safe point",
    State.RESUMING: "old socket closed; connecting with the latest resumable handle",
    State.EXPIRED: "this session cannot continue; policy restarts fresh or gives up",
    State.HANDING_OFF: "handed to another worker: connection closed, handle and journal being "
    "written to the store with the lease released",
    State.TERMINATED: "closed by the application, a fatal error or an exhausted budget",
}


class Trigger(enum.StrEnum):
    """What the engine fires on the machine; one name per lifecycle cause."""

    CONNECT = "connect"
    SETUP_COMPLETE = "setup_complete"
    GO_AWAY = "go_away"
    TOKEN_EXPIRING = "token_expiring"
    COMPRESSION_DETECTED = "compression_detected"
    SAFE_POINT = "safe_point"
    ROTATION_DEADLINE = "rotation_deadline"
    CONNECTION_LOST = "connection_lost"
    SETUP_REFUSED = "setup_refused"
    RETRY = "retry"
    SESSION_CAP = "session_cap"
    RESTART_OR_GIVE_UP = "restart_or_give_up"
    CLOSE = "close"
    FATAL_ERROR = "fatal_error"
    HAND_OFF = "hand_off"
    HAND_OFF_DEADLINE = "hand_off_deadline"
    HANDED_OFF = "handed_off"
    HAND_OFF_FAILED = "hand_off_failed"


TRIGGER_DOCS: Mapping[Trigger, str] = {
    Trigger.CONNECT: "the application opens the session (resuming a stored handle if valid)",
    Trigger.SETUP_COMPLETE: "the server answered setup with setupComplete",
    Trigger.GO_AWAY: "the server announced the end of this connection (timeLeft)",
    Trigger.TOKEN_EXPIRING: "the connection's ephemeral token expires within token_lead: taken "
    "when `fresh_token_helps` holds, to move like after a goAway",
    Trigger.COMPRESSION_DETECTED: "promptTokenCount fell after reaching the compression trigger",
    Trigger.SAFE_POINT: "something changed that may make this a safe point (a turn completed, "
    "a handle arrived, a tool call ended): taken when `at_safe_point` holds",
    Trigger.ROTATION_DEADLINE: "goAway deadline minus margin reached before a safe point",
    Trigger.CONNECTION_LOST: "the connection closed or setup failed/timed out",
    Trigger.SETUP_REFUSED: "the server refused the setup (1007/1008): on a resume, the handle",
    Trigger.RETRY: "the backoff after a failure elapsed: connect again (the handle may have "
    "expired meanwhile)",
    Trigger.SESSION_CAP: "session duration cap reached without compression",
    Trigger.RESTART_OR_GIVE_UP: "policy's answer to an expired session: a fresh session "
    "(the application must re-seed context), or the end",
    Trigger.CLOSE: "the application closed the session",
    Trigger.FATAL_ERROR: "an error no retry can fix (a lost lease, a local error)",
    Trigger.HAND_OFF: "the application asked to hand the session to another worker (and a "
    "point came where nothing would be cut)",
    Trigger.HAND_OFF_DEADLINE: "the hand-off's limit passed before such a point: hand off now, "
    "cutting what is under way (reported)",
    Trigger.HANDED_OFF: "the store holds the handle and the journal, and the lease is free",
    Trigger.HAND_OFF_FAILED: "the store did not take the hand-off and the lease is ours again: "
    "go on here",
}


#: Trigger names an earlier table used, and the trigger whose rows took their place (same
#: source and destination, now chosen by a guard). Logs written before the rename still read
#: as legal: a transition recorded under an old name is checked as the new trigger's.
RENAMED_TRIGGERS: Mapping[str, Trigger] = {
    "resume_rejected": Trigger.SETUP_REFUSED,  # resuming -> expired
    "handle_expired": Trigger.RETRY,  # resuming -> expired
    "restart_fresh": Trigger.RESTART_OR_GIVE_UP,  # expired -> connecting
    "give_up": Trigger.RESTART_OR_GIVE_UP,  # expired -> terminated
}


def current_name(name: str) -> str:
    """A recorded trigger name as the table names it now."""
    renamed = RENAMED_TRIGGERS.get(name)
    return renamed.value if renamed is not None else name


#: Triggers that move to a new connection on purpose after a goAway (a rotation), as opposed to
#: recovering from a failure: rotations spend no retry budget, and the audit counts them apart.
ROTATIONS = frozenset({Trigger.SAFE_POINT, Trigger.ROTATION_DEADLINE})


class Guard(enum.StrEnum):
    """Named conditions; the engine evaluates each from its own bookkeeping."""

    CLOSE_IS_FATAL = "close_is_fatal"
    RETRY_BUDGET_LEFT = "retry_budget_left"
    HANDLE_VALID = "handle_valid"
    WAS_COMPRESSED = "was_compressed"
    FRESH_ALLOWED = "fresh_allowed"
    AT_SAFE_POINT = "at_safe_point"
    AT_HAND_OFF_POINT = "at_hand_off_point"
    OLD_SOCKET_WAIT_SPENT = "old_socket_wait_spent"
    FRESH_TOKEN_HELPS = "fresh_token_helps"
    DEADLINE_PASSED = "deadline_passed"


GUARD_DOCS: Mapping[Guard, str] = {
    Guard.CLOSE_IS_FATAL: "the close code/handshake error is classified fatal",
    Guard.RETRY_BUDGET_LEFT: "per-drop and per-session retry budgets allow another attempt",
    Guard.HANDLE_VALID: "a resumable handle exists and is within its validity",
    Guard.WAS_COMPRESSED: "the context was compressed before this connection",
    Guard.FRESH_ALLOWED: "policy restarts expired sessions and the session budget allows it",
    Guard.AT_SAFE_POINT: "no reply in flight, the interaction idle, no tool call or turn input "
    "waiting for an answer, and a valid resumable handle covering it all",
    Guard.AT_HAND_OFF_POINT: "a hand-off was asked for, and no connection carries traffic or "
    "nothing is under way on it (as at a safe point, with a valid handle or none needed yet)",
    Guard.OLD_SOCKET_WAIT_SPENT: "the server refused the resume for an old socket it still "
    "holds, and RetryPolicy.old_socket_wait has run out since its first such refusal",
    Guard.DEADLINE_PASSED: "the connection's end (goAway's timeLeft, an expiring token) has come, "
    "or none was announced: waiting longer for a handle gains nothing",
    Guard.FRESH_TOKEN_HELPS: "a token provider gives each connection a fresh token, and the "
    "last move got one at least token_lead younger than the token it left",
}


#: What the engine does on entering each state (`Lifecycle._enter_<state>`): the only place where
#: transitions become I/O. A test checks that every state has both this line and its method.
ENTRY_ACTIONS: Mapping[State, str] = {
    State.IDLE: "nothing (the initial state is never re-entered)",
    State.CONNECTING: "open a new connection without a handle; after a failure (connection_lost) "
    "arm the backoff timer instead; from restart_or_give_up first report the unconfirmed input "
    "dropped and tell the application its context was lost (ContextLost), then open at once, or "
    "after a backoff when the connections before kept failing",
    State.STREAMING: "from setup_complete: cancel the setup timer, start the session clock, "
    "replay the journal (Resumed after a resume)",
    State.COMPRESSED: "as streaming when entered from setup_complete; nothing on detection",
    State.DRAINING: "arm the rotation timer at the goAway deadline (or the token's expiry) minus "
    "the margin (a later one may only move it earlier); rotate at once if this is already a "
    "safe point",
    State.RESUMING: "close the old socket (cutting a reply in flight is announced in-band), then "
    "open a connection with the latest resumable handle: at once for a rotation, a restored "
    "handle, a retry, a failed hand-off, or the first attempt after a resumable close; after a "
    "backoff otherwise "
    "(a refusal for an old socket the server still holds: a backoff that spends no budget, "
    "announced with ResumeWaiting)",
    State.EXPIRED: "close the connection, cancel the connection's timers (rotation, backoff, "
    "setup, session cap, token; the store's and a hand-off's go on), then restart_or_give_up",
    State.HANDING_OFF: "close the connection (a reply the limit cuts is announced in-band), "
    "cancel the timers but the lease's, write the latest handle and the whole journal to the "
    "store, marked handed off, releasing the lease in the same step",
    State.TERMINATED: "close the connection, cancel every timer, report unsent input dropped, "
    "save the latest handle and release the lease, tell the application why it ended (Ended); "
    "from handed_off: report the input that came after the hand-off was written dropped, "
    "tell the application it was handed off (HandedOff, Ended)",
}


@attrs.frozen(kw_only=True)
class Transition:
    """One row of the table: `trigger` from any of `sources` to `dest` when all `guards` hold."""

    trigger: Trigger
    sources: tuple[State, ...]
    dest: State
    guards: tuple[Guard, ...] = ()

    @property
    def label(self) -> str:
        """The edge label used by diagrams: trigger plus guards."""
        if not self.guards:
            return self.trigger.value
        return f"{self.trigger.value} [{' & '.join(g.value for g in self.guards)}]"


def _t(trigger: Trigger, sources: Iterable[State], dest: State, *guards: Guard) -> Transition:
    return Transition(trigger=trigger, sources=tuple(sources), dest=dest, guards=tuple(guards))


S = State
_LIVE_ORDER = (S.STREAMING, S.COMPRESSED, S.DRAINING)
_NOT_FINAL = (S.IDLE, S.CONNECTING, *_LIVE_ORDER, S.RESUMING, S.EXPIRED, S.HANDING_OFF)

TRANSITIONS: tuple[Transition, ...] = (
    _t(Trigger.CONNECT, [S.IDLE], S.RESUMING, Guard.HANDLE_VALID),  # restored from a store
    _t(Trigger.CONNECT, [S.IDLE], S.CONNECTING),
    _t(Trigger.SETUP_COMPLETE, [S.CONNECTING], S.STREAMING),
    _t(Trigger.SETUP_COMPLETE, [S.RESUMING], S.COMPRESSED, Guard.WAS_COMPRESSED),
    _t(Trigger.SETUP_COMPLETE, [S.RESUMING], S.STREAMING),
    _t(Trigger.COMPRESSION_DETECTED, [S.STREAMING], S.COMPRESSED),
    _t(Trigger.GO_AWAY, [S.STREAMING, S.COMPRESSED, S.DRAINING], S.DRAINING),
    _t(Trigger.TOKEN_EXPIRING, [S.STREAMING, S.COMPRESSED, S.DRAINING], S.DRAINING,
       Guard.FRESH_TOKEN_HELPS),
    _t(Trigger.SAFE_POINT, [S.DRAINING], S.RESUMING, Guard.AT_SAFE_POINT),
    _t(Trigger.ROTATION_DEADLINE, [S.DRAINING], S.RESUMING, Guard.HANDLE_VALID),
    _t(Trigger.ROTATION_DEADLINE, [S.DRAINING], S.EXPIRED, Guard.DEADLINE_PASSED),
    _t(Trigger.CONNECTION_LOST, [S.CONNECTING], S.TERMINATED, Guard.CLOSE_IS_FATAL),
    _t(Trigger.CONNECTION_LOST, [S.CONNECTING], S.CONNECTING, Guard.RETRY_BUDGET_LEFT),
    _t(Trigger.CONNECTION_LOST, [S.CONNECTING], S.TERMINATED),
    _t(Trigger.CONNECTION_LOST, [*_LIVE_ORDER, S.RESUMING], S.TERMINATED, Guard.CLOSE_IS_FATAL),
    # a server that keeps the old socket: the handle is given up after a bounded wait
    _t(Trigger.CONNECTION_LOST, [S.RESUMING], S.EXPIRED, Guard.OLD_SOCKET_WAIT_SPENT),
    _t(
        Trigger.CONNECTION_LOST,
        [*_LIVE_ORDER, S.RESUMING],
        S.RESUMING,
        Guard.HANDLE_VALID,
        Guard.RETRY_BUDGET_LEFT,
    ),
    _t(Trigger.CONNECTION_LOST, [*_LIVE_ORDER, S.RESUMING], S.EXPIRED),
    _t(Trigger.SETUP_REFUSED, [S.RESUMING], S.EXPIRED),  # the handle was refused
    _t(Trigger.SETUP_REFUSED, [S.CONNECTING], S.TERMINATED),  # the setup itself is wrong
    _t(Trigger.RETRY, [S.CONNECTING], S.CONNECTING),
    _t(Trigger.RETRY, [S.RESUMING], S.RESUMING, Guard.HANDLE_VALID),
    _t(Trigger.RETRY, [S.RESUMING], S.EXPIRED),  # the handle expired during the backoff
    # not from `compressed`: compression is what lifts the cap
    _t(Trigger.SESSION_CAP, [S.STREAMING, S.DRAINING, S.RESUMING], S.EXPIRED),
    _t(Trigger.RESTART_OR_GIVE_UP, [S.EXPIRED], S.CONNECTING, Guard.FRESH_ALLOWED),
    _t(Trigger.RESTART_OR_GIVE_UP, [S.EXPIRED], S.TERMINATED),
    _t(Trigger.CLOSE, _NOT_FINAL, S.TERMINATED),
    _t(Trigger.FATAL_ERROR, [S.CONNECTING, *_LIVE_ORDER, S.RESUMING, S.EXPIRED, S.HANDING_OFF],
       S.TERMINATED),
    _t(Trigger.HAND_OFF, [*_LIVE_ORDER], S.HANDING_OFF, Guard.AT_HAND_OFF_POINT),
    _t(Trigger.HAND_OFF_DEADLINE, [*_LIVE_ORDER], S.HANDING_OFF),
    _t(Trigger.HANDED_OFF, [S.HANDING_OFF], S.TERMINATED),
    _t(Trigger.HAND_OFF_FAILED, [S.HANDING_OFF], S.RESUMING, Guard.HANDLE_VALID),
    _t(Trigger.HAND_OFF_FAILED, [S.HANDING_OFF], S.CONNECTING),
)


def rows_for(trigger: Trigger, source: State) -> tuple[Transition, ...]:
    """The rows a trigger may take from a state, in the order they are tried."""
    return _BY_KEY.get((trigger, source), ())


def edges() -> list[tuple[State, State, Transition]]:
    """Every (source, dest, row) edge of the table, in table order."""
    return [(src, row.dest, row) for row in TRANSITIONS for src in row.sources]


def shortest_paths() -> dict[State, tuple[tuple[State, Transition], ...]]:
    """For each state, the shortest sequence of (source, row) steps from the initial state.
    Among equally short paths, unguarded rows (the common case) are preferred."""
    paths: dict[State, tuple[tuple[State, Transition], ...]] = {INITIAL: ()}
    queue = deque([INITIAL])
    ordered = sorted(edges(), key=lambda edge: bool(edge[2].guards))
    while queue:
        state = queue.popleft()
        for src, dest, row in ordered:
            if src is state and dest not in paths:
                paths[dest] = (*paths[state], (src, row))
                queue.append(dest)
    return paths


def validate(rows: Iterable[Transition] = TRANSITIONS) -> None:
    """Raise `TableError` naming every defect of a table; called at import on `TRANSITIONS`."""
    rows = tuple(rows)
    problems: list[str] = []
    known = set(State)
    if INITIAL not in known:
        problems.append(f"initial state {INITIAL!r} is not a state")
    for row in rows:
        for state in (*row.sources, row.dest):
            if state not in known:
                problems.append(f"{row.label}: unknown state {state!r}")
        if not row.sources:
            problems.append(f"{row.label}: no source states")
        for src in row.sources:
            if src in FINAL:
                problems.append(f"{row.label}: leaves final state {src.value}")
    groups: dict[tuple[Trigger, State], list[Transition]] = {}
    for row in rows:
        for src in row.sources:
            groups.setdefault((row.trigger, src), []).append(row)
    for (trigger, src), group in groups.items():
        for row in group[:-1]:
            if not row.guards:
                problems.append(
                    f"{trigger.value} from {src.value}: unguarded row to {row.dest.value} "
                    "shadows the rows after it"
                )
    if problems:
        raise TableError("invalid lifecycle table:\n  " + "\n  ".join(problems))
    succ: dict[State, set[State]] = {s: set() for s in State}
    for row in rows:
        for src in row.sources:
            succ[src].add(row.dest)
    reached = _closure(INITIAL, succ)
    for state in State:
        if state not in reached:
            problems.append(f"state {state.value} is unreachable from {INITIAL.value}")
        if state not in FINAL:
            if not succ[state]:
                problems.append(f"state {state.value} has no exit (trap state)")
            elif not (_closure(state, succ) & FINAL):
                problems.append(f"state {state.value} cannot reach a final state")
    if problems:
        raise TableError("invalid lifecycle table:\n  " + "\n  ".join(problems))


def _closure(start: State, succ: Mapping[State, set[State]]) -> set[State]:
    seen = {start}
    stack = [start]
    while stack:
        for nxt in succ[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


_BY_KEY: dict[tuple[Trigger, State], tuple[Transition, ...]] = {}
for _row in TRANSITIONS:
    for _src in _row.sources:
        _BY_KEY[(_row.trigger, _src)] = (*_BY_KEY.get((_row.trigger, _src), ()), _row)

validate()
