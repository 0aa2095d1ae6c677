"""The words a session ends or expires with: the one place that phrases what happened and what
to do about it, from the engine's bookkeeping (read, never changed).

Every ending says what happened (the close code and reason as the server gave them, secrets
already redacted) and, when the application can act, what to do. The exception a session
raises is here too: whether `receive()` raises at all (`ends_in_error`), the exception
(`terminated_error`) and the cause chained to it (`shown_cause`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import CallbackError, RemoteProtocolError, SessionTerminated
from .actions import Ended
from .closecodes import Disposition, hint
from .events import Failure
from .guards import handle_valid
from .policy import OnExpired
from .table import Trigger

if TYPE_CHECKING:
    from .engine import Lifecycle


def end_reason(s: Lifecycle, trigger: Trigger, cause: Mapping[str, Any]) -> str:
    """Why a session terminated (`Ended.reason`, `SessionTerminated`)."""
    loss = s.loss
    if trigger is Trigger.CLOSE:
        return str(cause.get("reason", "closed by the application"))
    if trigger is Trigger.RESTART_OR_GIVE_UP:
        if s.policy.on_expired is OnExpired.FRESH:
            retry = s.policy.retry
            return (f"{cause['reason']}; no fresh session either: the retry budget "
                    f"({retry.per_session_attempts} attempts within "
                    f"{retry.session_window:g}s) is spent: try again later, or raise "
                    "RetryPolicy.per_session_attempts")
        return (f"{cause['reason']}; policy does not start a fresh session: open a new "
                "one and re-seed the conversation (OnExpired.FRESH does this itself)")
    if loss is not None and trigger in (Trigger.CONNECTION_LOST, Trigger.SETUP_REFUSED):
        seen = (f"close {loss.code}" + (f": {loss.reason}" if loss.reason else "")
                if loss.code is not None else loss.reason)
        what = f"{loss.why} ({seen})" if seen else loss.why
        if loss.disposition in (Disposition.FATAL, Disposition.REJECTED):
            todo = loss.hint or hint(loss.code, loss.http_status, loss.failure)
            return f"fatal: {what}" + (f"; {todo}" if todo else "")
        if loss.failure is Failure.TOKEN_PROVIDER:
            # the application's code failed, not the service: say so (its error is the cause)
            return (f"retry budget exhausted after: {what}; the application's token provider "
                    "kept failing: fix the provider (its last error is the cause), or raise "
                    "the RetryPolicy budgets if its backend is down for a while")
        return (f"retry budget exhausted after: {what}; the service kept failing: "
                "try again later, or raise the RetryPolicy budgets")
    return str(cause.get("reason") or trigger.value)


def expiry_reason(s: Lifecycle, trigger: Trigger) -> str:
    """Why a session expired (`ContextLost.reason`, and the start of the end reason when no
    fresh session follows)."""
    limits = s.policy.limits
    loss = s.loss
    if trigger is Trigger.SESSION_CAP:
        cap = limits.session_cap_video if s.span.video_sent else limits.session_cap_audio
        return f"session duration cap ({cap:g}s) reached without context compression"
    if trigger is Trigger.SETUP_REFUSED and loss is not None:
        return f"the server refused the resumption handle (close {loss.code}: {loss.reason})"
    if trigger is Trigger.RETRY:
        return f"the resumption handle outlived its validity ({s.handle_validity:g}s)"
    if trigger is Trigger.ROTATION_DEADLINE:
        return "goAway deadline reached without a valid resumable handle"
    if loss is not None and loss.disposition is Disposition.WAIT:
        return (f"the server kept refusing to resume (close {loss.code}: {loss.reason}) "
                f"while it held the session's old socket, for "
                f"{s.policy.retry.old_socket_wait:g}s (RetryPolicy.old_socket_wait)")
    if loss is not None:
        what = f"close {loss.code}" if loss.code is not None else loss.why
        if not handle_valid(s):
            return f"connection lost ({what}) with no valid resumable handle"
        return f"connection lost ({what}) and the retry budget is exhausted"
    return trigger.value


def ends_in_error(end: Ended | None, callback_failed: bool) -> bool:
    """Whether the application's `receive()` raises at the end of the stream: the session
    ended other than by `close()` (or a hand-off), or an application callback raised. Else the
    stream just ends."""
    return callback_failed or (end is not None and not end.by_application)


def terminated_error(end: Ended | None,
                     callback: str | None = None) -> SessionTerminated | CallbackError:
    """The exception for a session that ended other than by `close()`: `RemoteProtocolError`
    when the server kept sending what no client can read, `SessionTerminated` otherwise; its
    message is the end reason, its code the last close code. `callback`: the application
    callback that raised (the shell chains its exception): `CallbackError`, the application's
    own error, whatever else happened."""
    if callback is not None:
        reason = (end.reason if end is not None and end.failure == Failure.CALLBACK
                  else f"the application's {callback} callback raised"
                  + (f" as the session ended ({end.reason})" if end is not None else ""))
        return CallbackError(reason, callback=callback)
    kind = (RemoteProtocolError if end is not None and end.failure == Failure.MALFORMED
            else SessionTerminated)
    return kind(end.reason if end else "session ended", code=end.code if end else None)


def shown_cause(cause: BaseException | None,
                redact: Callable[[str], str]) -> BaseException | None:
    """The exception to chain to what the application catches: `cause` itself, unless its
    text carries a secret (a server echoed a handle or the key into its error); then a copy
    whose text shows none (a `RemoteProtocolError` naming the original type), never the
    original."""
    if cause is None:
        return None
    text = str(cause)
    shown = redact(text)
    if shown == text:
        return cause
    return RemoteProtocolError(f"{type(cause).__name__}: {shown}")
