"""LiveKit Agents' Google realtime plugin without a room: `RealtimeModel.session()` fed with
in-memory `rtc.AudioFrame`s (`push_audio`) and text turns through
`generate_reply(instructions=)`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from google.genai import types
from livekit import rtc
from livekit.plugins.google.realtime import RealtimeModel

from ...emulator import LiveEmulator
from ..peers import SAMPLE_RATE, Load

DIST = "livekit-agents"
#: a 3.x model name: LiveKit then sends a text turn as the user's own (2.5 names get a model turn
#: and a "." placeholder, which would hide the turn's identity from the count)
MODEL = "gemini-3.1-flash-live-preview"


class Driver:
    def __init__(self, load: Load) -> None:
        self.model = RealtimeModel(model=MODEL, api_key=os.environ["GOOGLE_API_KEY"],
                                   modalities=[types.Modality.TEXT])
        self.session: Any = None

    async def start(self) -> None:
        self.session = self.model.session()

    async def ready(self, emu: LiveEmulator) -> None:
        while self.session._active_session is None:  # noqa: ASYNC110 (no event offered)
            await asyncio.sleep(0.01)

    async def send_audio(self, data: bytes) -> None:
        samples = len(data) // 2
        self.session.push_audio(rtc.AudioFrame(data, SAMPLE_RATE, 1, samples))

    async def send_text(self, text: str) -> None:
        reply = self.session.generate_reply(instructions=text)
        reply.add_done_callback(_consume)

    async def stop(self) -> None:
        await self.session.aclose()
        await self.model.aclose()


def _consume(future: asyncio.Future[Any]) -> None:
    """A reply that never started is counted at the emulator; its error is not the driver's."""
    with contextlib.suppress(BaseException):
        future.exception()
