"""The transition table: validated at import, and every defect class fails loudly."""

from __future__ import annotations

import pytest

from statemachine import TableError
from statemachine.core import MACHINE, table
from statemachine.core.table import TRANSITIONS, Guard, State, Transition, Trigger


def row(trigger: Trigger, sources: list[State], dest: State, *guards: Guard) -> Transition:
    return Transition(trigger=trigger, sources=tuple(sources), dest=dest, guards=guards)


def test_shipped_table_is_valid() -> None:
    """The table that ships passes its own validator."""
    table.validate()


def test_every_state_has_a_shortest_path() -> None:
    """Every state is reachable, so every state gets a path from idle."""
    paths = table.shortest_paths()
    assert set(paths) == set(State)
    assert paths[State.IDLE] == ()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [*TRANSITIONS, row(Trigger.CONNECT, [State.TERMINATED], State.CONNECTING)],
            "leaves final state terminated",
        ),
        (
            [r for r in TRANSITIONS if r.dest is not State.COMPRESSED],
            "compressed is unreachable",
        ),
        (
            [r for r in TRANSITIONS if State.RESUMING not in r.sources],
            "resuming has no exit",
        ),
        (
            [row(Trigger.CONNECT, [State.IDLE], State.CONNECTING),
             row(Trigger.CLOSE, [State.IDLE], State.TERMINATED)],
            "unreachable",
        ),
        (
            [row(Trigger.CONNECT, [State.IDLE], State.CONNECTING),
             row(Trigger.CONNECT, [State.IDLE], State.TERMINATED, Guard.HANDLE_VALID),
             *TRANSITIONS[1:]],
            "shadows the rows after it",
        ),
        (
            [*TRANSITIONS, row(Trigger.CLOSE, [State.IDLE], "nowhere")],  # type: ignore[arg-type]
            "unknown state 'nowhere'",
        ),
        (
            [*TRANSITIONS, row(Trigger.CLOSE, [], State.TERMINATED)],
            "no source states",
        ),
    ],
)
def test_broken_tables_are_refused(rows: list[Transition], message: str) -> None:
    """Each class of defect is named in the error."""
    with pytest.raises(TableError, match=message):
        table.validate(rows)


def test_cycle_without_exit_is_a_trap() -> None:
    """A group of states that loops without reaching a final state is refused."""
    rows = [
        row(Trigger.CONNECT, [State.IDLE], State.CONNECTING),
        row(Trigger.SETUP_COMPLETE, [State.CONNECTING], State.STREAMING),
        row(Trigger.GO_AWAY, [State.STREAMING], State.CONNECTING),
        row(Trigger.CLOSE, [State.IDLE], State.TERMINATED),
    ]
    with pytest.raises(TableError, match="cannot reach a final state"):
        table.validate(rows)


def test_no_wildcard_sources_and_explicit_lists() -> None:
    """Rows name their sources explicitly; nothing is a wildcard."""
    for r in TRANSITIONS:
        assert all(isinstance(s, State) for s in r.sources)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("trigger", list(Trigger))
def test_machine_matches_table(state: State, trigger: Trigger) -> None:
    """The transitions.Machine the engine runs has exactly the table's rows, in its order."""
    rows = table.rows_for(trigger, state)
    event = MACHINE.events.get(trigger.value)
    machine_rows = event.transitions.get(state.value, []) if event else []
    assert [(t.dest, [c.func.__name__ for c in t.conditions]) for t in machine_rows] == [
        (r.dest.value, [g.value for g in r.guards]) for r in rows
    ]
    assert (trigger.value in MACHINE.get_triggers(state.value)) == bool(rows)


def test_machine_has_no_auto_transitions() -> None:
    """auto_transitions is off: no to_<state> triggers exist."""
    assert not [name for name in MACHINE.events if name.startswith("to_")]
    assert set(MACHINE.events) == {t.value for t in Trigger}
