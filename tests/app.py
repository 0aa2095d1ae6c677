"""A minimal application on top of LiveSession, for end-to-end tests."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
from google.genai import types

import statemachine
from statemachine import Limits, Policy, ReplayPolicy, RetryPolicy
from statemachine.emulator import EmulatorSettings, LiveEmulator
from statemachine.testing import Trace

from .sdk import MODEL, user

SCALE = 0.01
#: Emulator: connections of 0.6 s with a 0.2 s goAway lead, handles valid 72 s, replies in ~50 ms.
FAST_ROTATION = EmulatorSettings(
    time_scale=SCALE, connection_lifetime=60.0, go_away_lead=20.0, chunk_interval=1.0
)


def fast_policy(**limits: Any) -> Policy:
    """The default policy scaled like the emulator, with room for TLS on a loaded machine."""
    base = Policy(
        limits=Limits(go_away_lead=20.0, go_away_margin=2.0, setup_timeout=300.0,
                      handle_validity=7200.0),
        retry=RetryPolicy(base_delay=1.0, max_delay=20.0),
        replay=ReplayPolicy(audio_staleness=200.0),
    ).scaled(SCALE)
    if limits:
        base = attrs.evolve(base, limits=attrs.evolve(base.limits, **limits))
    return base


class App:
    """Collects replies per turn and every record and notice; `ask` waits for the next reply."""

    def __init__(self, session: statemachine.LiveSession, trace: Trace | None = None) -> None:
        self.session = session
        self.trace = trace or Trace()
        self.messages: list[types.LiveServerMessage] = []
        self.replies: list[str] = []
        self.records = self.trace.records
        self.notices = self.trace.notices
        self.error: BaseException | None = None
        self._text = ""
        self._reply = asyncio.Condition()
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._receive())

    async def _receive(self) -> None:
        try:
            async for m in self.session.receive():
                self.messages.append(m)
                self._changed.set()
                sc = m.server_content
                if sc and sc.model_turn:
                    self._text += "".join(p.text or "" for p in sc.model_turn.parts or [])
                if sc and sc.turn_complete:
                    async with self._reply:
                        if not sc.interrupted:
                            self.replies.append(self._text)
                        self._text = ""
                        self._reply.notify_all()
        except BaseException as exc:
            self.error = exc
            raise

    def restart_receiving(self) -> None:
        """Iterate receive() again in a new task (after a test cancelled the first)."""
        self.error = None
        self._task = asyncio.get_running_loop().create_task(self._receive())

    def changed(self, *_: object) -> None:
        """Called on every audit record and notice (and message): wakes `wait_until`."""
        self._changed.set()

    async def wait_until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait, without polling, until `predicate()` holds after some message, record or notice."""
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def noticed(self, kind: type) -> bool:
        return any(isinstance(n, kind) for n in self.notices)

    async def wait_replies(self, n: int, within: float = 15.0) -> list[str]:
        async with asyncio.timeout(within), self._reply:
            await self._reply.wait_for(lambda: len(self.replies) >= n)
        return self.replies

    async def ask(self, text: str, within: float = 15.0) -> str:
        n = len(self.replies)
        await self.session.send_client_content(turns=user(text), turn_complete=True)
        await self.wait_replies(n + 1, within)
        return self.replies[n]

    async def stop(self) -> None:
        await self.session.close()
        await asyncio.wait_for(self._task, 5)

    def transitions(self) -> list[tuple[str, str, str]]:
        return self.trace.transitions()

    def states(self) -> list[str]:
        return self.trace.states()


def open_session(emu: LiveEmulator, policy: Policy | None = None, *, vertex: bool = False,
                 config: types.LiveConnectConfig | None = None, model: str = MODEL,
                 recorder: Trace | None = None,
                 **session_kwargs: Any) -> statemachine.LiveSession:
    """statemachine.connect(...) against the emulator, with a client set up as users should."""
    recorder = recorder or Trace()
    return statemachine.connect(
        emu.client(vertexai=vertex, **statemachine.websocket_args()),
        model=model,
        config=config or types.LiveConnectConfig(response_modalities=[types.Modality.TEXT]),
        policy=policy or fast_policy(),
        audit=recorder.record,
        on_notice=recorder.notice,
        **session_kwargs,
    )


async def start(emu: LiveEmulator, policy: Policy | None = None, **kw: Any) -> App:
    recorder = Trace()
    session = await open_session(emu, policy, recorder=recorder, **kw).__aenter__()
    app = App(session, recorder)
    recorder.on_change = app.changed
    return app


def user_texts_consumed(emu: LiveEmulator) -> Counter[str]:
    """How many times the emulated model took each user text as a new turn (history excluded)."""
    seen: Counter[str] = Counter()
    for conn in emu.connections:
        for msg in conn.received:
            content = msg.get("client_content")
            if content and content.get("turn_complete"):
                for turn in content.get("turns") or []:
                    seen["".join(p.get("text", "") for p in turn.get("parts") or [])] += 1
    return seen


def context_user_texts(emu: LiveEmulator) -> list[str]:
    return emu.sessions[-1].context.user_texts()
