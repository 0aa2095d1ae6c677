"""The `transitions` glue: one shared `Machine`, built from the table, that drives every session.

Sessions are not added to the machine as models (`add_model` binds a trigger, `may_<trigger>` and
`is_<state>` helpers per event and state onto each model: about 11 KB per session, and a list the
machine would keep them alive in). The engine fires `MACHINE.events[trigger].trigger(engine)`
itself, and the machine reads and writes the engine's state through `MODEL_ATTRIBUTE`. Guards,
the transition record and the entry actions are the engine's; `after_state_change` and
`finalize_event` route to them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from transitions import EventData, Machine

from . import table
from .table import Guard, State, Trigger

if TYPE_CHECKING:
    from .engine import Lifecycle

#: transitions logs every transition at INFO through stdlib logging (3x slower when enabled).
logging.getLogger("transitions").setLevel(logging.WARNING)


#: the engine's attribute holding its state's name, read and written by the machine
MODEL_ATTRIBUTE = "_machine_state"


def _engine(event_data: EventData) -> Lifecycle:
    engine: Lifecycle = event_data.model  # type: ignore[assignment]
    return engine


def fire(engine: Lifecycle, trigger: Trigger) -> bool:
    """Fire `trigger` on the engine's state: the machine's own `Event.trigger`, without the
    per-model bindings of `add_model`."""
    result: bool = MACHINE.events[trigger.value].trigger(engine)
    return result


def _guard(guard: Guard) -> Callable[[EventData], bool]:
    def check(event_data: EventData) -> bool:
        return _engine(event_data)._check(guard)

    check.__name__ = guard.value
    return check


def _after_state_change(event_data: EventData) -> None:
    """The transition's audit record first, then the destination's entry actions (whose
    notices must follow the transition that caused them in the log)."""
    assert event_data.transition is not None and event_data.event is not None
    engine, trigger = _engine(event_data), Trigger(event_data.event.name)
    engine._audit_trigger(trigger, event_data.transition)
    engine._entered(State(event_data.transition.source), trigger)


def _finalize(event_data: EventData) -> None:
    """Runs after every trigger; records the ones no guard let through."""
    assert event_data.event is not None
    if not event_data.result:
        _engine(event_data)._audit_trigger(Trigger(event_data.event.name), None)


def _build_machine() -> Machine:
    return Machine(
        model=None,
        states=[s.value for s in table.State],
        initial=table.INITIAL.value,
        transitions=[
            {
                "trigger": row.trigger.value,
                "source": [s.value for s in row.sources],
                "dest": row.dest.value,
                "conditions": [_guard(g) for g in row.guards],
            }
            for row in table.TRANSITIONS
        ],
        auto_transitions=False,
        send_event=True,
        after_state_change=_after_state_change,
        finalize_event=_finalize,
        ignore_invalid_triggers=False,
        model_attribute=MODEL_ATTRIBUTE,
    )


MACHINE = _build_machine()
STATES = {s.value: s for s in State}
