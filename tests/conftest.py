"""Shared fixtures: a running emulator on a free port of 127.0.0.1, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from statemachine.emulator import EmulatorSettings, LiveEmulator

#: 1 emulated second = 10 ms: a 10-minute connection lasts 6 s, a goAway lead of 50 s is 0.5 s.
FAST = 0.01


@pytest.fixture
async def emu() -> AsyncIterator[LiveEmulator]:
    async with LiveEmulator(EmulatorSettings(time_scale=FAST)) as emulator:
        yield emulator


@pytest.fixture
async def slow_emu() -> AsyncIterator[LiveEmulator]:
    """Connections that last long enough (60 s) not to rotate during a test."""
    async with LiveEmulator(EmulatorSettings(time_scale=0.01, chunk_interval=1.0)) as emulator:
        yield emulator
