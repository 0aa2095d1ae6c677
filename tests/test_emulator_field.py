"""Field behaviours of today's service, each switched on in EmulatorSettings; ephemeral tokens;
and a client whose policy runs on the emulator's clock."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from google.genai import errors, types
from websockets.exceptions import InvalidStatus

import statemachine
from statemachine.core.actions import ReplyInterrupted
from statemachine.emulator import EmulatorSettings, LiveEmulator
from statemachine.emulator.wire import (
    CLOSE_CREDITS,
    CLOSE_DEADLINE,
    CLOSE_HARD_LIMIT,
    CLOSE_IDLE,
    CLOSE_QUOTA,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOKEN_USED,
)

from .conftest import FAST
from .sdk import MODEL, collect, is_handle, reply_text, text_config, turn_complete, user

RESUMABLE = text_config(session_resumption=types.SessionResumptionConfig())


def resume(handle: str) -> types.LiveConnectConfig:
    return text_config(session_resumption=types.SessionResumptionConfig(handle=handle))


async def closed(session: object) -> errors.APIError:
    with pytest.raises(errors.APIError) as err:
        await collect(session, lambda m: False)  # type: ignore[arg-type]
    return err.value


async def test_idle_connection_is_hung_up() -> None:
    """idle_timeout: no client message for that long, and the service hangs up (1011, idle)."""
    async with LiveEmulator(EmulatorSettings(time_scale=FAST, idle_timeout=30.0)) as emu, \
            emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_client_content(turns=user("hi"), turn_complete=True)
        await collect(session, turn_complete)
        err = await closed(session)
    assert (err.code, err.details) == (1011, CLOSE_IDLE)
    assert emu.connections[0].closed_at is not None


@pytest.mark.parametrize("ends_session", [False, True])
async def test_hard_close_near_one_hour_even_with_compression(ends_session: bool) -> None:
    """hard_close_after: the session's connections close with 1011 and a reason that is not the
    deadline's, compression or not; resuming works unless hard_close_ends_session."""
    settings = EmulatorSettings(time_scale=FAST, hard_close_after=40.0,
                                hard_close_ends_session=ends_session)
    compression = types.ContextWindowCompressionConfig(
        trigger_tokens=1000, sliding_window=types.SlidingWindow(target_tokens=500))
    config = text_config(session_resumption=types.SessionResumptionConfig(),
                         context_window_compression=compression)
    async with LiveEmulator(settings) as emu:
        client = emu.client()
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            handle = (await collect(session, is_handle))[-1].session_resumption_update.new_handle  # type: ignore[union-attr]
            err = await closed(session)
        assert (err.code, err.details) == (1011, CLOSE_HARD_LIMIT) and err.details != CLOSE_DEADLINE
        if ends_session:
            with pytest.raises(errors.APIError) as refused:
                async with client.aio.live.connect(model=MODEL, config=resume(handle or "")):
                    pass
            assert refused.value.code == 1007
        else:
            async with client.aio.live.connect(model=MODEL, config=resume(handle or "")) as s:
                await s.send_client_content(turns=user("still there?"), turn_complete=True)
                assert reply_text(await collect(s, turn_complete))


async def test_go_away_right_after_connect_with_long_time_left() -> None:
    """go_away_on_connect: a goAway comes first thing, with that timeLeft; then the deadline."""
    async with LiveEmulator(EmulatorSettings(time_scale=FAST, go_away_on_connect=30.0)) as emu, \
            emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        msgs = await collect(session, lambda m: m.go_away is not None)
        err = await closed(session)
    assert len(msgs) == 1 and msgs[0].go_away.time_left == "0.300s"  # type: ignore[union-attr]
    assert (err.code, err.details) == (1011, CLOSE_DEADLINE)


@pytest.mark.parametrize(("kind", "reason"), [("quota", CLOSE_QUOTA), ("credits", CLOSE_CREDITS)])
async def test_quota_and_credits_closes_are_told_apart(emu: LiveEmulator, kind: str,
                                                       reason: str) -> None:
    """exhausted: new connections close with 1011 and a reason naming quota or credits; a live
    connection can be exhausted too."""
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await emu.connections[0].exhaust(kind)
        err = await closed(session)
    assert (err.code, err.details) == (1011, reason)
    emu.settings = EmulatorSettings(time_scale=FAST, exhausted=kind)
    with pytest.raises(errors.APIError) as refused:
        async with emu.client().aio.live.connect(model=MODEL, config=text_config()):
            pass
    assert (refused.value.code, refused.value.details) == (1011, reason)
    assert len({CLOSE_QUOTA, CLOSE_CREDITS, CLOSE_DEADLINE}) == 3


async def test_ephemeral_token_uses_and_expiry(emu: LiveEmulator) -> None:
    """A token (Authorization: Token auth_tokens/... on the constrained path) starts `uses` new
    sessions; resuming spends no use; its expiry ends the connection, and then no resume."""
    warnings.simplefilter("ignore")  # the SDK flags ephemeral tokens as experimental
    token = emu.mint_token(expire_in=3600.0, uses=1)
    client = emu.client(api_key=token)
    async with client.aio.live.connect(model=MODEL, config=RESUMABLE) as session:
        handle = (await collect(session, is_handle))[-1].session_resumption_update.new_handle  # type: ignore[union-attr]
    conn = emu.connections[0]
    assert conn.path.endswith("BidiGenerateContentConstrained") and conn.token is not None
    with pytest.raises(errors.APIError) as used:
        async with client.aio.live.connect(model=MODEL, config=RESUMABLE):
            pass
    assert (used.value.code, used.value.details) == (1008, CLOSE_TOKEN_USED)
    async with client.aio.live.connect(model=MODEL, config=resume(handle or "")) as session:
        await session.send_client_content(turns=user("resumed"), turn_complete=True)
        await collect(session, turn_complete)
        await emu.expire_token(token)
        err = await closed(session)
    assert (err.code, err.details) == (1008, CLOSE_TOKEN_EXPIRED)
    assert emu.connections[2].resumed
    with pytest.raises(InvalidStatus) as refused:
        async with client.aio.live.connect(model=MODEL, config=resume(handle or "")):
            pass
    assert refused.value.response.status_code == 401
    wrong = emu.client(api_key="auth_tokens/not-minted")
    with pytest.raises(InvalidStatus):
        async with wrong.aio.live.connect(model=MODEL, config=text_config()):
            pass


async def test_ephemeral_token_expiry_time_ends_a_resumable_connection(emu: LiveEmulator) -> None:
    """The token's expire_time closes its connection when it comes, resumable or not."""
    warnings.simplefilter("ignore")
    token = emu.mint_token(expire_in=200.0)  # 2 s at this scale
    async with emu.client(api_key=token).aio.live.connect(model=MODEL, config=RESUMABLE) as s:
        err = await closed(s)
    assert (err.code, err.details) == (1008, CLOSE_TOKEN_EXPIRED)


async def test_emulator_connect_plans_on_the_emulator_clock() -> None:
    """emu.connect gives the session the default policy on the emulator's clock: at
    time_scale=0.005 it rotates at the goAway without cutting the reply in progress (the
    default Policy() forces every rotation at the deadline, as goAway notices are shorter than
    its margin)."""
    settings = EmulatorSettings(time_scale=0.005, connection_lifetime=200.0, go_away_lead=100.0,
                                chunk_interval=40.0)
    notices: list[object] = []
    async with LiveEmulator(settings) as emu:
        assert emu.policy().limits.go_away_margin == pytest.approx(2.0 * 0.005)
        async with emu.connect(model=MODEL, config=text_config(),
                               on_notice=notices.append, audit=lambda r: None) as session:
            await session.send_client_content(turns=user("a long answer"), turn_complete=True)
            async with asyncio.timeout(30):
                await emu.wait_connections(2)
                async for message in session.receive():
                    if turn_complete(message):
                        break
    assert not [n for n in notices if isinstance(n, ReplyInterrupted)]
    assert not emu.connections[0].cut_reply
    assert isinstance(session, statemachine.LiveSession)



async def test_a_bare_connect_to_a_scaled_emulator_plans_on_its_clock() -> None:
    """statemachine.connect(emu.client(), ...) with no policy: the client carries the
    emulator's time scale, so the default policy follows it and the rotation cuts no reply
    (with an unscaled default every rotation was forced at the deadline)."""
    settings = EmulatorSettings(time_scale=0.005, connection_lifetime=200.0, go_away_lead=100.0,
                                chunk_interval=40.0)
    notices: list[object] = []
    async with LiveEmulator(settings) as emu, statemachine.connect(
            emu.client(**statemachine.websocket_args()), model=MODEL, config=text_config(),
            on_notice=notices.append, audit=lambda r: None) as session:
        assert session.core.policy.limits.go_away_margin == pytest.approx(2.0 * 0.005)
        await session.send_client_content(turns=user("a long answer"), turn_complete=True)
        async with asyncio.timeout(30):
            await emu.wait_connections(2)
            async for message in session.receive():
                if turn_complete(message):
                    break
    assert not [n for n in notices if isinstance(n, ReplyInterrupted)]
    assert not emu.connections[0].cut_reply
