"""The sans-I/O engine: table paths, the state x trigger matrix, and lifecycle behaviour."""

from __future__ import annotations

import random
from typing import Any

import attrs
import pytest

from statemachine import (
    InvalidTransition,
    LocalMisuse,
    OnExpired,
    Policy,
    SessionClosed,
    SettingsError,
)
from statemachine.core import Lifecycle, table
from statemachine.core.actions import (
    ArmTimer,
    CloseConnection,
    ContextLost,
    Ended,
    InputDropped,
    Notify,
    OpenConnection,
    RepeatedReply,
    ReplyInterrupted,
    Resumed,
    Send,
    TokenExpiring,
)
from statemachine.core.events import (
    ClientInput,
    Close,
    Connect,
    ConnectionLost,
    Failure,
    GoAway,
    InputKind,
    Latency,
    ModelOutput,
    ResumptionUpdate,
    SetupComplete,
    Timer,
    TokenIssued,
    ToolCall,
    TurnComplete,
    Usage,
)
from statemachine.core.persistence import Persistence
from statemachine.core.policy import Backend, Limits, ReplayPolicy, RetryPolicy
from statemachine.core.table import Guard, State, Trigger
from statemachine.testing import Trace

from .drivers import Driver

RESTING = [s for s in State if s is not State.EXPIRED]  # expired always moves on at once


def make(policy: Policy | None = None, **kw: Any) -> tuple[Lifecycle, Driver, list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    engine = Lifecycle(policy=policy, audit=records.append, rng=random.Random(7), **kw)
    return engine, Driver(engine), records


def drive_to(state: State, policy: Policy | None = None) -> tuple[Lifecycle, Driver, list[Any]]:
    # with a store: the hand-off rows need one
    engine, d, records = make(policy, fresh_tokens=True, persistence=Persistence(key="driven"))
    for src, row in table.shortest_paths()[state]:
        d.take(src, row)
    return engine, d, records


def drive_live_to(state: State, policy: Policy) -> tuple[Lifecycle, Driver, list[Any]]:
    """connect, setup_complete, then on to `state` by the rows a live session takes."""
    engine, d, records = make(policy, fresh_tokens=True)
    route = {State.STREAMING: [], State.DRAINING: [Trigger.GO_AWAY],
             State.RESUMING: [Trigger.CONNECTION_LOST]}[state]
    for trigger in [Trigger.CONNECT, Trigger.SETUP_COMPLETE, *route]:
        source = engine.state
        row = next(r for r in table.rows_for(trigger, source)
                   if (r.dest is not State.TERMINATED and Guard.HANDLE_VALID not in r.guards)
                   or (trigger is Trigger.CONNECTION_LOST and r.dest is State.RESUMING))
        d.take(source, row)
    assert engine.state is state
    return engine, d, records


def transitions(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return Trace.of(records).transitions()


def notices(d: Driver, kind: type) -> list[Any]:
    return [a.notice for a in d.actions if isinstance(a, Notify) and isinstance(a.notice, kind)]


def session(policy: Policy | None = None, **kw: Any) -> tuple[Lifecycle, Driver, list[Any]]:
    """A streaming session with one resumable handle."""
    engine, d, records = make(policy, **kw)
    d.feed(Connect(at=d.tick()))
    d.feed(SetupComplete(at=d.tick(), generation=d.gen))
    return engine, d, records


def send(d: Driver, kind: InputKind = InputKind.CONTENT, turn_complete: bool = True,
         **kw: Any) -> list[Any]:
    return d.feed(ClientInput(at=d.tick(), kind=kind, payload=kind.value,
                              turn_complete=turn_complete, **kw))


# -- paths and matrix ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", list(State))
def test_shortest_path_replays_through_engine(target: State) -> None:
    """Each shortest path from the table, fed as events, takes the engine through those rows."""
    path = table.shortest_paths()[target]
    _, _, records = drive_to(target)
    taken = transitions(records)
    expected = [(row.trigger.value, src.value, row.dest.value) for src, row in path]
    assert taken[: len(expected)] == expected
    assert not [r for r in records if r["kind"] == "rejected"]


@pytest.mark.parametrize("state", RESTING)
@pytest.mark.parametrize("trigger", list(Trigger))
def test_state_trigger_matrix(state: State, trigger: Trigger) -> None:
    """A trigger with no row from a state is rejected and audited; each row that exists is taken."""
    rows = table.rows_for(trigger, state)
    if not rows:
        engine, _, records = drive_to(state)
        assert engine.fire(trigger) == []
        assert engine.state is state
        assert records[-1]["kind"] == "rejected"
        assert records[-1]["name"] == trigger.value
        assert records[-1]["source"] == state.value
        return
    for row in rows:
        if trigger is Trigger.RESTART_OR_GIVE_UP:
            continue  # only reachable from expired, covered below
        if trigger is Trigger.SESSION_CAP:  # the cap is armed only once a session went live
            _, d, records = drive_live_to(state, Policy(compression=False))
        else:
            _, d, records = drive_to(state)
        before = len(records)
        d.take(state, row)
        taken = transitions(records[before:])
        assert (trigger.value, state.value, row.dest.value) in taken, (row, taken)


@pytest.mark.parametrize("on_expired", [OnExpired.FRESH, OnExpired.TERMINATE])
def test_expired_moves_on_by_policy(on_expired: OnExpired) -> None:
    """An expired session restarts fresh or terminates, as the policy says."""
    engine, d, records = drive_to(State.EXPIRED, Policy(on_expired=on_expired))
    taken = transitions(records)
    assert taken[-2][2] == "expired"
    if on_expired is OnExpired.FRESH:
        assert taken[-1] == ("restart_or_give_up", "expired", "connecting")
        assert engine.state is State.CONNECTING
        assert notices(d, ContextLost)
    else:
        assert taken[-1] == ("restart_or_give_up", "expired", "terminated")
        assert "policy does not start a fresh session" in notices(d, Ended)[-1].reason


# -- rotation ----------------------------------------------------------------------------


def test_go_away_waits_for_turn_then_rotates_at_safe_point() -> None:
    """goAway mid-turn does not cut the reply: rotation waits for turnComplete + handle."""
    engine, d, _records = session()
    send(d)
    d.feed(ModelOutput(at=d.tick(), generation=1, text="part"))
    d.feed(GoAway(at=d.tick(), generation=1,
                                                           time_left=30))
    assert engine.state is State.DRAINING
    d.feed(ModelOutput(at=d.tick(), generation=1, text="more"))
    d.feed(TurnComplete(at=d.tick(), generation=1))
    assert engine.state is State.DRAINING  # no handle newer than the input yet
    out = d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="H", resumable=True))
    assert engine.state is State.RESUMING
    kinds = [type(a) for a in out]
    assert kinds.index(CloseConnection) < kinds.index(OpenConnection)
    opened = next(a for a in out if isinstance(a, OpenConnection))
    assert opened.handle == "H" and opened.generation == 2
    assert engine.counters.rotations == 1


def test_rotation_deadline_forces_rotation_with_last_handle() -> None:
    """When the server goes silent after goAway, the timer rotates at deadline - margin."""
    engine, d, _ = session()
    send(d)
    d.handle()
    send(d)  # a new turn, never answered
    out = d.feed(GoAway(at=d.tick(), generation=1,
                                                                 time_left=30))
    arm = next(a for a in out if isinstance(a, ArmTimer) and a.timer is Timer.ROTATE)
    assert arm.delay == pytest.approx(30 - engine.go_away_margin)
    d.fire_timer(Timer.ROTATE)
    assert engine.state is State.RESUMING
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replayed = [a for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert [a.entry.seq for a in replayed] == [2]  # the unanswered turn is replayed
    assert replayed[0].replay


def test_ignores_non_resumable_updates() -> None:
    """A resumable:false update with an empty handle never replaces the good handle."""
    engine, d, _ = session()
    d.handle("good")
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="", resumable=False))
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="x", resumable=False))
    assert engine.handle == "good-1"


def test_stale_events_from_old_connection_are_ignored() -> None:
    """A late close of the rotated-away socket does not disturb the new connection."""
    engine, d, records = session()
    d.handle()
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1011, reason="Deadline expired"))
    assert engine.state is State.STREAMING and engine.generation == 2
    assert records[-1]["stale"] is True


# -- journal and replay ---------------------------------------------------------------------------


def test_audio_replay_window_and_latest_video() -> None:
    """After a drop: stale audio and superseded video are dropped with reasons; text replayed."""
    policy = Policy(replay=ReplayPolicy(audio_staleness=1.0))
    _engine, d, _ = session(policy)
    d.handle()
    send(d, InputKind.AUDIO, turn_complete=False)
    send(d, InputKind.VIDEO, turn_complete=False)
    send(d, InputKind.CONTENT)
    d.tick(2.0)
    send(d, InputKind.AUDIO, turn_complete=False)
    send(d, InputKind.VIDEO, turn_complete=False)
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replayed = [a.entry.seq for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert replayed == [3, 4, 5]
    dropped = {n.seq: n.reason for n in notices(d, InputDropped)}
    assert set(dropped) == {1, 2}
    assert "replay window" in dropped[1] and "superseded" in dropped[2]
    assert notices(d, Resumed)[-1].dropped == 2


def test_input_while_resuming_is_sent_after_replay_in_order() -> None:
    """Input sent during a resume waits, then goes out after the journal, in order."""
    engine, d, _ = session()
    d.handle()
    send(d)
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    assert engine.state is State.RESUMING
    assert not [a for a in send(d) if isinstance(a, Send)]
    d.feed(SetupComplete(at=d.tick(), generation=2))
    sent = [(a.entry.seq, a.replay) for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert sent == [(1, True), (2, False)]


def test_answered_turn_without_handle_replays_as_history() -> None:
    """Reply arrived, covering handle did not: replay input + reply as history, no second answer."""
    engine, d, _ = session()
    d.handle()
    send(d)
    d.feed(ModelOutput(at=d.tick(), generation=1, text="the answer"))
    d.feed(TurnComplete(at=d.tick(), generation=1))
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = [a for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert len(replay) == 1 and replay[0].as_history
    assert replay[0].entry.reply_text == "the answer"
    assert engine.counters.replayed_as_history == 1
    assert notices(d, Resumed)[-1].as_history == 1


def test_answered_turn_repeat_policy_flags_repeated_reply() -> None:
    """With the repeat policy the input is replayed and the application is warned."""
    engine, d, _ = session(Policy(replay=ReplayPolicy(answered_turns="repeat")))
    d.handle()
    send(d)
    d.feed(ModelOutput(at=d.tick(), generation=1, text="answer"))
    d.feed(TurnComplete(at=d.tick(), generation=1))
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    assert [n.seq for n in notices(d, RepeatedReply)] == [1]
    assert engine.counters.repeated_replies == 1


def test_transparent_mode_prunes_by_last_consumed_index() -> None:
    """Vertex: the server's index says what it consumed; only the rest is replayed."""
    engine, d, _ = session(backend=Backend.VERTEX)
    assert engine.transparent
    for _ in range(4):
        send(d, InputKind.AUDIO, turn_complete=False)
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="H", resumable=True,
                            last_consumed_index=2))
    assert [e.seq for e in engine.journal] == [3, 4]
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = [a for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert [a.entry.seq for a in replay] == [3, 4]
    assert [a.entry.sent_index for a in replay] == [1, 2]  # numbering restarts per connection


def mid_turn_handle(d: Driver, name: str = "mid") -> None:
    """A resumable handle while the reply streams (what 3.x models send)."""
    d.feed(ResumptionUpdate(at=d.tick(), generation=d.gen, handle=f"{name}-{d.gen}",
                            resumable=True))


def test_turn_held_by_a_mid_turn_handle_is_continued_not_resent() -> None:
    """The handle came while the reply streamed: the resumed session has the turn, so it is
    not sent again; the model is asked to continue (turnComplete, no turns). A turn sent after
    the reply began is not what the reply answers: it is replayed."""
    engine, d, _ = session()
    d.handle()
    send(d)
    d.feed(ModelOutput(at=d.tick(0.5), generation=1, text="par"))
    send(d)  # a second turn while the first one's reply streams
    mid_turn_handle(d)
    assert [(e.seq, e.held) for e in engine.journal] == [(1, True), (2, False)]
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = [(a.entry.seq, a.continuation) for a in d.actions
              if isinstance(a, Send) and a.generation == 2]
    assert replay == [(1, True), (2, False)]
    assert notices(d, Resumed)[-1].continued == 1
    assert notices(d, ReplyInterrupted)
    d.feed(ModelOutput(at=d.tick(), generation=2, text="whole answer"))
    d.feed(TurnComplete(at=d.tick(), generation=2))
    d.handle()
    assert len(engine.journal) == 0


def test_a_turn_sent_less_than_a_round_trip_before_a_mid_turn_handle_is_not_held() -> None:
    """A reply the server started on its own (to speech, proactive audio) streams; a turn goes
    out a moment before a mid-turn handle comes. The server may not have had it when it
    issued the handle: it is replayed (a possible duplicate), never taken as held (a loss).
    One that went out well before the handle is held even though the reply began before it:
    the server had it, and a continuation gets it answered."""
    engine, d, _ = session()
    d.handle()
    send(d, InputKind.AUDIO, turn_complete=False)  # the speech
    d.feed(ModelOutput(at=d.tick(1.0), generation=1, text="I heard"))
    send(d)  # a text turn, a millisecond before the handle
    d.feed(ResumptionUpdate(at=d.now + 0.001, generation=1, handle="mid", resumable=True))
    assert [(e.seq, e.held) for e in engine.journal if e.seq] == [(2, False)]
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = [(a.entry.seq, a.continuation) for a in d.actions
              if isinstance(a, Send) and a.generation == 2]
    assert (2, False) in replay, replay  # sent again as a turn
    assert notices(d, RepeatedReply) == [RepeatedReply(seq=2, possible=True)]  # told first
    engine, d, _ = session()
    d.handle()
    d.feed(ModelOutput(at=d.tick(), generation=1, text="unprompted"))
    send(d)
    d.tick(1.0)
    mid_turn_handle(d)
    assert [(e.seq, e.held) for e in engine.journal] == [(1, True)]


def test_answered_held_turn_sends_only_the_rest_of_its_reply_as_history() -> None:
    """The reply ended but the handle after it never came: the mid-turn handle holds the turn
    and the reply up to that handle; the rest goes as history, not the turn again."""
    engine, d, _ = session()
    d.handle()
    send(d)
    d.feed(ModelOutput(at=d.tick(0.5), generation=1, text="part"))
    mid_turn_handle(d)
    d.feed(ModelOutput(at=d.tick(), generation=1, text="ial answer"))
    d.feed(TurnComplete(at=d.tick(), generation=1))
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = [a for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert len(replay) == 1 and replay[0].as_history and not replay[0].continuation
    entry = replay[0].entry
    assert entry.held and entry.reply_text[entry.held_chars:] == "ial answer"
    assert engine.counters.continued == 0


def test_transparent_mode_holds_a_consumed_turn_whose_reply_was_cut() -> None:
    """Vertex: a turn the index says was consumed but that was not answered yet is held (its
    reply is owed), not pruned: the resume asks the model to continue."""
    engine, d, _ = session(backend=Backend.VERTEX)
    send(d)
    d.feed(ModelOutput(at=d.tick(), generation=1, text="par"))
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="H", resumable=True,
                            last_consumed_index=1))
    assert [(e.seq, e.held) for e in engine.journal] == [(1, True)]
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replay = [a for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert [(a.entry.seq, a.continuation) for a in replay] == [(1, True)]


def test_vertex_handle_validity_is_24h() -> None:
    """The backend picks the handle validity unless the caller set one."""
    assert Lifecycle(backend=Backend.VERTEX, audit=lambda r: None).policy.limits.handle_validity \
        == 24 * 3600
    custom = Policy(limits=Limits(handle_validity=7200))  # explicit, equal to the Gemini default
    assert Lifecycle(policy=custom, backend=Backend.VERTEX,
                     audit=lambda r: None).policy.limits.handle_validity == 7200


def test_tool_call_blocks_safe_point_until_answered() -> None:
    """A pending tool call is never a safe point; the response is journaled and replayed."""
    engine, d, _ = session()
    d.handle()
    send(d)
    d.feed(ToolCall(at=d.tick(), generation=1, ids=("c1",)))
    d.feed(GoAway(at=d.tick(), generation=1,
                                                           time_left=30))
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="", resumable=False))
    assert engine.state is State.DRAINING
    send(d, InputKind.TOOL_RESPONSE, turn_complete=False, tool_ids=("c1",))
    d.feed(ModelOutput(at=d.tick(), generation=1, text="done"))
    assert engine.state is State.DRAINING
    d.handle()
    assert engine.state is State.RESUMING
    assert len(engine.journal) == 0


# -- failures, budgets, expiry ------------------------------------------------------------------


def test_backoff_is_exponential_and_budget_bounded() -> None:
    """Transient failures back off exponentially with jitter; the per-drop budget ends it."""
    retry = RetryPolicy(per_drop_attempts=3, base_delay=1.0, max_delay=100, jitter=0.0)
    engine, d, _ = make(Policy(retry=retry))
    d.feed(Connect(at=d.tick()))
    delays = []
    for _ in range(4):
        out = d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1011,
                                    reason="Internal error occurred.", during_setup=True))
        delays += [a.delay for a in out if isinstance(a, ArmTimer) and a.timer is Timer.BACKOFF]
        if engine.state is State.TERMINATED:
            break
        d.fire_timer(Timer.BACKOFF)
    assert delays == [1.0, 2.0, 4.0]
    assert engine.state is State.TERMINATED
    assert "retry budget exhausted" in notices(d, Ended)[-1].reason


def test_fatal_close_terminates_with_reason() -> None:
    """An unknown model (1008 at setup) terminates at once, naming why."""
    engine, d, _ = make()
    d.feed(Connect(at=d.tick()))
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1008,
                          reason="models/nope is not found", during_setup=True))
    assert engine.state is State.TERMINATED
    end = notices(d, Ended)[-1]
    assert end.code == 1008 and "unknown model" in end.reason


def test_rejected_resume_expires_and_restarts_fresh() -> None:
    """A refused handle (1007 at setup) expires the session; a fresh one says context was lost."""
    engine, d, _ = session()
    d.handle()
    send(d)
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(ConnectionLost(at=d.tick(), generation=2, code=1007, reason="invalid",
                          during_setup=True))
    assert engine.state is State.CONNECTING
    lost = notices(d, ContextLost)[-1]
    assert "refused the resumption handle" in lost.reason
    assert [e.seq for e in lost.unsent] == [1]
    assert engine.handle is None
    assert [n.seq for n in notices(d, InputDropped)] == [1]


def test_session_cap_without_compression() -> None:
    """Without compression the 15 min cap is armed, and 2 min once video is sent."""
    engine, d, _ = session(Policy(compression=False))
    caps = [a.delay for a in d.actions if isinstance(a, ArmTimer) and a.timer is Timer.SESSION_CAP]
    assert caps == [900.0]
    out = send(d, InputKind.VIDEO, turn_complete=False)
    cap = next(a for a in out if isinstance(a, ArmTimer) and a.timer is Timer.SESSION_CAP)
    assert cap.delay == pytest.approx(120.0 - (d.now - engine.span.started_at))  # type: ignore
    d.handle()  # the server holds the session: the cap loses it
    d.fire_timer(Timer.SESSION_CAP)
    assert any("duration cap" in n.reason for n in notices(d, ContextLost))


def test_no_session_cap_with_compression_and_detection() -> None:
    """Compression on: no cap; a drop in prompt tokens after the trigger is detected."""
    engine, d, _records = session()
    assert not [a for a in d.actions if isinstance(a, ArmTimer) and a.timer is Timer.SESSION_CAP]
    d.feed(Usage(at=d.tick(), generation=1, prompt_tokens=30_000))
    d.feed(Usage(at=d.tick(), generation=1, prompt_tokens=13_000))
    assert engine.state is State.COMPRESSED
    d.handle()
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    assert engine.state is State.COMPRESSED


def test_close_reports_unsent_input_and_stops_everything() -> None:
    """Closing mid-resume: no reconnect, timers cancelled, unsent input reported dropped."""
    engine, d, _ = session()
    d.handle()
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1011, reason="unavailable"))
    send(d)
    out = d.feed(Close(at=d.tick()))
    assert engine.state is State.TERMINATED
    assert not [a for a in out if isinstance(a, OpenConnection)]
    assert [n.reason for n in notices(d, InputDropped)] == [
        "the session ended before it could be sent"
    ]
    with pytest.raises(SessionClosed, match="closed by the application"):
        send(d)


def test_local_misuse_errors_name_state_and_event() -> None:
    """Sending before connect, or connecting twice, raises a named local error."""
    _engine, d, _ = make()
    with pytest.raises(LocalMisuse, match="before connect"):
        send(d)
    d.feed(Connect(at=d.tick()))
    with pytest.raises(InvalidTransition, match="'connect' in state 'connecting'") as err:
        d.feed(Connect(at=d.tick()))
    assert isinstance(err.value, RuntimeError)


def test_audit_records_are_complete_and_secret_free() -> None:
    """One record per fed event, contiguous sequence numbers, handles only as fingerprints."""
    _engine, d, records = session()
    d.handle("s3cr3t-handle")
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    assert sum(r["kind"] == "event" for r in records) == d.fed
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert "s3cr3t" not in repr(records)
    assert records[-1]["handle_fp"].startswith("h-")


def test_the_api_key_stays_secret_after_many_handles() -> None:
    """The engine keeps the latest handles as secrets, bounded; a long session's handles must
    never push out the key the shell added (it then showed in a close reason)."""
    engine, d, records = session()
    engine.add_secret("AIza-secret-key", "[api key]")
    for i in range(100):
        d.handle(f"handle-{i}")
    d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1011,
                          reason="quota exceeded for AIza-secret-key and handle-99-1"))
    assert "AIza-secret-key" not in repr(records) and "handle-99" not in repr(records)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"go_away_margin": 40.0}, "must be smaller than go_away_lead"),
        ({"setup_timeout": -1.0}, "setup_timeout must be > 0"),
        ({"go_away_margin": -1.0}, "go_away_margin must be >= 0"),
        ({"session_cap_video": 1000.0}, "cannot exceed"),
    ],
)
def test_bad_limits_fail_at_construction(kwargs: dict[str, float], message: str) -> None:
    """Bad settings raise a clear error when built, never later."""
    with pytest.raises(SettingsError, match=message):
        Limits(**kwargs)


def test_bad_policy_values_fail() -> None:
    """Retry and compression settings are validated too."""
    with pytest.raises(SettingsError, match="jitter"):
        RetryPolicy(jitter=2)
    with pytest.raises(SettingsError, match="compression"):
        Policy(compression_trigger_tokens=10, compression_target_tokens=20)
    with pytest.raises(SettingsError, match="time scale"):
        Limits().scaled(0)


def test_scaled_policy_scales_every_duration() -> None:
    """One factor scales every duration, so tests can compress minutes into fractions."""
    scaled = Policy().scaled(0.001)
    assert scaled.limits.connection_lifetime == pytest.approx(0.6)
    assert scaled.for_backend(Backend.GEMINI).limits.handle_validity == pytest.approx(7.2)
    assert scaled.for_backend(Backend.VERTEX).limits.handle_validity == pytest.approx(86.4)
    assert scaled.retry.base_delay == pytest.approx(0.00025)
    assert scaled.replay.audio_staleness == pytest.approx(0.002)


def test_draining_holds_new_turns_until_the_next_connection() -> None:
    """A new turn sent while draining is journaled, not sent, so the rotation cannot cut it; it
    goes out first thing on the next connection."""
    engine, d, _ = session()
    d.handle()
    send(d)
    d.feed(ModelOutput(at=d.tick(), generation=1, text="answer"))
    d.feed(GoAway(at=d.tick(), generation=1, time_left=30))
    d.feed(TurnComplete(at=d.tick(), generation=1))
    held = send(d)
    assert not [a for a in held if isinstance(a, Send)]
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="H", resumable=True))
    assert engine.state is State.RESUMING
    d.feed(SetupComplete(at=d.tick(), generation=2))
    first = next(a for a in d.actions if isinstance(a, Send) and a.generation == 2)
    assert first.entry.seq == 2 and not first.replay


def test_forced_rotation_mid_reply_tells_the_application() -> None:
    """A rotation forced by the deadline while the model replies is reported, not silent."""
    _, d, _ = session()
    d.handle()
    send(d)
    d.feed(ModelOutput(at=d.tick(), generation=1, text="partial"))
    d.feed(GoAway(at=d.tick(), generation=1, time_left=30))
    d.fire_timer(Timer.ROTATE)
    cut = notices(d, ReplyInterrupted)
    assert len(cut) == 1 and cut[0].reason == "rotation_deadline"


def test_sessions_share_one_machine_and_leave_nothing_in_it() -> None:
    """Sessions are driven by the one shared machine without joining it: it holds no model and
    binds nothing per session, and an abandoned session is collected."""
    import gc
    import weakref

    from statemachine.core import MACHINE

    engines = [make()[0] for _ in range(50)]
    for engine in engines[:25]:
        engine.feed(Connect(at=0.0))
    assert MACHINE.models == []
    assert not any(hasattr(e, "trigger") or hasattr(e, "is_idle") for e in engines)
    refs = [weakref.ref(e) for e in engines]
    del engines, engine
    gc.collect()
    assert all(r() is None for r in refs)


def test_restored_handle_validity_counts_from_its_issue_time() -> None:
    """A stored handle is valid for what is left of its validity, whatever the clock's origin."""
    engine, d, _ = make(Policy(limits=Limits(handle_validity=100.0)))
    d.now = 50_000.0  # a monotonic clock far from zero
    engine.restore("h", at=d.now, age=99.0)
    d.feed(Connect(at=d.now))
    assert engine.state is State.RESUMING
    engine, d, _ = make(Policy(limits=Limits(handle_validity=100.0)))
    d.now = 50_000.0
    engine.restore("h", at=d.now, age=101.0)
    d.feed(Connect(at=d.now))
    assert engine.state is State.CONNECTING


def test_session_retry_budget_is_a_sliding_window() -> None:
    """Failures long ago do not count against the session budget: only those in the window."""
    retry = RetryPolicy(per_drop_attempts=10, per_session_attempts=3, session_window=100.0,
                        base_delay=0.0, max_delay=0.0, jitter=0.0)
    engine, d, _ = session(Policy(retry=retry))
    for _ in range(5):  # five drops, each 60 s apart: never three within 100 s
        d.handle()
        d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1006))
        d.feed(SetupComplete(at=d.tick(), generation=d.gen))
        d.tick(60.0)
    assert engine.state is State.STREAMING
    for _ in range(2):  # two quick failures inside the window still resume
        d.handle()
        d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1006))
        d.feed(SetupComplete(at=d.tick(), generation=d.gen))
    assert engine.state is State.STREAMING and engine.session_attempts == 3
    d.handle()
    d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1006))
    assert engine.state is State.TERMINATED
    assert "retry budget is exhausted" in notices(d, Ended)[-1].reason


@pytest.mark.parametrize(("code", "status", "todo"), [
    (1008, None, "check the model name"),
    (None, 401, "check the API key"),
    (1007, None, "check what the application sent last"),
])
def test_fatal_endings_say_what_to_do(code: int | None, status: int | None, todo: str) -> None:
    """A session that ends on a fatal close names what happened and what to do about it."""
    engine, d, _ = session() if code == 1007 else make()
    if code != 1007:
        d.feed(Connect(at=d.tick()))
    d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=code, http_status=status,
                          reason="x", during_setup=code != 1007))
    assert engine.state is State.TERMINATED
    assert todo in notices(d, Ended)[-1].reason


def test_nothing_is_lost_when_the_server_held_nothing_yet() -> None:
    """A goAway right after setup, before any handle or answer, with too little time for the
    turn: the fresh session gets the turn; nothing is reported dropped or lost."""
    engine, d, _ = session()
    send(d)
    d.feed(GoAway(at=d.tick(), generation=1, time_left=0.5))  # shorter than the margin
    d.fire_timer(Timer.ROTATE)
    assert engine.state is State.DRAINING  # no handle: the time the server gave is used
    d.tick(1.0)
    d.fire_timer(Timer.ROTATE)
    d.feed(SetupComplete(at=d.tick(), generation=d.gen))
    assert not notices(d, ContextLost) and not notices(d, InputDropped)
    resent = [a for a in d.actions if isinstance(a, Send) and a.generation == d.gen]
    assert [a.entry.seq for a in resent] == [1]


def test_a_later_shorter_go_away_moves_the_deadline_earlier() -> None:
    """A second goAway with less time left re-arms the rotation timer earlier; a longer one
    does not move it."""
    engine, d, _ = session()
    d.handle()
    d.feed(ModelOutput(at=d.tick(), generation=1, text="busy"))
    first = d.feed(GoAway(at=d.tick(), generation=1, time_left=30))
    second = d.feed(GoAway(at=d.tick(), generation=1, time_left=5))
    third = d.feed(GoAway(at=d.tick(), generation=1, time_left=60))
    delays = [next(a.delay for a in out if isinstance(a, ArmTimer) and a.timer is Timer.ROTATE)
              for out in (first, second, third)]
    assert delays[1] < delays[0] and delays[2] <= delays[1]
    assert engine.state is State.DRAINING


@pytest.mark.parametrize("time_left", [None, 0.0, 1e-6, 1e9])
def test_go_away_time_left_of_any_shape(time_left: float | None) -> None:
    """A missing, zero, tiny or huge timeLeft still drains and arms a finite rotation."""
    engine, d, _ = session()
    d.handle()
    out = d.feed(GoAway(at=d.tick(), generation=1, time_left=time_left))
    assert engine.state in (State.DRAINING, State.RESUMING)
    arms = [a.delay for a in out if isinstance(a, ArmTimer) and a.timer is Timer.ROTATE]
    assert all(0 <= delay < float("inf") for delay in arms)


def test_a_busy_interaction_is_not_a_safe_point() -> None:
    """3.x: turnComplete with interactionStatus IN_PROGRESS (extended thinking) does not let
    the rotation happen; the later IDLE does."""
    from statemachine.core.events import InteractionStatus

    engine, d, _ = session()
    d.handle()
    send(d)
    d.feed(ModelOutput(at=d.tick(), generation=1, text="thinking"))
    d.feed(GoAway(at=d.tick(), generation=1, time_left=30))
    d.feed(TurnComplete(at=d.tick(), generation=1, interaction_idle=False))
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="H2", resumable=True))
    assert engine.state is State.DRAINING
    d.feed(InteractionStatus(at=d.tick(), generation=1, idle=True))
    assert engine.state is State.RESUMING


@pytest.mark.parametrize(("reason", "code", "outcome", "says"), [
    ("Connection closed: no client input for too long (idle timeout).", 1011, "resuming", ""),
    ("Maximum session duration reached.", 1011, "resuming", ""),
    ("RESOURCE_EXHAUSTED: Quota exceeded for Live API sessions.", 1011, "terminated",
     "raise the quota"),
    ("RESOURCE_EXHAUSTED: Your prepayment credits are depleted.", 1011, "terminated",
     "add credits"),
    ("Ephemeral token expired.", 1008, "terminated", "mint a new token"),
])
def test_closes_told_apart_by_reason(reason: str, code: int, outcome: str, says: str) -> None:
    """1011 is a deadline, an idle hang-up, the one-hour hard close, quota or credits; 1008 on
    a live connection may be an expired token: each gets its own answer and hint."""
    engine, d, records = session()
    d.handle()
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=code, reason=reason))
    assert engine.state.value == outcome
    if says:
        assert engine.end is not None and says in engine.end.reason
    lost = [r for r in records if r["name"] == "connection_lost" and r["kind"] != "event"]
    assert lost and lost[-1]["cause"]["why"]


def test_an_idle_hang_up_spends_no_retry_budget() -> None:
    """The service hangs up an idle connection: the session resumes at once and its budgets
    are untouched, however often it happens."""
    engine, d, _ = session(Policy(retry=RetryPolicy(per_drop_attempts=1, per_session_attempts=2)))
    for _ in range(5):
        d.handle()
        d.feed(ConnectionLost(at=d.tick(), generation=d.gen, code=1011,
                              reason="Connection closed: no client input (idle timeout)."))
        d.feed(SetupComplete(at=d.tick(), generation=d.gen))
        assert engine.state is State.STREAMING
    assert engine.session_attempts == 0


# -- ephemeral tokens --------------------------------------------------------------------------


def token_session(expires_in: float) -> tuple[Lifecycle, Driver]:
    """A session whose connections each get a fresh token from a provider."""
    engine, d, _ = make(fresh_tokens=True)
    d.feed(Connect(at=d.tick()))
    d.feed(TokenIssued(at=d.tick(), generation=d.gen, expires_at=d.now + expires_in))
    d.feed(SetupComplete(at=d.tick(), generation=d.gen))
    return engine, d


def test_a_token_near_its_expiry_moves_the_session_to_a_fresh_one() -> None:
    """token_lead before the token expires: the application is told, the session drains like
    after a goAway (the reply in flight finishes) and rotates at the safe point; the next
    connection dials with a fresh token."""
    engine, d = token_session(expires_in=1800.0)
    lead = engine.policy.limits.token_lead
    send(d)
    d.feed(ModelOutput(at=d.tick(), generation=1, text="mid reply"))
    d.tick(1800.0 - lead)
    d.fire_timer(Timer.TOKEN)
    assert notices(d, TokenExpiring) == [TokenExpiring(expires_in=pytest.approx(lead, abs=0.1),
                                                       renewing=True)]
    assert engine.state is State.DRAINING
    d.handle()  # the turn completes and a handle covers it: the safe point
    assert engine.state is State.RESUMING
    assert [a.handle for a in d.actions if isinstance(a, OpenConnection)][-1] == "h-1"
    d.feed(TokenIssued(at=d.tick(), generation=2, expires_at=d.now + 1800.0))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    assert engine.counters.rotations == 1 and engine.state is State.STREAMING


def test_a_provider_without_a_later_token_gets_a_warning_not_a_churn() -> None:
    """A provider that hands out the same token (or tokens no younger by token_lead) buys no
    time by moving: the application is told the session ends at the expiry, and it stays."""
    engine, d = token_session(expires_in=1800.0)
    expiry = d.now + 1800.0 - 0.02
    d.handle()
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))  # a drop: no move for tokens
    d.feed(TokenIssued(at=d.tick(), generation=2, expires_at=expiry))  # the same token
    d.feed(SetupComplete(at=d.tick(), generation=2))
    d.tick(1800.0 - engine.policy.limits.token_lead - 1.0)
    d.fire_timer(Timer.TOKEN)  # the first move: it cannot know the provider has no other
    d.handle()
    d.feed(TokenIssued(at=d.tick(), generation=3, expires_at=expiry))  # the same token again
    d.feed(SetupComplete(at=d.tick(), generation=3))
    d.fire_timer(Timer.TOKEN)
    assert [n.renewing for n in notices(d, TokenExpiring)] == [True, False]
    assert engine.state is State.STREAMING and engine.generation == 3


@pytest.mark.parametrize(("fresh", "outcome"), [(False, State.TERMINATED),
                                                (True, State.RESUMING)])
def test_a_token_expiry_close_resumes_only_with_a_fresh_token(fresh: bool,
                                                              outcome: State) -> None:
    """The service closes 1008 when the token expires. Without a provider that ends the
    session (with what to do); with one, the next connection gets a fresh token and resumes."""
    engine, d, _ = make(fresh_tokens=fresh)
    d.feed(Connect(at=d.tick()))
    d.feed(SetupComplete(at=d.tick(), generation=1))
    d.handle()
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1008, reason="Ephemeral token expired."))
    assert engine.state is outcome
    if not fresh:
        assert engine.end is not None and "token_provider" in engine.end.reason


def test_a_failing_token_provider_is_retried_with_backoff_then_ends_the_session() -> None:
    """The provider's failure is no close code: it backs off and retries, within the budget."""
    engine, d, _ = make(Policy(retry=RetryPolicy(per_drop_attempts=2),
                               on_expired=OnExpired.TERMINATE), fresh_tokens=True)
    d.feed(Connect(at=d.tick()))
    d.feed(SetupComplete(at=d.tick(), generation=1))
    d.handle()
    for _ in range(3):
        d.feed(ConnectionLost(at=d.tick(), generation=d.gen, failure=Failure.TOKEN_PROVIDER,
                              reason="provider down", during_setup=True))
        if engine.state is State.RESUMING and Timer.BACKOFF in d.timers:
            d.fire_timer(Timer.BACKOFF)
    assert engine.state is State.TERMINATED
    assert engine.end is not None and "token provider" in engine.end.reason


def test_stale_audio_lets_go_of_its_payload_and_a_resume_still_drops_it() -> None:
    """Audio older than the replay window is never sent again: once written (or never sent),
    its payload is released (seconds of chunks weigh on memory and the garbage collector), the
    entry stays journaled, and a resume drops it with its notice as before. Audio handed to a
    writer that has not written it yet keeps its payload."""
    policy = Policy(replay=ReplayPolicy(audio_staleness=1.0))
    engine, d, _ = session(policy)
    queued = [engine.feed(ClientInput(at=d.tick(), kind=InputKind.AUDIO, payload="q"))[0]
              for _ in range(70)]  # a writer that stopped: never reported written
    for _ in range(200):  # 2 s of 10 ms chunks, written at once
        send(d, InputKind.AUDIO, turn_complete=False)
    entries = list(engine.journal)
    released = [e for e in entries if e.payload is None]
    assert released and all(e.created_at < d.now - 1.0 for e in released)
    assert all(e.payload is not None for e in entries if e.created_at >= d.now - 1.0)
    assert all(isinstance(a, Send) and a.entry.payload == "q" for a in queued)
    seqs = {a.entry.seq for a in queued if isinstance(a, Send)}
    for action in queued:  # the writer catches up: released at the next look
        assert isinstance(action, Send)
        engine.written(action.entry, 1, d.now)
    for _ in range(64):
        send(d, InputKind.AUDIO, turn_complete=False)
    # (the entries themselves may be made again for later chunks: the journal is asked)
    assert [e.payload for e in engine.journal if e.seq in seqs] == [None] * len(seqs)
    entries = list(engine.journal)
    released = [e for e in entries if e.payload is None]
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replayed = [a.entry for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert replayed and all(e.payload is not None for e in replayed)
    dropped = {n.seq for n in notices(d, InputDropped)}
    assert {e.seq for e in released} <= dropped
    assert len(dropped) + len(replayed) == len(entries)


def test_covered_audio_entries_are_made_again_and_nothing_of_them_is_left() -> None:
    """Audio entries a handle covered make the next chunks' entries (one object per chunk
    that lives seconds would otherwise reach the collector's oldest generation and bring a full
    collection); each comes back with its new chunk's payload and nothing of its sends. Entries
    not yet written are never taken back: a writer still holds them."""
    engine, d, _ = session()
    d.feed(Latency(at=d.tick(), generation=1, rtt=0.01))
    first = [a.entry for _ in range(20)
             for a in d.feed(ClientInput(at=d.tick(), kind=InputKind.AUDIO, payload="old"))]
    pending = engine.feed(ClientInput(at=d.tick(), kind=InputKind.AUDIO, payload="held"))[0]
    d.tick(1.0)
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="h1", resumable=True))
    assert [e.payload for e in engine.journal] == ["held"]  # not written: not covered
    # each new chunk's entry as it was sent (once written, the journal may pack it and make
    # it again for a later chunk: the shell holds no entry past its write)
    again = [(id(a.entry), attrs.evolve(a.entry)) for i in range(25)
             for a in d.feed(ClientInput(at=d.tick(), kind=InputKind.AUDIO, payload=f"new{i}"))]
    covered = {id(f) for f in first}
    assert again[0][0] in covered  # made from the pool before any new entry
    assert len({i for i, _ in again} & covered) >= 10
    assert isinstance(pending, Send) and id(pending.entry) not in {i for i, _ in again}
    assert [e.payload for _, e in again] == [f"new{i}" for i in range(25)]
    assert [e.seq for _, e in again] == sorted(e.seq for _, e in again)
    assert all(e.sends == 1 and e.sent_generation == 1 and e.sent_at is not None
               and e.sent_at >= e.created_at and not e.answered for _, e in again)
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))  # replayed with new payloads
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replayed = [a.entry.payload for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert replayed == ["held"] + [f"new{i}" for i in range(25)]


def test_input_sent_before_an_answered_turn_is_covered_however_long_the_round_trip() -> None:
    """Gemini API: the server answered a turn, so it had taken in all that went out before it
    on that connection (a context update, audio, packed or not): the handle after the answer
    covers it, even when the crossing window (a ping measured on a busy machine) is longer
    than the whole turn took. Kept, it was replayed after a resume: an update applied twice.
    Input sent after the turn may still have crossed the handle: it stays."""
    engine, d, _ = session()
    d.feed(Latency(at=d.tick(), generation=1, rtt=5.0))
    send(d, InputKind.CONTEXT_UPDATE, turn_complete=False)
    for _ in range(30):  # 0.6 s of audio: written, it packs into a run
        d.feed(ClientInput(at=d.tick(0.02), kind=InputKind.AUDIO, payload=(b"pcm", "audio/pcm"),
                           turn_complete=False))
    assert len(engine.journal.entries()) < len(engine.journal) == 31
    send(d)  # the turn
    d.feed(ModelOutput(at=d.tick(), generation=1, text="reply"))
    d.feed(TurnComplete(at=d.tick(), generation=1))
    late = send(d, InputKind.AUDIO, turn_complete=False)
    d.feed(ResumptionUpdate(at=d.tick(), generation=1, handle="h", resumable=True))
    (kept,) = engine.journal
    assert [kept.seq] == [a.entry.seq for a in late if isinstance(a, Send)]
    d.feed(ConnectionLost(at=d.tick(), generation=1, code=1006))
    d.feed(SetupComplete(at=d.tick(), generation=2))
    replayed = [a.entry.seq for a in d.actions if isinstance(a, Send) and a.generation == 2]
    assert replayed == [kept.seq]


def test_input_written_while_an_update_waited_is_not_taken_as_covered() -> None:
    """A handle is processed `lag` after it arrived (a busy event loop, a reader away): audio
    written in that time went out after the server issued the handle, so it is kept for replay,
    not pruned as covered (a silent loss at the next resume)."""
    for lag, kept in ((0.0, []), (0.2, [2])):
        engine, d, _ = session()
        d.feed(Latency(at=d.tick(), generation=1, rtt=0.01))
        send(d, InputKind.AUDIO, turn_complete=False)
        d.tick(0.5)
        send(d, InputKind.AUDIO, turn_complete=False)  # written 0.1 s before processing
        d.feed(ResumptionUpdate(at=d.tick(0.1), generation=1, handle="h", resumable=True,
                                lag=lag))
        assert [e.seq for e in engine.journal] == kept, lag
