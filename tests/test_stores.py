"""One conformance suite for every HandleStore: memory, SQLite (a real file) and Redis (a real
redis-server started on a free port)."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from statemachine.core.persistence import JournalWrite, StoredJournal
from statemachine.errors import LeaseFenced
from statemachine.stores import (
    HandleStore,
    LeaseHeld,
    MemoryStore,
    SQLiteStore,
    StoredHandle,
    StoreError,
)

from .redis_server import needs_redis, redis_server

Factory = Callable[[], HandleStore]


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    from .redis_server import REDIS

    if REDIS is None:
        pytest.skip("redis-server not installed (.ci/run installs Debian's redis-server)")
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield port


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """A factory of independent store clients sharing one backend (one file, one server)."""
    made: list[HandleStore] = []
    shared_memory = MemoryStore()
    prefix = f"t{time.monotonic_ns()}:"

    def factory() -> HandleStore:
        store: HandleStore
        if request.param == "memory":
            store = shared_memory
        elif request.param == "sqlite":
            store = SQLiteStore(tmp_path / "handles.db")
        else:
            from statemachine.stores import RedisStore

            port = request.getfixturevalue("redis_port")
            store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix=prefix)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.aclose()


def record(generation: int = 1, valid_for: float = 60.0, handle: str = "h") -> StoredHandle:
    now = time.time()
    return StoredHandle(handle=f"{handle}{generation}", issued_at=now, expires_at=now + valid_for,
                        generation=generation, compressed=generation % 2 == 0)


async def test_roundtrip(make_store: Factory) -> None:
    """What is saved is loaded back, by another client of the same backend."""
    a, b = make_store(), make_store()
    assert await a.load("k") is None
    await a.save("k", record(3))
    got = await b.load("k")
    assert got is not None and got.handle == "h3" and got.generation == 3 and not got.compressed


async def test_expired_handles_are_never_offered(make_store: Factory) -> None:
    """A handle past its expiry is not returned."""
    store = make_store()
    await store.save("warm-up", record(1))  # the first call connects: not part of the window
    await store.save("k", record(1, valid_for=1.0))
    assert await store.load("k") is not None
    await asyncio.sleep(1.1)
    assert await store.load("k") is None


async def test_older_generation_never_overwrites_newer(make_store: Factory) -> None:
    """Writes are atomic and ordered by generation: a late write of an older handle loses."""
    store = make_store()
    await store.save("k", record(5))
    await store.save("k", record(4))
    got = await store.load("k")
    assert got is not None and got.generation == 5
    await store.save("k", record(6))
    got = await store.load("k")
    assert got is not None and got.generation == 6


async def test_delete(make_store: Factory) -> None:
    store = make_store()
    await store.save("k", record(1))
    await store.delete("k")
    assert await store.load("k") is None


async def test_lease_is_exclusive_and_names_the_holder(make_store: Factory) -> None:
    """A held lease refuses others with LeaseHeld naming the holder; the holder may retake it."""
    a, b = make_store(), make_store()
    await a.acquire("k", "worker-a", ttl=30)
    with pytest.raises(LeaseHeld, match="worker-a") as err:
        await b.acquire("k", "worker-b", ttl=30)
    assert err.value.holder == "worker-a" and 0 < err.value.expires_in <= 30
    await a.acquire("k", "worker-a", ttl=30)
    await a.acquire("other-key", "worker-b", ttl=30)


async def test_leases_of_dead_workers_expire(make_store: Factory) -> None:
    """A lease that is not renewed runs out; another worker then takes the session."""
    a, b = make_store(), make_store()
    await a.acquire("k", "dead-worker", ttl=0.2)
    await asyncio.sleep(0.3)
    await b.acquire("k", "live-worker", ttl=30)
    assert await a.renew("k", "dead-worker", ttl=30) is False
    assert await b.renew("k", "live-worker", ttl=30) is True


async def test_a_lapsed_lease_nobody_took_is_renewed(make_store: Factory) -> None:
    """A worker cut off from the store past its lease keeps the session when nobody else took
    it: renewing takes the lease again (False means only: another worker holds it)."""
    a, b = make_store(), make_store()
    await a.acquire("k", "slow-worker", ttl=0.2)
    await asyncio.sleep(0.3)
    assert await a.renew("k", "slow-worker", ttl=30) is True
    with pytest.raises(LeaseHeld, match="slow-worker"):
        await b.acquire("k", "other-worker", ttl=30)


async def test_release_only_by_the_holder(make_store: Factory) -> None:
    a, b = make_store(), make_store()
    await a.acquire("k", "worker-a", ttl=30)
    await b.release("k", "worker-b")
    with pytest.raises(LeaseHeld):
        await b.acquire("k", "worker-b", ttl=30)
    await a.release("k", "worker-a")
    await b.acquire("k", "worker-b", ttl=30)


async def test_racing_workers_exactly_one_wins(make_store: Factory) -> None:
    """Many clients race for one session's lease at once: exactly one gets it."""
    stores = [make_store() for _ in range(8)]
    results = await asyncio.gather(
        *(s.acquire("race", f"worker-{i}", ttl=30) for i, s in enumerate(stores)),
        return_exceptions=True)
    winners = [r for r in results if r is None]
    losers = [r for r in results if isinstance(r, LeaseHeld)]
    assert len(winners) == 1 and len(losers) == 7


async def test_journal_roundtrip_forget_and_clear(make_store: Factory) -> None:
    """The owner writes entries, forgets some with a handle in the same write, sets the audio
    mark; another client of the backend reads exactly that back; clear empties it."""
    a, b = make_store(), make_store()
    await a.acquire("k", "worker-a", ttl=30)
    await a.write("k", "worker-a", JournalWrite(put=((1, "one"), (2, "two"), (3, "three")),
                                                audio='{"chunks": 5}'))
    await a.write("k", "worker-a", JournalWrite(record=record(4), forget=(1, 3)))
    journal = await b.load_journal("k")
    assert journal == StoredJournal(entries=((2, "two"),), audio='{"chunks": 5}')
    saved = await b.load("k")
    assert saved is not None and saved.generation == 4
    await a.write("k", "worker-a", JournalWrite(clear=True, audio=""))
    assert await b.load_journal("k") == StoredJournal()


async def test_a_worker_whose_lease_was_taken_never_writes_again(make_store: Factory) -> None:
    """Fencing: once another worker acquired the key (the first one's lease ran out), every
    write, renewal and reclaim of the first is refused, and nothing of it lands, even after
    the new holder released the lease."""
    a, b = make_store(), make_store()
    await a.acquire("k", "worker-a", ttl=0.2)
    await a.write("k", "worker-a", JournalWrite(put=((1, "from a"),)))
    await asyncio.sleep(0.3)
    await b.acquire("k", "worker-b", ttl=30)
    for _ in range(2):
        with pytest.raises(LeaseFenced, match="worker-a"):
            await a.write("k", "worker-a", JournalWrite(put=((2, "stale"),), record=record(9)))
        assert await a.renew("k", "worker-a", ttl=30) is False
        assert await a.reclaim("k", "worker-a", ttl=30) is False
        await b.release("k", "worker-b")  # a released lease does not let the old owner back
    assert (await b.load_journal("k")).entries == ((1, "from a"),)
    assert await b.load("k") is None


async def test_a_hand_over_releases_the_lease_for_exactly_one_taker(make_store: Factory) -> None:
    """A hand-over writes handle, journal and marker and frees the lease in one step: the next
    worker acquires at once and finds them; of two racing, one wins. The old owner cannot take
    it back once another acquired it, and can before (reclaim)."""
    a, b, c = make_store(), make_store(), make_store()
    await a.acquire("k", "worker-a", ttl=30)
    await a.write("k", "worker-a", JournalWrite(record=record(2), put=((5, "turn"),),
                                                clear=True, hand_off='{"by": "a"}'))
    assert await a.reclaim("k", "worker-a", ttl=30) is True  # nobody took it: undone
    assert (await b.load_journal("k")).hand_off is None
    with pytest.raises(LeaseHeld):
        await b.acquire("k", "worker-b", ttl=30)
    await a.write("k", "worker-a", JournalWrite(record=record(2), put=((5, "turn"),),
                                                clear=True, hand_off='{"by": "a"}'))
    results = await asyncio.gather(b.acquire("k", "worker-b", ttl=30),
                                   c.acquire("k", "worker-c", ttl=30), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["LeaseHeld", "NoneType"]
    journal = await b.load_journal("k")
    assert journal.entries == ((5, "turn"),) and journal.hand_off == '{"by": "a"}'
    assert await a.reclaim("k", "worker-a", ttl=30) is False
    winner = "worker-b" if results[0] is None else "worker-c"
    await (b if winner == "worker-b" else c).write("k", winner, JournalWrite())
    assert (await a.load_journal("k")).hand_off is None  # the taker's first write clears it


async def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    """The SQLite file is created readable by its owner only, in WAL mode."""
    path = tmp_path / "sub" / "handles.db"
    store = SQLiteStore(path)
    await store.save("k", record(1))
    await store.aclose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_unreachable_raises_store_error(tmp_path: Path) -> None:
    """A store that cannot work raises StoreError (the session then degrades to memory)."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(StoreError, match="SQLite store"):
        await SQLiteStore(blocker / "handles.db").load("k")


@needs_redis
async def test_redis_ttl_prefix_and_auth_url(tmp_path: Path) -> None:
    """Redis: keys carry the prefix, the TTL is the handle's remaining validity, and
    authenticated URLs work (a wrong password is a StoreError)."""
    from statemachine.stores import RedisStore

    with redis_server(tmp_path, "--requirepass", "s3cret") as port:
        store = RedisStore(f"redis://:s3cret@127.0.0.1:{port}/0", prefix="app1:")
        await store.save("k", record(1, valid_for=100))
        ttl = await store._redis.pttl("app1:handle:k")
        assert 95_000 < ttl <= 100_000
        assert await store._redis.exists("app1:handle:k") == 1
        await store.aclose()
        wrong = RedisStore(f"redis://:nope@127.0.0.1:{port}/0")
        with pytest.raises(StoreError, match="Redis store"):
            await wrong.load("k")
        await wrong.aclose()


@needs_redis
async def test_redis_tls_url(tmp_path: Path) -> None:
    """rediss:// URLs (TLS) work, against redis-server with a certificate made by trustme."""
    import trustme

    from statemachine.stores import RedisStore

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    from .redis_server import free_port

    tls_port = free_port()
    try:
        server = redis_server(tmp_path, "--tls-port", str(tls_port), "--tls-cert-file",
                              str(tmp_path / "cert.pem"), "--tls-key-file",
                              str(tmp_path / "key.pem"), "--tls-ca-cert-file",
                              str(tmp_path / "ca.pem"), "--tls-auth-clients", "no")
        server.__enter__()
    except RuntimeError:
        pytest.skip("this redis-server was built without TLS")
    try:
        store = RedisStore(f"rediss://127.0.0.1:{tls_port}/0",
                           ssl_ca_certs=str(tmp_path / "ca.pem"))
        await store.save("k", record(2))
        got = await store.load("k")
        assert got is not None and got.generation == 2
        await store.aclose()
    finally:
        server.__exit__(None, None, None)


def test_sqlite_processes_opening_a_new_file_together(tmp_path: Path) -> None:
    """Several processes creating the same new SQLite store at once all succeed (switching to WAL
    can report 'locked' at once; a store that gave up here would lose the lease)."""
    import subprocess
    import sys

    path = tmp_path / "fresh.db"
    start_at = time.time() + 2.0  # after every interpreter has started: all open together
    code = (
        "import asyncio, sys, time\n"
        "from statemachine.stores import SQLiteStore\n"
        "async def main():\n"
        f"    time.sleep(max(0.0, {start_at} - time.time()))\n"
        f"    store = SQLiteStore({str(path)!r})\n"
        "    try:\n"
        "        await store.acquire('k', sys.argv[1], 30)\n"
        "        print('WON')\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__)\n"
        "    await store.aclose()\n"
        "asyncio.run(main())\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, f"w{i}"], stdout=subprocess.PIPE,
                              text=True) for i in range(10)]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["LeaseHeld"] * 9 + ["WON"], results
