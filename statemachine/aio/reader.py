"""Who reads a connection, and when: the application's own task while it waits in
`receive()`, a background task while it is away.

Reading in the application's task costs no hand-off between tasks per message. When the
application stays away from `receive()` longer than `BACKGROUND_AFTER`, a background reader
takes over, so the server's messages (handles, `goAway`) are acted on and queued for it. When
the application comes back, the background's pending read is cancelled (`takeover`) and the
application reads again. One task may wait in `receive()` at a time, as the SDK requires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from google.genai import types
from google.genai.live import AsyncSession

from ..errors import LocalMisuse
from . import sdk as adapter
from .flag import Flag, either

Message = types.LiveServerMessage
#: how long the application may be away from receive() before a background reader takes over
BACKGROUND_AFTER = 0.05


class Readable(Protocol):
    """What the reader needs of a connection (the session's per-connection record)."""

    generation: int
    sdk: AsyncSession | None
    closing: bool
    #: the background's pending read, cancelled when the application takes over reading
    bg_read: asyncio.Task[Message] | None
    takeover: bool
    #: set when the application's own read failed: the connection task then ends
    failed: Flag
    arrived: Callable[[], float | None] | None


#: the session's handling of a message read: (generation, message, deliver, arrived)
OnMessage = Callable[..., None]
#: the session's handling of a failed read: (connection, exception)
OnFailed = Callable[[Any, BaseException], None]


class Reader:
    """The hand-off of reading between the application's task and the background."""

    __slots__ = ("_app_left_at", "_app_reading", "_bg_allowed", "_bg_idle", "_bg_timer",
                 "_loop", "_on_failed", "_on_message", "_receiver", "_receiver_waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_message: OnMessage,
                 on_failed: OnFailed) -> None:
        self._loop = loop
        self._on_message = on_message
        self._on_failed = on_failed
        self._app_reading = False
        #: the task iterating receive() and whether it is waiting inside it right now
        self._receiver: asyncio.Task[Any] | None = None
        self._receiver_waiting = False
        self._bg_allowed = Flag()
        self._bg_allowed.set()
        self._bg_idle = Flag()
        self._bg_idle.set()
        self._bg_timer: asyncio.TimerHandle | None = None
        self._app_left_at = 0.0

    def claim(self) -> None:
        """The current task waits in `receive()`: `LocalMisuse` if another task already does
        (the first goes on undisturbed)."""
        me = asyncio.current_task()
        other = self._receiver
        if self._receiver_waiting and other is not None and other is not me \
                and not other.done():
            raise LocalMisuse(
                "receive() is already being iterated by another task: only one task may read "
                "a session (the SDK's rule too); share its messages, e.g. through a queue")
        self._receiver = me
        self._receiver_waiting = True

    def release(self) -> None:
        """The task that claimed `receive()` is no longer waiting in it."""
        self._receiver_waiting = False

    async def read_as_application(self, conn: Readable,
                                  has_queued: Callable[[], bool]) -> Message | None:
        """One message read in the application's task (None: look again, something changed,
        e.g. the background queued messages meanwhile)."""
        self._app_reading = True
        self._bg_allowed.clear()
        try:
            pending = conn.bg_read
            if pending is not None and not pending.done():
                conn.takeover = True
                pending.cancel()
            if not self._bg_idle.is_set():
                await self._bg_idle.wait()  # the background finished with what it was reading
            if has_queued() or conn.sdk is None or conn.closing:
                return None
            try:
                message = await adapter.receive_one(conn.sdk)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not conn.failed.is_set():
                    conn.failed.set()
                    self._on_failed(conn, exc)
                return None
            if conn.closing:  # left while this read waited: the core marked the cut already
                return None
            self._on_message(conn.generation, message, deliver=False,
                             arrived=conn.arrived() if conn.arrived else None)
            return message
        finally:
            self._app_reading = False
            self._app_left_at = self._loop.time()
            if self._bg_timer is None:  # one watchdog, not a timer per message
                self._bg_timer = self._loop.call_later(BACKGROUND_AFTER, self._allow_background)

    def _allow_background(self) -> None:
        """Let the background read once the application has been away long enough."""
        self._bg_timer = None
        if self._app_reading:
            return  # it is reading now; leaving will arm the watchdog again
        away = self._loop.time() - self._app_left_at
        if away >= BACKGROUND_AFTER:
            self._bg_allowed.set()
        else:
            self._bg_timer = self._loop.call_later(BACKGROUND_AFTER - away,
                                                   self._allow_background)

    async def read_in_background(self, conn: Readable, sdk: AsyncSession) -> None:
        """Read while the application is not reading itself; stop when its read failed."""
        loop = self._loop
        while not conn.failed.is_set():
            if not self._bg_allowed.is_set():
                await either(self._bg_allowed, conn.failed)
                continue
            self._bg_idle.clear()
            read = loop.create_task(adapter.receive_one(sdk))
            conn.bg_read = read
            try:
                message = await read
            except asyncio.CancelledError:
                if conn.takeover and not conn.closing:
                    conn.takeover = False
                    continue  # the application reads now
                read.cancel()
                raise
            finally:
                conn.bg_read = None
                self._bg_idle.set()
            if conn.closing:  # what a connection left behind sends comes after its cut mark
                return
            self._on_message(conn.generation, message,
                             arrived=conn.arrived() if conn.arrived else None)

    def stop(self) -> None:
        """Cancel the watchdog (the session is shutting down)."""
        if self._bg_timer is not None:
            self._bg_timer.cancel()
            self._bg_timer = None
