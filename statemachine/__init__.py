"""A formal session-lifecycle engine for the Gemini Live API.

`statemachine.connect(...)` gives a session that rotates connections at `goAway` without cutting a
reply, resumes after drops without losing input, and tells the application when context is lost.
The lifecycle itself is one table (`statemachine.core.table`) driving a sans-I/O core
(`statemachine.core.Lifecycle`); the asyncio shell (`statemachine.aio`) performs its actions with
google-genai.
"""

from typing import TYPE_CHECKING, Any

from . import testing
from .aio.tokens import Token, TokenProvider
from .core.actions import (
    ContextLost,
    Ended,
    InputDropped,
    Notice,
    RepeatedReply,
    ReplyInterrupted,
    Resumed,
    ResumeWaiting,
    StoreDegraded,
    StoreRecovered,
    TokenExpiring,
    ToolCallEnded,
    ToolCallRepeated,
    ToolCallsCancelled,
)
from .core.closecodes import Disposition, classify_close, classify_http
from .core.engine import Lifecycle
from .core.policy import (
    AnsweredTurnReplay,
    Backend,
    Keepalive,
    Limits,
    OnExpired,
    Policy,
    ReplayPolicy,
    RetryPolicy,
)
from .core.records import SCHEMA_VERSION, fingerprint
from .core.table import State, Trigger
from .errors import (
    CallbackError,
    InvalidTransition,
    LeaseHeld,
    LifecycleError,
    LocalMisuse,
    RemoteProtocolError,
    SessionClosed,
    SessionTerminated,
    SettingsError,
    StoreError,
    TableError,
    TokenProviderError,
)
from .telemetry import Telemetry

if TYPE_CHECKING:
    from .aio.instrument import instrument, uninstrument, wrap_client
    from .aio.session import LiveSession, connect, websocket_args

_LAZY = {"LiveSession", "connect", "websocket_args"}
_LAZY_INSTRUMENT = {"instrument", "uninstrument", "wrap_client"}


def __getattr__(name: str) -> Any:
    """The asyncio shell imports google-genai (most of a second): load it on first use, so the
    command-line tools (audit, diagram, table) start fast."""
    if name in _LAZY:
        from .aio import session

        return getattr(session, name)
    if name in _LAZY_INSTRUMENT:
        from .aio import instrument

        return getattr(instrument, name)
    raise AttributeError(f"module 'statemachine' has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION",
    "AnsweredTurnReplay",
    "Backend",
    "CallbackError",
    "ContextLost",
    "Disposition",
    "Ended",
    "InputDropped",
    "InvalidTransition",
    "Keepalive",
    "LeaseHeld",
    "Lifecycle",
    "LifecycleError",
    "Limits",
    "LiveSession",
    "LocalMisuse",
    "Notice",
    "OnExpired",
    "Policy",
    "RemoteProtocolError",
    "RepeatedReply",
    "ReplayPolicy",
    "ReplyInterrupted",
    "ResumeWaiting",
    "Resumed",
    "RetryPolicy",
    "SessionClosed",
    "SessionTerminated",
    "SettingsError",
    "State",
    "StoreDegraded",
    "StoreError",
    "StoreRecovered",
    "TableError",
    "Telemetry",
    "Token",
    "TokenExpiring",
    "TokenProvider",
    "TokenProviderError",
    "ToolCallEnded",
    "ToolCallRepeated",
    "ToolCallsCancelled",
    "Trigger",
    "classify_close",
    "classify_http",
    "connect",
    "fingerprint",
    "instrument",
    "testing",
    "uninstrument",
    "websocket_args",
    "wrap_client",
]
