"""pydantic-ai's Gemini realtime model at its lowest level: `GoogleRealtimeModel.connect()` with a
reconnect policy (the framework's own recovery), audio as `BinaryAudio`, text turns as `str`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from pydantic_ai.messages import BinaryAudio
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.providers.google import GoogleProvider
from pydantic_ai.realtime.google import GoogleRealtimeModel

from ...emulator import LiveEmulator
from ..peers import Load
from . import MODEL

DIST = "pydantic-ai-slim"


class Driver:
    def __init__(self, load: Load) -> None:
        self.model = GoogleRealtimeModel(
            MODEL, provider=GoogleProvider(api_key=os.environ["GOOGLE_API_KEY"]))
        self.stack = contextlib.AsyncExitStack()
        self.connection: Any = None
        self.events: asyncio.Task[None] | None = None

    async def start(self) -> None:
        settings: Any = {"reconnect": {"max_attempts": 5, "max_reconnects": 1000},
                         "output_modality": "text"}
        self.connection = await self.stack.enter_async_context(self.model.connect(
            messages=[], model_settings=settings,
            model_request_parameters=ModelRequestParameters()))
        self.events = asyncio.get_running_loop().create_task(_drain(self.connection))

    async def ready(self, emu: LiveEmulator) -> None:
        await emu.wait_connections(1)
        await emu.connections[0].setup_sent.wait()

    async def send_audio(self, data: bytes) -> None:
        with contextlib.suppress(Exception):  # lost while reconnecting: counted at the emulator
            await self.connection.send(BinaryAudio(data=data, media_type="audio/pcm"))

    async def send_text(self, text: str) -> None:
        with contextlib.suppress(Exception):
            await self.connection.send(text)

    async def stop(self) -> None:
        if self.events is not None:
            self.events.cancel()
            await asyncio.gather(self.events, return_exceptions=True)
        await self.stack.aclose()


async def _drain(connection: Any) -> None:
    async for _ in connection:
        pass
