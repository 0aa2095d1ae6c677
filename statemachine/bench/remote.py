"""The emulator in a process of its own, so a benchmark measures the client alone.

`async with RemoteEmulator(settings) as remote:` starts it (multiprocessing, spawn), and
`remote.client()` returns a genai.Client pointed at it. `await remote.summary()` asks it what it
saw: per session, the inputs the model took in. `plans` are queued on it before any connection
(`LiveEmulator.plan`); `info["pid"]` lets a benchmark read the emulator's CPU time.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import ssl
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import Any

from google import genai
from google.genai import types

from ..emulator import ConnectionPlan, EmulatorSettings, LiveEmulator


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """Start child processes inside this: they start with SIGINT blocked (a signal mask
    survives exec). Ctrl-C reaches the whole process group, and only the parent should report
    it (then stop its children), not each child with a traceback of its own, possibly while it
    is still importing. Here, a Ctrl-C that arrives meanwhile is held and delivered when the
    block ends (ignoring SIGINT instead would drop it: the command ran on as if never asked).
    multiprocessing's resource tracker is started first: starting it unblocks SIGINT."""
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


async def in_child(target: Callable[..., None], *args: Any) -> Any:
    """What `target(*args, pipe)`, run in a process of its own (spawn), sends back on `pipe`.
    Our copy of the child's end is closed once it started, so a child that dies before it
    reports ends the wait with an error (its traceback is on its stderr) instead of leaving
    the benchmark waiting for ever; a child still alive when we leave is terminated."""
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    process = context.Process(target=target, args=(*args, theirs))
    with sigint_held():  # Ctrl-C stops the parent, which stops the child (finally below)
        process.start()
    theirs.close()
    try:
        try:
            result = await asyncio.to_thread(mine.recv)
        except EOFError as exc:
            await asyncio.to_thread(process.join, 30)
            raise RuntimeError(
                f"the benchmark's process {target.__qualname__} exited (code "
                f"{process.exitcode}) before it reported: its traceback is on stderr") from exc
        await asyncio.to_thread(process.join, 30)
        return result
    finally:
        mine.close()
        if process.is_alive():
            process.terminate()


def _serve(settings: EmulatorSettings, plans: Sequence[ConnectionPlan], pipe: Connection) -> None:
    asyncio.run(_serve_async(settings, plans, pipe))


async def _serve_async(settings: EmulatorSettings, plans: Sequence[ConnectionPlan],
                       pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    async with LiveEmulator(settings) as emu:
        emu.plan(*plans)
        pipe.send({"base_url": emu.base_url, "ca_file": emu.ca_file, "api_key": emu.api_key,
                   "pid": str(os.getpid())})
        while True:
            request = await loop.run_in_executor(None, pipe.recv)
            if request == "stop":
                break
            if request == "summary":
                pipe.send(_summary(emu))


def _summary(emu: LiveEmulator) -> dict[str, Any]:
    """What the benchmarks read back: per session, the inputs the model took in."""
    return {"sessions": [{"consumed": s.context.consumed} for s in emu.sessions]}


def client_for(info: dict[str, str], **async_client_args: Any) -> genai.Client:
    """A genai.Client for an emulator known by its address, CA file and key (any process)."""
    ctx = ssl.create_default_context(cafile=info["ca_file"])
    return genai.Client(api_key=info["api_key"], http_options=types.HttpOptions(
        base_url=info["base_url"],
        async_client_args={"ssl": ctx, "proxy": None, **async_client_args}))


class RemoteEmulator:
    def __init__(self, settings: EmulatorSettings, plans: Sequence[ConnectionPlan] = ()) -> None:
        self.settings = settings
        self.plans = tuple(plans)
        self._process: Any = None
        self._pipe: Connection | None = None
        self.info: dict[str, str] = {}

    async def __aenter__(self) -> RemoteEmulator:
        context = multiprocessing.get_context("spawn")
        mine, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(self.settings, self.plans, theirs),
                                        daemon=True)
        with sigint_held():  # stopped by __aexit__, or at exit as a daemon
            self._process.start()
        theirs.close()  # the child holds it now: its exit must end our recv() with EOFError
        self._pipe = mine
        self.info = await asyncio.to_thread(mine.recv)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._pipe is not None
        self._pipe.send("stop")
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()

    async def _ask(self, what: str) -> Any:
        assert self._pipe is not None
        self._pipe.send(what)
        return await asyncio.to_thread(self._pipe.recv)

    async def summary(self) -> dict[str, Any]:
        return dict(await self._ask("summary"))

    def client(self, **async_client_args: Any) -> genai.Client:
        return client_for(self.info, **async_client_args)
