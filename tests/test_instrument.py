"""statemachine.instrument(): a plain google-genai Live session, opened the way frameworks open
it, becomes a lifecycle-managed one that looks like a single endless connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google.genai import errors, types
from google.genai.live import AsyncLive, AsyncSession

import statemachine
from statemachine.aio.instrument import InstrumentedSession
from statemachine.emulator import LiveEmulator

from .app import FAST_ROTATION, fast_policy
from .sdk import MODEL, text_config, user


@pytest.fixture
async def emu() -> AsyncIterator[LiveEmulator]:
    async with LiveEmulator(FAST_ROTATION) as emulator:
        yield emulator


@pytest.fixture
def instrumented() -> AsyncIterator[None]:
    statemachine.instrument(policy=fast_policy(), audit=lambda record: None)
    yield
    statemachine.uninstrument()


def config() -> types.LiveConnectConfig:
    # what a framework sends: its own resumption config, which the lifecycle now owns
    return text_config(session_resumption=types.SessionResumptionConfig())


async def turns(session: AsyncSession | InstrumentedSession, count: int,
                first: int = 0) -> list[str]:
    """The SDK habit: one receive() per turn, a text turn each time; the replies' text. A
    managed session never shows goAway or a resumption update."""
    managed = isinstance(session, InstrumentedSession)
    replies = []
    for i in range(first, first + count):
        await session.send_client_content(turns=user(f"turn {i}"), turn_complete=True)
        text = ""
        async for message in session.receive():
            if managed:
                assert message.go_away is None and message.session_resumption_update is None
            sc = message.server_content
            if sc and sc.model_turn:
                text += "".join(p.text or "" for p in sc.model_turn.parts or [])
        replies.append(text)
    return replies


async def test_connect_is_managed_across_rotations(emu: LiveEmulator, instrumented: None) -> None:
    """Through several goAway rotations the application never sees goAway or a handle, every
    turn is answered once, and the model remembers the earlier turns."""
    client = emu.client()
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        assert isinstance(session, InstrumentedSession)
        replies = await turns(session, 6)
        while len(emu.connections) < 3:  # turns until there were two rotations
            replies += await turns(session, 1, first=len(replies))
        last = (await turns(session, 1, first=len(replies)))[0]
    assert len(emu.connections) >= 3
    assert [r.split(" to ")[0] for r in replies] == [f"Reply {i + 1}" for i in range(len(replies))]
    assert f'"turn {len(replies) - 1}"' in last  # the context survived the rotations
    assert all(c.done.is_set() for c in emu.connections)  # close() ended every connection
    assert len(emu.sessions) == 1


async def test_close_ends_the_session_and_receive_raises_like_the_sdk(
        emu: LiveEmulator, instrumented: None) -> None:
    client = emu.client()
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        await turns(session, 1)
        await session.close()
        assert session.lifecycle.state == "terminated"
        with pytest.raises(errors.APIError) as raised:
            await session._receive()
        assert raised.value.code == 1000


async def test_framework_handle_is_resumed(emu: LiveEmulator, instrumented: None) -> None:
    """A handle the framework passes in continues that session (its context is there)."""
    client = emu.client()
    statemachine.uninstrument()
    async with client.aio.live.connect(model=MODEL, config=config()) as raw:
        await turns(raw, 1)
    handle = emu.issued_handles[-1]
    statemachine.instrument(policy=fast_policy(), audit=lambda record: None)
    resume = text_config(session_resumption=types.SessionResumptionConfig(handle=handle))
    async with client.aio.live.connect(model=MODEL, config=resume) as session:
        replies = await turns(session, 1)
    assert '"turn 0"' in replies[0]
    assert len(emu.sessions) == 1


async def test_uninstrument_restores_the_sdk(emu: LiveEmulator) -> None:
    original = AsyncLive.connect
    statemachine.instrument()
    assert AsyncLive.connect is not original
    statemachine.uninstrument()
    assert AsyncLive.connect is original
    async with emu.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        assert isinstance(session, AsyncSession)


async def test_wrapped_client_only(emu: LiveEmulator) -> None:
    """wrap_client manages its own connections and leaves the original client alone."""
    client = emu.client()
    wrapped = statemachine.wrap_client(client, policy=fast_policy(), audit=lambda r: None)
    async with wrapped.aio.live.connect(model=MODEL, config=config()) as session:
        assert isinstance(session, InstrumentedSession)
        await turns(session, 1)
    async with client.aio.live.connect(model=MODEL, config=text_config()) as raw:
        assert isinstance(raw, AsyncSession)
