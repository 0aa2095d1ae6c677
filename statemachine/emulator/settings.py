"""The emulator's knobs. Every duration is a setting, and `time_scale` multiplies all of them, so a
10-minute connection can last 0.6 s in a test (time_scale=0.001)."""

from __future__ import annotations

import attrs

from ..core.validate import check_count, check_seconds
from ..errors import SettingsError

#: durations that must be finite and > 0, or >= 0 (validity 0: every handle is expired)
_POSITIVE = ("time_scale", "connection_lifetime", "session_cap_audio", "session_cap_video")
_NON_NEGATIVE = ("go_away_lead", "handle_validity", "setup_delay", "chunk_interval",
                 "playback_delay")
_COUNTS = {"chunks_per_reply": 1, "context_window": 1, "reject_resume_code": 1000}


@attrs.frozen(kw_only=True)
class EmulatorSettings:
    time_scale: float = 1.0
    connection_lifetime: float = 600.0
    go_away_lead: float = 50.0
    session_cap_audio: float = 900.0
    session_cap_video: float = 120.0
    handle_validity: float = 7200.0
    setup_delay: float = 0.0
    #: pause between two streamed `modelTurn` chunks, and before `turnComplete` (playback)
    chunk_interval: float = 0.02
    playback_delay: float = 0.0
    chunks_per_reply: int = 3
    #: close code for an unknown or expired handle (undocumented; reports say 1007)
    reject_resume_code: int = 1007
    #: tokens of context; compression defaults derive from it like the service's
    context_window: int = 32_768
    #: the API key clients must present (x-goog-api-key)
    api_key: str = "emulator-api-key"
    #: a resumable handle right after setupComplete (state before the first turn)
    handle_on_setup: bool = True
    #: keep every frame of every connection (tests); off for large benchmarks
    record_frames: bool = True
    #: remember the identity of each consumed input in the context (benchmarks count lost and
    #: duplicated input in what the model knows): audio by its first 8 bytes, text by itself
    track_inputs: bool = False

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

    def seconds(self, name: str) -> float:
        """A duration setting in real seconds, after the time scale."""
        value: float = getattr(self, name)
        return value * self.time_scale
