"""The setup a session sends, built from the application's config and the core's decisions.

The policy a session runs by is the core's (`policy.session_policy`: the service's clock, the
compression the config asks for); this module only reads the config for it and writes the
result back in the SDK's types: the base config completed with the compression the policy
asks for, and each connection's config (`for_open`) with its resumption handle and the context
the core says the setup carries.
"""

from __future__ import annotations

import functools
from typing import Any

from google import genai
from google.genai import types

from ..core.actions import OpenConnection
from ..core.policy import Policy, session_policy
from . import sdk as adapter


def base_config(client: genai.Client, config: types.LiveConnectConfig | dict[str, Any] | None,
                policy: Policy | None) -> tuple[Policy, types.LiveConnectConfig]:
    """The policy the session runs by, and the config every connection starts from."""
    base = types.LiveConnectConfig.model_validate(config or {})
    cwc = base.context_window_compression
    given = cwc is not None and bool(cwc.trigger_tokens)
    policy = session_policy(
        policy, time_scale=adapter.time_scale(client),
        trigger_tokens=cwc.trigger_tokens if cwc is not None and given else None,
        target_tokens=(cwc.sliding_window.target_tokens
                       if cwc is not None and given and cwc.sliding_window else None))
    if not given and policy.compression:
        cwc = _compression(policy.compression_trigger_tokens, policy.compression_target_tokens)
    return policy, base.model_copy(update={"context_window_compression": cwc})


@functools.lru_cache(maxsize=16)
def _compression(trigger_tokens: int,
                 target_tokens: int) -> types.ContextWindowCompressionConfig:
    """The compression the policy asks for, one object for every session that asks the same
    (0.8 KB a session otherwise); nothing writes to it, here or in the SDK."""
    return types.ContextWindowCompressionConfig(
        trigger_tokens=trigger_tokens,
        sliding_window=types.SlidingWindow(target_tokens=target_tokens))


def for_open(base: types.LiveConnectConfig, action: OpenConnection) -> types.LiveConnectConfig:
    """The config of the connection `action` opens: its handle (None: a new session), the
    transparent mode, and the context updates the setup carries (`core/context.py`)."""
    resumption = types.SessionResumptionConfig(
        handle=action.handle, transparent=True if action.transparent else None
    )
    update: dict[str, Any] = {"session_resumption": resumption}
    if action.context:
        given = types.LiveConnectConfig(**action.context)
        update.update({name: getattr(given, name) for name in action.context})
    return base.model_copy(update=update)
