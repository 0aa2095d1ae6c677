"""Settings are checked when they are built: each bad one raises SettingsError naming the field and
the value, instead of failing later inside a session (or never)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from google import genai

from statemachine import (
    Keepalive,
    Limits,
    LiveSession,
    Policy,
    ReplayPolicy,
    RetryPolicy,
    SettingsError,
    connect,
    instrument,
    uninstrument,
    wrap_client,
)
from statemachine.emulator import DEFAULT_MODEL as MODEL
from statemachine.emulator import EmulatorSettings, LiveEmulator

NAN, INF = math.nan, math.inf

BAD: list[tuple[str, Callable[[], Any], str, str]] = [
    # (id, how it is built, the field the message names, the value it shows)
    ("retry-none", lambda: Policy(retry=None), "retry", "None"),
    ("limits-dict", lambda: Policy(limits={"connection_lifetime": 60}), "limits",
     "{'connection_lifetime': 60}"),
    ("replay-dict", lambda: Policy(replay={}), "replay", "{}"),
    ("keepalive-none", lambda: Policy(keepalive=None), "keepalive", "None"),
    ("on-expired-typo", lambda: Policy(on_expired="frsh"), "on_expired", "'frsh'"),
    ("compression-str", lambda: Policy(compression="yes"), "compression", "'yes'"),
    ("tokens-float", lambda: Policy(compression_trigger_tokens=1e4), "compression_trigger_tokens",
     "10000.0"),
    ("tokens-order", lambda: Policy(compression_trigger_tokens=100,
                                    compression_target_tokens=200), "compression_target_tokens",
     "200"),
    ("lifetime-nan", lambda: Limits(connection_lifetime=NAN), "connection_lifetime", "nan"),
    ("lifetime-inf", lambda: Limits(connection_lifetime=INF), "connection_lifetime", "inf"),
    ("lifetime-str", lambda: Limits(connection_lifetime="600"), "connection_lifetime", "'600'"),
    ("lifetime-bool", lambda: Limits(connection_lifetime=True), "connection_lifetime", "True"),
    ("setup-timeout-negative", lambda: Limits(setup_timeout=-1.0), "setup_timeout", "-1.0"),
    ("margin-nan", lambda: Limits(go_away_margin=NAN), "go_away_margin", "nan"),
    ("validity-inf", lambda: Limits(handle_validity=INF), "handle_validity", "inf"),
    ("lead-beyond-lifetime", lambda: Limits(connection_lifetime=60.0, go_away_lead=90.0),
     "go_away_lead", "90.0"),
    ("video-cap-beyond-audio", lambda: Limits(session_cap_video=1000.0), "session_cap_video",
     "1000.0"),
    ("scaled-nan", lambda: Policy().scaled(NAN), "factor", "nan"),
    ("scaled-zero", lambda: Limits().scaled(0), "factor", "0"),
    ("attempts-fraction", lambda: RetryPolicy(per_drop_attempts=2.5), "per_drop_attempts",
     "2.5"),
    ("session-attempts-negative", lambda: RetryPolicy(per_session_attempts=-1),
     "per_session_attempts", "-1"),
    ("base-delay-nan", lambda: RetryPolicy(base_delay=NAN), "base_delay", "nan"),
    ("max-delay-inf", lambda: RetryPolicy(max_delay=INF), "max_delay", "inf"),
    ("max-below-base", lambda: RetryPolicy(base_delay=2.0, max_delay=1.0), "max_delay", "1.0"),
    ("multiplier-nan", lambda: RetryPolicy(multiplier=NAN), "multiplier", "nan"),
    ("jitter-above-one", lambda: RetryPolicy(jitter=1.5), "jitter", "1.5"),
    ("window-zero", lambda: RetryPolicy(session_window=0.0), "session_window", "0.0"),
    ("staleness-nan", lambda: ReplayPolicy(audio_staleness=NAN), "audio_staleness", "nan"),
    ("slack-negative", lambda: ReplayPolicy(crossing_slack=-0.1), "crossing_slack", "-0.1"),
    ("answered-typo", lambda: ReplayPolicy(answered_turns="twice"), "answered_turns",
     "'twice'"),
    ("ping-interval-negative", lambda: Keepalive(ping_interval=-5.0), "ping_interval", "-5.0"),
    ("ping-timeout-negative", lambda: Keepalive(ping_timeout=-1), "ping_timeout", "-1"),
    ("ping-timeout-nan", lambda: Keepalive(ping_timeout=NAN), "ping_timeout", "nan"),
    ("close-timeout-zero", lambda: Keepalive(close_timeout=0), "close_timeout", "0"),
    ("emu-scale-nan", lambda: EmulatorSettings(time_scale=NAN), "time_scale", "nan"),
    ("emu-scale-zero", lambda: EmulatorSettings(time_scale=0.0), "time_scale", "0.0"),
    ("emu-lifetime-negative", lambda: EmulatorSettings(connection_lifetime=-600.0),
     "connection_lifetime", "-600.0"),
    ("emu-lead-negative", lambda: EmulatorSettings(go_away_lead=-1.0), "go_away_lead", "-1.0"),
    ("emu-lead-beyond-lifetime", lambda: EmulatorSettings(connection_lifetime=10.0),
     "go_away_lead", "50.0"),
    ("emu-setup-delay-negative", lambda: EmulatorSettings(setup_delay=-0.5), "setup_delay",
     "-0.5"),
    ("emu-chunk-interval-inf", lambda: EmulatorSettings(chunk_interval=INF), "chunk_interval",
     "inf"),
    ("emu-playback-negative", lambda: EmulatorSettings(playback_delay=-1.0), "playback_delay",
     "-1.0"),
    ("emu-validity-negative", lambda: EmulatorSettings(handle_validity=-1.0), "handle_validity",
     "-1.0"),
    ("emu-cap-nan", lambda: EmulatorSettings(session_cap_audio=NAN), "session_cap_audio", "nan"),
    ("emu-chunks-fraction", lambda: EmulatorSettings(chunks_per_reply=1.5), "chunks_per_reply",
     "1.5"),
    ("emu-chunks-zero", lambda: EmulatorSettings(chunks_per_reply=0), "chunks_per_reply", "0"),
    ("emu-context-negative", lambda: EmulatorSettings(context_window=-1), "context_window", "-1"),
]


@pytest.mark.parametrize(("build", "field", "value"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_setting_raises_settings_error_naming_field_and_value(
        build: Callable[[], Any], field: str, value: str) -> None:
    """The bad setting fails at construction, with a message naming the field and the value."""
    with pytest.raises(SettingsError) as caught:
        build()
    message = str(caught.value)
    assert field in message and value in message, message


GOOD: list[Callable[[], Any]] = [
    Policy,
    lambda: Policy(keepalive=Keepalive(ping_interval=None, ping_timeout=None)),
    lambda: Policy(retry=RetryPolicy(per_session_attempts=0, jitter=0, max_delay=100)),
    lambda: Limits(handle_validity=10.0, token_lead=599.0),
    lambda: Policy().scaled(0.01),
    lambda: Limits(handle_validity=7200.0 * 0.01, time_scale=0.01, connection_lifetime=6.0,
                   go_away_lead=0.3, go_away_margin=0.02, token_lead=0.6),
    lambda: EmulatorSettings(reject_resume_code=4000, vad_threshold=32768),
    lambda: Policy(on_expired="terminate", replay=ReplayPolicy(answered_turns="repeat")),
    lambda: Policy().scaled(0.001),
    lambda: EmulatorSettings(handle_validity=0.0, go_away_lead=0.0, chunk_interval=0.0),
]


@pytest.mark.parametrize("build", GOOD)
def test_sound_settings_are_accepted(build: Callable[[], Any]) -> None:
    """The checks refuse only what is wrong: None keepalive, no reconnect at all, enum names,
    zero emulator delays, the shortest handle validity, an application close code and a tiny
    time scale all build."""
    build()


# -- what a first hour with the library tried (issue 25): each named, with what is allowed

CLIENT = genai.Client(api_key="not-a-key")

FIRST_HOUR: list[tuple[str, Callable[[], Any], str, str, str]] = [
    # (id, how it is built, the field, the value shown, words that say what is allowed)
    ("policy-limits", lambda: connect(CLIENT, model=MODEL, policy=Limits()), "policy",
     "Limits(", "Policy(limits=Limits"),
    ("policy-str", lambda: connect(CLIENT, model=MODEL, policy="x"), "policy", "'x'",
     "must be a Policy"),
    ("on-notice-int", lambda: connect(CLIENT, model=MODEL, on_notice=5), "on_notice", "5",
     "must be callable"),
    ("on-event-str", lambda: connect(CLIENT, model=MODEL, on_event="print"), "on_event",
     "'print'", "must be callable"),
    ("lease-wait-negative", lambda: connect(CLIENT, model=MODEL, lease_wait=-1), "lease_wait",
     "-1", ">= 0"),
    ("lease-ttl-zero", lambda: connect(CLIENT, model=MODEL, lease_ttl=0), "lease_ttl", "0",
     "> 0"),
    ("store-dict", lambda: connect(CLIENT, model=MODEL, store={}, session_key="k"), "store",
     "{}", "handle store"),
    ("session-live-notice", lambda: LiveSession(CLIENT, model=MODEL, on_notice=5), "on_notice",
     "5", "must be callable"),
    ("emulator-policy", lambda: LiveEmulator().connect(policy="x"), "policy", "'x'",
     "must be a Policy"),
    ("instrument-policy", lambda: instrument(policy=Limits()), "policy", "Limits(",
     "must be a Policy"),
    ("instrument-lease", lambda: instrument(lease_wait=-1), "lease_wait", "-1", ">= 0"),
    ("wrap-on-notice", lambda: wrap_client(CLIENT, on_notice=5), "on_notice", "5",
     "must be callable"),
    ("wrap-unknown", lambda: wrap_client(CLIENT, polcy=Policy()), "polcy", "polcy", "policy"),
    ("token-lead-beyond-connection", lambda: Limits(token_lead=10000), "token_lead", "10000",
     "shorter than connection_lifetime"),
    ("handle-validity-short", lambda: Limits(handle_validity=1), "handle_validity", "1",
     "at least 10 s"),
    ("handle-validity-short-scaled", lambda: Limits(handle_validity=0.005, time_scale=0.001),
     "handle_validity", "0.005", "at least 10 s (x time_scale 0.001 = 0.01 s)"),
    ("per-drop-zero", lambda: RetryPolicy(per_drop_attempts=0), "per_drop_attempts", "0",
     ">= 1"),
    ("emu-vad-nan", lambda: EmulatorSettings(vad_threshold=NAN), "vad_threshold", "nan",
     "(0, 32768]"),
    ("emu-reject-code", lambda: EmulatorSettings(reject_resume_code=12345),
     "reject_resume_code", "12345", "3000-4999"),
    ("emu-reject-code-reserved", lambda: EmulatorSettings(reject_resume_code=1006),
     "reject_resume_code", "1006", "1007-1014"),
]


@pytest.mark.parametrize(("build", "field", "value", "allowed"), [b[1:] for b in FIRST_HOUR],
                         ids=[b[0] for b in FIRST_HOUR])
def test_wrong_arguments_fail_when_given(build: Callable[[], Any], field: str, value: str,
                                         allowed: str) -> None:
    """connect(), LiveSession, instrument(), wrap_client() and the settings records refuse a
    wrong argument as they are called, naming it, its value and what is allowed; nothing is
    left instrumented by a refused instrument()."""
    try:
        with pytest.raises(SettingsError) as caught:
            build()
    finally:
        uninstrument()
    message = str(caught.value)
    assert field in message and value in message and allowed in message, message
