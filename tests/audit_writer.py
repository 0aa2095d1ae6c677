"""A process that writes an audit log, for the signing tests: `python -m tests.audit_writer
MODE LOG KEY [EVERY]`.

- mode "session": one real engine session (connect, setup, a few usage events, close), then the
  writer is closed; exits 0.
- mode "crash": the same session without the close, then the process dies with `os._exit`
  (no atexit, no closing checkpoint), as a killed process would.
- mode "hold": opens the writer, prints READY and waits for stdin to close.
- any mode: if another writer has the file, prints BUSY <message> and exits 3.
"""

from __future__ import annotations

import os
import sys

import structlog

from statemachine.audit.jsonl import configure
from statemachine.core import Lifecycle
from statemachine.core.events import Close, Connect, SetupComplete, Usage
from statemachine.errors import AuditLogBusy


def main(mode: str, log: str, key: str, every: int = 100) -> int:
    try:
        writer = configure(log, console=False, signing_key=key, checkpoint_every=every)
    except AuditLogBusy as exc:
        print(f"BUSY {exc}", flush=True)
        return 3
    assert writer is not None
    if mode == "hold":
        print("READY", flush=True)
        sys.stdin.read()
        writer.close()
        return 0
    engine = Lifecycle()
    engine.feed(Connect(at=0.0))
    engine.feed(SetupComplete(at=0.1, generation=engine.generation))
    for i in range(5):
        engine.feed(Usage(at=1.0 + i, generation=engine.generation, prompt_tokens=10 * i))
    if mode == "crash":
        os._exit(0)
    engine.feed(Close(at=9.0))
    writer.close()
    structlog.reset_defaults()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:])))
