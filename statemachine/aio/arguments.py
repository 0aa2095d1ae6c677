"""The arguments of `connect()`, `LiveSession`, `instrument()` and `wrap_client()`, checked when
they are given: a wrong one is a `SettingsError` naming the argument, the value and what is
allowed, instead of an `AttributeError` at the first connection or a `TypeError` at close."""

from __future__ import annotations

from typing import Any

from ..core.policy import Keepalive, Limits, Policy, ReplayPolicy, RetryPolicy
from ..core.validate import check_seconds
from ..errors import SettingsError

#: what a store must have (the HandleStore protocol's methods)
_STORE_METHODS = ("load", "save", "delete", "acquire")


def _show(value: object) -> str:
    text = repr(value)
    return (text if len(text) <= 80 else text[:77] + "...") + f" ({type(value).__name__})"


def check_policy(owner: str, policy: object) -> None:
    if policy is None or isinstance(policy, Policy):
        return
    parts = {Limits: "limits", RetryPolicy: "retry", ReplayPolicy: "replay",
             Keepalive: "keepalive"}
    part = parts.get(type(policy))
    hint = (f"wrap it: policy=Policy({part}={type(policy).__name__}(...))" if part
            else "build one with statemachine.Policy(...), or leave it out for the default")
    raise SettingsError(f"{owner}(policy=...) must be a Policy or None, got {_show(policy)}: "
                        f"{hint}")


def check_callable(owner: str, name: str, value: object, what: str) -> None:
    if value is None or callable(value):
        return
    raise SettingsError(f"{owner}({name}=...) must be callable (a function {what}) or None; got "
                        f"{_show(value)}")


def check_store(owner: str, store: object) -> None:
    if store is None:
        return
    missing = [m for m in _STORE_METHODS if not callable(getattr(store, m, None))]
    if missing:
        raise SettingsError(
            f"{owner}(store=...) must be a handle store (statemachine.stores: MemoryStore, "
            f"SQLiteStore, RedisStore, or one with async {', '.join(_STORE_METHODS)}); "
            f"{_show(store)} has no {', '.join(missing)}")


def check_key(owner: str, name: str, value: object, *, may_be_callable: bool = False) -> None:
    if value is None or (may_be_callable and callable(value)):
        return
    if not isinstance(value, str) or not value:
        allowed = "a non-empty string" + (" or a function (model, config) -> str"
                                          if may_be_callable else "")
        raise SettingsError(f"{owner}({name}=...) must be {allowed}, or None; got "
                            f"{_show(value)}")


def check_session_args(owner: str, *, policy: object = None, on_event: object = None,
                       on_notice: object = None, audit: object = None, store: object = None,
                       session_key: object = None, session_id: object = None,
                       lease_ttl: object = 30.0, lease_wait: object = 0.0,
                       token_provider: object = None, key_may_be_callable: bool = False,
                       ) -> None:
    """Every argument a session is opened with, as `owner` (the function's name) took it."""
    check_policy(owner, policy)
    check_callable(owner, "on_event", on_event, "taking each audit record")
    check_callable(owner, "on_notice", on_notice, "taking each Notice")
    check_callable(owner, "audit", audit, "taking each audit record (an audit sink)")
    check_callable(owner, "token_provider", token_provider,
                   "(or coroutine function) returning a token")
    check_store(owner, store)
    check_key(owner, "session_key", session_key, may_be_callable=key_may_be_callable)
    check_key(owner, "session_id", session_id)
    check_seconds(owner, "lease_ttl", lease_ttl)
    check_seconds(owner, "lease_wait", lease_wait, zero=True)


def unknown_options(owner: str, given: dict[str, Any], known: tuple[str, ...]) -> None:
    """A keyword `owner` does not take is named with the ones it does."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise SettingsError(f"{owner}() got unknown option(s) {', '.join(unknown)}; it takes "
                            f"{', '.join(known)}")
