"""A worker process for the store tests: `python -m tests.worker CONFIG_JSON`.

It connects a LiveSession to the emulator the test runs (base URL, CA file, key in the config),
with the store and session key given, and then:
- mode "first": says "my name is Ada", waits until the handle after that turn is in the store,
  prints READY and waits to be killed;
- mode "second": asks "what is my name?" and prints REPLY <text>;
- mode "hold": prints CONNECTED and keeps the session until killed;
- on LeaseHeld it prints LEASE-HELD <holder> and exits 3.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from google import genai
from google.genai import types

import statemachine
from statemachine.stores import HandleStore, LeaseHeld, SQLiteStore


def make_store(spec: str) -> HandleStore:
    kind, _, where = spec.partition(":")
    if kind == "sqlite":
        return SQLiteStore(where)
    from statemachine.stores import RedisStore

    return RedisStore(where, prefix="workers:")


async def ask(session: statemachine.LiveSession, text: str) -> str:
    """One turn; returns the reply once the resumable handle covering it has arrived."""
    await session.send_client_content(
        turns=types.Content(role="user", parts=[types.Part(text=text)]), turn_complete=True)
    reply, done = "", False
    async for message in session.receive():
        content = message.server_content
        if content and content.model_turn:
            reply += "".join(p.text or "" for p in content.model_turn.parts or [])
        done = done or bool(content and content.turn_complete)
        update = message.session_resumption_update
        if done and update and update.resumable:
            return reply
    raise RuntimeError("session ended")


async def main(config: dict[str, Any]) -> int:
    import ssl

    ctx = ssl.create_default_context(cafile=config["ca_file"])
    client = genai.Client(api_key=config["api_key"], http_options=types.HttpOptions(
        base_url=config["base_url"], async_client_args={"ssl": ctx, "proxy": None}))
    store = make_store(config["store"])
    try:
        async with statemachine.connect(
            client, model="gemini-live-2.5-flash-preview",
            config=types.LiveConnectConfig(response_modalities=[types.Modality.TEXT]),
            store=store, session_key=config["key"], lease_ttl=config.get("lease_ttl", 30.0),
            lease_wait=config.get("lease_wait", 0.0), audit=lambda record: None,
        ) as session:
            if config["mode"] == "hold":
                print("CONNECTED", flush=True)
                await asyncio.Event().wait()
            if config["mode"] == "first":
                await ask(session, "my name is Ada")
                await session.flush_handle()
                print("READY", flush=True)
                await asyncio.Event().wait()
            reply = await ask(session, "what is my name?")
            print("REPLY", reply, flush=True)
            print("RESUMED", session.core.counters.resumes, flush=True)
    except LeaseHeld as held:
        print("LEASE-HELD", held.holder, flush=True)
        return 3
    finally:
        await store.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
