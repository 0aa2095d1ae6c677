"""What a close means: the Live API's (undocumented) close codes mapped to what to do next.

Sources are the field reports collected in shared/protocol.md. The mapping is data, so an
application can read it, and tests go over it row by row.
"""

from __future__ import annotations

import enum
import re

import attrs

from .events import Failure


class Disposition(enum.StrEnum):
    """What a lost connection calls for."""

    RESUME = "resume"  # resume at once with the handle
    BACKOFF = "backoff"  # transient backend fault: back off, then resume
    REJECTED = "rejected"  # the server refused the resumption handle
    #: the server refused the resume because it still holds the session's old socket: try
    #: again shortly, within `RetryPolicy.old_socket_wait` (see oldsocket.py)
    WAIT = "wait"
    FATAL = "fatal"  # no retry can fix it


class Phase(enum.StrEnum):
    """When the close happened: during setup (connect/handshake) or on a live connection."""

    SETUP = "setup"
    LIVE = "live"


@attrs.frozen(kw_only=True)
class Rule:
    code: int
    phase: Phase | None  # None: either phase
    reason_contains: str | None
    disposition: Disposition
    why: str
    #: whether the retry this close calls for counts against the budgets: an idle hang-up is
    #: the service's housekeeping, not a failure
    spends_budget: bool = True
    #: what the application can do, for a fatal close whose code alone says too little
    hint: str = ""
    #: what the close calls for instead when a token provider can give a fresh token
    with_fresh_token: Disposition | None = None


#: the service's close reason for a model the API version does not serve: "models/NAME is not
#: found for API version v1, or is not supported for bidiGenerateContent."
MODEL_NOT_FOUND = "is not found for api version"
_DIALED = re.compile(r"for api version (v\w+)")

#: The close code of a connection that closed without a close frame from the server: RFC 6455
#: (section 7.1.5) says the close code is then "considered to be 1006", a code no endpoint may
#: send. The shell reports that no frame came (`ConnectionLost.close_received` False); the core
#: records the code this rule gives, so old and new audit logs read the same (`code` 1006).
NO_CLOSE_FRAME = 1006


def close_code(code: int | None, close_received: bool | None) -> int | None:
    """The close code of a close as the shell saw it: `NO_CLOSE_FRAME` when no close frame came,
    the received frame's code otherwise (None when the shell did not say: `code` as given)."""
    return NO_CLOSE_FRAME if close_received is False else code


def sent_close_note(sent_code: int | None, sent_reason: str) -> str:
    """What a close frame this client sent says about a connection that got none back: websockets
    fails a connection with 1009 when a server frame is over its size limit and with 1011 when
    the server does not answer its keepalive ping."""
    if sent_code is None:
        return ""
    said = f"{sent_code}" + (f" ({sent_reason})" if sent_reason else "")
    meaning = SENT_MEANINGS.get(sent_code)
    return f"the client closed with {said}" + (f": {meaning}" if meaning else "")


#: What the close frame this client sent means, for the codes websockets sends itself.
SENT_MEANINGS: dict[int, str] = {
    1000: "the client closed the connection",
    1002: "the server broke the WebSocket protocol",
    1007: "the server sent text that is not UTF-8",
    1009: "a server message was over the client's size limit (websockets max_size)",
    1011: "the server did not answer the client's keepalive ping in time",
}


CLOSE_RULES: tuple[Rule, ...] = (
    Rule(code=1000, phase=None, reason_contains=None, disposition=Disposition.RESUME,
         why="normal close; some clients see it at rotation"),
    Rule(code=1001, phase=None, reason_contains=None, disposition=Disposition.RESUME,
         why="server going away"),
    Rule(code=NO_CLOSE_FRAME, phase=None, reason_contains=None, disposition=Disposition.RESUME,
         why="no close frame: network loss or keepalive failure"),
    Rule(code=1011, phase=None, reason_contains="deadline expired", disposition=Disposition.RESUME,
         why="connection lifetime ended after goAway"),
    Rule(code=1011, phase=None, reason_contains="keepalive", disposition=Disposition.RESUME,
         why="keepalive ping timeout (often the client's own short ping timeout)"),
    Rule(code=1011, phase=None, reason_contains="idle", disposition=Disposition.RESUME,
         why="idle hang-up: no client input for about 150 s", spends_budget=False),
    Rule(code=1011, phase=None, reason_contains="maximum session duration",
         disposition=Disposition.RESUME,
         why="the service's hard limit on a session's connection (about an hour, even with "
             "compression)"),
    Rule(code=1011, phase=None, reason_contains="credits", disposition=Disposition.FATAL,
         why="the project's prepayment credits are used up",
         hint="add credits (or billing) to the project, then start a new session"),
    Rule(code=1011, phase=None, reason_contains="quota", disposition=Disposition.FATAL,
         why="the Live API quota is exhausted",
         hint="wait for the quota window to pass or raise the quota; retrying at once only "
              "spends it again"),
    Rule(code=1011, phase=Phase.SETUP, reason_contains="old socket",
         disposition=Disposition.WAIT, spends_budget=False,
         why="the server still holds the session's old socket (it never saw it close)"),
    Rule(code=1011, phase=Phase.SETUP, reason_contains="still connected",
         disposition=Disposition.WAIT, spends_budget=False,
         why="the server still holds the session's old socket (it never saw it close)"),
    Rule(code=1011, phase=None, reason_contains=None, disposition=Disposition.BACKOFF,
         why="transient backend fault"),
    Rule(code=1012, phase=None, reason_contains=None, disposition=Disposition.BACKOFF,
         why="service restart"),
    Rule(code=1013, phase=None, reason_contains=None, disposition=Disposition.BACKOFF,
         why="try again later"),
    Rule(code=1007, phase=Phase.SETUP, reason_contains=None, disposition=Disposition.REJECTED,
         why="invalid argument at setup: on a resume, the handle was refused"),
    Rule(code=1007, phase=Phase.LIVE, reason_contains=None, disposition=Disposition.FATAL,
         why="the server rejected a client message as invalid; replaying it would loop"),
    Rule(code=1008, phase=None, reason_contains="token", disposition=Disposition.FATAL,
         why="the ephemeral token expired or has no use left",
         hint="ephemeral tokens end the session whatever the resumption: pass a "
              "token_provider to connect() so each connection gets a fresh one, or mint a new "
              "token and start a new session",
         with_fresh_token=Disposition.RESUME),
    Rule(code=1008, phase=Phase.SETUP, reason_contains=MODEL_NOT_FOUND,
         disposition=Disposition.FATAL,
         why="unknown model, or one the API version the client dialed does not serve",
         hint="check the model name"),
    Rule(code=1008, phase=Phase.SETUP, reason_contains=None, disposition=Disposition.REJECTED,
         why="policy refusal at setup: on a resume, the handle was refused; on a new session, "
             "an unknown model or a policy violation"),
    Rule(code=1008, phase=Phase.LIVE, reason_contains=None, disposition=Disposition.RESUME,
         why="policy close on a live connection (e.g. not closing after goAway)"),
    Rule(code=1002, phase=None, reason_contains=None, disposition=Disposition.FATAL,
         why="protocol error"),
    Rule(code=1003, phase=None, reason_contains=None, disposition=Disposition.FATAL,
         why="unsupported data"),
    Rule(code=1009, phase=None, reason_contains=None, disposition=Disposition.FATAL,
         why="message too big"),
)
"""The close rules, tried in order: the first whose code, phase and reason match decides."""

#: HTTP statuses of a refused WebSocket handshake.
HTTP_RULES: dict[int, Disposition] = {
    400: Disposition.FATAL,
    401: Disposition.FATAL,
    403: Disposition.FATAL,
    404: Disposition.FATAL,
    408: Disposition.BACKOFF,
    429: Disposition.BACKOFF,
}


#: Failures without a close code, as the shell observed them: what each calls for. A close code
#: (`Failure.CLOSED`) goes through `CLOSE_RULES`, an HTTP status through `HTTP_RULES`.
FAILURE_RULES: dict[Failure, tuple[Disposition, str]] = {
    Failure.NETWORK: (Disposition.BACKOFF, "the connection failed or broke without a close code"),
    Failure.MALFORMED: (Disposition.BACKOFF, "the server sent a frame the protocol does not "
                                             "allow"),
    Failure.SETUP_TIMEOUT: (Disposition.BACKOFF, "no setupComplete in time"),
    Failure.TLS: (Disposition.FATAL, "the server's TLS certificate is not trusted"),
    Failure.LOCAL: (Disposition.FATAL, "the client library refused the request before sending "
                                       "it"),
    Failure.TOKEN_PROVIDER: (Disposition.BACKOFF, "the token provider failed to give a token"),
    Failure.CALLBACK: (Disposition.FATAL, "an application callback raised"),
}

#: What to do about a fatal failure that has no close code or status.
FAILURE_HINTS: dict[Failure, str] = {
    Failure.TLS: "check SSL_CERT_FILE or the ssl context given to the client",
    Failure.LOCAL: "check the arguments of connect() (model name, config): the reason says "
                   "what the client library refused",
}

#: What the application can do about a fatal close or refused handshake, by code or status.
HINTS: dict[int, str] = {
    1002: "a protocol error: check that google-genai and websockets are up to date",
    1003: "the server could not take a message: check the data the application sends",
    1007: "the server rejected a message as invalid: check what the application sent last",
    1008: "check the model name, and that the model supports the Live API",
    1009: "a message was too large: send audio and video in smaller chunks",
    400: "the request was malformed: check the base URL and API version",
    401: "check the API key (GEMINI_API_KEY / GOOGLE_API_KEY)",
    403: "check that the key or credentials may use this model and project",
    404: "check the base URL and the API version",
}


def hint(code: int | None, http_status: int | None = None,
         failure: Failure = Failure.CLOSED) -> str:
    """What to do about a fatal failure ("" when there is nothing to add)."""
    if failure in FAILURE_HINTS:
        return FAILURE_HINTS[failure]
    if http_status is not None:
        return HINTS.get(http_status, "")
    if code is not None and 4000 <= code < 5000:
        return "an application-defined close: see its reason"
    return HINTS.get(code, "") if code is not None else ""


def rule_hint(rule: Rule | None, reason: str) -> str:
    """What to do about a close the rule matched; for a model the API version does not
    serve, which version to dial."""
    if rule is None:
        return ""
    if rule.reason_contains == MODEL_NOT_FOUND:
        dialed = _DIALED.search(reason.lower())
        if dialed is not None and dialed.group(1) == "v1":
            return ("check the model name; the client dialed API version v1 (google-genai "
                    "3.x's default), where the -latest aliases and some -preview models do "
                    "not exist: for those use "
                    "api_version=\"v1beta\" (genai.Client(http_options=types.HttpOptions("
                    "api_version=\"v1beta\"))), or a model served on v1 such as "
                    "gemini-3.8-live")
        return ("check the model name (and that it is a Live model): gemini-3.8-live is today's "
                "default")
    return rule.hint


def close_rule(code: int | None, reason: str, phase: Phase) -> Rule | None:
    """The first rule of `CLOSE_RULES` that matches a close (None: no rule does)."""
    lowered = reason.lower()
    for rule in CLOSE_RULES:
        if rule.code != code or (rule.phase is not None and rule.phase is not phase):
            continue
        if rule.reason_contains is not None and rule.reason_contains not in lowered:
            continue
        return rule
    return None


def classify_close(code: int | None, reason: str, phase: Phase,
                   fresh_tokens: bool = False) -> tuple[Disposition, str]:
    """Disposition and the reason for it, for a WebSocket close code (None: no code at all).
    `fresh_tokens`: a token provider gives every connection a fresh ephemeral token."""
    if code is None:
        return Disposition.BACKOFF, "connection failed before a close code was known"
    rule = close_rule(code, reason, phase)
    if rule is not None:
        if fresh_tokens and rule.with_fresh_token is not None:
            return rule.with_fresh_token, f"{rule.why}; the next connection gets a fresh token"
        return rule.disposition, rule.why
    if 4000 <= code < 5000:
        return Disposition.FATAL, "application-defined close code"
    return Disposition.BACKOFF, "unrecognised close code: treated as transient"


#: A refused handshake when the connection dialed with a token from the provider.
TOKEN_REFUSED_WHY = "the service refused the ephemeral token (expired, used up or unknown)"
TOKEN_REFUSED_HINT = ("the token provider must return a token valid now, with a use left for "
                      "a new session (client.auth_tokens.create), each time it is called")


def classify_http(status: int, fresh_tokens: bool = False) -> tuple[Disposition, str]:
    """Disposition for a WebSocket handshake refused with an HTTP status."""
    if fresh_tokens and status == 401:
        return Disposition.FATAL, TOKEN_REFUSED_WHY
    if status in HTTP_RULES:
        disposition = HTTP_RULES[status]
    elif status >= 500:
        disposition = Disposition.BACKOFF
    else:
        disposition = Disposition.FATAL
    why = {401: "API key missing or invalid", 403: "permission denied", 404: "endpoint not found",
           429: "rate limited"}.get(status, f"handshake refused with HTTP {status}")
    return disposition, why


def classify_failure(failure: Failure, *, code: int | None, reason: str,
                     http_status: int | None, during_setup: bool,
                     fresh_tokens: bool = False) -> tuple[Disposition, str]:
    """Disposition and the reason for it, for any way a connection can end."""
    if http_status is not None:
        return classify_http(http_status, fresh_tokens)
    if failure in FAILURE_RULES:
        return FAILURE_RULES[failure]
    return classify_close(code, reason, Phase.SETUP if during_setup else Phase.LIVE,
                          fresh_tokens)
