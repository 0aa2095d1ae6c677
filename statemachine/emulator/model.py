"""The scripted model: a conversation context with token counts, compression, and deterministic
replies that quote earlier user turns, so a resumed session's reply proves what it remembers."""

from __future__ import annotations

from typing import Any

import attrs

AUDIO_TOKENS_PER_SECOND = 25
VIDEO_TOKENS_PER_FRAME = 258
INPUT_BYTES_PER_SECOND = 32_000  # 16 kHz, 16-bit mono PCM
OUTPUT_RATE = 24_000


def text_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def audio_tokens(n_bytes: int) -> int:
    return max(1, n_bytes * AUDIO_TOKENS_PER_SECOND // INPUT_BYTES_PER_SECOND)


@attrs.frozen(kw_only=True)
class Turn:
    role: str
    text: str = ""
    audio_bytes: int = 0
    video_frames: int = 0
    tool: dict[str, Any] | None = None
    #: a model turn that ended before the reply did (a cut connection, a mid-turn handle)
    cut: bool = False

    @property
    def tokens(self) -> int:
        total = text_tokens(self.text) if self.text else 0
        if self.audio_bytes:
            total += audio_tokens(self.audio_bytes)
        total += self.video_frames * VIDEO_TOKENS_PER_FRAME
        if self.tool is not None:
            total += text_tokens(repr(self.tool))
        return max(total, 1)

    def by_modality(self) -> dict[str, int]:
        """Tokens per modality, as `usageMetadata.promptTokensDetails` reports them."""
        text = text_tokens(self.text) if self.text else 0
        if self.tool is not None:
            text += text_tokens(repr(self.tool))
        counts = {
            "TEXT": text,
            "AUDIO": audio_tokens(self.audio_bytes) if self.audio_bytes else 0,
            "VIDEO": self.video_frames * VIDEO_TOKENS_PER_FRAME,
        }
        if not any(counts.values()):
            counts["TEXT"] = 1
        return counts


@attrs.frozen(kw_only=True)
class OpenCall:
    """A function call the model issued and no response has answered yet."""

    name: str
    blocking: bool
    args: dict[str, Any] = attrs.field(factory=dict)
    #: how many more times the model calls it again when it returns nothing (3.8)
    repeats: int = 0


@attrs.define(kw_only=True)
class Context:
    """What the model knows. Snapshots of it are what resumption handles restore."""

    system: str = ""
    turns: list[Turn] = attrs.field(factory=list)
    compressions: int = 0
    #: realtime input consumed since the last turn (part of the state a handle restores)
    pending_audio: int = 0
    pending_video: int = 0
    #: input identities, in the order the model took them in (only with `track_inputs`)
    consumed: list[str] = attrs.field(factory=list)
    #: function calls issued and not answered, by id (part of what a handle restores)
    open_calls: dict[str, OpenCall] = attrs.field(factory=dict)
    #: the tool list (name -> NON_BLOCKING), from the setup of the session's first connection
    #: or the latest `contextUpdate`: a resume keeps it, as it keeps the system instruction
    tools: dict[str, bool] | None = None
    #: `contextUpdate` messages the model took in (a handle restores the count with the rest)
    updates: int = 0

    @property
    def tokens(self) -> int:
        return (text_tokens(self.system) if self.system else 0) + sum(t.tokens for t in self.turns)

    def snapshot(self) -> Context:
        """A copy a handle can restore. Turns are never changed once added, so the lists are
        copied and the turns shared (a deep copy cost 1.5 ms per handle in the benchmark)."""
        return attrs.evolve(
            self, turns=list(self.turns), consumed=list(self.consumed),
            open_calls=dict(self.open_calls),
            tools=dict(self.tools) if self.tools is not None else None,
        )

    def tokens_by_modality(self) -> dict[str, int]:
        counts = {"TEXT": text_tokens(self.system) if self.system else 0, "AUDIO": 0, "VIDEO": 0}
        for turn in self.turns:
            for modality, n in turn.by_modality().items():
                counts[modality] += n
        return counts

    def add(self, turn: Turn) -> None:
        self.turns.append(turn)

    def compress(self, trigger_tokens: int | None, target_tokens: int | None) -> bool:
        """Sliding window: past the trigger, drop the oldest turns down to the target."""
        if trigger_tokens is None or self.tokens <= trigger_tokens:
            return False
        target = target_tokens if target_tokens is not None else trigger_tokens // 2
        while self.turns and self.tokens > target:
            self.turns.pop(0)
        self.compressions += 1
        return True

    def owed_turn(self) -> Turn | None:
        """The user turn the model has not finished answering: the last user turn when only
        tool traffic or a cut model turn follows it. What `turnComplete` with no new content
        makes the model answer."""
        for turn in reversed(self.turns):
            if turn.role == "user" and turn.tool is None:
                return turn if turn.text or turn.audio_bytes or turn.video_frames else None
            if turn.role == "model" and not turn.cut:
                return None
        return None

    def user_texts(self) -> list[str]:
        return [t.text for t in self.turns if t.role == "user" and t.text]

    def reply_to(self, text: str) -> str:
        """A deterministic reply that quotes what the context still holds."""
        earlier = self.user_texts()
        if earlier and earlier[-1] == text:
            earlier = earlier[:-1]
        memory = "; ".join(f'"{t}"' for t in earlier[-5:]) or "nothing before"
        return f'Reply {len(earlier) + 1} to "{text}". I remember {memory}.'

    def reply_to_audio(self, n_bytes: int) -> str:
        ms = n_bytes * 1000 // INPUT_BYTES_PER_SECOND
        return f"I heard {ms} ms of audio. I remember {len(self.turns)} turns."


def reply_audio(text: str) -> bytes:
    """Deterministic 24 kHz PCM for a reply: 10 ms of samples per character, a simple ramp."""
    n_samples = OUTPUT_RATE // 100 * max(1, len(text))
    return bytes((i * 7) & 0xFF for i in range(n_samples * 2))


def split(text: str, parts: int) -> list[str]:
    """Split a reply into `parts` streamed chunks (fewer for short replies)."""
    parts = max(1, min(parts, len(text)))
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]
