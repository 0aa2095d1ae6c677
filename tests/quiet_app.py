"""An application that asks for no output, run in its own process by test_etiquette.py.

`python -m tests.quiet_app [--console]`: one session with the real SDK against the emulator,
through a text turn, a goAway rotation and (when redis-server is installed) a store that dies
under the session. It checks that the records were there for whoever asked (`on_event`,
`session.events()`) and exits 0. With `--console` it first calls
`statemachine.audit.configure(None, console=True)`, the README's way to watch records on stderr.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import statemachine
from statemachine.audit import configure
from statemachine.emulator import LiveEmulator

from .app import FAST_ROTATION, App, fast_policy


async def run(with_redis: bool) -> list[str]:
    """The session; returns what it expected but did not see (empty: all there)."""
    records: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        emu = await stack.enter_async_context(LiveEmulator(FAST_ROTATION))
        store: Any = None
        redis_cm: Any = None
        if with_redis:
            from statemachine.stores import RedisStore

            from .redis_server import redis_server

            workdir = stack.enter_context(tempfile.TemporaryDirectory())
            redis_cm = redis_server(Path(workdir))
            port = redis_cm.__enter__()
            store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=5.0)
        session = statemachine.LiveSession(
            emu.client(**statemachine.websocket_args()), model="gemini-live-2.5-flash-preview",
            config={"response_modalities": ["TEXT"]}, policy=fast_policy(),
            on_event=records.append, store=store, session_key="quiet" if store else None)
        events = session.events()
        await session.start()
        app = App(session)
        await app.ask("one")
        async with asyncio.timeout(30):
            async for record in events:  # the live record stream, as an application reads it
                if record["kind"] == "transition" and record["name"] == "safe_point":
                    break
        await app.ask("two")
        if redis_cm is not None:
            await session.flush_handle()
            redis_cm.__exit__(None, None, None)  # the store dies under the live session
            await app.ask("three")
            await session.flush_handle()
        await app.stop()
        if store is not None:
            await store.aclose()
    missing = []
    names = {r["name"] for r in records}
    for expected in ("setup_complete", "safe_point", "go_away") + (
            ("store_degraded",) if with_redis else ()):
        if expected not in names:
            missing.append(expected)
    return missing


def main() -> int:
    if "--console" in sys.argv:
        configure(None, console=True)
    missing = asyncio.run(run(shutil.which("redis-server") is not None))
    if missing:
        print(f"records missing: {missing}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
