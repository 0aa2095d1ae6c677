"""Errors say what actually happened, with the cause chained, and local errors are never
retried as server faults (real SDK against the emulator)."""

from __future__ import annotations

import itertools

import attrs
import pytest

import statemachine
from statemachine import InputDropped, RemoteProtocolError, SessionTerminated, SettingsError
from statemachine.emulator import ConnectionPlan, LiveEmulator

from .app import App, fast_policy, open_session, start


async def test_empty_model_is_refused_when_the_session_is_made(slow_emu: LiveEmulator) -> None:
    """model="" is refused at once with the SDK's own reason chained, before any connection
    (it used to be retried for 12 s as a malformed server frame)."""
    with pytest.raises(SettingsError, match="model=''") as err:
        statemachine.connect(slow_emu.client(), model="")
    assert isinstance(err.value.__cause__, ValueError)
    assert not slow_emu.connections


async def test_unknown_model_names_the_servers_text(slow_emu: LiveEmulator) -> None:
    """The service's refusal text is in the exception, not only in the audit record; the
    cause is the SDK's error."""
    slow_emu.unknown_models.add("gemini-none")
    with pytest.raises(SessionTerminated) as err:
        async with open_session(slow_emu, model="gemini-none"):
            pass
    assert "gemini-none" in str(err.value) and "check the model name" in str(err.value)
    assert err.value.__cause__ is not None
    assert len(slow_emu.connections) == 1


async def test_network_failure_says_what_failed(slow_emu: LiveEmulator) -> None:
    """Nothing listens at the base URL: the ending names the network error, chained, after the
    retry budget (a network failure may be transient, so it is retried)."""
    from google import genai
    from google.genai import types

    from .redis_server import free_port

    client = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=f"https://127.0.0.1:{free_port()}", async_client_args={"proxy": None}))
    policy = attrs.evolve(fast_policy(), retry=statemachine.RetryPolicy(
        per_drop_attempts=2, base_delay=0.01, max_delay=0.02))
    with pytest.raises(SessionTerminated) as err:
        async with statemachine.connect(client, model="gemini-live-2.5-flash-preview",
                                        policy=policy, audit=lambda r: None):
            pass
    assert "ConnectionRefusedError" in str(err.value)
    assert isinstance(err.value.__cause__, OSError)


async def test_a_server_that_keeps_sending_garbage_ends_with_remote_protocol_error(
        slow_emu: LiveEmulator) -> None:
    """Frames that are not JSON on every connection: resumed while the budget lasts, then a
    RemoteProtocolError (a SessionTerminated) chained to the SDK's parse error; never a hang
    and never an AttributeError from inside the library."""
    policy = attrs.evolve(fast_policy(), retry=statemachine.RetryPolicy(
        per_drop_attempts=2, per_session_attempts=4, base_delay=0.01, max_delay=0.02))
    slow_emu.plan(*[ConnectionPlan(garbage_after=0.0) for _ in range(10)])
    session = await open_session(slow_emu, policy).__aenter__()
    with pytest.raises(RemoteProtocolError) as err:
        async for _ in session.receive():
            pass
    assert isinstance(err.value, SessionTerminated)
    assert "the server sent a frame the protocol does not allow" in str(err.value)
    assert isinstance(err.value.__cause__, ValueError)
    assert len(slow_emu.connections) <= 5  # bounded by the budget
    await session.close()


async def test_a_server_that_closes_right_after_setup_is_not_hammered() -> None:
    """Setup accepted, then a clean 1000 close at once, on every connection: every reconnect
    waits, the wait grows, and the budget ends it with a message that matches the policy (it
    used to be 61 attempts in one second: setupComplete reset the count)."""
    from statemachine.emulator import EmulatorSettings, LiveEmulator

    policy = attrs.evolve(fast_policy(), retry=statemachine.RetryPolicy(
        per_drop_attempts=5, per_session_attempts=8, base_delay=0.05, max_delay=0.4, jitter=0))
    async with LiveEmulator(EmulatorSettings(time_scale=0.01, chunk_interval=1.0)) as emu:
        emu.plan(*[ConnectionPlan(close_after=0.0, close_code=1000, close_reason="")
                   for _ in range(20)])
        session = await open_session(emu, policy).__aenter__()
        with pytest.raises(SessionTerminated) as err:
            async for _ in session.receive():
                pass
        await session.close()
    opened = [c.opened_at for c in emu.connections]
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    assert len(opened) <= 9
    assert all(gap >= 0.04 for gap in gaps[1:]), gaps  # every reconnect after the first waits
    assert gaps[3] > gaps[1]  # and the wait grows
    assert "retry budget" in str(err.value)


async def test_an_input_the_sdk_refuses_is_reported_dropped_and_the_session_goes_on(
        slow_emu: LiveEmulator) -> None:
    """google-genai refuses a payload it cannot serialise (here audio whose data is not bytes,
    and a turn that is not content). Each is dropped with the SDK's reason, a turn in-band as
    well, and the inputs after them go out as before: nothing waits behind a refused send."""
    app = await start(slow_emu)
    await app.session.send_realtime_input(audio={"data": 5, "mime_type": "audio/pcm"})
    await app.session.send_client_content(turns=12345, turn_complete=True)  # type: ignore[arg-type]
    await app.wait_until(lambda: len(dropped(app)) == 2)
    audio, turn = dropped(app)
    assert audio.kind == "audio" and not audio.turn and "google-genai refused" in audio.reason
    assert turn.kind == "content" and turn.turn
    assert not app.session.core.journal.has_turn_input()
    assert "hello" in await app.ask("hello")
    assert any(m.server_content and m.server_content.interrupted for m in app.messages)
    assert app.session.core.counters.dropped == 2
    await app.stop()


def dropped(app: App) -> list[InputDropped]:
    return [n for n in app.notices if isinstance(n, InputDropped)]
