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


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise SettingsError(f"{attribute.name} must be >= 0 seconds, got {value!r}")


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise SettingsError(f"{attribute.name} must be > 0, got {value!r}")


HANDLE_VALIDITY = {Backend.GEMINI: 2 * 3600.0, Backend.VERTEX: 24 * 3600.0}


@attrs.frozen(kw_only=True)
class Limits:
    """The Live API's time limits as this client plans for them."""

    connection_lifetime: float = attrs.field(default=600.0, validator=_positive)
    go_away_lead: float = attrs.field(default=30.0, validator=_positive)
    go_away_margin: float = attrs.field(default=2.0, validator=_non_negative)
    session_cap_audio: float = attrs.field(default=900.0, validator=_positive)
    session_cap_video: float = attrs.field(default=120.0, validator=_positive)
    #: None: the backend's (2 h on the Gemini API, 24 h on Vertex)
    handle_validity: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_positive)
    )
    setup_timeout: float = attrs.field(default=15.0, validator=_positive)
    #: the factor `scaled()` applied: a backend default filled in later is scaled by it too
    time_scale: float = attrs.field(default=1.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.go_away_margin >= self.go_away_lead:
            raise SettingsError(
                f"go_away_margin ({self.go_away_margin}s) must be smaller than go_away_lead "
                f"({self.go_away_lead}s, the shortest goAway notice planned for): otherwise "
                "every rotation would be forced at once and cut the reply in progress"
            )
        if self.session_cap_video > self.session_cap_audio:
            raise SettingsError("session_cap_video cannot exceed session_cap_audio")

    def scaled(self, factor: float) -> Limits:
        """The same limits with every duration multiplied by `factor`."""
        if factor <= 0:
            raise SettingsError(f"time scale must be > 0, got {factor!r}")
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in attrs.fields(Limits)}
        scaled: dict[str, Any] = {name: None if value is None else value * factor
                                  for name, value in values.items()}
        return Limits(**scaled)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded per drop and per session."""

    per_drop_attempts: int = attrs.field(default=6)
    #: failure retries (and fresh restarts) allowed within any `session_window` seconds: a
    #: budget over the session's whole life would end long sessions on a flaky network
    per_session_attempts: int = attrs.field(default=60)
    session_window: float = attrs.field(default=3600.0, validator=_positive)
    base_delay: float = attrs.field(default=0.25, validator=_non_negative)
    max_delay: float = attrs.field(default=15.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0)
    jitter: float = attrs.field(default=0.5)
    #: a connection that stays up this long after setup, or answers a turn, ends the drop: the
    #: next failure counts from one again and its first reconnect is immediate. One that does
    #: not (a server accepting setup and closing at once) keeps counting, so the backoff grows
    stable_after: float = attrs.field(default=10.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.per_drop_attempts < 0 or self.per_session_attempts < 0:
            raise SettingsError("retry budgets must be >= 0")
        if self.multiplier < 1:
            raise SettingsError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise SettingsError(f"jitter is a fraction in [0, 1], got {self.jitter!r}")
        if self.max_delay < self.base_delay:
            raise SettingsError("max_delay must be >= base_delay")

    def delay(self, attempt: int, unit_random: float) -> float:
        """Delay before failure-retry number `attempt` (1-based); `unit_random` in [0, 1)."""
        raw = min(self.max_delay, self.base_delay * self.multiplier ** max(0, attempt - 1))
        return raw * (1 - self.jitter * unit_random)

    def scaled(self, factor: float) -> RetryPolicy:
        return attrs.evolve(
            self, base_delay=self.base_delay * factor, max_delay=self.max_delay * factor,
            session_window=self.session_window * factor, stable_after=self.stable_after * factor,
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
        default=AnsweredTurnReplay.HISTORY, converter=AnsweredTurnReplay
    )

    def scaled(self, factor: float) -> ReplayPolicy:
        return attrs.evolve(self, audio_staleness=self.audio_staleness * factor)


@attrs.frozen(kw_only=True)
class Keepalive:
    """websockets keepalive. The SDK's 20 s/20 s default yields false 1011 timeouts; real pongs
    were measured at 8-30 s, so the default waits longer."""

    ping_interval: float | None = 30.0
    ping_timeout: float | None = 60.0
    #: how long closing an old socket may wait for the server's close frame before aborting it
    close_timeout: float = 2.0


@attrs.frozen(kw_only=True)
class Policy:
    """Everything a session decides by; pass one to `statemachine.connect`."""

    limits: Limits = attrs.field(factory=Limits)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    replay: ReplayPolicy = attrs.field(factory=ReplayPolicy)
    keepalive: Keepalive = attrs.field(factory=Keepalive)
    on_expired: OnExpired = attrs.field(default=OnExpired.FRESH, converter=OnExpired)
    compression: bool = True
    compression_trigger_tokens: int = attrs.field(default=25_600)
    compression_target_tokens: int = attrs.field(default=12_800)
    #: None: transparent on Vertex, journal by handle on the Gemini API (where the SDK refuses it).
    transparent: bool | None = None

    def __attrs_post_init__(self) -> None:
        if not 0 < self.compression_target_tokens < self.compression_trigger_tokens:
            raise SettingsError(
                "compression needs 0 < compression_target_tokens < compression_trigger_tokens"
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
