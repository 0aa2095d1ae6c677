"""A formal session-lifecycle engine for the Gemini Live API.

`statemachine.connect(...)` gives a session that rotates connections at `goAway` without cutting a
reply, resumes after drops without losing input, and tells the application when context is lost.
The lifecycle itself is one table (`statemachine.table`) driving a sans-I/O core
(`statemachine.core.Lifecycle`).
"""

from .audit import SCHEMA_VERSION, fingerprint
from .closecodes import Disposition, classify_close, classify_http
from .core import Lifecycle
from .errors import (
    InvalidTransition,
    LifecycleError,
    LocalMisuse,
    RemoteProtocolError,
    SessionClosed,
    SessionTerminated,
    SettingsError,
    TableError,
)
from .session import LiveSession, connect, websocket_args
from .settings import (
    AnsweredTurnReplay,
    Backend,
    Keepalive,
    Limits,
    OnExpired,
    Policy,
    ReplayPolicy,
    RetryPolicy,
)
from .table import State, Trigger

__all__ = [
    "SCHEMA_VERSION",
    "AnsweredTurnReplay",
    "Backend",
    "Disposition",
    "InvalidTransition",
    "Keepalive",
    "Lifecycle",
    "LifecycleError",
    "Limits",
    "LiveSession",
    "LocalMisuse",
    "OnExpired",
    "Policy",
    "RemoteProtocolError",
    "ReplayPolicy",
    "RetryPolicy",
    "SessionClosed",
    "SessionTerminated",
    "SettingsError",
    "State",
    "TableError",
    "Trigger",
    "classify_close",
    "classify_http",
    "connect",
    "fingerprint",
    "websocket_args",
]
