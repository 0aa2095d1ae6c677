"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from statemachine.core.events import InputKind

close_codes = st.sampled_from(
    [
        (1000, ""),
        (1006, ""),
        (1006, ""),
        (1011, "Deadline expired before operation could complete."),
        (1006, ""),
        (1007, "Request contains an invalid argument."),
        (1008, "models/x is not found"),
        (1011, "Deadline expired before operation could complete."),
        (1011, "The service is currently unavailable."),
        (1011, "keepalive ping timeout"),
        (None, "connection refused"),
    ]
)
input_kinds = st.sampled_from(list(InputKind))
time_steps = st.floats(min_value=0.0, max_value=120.0, allow_nan=False)
