"""Handle persistence is the core's decision: what to save, when to renew the lease, when the
store counts as down or back, when the lease is lost. Checked on the sans-I/O core, then end to
end with a store that fails for a while under a short lease, in process and with a real
redis-server stopped and restarted mid-session."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from statemachine import OnExpired, Policy
from statemachine.core import Lifecycle
from statemachine.core.actions import (
    ArmTimer,
    ForgetHandle,
    ReleaseLease,
    RenewLease,
    SaveHandle,
    StoreDegraded,
    StoreRecovered,
)
from statemachine.core.events import (
    Connect,
    ConnectionLost,
    LeaseLost,
    ResumptionUpdate,
    SetupComplete,
    StoreDone,
    StoreFailed,
    StoreOp,
    Timer,
    TurnComplete,
)
from statemachine.core.persistence import JournalWrite, Persistence, StoredHandle
from statemachine.core.table import State
from statemachine.emulator import EmulatorSettings, LiveEmulator
from statemachine.errors import StoreError
from statemachine.stores import MemoryStore
from statemachine.testing import Trace

from .app import fast_policy, start
from .drivers import Driver
from .redis_server import needs_redis, redis_server


def durable(policy: Policy | None = None) -> tuple[Lifecycle, Driver, Trace]:
    trace = Trace()
    engine = Lifecycle(policy=policy, audit=trace.record, rng=random.Random(3),
                       persistence=Persistence(key="k", lease_ttl=3.0), wall_clock=lambda: 1e9)
    d = Driver(engine)
    d.feed(Connect(at=d.tick()))
    d.feed(SetupComplete(at=d.tick(), generation=d.gen))
    return engine, d, trace


def handle(d: Driver, name: str) -> list[Any]:
    d.feed(TurnComplete(at=d.tick(), generation=d.gen))
    return d.feed(ResumptionUpdate(at=d.tick(), generation=d.gen, handle=name, resumable=True))


def of(actions: list[Any], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def test_each_new_handle_is_saved_one_write_at_a_time() -> None:
    """A resumable handle becomes one SaveHandle with its expiry; a newer handle waits for the
    write in flight and replaces an older waiting one, so the store ends with the latest."""
    engine, d, _ = durable()
    saves = of(handle(d, "h1"), SaveHandle)
    assert len(saves) == 1 and saves[0].record.handle == "h1"
    record: StoredHandle = saves[0].record
    assert record.expires_at - record.issued_at == engine.policy.limits.handle_validity
    assert not of(handle(d, "h2"), SaveHandle)  # h1 still in flight
    assert not of(handle(d, "h3"), SaveHandle)
    after = d.feed(StoreDone(at=d.tick(), op=StoreOp.SAVE))
    assert [a.record.handle for a in of(after, SaveHandle)] == ["h3"]


def test_store_failure_degrades_retries_and_recovers_without_ending_the_session() -> None:
    """A failing store: the application is told, the session stays live, the write is retried
    with backoff, and the latest handle is written once the store answers again."""
    engine, d, trace = durable()
    handle(d, "h1")
    out = d.feed(StoreFailed(at=d.tick(), op=StoreOp.SAVE, error="unreachable"))
    assert trace.notices_of(StoreDegraded) == [] and of(out, ArmTimer)[0].timer is Timer.STORE_RETRY
    assert any(getattr(a, "notice", None) == StoreDegraded(error="unreachable") for a in out)
    assert not of(handle(d, "h2"), SaveHandle)  # down: only the retry timer writes
    d.fire_timer(Timer.LEASE)  # renewals pause while the store is down
    assert not of(d.actions[-3:], RenewLease)
    retried = d.feed(StoreFailed(at=d.tick(), op=StoreOp.RENEW, error="unreachable"))
    assert engine.state is State.STREAMING
    retry = [a for a in retried if isinstance(a, ArmTimer) and a.timer is Timer.STORE_RETRY]
    assert retry and retry[0].delay > 0.25  # the backoff grows
    d.fire_timer(Timer.STORE_RETRY)
    assert [a.record.handle for a in of(d.actions[-2:], SaveHandle)] == ["h2"]
    back = d.feed(StoreDone(at=d.tick(), op=StoreOp.SAVE))
    assert any(getattr(a, "notice", None) == StoreRecovered() for a in back)
    assert engine.state is State.STREAMING and not engine.durable.degraded
    assert [r["name"] for r in trace.records if r["kind"] == "notice"] == [
        "store_degraded", "store_recovered"]


def test_lease_is_lost_only_when_another_worker_holds_it() -> None:
    """A renewal that fails for lack of a store degrades; only the store's answer that another
    worker holds the lease ends the session, saying so."""
    engine, d, _ = durable()
    d.fire_timer(Timer.LEASE)
    assert of(d.actions[-2:], RenewLease)
    d.feed(StoreFailed(at=d.tick(), op=StoreOp.RENEW, error="timeout"))
    assert engine.state is State.STREAMING
    out = d.feed(LeaseLost(at=d.tick()))
    assert engine.state is State.TERMINATED
    assert engine.end is not None and "another worker holds it" in engine.end.reason
    assert of(out, ReleaseLease)


def test_fresh_restart_forgets_the_stored_handle() -> None:
    """When the session's context is lost, the stored handle is removed too."""
    engine, d, _ = durable(Policy(on_expired=OnExpired.FRESH))
    handle(d, "h1")
    d.feed(StoreDone(at=d.tick(), op=StoreOp.SAVE))
    d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1006))
    assert engine.state is State.RESUMING
    out = d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1007, reason="invalid",
                                during_setup=True))
    assert engine.state is State.CONNECTING
    assert of(out, ForgetHandle)


def test_the_end_saves_the_latest_handle_and_releases_the_lease() -> None:
    """Closing writes the handle the store does not have yet, then gives the lease back."""
    _, d, _ = durable()
    handle(d, "h1")
    handle(d, "h2")  # waits behind h1
    from statemachine.core.events import Close

    out = d.feed(Close(at=d.tick()))
    kinds = [type(a).__name__ for a in out if isinstance(a, SaveHandle | ReleaseLease)]
    assert kinds == ["SaveHandle", "ReleaseLease"]
    assert of(out, SaveHandle)[0].record.handle == "h2"


class FlakyStore(MemoryStore):
    """A real in-memory store whose writes and renewals fail while `down` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def save(self, key: str, record: StoredHandle) -> None:
        if self.down:
            raise StoreError("store unreachable (injected)")
        await super().save(key, record)

    async def renew(self, key: str, holder: str, ttl: float) -> bool:
        if self.down:
            raise StoreError("store unreachable (injected)")
        return await super().renew(key, holder, ttl)

    async def write(self, key: str, holder: str, change: JournalWrite) -> None:
        if self.down:
            raise StoreError("store unreachable (injected)")
        await super().write(key, holder, change)


async def test_store_blip_under_a_short_lease_does_not_end_the_session() -> None:
    """The defect of #10: save/renew fail for 250 ms under a 0.3 s lease. The session goes on,
    says the store was degraded and recovered, and the store ends with the latest handle."""
    store = FlakyStore()
    async with LiveEmulator(EmulatorSettings(time_scale=0.01)) as emu:
        app = await start(emu, fast_policy(), store=store, session_key="k", lease_ttl=0.3)
        await app.ask("one")
        assert await app.session.flush_handle()
        store.down = True  # idle: the next lease renewal (every 0.1 s) is what fails first
        asyncio.get_running_loop().call_later(0.25, setattr, store, "down", False)
        await app.wait_until(lambda: app.noticed(StoreDegraded))
        await app.ask("two")
        await app.wait_until(lambda: app.noticed(StoreRecovered))
        await app.ask("three")
        assert await app.session.flush_handle()
        assert app.session.state == "streaming"
        saved = await store.load("k")
        assert saved is not None and saved.handle == app.session.core.handle
        assert "terminated" not in app.states()
        await app.stop()


@needs_redis
async def test_redis_stopped_and_restarted_mid_session(tmp_path: Path) -> None:
    """A real redis-server stops under a live session and comes back (empty: no persistence):
    the session keeps talking, takes its lease again and writes the latest handle."""
    from statemachine.stores import RedisStore

    async with LiveEmulator(EmulatorSettings(time_scale=0.01)) as emu:
        with redis_server(tmp_path) as port:
            store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=5.0,
                               socket_timeout=5.0)
            app = await start(emu, fast_policy(), store=store, session_key="k", lease_ttl=0.6)
            await app.ask("one")
            assert await app.session.flush_handle()
        # the server is gone; the next lease renewal fails first, and the session goes on
        await app.wait_until(lambda: app.noticed(StoreDegraded))
        await app.ask("two")
        await app.ask("three")
        assert app.session.state == "streaming"
        with redis_server(tmp_path, port=port):
            await app.wait_until(lambda: app.noticed(StoreRecovered), within=20)
            assert await app.session.flush_handle()
            saved = await store.load("k")
            assert saved is not None and saved.handle == app.session.core.handle
            assert "terminated" not in app.states()
            await app.stop()
        await store.aclose()
