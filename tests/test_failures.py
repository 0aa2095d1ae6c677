"""The shell reports what it saw end a connection; the core settles what it was (issue 22).

The shell says which operation was under way (building the request, setting up, receiving),
whether a close frame came and which close frame it sent; the core (core/failures.py,
core/closecodes.py) decides the failure class, the close code (RFC 6455's 1006 for no close
frame) and the words. Each path is driven through the real google-genai against the emulator.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.genai import errors as genai_errors
from google.genai import types
from websockets.asyncio.client import ClientConnection

import statemachine
from statemachine import SessionTerminated
from statemachine.aio import sdk as adapter
from statemachine.core.events import ConnectionLost, Failure, Operation
from statemachine.core.table import State
from statemachine.emulator import ConnectionPlan, LiveEmulator
from statemachine.testing import CoreDriver, Trace

from .app import App, fast_policy, open_session, start
from .sdk import MODEL

TEXT = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])


def lost_events(records: list[Any]) -> list[dict[str, Any]]:
    return [r["cause"] for r in records if r["kind"] == "event" and r["name"] == "connection_lost"]


def lost_transitions(records: list[Any]) -> list[dict[str, Any]]:
    return [r["cause"] for r in records if r["kind"] in ("transition", "rejected")
            and r["name"] in ("connection_lost", "setup_refused")]


# -- the core settles what the shell saw ------------------------------------------------------


def live_driver() -> CoreDriver:
    d = CoreDriver()
    d.connect()
    d.setup_complete()
    d.handle()  # a resumable handle: a connection lost now resumes
    return d


@pytest.mark.parametrize(("operation", "failure", "disposition", "state"), [
    (Operation.REQUEST, "local", "fatal", State.TERMINATED),
    (Operation.SETUP, "malformed", "backoff", State.RESUMING),
    (Operation.RECEIVE, "malformed", "backoff", State.RESUMING),
    (None, "malformed", "backoff", State.RESUMING),
])
def test_the_core_tells_a_refused_request_from_a_malformed_server_frame(
        operation: Operation | None, failure: str, disposition: str, state: State) -> None:
    """google-genai raising on data is the request it was building before any connection, and
    a server message once a connection was made: the operation decides, not the exception."""
    d = live_driver()
    d.feed(ConnectionLost(at=d.tick(), generation=d.gen, failure=Failure.INVALID_DATA,
                          operation=operation, reason="ValueError: bad"))
    event, = lost_events(d.trace.records)
    transition, = lost_transitions(d.trace.records)
    assert event["failure"] == transition["failure"] == failure
    assert event["operation"] == (operation.value if operation else None)
    assert transition["disposition"] == disposition
    assert d.state is state
    prefix = "" if failure == "local" else "malformed server frame: "
    assert transition["reason"] == prefix + "ValueError: bad"


def test_an_unexpected_exception_is_local() -> None:
    d = live_driver()
    d.feed(ConnectionLost(at=d.tick(), generation=d.gen, failure=Failure.UNEXPECTED,
                          operation=Operation.RECEIVE, reason="RuntimeError: what"))
    transition, = lost_transitions(d.trace.records)
    assert transition["failure"] == "local"
    assert transition["reason"] == "unexpected RuntimeError: what"
    assert d.state is State.TERMINATED


@pytest.mark.parametrize(("sent", "sent_reason", "words"), [
    (None, "", "no close frame received"),
    (1009, "frame exceeds limit of 1048576 bytes",
     "no close frame received; the client closed with 1009 (frame exceeds limit of 1048576 "
     "bytes): a server message was over the client's size limit (websockets max_size)"),
    (1011, "keepalive ping timeout",
     "no close frame received; the client closed with 1011 (keepalive ping timeout): the "
     "server did not answer the client's keepalive ping in time"),
])
def test_no_close_frame_is_1006_by_the_core(sent: int | None, sent_reason: str,
                                            words: str) -> None:
    """The shell reports that no close frame came, and the one it sent; the core gives RFC
    6455's 1006 (so old and new logs read alike), words it, and resumes."""
    d = live_driver()
    d.feed(ConnectionLost(at=d.tick(), generation=d.gen, close_received=False, sent_code=sent,
                          sent_reason=sent_reason, operation=Operation.RECEIVE))
    event, = lost_events(d.trace.records)
    transition, = lost_transitions(d.trace.records)
    assert event["code"] == transition["code"] == 1006
    assert event["close_received"] is False and event["sent_code"] == sent
    assert transition["reason"] == words
    assert transition["disposition"] == "resume"
    assert d.state is State.RESUMING


def test_close_in_a_final_state_is_a_no_op() -> None:
    """`Close` is accepted in any state: once the session ended it does nothing and records
    nothing, so the shell feeds it without looking at the state."""
    d = live_driver()
    d.close()
    assert d.state is State.TERMINATED
    records = len(d.trace.records)
    assert d.close() == []
    assert len(d.trace.records) == records
    d2 = live_driver()  # ended by the service, then closed by the application
    d2.lose(1002, "protocol error")
    assert d2.state is State.TERMINATED
    records = len(d2.trace.records)
    assert d2.close() == []
    assert len(d2.trace.records) == records


# -- the real SDK against the emulator ---------------------------------------------------------


async def test_a_drop_reports_no_close_frame_and_the_core_calls_it_1006(
        slow_emu: LiveEmulator) -> None:
    app = await start(slow_emu)
    await app.ask("before")
    slow_emu.connections[-1].drop()
    await app.wait_until(lambda: app.session.core.counters.resumes >= 1)
    event, = lost_events(app.records)
    assert event["close_received"] is False and event["sent_code"] is None
    assert event["operation"] == "receive"
    assert event["code"] == 1006 and event["reason"] == "no close frame received"
    transition, = lost_transitions(app.records)
    assert transition["code"] == 1006 and transition["disposition"] == "resume"
    assert "before" in await app.ask("after")
    await app.stop()


async def test_an_oversized_server_frame_reports_the_close_the_client_sent(
        slow_emu: LiveEmulator) -> None:
    """websockets fails the connection with 1009 and gets no close frame back: the record says
    both (google-genai alone would only say 1006)."""
    app = await start(slow_emu)
    await app.ask("before")
    await slow_emu.connections[-1].send_garbage("oversized")
    await app.wait_until(lambda: app.session.core.counters.resumes >= 1, within=20)
    event, = lost_events(app.records)
    assert event["close_received"] is False
    assert event["sent_code"] == 1009 and "exceeds limit" in event["sent_reason"]
    assert event["code"] == 1006
    assert "size limit" in event["reason"]
    assert "before" in await app.ask("after")
    await app.stop()


async def test_an_unanswered_keepalive_reports_the_1011_the_client_sent(
        slow_emu: LiveEmulator) -> None:
    """A server that stops reading never answers the client's ping: websockets closes with 1011
    and gets no close frame back. The record says both, and the session resumes."""
    keepalive = {"ping_interval": 0.1, "ping_timeout": 0.2, "close_timeout": 0.2}
    trace = Trace()
    client = slow_emu.client(**{**statemachine.websocket_args(), **keepalive})
    async with statemachine.connect(client, model=MODEL, config=TEXT, policy=fast_policy(),
                                    audit=trace.record) as session:
        app = App(session, trace)
        trace.on_change = app.changed
        assert "before" in await app.ask("before")
        slow_emu.connections[-1].stop_reading()
        await app.wait_until(lambda: session.core.counters.resumes >= 1)
        event, = lost_events(trace.records)
        assert event["close_received"] is False
        assert event["sent_code"] == 1011 and "keepalive" in event["sent_reason"]
        assert event["code"] == 1006 and "keepalive ping" in event["reason"]
        assert "before" in await app.ask("after")
        await app.stop()


@pytest.mark.parametrize("reader", ["application", "background"])
async def test_a_malformed_message_on_a_live_connection_is_malformed(
        slow_emu: LiveEmulator, reader: str) -> None:
    app = await start(slow_emu)
    await app.ask("before")
    if reader == "background":  # the application is away: the background reader meets it
        app._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await app._task
    await slow_emu.connections[-1].send_garbage("text")
    await app.wait_until(lambda: app.session.core.counters.resumes >= 1, within=20)
    if reader == "background":
        app.restart_receiving()
    event, = lost_events(app.records)
    assert event["operation"] == "receive" and event["failure"] == "malformed"
    assert event["reason"].startswith("malformed server frame: ValueError")
    assert "before" in await app.ask("after")
    await app.stop()


@pytest.mark.parametrize("kind", ["text", "array"])
async def test_a_malformed_answer_to_the_setup_is_malformed(slow_emu: LiveEmulator,
                                                          kind: str) -> None:
    """The server answers the setup with a frame google-genai cannot read (a ValueError or an
    AttributeError raised inside connect()): the connection was made, so it is the server's
    frame; the session backs off and starts on the next connection."""
    slow_emu.plan(ConnectionPlan(setup_garbage=kind))
    app = await start(slow_emu)
    event, = lost_events(app.records)
    assert event["operation"] == "setup" and event["failure"] == "malformed"
    assert event["during_setup"] is True
    assert event["reason"].startswith("malformed server frame: ")
    transition, = lost_transitions(app.records)
    assert transition["disposition"] == "backoff"
    assert len(slow_emu.connections) == 2
    assert "hello" in await app.ask("hello")
    await app.stop()


#: configs google-genai refuses before it dials: in its own transformers (_transformers.py),
#: and in live.py itself (connect() takes only some http_options)
REFUSED_CONFIGS = {
    "transformer": types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT],
        speech_config=types.SpeechConfig(multi_speaker_voice_config=types.MultiSpeakerVoiceConfig(
            speaker_voice_configs=[]))),
    "connect": types.LiveConnectConfig(response_modalities=[types.Modality.TEXT],
                                       http_options=types.HttpOptions(timeout=5000)),
}


@pytest.mark.parametrize("where", sorted(REFUSED_CONFIGS))
async def test_a_config_google_genai_refuses_ends_the_session_at_once(
        slow_emu: LiveEmulator, where: str) -> None:
    """A ValueError google-genai raises while building the request, wherever in the SDK it is
    raised: local (no connection was made), fatal at once, and the error says to check the
    arguments; nothing was dialed and nothing retried."""
    trace = Trace()
    with pytest.raises(SessionTerminated) as err:
        async with open_session(slow_emu, config=REFUSED_CONFIGS[where], recorder=trace):
            pass
    event, = lost_events(trace.records)
    assert event["operation"] == "request" and event["failure"] == "local"
    assert event["reason"].startswith("ValueError: ")
    transition, = lost_transitions(trace.records)
    assert transition["disposition"] == "fatal"
    assert "check the arguments of connect()" in str(err.value)
    assert isinstance(err.value.__cause__, ValueError)
    assert not slow_emu.connections
    ended = [r for r in trace.records if r["name"] == "ended"]
    assert len(ended) == 1


async def test_the_applications_own_connection_factory_still_makes_the_connection(
        slow_emu: LiveEmulator) -> None:
    """An application that gives websockets its own `create_connection` keeps it; the shell
    still sees the connection open (a malformed setup answer is the server's)."""
    made: list[ClientConnection] = []

    class Counting(ClientConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    slow_emu.plan(ConnectionPlan(setup_garbage="text"))
    trace = Trace()
    client = slow_emu.client(create_connection=Counting, **statemachine.websocket_args())
    async with statemachine.connect(client, model=MODEL, config=TEXT, policy=fast_policy(),
                                    audit=trace.record) as session:
        app = App(session, trace)
        assert "hi" in await app.ask("hi")
        await app.stop()
    event, = lost_events(trace.records)
    assert event["operation"] == "setup" and event["failure"] == "malformed"
    assert len(made) == 2


async def test_without_a_way_to_watch_the_connect_the_shell_says_it_cannot_tell(
        slow_emu: LiveEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a websockets whose connect takes no `create_connection` (as `CAN_WATCH` says), the
    shell does not guess: the operation is None, and the core takes the data as the server's
    (a retry is bounded; a local verdict would end the session)."""
    monkeypatch.setattr(adapter, "CAN_WATCH", False)
    slow_emu.plan(ConnectionPlan(setup_garbage="text"))
    app = await start(slow_emu)
    event, = lost_events(app.records)
    assert event["operation"] is None and event["failure"] == "malformed"
    assert "hello" in await app.ask("hello")
    await app.stop()


async def test_a_failing_token_provider_is_reported_as_such(slow_emu: LiveEmulator) -> None:
    calls: list[int] = []

    async def provider() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the token service is down")
        return slow_emu.mint_token(uses=5)

    app = await start(slow_emu, token_provider=provider)
    event, = lost_events(app.records)
    assert event["operation"] == "token" and event["failure"] == "token_provider"
    assert "hello" in await app.ask("hello")
    await app.stop()


async def test_closing_an_ended_session_records_nothing(slow_emu: LiveEmulator) -> None:
    """close() after the session ended (here after a fatal close by the service), and a second
    close(), add no record: the core decides, the shell just feeds `Close`."""
    app = await start(slow_emu)
    await slow_emu.connections[-1].close(1002, "protocol error")
    await app.wait_until(lambda: app.session.ended is not None)
    count = len(app.records)
    await app.session.close()
    await app.session.close()
    assert len(app.records) == count
    with pytest.raises(SessionTerminated):
        await asyncio.wait_for(app._task, 5)


async def test_an_instrumented_connect_with_a_refused_config_is_local(
        slow_emu: LiveEmulator) -> None:
    """Through `wrap_client` (what frameworks get), a config google-genai refuses is local too:
    the framework sees the exception google-genai itself raises for it (a ValueError, which no
    framework retries as it would an APIError), at once, with the session's account chained,
    and nothing was dialed."""
    trace = Trace()
    client = statemachine.wrap_client(slow_emu.client(**statemachine.websocket_args()),
                                      policy=fast_policy(), audit=trace.record)
    plain = slow_emu.client(**statemachine.websocket_args())
    with pytest.raises(ValueError) as bare:
        async with plain.aio.live.connect(model=MODEL, config=REFUSED_CONFIGS["connect"]):
            pass
    with pytest.raises(ValueError) as err:
        async with client.aio.live.connect(model=MODEL, config=REFUSED_CONFIGS["connect"]):
            pass
    assert not isinstance(err.value, genai_errors.APIError)
    assert str(err.value) == str(bare.value)
    assert isinstance(err.value.__cause__, SessionTerminated)
    assert "check the arguments of connect()" in str(err.value.__cause__)
    assert err.value.__cause__.__cause__ is None  # no loop in the chain
    event, = lost_events(trace.records)
    assert event["operation"] == "request" and event["failure"] == "local"
    assert not slow_emu.connections
