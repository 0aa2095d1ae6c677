"""The public test helpers: `capture()` and `CoreDriver` (statemachine.testing)."""

from __future__ import annotations

import statemachine
from statemachine import Resumed, State
from statemachine.core.actions import OpenConnection
from statemachine.core.events import Timer
from statemachine.emulator import EmulatorSettings, LiveEmulator
from statemachine.testing import CoreDriver, Trace, capture

from .sdk import MODEL


def test_core_driver_rotates_at_the_safe_point_after_a_go_away() -> None:
    """The documented way to drive the core: a goAway, then a turn and a handle, rotate."""
    d = CoreDriver()
    d.connect()
    d.setup_complete()
    d.model_output("part of a reply")
    d.go_away(time_left=30.0)
    assert d.state is State.DRAINING
    d.handle()
    assert d.state is State.RESUMING
    assert [a.handle for a in d.actions if isinstance(a, OpenConnection)] == [None, "h-1"]
    d.setup_complete()
    assert d.state is State.STREAMING
    assert [n.generation for n in d.notices(Resumed)] == [2]
    assert ("safe_point", "draining", "resuming") in d.trace.transitions()


def test_core_driver_advance_fires_due_timers_in_order() -> None:
    """`advance` fires the rotation timer at the goAway deadline minus the margin."""
    d = CoreDriver()
    d.connect()
    d.setup_complete()
    d.resumption_update("h-mid")
    d.model_output()  # a reply in flight: no safe point
    d.go_away(time_left=10.0)
    assert Timer.ROTATE in d.timers
    d.advance(5.0)
    assert d.state is State.DRAINING
    d.advance(10.0)
    assert d.state is State.RESUMING
    assert ("rotation_deadline", "draining", "resuming") in d.trace.transitions()


async def test_capture_collects_every_session_made_inside_it() -> None:
    """Sessions created inside `capture()` feed it, beside their own hooks; none after it."""
    own = Trace()
    async with LiveEmulator(EmulatorSettings(time_scale=0.01)) as emu:
        client = emu.client()
        with capture() as trace:
            async with statemachine.connect(client, model=MODEL, **own.hooks()) as session:
                await session.send_client_content(turns="hi", turn_complete=True)
                async for message in session.receive():
                    if message.server_content and message.server_content.turn_complete:
                        break
        async with statemachine.connect(client, model=MODEL) as later:
            assert later.state == "streaming"
    assert ("setup_complete", "connecting", "streaming") in trace.transitions()
    assert len(trace.sessions()) == 1
    assert trace.records == own.records
    assert [type(n) for n in trace.notices] == [type(n) for n in own.notices]
    assert trace.notices_of(statemachine.Ended)
