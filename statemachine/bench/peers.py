"""The peer table: voice frameworks driven against the emulator under one load, with and without
`statemachine.instrument()`, counted from the emulator's record of what the model took in.

Each framework pins its own google-genai, so each runs in a virtual environment of its own
(`.venv-fw/<name>`, made by `.ci/run`): `python -m statemachine.bench.frameworks NAME` runs one
framework there and prints one JSON line; this module starts those processes and prints the table.
`statemachine.connect` itself runs in this process under the same load.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs

from ..core.policy import Limits, Policy, ReplayPolicy, RetryPolicy
from ..emulator import EmulatorSettings, LiveEmulator

#: 1 emulated second = 10 ms of real time for the emulator's and the policy's durations
SCALE = 0.01
SAMPLE_RATE = 16_000
#: distribution name, pip requirement, virtual environment of each framework
FRAMEWORKS: dict[str, tuple[str, str]] = {
    "pipecat": ("pipecat-ai", "pipecat-ai[google]==1.14.0"),
    "livekit": ("livekit-agents", "livekit-agents==1.8.9 livekit-plugins-google==1.8.9"),
    "adk": ("google-adk", "google-adk==2.13.0"),
    "pydantic_ai": ("pydantic-ai-slim", "pydantic-ai-slim[google]==2.68.0"),
}
_MARKER = re.compile(r"\bturn-\d+\b")
VENVS = Path(os.environ.get("STATEMACHINE_FRAMEWORK_VENVS", ".venv-fw"))


@attrs.frozen(kw_only=True)
class Load:
    """Continuous audio and text turns through short connections. Durations in real seconds."""

    lifetime: float = 2.0  # one connection, goAway included
    lead: float = 0.5  # goAway this long before the end
    rotations: int = 10
    chunk: float = 0.05  # one audio message: 50 ms of 16 kHz 16-bit mono PCM
    turn_every: float = 0.5

    @property
    def chunk_bytes(self) -> int:
        return int(SAMPLE_RATE * self.chunk) * 2

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Load:
        return cls(**json.loads(text))


QUICK = Load()
FULL = Load(lifetime=4.0, lead=0.5, rotations=12, turn_every=0.5)


def emulator_settings(load: Load) -> EmulatorSettings:
    """Session caps out of the way (the load measures rotations, not caps); inputs tracked."""
    return EmulatorSettings(
        time_scale=SCALE, connection_lifetime=load.lifetime / SCALE,
        go_away_lead=load.lead / SCALE, chunk_interval=1.0, session_cap_audio=1e9,
        session_cap_video=1e9, track_inputs=True)


def policy(load: Load) -> Policy:
    return Policy(
        limits=Limits(go_away_lead=load.lead / SCALE, go_away_margin=load.lead / SCALE / 10,
                      setup_timeout=500.0, session_cap_audio=1e9, session_cap_video=1e9),
        retry=RetryPolicy(base_delay=1.0, max_delay=20.0),
        replay=ReplayPolicy(audio_staleness=200.0),
    ).scaled(SCALE)


class Traffic:
    """The user: an audio chunk every `load.chunk` and a text turn every `load.turn_every`.
    Each input carries its identity (the chunk's first 8 bytes, `turn-N` in the text), so the
    emulator's record says which were taken in, and how often."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.audio_sent: list[str] = []
        self.turns_sent: list[str] = []
        self.stop = asyncio.Event()

    async def run(self, send_audio: Callable[[bytes], Awaitable[None]],
                  send_text: Callable[[str], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        next_turn = start + self.load.turn_every
        tick = 0
        while not self.stop.is_set():
            tick += 1
            data = struct.pack(">Q", tick) + bytes(self.load.chunk_bytes - 8)
            self.audio_sent.append("a:" + data[:8].hex())
            await send_audio(data)
            if loop.time() >= next_turn:
                next_turn += self.load.turn_every
                marker = f"turn-{len(self.turns_sent) + 1}"
                self.turns_sent.append(marker)
                await send_text(f"{marker}: what did I say before?")
            await asyncio.sleep(max(0.0, start + tick * self.load.chunk - loop.time()))

    def taken_in(self, emu: LiveEmulator) -> Counter[str]:
        """Identities of the inputs the model took in, counted."""
        seen: Counter[str] = Counter()
        for session in emu.sessions:
            for item in session.context.consumed:
                if item.startswith("a:"):
                    seen[item] += 1
                else:
                    seen.update(set(_markers(item)))
        return seen

    async def settle(self, emu: LiveEmulator, quiet: float = 1.0, limit: float = 6.0) -> None:
        """After the traffic stopped: wait until every input was taken in, or nothing more
        arrived for `quiet` seconds (what is missing then is lost)."""
        loop = asyncio.get_running_loop()
        wanted = set(self.audio_sent) | set(self.turns_sent)
        last, changed, deadline = -1, loop.time(), loop.time() + limit
        while loop.time() < deadline:
            seen = self.taken_in(emu)
            if wanted <= set(seen):
                return
            total = sum(seen.values())
            if total != last:
                last, changed = total, loop.time()
            elif loop.time() - changed >= quiet:
                return
            await asyncio.sleep(0.05)


def _markers(text: str) -> list[str]:
    return _MARKER.findall(text)


def count(emu: LiveEmulator, traffic: Traffic) -> dict[str, Any]:
    """Losses, repeats, cut replies and outages from the emulator's own record."""
    seen = traffic.taken_in(emu)
    conns = [c for c in emu.connections if c.setup_sent.is_set()]
    outages = []
    for old, new in itertools.pairwise(conns):
        first = min((f.at for f in new.frames if f.direction == "in" and "setup" not in f.data),
                    default=None)
        if old.closed_at is not None and first is not None:
            outages.append((first - old.closed_at) * 1000)
    cut = 0
    for conn in conns:
        in_reply = False
        for frame in conn.frames:
            content = frame.data.get("serverContent") if frame.direction == "out" else None
            if isinstance(content, dict):
                in_reply = not content.get("turnComplete") and (
                    in_reply or "modelTurn" in content)
        cut += in_reply
    return {
        "rotations": len(conns) - 1,
        "audio_sent": len(traffic.audio_sent),
        "audio_lost": sum(1 for k in traffic.audio_sent if k not in seen),
        "turns_sent": len(traffic.turns_sent),
        "turns_lost": sum(1 for k in traffic.turns_sent if k not in seen),
        "repeated": sum(n - 1 for n in seen.values() if n > 1),
        "replies_cut": cut,
        "outage_p50_ms": round(statistics.median(outages), 1) if outages else None,
        "sessions": len(emu.sessions),
        # a few of each, to say which (the start, a rotation, the end)
        "lost_sample": [k for k in [*traffic.audio_sent, *traffic.turns_sent] if k not in seen][:5],
        "repeated_sample": [k for k, n in seen.items() if n > 1][:5],
    }


async def _ours(load: Load) -> dict[str, Any]:
    """`statemachine.connect` under the same load: the row the frameworks are compared with."""
    from google.genai import types

    from .. import connect, websocket_args

    async with LiveEmulator(emulator_settings(load)) as emu:
        traffic = Traffic(load)
        config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
        async with connect(emu.client(**websocket_args()), model="gemini-live-2.5-flash-preview",
                           config=config, policy=policy(load), audit=lambda r: None) as session:

            async def audio(data: bytes) -> None:
                await session.send_realtime_input(
                    audio=types.Blob(data=data, mime_type="audio/pcm;rate=16000"))

            async def text(t: str) -> None:
                await session.send_client_content(
                    turns=types.Content(role="user", parts=[types.Part(text=t)]))

            async def drain() -> None:
                async for _ in session.receive():
                    pass

            loop = asyncio.get_running_loop()
            receiver = loop.create_task(drain())
            sender = loop.create_task(traffic.run(audio, text))
            await emu.wait_connections(load.rotations + 1)
            traffic.stop.set()
            await sender
            await traffic.settle(emu)
        await asyncio.wait_for(receiver, 5)
        result = count(emu, traffic)
    from importlib.metadata import version

    result.update(framework="statemachine.connect", version=version("gemini-live-statemachine"),
                  instrumented=None)
    return result


def venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def run_framework(name: str, *, instrumented: bool, load: Load,
                  timeout: float = 300.0) -> dict[str, Any]:
    """One framework under the load, in its own virtual environment; its JSON result."""
    python = venv_python(name)
    if not python.exists():
        _, requirement = FRAMEWORKS[name]
        raise FileNotFoundError(
            f"no virtual environment for {name} at {python.parent.parent}: create it with "
            f"`python3 -m venv {VENVS / name} && {VENVS / name}/bin/pip install -e . "
            f"{requirement}` (what .ci/run does)")
    command = [str(python), "-m", "statemachine.bench.frameworks", name, "--load",
               load.to_json()]
    if instrumented:
        command.append("--instrument")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{name} did not finish within {timeout} s") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"{name} driver failed (exit {done.returncode}): {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


COLUMNS = ("audio chunks lost", "turns lost", "repeated", "replies cut", "outage p50",
           "rotations")


def _row(result: dict[str, Any]) -> list[str]:
    p50 = result["outage_p50_ms"]
    return [f"{result['audio_lost']} of {result['audio_sent']}",
            f"{result['turns_lost']} of {result['turns_sent']}", str(result["repeated"]),
            str(result["replies_cut"]), "-" if p50 is None else f"{p50} ms",
            str(result["rotations"])]


def table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        label = f"{r['framework']} {r['version']}"
        if r["instrumented"] is not None:
            label += " + instrument()" if r["instrumented"] else ""
        rows.append([label, *_row(r)])
    header = ["", *COLUMNS]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
              for row in rows]
    return "\n".join(lines)


def main(quick: bool, json_path: str | None) -> int:
    load = QUICK if quick else FULL
    started = time.time()
    results = [asyncio.run(_ours(load))]
    failed = []
    for name in FRAMEWORKS:
        for instrumented in (False, True):
            try:
                results.append(run_framework(name, instrumented=instrumented, load=load))
            except (FileNotFoundError, RuntimeError) as exc:
                failed.append(f"{name}{' + instrument()' if instrumented else ''}: {exc}")
    print(f"Peers: {load.lifetime} s connections, goAway {load.lead} s before the end, "
          f"{load.rotations} rotations; {int(load.chunk * 1000)} ms audio chunks and a text turn "
          f"every {load.turn_every} s; counted from what the emulator's model took in.")
    print(table(results))
    for line in failed:
        print(f"not measured: {line}", file=sys.stderr)
    print(f"({round(time.time() - started, 1)} s)")
    if json_path:
        with contextlib.suppress(OSError):
            Path(json_path).write_text(json.dumps({"load": attrs.asdict(load),
                                                   "results": results}, indent=2))
    return 1 if failed else 0

