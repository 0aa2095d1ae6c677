"""The emulator in a process of its own, so a benchmark measures the client alone.

`async with RemoteEmulator(settings) as remote:` starts it (multiprocessing, spawn), and
`remote.client()` returns a genai.Client pointed at it. `await remote.summary()` asks it what it
saw: per connection its close time and first client frame, per session the inputs it consumed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import ssl
from multiprocessing.connection import Connection
from typing import Any

from google import genai
from google.genai import types

from ..emulator import EmulatorSettings, LiveEmulator


def _serve(settings: EmulatorSettings, pipe: Connection) -> None:
    asyncio.run(_serve_async(settings, pipe))


async def _serve_async(settings: EmulatorSettings, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    async with LiveEmulator(settings) as emu:
        pipe.send({"base_url": emu.base_url, "ca_file": emu.ca_file, "api_key": emu.api_key})
        while True:
            request = await loop.run_in_executor(None, pipe.recv)
            if request == "stop":
                break
            if request == "summary":
                pipe.send(_summary(emu))
            elif request == "connections":
                pipe.send(len(emu.connections))


def _summary(emu: LiveEmulator) -> dict[str, Any]:
    sessions = []
    for session in emu.sessions:
        conns = [c for c in emu.connections if c.session is session and c.setup_sent.is_set()]
        sessions.append({
            "consumed": session.context.consumed,
            "connections": [{"closed_at": c.closed_at, "first_in": c.first_in,
                             "resumed": c.resumed} for c in conns],
        })
    return {"sessions": sessions, "connections": len(emu.connections)}


class RemoteEmulator:
    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self._process: Any = None
        self._pipe: Connection | None = None
        self.info: dict[str, str] = {}

    async def __aenter__(self) -> RemoteEmulator:
        context = multiprocessing.get_context("spawn")
        mine, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(self.settings, theirs), daemon=True)
        self._process.start()
        self._pipe = mine
        self.info = await asyncio.to_thread(mine.recv)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._pipe is not None
        self._pipe.send("stop")
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()

    async def _ask(self, what: str) -> Any:
        assert self._pipe is not None
        self._pipe.send(what)
        return await asyncio.to_thread(self._pipe.recv)

    async def summary(self) -> dict[str, Any]:
        return dict(await self._ask("summary"))

    async def connections(self) -> int:
        return int(await self._ask("connections"))

    def client(self, **async_client_args: Any) -> genai.Client:
        ctx = ssl.create_default_context(cafile=self.info["ca_file"])
        return genai.Client(api_key=self.info["api_key"], http_options=types.HttpOptions(
            base_url=self.info["base_url"],
            async_client_args={"ssl": ctx, "proxy": None, **async_client_args}))
