"""Shared fixtures: a running emulator on a free port of 127.0.0.1, stopped after each test."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import attrs
import pytest

from statemachine.emulator import EmulatorSettings, LiveEmulator, server
from statemachine.emulator.profiles import Profile

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


@pytest.fixture(autouse=True)
def _profile_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    """STATEMACHINE_TEST_PROFILE_SWITCHES (JSON): switches of the model's profile for every
    connection the emulator takes (CI turns 3.8's audio-only output off to run the
    text-reading lifecycle tests as 3.8)."""
    switches = os.environ.get("STATEMACHINE_TEST_PROFILE_SWITCHES")
    if not switches:
        return
    extra = json.loads(switches)
    lookup = server.profile_for

    def switched(model: str, extra_models: tuple[str, ...] = ()) -> Profile | None:
        profile = lookup(model, extra_models)
        return attrs.evolve(profile, **extra) if profile is not None else None

    monkeypatch.setattr(server, "profile_for", switched)
