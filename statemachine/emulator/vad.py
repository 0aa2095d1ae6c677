"""Automatic activity detection, as the service does it by default: an energy detector over the
user's 16-bit PCM. It measures time on the audio itself (samples), never on the clock, so a test's
synthetic speech gives the same answer on a loaded machine."""

from __future__ import annotations

import array
import enum
import math
import sys

FRAME_MS = 20


class Activity(enum.Enum):
    START = "start"
    END = "end"


class EnergyDetector:
    """Feed PCM; get START when speech has lasted `prefix_ms`, END after `silence_ms` of
    silence. A frame is speech when its RMS is at least `threshold`."""

    def __init__(self, *, threshold: float, silence_ms: int, prefix_ms: int, rate: int = 16_000):
        self.threshold = threshold
        self.silence_ms = silence_ms
        self.prefix_ms = prefix_ms
        self.rate = rate
        self.speaking = False
        self._buffer = b""
        self._speech_ms = 0
        self._silence_ms = 0

    def feed(self, pcm: bytes, rate: int | None = None) -> list[Activity]:
        if rate and rate != self.rate:
            self.rate, self._buffer = rate, b""
        frame_bytes = self.rate * FRAME_MS // 1000 * 2
        data = self._buffer + pcm
        events: list[Activity] = []
        end = len(data) - len(data) % frame_bytes
        for start in range(0, end, frame_bytes):
            event = self._frame(data[start:start + frame_bytes])
            if event is not None:
                events.append(event)
        self._buffer = data[end:]
        return events

    def _frame(self, frame: bytes) -> Activity | None:
        samples = array.array("h", frame)
        if sys.byteorder != "little":
            samples.byteswap()
        rms = math.sqrt(sum(s * s for s in samples) / len(samples))
        if rms >= self.threshold:
            self._silence_ms = 0
            self._speech_ms += FRAME_MS
            if not self.speaking and self._speech_ms >= max(self.prefix_ms, FRAME_MS):
                self.speaking = True
                return Activity.START
            return None
        self._speech_ms = 0
        if self.speaking:
            self._silence_ms += FRAME_MS
            if self._silence_ms >= self.silence_ms:
                self.speaking = False
                self._silence_ms = 0
                return Activity.END
        return None


def pcm_rate(mime_type: str, default: int = 16_000) -> int:
    """The sample rate of `audio/pcm;rate=16000` (the default when absent)."""
    for param in mime_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key == "rate" and value.isdigit():
            return int(value)
    return default
