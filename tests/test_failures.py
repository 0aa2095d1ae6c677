"""The shell reports what it saw end a connection; the core settles what it was (issue 22).

The core (core/failures.py, core/closecodes.py) decides the failure class from the operation
under way, the close code (RFC 6455's 1006 for no close frame) and the words.
"""

from __future__ import annotations

from typing import Any

import pytest

from statemachine.core.events import ConnectionLost, Failure, Operation
from statemachine.core.table import State
from statemachine.testing import CoreDriver


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
