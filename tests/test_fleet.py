"""A session outlives its worker: real worker processes (tests/fleet_worker.py), a real
redis-server or SQLite file between them, the emulator recording what the model took in.

Planned hand-off mid-conversation with continuous audio and turns, a SIGTERM drain of a worker
running 20 sessions, a SIGKILL with a turn and a tool response in flight, two workers racing for
a handed-off key, and Redis stopped during a hand-off."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import struct
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine.emulator import EmulatorSettings, LiveEmulator

from .redis_server import REDIS, needs_redis, redis_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def emu() -> AsyncIterator[LiveEmulator]:
    """Replies in ~10 ms; connections of 6 s (a rotation may come along, as in life)."""
    settings = EmulatorSettings(time_scale=0.01, chunk_interval=1.0, track_inputs=True)
    async with LiveEmulator(settings) as emulator:
        yield emulator


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    if REDIS is None:
        pytest.skip("redis-server not installed (.ci/run installs Debian's redis-server)")
    with redis_server(tmp_path) as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(params=["redis", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'fleet.db'}"
    return "redis:" + request.getfixturevalue("redis_url")


class Worker:
    """A worker process: its output lines, and commands on its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []  # every line so far
        self._unread: list[str] = []  # lines no `line()` call returned yet

    async def line(self, prefix: str, within: float = 60) -> str:
        """The first line not returned yet that starts with `prefix`, without the prefix."""
        for i, line in enumerate(self._unread):
            if line.startswith(prefix):
                del self._unread[i]
                return line[len(prefix):].strip()
        try:
            return await asyncio.wait_for(self._next(prefix), within)
        except TimeoutError:
            raise AssertionError(f"no {prefix!r} line within {within:g}s; the worker printed "
                                 f"{self.lines[-20:]}") from None

    async def _next(self, prefix: str) -> str:
        """Read lines until one starts with `prefix` (the others are kept unread)."""
        assert self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                err = await self.proc.stderr.read() if self.proc.stderr else b""
                raise AssertionError(f"worker ended before {prefix!r}: {self.lines[-20:]} "
                                     f"{err.decode()[-3000:]}")
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if line.startswith(prefix):
                return line[len(prefix):].strip()
            self._unread.append(line)

    async def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()

    async def rest(self) -> list[str]:
        """Every line until the process exits."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            out = await self.proc.stdout.read()
            await self.proc.wait()
        self.lines += out.decode().splitlines()
        return self.lines

    def seen(self, prefix: str) -> list[str]:
        return [line[len(prefix):].strip() for line in self.lines if line.startswith(prefix)]


_PROCS: list[asyncio.subprocess.Process] = []


@pytest.fixture(autouse=True)
async def _no_leftover_workers() -> AsyncIterator[None]:
    yield
    while _PROCS:
        proc = _PROCS.pop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def spawn(emu: LiveEmulator, **config: Any) -> Worker:
    config = {"base_url": emu.base_url, "ca_file": emu.ca_file, "api_key": emu.api_key,
              "key": "call-7", **config}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fleet_worker", json.dumps(config), cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _PROCS.append(proc)
    return Worker(proc)


def taken_in(emu: LiveEmulator) -> list[str]:
    """What the model took in, in order, along the session's line of handles."""
    return list(emu.sessions[-1].context.consumed)


def audio_taken(emu: LiveEmulator) -> Counter[int]:
    return Counter(struct.unpack("<I", bytes.fromhex(c[2:10]))[0]
                   for c in taken_in(emu) if c.startswith("a:"))


def replies_to(emu: LiveEmulator, text: str) -> int:
    """How many model replies in the session's context answer the user text `text`."""
    return sum(1 for t in emu.sessions[-1].context.turns
               if t.role == "model" and f'to "{text}"' in t.text)


async def ask(worker: Worker, text: str) -> str:
    await worker.send(f"TURN {text}")
    return await worker.line("ANSWERED Reply")


async def test_planned_hand_off_mid_conversation(emu: LiveEmulator, store: str) -> None:
    """Worker A streams audio and talks; hand_off() comes while a reply is under way and a turn
    is sent during it. Worker B, up and waiting as a fleet's next worker is, connects the key
    as soon as A's call returns: it takes over at once, replays what A handed over, and goes
    on. The model took every turn in once and answered it once; the audio chunks it never took
    in are exactly as many as the workers reported."""
    a = await spawn(emu, store=store, audio=True)
    b = await spawn(emu, store=store, audio=True, standby=True)
    await a.line("LIVE")
    await b.line("READY")
    await ask(a, "turn-1")
    await a.send("TURN turn-2")  # its reply is under way when the hand-off is asked for
    await a.send("HANDOFF turn-3")  # turn-3 is sent while the hand-off waits
    result = json.loads(await a.line("HANDOFF"))
    last = int(await a.line("AUDIO-LAST"))
    await b.send(f"CONNECT {last + 1}")
    assert result["handed_off"] and result["cut"] == "" and result["transferred"] >= 1, result
    await a.rest()
    assert a.proc.returncode == 0
    await b.line("LIVE")
    took = json.loads(await b.line("TOOK-OVER"))
    assert took["handed_off"] and took["restored"] == result["transferred"], (took, result)
    assert "turn-3" in await b.line("ANSWERED")
    await ask(b, "turn-4")
    await b.send("CLOSE")
    await b.line("CLOSED")
    await b.rest()
    assert emu.sessions[-1] is emu.sessions[0]  # one conversation, resumed by B
    for turn in ("turn-1", "turn-2", "turn-3", "turn-4"):
        assert taken_in(emu).count(f"t:{turn}") == 1, (turn, taken_in(emu))
        assert replies_to(emu, turn) == 1, turn
    audio = audio_taken(emu)
    missing = [i for i in range(max(audio) + 1) if i not in audio]
    gap = sum(int(g.split()[0]) for g in a.seen("GAP") + b.seen("GAP"))
    stale = sum(1 for d in b.seen("DROPPED") if d.startswith("audio"))
    assert len(missing) == gap + stale, (missing, a.seen("GAP"), b.seen("DROPPED"))
    assert last + 1 in audio  # B's audio follows on
    # a chunk sent less than a round trip before a handle may be taken in twice, as after any
    # resume on the Gemini API (no index says what the handle holds): never more than that
    assert sum(n - 1 for n in audio.values()) <= 2, audio


@needs_redis
async def test_sigterm_drains_a_worker_running_20_sessions(emu: LiveEmulator,
                                                           redis_url: str) -> None:
    """SIGTERM: the documented one-liner hands off all 20 sessions at once and reports each;
    another worker then opens the 20 keys and each resumes the conversation it held."""
    a = await spawn(emu, store=f"redis:{redis_url}", sessions=20, key="drain")
    await a.line("LIVE", within=120)
    a.proc.send_signal(signal.SIGTERM)
    summary = json.loads(await a.line("DRAINED"))
    assert summary["complete"] and len(summary["results"]) == 20, summary
    assert all(r["handed_off"] for r in summary["results"])
    await a.rest()
    assert a.proc.returncode == 0
    first = len(emu.connections)
    b = await spawn(emu, store=f"redis:{redis_url}", sessions=20, key="drain")
    await b.line("LIVE", within=120)
    await b.send("CLOSE")
    await b.rest()
    took = [json.loads(t) for t in b.seen("TOOK-OVER")]
    assert len(took) == 20 and all(t["handed_off"] for t in took)
    assert all(c.resumed for c in emu.connections[first:first + 20])


async def test_a_new_session_is_refused_while_the_worker_drains(emu: LiveEmulator) -> None:
    """During a drain connect() is refused, naming the drain."""
    import statemachine
    from statemachine.aio import fleet

    try:
        summary = await statemachine.drain(deadline=1.0)
        assert summary.complete and summary.results == ()
        with pytest.raises(statemachine.WorkerDraining, match=r"draining .*drain\(\) called"):
            statemachine.connect(emu.client(), model="gemini-live-2.5-flash-preview")
    finally:
        fleet.accept_again()


async def test_sigkill_with_a_turn_and_a_tool_response_in_flight(emu: LiveEmulator,
                                                                  store: str) -> None:
    """A worker streaming audio is killed right after its tool response was sent (the reply to
    it not yet come), with a plain turn sent just before (durable once its send returned). The
    next worker learns both from the store, says it took over after a crash, and the model takes
    each turn in once: the tool response to a call the resumed session never issued is dropped
    with its reason, and the model asks again. The audio it had taken since the last handle is
    reported as a gap, as at least what the store was last told."""
    a = await spawn(emu, store=store, lease_ttl=1.0, audio=True)
    await a.line("LIVE")
    await ask(a, "my name is Ada")
    await a.send("TURN remember the milk")
    await a.send("TOOLTURN please call lookup")
    await a.line("TOOL-SENT")
    a.proc.send_signal(signal.SIGKILL)
    await a.proc.wait()
    b = await spawn(emu, store=store, lease_wait=10.0)
    await b.line("LIVE")
    took = json.loads(await b.line("TOOK-OVER"))
    assert not took["handed_off"] and took["restored"] >= 1, took
    chunks, kind, _ = (await b.line("GAP")).split()
    assert int(chunks) >= 1 and kind == "at-least"  # the audio A took that no handle covered
    answered = await b.line("ANSWERED")
    while "call lookup" not in answered:
        answered = await b.line("ANSWERED")
    assert "sunny" in answered  # B's application answered the call the model made again
    await b.send("CLOSE")
    await b.rest()
    for turn in ("my name is Ada", "remember the milk", "please call lookup"):
        assert taken_in(emu).count(f"t:{turn}") == 1, (turn, taken_in(emu))
    # "remember the milk" is cut by the turn right after it (as the service does), on A as on B
    for turn in ("my name is Ada", "please call lookup"):
        assert replies_to(emu, turn) == 1, (turn, [t.text for t in emu.sessions[-1].context.turns])
    dropped = b.seen("DROPPED")
    assert all("never issued" in d for d in dropped if d.startswith("tool_response"))
    audio = audio_taken(emu)  # what the resumed handle holds: no hole before the gap
    assert sorted(audio) == list(range(len(audio)))


async def test_two_workers_race_for_a_handed_off_key(emu: LiveEmulator, store: str) -> None:
    """A hands off with a turn it holds; two workers connect the key at once: exactly one takes
    it over (the other is told who holds it), and the held turn is answered once."""
    a = await spawn(emu, store=store)
    await a.line("LIVE")
    await ask(a, "hello")
    await a.send("TURN warm")  # its reply is under way when the hand-off is asked for
    await a.send("HANDOFF held turn")
    assert json.loads(await a.line("HANDOFF"))["handed_off"]
    racers = await asyncio.gather(*(spawn(emu, store=store) for _ in range(2)))
    firsts = ["L" + line for line in  # LIVE or LEASE-HELD
              await asyncio.gather(*(r.line("L") for r in racers))]
    kinds = sorted(line.split()[0] for line in firsts)
    assert kinds == ["LEASE-HELD", "LIVE"], firsts
    winner = next(r for r, f in zip(racers, firsts, strict=True) if f.startswith("LIVE"))
    loser = next(r for r, f in zip(racers, firsts, strict=True) if f.startswith("LEASE-HELD"))
    assert await loser.proc.wait() == 3
    assert "held turn" in await winner.line("ANSWERED")
    await winner.send("CLOSE")
    await winner.rest()
    assert taken_in(emu).count("t:held turn") == 1 and replies_to(emu, "held turn") == 1


@needs_redis
async def test_redis_stopped_during_a_hand_off(emu: LiveEmulator, tmp_path: Path) -> None:
    """Redis stops as a hand-off is asked for: the hand-off fails, the session stays live here
    and says why; Redis comes back (it keeps its data, as a production Redis does) and the
    hand-off is asked again: it completes, and the next worker takes the session over."""
    from .redis_server import free_port

    port = free_port()
    url = f"redis:redis://127.0.0.1:{port}/0"
    data = tmp_path / "data"
    data.mkdir()
    with redis_server(data, "--appendonly", "yes", port=port):
        a = await spawn(emu, store=url, within=2.0)
        await a.line("LIVE")
        await ask(a, "before the outage")
    await a.send("HANDOFF")
    result = json.loads(await a.line("HANDOFF"))
    assert not result["handed_off"], result
    assert re.search(r"did not take the hand-off", result["reason"]), result
    assert '"before the outage"' in await ask(a, "during the outage")  # still live here
    with redis_server(data, "--appendonly", "yes", port=port):
        await a.send("HANDOFF")
        result = json.loads(await a.line("HANDOFF"))
        assert result["handed_off"], result
        await a.rest()
        b = await spawn(emu, store=url)
        await b.line("LIVE")
        took = json.loads(await b.line("TOOK-OVER"))
        assert took["handed_off"]
        reply = await ask(b, "after the outage")
        assert '"before the outage"' in reply and '"during the outage"' in reply
        await b.send("CLOSE")
        await b.rest()


@needs_redis
async def test_a_slow_store_during_a_hand_off_never_loses_the_session(
        emu: LiveEmulator, redis_url: str) -> None:
    """Redis pauses every client for longer than the store timeout as the hand-off is written:
    the hand-off either completes (the next worker takes the session over) or the session stays
    live where it was with the reason (the next worker is told who holds it) — never neither."""
    import redis.asyncio as aioredis

    a = await spawn(emu, store=f"redis:{redis_url}", within=2.0)
    await a.line("LIVE")
    await ask(a, "before the pause")
    admin = aioredis.from_url(redis_url)
    await admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
    await admin.aclose()
    await a.send("HANDOFF")
    result = json.loads(await a.line("HANDOFF"))
    b = await spawn(emu, store=f"redis:{redis_url}")
    first = "L" + await b.line("L")  # LIVE or LEASE-HELD
    if result["handed_off"]:
        assert first.startswith("LIVE")
        assert '"before the pause"' in await ask(b, "after the pause")
        await b.send("CLOSE")
        await b.rest()
    else:
        assert "did not take the hand-off" in result["reason"], result
        assert first.startswith("LEASE-HELD")  # it stays live on A, and only there
        assert '"before the pause"' in await ask(a, "after the pause")
        await a.send("CLOSE")
        await a.rest()


async def test_drain_summarises_each_session(emu: LiveEmulator) -> None:
    """drain() hands off the sessions that have a key and reports the one without (it cannot
    move), leaving it as it was."""
    import statemachine
    from statemachine.aio import fleet
    from statemachine.stores import MemoryStore

    from .app import fast_policy

    store = MemoryStore()
    keyed = statemachine.connect(emu.client(), model="gemini-live-2.5-flash-preview",
                                 policy=fast_policy(), store=store, session_key="keyed",
                                 audit=lambda r: None)
    plain = statemachine.connect(emu.client(), model="gemini-live-2.5-flash-preview",
                                 policy=fast_policy(), audit=lambda r: None)
    await keyed.start()
    await plain.start()
    try:
        summary = await statemachine.drain(deadline=5.0)
    finally:
        fleet.accept_again()
    by_id = {r.session_id: r for r in summary.results}
    assert by_id[keyed.session_id].handed_off and keyed.state == "terminated"
    skipped = by_id[plain.session_id]
    assert not skipped.handed_off and "no session_key" in skipped.reason
    assert plain.state == "streaming" and not summary.complete and summary.handed_off == 1
    await plain.close()
    assert (await store.load_journal("keyed")).hand_off is not None


async def test_handing_off_an_ended_session_is_refused_by_the_core(emu: LiveEmulator) -> None:
    """hand_off() on a session that has ended raises SessionClosed with the end's reason (the
    core's refusal, as for a send after the end), and a second hand_off() while one is under way
    shares its outcome."""
    import statemachine
    from statemachine.stores import MemoryStore

    from .app import fast_policy

    store = MemoryStore()
    session = statemachine.connect(emu.client(), model="gemini-live-2.5-flash-preview",
                                   policy=fast_policy(), store=store, session_key="ended",
                                   audit=lambda r: None)
    await session.start()
    first, second = await asyncio.gather(session.hand_off(within=5.0),
                                         session.hand_off(within=5.0))
    assert first.handed_off and second.handed_off and session.state == "terminated"
    with pytest.raises(statemachine.SessionClosed, match=r"cannot hand off: .*handed off"):
        await session.hand_off(within=1.0)
    closed = statemachine.connect(emu.client(), model="gemini-live-2.5-flash-preview",
                                  policy=fast_policy(), store=MemoryStore(), session_key="closed",
                                  audit=lambda r: None)
    await closed.start()
    await closed.close()
    with pytest.raises(statemachine.SessionClosed, match="cannot hand off: the session has ended"):
        await closed.hand_off(within=1.0)
