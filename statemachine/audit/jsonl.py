"""Configure structlog once for the audit log: every lifecycle record as one JSON line in a file,
and, optionally, readable lines on the console for the records a person wants to watch."""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO, Any

import structlog

from ..core.records import SCHEMA_VERSION
from ..errors import AuditLogBusy, LocalMisuse, SettingsError
from .signing import SigningKey, load_signing_key

#: Per-event record names too frequent to print on the console (they still go to the file).
QUIET_ON_CONSOLE = frozenset({
    "client_input", "model_output", "usage", "generation_complete", "turn_complete",
    "resumption_update", "interrupted",
})


#: The `prev` of a file's first line, per schema version (v1 kept 128 bits of SHA-256, v2 all).
HASH_HEX = {1: 32, 2: 64}
GENESIS_BY_VERSION = {v: "0" * n for v, n in HASH_HEX.items()}
GENESIS = GENESIS_BY_VERSION[SCHEMA_VERSION]
SIG_HEX = 128
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
RECORD_KEYS = (
    "session", "seq", "mono", "wall", "kind", "name", "state", "source", "dest", "cause", "gen",
    "handle_fp", "attempt", "journal", "stale",
)
#: Checkpoint names: `open` where a signing writer starts, `periodic` every N lines, `seal` right
#: after a session's `ended` notice, `close` when the writer closes.
CHECKPOINTS = ("open", "periodic", "seal", "close")
DEFAULT_CHECKPOINT_EVERY = 100


def line_hash(body_text: str, version: int = SCHEMA_VERSION) -> str:
    """The chain hash: SHA-256 of the line as written, without its final `"hash"` member."""
    return hashlib.sha256(body_text.encode()).hexdigest()[:HASH_HEX.get(version, 64)]


def split_member(text: str, member: str) -> tuple[str, str] | None:
    """(the text without its last member, that member's value) if the line ends with
    `,"<member>":"<value>"}` as the writer writes it; None otherwise."""
    marker = f',"{member}":"'
    at = text.rfind(marker)
    if at < 0 or not text.endswith('"}'):
        return None
    value = text[at + len(marker):-2]
    if '"' in value:
        return None
    return text[:at] + "}", value


def split_line(text: str) -> tuple[str, str] | None:
    """(the hashed text, the hash) of a written line, or None if it does not end as written."""
    return split_member(text, "hash")


def _with_member(text: str, member: str, value: str) -> str:
    return f'{text[:-1]},"{member}":"{value}"}}'


class JsonLinesWriter:
    """A structlog processor writing `lifecycle.*` records to a JSON Lines file it owns, each
    chained to the previous line by hash. Add it to an existing structlog chain, or let
    `configure()` set one up. Appending to an existing log continues its chain.

    With a `signing_key`, it also writes signed checkpoints (line count and chain head, Ed25519):
    one when it opens the file, one every `checkpoint_every` lines, a seal right after each
    session's `ended` notice (in the same write), and one when it closes.

    One writer per file: it holds an exclusive OS lock (flock) on the file while open, so a
    second writer, in this process or another, fails at once with `AuditLogBusy` instead of
    interleaving two chains. Sessions in one process share the writer; its lines are written
    under a thread lock, one chain for all of them."""

    def __init__(self, path: str | os.PathLike[str], *,
                 signing_key: SigningKey | str | os.PathLike[str] | None = None,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> None:
        if checkpoint_every < 1:
            raise SettingsError(f"checkpoint_every must be at least 1, not {checkpoint_every}")
        self._key = load_signing_key(signing_key) if signing_key is not None else None
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._file.close()
            raise AuditLogBusy(str(self.path)) from exc
        self._prev, self._lines, complete = _tail_state(self.path)
        if not complete:  # a writer was cut off mid-line: start on a line of our own
            self._file.write("\n")
        self._every = checkpoint_every
        self._since = 0
        self._mutex = threading.Lock()
        self._closed = False
        if self._key is not None:
            self._emit([self._checkpoint("open")])
        atexit.register(self.close)

    @property
    def key_id(self) -> str | None:
        return self._key.key_id if self._key is not None else None

    def write(self, event: MutableMapping[str, Any]) -> None:
        body: dict[str, Any] = {}
        for key in RECORD_KEYS:
            if key in event:
                body[key] = event[key]
        with self._mutex:
            if self._closed:
                raise LocalMisuse(f"audit log {str(self.path)!r} is closed: a record of session "
                                  f"{body.get('session')!r} came after close(); close the writer "
                                  "after the last session ends")
            lines = [self._line(body)]
            if self._key is not None:
                if body.get("kind") == "notice" and body.get("name") == "ended":
                    lines.append(self._checkpoint("seal", session=body.get("session"),
                                                  seq=body.get("seq")))
                elif self._since >= self._every:
                    lines.append(self._checkpoint("periodic"))
            self._emit(lines)

    def _line(self, fields: dict[str, Any]) -> str:
        text = _dumps({"v": SCHEMA_VERSION, "prev": self._prev, **fields})
        digest = line_hash(text)
        self._prev = digest
        self._lines += 1
        self._since += 1
        return _with_member(text, "hash", digest) + "\n"

    def _checkpoint(self, name: str, **extra: Any) -> str:
        """A checkpoint line: the count of lines before it and (as `prev`) the chain head,
        signed; then chained like any other line."""
        assert self._key is not None
        body = _dumps({"v": SCHEMA_VERSION, "prev": self._prev, "kind": "checkpoint",
                       "name": name, "count": self._lines, "key_id": self._key.key_id,
                       "wall": time.time(), **extra})
        signed = _with_member(body, "sig", self._key.sign(body))
        digest = line_hash(signed)
        self._prev = digest
        self._lines += 1
        self._since = 0
        return _with_member(signed, "hash", digest) + "\n"

    def _emit(self, lines: list[str]) -> None:
        # One write and flush: a crash must not take earlier records along, and a record and
        # the seal after it land together.
        self._file.write("".join(lines))
        self._file.flush()

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
        if str(event.get("event", "")).startswith("lifecycle."):
            self.write(event)
        return event

    def close(self) -> None:
        """Write the closing checkpoint (when signing), release the lock, close the file."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                if self._key is not None:
                    self._emit([self._checkpoint("close")])
            finally:
                self._file.close()  # closing the descriptor releases the flock
                atexit.unregister(self.close)

    def __repr__(self) -> str:
        return f"JsonLinesWriter({str(self.path)!r}, key_id={self.key_id!r})"


def _tail_state(path: Path) -> tuple[str, int, bool]:
    """(hash of the last complete line, number of lines, whether the file ends with a newline)
    of an existing log; the genesis value, 0 and True for a new or empty one."""
    size = path.stat().st_size if path.exists() else 0
    if size == 0:
        return GENESIS, 0, True
    count, last = 0, b""
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
        f.seek(max(0, size - 65536))
        lines = f.read().splitlines()
    complete = last == b"\n"
    count += 0 if complete else 1
    for line in reversed(lines):
        try:
            value = json.loads(line).get("hash")
        except (ValueError, AttributeError):
            continue
        if isinstance(value, str):
            return value, count, complete
    return GENESIS, count, complete


def _console_filter(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    if event.get("kind") == "event" and event.get("name") in QUIET_ON_CONSOLE:
        raise structlog.DropEvent
    if str(event.get("event", "")).startswith("lifecycle."):
        for key in ("session", "mono", "wall", "seq", "v"):
            event.pop(key, None)
    return event


#: the writer the last `configure` call made (closed by the next call)
_configured: JsonLinesWriter | None = None


def configure(jsonl_path: str | os.PathLike[str] | None, *, console: bool = True,
              signing_key: SigningKey | str | os.PathLike[str] | None = None,
              checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> JsonLinesWriter | None:
    """Send audit records to `jsonl_path` (if given) and readable lines to stderr (if `console`).
    With `signing_key` (a key file path or a `SigningKey`), the log carries signed checkpoints.
    Returns the writer: close it after the last session (it is also closed at exit). Calling
    it again replaces the configuration: the writer the previous call made is closed first, so
    the same file can be named again."""
    global _configured
    if signing_key is not None and jsonl_path is None:
        raise SettingsError("a signing key needs a log file: pass jsonl_path as well")
    if _configured is not None:
        _configured.close()
        _configured = None
    writer = (JsonLinesWriter(jsonl_path, signing_key=signing_key,
                              checkpoint_every=checkpoint_every)
              if jsonl_path is not None else None)
    _configured = writer
    processors: list[Any] = []
    if writer is not None:
        processors.append(writer)
    if console:
        processors += [_console_filter, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    else:
        processors.append(_drop_all)
    structlog.configure(
        processors=processors,
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    return writer


def _drop_all(_logger: Any, _method: str, _event: MutableMapping[str, Any]) -> Any:
    raise structlog.DropEvent
