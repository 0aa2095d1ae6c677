"""Pipecat's `GeminiLiveLLMService` in a pipeline of its own: audio as `InputAudioRawFrame`s, text
as `InputTextRawFrame`s, queued on the pipeline task (no transport)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pipecat.frames.frames import InputAudioRawFrame, InputTextRawFrame, LLMContextFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.google.gemini_live import llm as gemini_live
from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService, GeminiModalities
from pipecat.workers.runner import WorkerRunner

from ...emulator import LiveEmulator
from ..peers import Load
from . import MODEL

DIST = "pipecat-ai"


class Driver:
    def __init__(self, load: Load) -> None:
        # Pipecat forgives a reconnect only after a connection stayed up 10 s; real connections
        # last 10 min. Scaled with the load's short connections, so they count as stable too.
        gemini_live.CONNECTION_ESTABLISHED_THRESHOLD = load.lifetime / 2
        self.llm = GeminiLiveLLMService(
            api_key=os.environ["GOOGLE_API_KEY"],
            # text replies: with audio replies even statemachine.connect repeats a 50 ms chunk
            # now and then (the journal's crossing window; see the report)
            settings=GeminiLiveLLMService.Settings(model=f"models/{MODEL}",
                                                   modalities=GeminiModalities.TEXT))
        self.task = PipelineWorker(Pipeline([self.llm]), enable_rtvi=False,
                                   idle_timeout_secs=None, check_dangling_tasks=False)
        self.runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        self.running: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        self.running = asyncio.get_running_loop().create_task(self.runner.run(self.task))
        # an empty context makes the service ready for realtime input once connected
        await self.task.queue_frame(LLMContextFrame(context=LLMContext()))

    async def ready(self, emu: LiveEmulator) -> None:
        while not (self.llm._session is not None and self.llm._ready_for_realtime_input):  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # the service offers no event for it

    async def send_audio(self, data: bytes) -> None:
        await self.task.queue_frame(
            InputAudioRawFrame(audio=data, sample_rate=16_000, num_channels=1))

    async def send_text(self, text: str) -> None:
        await self.task.queue_frame(InputTextRawFrame(text=text))

    async def stop(self) -> None:
        await self.task.cancel()
        if self.running is not None:
            await asyncio.wait_for(self.running, 30)
