"""What ended a connection, settled from what the shell saw.

The shell reports facts (`ConnectionLost`): the kind of exception it met as a `Failure`, what
it was doing (`Operation`), whether a close frame came and which one it had sent. This module
decides what they amount to, before the engine records or acts on the event:

- google-genai raising on data (`Failure.INVALID_DATA`) is the library refusing the request it
  was building (`LOCAL`: fatal, the arguments are wrong) when no connection was made yet
  (`Operation.REQUEST`), and a malformed server message (`MALFORMED`: back off, then resume)
  once one was (`SETUP`, `RECEIVE`). Without an operation it is taken as the server's: a
  retry is bounded by the budget, while ending the session would be final.
- an exception of a kind the shell does not know (`Failure.UNEXPECTED`) is local: the session
  ends with it rather than retry what may be a bug.
- a close without a close frame gets RFC 6455's code for it (`closecodes.close_code`), and a
  reason saying so, with the close frame this client had sent, if any.

The result carries only the failures of `closecodes.FAILURE_RULES` and `CLOSED`/`REFUSED`,
so audit records keep their values.
"""

from __future__ import annotations

import attrs

from .closecodes import close_code, sent_close_note
from .events import ConnectionLost, Failure, Operation

#: the failure google-genai raising on data amounts to, by what the shell was doing
INVALID_DATA_BY_OPERATION: dict[Operation | None, Failure] = {
    Operation.TOKEN: Failure.TOKEN_PROVIDER,
    Operation.REQUEST: Failure.LOCAL,
    Operation.SETUP: Failure.MALFORMED,
    Operation.RECEIVE: Failure.MALFORMED,
    None: Failure.MALFORMED,
}

#: how the reason of each settled failure begins (the shell gives the exception's own words)
REASON_PREFIX: dict[Failure, str] = {
    Failure.MALFORMED: "malformed server frame: ",
    Failure.LOCAL: "",
}
NO_CLOSE_FRAME_REASON = "no close frame received"


def settle(event: ConnectionLost) -> ConnectionLost:
    """`event` with the failure, code and reason it amounts to (itself when nothing changes)."""
    failure = event.failure
    if failure is Failure.INVALID_DATA:
        settled = INVALID_DATA_BY_OPERATION[event.operation]
        prefix = REASON_PREFIX.get(settled, "")
        return attrs.evolve(event, failure=settled, reason=(prefix + event.reason)[:200])
    if failure is Failure.UNEXPECTED:
        return attrs.evolve(event, failure=Failure.LOCAL,
                            reason=f"unexpected {event.reason}"[:200])
    if failure is Failure.CLOSED and event.close_received is False:
        note = sent_close_note(event.sent_code, event.sent_reason)
        reason = NO_CLOSE_FRAME_REASON + (f"; {note}" if note else "")
        return attrs.evolve(event, code=close_code(event.code, False), reason=reason[:200])
    return event
