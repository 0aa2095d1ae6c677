"""Validators for settings records: a bad setting fails when the record is built, naming the
field and the value, instead of failing later inside `receive()` (or never).

Each helper is an attrs validator (`attrs.field(validator=seconds())`); the checks are also
callable directly (`check_seconds(owner, name, value)`) for values that are not fields.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any, TypeGuard, TypeVar

import attrs

from ..errors import SettingsError

E = TypeVar("E", bound=enum.Enum)
Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _where(inst: object, name: str) -> str:
    return f"{type(inst).__name__}.{name}" if not isinstance(inst, str) else f"{inst}.{name}"


def is_number(value: object) -> TypeGuard[float]:
    """int or float, but not bool (True would pass as 1 second)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_seconds(owner: object, name: str, value: object, *, zero: bool = False) -> None:
    """A duration: a finite number of seconds, > 0 (or >= 0 with `zero`)."""
    bound = ">= 0" if zero else "> 0"
    if not is_number(value):
        raise SettingsError(
            f"{_where(owner, name)} must be {bound} (a number of seconds), got {value!r} "
            f"({type(value).__name__})")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise SettingsError(
            f"{_where(owner, name)} must be {bound} (a finite number of seconds), got {value!r}")


def check_count(owner: object, name: str, value: object, *, minimum: int = 0) -> None:
    """A count: a whole number (an int, not 2.5 nor True) >= `minimum`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise SettingsError(
            f"{_where(owner, name)} must be a whole number >= {minimum}, got {value!r} "
            f"({type(value).__name__})")
    if value < minimum:
        raise SettingsError(f"{_where(owner, name)} must be >= {minimum}, got {value!r}")


def check_factor(owner: object, name: str, value: object, *, low: float,
                 high: float = math.inf) -> None:
    """A finite number in [low, high] (high may be math.inf)."""
    if not (is_number(value) and math.isfinite(value) and low <= value <= high):
        span = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise SettingsError(f"{_where(owner, name)} must be a finite number {span}, "
                            f"got {value!r}")


def seconds(*, zero: bool = False, optional: bool = False) -> Validator:
    """Field validator: a duration (see `check_seconds`); `optional` also allows None."""

    def validate(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if optional and value is None:
            return
        check_seconds(inst, attribute.name, value, zero=zero)

    return validate


def count(*, minimum: int = 0) -> Validator:
    """Field validator: a whole number >= `minimum`."""

    def validate(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        check_count(inst, attribute.name, value, minimum=minimum)

    return validate


def factor(*, low: float, high: float = math.inf) -> Validator:
    """Field validator: a finite number in [low, high]."""

    def validate(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        check_factor(inst, attribute.name, value, low=low, high=high)

    return validate


def instance_of(cls: type, hint: str) -> Validator:
    """Field validator: an instance of `cls` (a dict or None is not one); `hint` says how to
    build one."""

    def validate(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, cls):
            raise SettingsError(
                f"{_where(inst, attribute.name)} must be a {cls.__name__}, got {value!r} "
                f"({type(value).__name__}): {hint}")

    return validate


def flag(*, optional: bool = False) -> Validator:
    """Field validator: True or False (or None with `optional`)."""

    def validate(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not (isinstance(value, bool) or (optional and value is None)):
            allowed = "True, False or None" if optional else "True or False"
            raise SettingsError(
                f"{_where(inst, attribute.name)} must be {allowed}, got {value!r}")

    return validate


def to_enum(cls: type[E], value: object, name: str) -> E:
    """`cls(value)` for an attrs converter, raising SettingsError (not a bare ValueError) that
    names the field and the accepted values."""
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in cls)
        raise SettingsError(f"{name} must be one of {allowed}, got {value!r}") from None
