"""Helpers for driving the raw google-genai SDK in tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from google.genai import types
from google.genai.live import AsyncSession

#: the model the lifecycle tests talk to: its name picks the emulator's profile (2.5: handles at
#: turn boundaries only; 3.x: mid-turn handles, interactionStatus). CI runs them with both.
MODEL = os.environ.get("STATEMACHINE_TEST_MODEL", "gemini-live-2.5-flash-preview")
Msg = types.LiveServerMessage


def text_config(**kw: object) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], **kw)  # type: ignore[arg-type]


def user(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


async def collect(
    session: AsyncSession, until: Callable[[Msg], bool], within: float = 10.0
) -> list[Msg]:
    """Receive across turns (re-entering the SDK's per-turn receive) until `until` holds."""
    out: list[Msg] = []
    async with asyncio.timeout(within):
        while True:
            async for message in session.receive():
                out.append(message)
                if until(message):
                    return out


def is_handle(message: Msg) -> bool:
    update = message.session_resumption_update
    return bool(update and update.resumable and update.new_handle)


def turn_complete(message: Msg) -> bool:
    return bool(message.server_content and message.server_content.turn_complete)


def reply_text(messages: list[Msg]) -> str:
    parts = []
    for m in messages:
        if m.server_content and m.server_content.model_turn:
            parts += [p.text or "" for p in m.server_content.model_turn.parts or []]
    return "".join(parts)
