"""A fleet of busy voice sessions at real rates, spread over client processes, the emulator in
a process of its own: what the scale and busy-memory benchmarks run.

Each session, in real time (`capacity._speak`): a 20 ms audio chunk every 20 ms, a text turn
every `capacity.TURN_EVERY` s answered with audio at real pace, a rotation at every goAway. The
first connection of each lives a random part of `lifetime` past the ramp, so rotations are
spread as in a fleet running for hours. Sessions are shared out over one client process per
core this process may use (`os.sched_getaffinity`); each process measures its own memory when
the fleet has run `ramp + warm` seconds (RSS growth since before its sessions started, and with
`trace` the tracemalloc allocations still held, by owner, and what the journals hold), then
stops its sessions. Ours (`statemachine.connect`) and the raw SDK (reconnecting with the last
handle on goAway, the peers' pattern) run the same traffic.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import tracemalloc
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from ..emulator import BENCH_MODEL
from . import capacity, owners
from .ledger import split
from .remote import RemoteEmulator, client_for, in_child


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def processes() -> int:
    """Client processes for a fleet: one per core this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def shares(n: int, parts: int) -> list[range]:
    """Session indices (global, so every chunk's identity is unique) for each process."""
    parts = max(1, min(parts, n))
    bounds = [n * k // parts for k in range(parts + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds)]


async def _client(kind: str, info: dict[str, str], indices: range, n: int, ramp: float,
                  warm: float, trace: bool, pace: float) -> dict[str, Any]:
    from .. import websocket_args

    loop = asyncio.get_running_loop()
    client = client_for(info, **websocket_args())
    # first use of each path outside the measurement (imports, caches, TLS context)
    async with client.aio.live.connect(model=BENCH_MODEL, config=capacity._config()):
        pass
    gc.collect()
    if trace:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
    base = _rss_kb()
    start = loop.time() + ramp
    probe = capacity.Probe(loop, start, start + warm)  # input delays kept after the ramp
    stop = asyncio.Event()
    unconfirmed: list[int] = []
    sessions: list[Any] = []
    if kind == "ours":
        tasks = [loop.create_task(capacity._ours(i, client, probe, stop, ramp, n, unconfirmed,
                                                 sessions=sessions, pace=pace))
                 for i in indices]
    else:
        tasks = [loop.create_task(capacity._raw(i, client, probe, stop, ramp, n, pace))
                 for i in indices]
    await asyncio.sleep(max(0.0, start - loop.time()))
    sent0 = len(probe.sent)
    await asyncio.sleep(max(0.0, start + warm - loop.time()))
    # nothing runs from here to the walk below: the journals the snapshot sees are those of
    # this moment, and so is the floor (collecting and tracing take seconds at 300 sessions,
    # and audio crossing the window meanwhile would leave the floor but not the snapshot)
    frozen_at = loop.time()
    # per second of the sessions' time: 50 is the real rate
    chunks_per_s = (len(probe.sent) - sent0) / max(1, len(indices)) / warm * pace
    gc.collect()
    held = _rss_kb() - base
    out: dict[str, Any] = {"rss_growth_kb": held, "chunks_per_s": chunks_per_s}
    if trace:
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        out["owners"] = owners.by_owner(before, after)
        out["connections"] = owners.open_connections()
        out["journal"] = owners.journal_walk(sessions, frozen_at)
    outages_in_run = len(probe.outages)
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    out.update({
        "sent": probe.sent, "dropped": probe.dropped, "skipped": probe.skipped,
        "dropped_ids": probe.dropped_ids, "unread_ids": probe.unread_ids,
        "unmatched": probe.unmatched,
        "outages": probe.outages,
        "rotations_in_run": outages_in_run, "delays": probe.delays,
        "failed": len(failures), "failures": failures[:3],
        "unconfirmed_at_close": sum(unconfirmed),
    })
    return out


def _child(kind: str, info: dict[str, str], indices: range, n: int, ramp: float, warm: float,
           trace: bool, pace: float, pipe: Connection) -> None:
    pipe.send(asyncio.run(_client(kind, info, indices, n, ramp, warm, trace, pace)))


async def run(kind: str, n: int, *, ramp: float, warm: float, lifetime: float,
              trace: bool = False, parts: int | None = None, pace: float = 1.0) -> dict[str, Any]:
    """N sessions of `kind` ("ours" or "raw") against a fresh emulator, over `parts` client
    processes (default: one per core). Totals over the processes, and what the model took in.

    `ramp`, `warm` and `lifetime` are in the sessions' seconds; `pace` is how many wall
    seconds each of those lasts (1: real time). At pace 5 every duration (chunks, turns,
    replies, connection lifetimes, the policy's) is five times longer: each session holds the
    same state as at real rate (the same chunks per replay window and between two handles)
    for a fifth of the CPU, which is how a small machine traces hundreds of busy sessions."""
    settings = capacity.emulator_settings(lifetime, pace)
    plans = capacity.first_lifetimes(n, ramp, lifetime=lifetime)
    groups = shares(n, parts or processes())
    async with RemoteEmulator(settings, plans) as remote:
        outs = await asyncio.gather(*[
            in_child(_child, kind, remote.info, g, n, ramp * pace, warm * pace, trace, pace)
            for g in groups])
        summary = await remote.summary()
    consumed: Counter[str] = Counter()
    for session in summary["sessions"]:
        consumed.update(session["consumed"])
    sent = [k for o in outs for k in o["sent"]]
    dropped = sum(o["dropped"] for o in outs)
    # by identity: what the model never took in, reported dropped, held unread at the close,
    # or lost without a notice (`ledger.split`)
    losses = split(sent, consumed, {k for o in outs for k in o["dropped_ids"]},
                   {k for o in outs for k in o["unread_ids"]})
    total: dict[str, Any] = {
        "kind": kind, "sessions": n, "processes": len(groups), "pace": pace,
        "rss_growth_kb": sum(o["rss_growth_kb"] for o in outs),
        "chunks_per_s": sum(o["chunks_per_s"] * len(g) for o, g in zip(outs, groups,
                                                                          strict=True)) / n,
        "outages": [x for o in outs for x in o["outages"]],
        "delays": [x for o in outs for x in o["delays"]],
        "inputs": len(sent),
        # lost: what the model never took in, nobody was told of, and no session still held
        # when the run closed it; lost_unread_at_close: what a session still held uncovered
        # then (the server may not have read it yet: a saturated one, past the real rate)
        "lost": losses["lost"], "missing": losses["missing"],
        "lost_unread_at_close": losses["lost_unread_at_close"] if kind == "ours" else None,
        "lost_examples": losses["lost_examples"], "dropped": dropped,
        "skipped": sum(o["skipped"] for o in outs),
        "duplicated": sum(c - 1 for c in consumed.values() if c > 1),
        "failed": sum(o["failed"] for o in outs),
        "failures": [f for o in outs for f in o["failures"]][:3],
        "unconfirmed_at_close": sum(o["unconfirmed_at_close"] for o in outs),
        "unmatched_sessions": sum(o["unmatched"] for o in outs),
    }
    if trace:
        merged: dict[str, float] = {}
        for o in outs:
            for name, size in o["owners"].items():
                merged[name] = merged.get(name, 0) + size
        total["owners"] = merged
        total["connections"] = sum(o["connections"] for o in outs)
        if kind == "ours":
            walk: dict[str, float] = {}
            for o in outs:
                for name, value in o["journal"].items():
                    walk[name] = walk.get(name, 0) + value
            total["journal"] = walk
    return total


def per_rotation(duplicated: int, rotations: int) -> float:
    """Duplicated inputs per rotation (a run without a rotation: per run)."""
    return round(duplicated / max(1, rotations), 3)

