"""Configure structlog once for the audit log: every lifecycle record as one JSON line in a file,
and, optionally, readable lines on the console for the records a person wants to watch."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO, Any

import structlog

from ..core.records import SCHEMA_VERSION

#: Per-event record names too frequent to print on the console (they still go to the file).
QUIET_ON_CONSOLE = frozenset({
    "client_input", "model_output", "usage", "generation_complete", "turn_complete",
    "resumption_update", "interrupted",
})


GENESIS = "0" * 32
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
RECORD_KEYS = (
    "session", "seq", "mono", "wall", "kind", "name", "state", "source", "dest", "cause", "gen",
    "handle_fp", "attempt", "journal", "stale",
)


HASH_SUFFIX_LEN = len(',"hash":""}') + 32


def line_hash(body_text: str) -> str:
    """The chain hash: SHA-256 of the line as written, without its final `"hash"` member."""
    return hashlib.sha256(body_text.encode()).hexdigest()[:32]


def split_line(text: str) -> tuple[str, str] | None:
    """(the hashed text, the hash) of a written line, or None if it does not end as written."""
    suffix = text[-HASH_SUFFIX_LEN:]
    if not (suffix.startswith(',"hash":"') and suffix.endswith('"}')):
        return None
    return text[:-HASH_SUFFIX_LEN] + "}", suffix[9:-2]


class JsonLinesWriter:
    """A structlog processor writing `lifecycle.*` records to a JSON Lines file it owns, each
    chained to the previous line by hash. Add it to an existing structlog chain, or let
    `configure()` set one up. Appending to an existing log continues its chain."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._prev = _last_hash(self.path)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")

    def write(self, event: MutableMapping[str, Any]) -> None:
        body: dict[str, Any] = {"v": SCHEMA_VERSION, "prev": self._prev}
        for key in RECORD_KEYS:
            if key in event:
                body[key] = event[key]
        text = _dumps(body)
        digest = line_hash(text)
        self._file.write(f'{text[:-1]},"hash":"{digest}"}}\n')
        self._file.flush()  # a crash must not take the records before it along
        self._prev = digest

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
        if str(event.get("event", "")).startswith("lifecycle."):
            self.write(event)
        return event

    def close(self) -> None:
        self._file.close()


def _last_hash(path: Path) -> str:
    """The hash of the last complete line of an existing log (the genesis value if none)."""
    if not path.exists() or path.stat().st_size == 0:
        return GENESIS
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 65536))
        lines = f.read().splitlines()
    for line in reversed(lines):
        try:
            value = json.loads(line).get("hash")
        except (ValueError, AttributeError):
            continue
        if isinstance(value, str):
            return value
    return GENESIS


def _console_filter(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    if event.get("kind") == "event" and event.get("name") in QUIET_ON_CONSOLE:
        raise structlog.DropEvent
    if str(event.get("event", "")).startswith("lifecycle."):
        for key in ("session", "mono", "wall", "seq", "v"):
            event.pop(key, None)
    return event


def configure(jsonl_path: str | os.PathLike[str] | None, *, console: bool = True) -> (
    JsonLinesWriter | None
):
    """Send audit records to `jsonl_path` (if given) and readable lines to stderr (if `console`).
    Returns the writer so the caller can close the file."""
    writer = JsonLinesWriter(jsonl_path) if jsonl_path is not None else None
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
