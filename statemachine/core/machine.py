"""The `transitions` glue: one shared `Machine`, built from the table, that every session joins.

The machine knows nothing of sessions beyond a small model per session holding its state and a
weak reference back to its engine (the shared machine must not keep an abandoned session alive).
Guards, the transition record and the entry actions are the engine's; `after_state_change` and
`finalize_event` route to them.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from transitions import EventData, Machine

from . import table
from .table import Guard, State, Trigger

if TYPE_CHECKING:
    from .engine import Lifecycle

#: transitions logs every transition at INFO through stdlib logging (3x slower when enabled).
logging.getLogger("transitions").setLevel(logging.WARNING)


class Model:
    """What `transitions` holds per session: the state, and a weak way back to the engine (the
    shared machine must not keep an abandoned session alive)."""

    state: str
    trigger: Callable[..., bool]  # added by transitions.Machine.add_model

    def __init__(self, engine: Lifecycle) -> None:
        self.engine = weakref.ref(engine)


def _engine(event_data: EventData) -> Lifecycle:
    model: Model = event_data.model  # type: ignore[assignment]
    engine = model.engine()
    assert engine is not None, "a collected session's model fired a trigger"
    return engine


def release(model: Model) -> None:
    if model in MACHINE.models:
        MACHINE.remove_model(model)


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
    )


MACHINE = _build_machine()
STATES = {s.value: s for s in State}
