"""Every limit and policy the lifecycle obeys, as validated, immutable attrs records.

Defaults are the Live API's documented (or field-reported) values; see shared/protocol.md. All
durations are seconds. `Policy.scaled(f)` multiplies every duration by `f`, so a test can make a
10-minute connection last a second without touching the logic.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ..errors import SettingsError
from .validate import (
    check_factor,
    count,
    factor,
    flag,
    instance_of,
    seconds,
    to_enum,
)


class Backend(enum.StrEnum):
    """Which Live API the session talks to; decides handle validity and transparent resumption."""

    GEMINI = "gemini"
    VERTEX = "vertex"


class OnExpired(enum.StrEnum):
    """What to do when a session cannot continue."""

    FRESH = "fresh"
    TERMINATE = "terminate"


class AnsweredTurnReplay(enum.StrEnum):
    """How to replay a turn whose reply arrived but whose covering handle did not."""

    HISTORY = "history"  # replay input + reply as history, turn_complete=False: no second answer
    REPEAT = "repeat"  # replay the input; the model answers again and the reply is flagged


def _on_expired(value: object) -> OnExpired:
    return to_enum(OnExpired, value, "Policy.on_expired")


def _answered_turns(value: object) -> AnsweredTurnReplay:
    return to_enum(AnsweredTurnReplay, value, "ReplayPolicy.answered_turns")


_positive = seconds()
_non_negative = seconds(zero=True)


def _check_scale(value: float) -> None:
    check_factor("scaled", "factor", value, low=0.0)
    if value == 0:
        raise SettingsError("scaled(factor): the time scale must be > 0, got 0")


HANDLE_VALIDITY = {Backend.GEMINI: 2 * 3600.0, Backend.VERTEX: 24 * 3600.0}
#: the shortest `Limits.handle_validity` accepted, in seconds before scaling: the services keep a
#: handle 2 h (Gemini API) or 24 h (Vertex), and a handle that lapses within seconds expires
#: before a reconnect (TLS, setup, a backoff) could use it; a smaller value is a unit mistake
MIN_HANDLE_VALIDITY = 10.0


@attrs.frozen(kw_only=True)
class Limits:
    """The Live API's time limits as this client plans for them."""

    connection_lifetime: float = attrs.field(default=600.0, validator=_positive)
    go_away_lead: float = attrs.field(default=30.0, validator=_positive)
    #: the most a rotation keeps in hand before a goAway deadline (and what it keeps before
    #: any reconnect was measured); the margin used is learned from the measured reconnect
    #: time (`core/margin.py`), at least `go_away_margin_floor`
    go_away_margin: float = attrs.field(default=2.0, validator=_non_negative)
    go_away_margin_floor: float = attrs.field(default=0.25, validator=_non_negative)
    session_cap_audio: float = attrs.field(default=900.0, validator=_positive)
    session_cap_video: float = attrs.field(default=120.0, validator=_positive)
    #: None: the backend's (2 h on the Gemini API, 24 h on Vertex)
    handle_validity: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_positive)
    )
    setup_timeout: float = attrs.field(default=15.0, validator=_positive)
    #: how long before an ephemeral token from a token provider expires the session moves to
    #: a connection with a fresh token (like after a goAway), or, when the provider has no
    #: later token, warns that the session ends then (`TokenExpiring`)
    token_lead: float = attrs.field(default=60.0, validator=_positive)
    #: the factor `scaled()` applied: a backend default filled in later is scaled by it too
    time_scale: float = attrs.field(default=1.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.go_away_lead >= self.connection_lifetime:
            raise SettingsError(
                f"Limits.go_away_lead ({self.go_away_lead!r}s) must be shorter than "
                f"connection_lifetime ({self.connection_lifetime!r}s): a goAway cannot come "
                "before the connection opens")
        if self.go_away_margin >= self.go_away_lead:
            raise SettingsError(
                f"go_away_margin ({self.go_away_margin}s) must be smaller than go_away_lead "
                f"({self.go_away_lead}s, the shortest goAway notice planned for): otherwise "
                "every rotation would be forced at once and cut the reply in progress"
            )
        if self.token_lead >= self.connection_lifetime:
            raise SettingsError(
                f"Limits.token_lead ({self.token_lead!r}s) must be shorter than "
                f"connection_lifetime ({self.connection_lifetime!r}s): the session moves to a "
                "fresh token this long before the old one expires, so a longer lead would "
                "move every connection as soon as it opens")
        if self.handle_validity is not None and \
                self.handle_validity < MIN_HANDLE_VALIDITY * self.time_scale * (1 - 1e-9):
            raise SettingsError(
                f"Limits.handle_validity must be at least {MIN_HANDLE_VALIDITY:g} s"
                + (f" (x time_scale {self.time_scale:g} = "
                   f"{MIN_HANDLE_VALIDITY * self.time_scale:g} s)" if self.time_scale != 1
                   else "")
                + f", or None for the backend's (2 h Gemini API, 24 h Vertex); got "
                f"{self.handle_validity!r}: a handle that lapses sooner expires before a "
                "reconnect could use it")
        if self.session_cap_video > self.session_cap_audio:
            raise SettingsError(
                f"Limits.session_cap_video ({self.session_cap_video!r}s) cannot exceed "
                f"session_cap_audio ({self.session_cap_audio!r}s)")

    def scaled(self, factor: float) -> Limits:
        """The same limits with every duration multiplied by `factor`."""
        _check_scale(factor)
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in attrs.fields(Limits)}
        scaled: dict[str, Any] = {name: None if value is None else value * factor
                                  for name, value in values.items()}
        return Limits(**scaled)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded per drop and per session."""

    #: reconnects tried per drop (the first is a resume), at least 1; a session that must never
    #: reconnect: per_session_attempts=0
    per_drop_attempts: int = attrs.field(default=6, validator=count(minimum=1))
    #: failure retries (and fresh restarts) allowed within any `session_window` seconds: a
    #: budget over the session's whole life would end long sessions on a flaky network
    per_session_attempts: int = attrs.field(default=60, validator=count())
    session_window: float = attrs.field(default=3600.0, validator=_positive)
    base_delay: float = attrs.field(default=0.25, validator=_non_negative)
    max_delay: float = attrs.field(default=15.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=factor(low=1.0))
    #: the fraction of each delay that is random, in [0, 1]
    jitter: float = attrs.field(default=0.5, validator=factor(low=0.0, high=1.0))
    #: a connection that stays up this long after setup, or answers a turn, ends the drop: the
    #: next failure counts from one again and its first reconnect is immediate. One that does
    #: not (a server accepting setup and closing at once) keeps counting, so the backoff grows
    stable_after: float = attrs.field(default=10.0, validator=_non_negative)
    #: how long resumes refused because the server still holds the session's old socket
    #: (1011 at setup) are tried again, from the first refusal, without spending the budgets;
    #: a refusal after it gives the handle up (a fresh session or the end: `on_expired`)
    old_socket_wait: float = attrs.field(default=5.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.max_delay < self.base_delay:
            raise SettingsError(
                f"RetryPolicy.max_delay ({self.max_delay!r}s) must be >= base_delay "
                f"({self.base_delay!r}s)")

    def delay(self, attempt: int, unit_random: float) -> float:
        """Delay before failure-retry number `attempt` (1-based); `unit_random` in [0, 1)."""
        raw = min(self.max_delay, self.base_delay * self.multiplier ** max(0, attempt - 1))
        return raw * (1 - self.jitter * unit_random)

    def scaled(self, factor: float) -> RetryPolicy:
        return attrs.evolve(
            self, base_delay=self.base_delay * factor, max_delay=self.max_delay * factor,
            session_window=self.session_window * factor, stable_after=self.stable_after * factor,
            old_socket_wait=self.old_socket_wait * factor,
        )


@attrs.frozen(kw_only=True)
class ReplayPolicy:
    """What is replayed after a resume on the Gemini API (Vertex replays by index)."""

    audio_staleness: float = attrs.field(default=2.0, validator=_non_negative)
    #: Gemini API only: input sent less than one round trip before a resumable update may have
    #: crossed it on the wire and is kept for replay (a possible duplicate, never a silent
    #: loss). The window is the connection's measured RTT plus this slack, or `crossing_default`
    #: before a measurement. Network properties: not scaled with the protocol's durations.
    crossing_slack: float = attrs.field(default=0.005, validator=_non_negative)
    crossing_default: float = attrs.field(default=0.1, validator=_non_negative)
    answered_turns: AnsweredTurnReplay = attrs.field(
        default=AnsweredTurnReplay.HISTORY,
        converter=_answered_turns,
    )

    def scaled(self, factor: float) -> ReplayPolicy:
        return attrs.evolve(self, audio_staleness=self.audio_staleness * factor)


@attrs.frozen(kw_only=True)
class Keepalive:
    """websockets keepalive. The SDK's 20 s/20 s default yields false 1011 timeouts; real pongs
    were measured at 8-30 s, so the default waits longer."""

    #: None turns pings (or the wait for their pong) off
    ping_interval: float | None = attrs.field(default=30.0, validator=seconds(optional=True))
    ping_timeout: float | None = attrs.field(default=60.0, validator=seconds(optional=True))
    #: how long closing an old socket may wait for the server's close frame before aborting it
    close_timeout: float = attrs.field(default=2.0, validator=_positive)


@attrs.frozen(kw_only=True)
class Policy:
    """Everything a session decides by; pass one to `statemachine.connect`."""

    limits: Limits = attrs.field(
        factory=Limits, validator=instance_of(Limits, "build it with Limits(...)"))
    retry: RetryPolicy = attrs.field(
        factory=RetryPolicy, validator=instance_of(
            RetryPolicy, "to never reconnect, use RetryPolicy(per_session_attempts=0)"))
    replay: ReplayPolicy = attrs.field(
        factory=ReplayPolicy,
        validator=instance_of(ReplayPolicy, "build it with ReplayPolicy(...)"))
    keepalive: Keepalive = attrs.field(
        factory=Keepalive, validator=instance_of(
            Keepalive, "Keepalive(ping_interval=None) turns pings off"))
    on_expired: OnExpired = attrs.field(
        default=OnExpired.FRESH, converter=_on_expired)
    compression: bool = attrs.field(default=True, validator=flag())
    compression_trigger_tokens: int = attrs.field(default=25_600, validator=count(minimum=1))
    compression_target_tokens: int = attrs.field(default=12_800, validator=count(minimum=1))
    #: None: transparent on Vertex, journal by handle on the Gemini API (where the SDK refuses it).
    transparent: bool | None = attrs.field(default=None, validator=flag(optional=True))

    def __attrs_post_init__(self) -> None:
        if not self.compression_target_tokens < self.compression_trigger_tokens:
            raise SettingsError(
                "Policy needs compression_target_tokens < compression_trigger_tokens, got "
                f"{self.compression_target_tokens!r} and {self.compression_trigger_tokens!r}"
            )

    def scaled(self, factor: float) -> Policy:
        """The same policy with every duration (limits, backoff, staleness) times `factor`."""
        return attrs.evolve(
            self,
            limits=self.limits.scaled(factor),
            retry=self.retry.scaled(factor),
            replay=self.replay.scaled(factor),
        )

    def for_backend(self, backend: Backend) -> Policy:
        """The policy with every backend-dependent setting left unset filled in: the handle
        validity (2 h on the Gemini API, 24 h on Vertex). What the caller set stays."""
        if self.limits.handle_validity is not None:
            return self
        return attrs.evolve(
            self, limits=attrs.evolve(
                self.limits, handle_validity=HANDLE_VALIDITY[backend] * self.limits.time_scale)
        )

    def adopt_compression(self, trigger_tokens: int | None, target_tokens: int | None) -> Policy:
        """The policy for a session whose config already asks for context compression at
        `trigger_tokens` (sliding to `target_tokens`, default half of it); unchanged when the
        config asks for none (the policy's own compression then applies)."""
        if not trigger_tokens:
            return self
        return attrs.evolve(self, compression=True, compression_trigger_tokens=trigger_tokens,
                            compression_target_tokens=target_tokens or trigger_tokens // 2)


def session_policy(given: Policy | None, *, time_scale: float, trigger_tokens: int | None,
                   target_tokens: int | None) -> Policy:
    """The policy a session runs with. Without one given, the default on the service's clock
    (`time_scale` < 1: an emulator whose time runs fast; the default in real seconds would force
    every rotation at the deadline). The compression the application's config asks for wins
    over the policy's own (`adopt_compression`)."""
    if given is None:
        given = Policy().scaled(time_scale) if time_scale != 1.0 else Policy()
    return given.adopt_compression(trigger_tokens, target_tokens)
