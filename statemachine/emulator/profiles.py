"""Model generations the emulator can play, chosen by the model name in the setup.

The 2.5 family issues resumption handles only at turn boundaries and blocks on tool calls; the
3.x family issues handles mid-turn, reports `interactionStatus`, runs tools without blocking, keeps
a resumed session waiting for the tool calls the old connection left unanswered, and always has
proactive audio on. 3.8 (`gemini-3.8-live`, today's recommended default) adds what its migration
notes say, each a field of `Profile` (a switch: `EmulatorSettings.profile_switches` turns any of
them on or off for a run):

- `tools_non_blocking`: a declaration without `behavior` is NON_BLOCKING; a response follows
  its `scheduling` (SILENT / WHEN_IDLE / INTERRUPT);
- `input_cancels_blocking_calls`: on Vertex, new input while a BLOCKING call runs cancels it
  (`toolCallCancellation`, then `interrupted`);
- `empty_result_repeats`: a tool that returned nothing is called again, with the same name and
  arguments, this many more times in the turn (2-5 in the field; 3 here);
- `incomplete_content_waits`: `clientContent` without `turnComplete` makes the model wait:
  nothing is answered until a `turnComplete` comes;
- `proactive_audio`: always on; an explicit `proactivity.proactiveAudio: false` is refused (1007);
- `thinking_level_refused`: a `thinkingConfig` with `thinkingLevel` is refused (1007);
- `audio_only`: output is audio only; a setup asking for TEXT is refused (1007).

Every 3.x model takes `contextUpdate` (a new system instruction and tool list, in order with the
other input; a resume keeps what the handle holds, whatever its setup says).

Names outside the table are refused like the service refuses them, and so is a model the API
version dialed does not serve (`V1BETA_ONLY`: the `-latest` aliases and some previews exist
only on `v1beta`)."""

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
    #: Vertex: new input while a BLOCKING call runs makes the server cancel the call
    input_cancels_blocking_calls: bool = False
    #: a tool that returned nothing (no `response`, or an empty one) is called again this many
    #: more times in the turn, with the same name and arguments (0: never)
    empty_result_repeats: int = 0
    #: `clientContent` without `turnComplete` makes the model wait for more: no input is
    #: answered until a `turnComplete`
    incomplete_content_waits: bool = False
    #: a `thinkingLevel` in the setup is refused (1007)
    thinking_level_refused: bool = False
    #: output is audio only: `responseModalities` with TEXT is refused (1007)
    audio_only: bool = False


GEMINI_25 = Profile(
    family="2.5", mid_turn_handles=False, interaction_status=False, tools_non_blocking=False,
    proactive_audio=False, resume_waits_for_open_calls=False,
)
GEMINI_3 = Profile(
    family="3", mid_turn_handles=True, interaction_status=True, tools_non_blocking=True,
    proactive_audio=True, resume_waits_for_open_calls=True,
)
GEMINI_38 = attrs.evolve(
    GEMINI_3, family="3.8", input_cancels_blocking_calls=True, empty_result_repeats=3,
    incomplete_content_waits=True, thinking_level_refused=True, audio_only=True,
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
    "gemini-3.8-live": GEMINI_38,
}

#: Gemini API models served on `v1beta` (and `v1alpha`) only: the `-latest` aliases and the
#: experimental dialog previews. Dialed on `v1` (google-genai 3.x's default) they are refused.
V1BETA_ONLY = frozenset({
    "gemini-2.5-flash-native-audio-latest",
    "gemini-2.5-flash-preview-native-audio-dialog",
    "gemini-2.5-flash-exp-native-audio-thinking-dialog",
})


def served(model: str, version: str, vertex: bool) -> bool:
    """Whether the API version dialed serves the model (Vertex serves its models on both)."""
    return vertex or version != "v1" or model not in V1BETA_ONLY


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
