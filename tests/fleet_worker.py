"""A worker process for the fleet tests: `python -m tests.fleet_worker CONFIG_JSON`.

It opens `sessions` LiveSessions (keys `key`, or `key-0`, `key-1`, ... when more than one) on
the emulator the test runs, through the store given, and answers the model's tool calls. With
`audio`, the first session streams numbered 20 ms chunks of near-silence from `audio_from`
(chunk i starts with i as 4 little-endian bytes: the emulator records what it took in). It
prints one line per event the test waits for, and obeys commands on stdin:

- `TURN <text>`: send a text turn on the first session;
- `TOOLTURN <text>`: send a turn that makes the model call `lookup`; the tool response is
  sent as soon as the call comes (with `audio`, once the next chunk went out: the handles
  before the call cannot cover that chunk, so the response's store write always carries some
  audio no handle covers), and the worker prints `TOOL-SENT` right after (a test kills it
  there: the response is in flight);
- `HANDOFF [text]`: hand the first session off; with text, that turn is sent while the hand-off
  waits for its safe point. Prints `HANDOFF <json>` and `AUDIO-LAST <i>` (the last chunk the
  session took); the worker exits once the session is handed off;
- `CLOSE`: close every session, print `CLOSED`.

With `standby`, it prints `READY` and opens the sessions on `CONNECT <first audio chunk>`.

Output: `LIVE <n>` once every session is live, `TOOK-OVER <json>` for each TookOver notice, `GAP
<chunks> at-least|exact <seconds>` for each AudioGap, `DROPPED <kind> <reason>` for each
InputDropped, `ANSWERED <text>` once a turn's reply and the handle after it arrived, `DRAINED
<json>` after SIGTERM's drain (then the worker exits 0), `LEASE-HELD <holder>` (exit 3),
`DRAINING <message>` (exit 4)."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import struct
import sys
from typing import Any

import attrs
from google import genai
from google.genai import types

import statemachine
from statemachine import AudioGap, InputDropped, Policy, ReplayPolicy, TookOver
from statemachine.core.actions import Notice
from statemachine.stores import HandleStore, LeaseHeld

from .worker import make_store

CHUNK = b"\0" * 636


def chunk(i: int) -> bytes:
    return struct.pack("<I", i) + CHUNK


def say(*parts: object) -> None:
    print(*parts, flush=True)


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.sessions: list[statemachine.LiveSession] = []
        self.audio_last = config.get("audio_from", 0) - 1
        self.audio_task: asyncio.Task[None] | None = None
        self.chunk_sent = asyncio.Event()  # set, and replaced, as each audio chunk goes out

    def client(self) -> genai.Client:
        ctx = ssl.create_default_context(cafile=self.config["ca_file"])
        return genai.Client(api_key=self.config["api_key"], http_options=types.HttpOptions(
            base_url=self.config["base_url"], async_client_args={"ssl": ctx, "proxy": None}))

    def policy(self) -> Policy:
        """The emulator's clock, with the replay window of the real service (2 s), and room for
        20 TLS handshakes at once on a loaded machine."""
        base = Policy().scaled(self.config.get("scale", 0.01))
        return attrs.evolve(base, replay=ReplayPolicy(audio_staleness=2.0),
                            limits=attrs.evolve(base.limits, setup_timeout=5.0))

    def on_notice(self, notice: Notice) -> None:
        if isinstance(notice, TookOver):
            say("TOOK-OVER", json.dumps(attrs.asdict(notice)))
        elif isinstance(notice, AudioGap):
            say("GAP", notice.chunks, "at-least" if notice.at_least else "exact",
                round(notice.until - notice.since, 3))
        elif isinstance(notice, InputDropped):
            say("DROPPED", notice.kind, notice.reason)

    async def open(self, store: HandleStore) -> None:
        n = self.config.get("sessions", 1)
        keys = [self.config["key"]] if n == 1 else [f"{self.config['key']}-{i}" for i in range(n)]
        client = self.client()
        config = types.LiveConnectConfig(
            response_modalities=[types.Modality.TEXT],
            tools=[types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup")])])

        async def one(key: str) -> statemachine.LiveSession:
            session = statemachine.connect(
                client, model="gemini-live-2.5-flash-preview", config=config,
                policy=self.policy(), store=store, session_key=key,
                lease_ttl=self.config.get("lease_ttl", 30.0),
                lease_wait=self.config.get("lease_wait", 0.0), audit=lambda record: None,
                on_notice=self.on_notice)
            await session.start()
            asyncio.get_running_loop().create_task(self.receive(session))
            return session

        self.sessions = list(await asyncio.gather(*(one(k) for k in keys)))
        say("LIVE", len(self.sessions))
        if self.config.get("audio"):
            self.audio_task = asyncio.get_running_loop().create_task(self.stream())

    async def stream(self) -> None:
        session = self.sessions[0]
        i = self.audio_last + 1
        while True:
            try:
                await session.send_realtime_input(
                    audio=types.Blob(data=chunk(i), mime_type="audio/pcm;rate=16000"))
            except statemachine.SessionClosed:
                return
            self.audio_last = i
            self.chunk_sent.set()
            self.chunk_sent = asyncio.Event()
            i += 1
            await asyncio.sleep(0.02)

    async def receive(self, session: statemachine.LiveSession) -> None:
        text, done = "", False
        try:
            async for message in session.receive():
                content = message.server_content
                if content and content.model_turn:
                    text += "".join(p.text or "" for p in content.model_turn.parts or [])
                if message.tool_call:
                    if self.audio_task is not None and not self.audio_task.done():
                        await asyncio.wait_for(self.chunk_sent.wait(), 10)
                    responses = [types.FunctionResponse(id=c.id, name=c.name,
                                                        response={"result": "sunny"})
                                 for c in message.tool_call.function_calls or []]
                    await session.send_tool_response(function_responses=responses)
                    say("TOOL-SENT", ",".join(str(c.id) for c in
                                              message.tool_call.function_calls or []))
                if content and content.turn_complete:
                    done = True
                update = message.session_resumption_update
                if done and update is not None and update.resumable:
                    if text:
                        say("ANSWERED", text)
                    text, done = "", False
        except statemachine.SessionTerminated as exc:
            say("TERMINATED", exc)

    async def command(self, line: str) -> bool:
        verb, _, rest = line.partition(" ")
        session = self.sessions[0]
        if verb in ("TURN", "TOOLTURN"):
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text=rest)]))
        elif verb == "HANDOFF":
            handing = asyncio.ensure_future(session.hand_off(self.config.get("within", 10.0)))
            if rest:
                await asyncio.sleep(0)  # the hand-off is requested: this turn is held back
                await session.send_client_content(
                    turns=types.Content(role="user", parts=[types.Part(text=rest)]))
            result = await handing
            if self.audio_task is not None and result.handed_off:
                await self.audio_task
            say("HANDOFF", json.dumps(attrs.asdict(result)))
            say("AUDIO-LAST", self.audio_last)
            return not result.handed_off  # handed off: this worker is done
        elif verb == "CLOSE":
            if self.audio_task is not None:
                self.audio_task.cancel()
            for s in self.sessions:
                await s.close()
            say("CLOSED")
            return False
        return True


async def main(config: dict[str, Any]) -> int:
    store = make_store(config["store"])
    worker = Worker(config)
    stop = asyncio.Event()
    statemachine.drain_on(signal.SIGTERM, deadline=config.get("deadline", 10.0),
                          then=lambda summary: (say("DRAINED", json.dumps(attrs.asdict(summary))),
                                                stop.set()))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    if config.get("standby"):  # up and ready, as a fleet's next worker is: connect on command
        say("READY")
        _, _, audio_from = (await reader.readline()).decode().partition(" ")  # CONNECT <i>
        worker.audio_last = int(audio_from or 0) - 1
    try:
        await worker.open(store)
    except LeaseHeld as held:
        say("LEASE-HELD", held.holder)
        return 3
    except statemachine.WorkerDraining as exc:
        say("DRAINING", exc)
        return 4
    try:
        while not stop.is_set():
            read = asyncio.ensure_future(reader.readline())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not read.done():
                read.cancel()
                break
            line = read.result().decode().strip()
            if not line or not await worker.command(line):
                break
    finally:
        await store.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
