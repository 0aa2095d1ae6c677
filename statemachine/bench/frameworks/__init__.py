"""Drivers that run one voice framework headless against the emulator (each in the framework's
own virtual environment): `python -m statemachine.bench.frameworks NAME [--instrument]`.

A driver module has `DIST` (its distribution name) and `Driver`: `start()`, `send_audio(data)`,
`send_text(text)`, `stop()`, using the framework's lowest-level Live classes with in-memory input
(no rooms, no transports). The framework builds its own `genai.Client` from the environment
(`GOOGLE_GEMINI_BASE_URL`, `SSL_CERT_FILE`, `GOOGLE_API_KEY`), pointed here at the emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
from importlib.metadata import version
from typing import Any

from ...emulator import LiveEmulator
from ..peers import Load, Traffic, count, emulator_settings, policy

MODEL = "gemini-live-2.5-flash-preview"


def point_at(emu: LiveEmulator) -> None:
    """The environment every framework's plain `genai.Client` reads."""
    os.environ.update(GOOGLE_GEMINI_BASE_URL=emu.base_url, SSL_CERT_FILE=emu.ca_file,
                      GOOGLE_API_KEY=emu.api_key, GEMINI_API_KEY=emu.api_key,
                      GOOGLE_GENAI_USE_VERTEXAI="false")
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy"):
        os.environ.pop(name, None)


async def run(name: str, instrumented: bool, load: Load) -> dict[str, Any]:
    module = importlib.import_module(f".{name}", __package__)
    async with LiveEmulator(emulator_settings(load)) as emu:
        point_at(emu)
        if instrumented:
            from ... import instrument

            instrument(policy=policy(load), audit=lambda record: None)
        traffic = Traffic(load)
        driver = module.Driver(load)
        await driver.start()
        async with asyncio.timeout(30):
            await driver.ready(emu)  # input before the framework can take it is not the test
        loop = asyncio.get_running_loop()
        sender = loop.create_task(traffic.run(driver.send_audio, driver.send_text))
        waiter = loop.create_task(emu.wait_connections(load.rotations + 1))
        # bounded: a framework that stopped reconnecting never reaches the rotations
        limit = load.rotations * load.lifetime * 4 + 30
        await asyncio.wait([sender, waiter], timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        traffic.stop.set()
        await sender  # raises what the sender raised, if it ended first
        waiter.cancel()
        await traffic.settle(emu)
        await driver.stop()
        result = count(emu, traffic)
    result.update(framework=module.DIST, version=version(module.DIST), instrumented=instrumented,
                  google_genai=version("google-genai"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m statemachine.bench.frameworks")
    parser.add_argument("name")
    parser.add_argument("--instrument", action="store_true")
    parser.add_argument("--load", default=Load().to_json())
    args = parser.parse_args()
    result = asyncio.run(run(args.name, args.instrument, Load.from_json(args.load)))
    print(json.dumps(result), flush=True)
