"""What writes a connection's sends: the SDK call for each `Send`, and the outbox that keeps
them in order for the connection's one writer task.

A send is written at once by the task that makes it when nothing is queued before it (the
SDK's send returns without suspending unless the socket is backed up); when it does suspend, the
writer task finishes it (`Suspended`, `resume_suspended`), and later sends queue behind it, so a
stalled server blocks no one else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from types import coroutine as types_coroutine
from typing import Any

import attrs
from google.genai import types
from google.genai.live import AsyncSession

from ..core.actions import Send
from ..core.events import InputKind
from ..core.journal import Entry
from . import frames
from . import sdk as adapter


class Outbox:
    """A connection's sends in order, for its one writer task: what `asyncio.Queue` does here,
    with less work per message (one future per wait, none per message while the writer keeps
    up) and less memory per connection (a list: it mostly holds zero or one send, and an empty
    deque takes 0.6 KB). `idle` says nothing is queued or being written: a send may then be
    written at once by whoever made it (`LiveSession._write_now`)."""

    __slots__ = ("_busy", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Send | Suspended] = []
        self._waiter: asyncio.Future[None] | None = None
        self._busy = False

    def empty(self) -> bool:
        return not self._items

    @property
    def idle(self) -> bool:
        return not self._items and not self._busy

    def put_nowait(self, item: Send | Suspended) -> None:
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Send | Suspended:
        """The next item, oldest first; the outbox is busy until `done()`."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        self._busy = True
        return self._items.pop(0)

    def done(self) -> None:
        self._busy = False


@attrs.define(slots=True)
class Suspended:
    """A send begun at once (`LiveSession._write_now`) that the socket's flow control suspended
    on `waiting_on`: the writer finishes it before anything queued after it."""

    action: Send
    coro: Coroutine[Any, Any, None]
    waiting_on: Any


@types_coroutine
def resume_suspended(coro: Coroutine[Any, Any, None], waiting_on: Any) -> Generator[Any, Any, None]:
    """Await a coroutine that was stepped by hand (`coro.send(None)`) and is suspended on
    `waiting_on`: hand that future to the awaiting task, and pass what the task sends or throws
    back in, as a task would have done had it run the coroutine from the start."""
    while True:
        try:
            sent = yield waiting_on
        except BaseException as exc:  # a cancellation, thrown in by the task
            try:
                waiting_on = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting_on = coro.send(sent)
            except StopIteration:
                return


def sdk_send(sdk: AsyncSession, action: Send) -> Coroutine[Any, Any, None]:
    """The SDK call that writes a `Send` (not yet awaited)."""
    entry = action.entry
    if entry.kind is InputKind.AUDIO:  # the bulk of the traffic, tested first
        if type(entry.payload) is tuple:  # checked when it was sent (`frames.chunk`)
            return adapter.write_text(sdk, frames.text(entry.payload))
        return sdk.send_realtime_input(**entry.payload)
    if action.continuation:
        return sdk.send_client_content(turn_complete=True)
    if entry.kind is InputKind.CONTENT:
        if action.as_history:
            return sdk.send_client_content(turns=as_history(entry), turn_complete=False)
        return sdk.send_client_content(**entry.payload)
    if entry.kind is InputKind.TOOL_RESPONSE:
        return sdk.send_tool_response(**entry.payload)
    if entry.kind is InputKind.CONTEXT_UPDATE:
        return sdk.send_context_update(**entry.payload)
    if entry.kind is InputKind.TEXT and action.as_history:
        return sdk.send_client_content(turns=as_history(entry), turn_complete=False)
    return sdk.send_realtime_input(**entry.payload)


def as_history(entry: Entry) -> list[types.Content | types.ContentDict]:
    """The user's input and the reply it already got, as history the model will not answer.
    For a turn the resumed session holds, only the part of the reply it does not hold."""
    if entry.held:
        rest = entry.reply_text[entry.held_chars:]
        return [types.Content(role="model", parts=[types.Part(text=rest)])]
    user: list[Any]
    if entry.kind is InputKind.TEXT:
        user = [types.Content(role="user", parts=[types.Part(text=entry.payload["text"])])]
    else:
        turns = entry.payload["turns"]
        user = list(turns) if isinstance(turns, list) else [turns]
    return [*user, types.Content(role="model", parts=[types.Part(text=entry.reply_text)])]


#: what reports a written send to the core: `Lifecycle.written(entry, generation, at)`
Written = Callable[[Entry, int, float], None]
#: what tells the core the SDK would not send an input (the session's `_refused`)
Refused = Callable[[Send, Exception], None]


def write_now(outbox: Outbox, sdk: AsyncSession, action: Send, generation: int,
              written: Written, now: Callable[[], float], refused: Refused) -> None:
    """Write a send at once, in the task that made it, when nothing is queued before it: the
    SDK's send returns without suspending unless the socket is backed up, and a hand-off to
    the writer task costs about as much as the rest of the send path. When it does suspend,
    the writer task finishes it (`Suspended`), so a stalled server still blocks no one else."""
    try:
        coro = sdk_send(sdk, action)
        waiting_on = coro.send(None)
    except StopIteration:
        written(action.entry, generation, now())
    except adapter.SEND_AFTER_CLOSE:
        pass  # the reader reports the close; the entry stays journaled
    except Exception as exc:
        refused(action, exc)
    else:
        outbox.put_nowait(Suspended(action, coro, waiting_on))


async def write_queued(outbox: Outbox, sdk: AsyncSession, generation: int, written: Written,
                       now: Callable[[], float], refused: Refused) -> None:
    """A connection's writer task: send what `write_now` could not, in order. A server that
    stops reading blocks this task alone; what it holds stays journaled and is replayed on the
    next connection."""
    while True:
        item = await outbox.get()
        action = item.action if isinstance(item, Suspended) else item
        try:
            if isinstance(item, Suspended):
                await resume_suspended(item.coro, item.waiting_on)
            else:
                await sdk_send(sdk, item)
        except adapter.SEND_AFTER_CLOSE:
            return  # the reader reports the close; what is left stays journaled
        except Exception as exc:
            refused(action, exc)
        else:
            written(action.entry, generation, now())
        outbox.done()
