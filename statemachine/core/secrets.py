"""Secrets, by value: what must never reach a record, a notice or an error, and what to show
instead. The one owner of redaction in the core.

The shell adds the API key and each ephemeral token; the engine adds every resumable handle it
sees (shown as its fingerprint). Text that came from outside (a close reason, an error message,
a store's error) passes through `redact` before it is recorded or raised: a server that echoes a
handle or a key must not leak it through us.
"""

from __future__ import annotations

from .records import fingerprint

#: handles kept for redaction: a session may see thousands; the latest are the ones a server
#: could still echo
HANDLES_KEPT = 64
#: ephemeral tokens kept for redaction: one per connection; a token long replaced is no longer
#: one a server could echo
TOKENS_KEPT = 4


class Secrets:
    """Values never to show, each with what to show instead."""

    __slots__ = ("_handles", "_shown", "_tokens")

    def __init__(self) -> None:
        self._shown: dict[str, str] = {}
        #: in the order seen (lists: an empty deque alone is 0.6 KB a session)
        self._handles: list[str] = []
        self._tokens: list[str] = []

    def __bool__(self) -> bool:
        return bool(self._shown)

    def add(self, value: str, shown_as: str) -> None:
        """A key or token, shown as `shown_as` wherever outside text would carry it."""
        if value:
            self._shown[value] = shown_as

    def forget(self, value: str) -> None:
        """Stop looking for a value (an ephemeral token long replaced)."""
        self._shown.pop(value, None)

    def add_token(self, token: str) -> None:
        """An ephemeral token a connection dials with, shown as "[token]"; the latest
        `TOKENS_KEPT` are kept (a session may be given one per connection for hours)."""
        if not token or token in self._tokens:
            return
        self._shown[token] = "[token]"
        self._tokens.append(token)
        if len(self._tokens) > TOKENS_KEPT:
            self._shown.pop(self._tokens.pop(0), None)

    def add_handle(self, handle: str) -> None:
        """A resumption handle, shown as its fingerprint; the latest `HANDLES_KEPT` are kept,
        never at the expense of a key or token."""
        if handle in self._shown:
            return
        self._shown[handle] = fingerprint(handle) or "h-?"
        self._handles.append(handle)
        if len(self._handles) > HANDLES_KEPT:
            self._shown.pop(self._handles.pop(0), None)

    def redact(self, text: str) -> str:
        """`text` with every known secret replaced."""
        for value, shown in self._shown.items():
            if value in text:
                text = text.replace(value, shown)
        return text
