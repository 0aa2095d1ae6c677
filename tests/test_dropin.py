"""A true drop-in: every public method of the installed google-genai `AsyncSession` exists on
`LiveSession` and on the instrumented session with a compatible signature, so the next SDK
release that adds one fails here instead of in a framework; and what the SDK accepts, the
session accepts (several kinds of realtime input in one call, `media=`, the deprecated `send`
and `start_stream` with the SDK's own warnings)."""

from __future__ import annotations

import asyncio
import inspect
import json
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google import genai
from google.genai import types
from google.genai.live import AsyncSession

import statemachine
from statemachine.aio import dropin
from statemachine.aio.instrument import InstrumentedSession
from statemachine.core.actions import InputDropped
from statemachine.emulator import EmulatorSettings, LiveEmulator

from .app import SCALE, fast_policy, start
from .sdk import MODEL, text_config, user

SESSIONS = [statemachine.LiveSession, InstrumentedSession]


def public_methods(cls: type) -> dict[str, Any]:
    return {name: member for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and callable(member)
            and not isinstance(inspect.getattr_static(cls, name), type)}


def flavour(fn: Any) -> str:
    if inspect.isasyncgenfunction(fn):
        return "async generator"
    if inspect.iscoroutinefunction(fn):
        return "coroutine"
    return "function"


@pytest.mark.parametrize("cls", SESSIONS, ids=lambda c: c.__name__)
def test_every_public_method_of_the_installed_sdk_session_is_there(cls: type) -> None:
    """Name, kind (coroutine / async generator), and every parameter of the SDK's: same name,
    kind and default. Ours may only add optional parameters."""
    sdk = public_methods(AsyncSession)
    assert {"send_context_update", "send", "start_stream", "send_realtime_input"} <= set(sdk)
    problems = []
    for name, theirs in sdk.items():
        ours = getattr(cls, name, None)
        if ours is None:
            problems.append(f"{cls.__name__}.{name} is missing")
            continue
        if flavour(ours) != flavour(theirs):
            problems.append(f"{cls.__name__}.{name} is a {flavour(ours)}, the SDK's a "
                            f"{flavour(theirs)}")
        mine = inspect.signature(ours).parameters
        for param in inspect.signature(theirs).parameters.values():
            got = mine.get(param.name)
            if got is None:
                problems.append(f"{cls.__name__}.{name} lacks parameter {param.name!r}")
            elif (got.kind, got.default) != (param.kind, param.default):
                problems.append(f"{cls.__name__}.{name}({param.name}): {got.kind.name} "
                                f"default {got.default!r}, the SDK's {param.kind.name} "
                                f"default {param.default!r}")
        theirs_names = set(inspect.signature(theirs).parameters)
        for extra in set(mine) - theirs_names:
            if mine[extra].default is inspect.Parameter.empty:
                problems.append(f"{cls.__name__}.{name} requires {extra!r}, the SDK does not")
    assert not problems, "\n".join(problems)


class _Capture:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def recv(self, decode: bool = True) -> str:
        await asyncio.sleep(3600)
        return ""


def _sdk_session() -> AsyncSession:
    client = genai.Client(api_key="k")
    return AsyncSession(api_client=client._api_client, websocket=_Capture())  # type: ignore[arg-type]


async def test_deprecation_warnings_are_the_sdks_own() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await _sdk_session().send(input="hi", end_of_turn=True)

        async def nothing() -> AsyncIterator[bytes]:
            return
            yield b""

        async for _ in _sdk_session().start_stream(stream=nothing(), mime_type="audio/pcm"):
            pass
    sdk_texts = [str(w.message) for w in caught if w.category is DeprecationWarning]
    assert sdk_texts == [dropin.SEND_DEPRECATED, dropin.START_STREAM_DEPRECATED]


def realtime_inputs(emu: LiveEmulator) -> list[dict[str, Any]]:
    return [m["realtime_input"] for c in emu.connections for m in c.received
            if "realtime_input" in m]


async def test_several_kinds_and_media_in_one_call_each_journaled() -> None:
    """What the SDK's `send_realtime_input` takes, the session takes, several at once: one
    message, one journal entry per kind, in order; `media=` goes out as the SDK writes it."""
    async with LiveEmulator(EmulatorSettings(time_scale=SCALE, chunk_interval=1.0)) as emu:
        app = await start(emu)
        core = app.session.core
        before = core.counters.inputs
        speech = types.Blob(data=b"\x00\x01" * 160, mime_type="audio/pcm;rate=16000")
        frame = types.Blob(data=b"\xff\xd8jpeg", mime_type="image/jpeg")
        await app.session.send_realtime_input(media=speech)
        await app.session.send_realtime_input(video=frame, text="what is this?")
        assert core.counters.inputs - before == 3
        await app.wait_replies(1)
        sent = realtime_inputs(emu)
        assert [sorted(m) for m in sent] == [["media_chunks"], ["video"], ["text"]]
        assert sent[0]["media_chunks"][0]["mime_type"] == "audio/pcm;rate=16000"
        assert sent[2]["text"] == "what is this?"
        with pytest.raises(statemachine.LocalMisuse):
            await app.session.send_realtime_input()
        await app.stop()


async def test_deprecated_send_and_start_stream_go_through_the_journal() -> None:
    async with LiveEmulator(EmulatorSettings(time_scale=SCALE, chunk_interval=1.0)) as emu:
        app = await start(emu)
        with pytest.warns(DeprecationWarning, match="session.send"):
            await app.session.send(input="hello there", end_of_turn=True)
        assert (await app.wait_replies(1))[0].startswith('Reply 1 to "hello there"')
        with pytest.warns(DeprecationWarning, match="session.send"):
            await app.session.send(input={"media_chunks": [
                {"data": b"\x00" * 320, "mime_type": "audio/pcm;rate=16000"}]})
        await app.stop()

    async with LiveEmulator(EmulatorSettings(time_scale=SCALE, chunk_interval=1.0)) as emu:
        session = await emu.connect(model=MODEL, config=text_config(),
                                    audit=lambda r: None).__aenter__()

        async def speech() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"\x00\x10" * 320

        with pytest.warns(DeprecationWarning, match="start_stream"):
            seen = [m async for m in session.start_stream(stream=speech(),
                                                         mime_type="audio/pcm;rate=16000")]
        assert isinstance(seen, list)
        assert session.core.counters.inputs == 5
        await session.send_client_content(turns=user("done"), turn_complete=True)
        async for message in session.receive():  # in order: the chunks arrived before it
            if message.server_content and message.server_content.turn_complete:
                break
        media = [m for m in realtime_inputs(emu) if "media_chunks" in m]
        assert len(media) == 5
        await session.close()


async def test_instrumented_session_takes_what_frameworks_call() -> None:
    """A framework calling `send_context_update`, `send_realtime_input` with several kinds, or
    the deprecated `send` under instrument() gets no AttributeError: each goes out journaled."""
    statemachine.instrument(policy=fast_policy(), audit=lambda record: None)
    try:
        async with LiveEmulator(EmulatorSettings(time_scale=SCALE, chunk_interval=1.0)) as emu:
            client = emu.client()
            async with client.aio.live.connect(model=MODEL, config=text_config()) as session:
                assert isinstance(session, InstrumentedSession)
                await session.send_context_update(system_instruction="Answer in French.")
                await session.send_realtime_input(activity_start=None, text="bonjour")
                with pytest.warns(DeprecationWarning):
                    await session.send(input=types.LiveClientContent(
                        turns=[user("salut")], turn_complete=True))
                replies = 0
                async for message in session.receive():
                    if message.server_content and message.server_content.turn_complete:
                        replies += 1
                        if replies == 2:
                            break
            updates = [m for c in emu.connections for m in c.received if "context_update" in m]
            assert len(updates) == 1
            assert emu.sessions[-1].context.system == "Answer in French."
    finally:
        statemachine.uninstrument()


async def test_a_refused_context_update_is_reported_not_raised_later() -> None:
    """A payload the SDK cannot serialise is refused once, reported dropped with the SDK's
    reason, and the session goes on."""
    async with LiveEmulator(EmulatorSettings(time_scale=SCALE, chunk_interval=1.0)) as emu:
        app = await start(emu)
        await app.session.send_context_update(tools=[object()])  # type: ignore[list-item]
        await app.wait_until(lambda: app.noticed(InputDropped))
        dropped = [n for n in app.notices if isinstance(n, InputDropped)]
        assert dropped[0].kind == "context_update" and "google-genai refused" in dropped[0].reason
        assert (await app.ask("still there?")).startswith("Reply 1")
        assert not [m for c in emu.connections for m in c.received if "context_update" in m]
        await app.stop()


def test_wire_text_of_an_update_is_the_sdks() -> None:
    """The emulator reads what the SDK writes for `send_context_update`."""
    session = _sdk_session()
    asyncio.run(session.send_context_update(system_instruction="x", tools=[]))
    sent = json.loads(session._ws.sent[0])  # type: ignore[attr-defined]
    assert set(sent) == {"contextUpdate"}
