"""Signed audit logs (issue 14): a forger who can rewrite the file and recompute the hash chain is
caught by `audit --public-key`; a crash is reported apart from tampering; one writer per file."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import structlog
from google.genai import types

import statemachine
from statemachine.audit.jsonl import GENESIS, JsonLinesWriter, configure, line_hash
from statemachine.audit.signing import ENV_VAR, PRIVATE_NAME, PUBLIC_NAME, SigningKey
from statemachine.core import Lifecycle
from statemachine.core.events import Close, Connect, SetupComplete
from statemachine.emulator import EmulatorSettings, LiveEmulator
from statemachine.errors import AuditLogBusy, SigningKeyError

from .app import SCALE, App, fast_policy
from .sdk import MODEL

V1_LOG = Path(__file__).parent / "data" / "audit-v1.jsonl"
UNKEYED = "integrity: unkeyed chain: detects accidental damage only"


def run(*args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", ENV_VAR)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env={**clean, **(env or {})})


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run("-m", "statemachine", *args, env=env)


def audit(log: Path, *public: Path) -> subprocess.CompletedProcess[str]:
    keys = [arg for p in public for arg in ("--public-key", str(p))]
    return cli("audit", str(log), *keys)


def writer_process(mode: str, log: Path, key: Path, *extra: str) -> subprocess.CompletedProcess[
        str]:
    return run("-m", "tests.audit_writer", mode, str(log), str(key), *extra, timeout=60)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys") / "audit"
    done = cli("keygen", str(folder))
    assert done.returncode == 0, done.stderr
    return folder / PRIVATE_NAME, folder / PUBLIC_NAME


@pytest.fixture(scope="module")
def signed_demo(tmp_path_factory: pytest.TempPathFactory,
                keys: tuple[Path, Path]) -> tuple[Path, str]:
    """The real demo (emulator, every state), signing its log; (log, everything it printed)."""
    log = tmp_path_factory.mktemp("demo") / "demo.jsonl"
    done = cli("demo", "--log", str(log), "--signing-key", str(keys[0]))
    assert done.returncode == 0, done.stderr[-3000:]
    return log, done.stdout + done.stderr


# -- what a forger without the key does ------------------------------------------------------

def rechain(lines: list[str]) -> list[str]:
    """Recompute every `prev` and `hash`, as anyone who can write the file can."""
    out, prev = [], GENESIS
    for line in lines:
        record = json.loads(line)
        del record["hash"]
        record["prev"] = prev
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        prev = line_hash(text)
        out.append(f'{text[:-1]},"hash":"{prev}"}}\n')
    return out


def renumber(lines: list[str]) -> list[str]:
    """Make every session's `seq` contiguous again after lines were added or removed."""
    seqs: dict[str, int] = {}
    out = []
    for line in lines:
        record = json.loads(line)
        if record["kind"] != "checkpoint":
            seqs[record["session"]] = record["seq"] = seqs.get(record["session"], 0) + 1
            line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
        out.append(line)
    return out


def _events(lines: list[str], name: str) -> list[int]:
    return [i for i, line in enumerate(lines)
            if json.loads(line)["kind"] == "event" and json.loads(line)["name"] == name]


def edit(lines: list[str]) -> list[str]:
    """The issue's forgery: every connection_lost reason becomes FORGED."""
    out = []
    for line in lines:
        record = json.loads(line)
        if record.get("name") == "connection_lost":
            record["cause"]["reason"] = "FORGED"
            line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
        out.append(line)
    return out


def insert(lines: list[str]) -> list[str]:
    at = _events(lines, "resumption_update")[2]
    return renumber([*lines[:at + 1], lines[at], *lines[at + 1:]])


def delete(lines: list[str]) -> list[str]:
    at = _events(lines, "resumption_update")[2]
    return renumber(lines[:at] + lines[at + 1:])


def reorder(lines: list[str]) -> list[str]:
    """Two adjacent records of the same kind and state swapped, seq kept in order."""
    records = [json.loads(line) for line in lines]
    at = next(i for i in range(20, len(lines) - 1)
              if records[i]["kind"] == records[i + 1]["kind"] == "event"
              and records[i]["state"] == records[i + 1]["state"]
              and records[i]["name"] != records[i + 1]["name"])
    return renumber([*lines[:at], lines[at + 1], lines[at], *lines[at + 2:]])


def drop_checkpoint(lines: list[str]) -> list[str]:
    return [line for line in lines if '"name":"periodic"' not in line]


def resign(lines: list[str]) -> list[str]:
    """Edit, recompute the chain, and sign every checkpoint again with the forger's own key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    forger = SigningKey(Ed25519PrivateKey.generate())
    out, prev = [], GENESIS
    for line in edit(lines):
        record = json.loads(line)
        del record["hash"]
        record["prev"] = prev
        if record["kind"] == "checkpoint":
            del record["sig"]
            record["key_id"] = forger.key_id
            body = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
            record["sig"] = forger.sign(body)
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        prev = line_hash(text)
        out.append(f'{text[:-1]},"hash":"{prev}"}}\n')
    return out


FORGERIES: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "edited reason": (lambda ls: rechain(edit(ls)), "signature does not verify"),
    "inserted record": (lambda ls: rechain(insert(ls)), "lines were removed or inserted"),
    "deleted record": (lambda ls: rechain(delete(ls)), "lines were removed or inserted"),
    "reordered records": (lambda ls: rechain(reorder(ls)), "signature does not verify"),
    "deleted checkpoint": (lambda ls: rechain(drop_checkpoint(ls)),
                           "lines were removed or inserted"),
    "re-signed with another key": (resign, "not among the public keys given"),
}


def test_an_untouched_signed_demo_log_verifies_clean(signed_demo: tuple[Path, str],
                                                     keys: tuple[Path, Path]) -> None:
    """The real demo's signed log: every checkpoint verifies, the session is sealed, exit 0;
    the private key appears nowhere in the log or the output; without the key the report
    says plainly what the chain alone proves."""
    log, printed = signed_demo
    done = audit(log, keys[1])
    assert done.returncode == 0, done.stdout
    assert "ends terminated, sealed" in done.stdout
    assert "integrity: signed: 4 checkpoint(s) verified" in done.stdout
    assert done.stdout.strip().endswith("1 session(s): clean")
    names = [json.loads(line)["name"] for line in log.read_text().splitlines()
             if '"kind":"checkpoint"' in line]
    assert names == ["open", "periodic", "seal", "close"]
    secret = "".join(keys[0].read_text().splitlines()[1:-1])
    assert secret not in log.read_text() + printed
    unkeyed = audit(log)
    assert unkeyed.returncode == 0
    assert UNKEYED in unkeyed.stdout and "pass --public-key to verify them" in unkeyed.stdout


@pytest.mark.parametrize("how", list(FORGERIES))
def test_every_forgery_is_caught_with_the_public_key(
        how: str, signed_demo: tuple[Path, str], keys: tuple[Path, Path],
        tmp_path: Path) -> None:
    """Each forgery recomputes the chain, so the unkeyed check calls it clean; with the public
    key it is a violation (exit 1) that says what was done."""
    log = signed_demo[0]
    lines = log.read_text().splitlines(keepends=True)
    assert rechain(lines) == lines  # the forger's tool reproduces the writer's bytes exactly
    assert _events(lines, "connection_lost")
    forge, message = FORGERIES[how]
    forged = tmp_path / "forged.jsonl"
    forged.write_text("".join(forge(lines)))
    assert forged.read_text() != log.read_text()
    fooled = audit(forged)
    assert fooled.returncode == 0, fooled.stdout  # the chain alone cannot see it
    caught = audit(forged, keys[1])
    assert caught.returncode == 1, caught.stdout
    assert "VIOLATION" in caught.stdout and message in caught.stdout, caught.stdout


@pytest.mark.parametrize("keep", ["all but the last 10 lines", "up to the periodic checkpoint"])
def test_a_cut_tail_is_unsealed_with_the_lines_named(
        keep: str, signed_demo: tuple[Path, str], keys: tuple[Path, Path],
        tmp_path: Path) -> None:
    """A removed tail (the seal with it): exit 1, reported as unsealed records with their line
    range, not as an edit; the same file looks clean to the chain alone."""
    lines = signed_demo[0].read_text().splitlines(keepends=True)
    periodic = next(i for i, line in enumerate(lines) if '"name":"periodic"' in line)
    kept = lines[:-10] if keep.startswith("all") else lines[:periodic + 1]
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(kept))
    done = audit(cut, keys[1])
    assert done.returncode == 1 and "VIOLATION" not in done.stdout, done.stdout
    if keep.startswith("all"):
        expected = (f"UNSEALED {cut}:{periodic + 2}-{len(kept)}: unsealed: "
                    f"{len(kept) - periodic - 1} records not covered by a signature")
        assert expected in done.stdout, done.stdout
    else:
        assert (f"UNSEALED {cut}:{periodic + 1}: unsealed: the log ends at a periodic "
                "checkpoint") in done.stdout, done.stdout


def test_stripped_signatures_leave_nothing_vouched_for(signed_demo: tuple[Path, str],
                                                       keys: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    """Every checkpoint removed and the chain recomputed: with the key, every record is
    unsealed and the report says the log has no signed checkpoint."""
    lines = signed_demo[0].read_text().splitlines(keepends=True)
    stripped = tmp_path / "stripped.jsonl"
    stripped.write_text("".join(rechain(edit([ln for ln in lines if "checkpoint" not in ln]))))
    assert audit(stripped).returncode == 0
    done = audit(stripped, keys[1])
    assert done.returncode == 1
    assert (f"{stripped}:1-{len(lines) - 4}: unsealed: {len(lines) - 4} records not covered"
            in done.stdout)
    assert "no signed checkpoint" in done.stdout
    assert "no checkpoint verified with key id" in done.stdout


def test_records_and_checkpoints_match_the_schemas(signed_demo: tuple[Path, str]) -> None:
    """Every line of a signed log validates against schema v2; the v1 log against v1."""
    for version, log in ((2, signed_demo[0]), (1, V1_LOG)):
        text = resources.files("statemachine").joinpath(f"schemas/audit-record.v{version}.json")
        schema = json.loads(text.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for line in log.read_text().splitlines():
            validator.validate(json.loads(line))


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    """keygen: private key mode 0600, the key id and paths printed (never the key), and it never
    overwrites an existing key."""
    folder = tmp_path / "k"
    done = cli("keygen", str(folder))
    assert done.returncode == 0, done.stderr
    private, public = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key_id = SigningKey.from_file(private).key_id
    assert f"key id {key_id}" in done.stdout and str(public) in done.stdout
    assert "".join(private.read_text().splitlines()[1:-1]) not in done.stdout + done.stderr
    before = private.read_bytes()
    again = cli("keygen", str(folder))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert private.read_bytes() == before


def test_a_bad_key_is_named_never_shown(tmp_path: Path) -> None:
    """A key file or variable that is not a private key: exit 2 naming the file or variable;
    the content never appears in the message, its cause, or a traceback."""
    body = "SECRETSECRETSECRET" * 4
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
    bad = tmp_path / "bad.pem"
    bad.write_text(pem)
    done = cli("demo", "--log", str(tmp_path / "x.jsonl"), "--signing-key", str(bad))
    assert done.returncode == 2 and str(bad) in done.stderr
    done_env = cli("demo", "--log", str(tmp_path / "y.jsonl"), env={ENV_VAR: pem})
    assert done_env.returncode == 2 and ENV_VAR in done_env.stderr
    for output in (done, done_env):
        assert "SECRET" not in output.stdout + output.stderr
        assert "Traceback" not in output.stderr
    with pytest.raises(SigningKeyError) as caught:
        SigningKey.from_pem(pem.encode(), source="a test")
    assert "SECRET" not in str(caught.value) + str(caught.value.__cause__)
    assert not (tmp_path / "x.jsonl").exists()
    missing = audit(V1_LOG, tmp_path / "nowhere.pub.pem")
    assert missing.returncode == 2 and "cannot read the public key" in missing.stderr
    not_public = audit(V1_LOG, bad)
    assert not_public.returncode == 2 and "SECRET" not in not_public.stderr


def test_a_key_from_the_environment_signs_like_the_file(keys: tuple[Path, Path],
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A PEM key in the environment variable signs the same way; its repr shows the id only."""
    monkeypatch.setenv(ENV_VAR, keys[0].read_text())
    key = SigningKey.from_env()
    assert key.key_id == SigningKey.from_file(keys[0]).key_id
    assert repr(key) == f"SigningKey(key_id={key.key_id!r})"
    log = tmp_path / "env.jsonl"
    writer = configure(log, console=False, signing_key=key)
    try:
        engine = Lifecycle()
        engine.feed(Connect(at=0.0))
        engine.feed(Close(at=1.0))
    finally:
        assert writer is not None
        writer.close()
        structlog.reset_defaults()
    done = audit(log, keys[1])
    assert done.returncode == 0 and "sealed" in done.stdout, done.stdout


def test_a_crash_is_unsealed_and_stays_so_after_the_next_writer(
        keys: tuple[Path, Path], tmp_path: Path) -> None:
    """A writer process that dies without closing: the records after its last checkpoint are
    reported unsealed (file:line range, per session), not as tampering. A later writer does not
    vouch for them: they stay unsealed while its own session verifies and is sealed."""
    log = tmp_path / "crash.jsonl"
    assert writer_process("crash", log, keys[0], "4").returncode == 0
    lines = log.read_text().splitlines()
    last = max(i for i, line in enumerate(lines, 1) if '"kind":"checkpoint"' in line)
    session = json.loads(lines[-1])["session"]
    expected = (f"UNSEALED {log}:{last + 1}-{len(lines)}: unsealed: {len(lines) - last} records "
                f"not covered by a signature (session {session}: {len(lines) - last})")
    done = audit(log, keys[1])
    assert done.returncode == 1 and "VIOLATION" not in done.stdout, done.stdout
    assert expected in done.stdout and "a crash, or the tail was cut" in done.stdout
    assert writer_process("session", log, keys[0]).returncode == 0
    after = audit(log, keys[1])
    assert after.returncode == 1 and "VIOLATION" not in after.stdout, after.stdout
    assert expected.split(" (session")[0] in after.stdout
    assert "written before a signing writer opened the file" in after.stdout
    assert after.stdout.count("ends terminated, sealed") == 1


def test_a_second_writer_on_one_file_fails_at_once(keys: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    """One writer per file: while this process writes the log, another process (and another
    writer in this process) fails with AuditLogBusy and writes nothing; once the first closes,
    the next one appends and continues the chain, and both segments verify."""
    log = tmp_path / "shared.jsonl"
    writer = JsonLinesWriter(log, signing_key=keys[0])
    engine = Lifecycle(audit=writer.write)
    engine.feed(Connect(at=0.0))
    before = log.read_bytes()
    busy = writer_process("session", log, keys[0])
    assert busy.returncode == 3, busy.stdout + busy.stderr
    assert busy.stdout.startswith("BUSY ") and "give each process its own file" in busy.stdout
    with pytest.raises(AuditLogBusy):
        JsonLinesWriter(log)
    assert log.read_bytes() == before
    engine.feed(Close(at=1.0))
    writer.close()
    assert writer_process("session", log, keys[0]).returncode == 0
    done = audit(log, keys[1])
    assert done.returncode == 0, done.stdout
    assert done.stdout.count("ends terminated, sealed") == 2
    assert log.read_text().count('"name":"open"') == 2


def test_rotated_keys_verify_together(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """A log continued under a new key verifies with both public keys; with only the old one,
    the new checkpoints are violations (any key could have made them)."""
    new = tmp_path / "new"
    assert cli("keygen", str(new)).returncode == 0
    log = tmp_path / "rotated.jsonl"
    assert writer_process("session", log, keys[0]).returncode == 0
    assert writer_process("session", log, new / PRIVATE_NAME).returncode == 0
    both = audit(log, keys[1], new / PUBLIC_NAME)
    assert both.returncode == 0, both.stdout
    old_only = audit(log, keys[1])
    assert old_only.returncode == 1 and "not among the public keys given" in old_only.stdout


def test_a_v1_log_still_verifies_as_unkeyed(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """A log written before signing existed: clean without a key, saying what that proves; with
    a key, its records are unsealed. A signing writer may continue it: one chain across both
    versions, the old lines still unsealed."""
    done = audit(V1_LOG)
    assert done.returncode == 0 and UNKEYED in done.stdout, done.stdout
    keyed = audit(V1_LOG, keys[1])
    assert keyed.returncode == 1 and "no signed checkpoint" in keyed.stdout
    log = tmp_path / "continued.jsonl"
    shutil.copy(V1_LOG, log)
    assert writer_process("session", log, keys[0]).returncode == 0
    assert audit(log).returncode == 0
    mixed = audit(log, keys[1])
    assert f"{log}:1-5: unsealed: 5 records" in mixed.stdout, mixed.stdout
    assert "VIOLATION" not in mixed.stdout and "ends terminated, sealed" in mixed.stdout


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty file"),
    (b'{"level": "info", "msg": "an application log"}\n' * 3, "not an audit log"),
    (b"plain text\n", "not an audit log"),
])
def test_an_empty_or_foreign_file_is_an_error_never_clean(
        content: bytes, message: str, keys: tuple[Path, Path], tmp_path: Path) -> None:
    """A file with no audit record in it: exit 2 and why, with or without a key."""
    path = tmp_path / "other.jsonl"
    path.write_bytes(content)
    for done in (audit(path), audit(path, keys[1])):
        assert done.returncode == 2, done.stdout
        assert f"UNREADABLE {path}: {message}" in done.stdout
        assert "clean" not in done.stdout


async def test_two_sessions_in_one_process_share_one_signed_chain(
        keys: tuple[Path, Path], tmp_path: Path) -> None:
    """Two live sessions against the emulator at once, through configure(): one writer, their
    records interleaved in one chain, each session sealed when it ends, all verified."""
    log = tmp_path / "two.jsonl"
    writer = configure(log, console=False, signing_key=keys[0], checkpoint_every=10)
    try:
        async with LiveEmulator(EmulatorSettings(time_scale=SCALE, chunk_interval=1.0)) as emu:
            sessions = [statemachine.connect(
                emu.client(**statemachine.websocket_args()), model=MODEL,
                config=types.LiveConnectConfig(response_modalities=[types.Modality.TEXT]),
                policy=fast_policy()) for _ in range(2)]
            apps = [App(await s.__aenter__()) for s in sessions]
            for turn in range(3):
                replies = await asyncio.gather(*(a.ask(f"turn {turn}") for a in apps))
                assert all(r.startswith(f'Reply {turn + 1} to "turn {turn}"') for r in replies)
            for app in apps:
                await app.stop()
    finally:
        assert writer is not None
        writer.close()
        structlog.reset_defaults()
    records: list[dict[str, Any]] = [json.loads(line) for line in log.read_text().splitlines()]
    order = [r["session"] for r in records if r["kind"] != "checkpoint"]
    first, second = dict.fromkeys(order)
    assert order.index(second) < len(order) - 1 - order[::-1].index(first)  # interleaved
    seals = [r["session"] for r in records if r.get("name") == "seal"]
    assert sorted(seals) == sorted([first, second])
    done = audit(log, keys[1])
    assert done.returncode == 0, done.stdout
    assert done.stdout.count("ends terminated, sealed") == 2


def test_repr_and_checkpoint_interval(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """The writer's repr names the file and key id only; a periodic checkpoint every N lines."""
    log = tmp_path / "every.jsonl"
    writer = JsonLinesWriter(log, signing_key=keys[0], checkpoint_every=3)
    assert repr(writer) == f"JsonLinesWriter({str(log)!r}, key_id={writer.key_id!r})"
    engine = Lifecycle(audit=writer.write)
    engine.feed(Connect(at=0.0))
    engine.feed(SetupComplete(at=0.1, generation=engine.generation))
    writer.close()
    kinds = ["checkpoint" if '"kind":"checkpoint"' in line else "record"
             for line in log.read_text().splitlines()]
    # open, then a checkpoint after every 3 lines, then close
    assert kinds[0] == "checkpoint" and kinds[-1] == "checkpoint"
    assert all(kinds[i] == "checkpoint" for i in range(4, len(kinds) - 1, 4))
    assert audit(log, keys[1]).returncode == 0
