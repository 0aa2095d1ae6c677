"""Rotation outage: continuous 20 ms audio chunks and regular turns through many goAway
rotations, for LiveSession and for two peer patterns on the raw SDK, measured at the emulator.

Per rotation: the outage (last client frame on the old connection to the first new input on the
new one, setup and replay included), the worst delay any input suffered between its send call
and its arrival, input lost or duplicated in what the model took in (the emulator tracks input
identities through handles), and replies cut. The floor is a bare `connect()` + setup measured
in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from google.genai import errors, types

from .. import connect, websocket_args
from ..audit.stats import percentile
from ..core.actions import ReplyInterrupted
from ..core.policy import Limits, Policy, ReplayPolicy, RetryPolicy
from ..emulator import BENCH_MODEL as DEFAULT_MODEL
from ..emulator import ConnectionPlan, EmulatorSettings, LiveEmulator
from ..emulator.wire import parse_duration
from .tasks import cancel_and_wait, started_tasks

SCALE = 0.01
CHUNK = 0.02  # 20 ms of 16 kHz 16-bit mono audio per message
CHUNK_BYTES = 640
TURN_EVERY = 0.25


def emulator_settings(lifetime_s: float) -> EmulatorSettings:
    return EmulatorSettings(
        time_scale=SCALE, connection_lifetime=lifetime_s / SCALE, go_away_lead=20.0,
        chunk_interval=1.0, track_inputs=True)


def policy() -> Policy:
    return Policy(
        limits=Limits(go_away_lead=20.0, go_away_margin=2.0, setup_timeout=500.0),
        retry=RetryPolicy(base_delay=1.0, max_delay=20.0),
        replay=ReplayPolicy(audio_staleness=200.0),
    ).scaled(SCALE)


Sender = Callable[[Any], Awaitable[bool]]


def raw_senders(current: list[Any]) -> tuple[Sender, Sender]:
    """Audio and text senders on the raw SDK session in `current[0]`, as the peers send: input
    while there is no connection, or that fails to go out, is lost (False)."""

    async def audio(data: bytes) -> bool:
        sdk = current[0]
        if sdk is None:
            return False
        try:
            await sdk.send_realtime_input(
                audio=types.Blob(data=data, mime_type="audio/pcm;rate=16000"))
        except Exception:
            return False
        return True

    async def text(t: str) -> bool:
        sdk = current[0]
        if sdk is None:
            return False
        try:
            await sdk.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text=t)]), turn_complete=True)
        except Exception:
            return False
        return True

    return audio, text


@attrs.define
class Outcome:
    name: str
    rotations: int = 0
    outages_ms: list[float] = attrs.field(factory=list)
    worst_delay_ms: float = 0.0
    lost: int = 0
    duplicated: int = 0
    cut_replies: int = 0
    inputs: int = 0
    floor_ms: float | None = None
    floor_p99_ms: float | None = None
    floor_samples: int = 0

    def summary(self) -> dict[str, Any]:
        floor_ms = self.floor_ms
        p50 = percentile(self.outages_ms, 0.5)
        p99 = percentile(self.outages_ms, 0.99)
        return {
            "floor_ms": _r(floor_ms),
            "floor_p99_ms": _r(self.floor_p99_ms),
            "floor_samples": self.floor_samples,
            "rotations": self.rotations,
            "outage_p50_ms": _r(p50),
            "outage_p99_ms": _r(p99),
            "outage_max_ms": _r(max(self.outages_ms) if self.outages_ms else None),
            "outage_p99_over_floor": _r(p99 / floor_ms if p99 and floor_ms else None, 3),
            "outage_p99_over_floor_p99": _r(
                p99 / self.floor_p99_ms if p99 and self.floor_p99_ms else None, 3),
            "outage_p50_over_floor": _r(p50 / floor_ms if p50 and floor_ms else None, 3),
            # the floor's own tail on the same scale: what a bare connect() would score against
            # the outage target (its p99 over its p50), under the same load
            "floor_p99_over_floor": _r(
                self.floor_p99_ms / floor_ms if self.floor_p99_ms and floor_ms else None, 3),
            "worst_input_delay_ms": _r(self.worst_delay_ms),
            "inputs": self.inputs,
            "lost": self.lost,
            "duplicated": self.duplicated,
            # taken in twice across a rotation (the crossing window), on average
            "duplicated_per_rotation": _r(self.duplicated / max(1, self.rotations), 3),
            "cut_replies": self.cut_replies,
        }


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


class Traffic:
    """The application side: audio every 20 ms, a text turn every 250 ms, send times kept."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.seq = 0
        self.turn = 0

    def audio(self) -> tuple[str, bytes]:
        self.seq += 1
        data = struct.pack(">Q", self.seq) + bytes(CHUNK_BYTES - 8)
        return "a:" + data[:8].hex(), data

    def text(self) -> str:
        self.turn += 1
        return f"turn {self.turn}"

    async def run(self, send_audio: Callable[[bytes], Awaitable[bool]],
                  send_text: Callable[[str], Awaitable[bool]], stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        next_turn = start + TURN_EVERY
        tick = 0
        while not stop.is_set():
            tick += 1
            key, data = self.audio()
            now = loop.time()
            if await send_audio(data):
                self.sent[key] = now
            if now >= next_turn:
                next_turn += TURN_EVERY
                text = self.text()
                now = loop.time()
                if await send_text(text):
                    self.sent["t:" + text] = now
            await asyncio.sleep(max(0.0, start + tick * CHUNK - loop.time()))


def measure(emu: LiveEmulator, traffic: Traffic, outcome: Outcome) -> Outcome:
    """Outages, delays, losses and duplicates from the emulator's record."""
    arrivals: dict[str, float] = {}
    conns = [c for c in emu.connections if c.setup_sent.is_set()]
    for conn in conns:
        for frame in conn.frames:
            if frame.direction != "in":
                continue
            rt = frame.data.get("realtime_input") or {}
            if rt.get("audio"):
                import base64

                raw = base64.urlsafe_b64decode(rt["audio"]["data"] + "==")
                arrivals.setdefault("a:" + raw[:8].hex(), frame.at)
            content = frame.data.get("client_content") or {}
            if content.get("turn_complete"):
                for turn in content.get("turns") or []:
                    text = "".join(p.get("text", "") for p in turn.get("parts") or [])
                    arrivals.setdefault("t:" + text, frame.at)
    for old, new in itertools.pairwise(conns):
        first_new = min((f.at for f in new.frames if f.direction == "in"
                         and "setup" not in f.data), default=None)
        if old.closed_at is not None and first_new is not None:
            outcome.outages_ms.append((first_new - old.closed_at) * 1000)
    outcome.rotations = len(conns) - 1
    delays = [arrivals[k] - t for k, t in traffic.sent.items() if k in arrivals]
    outcome.worst_delay_ms = max(delays, default=0.0) * 1000
    consumed: Counter[str] = Counter()
    for session in emu.sessions:
        consumed.update(session.context.consumed)
    outcome.inputs = len(traffic.sent)
    outcome.lost = sum(1 for k in traffic.sent if k not in consumed)
    outcome.duplicated = sum(n - 1 for n in consumed.values() if n > 1)
    return outcome


class FloorProbe:
    """Bare `connect()` + setupComplete timed every 100 ms on a second emulator in the same
    event loop while a scenario runs: the floor under the same load as the rotations."""

    def __init__(self, lifetime_s: float) -> None:
        self.samples: list[float] = []
        self._settings = emulator_settings(lifetime_s)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FloorProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
        async with LiveEmulator(self._settings) as emu:
            client = emu.client(**websocket_args())
            while not self._stop.is_set():
                start = loop.time()
                async with client.aio.live.connect(model=DEFAULT_MODEL, config=config):
                    self.samples.append((loop.time() - start) * 1000)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.1)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def p99(self) -> float | None:
        return percentile(self.samples, 0.99)


async def run_ours(rotations: int, lifetime_s: float, *, silent: bool) -> Outcome:
    outcome = Outcome(name="ours, silent after goAway" if silent else "ours")
    async with LiveEmulator(emulator_settings(lifetime_s)) as emu, \
            FloorProbe(lifetime_s) as probe:
        if silent:
            emu.plan(*[ConnectionPlan(silent_after_go_away=True)] * (rotations + 5))
        traffic = Traffic()
        stop = asyncio.Event()
        config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
        cut: list[ReplyInterrupted] = []

        def notice(n: Any) -> None:
            if isinstance(n, ReplyInterrupted):
                cut.append(n)

        async with connect(emu.client(**websocket_args()), model=DEFAULT_MODEL, config=config,
                           policy=policy(), audit=lambda r: None, on_notice=notice) as session:

            async def audio(data: bytes) -> bool:
                blob = types.Blob(data=data, mime_type="audio/pcm;rate=16000")
                await session.send_realtime_input(audio=blob)
                return True

            async def text(t: str) -> bool:
                turn = types.Content(role="user", parts=[types.Part(text=t)])
                await session.send_client_content(turns=turn, turn_complete=True)
                return True

            async def drain() -> None:
                async for _ in session.receive():
                    pass

            events = session.events()
            async with started_tasks() as start:
                receiver = start(drain())
                sender = start(traffic.run(audio, text, stop))
                await emu.wait_connections(rotations + 1)
                stop.set()
                await sender
                await _settle(session, events)
            outcome.cut_replies = len(cut)
        await asyncio.wait_for(receiver, 5)
    outcome.floor_ms, outcome.floor_p99_ms = probe.median, probe.p99
    outcome.floor_samples = len(probe.samples)
    return measure(emu, traffic, outcome)


async def _settle(session: Any, events: Any) -> None:
    """Let the last turn finish and its handle arrive, so the end of the run is not a loss."""

    def settled() -> bool:
        return not session.core.journal.has_turn_input() and session.state == "streaming"

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2.0):
            async for _ in events:
                if settled():
                    return


async def run_baseline(rotations: int, lifetime_s: float, *, on_go_away: bool) -> Outcome:
    """The peers' patterns on the raw SDK: reconnect with the last resumable handle after the
    server closes (a), or immediately when goAway arrives (b). Input sent while reconnecting is
    lost (the send raises or there is no session)."""
    name = "baseline (b): reconnect on goAway" if on_go_away else \
        "baseline (a): reconnect after close"
    outcome = Outcome(name=name)
    async with LiveEmulator(emulator_settings(lifetime_s)) as emu, \
            FloorProbe(lifetime_s) as probe:
        client = emu.client(**websocket_args())
        traffic = Traffic()
        stop = asyncio.Event()
        current: list[Any] = [None]
        handle: list[str | None] = [None]
        in_reply = [False]

        audio, text = raw_senders(current)

        async def session_loop() -> None:
            while not stop.is_set():
                # compression on, as ours has by default: without it the emulator enforces the
                # session cap, which at the benchmark's time scale ends a session in 9 s
                config = types.LiveConnectConfig(
                    response_modalities=[types.Modality.TEXT],
                    session_resumption=types.SessionResumptionConfig(handle=handle[0]),
                    context_window_compression=types.ContextWindowCompressionConfig(
                        trigger_tokens=25_600,
                        sliding_window=types.SlidingWindow(target_tokens=12_800)))
                try:
                    async with client.aio.live.connect(model=DEFAULT_MODEL, config=config) as sdk:
                        current[0] = sdk
                        while True:
                            async for m in sdk.receive():
                                sc = m.server_content
                                if sc and sc.model_turn:
                                    in_reply[0] = True
                                if sc and sc.turn_complete:
                                    in_reply[0] = False
                                u = m.session_resumption_update
                                if u and u.resumable and u.new_handle:
                                    handle[0] = u.new_handle
                                if m.go_away is not None and on_go_away:
                                    parse_duration(m.go_away.time_left or "0s")
                                    raise _Reconnect
                except (_Reconnect, errors.APIError):
                    pass
                finally:
                    current[0] = None
                    if in_reply[0]:
                        outcome.cut_replies += 1
                        in_reply[0] = False

        async with started_tasks() as start:
            runner = start(session_loop())
            sender = start(traffic.run(audio, text, stop))
            await emu.wait_connections(rotations + 1)
            await asyncio.sleep(0.3)  # let the last connection carry traffic before stopping
            stop.set()
            await sender
        await cancel_and_wait(runner)
    outcome.floor_ms, outcome.floor_p99_ms = probe.median, probe.p99
    outcome.floor_samples = len(probe.samples)
    return measure(emu, traffic, outcome)


class _Reconnect(Exception):
    pass


async def run(rotations: int, lifetime_s: float) -> dict[str, Any]:
    """Every scenario in turn; each is compared with the floor measured during it."""
    results = [
        await run_ours(rotations, lifetime_s, silent=False),
        await run_ours(rotations, lifetime_s, silent=True),
        await run_baseline(rotations, lifetime_s, on_go_away=False),
        await run_baseline(rotations, lifetime_s, on_go_away=True),
    ]
    return {r.name: r.summary() for r in results}
