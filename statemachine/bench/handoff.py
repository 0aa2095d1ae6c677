"""Hand-off and write-through: what a deploy and a crash-proof journal cost.

Hand-off: one conversation streams 20 ms audio chunks with a turn every 250 ms and is handed
from worker to worker (`hand_off()`, then `connect()` of the same key by the next one) through
a real SQLite file, again and again; the workers are two sessions of this process sharing the
store, as two processes would. Per hand-off, at the emulator: the time from the `hand_off()`
call to the first input taken in on the next worker's connection (p50/p99), and the outage as
the rotation benchmark counts it (the old connection's close to the first input on the new
one), beside that benchmark's plain rotation outage from the same run. Inputs the model never
took in (against those reported dropped: audio sent to a worker after its hand-off was written)
or took in twice come from the emulator's record.

Write-through: `send_client_content` on a live session, awaited by the application, with the
turn written to a SQLite file (and to Redis when a redis-server is installed) before it goes on
the wire, against the same session without a store: the time the call takes (p50/p99) and the
process's CPU time per turn, which is what the write-through takes from capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.genai import types

from .. import connect, websocket_args
from ..audit.stats import percentile
from ..core.actions import AudioGap, InputDropped
from ..emulator import BENCH_MODEL as DEFAULT_MODEL
from ..emulator import EmulatorSettings, LiveEmulator
from ..stores import HandleStore, SQLiteStore
from .rotation import CHUNK, CHUNK_BYTES, TURN_EVERY, policy
from .tasks import cancel_and_wait

SCALE = 0.01
#: emulated connections long enough not to rotate by themselves between two hand-offs
_SETTINGS = EmulatorSettings(time_scale=SCALE, connection_lifetime=6000.0, chunk_interval=1.0,
                             track_inputs=True)
_CONFIG = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])


def _ms(values: list[float], q: float) -> float | None:
    value = percentile(values, q / 100)
    return round(value * 1000, 1) if value is not None else None


async def _hand_offs(count: int, store: HandleStore) -> dict[str, Any]:
    async with LiveEmulator(_SETTINGS) as emu:
        client = emu.client(**websocket_args())
        session = connect(client, model=DEFAULT_MODEL, config=_CONFIG, policy=policy(),
                          store=store, session_key="bench", audit=lambda r: None)
        await session.start()
        sent: list[str] = []
        current = [session]
        stop = asyncio.Event()

        async def traffic() -> None:
            loop = asyncio.get_running_loop()
            start, next_turn = loop.time(), loop.time() + TURN_EVERY
            for tick in itertools.count():
                if stop.is_set():
                    return
                s = current[0]
                with contextlib.suppress(Exception):  # a session handed off: the next one's turn
                    await s.send_realtime_input(audio=types.Blob(
                        data=struct.pack("<Q", tick) + b"\0" * (CHUNK_BYTES - 8),
                        mime_type="audio/pcm;rate=16000"))
                    sent.append("a:" + struct.pack("<Q", tick).hex())
                if loop.time() >= next_turn:
                    next_turn += TURN_EVERY
                    text = f"turn {tick}"
                    with contextlib.suppress(Exception):
                        await s.send_client_content(turns=types.Content(
                            role="user", parts=[types.Part(text=text)]))
                        sent.append("t:" + text)
                await asyncio.sleep(max(0.0, start + (tick + 1) * CHUNK - loop.time()))

        async def drain(s: Any) -> None:
            with contextlib.suppress(Exception):
                async for _ in s.receive():
                    pass

        loop = asyncio.get_running_loop()
        readers = [loop.create_task(drain(session))]
        sessions = [session]
        sender = loop.create_task(traffic())
        called: list[tuple[float, int]] = []  # (hand_off() called, connections before it)
        failed = 0
        for _ in range(count):
            await asyncio.sleep(0.3)  # a turn or so on this worker
            called.append((loop.time(), len(emu.connections)))
            result = await current[0].hand_off()
            if not result.handed_off:
                failed += 1
                continue
            nxt = connect(client, model=DEFAULT_MODEL, config=_CONFIG, policy=policy(),
                          store=store, session_key="bench", audit=lambda r: None)
            await nxt.start()
            current[0] = nxt
            sessions.append(nxt)
            readers.append(loop.create_task(drain(nxt)))
        await asyncio.sleep(0.5)
        stop.set()
        await sender
        await current[0].close()
        await asyncio.wait(readers, timeout=5)
        to_first, outages = [], []
        for at, before in called:
            old, new = emu.connections[before - 1], emu.connections[before]
            first = min((f.at for f in new.frames if f.direction == "in" and "setup" not in f.data),
                        default=None)
            if first is not None:
                to_first.append(first - at)
                if old.closed_at is not None:
                    outages.append(first - old.closed_at)
        consumed: Counter[str] = Counter(emu.sessions[-1].context.consumed)
        reported = sum(n.chunks if isinstance(n, AudioGap) else 1
                       for s in sessions for n in s.notices_seen
                       if isinstance(n, AudioGap | InputDropped))
        lost = sum(1 for k in sent if k not in consumed)
        return {
            "hand_offs": len(to_first), "failed": failed,
            "to_first_input_p50_ms": _ms(to_first, 50), "to_first_input_p99_ms": _ms(to_first, 99),
            "outage_p50_ms": _ms(outages, 50), "outage_p99_ms": _ms(outages, 99),
            "inputs": len(sent), "lost": lost, "reported_dropped": reported,
            "lost_unreported": max(0, lost - reported),
            "duplicated": sum(n - 1 for n in consumed.values() if n > 1),
        }


async def _turn_costs(turns: int, store: HandleStore | None) -> dict[str, Any]:
    """`send_client_content` awaited, a turn every 20 ms on one live session: its duration and
    the process's CPU time per turn."""
    async with LiveEmulator(_SETTINGS) as emu:
        kw: dict[str, Any] = {"store": store, "session_key": "turns"} if store else {}
        async with connect(emu.client(**websocket_args()), model=DEFAULT_MODEL, config=_CONFIG,
                           policy=policy(), audit=lambda r: None, **kw) as session:
            async def drain() -> None:
                async for _ in session.receive():
                    pass

            reader = asyncio.get_running_loop().create_task(drain())
            calls = []
            cpu = time.process_time()
            for n in range(turns):
                began = time.perf_counter()
                await session.send_client_content(turns=types.Content(
                    role="user", parts=[types.Part(text=f"t{n}")]))
                calls.append(time.perf_counter() - began)
                await asyncio.sleep(0.02)
            cpu = time.process_time() - cpu
        await cancel_and_wait(reader, raise_error=False)
    return {"call_p50_ms": _ms(calls, 50), "call_p99_ms": _ms(calls, 99),
            "cpu_ms_per_turn": round(cpu / turns * 1000, 3)}


@contextlib.contextmanager
def _redis_server(workdir: Path) -> Iterator[int | None]:
    """A redis-server on a free port when one is installed (and redis-py), else None."""
    exe = shutil.which("redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        exe = None
    if exe is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Ready to accept connections" in line:
                break
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def run(hand_offs: int, turns: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SQLiteStore(Path(tmp) / "fleet.db")
        try:
            handing = await _hand_offs(hand_offs, sqlite)
        finally:
            await sqlite.aclose()
        plain = await _turn_costs(turns, None)
        sqlite = SQLiteStore(Path(tmp) / "turns.db")
        try:
            through_sqlite = await _turn_costs(turns, sqlite)
        finally:
            await sqlite.aclose()
        through_redis = None
        with _redis_server(Path(tmp)) as port:
            if port is not None:
                from ..stores import RedisStore

                redis = RedisStore(f"redis://127.0.0.1:{port}/0")
                try:
                    through_redis = await _turn_costs(turns, redis)
                finally:
                    await redis.aclose()
    costs = {"no store": plain, "sqlite": through_sqlite}
    if through_redis is not None:
        costs["redis"] = through_redis
    added = [c["cpu_ms_per_turn"] - plain["cpu_ms_per_turn"] for c in costs.values()]
    return {**handing, "turn_costs": costs,
            "write_through_call_p50_ms": through_sqlite["call_p50_ms"],
            "write_through_cpu_ms_per_turn": round(max(added), 3),
            "turns": turns}


def table(results: dict[str, Any], rotation: dict[str, Any] | None) -> list[str]:
    """The hand-off row beside the same run's rotation outage, then the write-through costs."""
    from . import grid

    lines = [f"Hand-off: one conversation (20 ms audio, a turn every 250 ms) handed from worker "
             f"to worker {results.get('hand_offs')} times through SQLite"]
    rot = rotation or {}
    lines += grid(["", "p50 (ms)", "p99 (ms)"], [
        ["hand_off() to first input on the next worker", results.get("to_first_input_p50_ms"),
         results.get("to_first_input_p99_ms")],
        ["hand-off outage (old close to first input)", results.get("outage_p50_ms"),
         results.get("outage_p99_ms")],
        ["plain rotation outage, same run", rot.get("outage_p50_ms"), rot.get("outage_p99_ms")],
    ])
    lines.append(f"  inputs {results.get('inputs')}: not taken in {results.get('lost')} "
                 f"(reported dropped {results.get('reported_dropped')}), taken in twice "
                 f"{results.get('duplicated')}; failed hand-offs {results.get('failed')}")
    lines.append(f"Write-through: send_client_content awaited, {results.get('turns')} turns, "
                 "the turn in the store before it goes on the wire")
    costs = results.get("turn_costs") or {}
    lines += grid(["", "call p50 (ms)", "call p99 (ms)", "CPU ms/turn"],
                  [[name, c.get("call_p50_ms"), c.get("call_p99_ms"), c.get("cpu_ms_per_turn")]
                   for name, c in costs.items()])
    return lines
