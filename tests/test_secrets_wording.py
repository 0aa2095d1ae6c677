"""The core's owners of secrets (core/secrets.py) and of the words a session ends with
(core/wording.py), each on its own."""

from __future__ import annotations

from statemachine import Ended, Policy, RemoteProtocolError, RetryPolicy, fingerprint
from statemachine.core import wording
from statemachine.core.secrets import HANDLES_KEPT, TOKENS_KEPT, Secrets
from statemachine.core.table import Trigger
from statemachine.testing import CoreDriver


def test_secrets_show_keys_as_told_and_handles_as_fingerprints() -> None:
    """A key becomes its stand-in and a handle its fingerprint, wherever they appear."""
    secrets = Secrets()
    assert not secrets
    secrets.add("AIzaKEY", "[api key]")
    secrets.add_handle("handle-123")
    text = secrets.redact("bad key AIzaKEY for handle-123 (handle-123)")
    fp = fingerprint("handle-123")
    assert text == f"bad key [api key] for {fp} ({fp})"
    secrets.forget("AIzaKEY")
    assert secrets.redact("AIzaKEY") == "AIzaKEY"


def test_many_handles_never_push_a_key_out() -> None:
    """Only the latest handles are kept; the key stays however many handles come."""
    secrets = Secrets()
    secrets.add("AIzaKEY", "[api key]")
    for n in range(HANDLES_KEPT * 3):
        secrets.add_handle(f"handle-{n}")
    assert secrets.redact("AIzaKEY") == "[api key]"
    assert secrets.redact(f"handle-{HANDLES_KEPT * 3 - 1}") != f"handle-{HANDLES_KEPT * 3 - 1}"
    assert secrets.redact("handle-0") == "handle-0"


def test_the_latest_tokens_stay_secret_and_long_replaced_ones_are_let_go() -> None:
    """A token per connection for hours: the latest few are redacted, older ones forgotten,
    and neither pushes out the key."""
    secrets = Secrets()
    secrets.add("AIzaKEY", "[api key]")
    for n in range(TOKENS_KEPT * 3):
        secrets.add_token(f"auth_tokens/{n}")
        secrets.add_token(f"auth_tokens/{n}")  # the same token again is one token
    latest = [f"auth_tokens/{n}" for n in range(TOKENS_KEPT * 2, TOKENS_KEPT * 3)]
    assert [secrets.redact(t) for t in latest] == ["[token]"] * TOKENS_KEPT
    assert secrets.redact(f"auth_tokens/{TOKENS_KEPT * 2 - 1}") == \
        f"auth_tokens/{TOKENS_KEPT * 2 - 1}"
    assert secrets.redact("AIzaKEY") == "[api key]"


def test_a_fatal_close_ends_with_what_happened_and_what_to_do() -> None:
    """The end reason names the close as the server gave it and the way out."""
    d = CoreDriver()
    d.connect()
    d.lose(1008, "models/x is not found", during_setup=True)
    (end,) = d.notices(Ended)
    assert end.reason.startswith("fatal: ")
    assert "close 1008: models/x is not found" in end.reason
    assert "check the model name" in end.reason
    assert wording.end_reason(d.engine, Trigger.CONNECTION_LOST, {}) == end.reason


def test_an_exhausted_budget_names_the_policy_to_raise() -> None:
    """A session whose connections keep failing ends saying which budget ran out."""
    d = CoreDriver(policy=Policy(retry=RetryPolicy(per_drop_attempts=2, per_session_attempts=2,
                                                   base_delay=0.1, max_delay=0.1)))
    d.connect()
    while not d.notices(Ended):
        d.lose(1011, "The service is currently unavailable.", during_setup=True)
        d.advance(1.0)
    (end,) = d.notices(Ended)
    assert "RetryPolicy" in end.reason and "1011" in end.reason


def test_the_core_decides_a_stored_handle_has_expired() -> None:
    """A handle the store says has expired is not seeded: the session connects fresh, and the
    audit log says why; one still valid is resumed."""
    from statemachine.core.actions import OpenConnection

    d = CoreDriver()
    assert not d.engine.restore("old-handle", at=0.0, age=7300.0, expires_in=-100.0)
    d.connect()
    assert [a.handle for a in d.actions if isinstance(a, OpenConnection)] == [None]
    assert d.trace.named("notice", "stored_handle_expired")
    d = CoreDriver()
    assert d.engine.restore("good-handle", at=0.0, age=10.0, expires_in=7000.0)
    d.connect()
    assert [a.handle for a in d.actions if isinstance(a, OpenConnection)] == ["good-handle"]


def test_waiting_for_another_holder_s_lease_is_bounded() -> None:
    """The lease wait gives up when the holder's lease outlasts what is left of it, and
    otherwise polls at most every 0.25 s."""
    from statemachine.core.persistence import lease_retry_after

    assert lease_retry_after(left=0.0, expires_in=10.0) is None
    assert lease_retry_after(left=1.0, expires_in=10.0) == 0.25
    assert lease_retry_after(left=1.0, expires_in=0.1) == 0.1
    assert lease_retry_after(left=1.0, expires_in=0.0) == 0.01


def test_a_cause_that_echoes_a_secret_is_chained_as_a_copy_that_shows_none() -> None:
    """The core decides what is chained to the exception the application catches: the
    failure itself, or, when a server echoed a secret into it, a copy without the secret."""
    secrets = Secrets()
    secrets.add("AIzaKEY", "[api key]")
    secrets.add_handle("handle-123")
    plain = OSError("connection reset")
    assert wording.shown_cause(plain, secrets.redact) is plain
    assert wording.shown_cause(None, secrets.redact) is None
    echoed = ConnectionError("received 1007 (bad handle-123 key AIzaKEY)")
    shown = wording.shown_cause(echoed, secrets.redact)
    assert isinstance(shown, RemoteProtocolError) and shown is not echoed
    assert "AIzaKEY" not in str(shown) and "handle-123" not in str(shown)
    assert str(shown).startswith("ConnectionError: ") and "[api key]" in str(shown)


def test_the_core_says_whether_the_stream_ends_in_an_error() -> None:
    """`receive()` ends quietly after `close()` or a hand-off, and raises for any other end,
    or whenever an application callback raised: the core's call, not the shell's."""
    closed = Ended(reason="closed by the application", by_application=True)
    lost = Ended(reason="the service kept failing", code=1011, by_application=False)
    assert not wording.ends_in_error(closed, callback_failed=False)
    assert wording.ends_in_error(closed, callback_failed=True)
    assert wording.ends_in_error(lost, callback_failed=False)
    assert not wording.ends_in_error(None, callback_failed=False)
