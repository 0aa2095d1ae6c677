"""A handle processed late must not count input written meanwhile as covered: the event loop
runs late, or the application is busy with a message and nobody reads for a while."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from google.genai import types

from statemachine.aio.lag import LagMonitor
from statemachine.emulator import EmulatorSettings, LiveEmulator

from .app import SCALE, start

PCM = "audio/pcm;rate=16000"


async def test_the_monitor_sees_a_blocked_loop_and_stops_when_released() -> None:
    loop = asyncio.get_running_loop()
    monitor = LagMonitor(loop)
    monitor.acquire()
    await asyncio.sleep(0.05)
    time.sleep(0.12)  # noqa: ASYNC251  # the loop is blocked on purpose: nothing runs
    assert monitor.lag() >= 0.08
    assert monitor.arrived() <= loop.time() - 0.08  # bytes seen now may have waited that long
    await asyncio.sleep(0.03)
    assert monitor.recent >= 0.07  # remembered, decaying
    before = loop.time()
    assert monitor.arrived() >= before  # on time again: no wait assumed
    monitor.release()
    assert monitor._handle is None and monitor.lag() == 0.0


@pytest.mark.parametrize("handle_on_setup", [False, True])
async def test_audio_written_while_the_handle_waited_is_replayed_not_lost(
        handle_on_setup: bool) -> None:
    """The application takes 40 ms over the turnComplete message (under the 50 ms after which
    the background reads for it), while audio keeps going out; the handle after the turn waits
    in the queue. Then the connection drops. Audio the server took in after it issued the
    handle is not in the resumed session: it must be replayed, none of it lost. With a handle
    right after setupComplete (as the service sends), that one was queued with setupComplete,
    before the session stamped arrivals: it must not shift the stamps of every later message."""
    settings = EmulatorSettings(time_scale=SCALE, chunk_interval=1.0, track_inputs=True,
                                handle_on_setup=handle_on_setup)
    async with LiveEmulator(settings) as emu:
        app = await start(emu)
        app._task.cancel()  # this test reads itself, slowly
        sent: list[bytes] = []
        stop = asyncio.Event()

        async def talk() -> None:
            n = 0
            while not stop.is_set():
                data = n.to_bytes(4, "big") + bytes(636)
                sent.append(data)
                await app.session.send_realtime_input(
                    audio=types.Blob(data=data, mime_type=PCM))
                n += 1
                await asyncio.sleep(0.004)

        talker = asyncio.get_running_loop().create_task(talk())
        await app.session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="hello")]),
            turn_complete=True)
        async with asyncio.timeout(20):
            async for message in app.session.receive():
                if message.server_content and message.server_content.turn_complete:
                    await asyncio.sleep(0.04)  # busy: the handle waits in the queue
                    break
            handles = app.session.core.counters.confirmed
            async for message in app.session.receive():
                if message.session_resumption_update or \
                        app.session.core.counters.confirmed > handles:
                    break
        emu.connections[-1].drop()
        await app.wait_until(lambda: app.session.core.counters.resumes >= 1, within=20)
        await asyncio.sleep(0.1)  # audio goes on after the resume too
        stop.set()
        await talker
        await app.session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="done")]),
            turn_complete=True)
        async with asyncio.timeout(20):
            async for message in app.session.receive():
                if message.server_content and message.server_content.turn_complete:
                    break
        consumed = Counter(c for c in emu.sessions[-1].context.consumed if c.startswith("a:"))
        await app.session.close()
    missing = [d[:4].hex() for d in sent if consumed[f"a:{d[:8].hex()}"] == 0]
    assert not missing, (len(missing), missing[:5])


async def test_a_handle_queued_with_setup_complete_does_not_shift_the_arrival_stamps() -> None:
    """The service's first handle comes right after setupComplete and is queued before
    `connect()` returns, so before the session stamps arrivals. It gets the time stamping began
    (it arrived before); each message after it keeps its own stamp. Left unstamped, it took the
    next message's stamp and every later message its successor's: a handle seemed to have
    waited less than it had, and audio written meanwhile counted as covered (lost at the next
    resume: 276 chunks in a saturated 300-session fleet)."""
    from statemachine import websocket_args
    from statemachine.aio import sdk

    loop = asyncio.get_running_loop()
    async with LiveEmulator(EmulatorSettings()) as emu:
        client = emu.client(**websocket_args())
        config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT],
                                         session_resumption=types.SessionResumptionConfig())
        async with client.aio.live.connect(model="gemini-live-2.5-flash-preview",
                                           config=config) as live:
            assert len(live._ws.recv_messages.frames.queue) == 1  # the handle, with setup
            stamped: list[float] = []
            more = asyncio.Event()

            def clock() -> float:
                stamped.append(loop.time())
                if len(stamped) > 1:  # a message arrived after stamping began
                    more.set()
                return stamped[-1]

            arrived = sdk.stamp_arrivals(live, clock)
            began = loop.time()
            await live.send_client_content(
                turns={"role": "user", "parts": [{"text": "hi"}]}, turn_complete=True)
            async with asyncio.timeout(10):  # the reply arrives before the handle is read
                await more.wait()
            first = await sdk.receive_one(live)
            assert first.session_resumption_update is not None
            stamp = arrived()
            assert stamp is not None and stamp <= began, "the queued handle took a later stamp"
            await sdk.receive_one(live)
            stamp = arrived()
            assert stamp is not None and stamp > began
            await sdk.close(live, within=2)
