"""`send_context_update` is part of the session: journaled, in order with the other input,
replayed after a resume until a handle covers it, never applied twice; a fresh session's setup
carries the latest system instruction and tools."""

from __future__ import annotations

from typing import Any

import attrs
from google.genai import types

from statemachine.core.actions import ContextLost, InputDropped
from statemachine.emulator import EmulatorSettings, LiveEmulator

from .app import SCALE, App, fast_policy, start

MODEL_25 = "gemini-live-2.5-flash-preview"
SLOW = EmulatorSettings(time_scale=SCALE, chunk_interval=1.0)
LOOKUP = [types.Tool(function_declarations=[types.FunctionDeclaration(
    name="lookup", behavior=types.Behavior.BLOCKING)])]


def received(emu: LiveEmulator, key: str) -> list[dict[str, Any]]:
    return [m[key] for c in emu.connections for m in c.received if key in m]


def setups(emu: LiveEmulator) -> list[dict[str, Any]]:
    return [c.received[0]["setup"] for c in emu.connections if c.received]


def tool_calls(app: App) -> list[str]:
    return [c.name or "" for m in app.messages if m.tool_call
            for c in m.tool_call.function_calls or []]


async def test_an_update_is_taken_in_order_with_the_other_input() -> None:
    """A turn sent right after an update is answered with the update's tools."""
    async with LiveEmulator(SLOW) as emu:
        app = await start(emu, model=MODEL_25)
        await app.session.send_context_update(system_instruction="Be brief.", tools=LOOKUP)
        await app.session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="please call lookup")]))
        await app.wait_until(lambda: bool(tool_calls(app)))
        assert tool_calls(app) == ["lookup"]
        assert emu.sessions[-1].context.system == "Be brief."
        await app.stop()


async def test_an_update_no_handle_covers_is_replayed_once_after_a_resume() -> None:
    """2.5 issues handles at turn boundaries only: the connection drops after the update went
    out and before a handle covered it. The resumed session (the handle before the update)
    gets it again, so the model has it, once."""
    async with LiveEmulator(SLOW) as emu:
        app = await start(emu, model=MODEL_25)
        await app.ask("one")
        await app.session.send_context_update(system_instruction="Speak like a pirate.")
        await app.wait_until(lambda: bool(received(emu, "context_update")))
        emu.connections[-1].drop()
        assert (await app.ask("two")).startswith('Reply 2 to "two". I remember "one"')
        assert len(received(emu, "context_update")) == 2  # sent, then replayed
        context = emu.sessions[-1].context
        assert context.system == "Speak like a pirate."
        assert context.updates == 1  # the handle did not hold it: the replay is its only copy
        assert len(emu.sessions) == 1
        await app.stop()


async def test_an_update_a_handle_covers_is_not_sent_again() -> None:
    async with LiveEmulator(SLOW) as emu:
        app = await start(emu, model=MODEL_25)
        await app.session.send_context_update(system_instruction="Speak like a pirate.")
        await app.ask("one")  # the handle after this turn covers the update
        emu.connections[-1].drop()
        await app.ask("two")
        assert len(received(emu, "context_update")) == 1
        assert emu.sessions[-1].context.updates == 1
        # the resume's setup carries what the handle holds, so a service that read it would
        # not go back either
        assert setups(emu)[-1]["system_instruction"]["parts"][0]["text"] == \
            "Speak like a pirate."
        await app.stop()


async def test_an_update_an_answered_turn_followed_is_covered_however_long_the_round_trip(
) -> None:
    """The server answered a turn sent after the update, so it had the update: the handle
    after that answer covers it, even when the crossing window (a slow link's, or a ping
    measured on a busy machine: here a second) is longer than the whole turn took."""
    policy = fast_policy()
    policy = attrs.evolve(policy, replay=attrs.evolve(policy.replay, crossing_slack=1.0))
    async with LiveEmulator(SLOW) as emu:
        app = await start(emu, policy, model=MODEL_25)
        await app.session.send_context_update(system_instruction="Speak like a pirate.")
        await app.ask("one")
        emu.connections[-1].drop()
        assert (await app.ask("two")).startswith('Reply 2 to "two". I remember "one"')
        assert len(received(emu, "context_update")) == 1
        assert emu.sessions[-1].context.updates == 1
        assert not app.noticed(InputDropped)
        await app.stop()


async def test_a_fresh_session_starts_with_the_latest_instruction_and_tools() -> None:
    """The handle is refused (context lost): the new session's setup carries the latest
    system instruction and tool list, not the ones the application started with, and the
    update is not reported dropped (the setup delivered it)."""
    async with LiveEmulator(SLOW) as emu:
        app = await start(emu, model=MODEL_25, config=types.LiveConnectConfig(
            response_modalities=[types.Modality.TEXT], system_instruction="Be formal."))
        await app.session.send_context_update(system_instruction="Be casual.", tools=LOOKUP)
        await app.ask("one")
        emu.settings = attrs.evolve(emu.settings, handle_validity=0.0)
        emu.connections[-1].drop()
        await app.wait_until(lambda: app.noticed(ContextLost))
        await app.ask("two")
        assert len(emu.sessions) == 2
        fresh = setups(emu)[-1]
        assert fresh["system_instruction"]["parts"][0]["text"] == "Be casual."
        assert [d["name"] for d in fresh["tools"][0]["function_declarations"]] == ["lookup"]
        assert emu.sessions[-1].context.system == "Be casual."
        assert len(received(emu, "context_update")) == 1
        assert not [n for n in app.notices if isinstance(n, InputDropped)
                    and n.kind == "context_update"]
        await app.stop()


async def test_an_update_sent_while_reconnecting_reaches_the_fresh_session_by_its_setup() -> None:
    """Sent while no connection is up and the handle will be refused: carried by the fresh
    setup, not replayed after it (applied once)."""
    async with LiveEmulator(SLOW) as emu:
        app = await start(emu, model=MODEL_25)
        await app.ask("one")
        emu.settings = attrs.evolve(emu.settings, handle_validity=0.0)
        emu.refuse_resumes = True
        emu.connections[-1].drop()
        await app.wait_until(lambda: app.session.state != "streaming")
        await app.session.send_context_update(system_instruction="Be casual.")
        await app.wait_until(lambda: len(emu.sessions) == 2 and app.session.state == "streaming")
        await app.ask("two")
        assert emu.sessions[-1].context.system == "Be casual."
        assert emu.sessions[-1].context.updates == 0  # by the setup, not a second message
        assert received(emu, "context_update") == []
        await app.stop()
