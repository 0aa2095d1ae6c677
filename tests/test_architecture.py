"""The architecture as a test: the core imports no I/O, the shell does not load the emulator,
every state has documented entry actions, google-genai's private members are where the adapter
expects them, and everything the README uses is importable from `statemachine`."""

from __future__ import annotations

import ast
import collections.abc
import re
import subprocess
import sys
from pathlib import Path

import pytest

import statemachine
from statemachine.core import table
from statemachine.core.engine import Lifecycle
from statemachine.core.table import State

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "statemachine" / "core"
FORBIDDEN = ("asyncio", "google", "websockets", "statemachine.emulator", "statemachine.aio",
             "statemachine.stores")


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules a source file imports (relative ones resolved)."""
    package = "statemachine." + ".".join(path.relative_to(ROOT / "statemachine").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_modules_import_no_io(path: Path) -> None:
    """No module of the core imports asyncio, google-genai, websockets, the emulator, the
    shell or the stores (which use asyncio)."""
    bad = sorted(n for n in _imports(path) if n.startswith(FORBIDDEN) or n == "statemachine.aio")
    assert not bad, f"{path.name} imports {bad}"


def test_importing_the_core_and_the_session_loads_no_emulator() -> None:
    """In a fresh interpreter: the core loads neither asyncio nor google-genai; the session
    loads google-genai but not the emulator (nor its TLS or server dependencies)."""
    code = (
        "import sys\n"
        "import statemachine.core.engine\n"
        "core = {m for m in sys.modules if m.split('.')[0] in ('google', 'websockets')}\n"
        "import statemachine.aio.session\n"
        "import statemachine\n"
        "statemachine.connect\n"
        "emu = sorted(m for m in sys.modules if m.startswith('statemachine.emulator')\n"
        "             or m.split('.')[0] == 'trustme' or m == 'websockets.asyncio.server')\n"
        "print(sorted(core), emu)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=True).stdout.strip()
    assert out == "[] []"


def test_every_state_has_documented_entry_actions() -> None:
    """Each state's entry actions are described beside the table and implemented by name."""
    assert set(table.ENTRY_ACTIONS) == set(State)
    for state in State:
        assert callable(getattr(Lifecycle, f"_enter_{state.value}", None)), state


def test_google_genai_private_members_are_present() -> None:
    """The adapter's private members exist in the installed google-genai: a release that moves
    one fails here, naming it, rather than deep inside a session."""
    import inspect

    from google.genai import _transformers
    from google.genai.live import AsyncSession

    from statemachine.aio import sdk

    assert set(sdk.PRIVATE_MEMBERS) == {"AsyncSession._receive", "AsyncSession._ws",
                                        "google.genai._transformers.t_model",
                                        "BaseApiClient._websocket_ssl_ctx",
                                        "BaseApiClient.api_key",
                                        "BaseApiClient._http_options",
                                        "websockets Connection.recv_messages.put",
                                        "websockets Connection.recv_messages.frames.queue"}
    assert inspect.iscoroutinefunction(AsyncSession._receive), "AsyncSession._receive"
    from google import genai

    client = genai.Client(api_key="k")
    assert isinstance(client._api_client._websocket_ssl_ctx, dict), \
        "BaseApiClient._websocket_ssl_ctx is no longer the dict passed to websockets' connect"
    assert client._api_client.api_key == "k", "BaseApiClient.api_key"
    assert isinstance(client._api_client._http_options, genai.types.HttpOptions), \
        "BaseApiClient._http_options"
    init = inspect.getsource(AsyncSession.__init__)
    assert "self._ws" in init, "AsyncSession._ws is no longer set by AsyncSession.__init__"
    assert callable(_transformers.t_model), "google.genai._transformers.t_model"
    assert sdk.CAN_WATCH, ("the websockets connect google-genai calls no longer takes "
                           "create_connection: watch_connect cannot see a connection open")


async def test_adapter_members_work_on_a_live_connection() -> None:
    """The adapter reads one message, pings and closes through those members, against the
    emulator with the real SDK."""
    from statemachine.aio import sdk
    from statemachine.emulator import LiveEmulator

    async with LiveEmulator() as emu:
        client = emu.client()
        async with client.aio.live.connect(model="gemini-live-2.5-flash-preview",
                                           config={"response_modalities": ["TEXT"]}) as live:
            assert await sdk.ping(live, within=5) >= 0
            clock = iter(range(1, 1000))
            arrived = sdk.stamp_arrivals(live, lambda: float(next(clock)))
            await live.send_client_content(
                turns={"role": "user", "parts": [{"text": "hi"}]}, turn_complete=True)
            message = await sdk.receive_one(live)
            assert message.server_content is not None
            assert arrived() == 1.0, "websockets no longer queues messages through recv_messages"
            assert isinstance(live._ws.recv_messages.frames.queue, collections.abc.Sized), \
                "websockets Connection.recv_messages.frames.queue"
            await sdk.close(live, within=2)


def test_readme_names_are_public() -> None:
    """Every `statemachine.X` the README and the user docs mention, and every notice, is
    importable from the package itself."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text() for page in pages)
    used = set(re.findall(r"(?<!named `)statemachine\.([A-Za-z_]\w*)", text))
    modules = {"core", "aio", "audit", "stores", "emulator", "testing", "bench"}
    for name in sorted(used - modules):
        assert hasattr(statemachine, name), f"statemachine.{name} (README) is not public"
    for name in ("Resumed", "InputDropped", "ReplyInterrupted", "RepeatedReply", "ContextLost",
                 "Ended", "StoreDegraded", "StoreRecovered", "StoreError", "LeaseHeld",
                 "Notice", "connect", "LiveSession", "Policy", "testing"):
        assert hasattr(statemachine, name), name


def _fields(obj: object) -> dict[str, tuple[int, str]]:
    """Every attribute of `obj` (slots and `__dict__`), by identity and by its text."""
    names = {n for cls in type(obj).__mro__ for n in getattr(cls, "__slots__", ())}
    names |= set(getattr(obj, "__dict__", {}))
    names -= {"__weakref__", "__dict__"}
    values = {n: getattr(obj, n, None) for n in sorted(names)}
    return {n: (id(v), repr(v)) for n, v in values.items()}


def _read_properties(obj: object) -> list[str]:
    read = []
    for cls in type(obj).__mro__:
        for name, member in vars(cls).items():
            if isinstance(member, property):
                getattr(obj, name)
                read.append(name)
    return read


async def test_properties_never_mutate() -> None:
    """Reading a property of the engine or of a session changes nothing of it (issue 22): a
    driven engine with retries outside its window, and a session before its first notice."""
    from google import genai

    from statemachine import Policy, RetryPolicy
    from statemachine.aio.session import LiveSession
    from statemachine.testing import CoreDriver

    d = CoreDriver(policy=Policy(retry=RetryPolicy(session_window=1.0)))
    d.connect()
    d.setup_complete()
    d.handle("h")
    d.lose(1011, "internal error")
    d.advance(2.0)
    d.setup_complete()
    d.advance(5.0)
    d.model_output("later")  # the engine's time moves on: the retry is out of the window
    session = LiveSession(genai.Client(api_key="test-key"), model="gemini-3.8-live")
    try:
        for obj in (d.engine, session):
            before = _fields(obj)
            assert _read_properties(obj)
            after = _fields(obj)
            changed = [n for n in before if before[n] != after[n]]
            assert not changed, f"{type(obj).__name__}: reading properties changed {changed}"
    finally:
        await session.close()
