"""Configure structlog once for the audit log: every lifecycle record as one JSON line in a file,
and, optionally, readable lines on the console for the records a person wants to watch."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO, Any

import structlog

from .audit import SCHEMA_VERSION

#: Per-event record names too frequent to print on the console (they still go to the file).
QUIET_ON_CONSOLE = frozenset({
    "client_input", "model_output", "usage", "generation_complete", "turn_complete",
    "resumption_update", "interrupted",
})


class JsonLinesWriter:
    """A structlog processor writing `lifecycle.*` records to a JSON Lines file it owns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
        if str(event.get("event", "")).startswith("lifecycle."):
            record = {"v": SCHEMA_VERSION, **event}
            self._file.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
            self._file.flush()
        return event

    def close(self) -> None:
        self._file.close()


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
