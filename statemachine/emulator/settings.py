"""The emulator's knobs. Every duration is a setting in emulated seconds, and `time_scale`
multiplies all of them, so a 10-minute connection can last 0.6 s in a test (time_scale=0.001).

The field behaviours of today's service (an idle hang-up, a hard close near one hour, an early
`goAway`, quota and credit refusals) are off by default and switched on one by one."""

from __future__ import annotations

import math
from typing import Any

import attrs

from ..core.validate import check_count, check_seconds, is_number
from ..errors import SettingsError

#: what `exhausted` may name: the 1011 close reason differs for each (see wire.py)
EXHAUSTION_KINDS = ("quota", "credits")

#: durations that must be finite and > 0, or >= 0 (validity 0: every handle is expired)
_POSITIVE = ("time_scale", "connection_lifetime", "session_cap_audio", "session_cap_video")
_NON_NEGATIVE = ("go_away_lead", "handle_validity", "setup_delay", "chunk_interval",
                 "playback_delay", "response_delay")
_COUNTS = {"chunks_per_reply": 1, "context_window": 1, "vad_silence_ms": 1, "vad_prefix_ms": 0}
#: close codes a server may send (RFC 6455 7.4: 1004-1006 and 1015 are never sent; 1016-2999
#: are unassigned; 3000-4999 are for libraries and applications)
SENDABLE_CLOSE_CODES = (*range(1000, 1004), *range(1007, 1015), *range(3000, 5000))


def _duration(_inst: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    """The field behaviours' durations: None (off) or a finite number of seconds >= 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) \
            or math.isinf(value) or value < 0:
        raise SettingsError(
            f"EmulatorSettings.{attribute.name} must be a finite number of seconds >= 0, "
            f"got {value!r}"
        )


@attrs.frozen(kw_only=True)
class EmulatorSettings:
    time_scale: float = 1.0
    connection_lifetime: float = attrs.field(default=600.0, validator=_duration)
    go_away_lead: float = attrs.field(default=50.0, validator=_duration)
    session_cap_audio: float = attrs.field(default=900.0, validator=_duration)
    session_cap_video: float = attrs.field(default=120.0, validator=_duration)
    handle_validity: float = attrs.field(default=7200.0, validator=_duration)
    setup_delay: float = attrs.field(default=0.0, validator=_duration)
    #: pause between two streamed `modelTurn` chunks, and before `turnComplete` (playback)
    chunk_interval: float = attrs.field(default=0.02, validator=_duration)
    playback_delay: float = attrs.field(default=0.0, validator=_duration)
    #: the model's time to its first output (a chunk or a call) of a reply; the service
    #: takes hundreds of milliseconds, the emulator none unless asked
    response_delay: float = attrs.field(default=0.0, validator=_duration)
    chunks_per_reply: int = 3
    #: close code for an unknown or expired handle (undocumented; reports say 1007)
    reject_resume_code: int = 1007
    #: tokens of context; compression defaults derive from it like the service's
    context_window: int = 32_768
    #: the API key clients must present (x-goog-api-key, or `?key=` as the JavaScript SDK does)
    api_key: str = "emulator-api-key"
    #: a resumable handle right after setupComplete (state before the first turn)
    handle_on_setup: bool = True
    #: keep every frame of every connection (tests); off for large benchmarks
    record_frames: bool = True
    #: remember the identity of each consumed input in the context (benchmarks count lost and
    #: duplicated input in what the model knows): audio by its first 8 bytes, text by itself
    track_inputs: bool = False
    #: model names accepted besides the Live models the emulator knows (2.5 profile)
    extra_models: tuple[str, ...] = ()

    # -- voice activity detection (automatic activity detection, on unless the setup disables it)
    #: RMS of 16-bit PCM above which a 20 ms frame counts as speech (about -30 dBFS)
    vad_threshold: float = 1000.0
    #: silence that ends the user's turn, in audio milliseconds, unless the setup's
    #: `silenceDurationMs` says otherwise (measured on the audio itself, not the clock)
    vad_silence_ms: int = 500
    #: speech needed before the start of activity is detected (`prefixPaddingMs` overrides)
    vad_prefix_ms: int = 20

    # -- model generations (profile chosen by model name; see profiles.py)
    #: 3.x profile: background thinking after `turnComplete`, during which `interactionStatus`
    #: stays IN_PROGRESS; the setup must then carry a thinking level (else 1007). 0 = off
    extended_thinking: float = attrs.field(default=0.0, validator=_duration)
    #: switches of the model's profile to turn on or off for this run, by `Profile` field
    #: name (profiles.py documents each), e.g. `{"empty_result_repeats": 0}`
    profile_switches: dict[str, Any] = attrs.field(factory=dict, hash=False)

    # -- field behaviours of today's service (None = off)
    #: hang up a connection that received no client message for this long (field: ~150 s)
    idle_timeout: float | None = attrs.field(default=None, validator=_duration)
    #: close every connection of a session this long after the session started, compression or
    #: not (field: 58 min = 3480 s), with 1011 and `wire.CLOSE_HARD_LIMIT`
    hard_close_after: float | None = attrs.field(default=None, validator=_duration)
    #: after the hard close, refuse to resume the session (1007), as was sometimes seen
    hard_close_ends_session: bool = False
    #: send a `goAway` right after setupComplete with this `timeLeft`, and close when it runs out
    #: (field: 300 s, about 1 s after connecting)
    go_away_on_connect: float | None = attrs.field(default=None, validator=_duration)
    #: refuse new connections right after the setup with 1011 and the reason of "quota" (rate
    #: limit) or "credits" (prepaid credits used up)
    exhausted: str | None = None
    #: a server that never sees the client close a connection: after a connection of a session
    #: ends it holds the old socket this long, refusing every resume of the session meanwhile
    #: with 1011 and `wire.CLOSE_OLD_SOCKET` ("old socket still open")
    old_socket_hold: float | None = attrs.field(default=None, validator=_duration)

    def __attrs_post_init__(self) -> None:
        for name in _POSITIVE:
            check_seconds(self, name, getattr(self, name))
        for name in _NON_NEGATIVE:
            check_seconds(self, name, getattr(self, name), zero=True)
        for name, minimum in _COUNTS.items():
            check_count(self, name, getattr(self, name), minimum=minimum)
        if self.go_away_lead >= self.connection_lifetime:
            raise SettingsError(
                f"EmulatorSettings.go_away_lead ({self.go_away_lead!r}s) must be shorter than "
                f"connection_lifetime ({self.connection_lifetime!r}s)")
        if not (is_number(self.vad_threshold) and 0 < self.vad_threshold <= 32768):
            raise SettingsError(
                "EmulatorSettings.vad_threshold must be a number in (0, 32768] (the RMS of "
                f"16-bit PCM above which a frame is speech), got {self.vad_threshold!r}")
        code = self.reject_resume_code
        if isinstance(code, bool) or not isinstance(code, int) or \
                code not in SENDABLE_CLOSE_CODES:
            raise SettingsError(
                "EmulatorSettings.reject_resume_code must be a WebSocket close code a server "
                f"can send (1000-1003, 1007-1014 or 3000-4999), got {code!r}")
        from .profiles import Profile

        unknown = set(self.profile_switches) - {f.name for f in attrs.fields(Profile)}
        if unknown:
            raise SettingsError(
                f"profile_switches names no switch of Profile: {sorted(unknown)} (see "
                "statemachine/emulator/profiles.py)")
        if self.exhausted is not None and self.exhausted not in EXHAUSTION_KINDS:
            raise SettingsError(
                f"exhausted must be one of {EXHAUSTION_KINDS} or None, got {self.exhausted!r}"
            )

    def seconds(self, name: str) -> float:
        """A duration setting in real seconds, after the time scale."""
        value: float = getattr(self, name)
        return value * self.time_scale
