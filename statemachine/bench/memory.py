"""Memory per idle session above the SDK's own connection, traced by tracemalloc, by component.

In a process of its own (the emulator in another): N raw SDK connections are opened and held,
then N idle LiveSessions on the same client; the memory each allocated and still held (traced
Python allocations, collected garbage excluded) is divided by N, and ours is compared with the
raw connections file by file, grouped into components.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import tracemalloc
from contextlib import AsyncExitStack
from multiprocessing.connection import Connection
from typing import Any

from google.genai import types

from ..emulator import BENCH_MODEL as DEFAULT_MODEL
from ..emulator import EmulatorSettings
from .remote import RemoteEmulator, client_for

CONFIG = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])

#: component: path fragments of the files whose allocations it counts (first match wins)
COMPONENTS: dict[str, tuple[str, ...]] = {
    "transitions": ("/transitions/",),
    "asyncio locks and queues": ("/asyncio/locks.py", "/asyncio/queues.py"),
    "session and core": ("/statemachine/", "<attrs generated", "/random.py"),
    "configs (pydantic, copies)": ("/pydantic/", "/copy.py", "/google/genai/"),
}


def _component(filename: str) -> str:
    for name, parts in COMPONENTS.items():
        if any(p in filename for p in parts):
            return name
    return "other (sockets, tasks, timers)"


def _by_component(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot,
                  n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for stat in after.compare_to(before, "filename"):
        name = _component(stat.traceback[0].filename)
        out[name] = out.get(name, 0.0) + stat.size_diff / n
    return out


async def _hold(kind: str, client: Any, n: int) -> dict[str, float]:
    from .. import connect

    gc.collect()
    before = tracemalloc.take_snapshot()
    async with AsyncExitStack() as stack:
        for _ in range(n):
            if kind == "raw":
                await stack.enter_async_context(
                    client.aio.live.connect(model=DEFAULT_MODEL, config=CONFIG))
            else:
                await stack.enter_async_context(
                    connect(client, model=DEFAULT_MODEL, config=CONFIG, audit=lambda r: None))
        await asyncio.sleep(0.3)  # the post-setup ping and reads settle
        gc.collect()
        after = tracemalloc.take_snapshot()
    return _by_component(before, after, n)


async def _measure(info: dict[str, str], n: int) -> dict[str, Any]:
    from .. import connect, websocket_args

    client = client_for(info, **websocket_args())
    # first use of each path outside the measurement (imports, caches, the shared machine)
    async with client.aio.live.connect(model=DEFAULT_MODEL, config=CONFIG):
        pass
    async with connect(client, model=DEFAULT_MODEL, config=CONFIG, audit=lambda r: None):
        pass
    tracemalloc.start()
    raw = await _hold("raw", client, n)
    ours = await _hold("ours", client, n)
    tracemalloc.stop()
    names = sorted(set(raw) | set(ours), key=lambda k: -(ours.get(k, 0) - raw.get(k, 0)))
    above = {k: round((ours.get(k, 0.0) - raw.get(k, 0.0)) / 1024, 2) for k in names}
    return {
        "sessions": n,
        "raw_kb_per_connection": round(sum(raw.values()) / 1024, 1),
        "ours_kb_per_session": round(sum(ours.values()) / 1024, 1),
        "kb_per_session": round((sum(ours.values()) - sum(raw.values())) / 1024, 1),
        "components_kb": above,
    }


def _child(info: dict[str, str], n: int, pipe: Connection) -> None:
    pipe.send(asyncio.run(_measure(info, n)))


async def run(n: int) -> dict[str, Any]:
    async with RemoteEmulator(EmulatorSettings(record_frames=False)) as remote:
        context = multiprocessing.get_context("spawn")
        mine, theirs = context.Pipe()
        process = context.Process(target=_child, args=(remote.info, n, theirs))
        process.start()
        result: dict[str, Any] = await asyncio.to_thread(mine.recv)
        await asyncio.to_thread(process.join, 30)
    return result


def table(mem: dict[str, Any]) -> list[str]:
    parts = ", ".join(f"{k} {v}" for k, v in mem["components_kb"].items())
    return [f"Memory (tracemalloc, {mem['sessions']} idle sessions): {mem['kb_per_session']} KB "
            f"per session above the SDK's {mem['raw_kb_per_connection']} KB per connection "
            f"({parts})"]
