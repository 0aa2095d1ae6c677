"""Steady-state overhead: server messages per second delivered by `LiveSession.receive()` against
the raw SDK's `AsyncSession.receive()`, on the same emulator stream ("firehose N" turns)."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from google.genai import types

from .. import connect, websocket_args
from ..emulator import BENCH_MODEL as DEFAULT_MODEL
from ..emulator import EmulatorSettings
from .remote import RemoteEmulator

CONFIG = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])


def _turn(n: int) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=f"firehose {n}")])


async def _raw(emu: RemoteEmulator, n: int) -> float:
    client = emu.client(**websocket_args())
    loop = asyncio.get_running_loop()
    async with client.aio.live.connect(model=DEFAULT_MODEL, config=CONFIG) as sdk:
        await sdk.send_client_content(turns=_turn(n), turn_complete=True)
        start, count = loop.time(), 0
        async for message in sdk.receive():
            count += 1
            if message.server_content and message.server_content.turn_complete:
                break
        return count / (loop.time() - start)


async def _ours(emu: RemoteEmulator, n: int) -> float:
    loop = asyncio.get_running_loop()
    async with connect(emu.client(**websocket_args()), model=DEFAULT_MODEL, config=CONFIG,
                       audit=lambda r: None) as session:
        await session.send_client_content(turns=_turn(n), turn_complete=True)
        start, count = loop.time(), 0
        async for message in session.receive():
            if message.session_resumption_update is not None:
                continue  # the raw run does not ask for handles
            count += 1
            if message.server_content and message.server_content.turn_complete:
                break
        return count / (loop.time() - start)


async def run(messages: int, rounds: int) -> dict[str, Any]:
    """Alternating rounds of the same stream from an emulator in another process (so the
    client's cost is what is measured); medians of messages per second."""
    raw, ours = [], []
    settings = EmulatorSettings(record_frames=False, handle_on_setup=False)
    async with RemoteEmulator(settings) as emu:
        for _ in range(rounds):
            raw.append(await _raw(emu, messages))
            ours.append(await _ours(emu, messages))
    raw_rate, our_rate = statistics.median(raw), statistics.median(ours)
    # each of our rounds against the raw round run next to it: drift on a shared machine moves
    # both, so the median of paired ratios is steadier than a ratio of medians
    paired = sorted(o / r for o, r in zip(ours, raw, strict=True))
    return {
        "messages_per_round": messages,
        "rounds": rounds,
        "raw_sdk_msgs_per_s": round(raw_rate),
        "ours_msgs_per_s": round(our_rate),
        "ratio": round(statistics.median(paired), 3),
        "ratio_min": round(paired[0], 3),
        "ratio_max": round(paired[-1], 3),
    }
