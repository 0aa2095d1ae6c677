"""Model generations the emulator can play, chosen by the model name in the setup.

The 2.5 family issues resumption handles only at turn boundaries and blocks on tool calls; the
3.x family issues handles mid-turn, reports `interactionStatus`, runs tools without blocking, keeps
a resumed session waiting for the tool calls the old connection left unanswered, and always has
proactive audio on. Names outside the table are refused like the service refuses them."""

from __future__ import annotations

import re

import attrs


@attrs.frozen(kw_only=True)
class Profile:
    family: str
    #: resumable handles while the model generates or runs tools (2.5 sends resumable:false)
    mid_turn_handles: bool
    #: `interactionStatus` alongside `turnComplete`
    interaction_status: bool
    #: a function declaration without `behavior` is NON_BLOCKING
    tools_non_blocking: bool
    #: proactive audio always on; an explicit `proactiveAudio: false` is refused (1007)
    proactive_audio: bool
    #: after a resume, replies wait until the calls the old connection left open are answered
    resume_waits_for_open_calls: bool


GEMINI_25 = Profile(
    family="2.5", mid_turn_handles=False, interaction_status=False, tools_non_blocking=False,
    proactive_audio=False, resume_waits_for_open_calls=False,
)
GEMINI_3 = Profile(
    family="3", mid_turn_handles=True, interaction_status=True, tools_non_blocking=True,
    proactive_audio=True, resume_waits_for_open_calls=True,
)

#: Live models by name: the session-management guide's, today's native-audio ones (Gemini API
#: and Vertex names), and the 3.x Live models.
LIVE_MODELS: dict[str, Profile] = {
    "gemini-live-2.5-flash-preview": GEMINI_25,
    "gemini-live-2.5-flash": GEMINI_25,
    "gemini-2.0-flash-live-001": GEMINI_25,
    "gemini-2.5-flash-native-audio-preview-09-2025": GEMINI_25,
    "gemini-2.5-flash-native-audio-preview-12-2025": GEMINI_25,
    "gemini-2.5-flash-native-audio-latest": GEMINI_25,
    "gemini-2.5-flash-preview-native-audio-dialog": GEMINI_25,
    "gemini-2.5-flash-exp-native-audio-thinking-dialog": GEMINI_25,
    "gemini-live-2.5-flash-native-audio": GEMINI_25,
    "gemini-live-2.5-flash-preview-native-audio-09-2025": GEMINI_25,
    "gemini-3.1-flash-live-preview": GEMINI_3,
    "gemini-3.8-live": GEMINI_3,
}

_VERSION = re.compile(
    r"generativelanguage\.(v1alpha|v1beta|v1)\.|aiplatform\.(v1beta1|v1)\."
)


def profile_for(model: str, extra: tuple[str, ...] = ()) -> Profile | None:
    """The profile of a model name (without `models/`), or None for a name the service refuses."""
    if model in LIVE_MODELS:
        return LIVE_MODELS[model]
    return GEMINI_25 if model in extra else None


def api_version(path: str) -> str:
    """The API version a client dialed, from the WebSocket path (`v1beta` if none is found)."""
    match = _VERSION.search(path)
    if match is None:
        return "v1beta"
    return match.group(1) or match.group(2)
