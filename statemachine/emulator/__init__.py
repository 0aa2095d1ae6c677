"""A local Live API emulator that the real google-genai client talks to over TLS.

    async with LiveEmulator(EmulatorSettings(time_scale=0.001)) as emu:
        client = emu.client()
        async with client.aio.live.connect(model="gemini-live-2.5-flash-preview") as s:
            ...

It serves the Gemini API and Vertex WebSocket paths on 127.0.0.1, runs a scripted model whose
replies quote the conversation it remembers, issues and honours resumption handles, enforces
connection and session limits (scaled by `time_scale`), and injects faults on demand: per
connection through `plan(ConnectionPlan(...))`, or on a live connection through
`emu.connections[i]` (`drop()`, `close()`, `go_away()`, `silence()`, `send_garbage()`).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import deque
from http import HTTPStatus
from types import TracebackType
from typing import Any

from google import genai
from google.genai import types
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from .model import Context
from .server import Connection, ConnectionPlan, EmulatedSession, Frame, HandleEntry
from .settings import EmulatorSettings
from .tls import LocalTLS

__all__ = ["Connection", "ConnectionPlan", "EmulatorSettings", "Frame", "LiveEmulator"]

_PATH = re.compile(
    r"^/ws/(?:"
    r"google\.ai\.generativelanguage\.(?:v1|v1beta|v1alpha)\.GenerativeService\."
    r"BidiGenerateContent(?:Constrained)?"
    r"|google\.cloud\.aiplatform\.(?:v1|v1beta1)\.LlmBidiService/BidiGenerateContent"
    r")$"
)

DEFAULT_MODEL = "gemini-live-2.5-flash-preview"


class LiveEmulator:
    """The emulated service. Use as `async with LiveEmulator(...) as emu:`."""

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.settings = settings or EmulatorSettings()
        self.host = host
        self._port = port
        self.connections: list[Connection] = []
        self.sessions: list[EmulatedSession] = []
        self.handles: dict[str, HandleEntry] = {}
        self.issued_handles: list[str] = []
        self.refused_handshakes: list[tuple[str, int]] = []
        self.refuse_resumes = False
        self.unknown_models: set[str] = set()
        self._plans: deque[ConnectionPlan] = deque()
        self._accepted = asyncio.Condition()
        self._tls: LocalTLS | None = None
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tls = LocalTLS()
        self._server = await serve(
            self._handle,
            self.host,
            self._port,
            ssl=self._tls.server_context(),
            process_request=self._check_request,
            max_size=16 * 1024 * 1024,
            ping_interval=None,
        )
        sock = next(iter(self._server.sockets))
        self._port = sock.getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._tls is not None:
            self._tls.cleanup()
            self._tls = None

    async def __aenter__(self) -> LiveEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- how clients reach it ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """For `GOOGLE_GEMINI_BASE_URL` or `HttpOptions(base_url=...)` (no trailing slash)."""
        return f"https://{self.host}:{self._port}"

    @property
    def ca_file(self) -> str:
        """The CA certificate to trust, for `SSL_CERT_FILE`."""
        assert self._tls is not None, "start the emulator first"
        return self._tls.ca_file

    @property
    def api_key(self) -> str:
        return self.settings.api_key

    def http_options(self, **async_client_args: Any) -> types.HttpOptions:
        """HttpOptions that reach this emulator: its base URL, its CA, and no proxy."""
        assert self._tls is not None, "start the emulator first"
        args: dict[str, Any] = {"ssl": self._tls.client_context(), "proxy": None}
        args.update(async_client_args)
        return types.HttpOptions(base_url=self.base_url, async_client_args=args)

    def client(self, *, vertexai: bool = False, **async_client_args: Any) -> genai.Client:
        """A real `genai.Client` pointed at this emulator (Gemini API, or Vertex with vertexai)."""
        return genai.Client(
            api_key=self.api_key,
            vertexai=vertexai or None,
            http_options=self.http_options(**async_client_args),
        )

    # -- scripting --------------------------------------------------------------------------------

    def plan(self, *plans: ConnectionPlan) -> None:
        """Queue fault plans; each new connection takes the next one (default: no faults)."""
        self._plans.extend(plans)

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def knows_model(self, name: str) -> bool:
        return name not in self.unknown_models and name.startswith("gemini-")

    def handle_expired(self, entry: HandleEntry) -> bool:
        issued = entry.issued_at
        if entry.session.last_closed_at is not None:
            issued = max(issued, entry.session.last_closed_at)
        return self.now() - issued > self.settings.seconds("handle_validity")

    def new_session(self) -> EmulatedSession:
        session = EmulatedSession(
            id="s-" + secrets.token_hex(6), context=Context(), started_at=self.now()
        )
        self.sessions.append(session)
        return session

    def frames(self, direction: str | None = None) -> list[Frame]:
        """Every recorded frame of every connection, in order per connection."""
        return [
            f for c in self.connections for f in c.frames
            if direction is None or f.direction == direction
        ]

    # -- server -----------------------------------------------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not _PATH.match(request.path.split("?")[0]):
            self.refused_handshakes.append((request.path, 404))
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found.\n")
        key = request.headers.get("x-goog-api-key")
        auth = request.headers.get("Authorization", "")
        if not key and auth.startswith("Token "):
            key = auth[len("Token "):]
        if key != self.settings.api_key:
            self.refused_handshakes.append((request.path, 401))
            return connection.respond(
                HTTPStatus.UNAUTHORIZED, "API key not valid. Please pass a valid API key.\n"
            )
        return None

    async def wait_connections(self, count: int) -> None:
        """Return once `count` connections have been accepted."""
        async with self._accepted:
            await self._accepted.wait_for(lambda: len(self.connections) >= count)

    async def _handle(self, ws: ServerConnection) -> None:
        plan = self._plans.popleft() if self._plans else ConnectionPlan()
        conn = Connection(self, ws, len(self.connections) + 1, plan)
        self.connections.append(conn)
        async with self._accepted:
            self._accepted.notify_all()
        await conn.run()
