"""Exceptions. Local misuse (the application did something wrong) and remote misbehaviour (the
server did) are different classes; each also subclasses the nearest builtin so generic handlers
still catch it, and each message says what happened and what to do."""

from __future__ import annotations


class LifecycleError(Exception):
    """Base class of every error this library raises."""


class TableError(LifecycleError, ValueError):
    """The transition table is malformed; raised at import, so a broken table never runs."""


class SettingsError(LifecycleError, ValueError):
    """A setting is out of range; raised when the settings object is built."""


class LogError(LifecycleError, ValueError):
    """An audit log does not hold what was asked of it (no such session, no records)."""


class OutputError(LifecycleError, OSError):
    """A command could not write its output where it was asked to (an existing file without
    --force, a folder, a read-only place, a full disk); the message names the path and what
    to do, and the file system's own error is the cause."""


class InvalidTransition(LifecycleError, RuntimeError):
    """A trigger was fired in a state that has no row for it."""

    def __init__(self, trigger: str, state: str, hint: str = "") -> None:
        self.trigger = trigger
        self.state = state
        msg = f"cannot {trigger!r} in state {state!r}"
        super().__init__(f"{msg}: {hint}" if hint else msg)


class LocalMisuse(LifecycleError, RuntimeError):
    """The application called the library in a way its current state does not allow."""


class SessionClosed(LocalMisuse):
    """The session has ended; the message says why. Open a new session to continue."""


class SessionTerminated(LifecycleError, ConnectionError):
    """The session ended for a reason other than the application closing it."""

    def __init__(self, reason: str, *, code: int | None = None) -> None:
        self.reason = reason
        self.code = code
        super().__init__(reason)


class RemoteProtocolError(SessionTerminated):
    """The session ended because the server kept sending what the Live API protocol does not
    allow (frames that are not JSON objects, or too large): the cause is chained."""


class CallbackError(LifecycleError, RuntimeError):
    """An application callback (`on_notice`, `on_event`, the `audit` sink) raised: the
    session was ended at once, without resuming or retrying (it is the application's error,
    not the network's). The callback's own exception is the cause (`__cause__`); `callback`
    names which one raised. Not a `SessionTerminated`: nothing about the service is wrong."""

    def __init__(self, reason: str, *, callback: str) -> None:
        self.reason = reason
        self.callback = callback
        super().__init__(reason)


class TokenProviderError(LifecycleError, ConnectionError):
    """The application's token provider raised, timed out or returned no token; the session
    retries it like a failed connection (the provider's own error is the cause)."""


class StoreError(LifecycleError, ConnectionError):
    """The store cannot be reached or failed; a live session degrades to memory on it."""


class LeaseHeld(LifecycleError, RuntimeError):
    """Another process holds the session's lease: it is live elsewhere."""

    def __init__(self, key: str, holder: str, expires_in: float) -> None:
        self.key = key
        self.holder = holder
        self.expires_in = expires_in
        super().__init__(
            f"session {key!r} is connected by {holder!r} (lease expires in {expires_in:.1f}s "
            "unless renewed): close it there, or wait for that worker's lease to run out"
        )


class SigningKeyError(LifecycleError, ValueError):
    """An audit signing or public key cannot be read or is not an Ed25519 key. The message names
    the file or variable, never the key material."""


class AuditLogBusy(LocalMisuse):
    """Another writer (in this process or another) has the audit log open: one writer per file."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"audit log {path!r} is already open for writing by another writer (this process or "
            "another): give each process its own file (e.g. with the process id in its name), "
            "and within a process share one writer, as configure() does for every session"
        )
