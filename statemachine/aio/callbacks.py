"""The application's own callables (`on_notice`, `on_event`, the `audit` sink), called so that
an exception from one can never pass for a network failure.

The session calls them from deep inside its lifecycle (while a server message, a close or a
timer is being handled); an exception left to propagate there would be taken for the
connection's failure, resumed and retried. Here it is caught and kept; the shell then tells the
core (`CallbackFailed`), which ends the session, and `receive()` raises `CallbackError` with the
application's exception as its cause."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Callbacks:
    """Calls application callables; remembers the first one that raised."""

    __slots__ = ("error", "name", "reported")

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.name = ""
        #: the core has been told (it is told once)
        self.reported = False

    def call(self, name: str, function: Callable[[Any], object], argument: Any) -> None:
        """`function(argument)`; an exception is kept (the first one), never raised here."""
        try:
            function(argument)
        except Exception as exc:  # the application's: reported, never taken for the network's
            if self.error is None:
                self.error, self.name = exc, name

    def describe(self) -> str:
        """The exception as the core records it: its type and message, shortened."""
        error = self.error
        return f"{type(error).__name__}: {error}"[:300] if error is not None else ""
