"""The emulator's knobs. Every duration is a setting, and `time_scale` multiplies all of them, so a
10-minute connection can last 0.6 s in a test (time_scale=0.001)."""

from __future__ import annotations

import attrs

from ..errors import SettingsError


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
        if self.time_scale <= 0:
            raise SettingsError("time_scale must be > 0")
        if self.go_away_lead >= self.connection_lifetime:
            raise SettingsError("go_away_lead must be shorter than connection_lifetime")
        if self.chunks_per_reply < 1:
            raise SettingsError("chunks_per_reply must be >= 1")

    def seconds(self, name: str) -> float:
        """A duration setting in real seconds, after the time scale."""
        value: float = getattr(self, name)
        return value * self.time_scale
