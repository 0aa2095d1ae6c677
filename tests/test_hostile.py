"""A hostile service and a careless application: a server that stops reading, a second reader,
a reader cancelled by a timeout during a rotation. The session goes on; nothing hangs. Real SDK
against the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import os

from statemachine import LocalMisuse
from statemachine.emulator import EmulatorSettings, LiveEmulator

from .app import FAST_ROTATION, fast_policy, start

N = 64
#: 256 KiB of noise each (incompressible: permessage-deflate would shrink a pattern to nothing);
#: with the server's window closed the client's buffers fill after a dozen
CHUNK = os.urandom(262_144)


async def test_a_server_that_stops_reading_does_not_hold_the_rotation() -> None:
    """The server stops reading and the application's sends back up. The goAway rotation still
    happens, the backed-up input is replayed on the new connection, and close() returns."""
    settings = EmulatorSettings(time_scale=0.01, chunk_interval=1.0, track_inputs=True)
    async with LiveEmulator(settings) as emu:
        app = await start(emu, fast_policy())
        await app.ask("hello")
        old = emu.connections[-1]
        old.stop_reading()
        for i in range(N):
            await app.session.send_realtime_input(
                audio={"data": bytes([i]) + b"\x01\x02" * 4 + CHUNK,
                       "mime_type": "audio/pcm;rate=16000"})
        await app.wait_until(lambda: any(  # the writer is blocked now
            c.writer is not None and not c.outbox.empty() for c in app.session._conns.values()),
            within=20)
        await old.go_away(30)
        await app.wait_until(lambda: app.session.core.counters.rotations >= 1, within=20)
        await app.wait_until(lambda: app.session.state == "streaming", within=20)
        assert emu.connections[-1] is not old
        consumed = emu.sessions[-1].context.consumed
        await app.wait_until(
            lambda: all(f"a:{bytes([i]).hex()}0102" in "".join(consumed) for i in range(N)),
            within=20)
        assert "hello" in await app.ask("and now?")
        async with asyncio.timeout(10):  # bounded: it used to take 28 s
            await app.stop()


async def test_a_second_reader_gets_local_misuse_and_the_first_goes_on(
        slow_emu: LiveEmulator) -> None:
    """A second task iterating receive() while the first waits in it gets LocalMisuse; the
    session and the first reader are untouched."""
    app = await start(slow_emu)
    await app.ask("one")

    async def second() -> None:
        async for _ in app.session.receive():
            pass

    await asyncio.sleep(0)  # the application's reader is waiting in receive()
    try:
        async with asyncio.timeout(5):
            await second()
    except LocalMisuse as exc:
        assert "another task" in str(exc)
    else:
        raise AssertionError("a second concurrent receive() was allowed")
    assert "one" in await app.ask("two")
    assert app.error is None
    await app.stop()


async def test_a_reader_cancelled_by_timeouts_during_rotations_does_not_stall_them() -> None:
    """The application wraps receive() in a short asyncio.timeout again and again while the
    connection rotates: every rotation completes (actions are never left half-performed)."""
    async with LiveEmulator(FAST_ROTATION) as emu:
        from .app import open_session

        session = await open_session(emu, fast_policy()).__aenter__()
        replies = 0
        async with asyncio.timeout(60):
            while session.core.counters.rotations < 4:
                await session.send_client_content(
                    turns={"role": "user", "parts": [{"text": f"t{replies}"}]},
                    turn_complete=True)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.003):
                        async for message in session.receive():
                            if message.server_content and message.server_content.turn_complete:
                                replies += 1
        await asyncio.sleep(0)
        assert session.state in ("streaming", "draining", "resuming")
        assert session.core.counters.resumes >= 4 or session.state == "resuming"
        await session.close()

