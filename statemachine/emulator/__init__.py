"""A local Live API emulator that the real google-genai client talks to over TLS.

    async with LiveEmulator(EmulatorSettings(time_scale=0.001)) as emu:
        client = emu.client()
        async with client.aio.live.connect(model="gemini-3.8-live") as s:
            ...

It serves the Gemini API and Vertex WebSocket paths on 127.0.0.1, runs a scripted model whose
replies quote the conversation it remembers, issues and honours resumption handles, enforces
connection and session limits (scaled by `time_scale`), and injects faults on demand: per
connection through `plan(ConnectionPlan(...))`, or on a live connection through
`emu.connections[i]` (`drop()`, `close()`, `go_away()`, `silence()`, `send_garbage()`).

Its durations are scaled by `time_scale`, so a client must plan with the same scale: open
sessions with `emu.connect(...)` (or pass `policy=emu.policy()` to `statemachine.connect`);
the default `Policy()` against a scaled emulator forces every rotation at the deadline.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import deque
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from google import genai
from google.genai import types
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from ..core.policy import Policy
from ..models import BENCH_MODEL, DEFAULT_MODEL
from .model import Context
from .profiles import LIVE_MODELS, Profile, profile_for
from .server import Connection, ConnectionPlan, EmulatedSession, Frame, HandleEntry
from .settings import EmulatorSettings
from .tls import LocalTLS
from .tokens import PREFIX as TOKEN_PREFIX
from .tokens import EphemeralToken, new_token_name

if TYPE_CHECKING:
    from ..aio.session import LiveSession

__all__ = [
    "BENCH_MODEL",
    "DEFAULT_MODEL",
    "LIVE_MODELS",
    "Connection",
    "ConnectionPlan",
    "EmulatorSettings",
    "EphemeralToken",
    "Frame",
    "LiveEmulator",
    "Profile",
]

#: the JavaScript SDK joins a base URL ending in "/" with "/ws/...": a double slash
_PATH = re.compile(
    r"^//?ws/(?:"
    r"google\.ai\.generativelanguage\.(?:v1|v1beta|v1alpha)\.GenerativeService\."
    r"BidiGenerateContent(?:Constrained)?"
    r"|google\.cloud\.aiplatform\.(?:v1|v1beta1)\.LlmBidiService/BidiGenerateContent"
    r")$"
)




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
        #: resumes refused because the session's old socket was still held (`old_socket_hold`)
        self.old_socket_refusals = 0
        self.refused_handshakes: list[tuple[str, int]] = []
        self.refuse_resumes = False
        self.unknown_models: set[str] = set()
        self.tokens: dict[str, EphemeralToken] = {}
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

    def client(
        self, *, vertexai: bool = False, api_key: str | None = None, **async_client_args: Any
    ) -> genai.Client:
        """A real `genai.Client` pointed at this emulator (Gemini API, or Vertex with vertexai).
        `api_key` may be an ephemeral token from `mint_token` (the SDK then dials the
        constrained endpoint, which wants `api_version="v1alpha"`)."""
        options = self.http_options(**async_client_args)
        if api_key is not None and api_key.startswith(TOKEN_PREFIX):
            options.api_version = "v1alpha"
        client = genai.Client(
            api_key=api_key or self.api_key, vertexai=vertexai or None, http_options=options
        )
        # The client carries the emulator's clock: a session made from it without a policy
        # plans on that clock (statemachine.aio.sdk.time_scale), so the default Policy() does
        # not force every rotation at the deadline against a scaled emulator.
        client._statemachine_time_scale = self.settings.time_scale  # type: ignore[attr-defined]
        return client

    def policy(self, base: Policy | None = None) -> Policy:
        """`base` (default `Policy()`) on this emulator's clock: every duration times
        `time_scale`. Without it a scaled emulator's goAway notices are shorter than the
        policy's margin, so every rotation is forced at the deadline and cuts the reply."""
        from ..aio.arguments import check_policy

        check_policy("LiveEmulator.policy", base)
        return (base or Policy()).scaled(self.settings.time_scale)

    def connect(
        self,
        *,
        model: str = "gemini-live-2.5-flash-preview",
        config: Any = None,
        policy: Policy | None = None,
        vertexai: bool = False,
        **kwargs: Any,
    ) -> LiveSession:
        """`statemachine.connect` against this emulator, with a policy on its clock
        (`policy` is scaled here: give it in real-service seconds, or leave the default)."""
        from ..aio.session import connect, websocket_args

        scaled = self.policy(policy)
        client = self.client(vertexai=vertexai, **websocket_args(scaled))
        return connect(client, model=model, config=config, policy=scaled, **kwargs)

    def mint_token(
        self, *, expire_in: float = 1800.0, uses: int = 1, new_session_expire_in: float = 60.0
    ) -> str:
        """An ephemeral token (`auth_tokens/...`), like the service's `auth_tokens.create`:
        valid for `expire_in` emulated seconds, able to start `uses` new sessions within
        `new_session_expire_in`. Resumes do not spend a use; expiry ends its connections."""
        if uses < 1 or expire_in <= 0 or new_session_expire_in <= 0:
            raise ValueError("a token needs uses >= 1 and positive expiry times")
        scale, now = self.settings.time_scale, self.now()
        name = new_token_name()
        self.tokens[name] = EphemeralToken(
            name=name, expire_at=now + expire_in * scale,
            new_session_until=now + min(new_session_expire_in, expire_in) * scale,
            uses_left=uses,
        )
        return name

    # -- scripting --------------------------------------------------------------------------------

    def plan(self, *plans: ConnectionPlan) -> None:
        """Queue fault plans; each new connection takes the next one (default: no faults)."""
        self._plans.extend(plans)

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def expire_token(self, name: str) -> None:
        """End an ephemeral token now: its live connections close as at its expiry time."""
        from .wire import CLOSE_TOKEN_EXPIRED

        self.tokens[name].expire_at = self.now()
        for conn in self.connections:
            if conn.token is self.tokens[name] and not conn.done.is_set():
                await conn.close(1008, CLOSE_TOKEN_EXPIRED)

    def knows_model(self, name: str) -> bool:
        return name not in self.unknown_models and (
            profile_for(name, self.settings.extra_models) is not None
        )

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

    def _credentials(self, request: Request) -> tuple[str | None, str | None]:
        """(API key, ephemeral token) as the SDKs send them: Python in headers
        (`x-goog-api-key`, `Authorization: Token ...`), JavaScript in the query (`?key=`,
        `?access_token=`)."""
        query = parse_qs(request.path.partition("?")[2])
        auth = request.headers.get("Authorization", "")
        keys = [request.headers.get("x-goog-api-key"), *query.get("key", [])]
        tokens = [
            auth[len("Token "):] if auth.startswith("Token ") else None,
            *query.get("access_token", []),
            *keys,
        ]
        token = next((t for t in tokens if t and t.startswith(TOKEN_PREFIX)), None)
        key = next((k for k in keys if k and not k.startswith(TOKEN_PREFIX)), None)
        return key, token

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]  # not urlsplit: it reads //ws as a host
        if not _PATH.match(path):
            self.refused_handshakes.append((request.path, 404))
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found.\n")
        key, token = self._credentials(request)
        if token is not None and path.endswith("Constrained"):
            entry = self.tokens.get(token)
            if entry is not None and not entry.expired(self.now()):
                return None
            self.refused_handshakes.append((path, 401))
            return connection.respond(
                HTTPStatus.UNAUTHORIZED, "The ephemeral token is invalid or expired.\n"
            )
        if key != self.settings.api_key or path.endswith("Constrained"):
            self.refused_handshakes.append((path, 401))
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
        token = None
        if ws.request is not None and ws.request.path.partition("?")[0].endswith("Constrained"):
            token = self.tokens.get(self._credentials(ws.request)[1] or "")
        conn = Connection(self, ws, len(self.connections) + 1, plan, token)
        self.connections.append(conn)
        async with self._accepted:
            self._accepted.notify_all()
        await conn.run()
