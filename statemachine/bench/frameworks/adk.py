"""Google ADK's `Runner.run_live` with an in-memory runner: audio through
`LiveRequestQueue.send_realtime`, text turns through `send_content` (no server, no browser)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from google.adk.agents import Agent
from google.adk.agents.run_config import RunConfig
from google.adk.live.live_request_queue import LiveRequestQueue
from google.adk.runners import InMemoryRunner
from google.genai import types

from ...emulator import LiveEmulator
from ..peers import Load
from . import MODEL

DIST = "google-adk"


class Driver:
    def __init__(self, load: Load) -> None:
        agent = Agent(name="peer", model=MODEL, instruction="Answer briefly.")
        self.runner = InMemoryRunner(agent=agent, app_name="peers")
        self.queue = LiveRequestQueue()
        self.events: asyncio.Task[None] | None = None

    async def start(self) -> None:
        session = await self.runner.session_service.create_session(app_name="peers",
                                                                   user_id="user")
        config = RunConfig(response_modalities=[types.Modality.TEXT],
                           session_resumption=types.SessionResumptionConfig())
        stream = self.runner.run_live(user_id="user", session_id=session.id,
                                      live_request_queue=self.queue, run_config=config)
        self.events = asyncio.get_running_loop().create_task(_drain(stream))

    async def ready(self, emu: LiveEmulator) -> None:
        await emu.wait_connections(1)
        await emu.connections[0].setup_sent.wait()

    async def send_audio(self, data: bytes) -> None:
        self.queue.send_realtime(types.Blob(data=data, mime_type="audio/pcm;rate=16000"))

    async def send_text(self, text: str) -> None:
        self.queue.send_content(types.Content(role="user", parts=[types.Part(text=text)]))

    async def stop(self) -> None:
        self.queue.close()
        if self.events is not None:
            with contextlib.suppress(TimeoutError):  # wait_for cancelled it then
                await asyncio.wait_for(self.events, 10)
        await self.runner.close()


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
