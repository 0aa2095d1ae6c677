"""Sessions that outlive their worker: one session's hand-off, and a whole worker's drain.

`await session.hand_off()` hands one session to whichever worker connects its key next (the
core decides when and what: `core/handoff.py`). `await statemachine.drain(deadline=25)` hands
off every live session of the process at once and refuses new ones; for SIGTERM:

    statemachine.drain_on(signal.SIGTERM, deadline=25.0, then=stop.set)
"""

from __future__ import annotations

import asyncio
import signal
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ..core import handoff as core_handoff
from ..core.actions import HandedOff, HandOffFailed, Notice
from ..core.events import HandOff
from ..errors import SettingsError, WorkerDraining

if TYPE_CHECKING:
    from .session import LiveSession


@attrs.frozen(kw_only=True)
class HandOffResult:
    """What became of one session's hand-off. `handed_off`: the store holds it and the next
    worker to connect its key resumes it; otherwise it stays live here (`reason` says why).
    `seconds`: from the call to the outcome. `transferred`: inputs no handle covered, now in
    the store. `cut`: what the limit cut ("" at a safe point)."""

    session_id: str
    key: str | None
    handed_off: bool
    seconds: float
    reason: str
    transferred: int = 0
    cut: str = ""


@attrs.frozen(kw_only=True)
class DrainSummary:
    """`drain()`'s answer: one result per session that was live, and whether all of them were
    made durable before the deadline."""

    results: tuple[HandOffResult, ...]
    seconds: float
    complete: bool

    @property
    def handed_off(self) -> int:
        return sum(1 for r in self.results if r.handed_off)


_live: weakref.WeakSet[LiveSession] = weakref.WeakSet()
_draining: str | None = None  # why new sessions are refused


def register(session: LiveSession) -> None:
    """A session that started: a drain hands it off."""
    _live.add(session)


def refuse_if_draining() -> None:
    if _draining is not None:
        raise WorkerDraining(f"this worker is draining ({_draining}): its sessions are moving "
                             "to other workers and no new session starts here: connect on "
                             "another worker")


def accept_again() -> None:
    """Accept new sessions again after a drain (a worker that drained and stays up)."""
    global _draining
    _draining = None


async def hand_off(session: LiveSession, within: float) -> HandOffResult:
    """`LiveSession.hand_off`: feed `HandOff`, wait for its outcome (bounded), stop the session's
    tasks when it ended."""
    if not (isinstance(within, int | float) and within > 0):
        raise SettingsError(f"within must be a number of seconds > 0, got {within!r}")
    core = session.core
    key = core.persistence.key if core.persistence is not None else None
    started = time.monotonic()
    outcome = session._await_hand_off()
    try:
        session._feed(HandOff(at=session._now(), limit=within))  # the core refuses an ended one
    except BaseException:
        outcome.cancel()
        raise
    store_timeout = core.persistence.store_timeout if core.persistence is not None else 0.0
    bound = within + 3 * store_timeout + core.policy.keepalive.close_timeout
    try:
        async with asyncio.timeout(bound):
            notice = await outcome
    except TimeoutError:
        return HandOffResult(session_id=core.session_id, key=key, handed_off=False,
                             seconds=time.monotonic() - started,
                             reason=f"no outcome within {bound:g}s: the store did not answer; "
                                    "the session is still being handed off")
    if isinstance(notice, HandedOff):
        await session._shutdown()
        return HandOffResult(session_id=core.session_id, key=key, handed_off=True,
                             seconds=time.monotonic() - started, reason="handed off",
                             transferred=notice.transferred, cut=notice.cut)
    reason = notice.reason if isinstance(notice, HandOffFailed) else str(notice)
    return HandOffResult(session_id=core.session_id, key=key, handed_off=False,
                         seconds=time.monotonic() - started, reason=reason)


def outcome_of(notice: Notice) -> bool:
    """Whether `notice` ends a hand-off (either way)."""
    return isinstance(notice, HandedOff | HandOffFailed)


async def drain(deadline: float = 25.0, *, reason: str = "") -> DrainSummary:
    """Hand off every live session of this process at once and refuse new ones; return when all
    are durable in their store or `deadline` seconds have passed, with what became of each.
    Sessions without a session_key cannot move: they are reported and left as they are."""
    global _draining
    started = time.monotonic()
    _draining = reason or f"drain() called, deadline {deadline:g}s"
    loop = asyncio.get_running_loop()  # sessions live on the loop that runs them
    sessions = [s for s in list(_live) if s.ended is None and s.loop is loop]
    store = max((s.core.persistence.store_timeout for s in sessions
                 if s.core.persistence is not None), default=0.0)
    within = core_handoff.drain_limit(deadline, store)

    async def one(session: LiveSession) -> HandOffResult:
        if session.core.persistence is None:
            return HandOffResult(session_id=session.session_id, key=None, handed_off=False,
                                 seconds=0.0, reason="no session_key: it cannot move to "
                                                     "another worker")
        try:
            return await hand_off(session, within)
        except Exception as exc:  # one session's trouble never stops the others' hand-off
            return HandOffResult(session_id=session.session_id,
                                 key=session.core.persistence.key, handed_off=False,
                                 seconds=time.monotonic() - started,
                                 reason=f"{type(exc).__name__}: {exc}")

    tasks = [asyncio.ensure_future(one(s)) for s in sessions]
    done: set[asyncio.Future[HandOffResult]] = set()
    if tasks:
        done, _ = await asyncio.wait(tasks, timeout=max(0.0, deadline))
    results = []
    for session, task in zip(sessions, tasks, strict=True):
        if task in done:
            results.append(task.result())
        else:
            results.append(HandOffResult(
                session_id=session.session_id,
                key=session.core.persistence.key if session.core.persistence else None,
                handed_off=False, seconds=time.monotonic() - started,
                reason=f"not durable by the drain's deadline ({deadline:g}s); still in state "
                       f"{session.state}"))
    return DrainSummary(results=tuple(results), seconds=time.monotonic() - started,
                        complete=all(r.handed_off for r in results))


def drain_on(signum: int = signal.SIGTERM, *, deadline: float = 25.0,
             then: Callable[[DrainSummary], Any] | None = None) -> None:
    """On `signum` (SIGTERM), drain this process's sessions within `deadline` seconds, then
    call `then(summary)` (to stop the worker). Call from the running event loop."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        task = loop.create_task(drain(deadline, reason=f"signal {signal.Signals(signum).name}"))
        if then is not None:
            task.add_done_callback(
                lambda t: then(t.result())
                if not t.cancelled() and t.exception() is None else None)

    loop.add_signal_handler(signum, on_signal)
