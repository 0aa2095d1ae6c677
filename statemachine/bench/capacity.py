"""Capacity at real rates: how many voice sessions one core carries, ours against the raw SDK.

Each session, in real time: 20 ms audio chunks in (50 messages/s), a text turn every
`TURN_EVERY` s answered with audio streamed at real pace (a chunk of about 40 ms every 40 ms),
and a rotation every `LIFETIME` s. Sessions start spread over a ramp, and each first connection
lives for a random part of a lifetime, so rotations are spread as in a deployment running for
hours (about N x window / LIFETIME of them fall in the measured window).

One step runs N sessions in a process of its own pinned to one core (the emulator runs in yet
another, pinned to another core when there is one), for ours (`statemachine.connect`) and for the
raw SDK (reconnecting with the last handle on goAway: the peers' pattern). The input delay of a
chunk is from when it was due (its 20 ms tick) to when its send call returned: the time the
process took to get to it and hand it to the socket. A step is met when the p99 of that delay
stays under `TARGET_P99_MS`, no session failed and (ours) no input was lost silently (what its
replay policy drops, such as stale audio at a resume, it reports: counted as dropped). N steps up
until a step is missed twice in a row (`_decide`), then one halving step; the capacity is the
largest N met. The CPU time per message (in and out)
is the process's own CPU time in the window divided by the messages it handled.

Ours encodes each audio chunk once itself (`statemachine.aio.frames`), which saves more than the
lifecycle costs. So that the lifecycle's own cost stays in view, "ours-sdk" (ours with the SDK
encoding every chunk, as before) runs once at the smallest and the largest N both sides ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from google.genai import errors, types

from ..aio import frames
from ..audit.stats import percentile
from ..core.actions import InputDropped, Notice
from ..emulator import BENCH_MODEL as DEFAULT_MODEL
from ..emulator import ConnectionPlan, EmulatorSettings
from .ledger import Ledger, split
from .remote import RemoteEmulator, client_for, in_child
from .rotation import raw_senders
from .tasks import cancel_and_wait

TARGET_P99_MS = 20.0
CHUNK = 0.02  # 20 ms of 16 kHz 16-bit mono audio per message
CHUNK_BYTES = 640
TURN_EVERY = 10.0  # seconds between a session's text turns
LIFETIME = 120.0  # seconds a connection lives (the service: about 10 min; this rotates more)
GO_AWAY_LEAD = 10.0
OUTPUT_CHUNK = 0.04  # seconds between two audio chunks of a reply (real pace)
CHUNKS_PER_REPLY = 25
FLOOR_EVERY = 0.5  # seconds between two bare connect() + setup probes (the floor under load)


def _config(handle: str | None = None, resume: bool = False) -> types.LiveConnectConfig:
    """Audio out, activity detection off (the audio is silence and turns are text), and the
    compression ours turns on by default, so both sides run the same server-side session."""
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)),
        session_resumption=types.SessionResumptionConfig(handle=handle) if resume else None,
        context_window_compression=types.ContextWindowCompressionConfig(
            trigger_tokens=25_600, sliding_window=types.SlidingWindow(target_tokens=12_800)),
    )


def emulator_settings(lifetime: float = LIFETIME, pace: float = 1.0) -> EmulatorSettings:
    """`pace`: wall seconds per second of the sessions' time (1: real time; 5: every duration
    five times longer, so a small machine can hold a fleet's state: `fleet.py`)."""
    return EmulatorSettings(
        time_scale=pace, connection_lifetime=lifetime, go_away_lead=_lead(lifetime),
        chunk_interval=OUTPUT_CHUNK, chunks_per_reply=CHUNKS_PER_REPLY, record_frames=False,
        track_inputs=True)


def _lead(lifetime: float) -> float:
    """The goAway notice, in the same proportion to the lifetime as at the real rates."""
    return GO_AWAY_LEAD * lifetime / LIFETIME


def first_lifetimes(n: int, settle: float, seed: int = 7,
                    lifetime: float = LIFETIME) -> list[ConnectionPlan]:
    """The first connection of each session lives `settle` s plus a random part of a lifetime
    (evenly spread, shuffled), so rotations come at the steady rate of a long-running fleet."""
    parts = [(i + 0.5) / n for i in range(n)]
    random.Random(seed).shuffle(parts)
    return [ConnectionPlan(lifetime=_lead(lifetime) + settle + p * lifetime) for p in parts]


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Probe:
    """What one client process measures in its window."""

    def __init__(self, loop: asyncio.AbstractEventLoop, start: float, end: float) -> None:
        self.loop, self.start, self.end = loop, start, end
        self.delays: list[float] = []
        self.sent: list[str] = []
        self.skipped = 0  # audio the raw SDK had no connection for (reconnecting)
        self.dropped = 0  # input ours dropped by its replay policy, and said so (InputDropped)
        self.dropped_ids: list[str] = []  # which (ours, once each session has ended)
        #: what ours' sessions still held uncovered when they were closed (`ledger.py`)
        self.unread_ids: list[str] = []
        #: sessions whose engine counted other inputs than their ledger (its figures are off)
        self.unmatched = 0
        self.received = 0
        self.outages: list[float] = []
        self.floor: list[float] = []

    def in_window(self, t: float) -> bool:
        return self.start <= t < self.end


async def _speak(i: int, probe: Probe, stop: asyncio.Event,
                 send_audio: Callable[[bytes], Any], send_text: Callable[[str], Any],
                 pace: float = 1.0) -> None:
    """The application side of one session: audio every 20 ms, a text turn every TURN_EVERY
    s (the first at a random offset), each send's delay from its due time kept in the window
    (`pace`: wall seconds per second of the session's time)."""
    loop = probe.loop
    start = loop.time()
    every = TURN_EVERY * pace
    next_turn = start + every * ((i * 0.618) % 1.0)
    seq = turn = 0
    while not stop.is_set():
        seq += 1
        due = start + seq * CHUNK * pace
        await asyncio.sleep(max(0.0, due - loop.time()))
        data = struct.pack(">II", i, seq) + bytes(CHUNK_BYTES - 8)
        if await send_audio(data):
            done = loop.time()
            probe.sent.append("a:" + data[:8].hex())
            if probe.in_window(due):
                probe.delays.append(done - due)
        elif probe.in_window(due):
            probe.skipped += 1
        if due >= next_turn:
            next_turn += every
            turn += 1
            text = f"s{i} t{turn}"
            if await send_text(text):
                probe.sent.append("t:" + text)


async def _floor(client: Any, probe: Probe, stop: asyncio.Event) -> None:
    """Bare connect() + setupComplete, timed in the same loop under the same load."""
    loop = probe.loop
    await asyncio.sleep(max(0.0, probe.start - loop.time()))
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    while not stop.is_set() and loop.time() < probe.end:
        began = loop.time()
        with contextlib.suppress(Exception):
            async with client.aio.live.connect(model=DEFAULT_MODEL, config=config):
                probe.floor.append(loop.time() - began)
        await asyncio.sleep(FLOOR_EVERY)


async def _ours(i: int, client: Any, probe: Probe, stop: asyncio.Event, ramp: float, n: int,
                unconfirmed: list[int], telemetry: Any = None,
                sessions: list[Any] | None = None, pace: float = 1.0) -> None:
    from .. import Policy, connect

    await asyncio.sleep(ramp * i / n)
    resuming_since: list[float] = []
    ledger = Ledger(i)  # which input each seq is: what was dropped, what was left unread

    def sink(r: dict[str, Any]) -> None:
        """Outages as they happen (no records kept): from the transition into `resuming` to the
        one out of it, by the clock when each is made (the records' own times are the events'
        times, which wait for the session's lock)."""
        if r["kind"] != "transition":
            return
        if r["dest"] == "resuming":
            resuming_since[:] = [probe.loop.time()]
        elif r["source"] == "resuming" and resuming_since:
            probe.outages.append(probe.loop.time() - resuming_since.pop())

    def notice(n: Notice) -> None:
        if isinstance(n, InputDropped):
            probe.dropped += 1
            ledger.dropped(n.seq)

    policy = Policy().scaled(pace) if pace != 1.0 else None  # the default, on the fleet's clock
    try:
        async with connect(client, model=DEFAULT_MODEL, config=_config(), audit=sink,
                           on_notice=notice, telemetry=telemetry, policy=policy) as session:
            if sessions is not None:  # the memory benchmark walks their journals
                sessions.append(session)

            async def audio(data: bytes) -> bool:
                await session.send_realtime_input(
                    audio=types.Blob(data=data, mime_type="audio/pcm;rate=16000"))
                ledger.audio_sent()
                return True

            async def text(t: str) -> bool:
                await session.send_client_content(
                    turns=types.Content(role="user", parts=[types.Part(text=t)]),
                    turn_complete=True)
                ledger.text_sent(t)
                return True

            async def drain() -> None:
                async for _ in session.receive():
                    probe.received += 1

            events = session.events()
            reader = probe.loop.create_task(drain())
            await _speak(i, probe, stop, audio, text, pace)
            # A last turn, answered and covered by a handle before closing: the server has
            # then taken in everything sent before it. A close while a saturated server still
            # had audio unread in the socket counted that audio as lost, though no rotation was
            # involved. Bounded, since the machine may be saturated.
            await text(f"s{i} end")

            def settled() -> bool:  # no turn waits (held in a rotation, unanswered, uncovered)
                return session.state == "streaming" and not any(
                    e.trigger for e in session.core.journal.entries())

            # a deadline, not `asyncio.timeout`: on 3.11 a timeout that fires as its block ends
            # leaves the cancellation pending, and the close after it was cancelled instead
            deadline = probe.loop.time() + 10 * pace
            while not settled():
                left = deadline - probe.loop.time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(anext(events), left)
                except (TimeoutError, StopAsyncIteration):
                    break
            journal = session.core.journal
            unconfirmed.append(len(journal))
            # what the close lets go of: input no handle covers yet (the server may not have
            # read it), by identity, so that it is told apart from input lost on the way
            probe.unread_ids += ledger.uncovered(journal.entries())
            if session.core.counters.inputs != ledger.inputs:
                probe.unmatched += 1
        reader.cancel()
    finally:  # every drop reported up to the close, a failed session's too
        probe.dropped_ids += ledger.dropped_identities()


async def _raw(i: int, client: Any, probe: Probe, stop: asyncio.Event, ramp: float,
               n: int, pace: float = 1.0) -> None:
    """The raw SDK as the peers use it: reconnect with the last resumable handle on goAway;
    input while reconnecting has nowhere to go."""
    await asyncio.sleep(ramp * i / n)
    current: list[Any] = [None]
    handle: list[str | None] = [None]
    connected = asyncio.Event()

    audio, text = raw_senders(current)

    async def connection_loop() -> None:
        left: float | None = None
        while not stop.is_set():
            try:
                async with client.aio.live.connect(
                        model=DEFAULT_MODEL, config=_config(handle[0], resume=True)) as sdk:
                    if left is not None:
                        probe.outages.append(probe.loop.time() - left)
                    current[0] = sdk
                    connected.set()
                    while True:
                        async for m in sdk.receive():
                            probe.received += 1
                            u = m.session_resumption_update
                            if u and u.resumable and u.new_handle:
                                handle[0] = u.new_handle
                            if m.go_away is not None:
                                raise _Reconnect
            except (_Reconnect, errors.APIError):
                pass
            except Exception:  # a handshake that timed out or was refused (a saturated
                await asyncio.sleep(0.5 * pace)  # machine): try again, as the peers do
            finally:
                current[0] = None
                left = probe.loop.time()

    runner = probe.loop.create_task(connection_loop())
    # connected, or stopped first: a fleet whose handshakes keep failing must still end
    waits = [probe.loop.create_task(connected.wait()), probe.loop.create_task(stop.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiting in waits:
        waiting.cancel()
    if connected.is_set():
        await _speak(i, probe, stop, audio, text, pace)
    await asyncio.sleep(1.0)  # the last turn's reply
    await cancel_and_wait(runner)


class _Reconnect(Exception):
    pass


#: how often the "ours-otel" run collects its metrics, as a Prometheus server scraping it would
SCRAPE_EVERY = 1.0


def _telemetry(loop: asyncio.AbstractEventLoop, stop: asyncio.Event,
               seen: dict[str, int]) -> tuple[Any, Callable[[], Any]]:
    """`telemetry=` for "ours-otel": metrics and traces to the real OpenTelemetry SDK, spans
    batched to an in-memory exporter, and the metrics collected every `SCRAPE_EVERY` s (in a
    thread, as the Prometheus exporter's HTTP server does) until `stop`. The coroutine returned
    with it waits for that, then shuts the providers down (the sessions are closed by then);
    `seen` gets how many spans and metrics were reported."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ..telemetry import Telemetry

    tracers = TracerProvider()
    spans = InMemorySpanExporter()
    tracers.add_span_processor(BatchSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])

    async def scrape() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SCRAPE_EVERY)
            data = await asyncio.to_thread(reader.get_metrics_data)
            seen["metrics"] = sum(len(sm.metrics) for rm in (data.resource_metrics if data
                                                             else []) for sm in rm.scope_metrics)

    scraping = loop.create_task(scrape())

    async def finish() -> None:
        await scraping
        await asyncio.to_thread(tracers.shutdown)
        meters.shutdown()
        seen["spans"] = len(spans.get_finished_spans())

    return Telemetry(tracer_provider=tracers, meter_provider=meters), finish


async def _client(kind: str, info: dict[str, str], n: int, ramp: float, warm: float,
                  window: float, gc_clock: GcClock | None = None) -> dict[str, Any]:
    from .. import websocket_args

    loop = asyncio.get_running_loop()
    client = client_for(info, **websocket_args())
    start = loop.time() + ramp + warm
    probe = Probe(loop, start, start + window)
    stop = asyncio.Event()
    unconfirmed: list[int] = []
    if kind == "ours-sdk":  # ours, with every audio chunk encoded by the SDK (this process only)
        frames.enabled = False
    telemetry: Any = None
    reported: dict[str, int] = {}
    scrape: Callable[[], Any] | None = None
    if kind == "ours-otel":  # ours, reporting to OpenTelemetry
        telemetry, scrape = _telemetry(loop, stop, reported)
    if kind in ("ours", "ours-sdk", "ours-otel"):
        tasks = [loop.create_task(_ours(i, client, probe, stop, ramp, n, unconfirmed,
                                        telemetry)) for i in range(n)]
    else:
        tasks = [loop.create_task(_raw(i, client, probe, stop, ramp, n)) for i in range(n)]
    floor = loop.create_task(_floor(client, probe, stop))
    emu_pid = int(info["pid"])
    # The window measures a fleet in steady state. Starting N sessions at once leaves a full
    # collection due (ours' journal entries are reused only once handles cover them): run it
    # during the warm-up, for both sides alike, so that it does not land in the window.
    await asyncio.sleep(max(0.0, probe.start - warm / 2 - loop.time()))
    gc.collect()
    await asyncio.sleep(max(0.0, probe.start - loop.time()))
    gc0 = list(gc_clock.seconds) if gc_clock else [0.0] * 3
    cpu0, emu0, wall0 = time.process_time(), _cpu_of(emu_pid), loop.time()
    received0 = probe.received
    await asyncio.sleep(max(0.0, probe.end - loop.time()))
    cpu, emu_cpu = time.process_time() - cpu0, _cpu_of(emu_pid) - emu0
    gc_s = [b - a for a, b in zip(gc0, gc_clock.seconds if gc_clock else gc0, strict=True)]
    wall = loop.time() - wall0
    received = probe.received - received0
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await floor
    if scrape is not None:
        await scrape()
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    sent_in_window = len(probe.delays)
    messages = sent_in_window + received
    return {
        "delays": probe.delays, "sent": probe.sent, "skipped": probe.skipped,
        "dropped": probe.dropped, "dropped_ids": probe.dropped_ids,
        "unread_ids": probe.unread_ids, "unmatched": probe.unmatched,
        "outages": probe.outages, "floor": probe.floor, "failed": len(failures),
        "failures": failures[:3], "unconfirmed_at_close": sum(unconfirmed),
        "cpu_s": cpu, "wall_s": wall, "gc_s": gc_s, "emulator_cpu_s": emu_cpu,
        "messages": messages, "us_per_message": cpu / messages * 1e6 if messages else None,
        "telemetry": reported,
    }


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


class GcClock:
    """Time spent in the garbage collector, by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self._began = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._began


def _child(kind: str, info: dict[str, str], n: int, ramp: float, warm: float, window: float,
           cpu: int | None, pipe: Connection) -> None:
    _pin(cpu)
    clock = GcClock()
    out = asyncio.run(_client(kind, info, n, ramp, warm, window, clock))
    pipe.send(out)


def cores() -> tuple[int | None, int | None]:
    """(client core, emulator core): two different ones when the process may use two."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < 2:
        return None, None
    return mine[-1], mine[0]


async def step(kind: str, n: int, *, ramp: float, warm: float, window: float,
               lifetime: float = LIFETIME,
               delay_bound_ms: float = TARGET_P99_MS) -> dict[str, Any]:
    """One measurement: N sessions of `kind` ("ours", "ours-otel", "ours-sdk" or "raw") against
    a fresh emulator (`lifetime` shorter than `LIFETIME` and `delay_bound_ms` other than
    `TARGET_P99_MS` only for toy runs: one that must see a rotation, one that checks what is
    reported, whatever the machine's load does to the delays)."""
    client_cpu, emu_cpu = cores()
    settings = emulator_settings(lifetime)
    async with RemoteEmulator(settings, first_lifetimes(n, ramp + warm,
                                                        lifetime=lifetime)) as remote:
        if emu_cpu is not None and remote.info.get("pid"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(remote.info["pid"]), {emu_cpu})
        out: dict[str, Any] = await in_child(_child, kind, remote.info, n, ramp, warm, window,
                                             client_cpu)
        summary = await remote.summary()
    consumed: Counter[str] = Counter()
    for session in summary["sessions"]:
        consumed.update(session["consumed"])
    # lost: what the model never took in and nobody was told of (ours reports what its replay
    # policy drops, such as audio older than `ReplayPolicy.audio_staleness` at a resume), nor
    # was still held uncovered by its session when the run closed it (`ledger.split`)
    losses = split(out["sent"], consumed, set(out["dropped_ids"]), set(out["unread_ids"]))
    lost = losses["lost"]
    delays, outages, floor = out["delays"], out["outages"], out["floor"]
    # taken in twice: sent again after a rotation although the handle held it (crossing window)
    duplicated = sum(c - 1 for c in consumed.values() if c > 1)
    p99 = percentile(delays, 0.99)
    floor_ms = _ms(percentile(floor, 0.5))
    floor_p99 = _ms(percentile(floor, 0.99))
    outage_p99 = _ms(percentile(outages, 0.99))
    ok = p99 is not None and p99 * 1000 < delay_bound_ms and out["failed"] == 0
    if kind != "raw":
        ok = ok and lost == 0
    return {
        "kind": kind,
        "sessions": n,
        "met": ok,
        "input_delay_p50_ms": _ms(percentile(delays, 0.5)),
        "input_delay_p99_ms": _ms(p99),
        "input_delay_max_ms": _ms(max(delays) if delays else None),
        "us_per_message": round(out["us_per_message"], 1) if out["us_per_message"] else None,
        "cpu_busy": round(out["cpu_s"] / out["wall_s"], 2) if out["wall_s"] else None,
        "emulator_cpu_busy": round(out["emulator_cpu_s"] / out["wall_s"], 2)
        if out["wall_s"] else None,
        "gc_busy": [round(g / out["wall_s"], 3) for g in out["gc_s"]] if out["wall_s"] else None,
        "rotations": len(outages),
        "outage_p50_ms": _ms(percentile(outages, 0.5)),
        "outage_p99_ms": outage_p99,
        "floor_ms": floor_ms,
        "outage_p99_over_floor": round(outage_p99 / floor_ms, 2)
        if outage_p99 and floor_ms else None,
        "floor_p99_over_floor": round(floor_p99 / floor_ms, 2) if floor_p99 and floor_ms else None,
        "outage_p99_over_floor_p99": round(outage_p99 / floor_p99, 2)
        if outage_p99 and floor_p99 else None,
        "inputs": len(out["sent"]),
        "lost": lost,
        "lost_unread_at_close": losses["lost_unread_at_close"] if kind != "raw" else None,
        "missing": losses["missing"],
        "skipped": out["skipped"],
        "failed_sessions": out["failed"],
        "failures": out["failures"],
        "dropped": out["dropped"],
        "duplicated": duplicated,
        "duplicated_per_rotation": round(duplicated / max(1, len(outages)), 3),
        "unconfirmed_at_close": out["unconfirmed_at_close"],
        "unmatched_sessions": out["unmatched"],
        "telemetry_reported": out["telemetry"],
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


async def _decide(kind: str, n: int, steps: list[dict[str, Any]], **timing: float) -> bool:
    """Whether `kind` carries N sessions: one step, and when it misses, one more (both are kept
    in `steps`). Other jobs on a shared machine only ever add delay, so the better of two tries
    is the closer estimate of what the core carries; ours and the raw SDK get the same rule."""
    for attempt in (1, 2):
        result = await step(kind, n, **timing)
        result["attempt"] = attempt
        steps.append(result)
        if result["met"]:
            return True
    return False


async def run(sizes: list[int], *, ramp: float, warm: float, window: float,
              refine: bool = True, lifetime: float = LIFETIME,
              sdk_audio: bool = True, telemetry: bool = True,
              delay_bound_ms: float = TARGET_P99_MS) -> dict[str, Any]:
    """Ours and the raw SDK at each size in turn, each until it misses (a miss is tried twice:
    `_decide`); which goes first alternates from size to size, so drift on a shared machine
    moves all alike. With `telemetry`, ours with OpenTelemetry metrics and traces on
    ("ours-otel") is a third side. Then, when `refine`, once more halfway between the last
    size met and the first missed."""
    timing = {"ramp": ramp, "warm": warm, "window": window, "lifetime": lifetime,
              "delay_bound_ms": delay_bound_ms}
    steps: list[dict[str, Any]] = []
    kinds = ("raw", "ours", "ours-otel") if telemetry else ("raw", "ours")
    best: dict[str, int] = dict.fromkeys(kinds, 0)
    missed: dict[str, int | None] = dict.fromkeys(kinds)
    for index, n in enumerate(sizes):
        for kind in kinds if index % 2 == 0 else kinds[::-1]:
            if missed[kind] is not None:
                continue
            if await _decide(kind, n, steps, **timing):
                best[kind] = n
            else:
                missed[kind] = n
        if all(m is not None for m in missed.values()):
            break
    if refine:
        for kind in kinds:
            high = missed[kind]
            mid = (best[kind] + high) // 2 if high is not None else 0
            if high is not None and best[kind] < mid < high \
                    and await _decide(kind, mid, steps, **timing):
                best[kind] = mid
    if sdk_audio:
        # ours again with the SDK's own audio encoding, at the smallest and largest N both ran:
        # what the lifecycle itself costs over the raw SDK, without the encoding it saves
        at = cost_growth(steps).get("us_per_message_at")
        for n in sorted({at["smallest"], at["largest"]}) if at else []:
            result = await step("ours-sdk", n, **timing)
            result["attempt"] = 1
            steps.append(result)
    ours_steps = [s for s in steps if s["kind"] == "ours"]
    loaded = max((s for s in ours_steps if s["met"]), key=lambda s: s["sessions"],
                 default=ours_steps[-1] if ours_steps else None)
    return {
        "sessions_per_core": best["ours"],
        "raw_sessions_per_core": best["raw"],
        "ratio": round(best["ours"] / best["raw"], 3) if best["raw"] else None,
        **_telemetry_cost(steps, best),
        "target_p99_ms": delay_bound_ms,
        "outage_p99_over_floor_loaded": loaded["outage_p99_over_floor"] if loaded else None,
        "floor_p99_over_floor_loaded": loaded["floor_p99_over_floor"] if loaded else None,
        "outage_p99_over_floor_p99_loaded": loaded["outage_p99_over_floor_p99"]
        if loaded else None,
        "duplicated_per_rotation_loaded": loaded["duplicated_per_rotation"] if loaded else None,
        **cost_growth(steps),
        "steps": sorted(steps, key=lambda s: (s["sessions"], s["kind"], s["attempt"])),
        "window_s": window,
        "cores": dict(zip(("client", "emulator"), cores(), strict=True)),
    }


def _telemetry_cost(steps: list[dict[str, Any]], best: dict[str, int]) -> dict[str, Any]:
    """Sessions per core with telemetry on over off, and the CPU per message on over off at the
    largest N both ran (the best of each one's tries there)."""
    if "ours-otel" not in best:
        return {}
    cost: dict[tuple[str, int], float] = {}
    for s in steps:
        if s["us_per_message"] is not None:
            key = (s["kind"], s["sessions"])
            cost[key] = min(s["us_per_message"], cost.get(key, s["us_per_message"]))
    both = sorted(n for kind, n in cost if kind == "ours-otel" and ("ours", n) in cost)
    return {
        "telemetry_sessions_per_core": best["ours-otel"],
        "telemetry_ratio": round(best["ours-otel"] / best["ours"], 3) if best["ours"] else None,
        "telemetry_us_per_message_ratio": round(
            cost["ours-otel", both[-1]] / cost["ours", both[-1]], 3) if both else None,
        "telemetry_us_per_message_at": both[-1] if both else None,
    }


def cost_growth(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU time per message, ours over the raw SDK's, at the smallest and the largest N both
    ran (the best of each one's tries there: the same reasoning as `_decide`)."""
    cost: dict[tuple[str, int], float] = {}
    for s in steps:
        us = s["us_per_message"]
        if us is not None:
            key = (s["kind"], s["sessions"])
            cost[key] = min(us, cost.get(key, us))
    both = sorted(n for kind, n in cost if kind == "ours" and ("raw", n) in cost)
    if not both:
        return {"us_per_message_ratio_smallest": None, "us_per_message_ratio_largest": None}
    low, high = both[0], both[-1]

    def ratio(kind: str, n: int) -> float | None:
        return round(cost[kind, n] / cost["raw", n], 3) if (kind, n) in cost else None

    return {
        "us_per_message_ratio_smallest": ratio("ours", low),
        "us_per_message_ratio_largest": ratio("ours", high),
        "us_per_message_at": {"smallest": low, "largest": high},
        # ours with the SDK's own audio encoding (`frames.enabled` off): the lifecycle's cost
        "sdk_audio_us_per_message_ratio_smallest": ratio("ours-sdk", low),
        "sdk_audio_us_per_message_ratio_largest": ratio("ours-sdk", high),
    }


def table(cap: dict[str, Any]) -> list[str]:
    """The capacity section of the printed report."""
    lines = [f"Capacity at real rates (one core each; 20 ms audio in, audio out at real pace, a "
             f"text turn every {TURN_EVERY:g} s, a rotation every {LIFETIME:g} s; met: input "
             f"delay p99 < {cap.get('target_p99_ms', TARGET_P99_MS):g} ms, nothing lost):"]
    cols = ["input_delay_p99_ms", "us_per_message", "cpu_busy", "emulator_cpu_busy", "rotations",
            "outage_p99_ms", "floor_ms", "lost", "lost_unread_at_close", "dropped", "duplicated",
            "met"]
    heads = {"lost_unread_at_close": "unread@close"}
    lines.append(f"  {'sessions':>8} {'':7}"
                 + "".join(f"{heads.get(c, c)[:13]:>14}" for c in cols))
    for s in cap["steps"]:
        kind = s["kind"] + (f" #{s['attempt']}" if s.get("attempt", 1) > 1 else "")
        lines.append(f"  {s['sessions']:>8} {kind:7}"
                     + "".join(f"{s.get(c)!s:>14}" for c in cols))
    lines.append("  lost: never taken in, not reported dropped, not held by its session at the "
                 "end; unread@close: never taken in, still held uncovered (the server may not "
                 "have read it) when the run closed its session")
    lines.append(f"  ours {cap['sessions_per_core']} sessions per core vs raw SDK "
                 f"{cap['raw_sessions_per_core']}, ratio {cap['ratio']}; rotation outage p99 "
                 f"over floor at ours' largest N met: {cap['outage_p99_over_floor_loaded']} "
                 f"(the floor's own p99 over its p50: {cap.get('floor_p99_over_floor_loaded')}); "
                 f"inputs duplicated per rotation there: "
                 f"{cap.get('duplicated_per_rotation_loaded')}")
    if cap.get("telemetry_sessions_per_core") is not None:
        lines.append(f"  telemetry on (ours-otel: OpenTelemetry metrics and traces to the SDK, "
                     f"collected every {SCRAPE_EVERY:g} s): "
                     f"{cap['telemetry_sessions_per_core']} sessions per core vs "
                     f"{cap['sessions_per_core']} off, ratio {cap['telemetry_ratio']}; CPU per "
                     f"message on/off {cap.get('telemetry_us_per_message_ratio')} at "
                     f"{cap.get('telemetry_us_per_message_at')} sessions")
    at = cap.get("us_per_message_at")
    if at:
        lines.append(f"  CPU per message ours/raw: {cap['us_per_message_ratio_smallest']} at "
                     f"{at['smallest']} sessions, {cap['us_per_message_ratio_largest']} at "
                     f"{at['largest']}; a step missed is tried once more (#2), for both")
        lines.append("  ours-sdk (ours with the SDK encoding each audio chunk, as before "
                     "statemachine.aio.frames) over raw: "
                     f"{cap.get('sdk_audio_us_per_message_ratio_smallest')} at {at['smallest']}, "
                     f"{cap.get('sdk_audio_us_per_message_ratio_largest')} at {at['largest']}")
    return lines
