"""Scale: many concurrent sessions in one process (the emulator in another), each rotating.

Each run is a fresh process (multiprocessing, spawn) so its memory is its own:
- raw: N raw SDK connections held open, the SDK's own cost per connection;
- ours: N LiveSessions, started spread over one connection lifetime, each sending a text turn
  every 3 s and rotating at every goAway.
Memory per session is the peak RSS growth of `ours` minus that of `raw`, divided by N. Outage at
scale is the time each rotation spent in `resuming` (the client's view, as in the audit summary);
losses are inputs the model never took in (the emulator tracks them through handles).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import resource
from multiprocessing.connection import Connection
from typing import Any

from google.genai import types

from ..audit.stats import percentile
from ..emulator import BENCH_MODEL as DEFAULT_MODEL
from ..emulator import EmulatorSettings
from .remote import RemoteEmulator, client_for, sigint_ignored

CONFIG = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
TURN_EVERY = 3.0  # seconds between a session's text turns


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _peak_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


async def _hold_raw(info: dict[str, str], n: int, seconds: float) -> dict[str, Any]:
    from contextlib import AsyncExitStack

    client = client_for(info)
    base = _rss_kb()
    async with AsyncExitStack() as stack:
        for _ in range(n):
            await stack.enter_async_context(
                client.aio.live.connect(model=DEFAULT_MODEL, config=CONFIG))
        await asyncio.sleep(seconds)
        held = _rss_kb()
    return {"rss_growth_kb": held - base, "peak_kb": _peak_kb()}


async def _run_ours(info: dict[str, str], n: int, seconds: float, scale: float,
                    lifetime_s: float) -> dict[str, Any]:
    from .. import connect, websocket_args
    from ..core.policy import Limits, Policy, ReplayPolicy, RetryPolicy

    client = client_for(info, **websocket_args())
    policy = Policy(
        limits=Limits(go_away_lead=20.0, go_away_margin=2.0, setup_timeout=3000.0),
        retry=RetryPolicy(base_delay=5.0, max_delay=100.0),
        replay=ReplayPolicy(audio_staleness=500.0),
    ).scaled(scale)
    outages: list[float] = []
    sent: list[str] = []
    unconfirmed: list[int] = []
    base = _rss_kb()

    async def one(i: int, stop: asyncio.Event) -> None:
        # sessions start at random moments, as real ones do: spread over one connection life
        await asyncio.sleep(lifetime_s * i / n)
        resuming_since: list[float] = []

        def sink(r: dict[str, Any]) -> None:  # outages as they happen; no records are kept
            if r["kind"] != "transition":
                return
            if r["dest"] == "resuming":
                resuming_since[:] = [r["mono"]]
            elif r["source"] == "resuming" and resuming_since:
                outages.append((r["mono"] - resuming_since.pop()) * 1000)

        async with connect(client, model=DEFAULT_MODEL, config=CONFIG, policy=policy,
                           audit=sink) as session:

            async def drain() -> None:
                async for _ in session.receive():
                    pass

            events = session.events()
            reader = asyncio.get_running_loop().create_task(drain())
            turn = 0
            while not stop.is_set():
                turn += 1
                text = f"s{i} t{turn}"
                await session.send_client_content(
                    turns=types.Content(role="user", parts=[types.Part(text=text)]),
                    turn_complete=True)
                sent.append("t:" + text)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TURN_EVERY)
            # the last turn answered and covered by a handle before closing (a close with a
            # turn in flight would count it as lost); bounded, since the machine may be saturated
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    async for _ in events:
                        if not session.core.journal.has_turn_input():
                            break
            unconfirmed.append(len(session.core.journal))
        reader.cancel()

    stop = asyncio.Event()
    tasks = [asyncio.get_running_loop().create_task(one(i, stop)) for i in range(n)]
    await asyncio.sleep(lifetime_s + seconds)
    held = _rss_kb()
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"rss_growth_kb": held - base, "peak_kb": _peak_kb(), "outages_ms": outages,
            "sent": sent, "failures": failures[:5], "failed": len(failures),
            "unconfirmed_at_close": sum(unconfirmed)}


def _child(kind: str, info: dict[str, str], n: int, seconds: float, scale: float,
           lifetime_s: float, pipe: Connection) -> None:
    if kind == "raw":
        pipe.send(asyncio.run(_hold_raw(info, n, seconds)))
    else:
        pipe.send(asyncio.run(_run_ours(info, n, seconds, scale, lifetime_s)))


async def _in_child(kind: str, info: dict[str, str], n: int, seconds: float,
                    scale: float, lifetime_s: float) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    process = context.Process(target=_child,
                              args=(kind, info, n, seconds, scale, lifetime_s, theirs))
    with sigint_ignored():  # Ctrl-C stops the parent, which stops the child (finally below)
        process.start()
    theirs.close()  # the child holds it now: its exit must end our recv() with EOFError
    try:
        result: dict[str, Any] = await asyncio.to_thread(mine.recv)
        await asyncio.to_thread(process.join, 30)
    finally:
        if process.is_alive():
            process.terminate()
    return result


async def run_one(n: int, seconds: float, lifetime_s: float) -> dict[str, Any]:
    scale = 0.01
    settings = EmulatorSettings(time_scale=scale, connection_lifetime=lifetime_s / scale,
                                go_away_lead=20.0, chunk_interval=1.0, record_frames=False,
                                track_inputs=True)
    async with RemoteEmulator(settings) as remote:
        raw = await _in_child("raw", remote.info, n, 1.0, scale, lifetime_s)
    async with RemoteEmulator(settings) as remote:
        ours = await _in_child("ours", remote.info, n, seconds, scale, lifetime_s)
        summary = await remote.summary()
    consumed: dict[str, int] = {}
    for session in summary["sessions"]:
        for key in session["consumed"]:
            consumed[key] = consumed.get(key, 0) + 1
    sent = ours["sent"]
    outages = ours["outages_ms"]
    return {
        "sessions": n,
        "rotations": len(outages),
        "outage_p50_ms": _r(percentile(outages, 0.5)),
        "outage_p99_ms": _r(percentile(outages, 0.99)),
        "inputs": len(sent),
        "lost": sum(1 for k in sent if k not in consumed),
        "duplicated": sum(v - 1 for v in consumed.values() if v > 1),
        "failed_sessions": ours["failed"],
        "unconfirmed_at_close": ours["unconfirmed_at_close"],
        "sdk_kb_per_connection": round(raw["rss_growth_kb"] / n, 1),
        "ours_kb_per_session": round(ours["rss_growth_kb"] / n, 1),
        "kb_per_session": round((ours["rss_growth_kb"] - raw["rss_growth_kb"]) / n, 1),
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def run(sizes: list[int], seconds: float, lifetime_s: float) -> dict[str, Any]:
    runs = [await run_one(n, seconds, lifetime_s) for n in sizes]
    first, last = runs[0], runs[-1]
    return {
        "runs": runs,
        "sessions": last["sessions"],
        "kb_per_session": last["kb_per_session"],
        "lost": sum(r["lost"] for r in runs),
        "growth": {
            "sessions": f"{first['sessions']} -> {last['sessions']}",
            "kb_per_session": f"{first['kb_per_session']} -> {last['kb_per_session']}",
            "outage_p50_ms": f"{first['outage_p50_ms']} -> {last['outage_p50_ms']}",
            "outage_p99_ms": f"{first['outage_p99_ms']} -> {last['outage_p99_ms']}",
            "lost": f"{first['lost']} -> {last['lost']}",
        },
    }
