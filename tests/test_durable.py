"""Sessions that outlive their process: SIGKILL a worker mid-session, resume it in another
process through SQLite or Redis, and let two workers race for one session."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine.emulator import EmulatorSettings, LiveEmulator

from .redis_server import needs_redis, redis_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def emu() -> AsyncIterator[LiveEmulator]:
    async with LiveEmulator(EmulatorSettings(time_scale=0.01)) as emulator:
        yield emulator


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    from .redis_server import REDIS

    if REDIS is None:
        pytest.skip("redis-server not installed (.ci/run installs Debian's redis-server)")
    with redis_server(tmp_path) as port:
        yield f"redis://127.0.0.1:{port}/0"


#: every worker a test started: killed at the end of the test, whatever happened in it
_WORKERS: list[asyncio.subprocess.Process] = []


@pytest.fixture(autouse=True)
async def _no_leftover_workers() -> AsyncIterator[None]:
    yield
    while _WORKERS:
        worker = _WORKERS.pop()
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


async def spawn(emu: LiveEmulator, **config: Any) -> asyncio.subprocess.Process:
    config = {"base_url": emu.base_url, "ca_file": emu.ca_file, "api_key": emu.api_key,
              **config}
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.worker", json.dumps(config), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _WORKERS.append(worker)
    return worker


async def line_starting(proc: asyncio.subprocess.Process, prefix: str) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                err = await proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"worker ended before {prefix!r}: {err.decode()[-2000:]}")
            line = raw.decode().strip()
            if line.startswith(prefix):
                return line


async def killed_then_resumed(emu: LiveEmulator, store: str) -> str:
    """Worker 1 talks and is SIGKILLed; worker 2 resumes the same key and asks."""
    first = await spawn(emu, store=store, key="user-42", mode="first", lease_ttl=1.0)
    await line_starting(first, "READY")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    await asyncio.wait_for(emu.connections[-1].done.wait(), 10)
    second = await spawn(emu, store=store, key="user-42", mode="second", lease_wait=10.0)
    reply = await line_starting(second, "REPLY")
    resumed = await line_starting(second, "RESUMED")
    assert await second.wait() == 0
    assert resumed == "RESUMED 1"
    return reply


async def test_sqlite_session_survives_sigkill(emu: LiveEmulator, tmp_path: Path) -> None:
    """A process holding a session in SQLite is killed with SIGKILL; a new process with the same
    key resumes it, and the emulator's reply proves the conversation was kept."""
    reply = await killed_then_resumed(emu, f"sqlite:{tmp_path / 'handles.db'}")
    assert 'I remember "my name is Ada"' in reply
    assert emu.connections[-1].resumed
    assert emu.connections[-1].session is emu.connections[0].session


@needs_redis
async def test_redis_session_moves_to_another_worker(emu: LiveEmulator, redis_url: str) -> None:
    """The same across two worker processes through a real redis-server."""
    reply = await killed_then_resumed(emu, f"redis:{redis_url}")
    assert 'I remember "my name is Ada"' in reply
    assert emu.connections[-1].session is emu.connections[0].session


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_two_workers_race_for_one_session(emu: LiveEmulator, tmp_path: Path,
                                                backend: str,
                                                request: pytest.FixtureRequest) -> None:
    """Two workers start the same session at once: exactly one connects, the other gets a
    clear error naming the holder."""
    if backend == "sqlite":
        store = f"sqlite:{tmp_path / 'handles.db'}"
    else:
        store = "redis:" + request.getfixturevalue("redis_url")
    workers = await asyncio.gather(
        *(spawn(emu, store=store, key="shared", mode="hold") for _ in range(2)))
    firsts = await asyncio.gather(*(line_starting(w, "") for w in workers))
    assert sorted(line.split()[0] for line in firsts) == ["CONNECTED", "LEASE-HELD"], firsts
    winner = workers[[line.startswith("CONNECTED") for line in firsts].index(True)]
    loser = workers[[line.startswith("LEASE-HELD") for line in firsts].index(True)]
    assert await loser.wait() == 3
    holder = next(line for line in firsts if line.startswith("LEASE-HELD")).split(" ", 1)[1]
    assert holder.count(":") == 2  # host:pid:id of the winner
    winner.send_signal(signal.SIGKILL)
    await winner.wait()
    assert len(emu.connections) == 1


async def test_unreachable_store_at_start_fails_clearly(emu: LiveEmulator) -> None:
    """A store that cannot be reached when a session starts fails the start with a clear error
    (without the lease two workers could run the session); nothing connects."""
    from .redis_server import free_port

    pytest.importorskip("redis")
    from statemachine.aio.session import LiveSession
    from statemachine.stores import RedisStore, StoreError

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    session = LiveSession(emu.client(), model="gemini-live-2.5-flash-preview",
                          config={"response_modalities": ["TEXT"]}, store=store,
                          session_key="k", audit=lambda r: None)
    with pytest.raises(StoreError, match="not started: its lease could not be taken"):
        async with session:
            pass
    await store.aclose()
    assert not emu.connections


@needs_redis
async def test_a_store_that_does_not_answer_at_start_fails_it_in_bounded_time(
        emu: LiveEmulator, tmp_path: Path) -> None:
    """A store that takes connections but does not answer (Redis paused, as a hung server or a
    network dropping packets is) fails the start after the store timeout, with why; the start
    does not wait as long as the store does."""
    import redis.asyncio as aioredis

    from statemachine.aio.session import LiveSession
    from statemachine.stores import RedisStore, StoreError

    with redis_server(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}/0"
        admin = aioredis.from_url(url)
        await admin.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
        store = RedisStore(url, socket_timeout=None)  # redis-py waits as long as Redis does
        session = LiveSession(emu.client(), model="gemini-live-2.5-flash-preview",
                              config={"response_modalities": ["TEXT"]}, store=store,
                              session_key="k", audit=lambda r: None)
        try:
            async with asyncio.timeout(15):  # the pause lasts 30 s
                with pytest.raises(StoreError, match=r"not started: .*did not answer within 2s"):
                    await session.start()
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")
            await admin.aclose()
            await store.aclose()
    assert not emu.connections


@needs_redis
async def test_store_lost_mid_session_degrades(emu: LiveEmulator, tmp_path: Path) -> None:
    """The Redis server dies under a live session: handles keep flowing in memory."""
    from statemachine.stores import RedisStore

    from .app import App

    records: list[dict[str, Any]] = []
    with redis_server(tmp_path) as port:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=5.0)
        from statemachine.aio.session import LiveSession

        session = LiveSession(emu.client(), model="gemini-live-2.5-flash-preview",
                              config={"response_modalities": ["TEXT"]}, store=store,
                              session_key="k", audit=records.append)
        await session.start()
        app = App(session)
        await app.ask("one")
        await session.flush_handle()
        assert (await store.load("k")) is not None
    # the server is gone now
    await app.ask("two")
    await session.flush_handle()
    assert any(r["name"] == "store_degraded" for r in records if r["kind"] == "notice")
    await app.stop()
    await store.aclose()
