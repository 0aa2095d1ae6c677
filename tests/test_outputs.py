"""Every command that writes a file follows one rule and fails in one line: it never replaces an
existing file without --force, and a place it cannot write (a read-only folder, a folder named as
the file, a path through a file, a full device) is one line naming the path, exit 2, no
traceback, nothing half-written.

Running as root hides permission errors (root ignores mode bits), so the read-only folder here is
one that refuses everybody, root included: a chmod 0555 folder when the tests do not run as root,
and otherwise /sys, where the kernel lets no one create a file. The fixture proves the folder is
read-only for this very process before a test relies on it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

LOG = Path(__file__).parent / "data" / "audit-v1.jsonl"


def command(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "statemachine", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("python -m statemachine")
    return lines[0]


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder in which this process cannot create a file."""
    candidates = []
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        candidates.append(folder)
    candidates.append(Path("/sys"))
    for folder in candidates:
        probe = folder / "statemachine-probe"
        try:
            probe.open("x").close()
        except OSError:
            try:
                yield folder
            finally:
                if folder != Path("/sys"):
                    folder.chmod(0o755)
            return
        probe.unlink()
    pytest.fail("no folder refuses file creation here; the read-only cases cannot be tested")


#: each command that writes, as (argv building function, the files it writes for a target)
WRITERS = {
    "timeline": lambda t: ["timeline", str(LOG), "-o", str(t)],
    "report": lambda t: ["report", str(LOG), "-o", str(t)],
    "diagram": lambda t: ["diagram", "-o", str(t)],
    "diagram --from-log": lambda t: ["diagram", "--from-log", str(LOG), "-o", str(t)],
}


@pytest.mark.parametrize("name", [*WRITERS, "keygen"])
def test_a_read_only_folder_is_one_line(name: str, read_only: Path) -> None:
    target = read_only / "out"
    args = ["keygen", str(target)] if name == "keygen" else WRITERS[name](target)
    line = one_line_error(command(*args))
    assert str(read_only / "out") in line
    assert not target.exists() and not list(read_only.glob("*.part"))


@pytest.mark.parametrize("name", [*WRITERS, "keygen"])
def test_a_path_through_a_file_is_one_line(name: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("mine\n")
    target = blocker / "out"
    args = ["keygen", str(target)] if name == "keygen" else WRITERS[name](target)
    line = one_line_error(command(*args))
    assert str(blocker) in line and "not a directory" in line.lower()
    assert blocker.read_text() == "mine\n"


@pytest.mark.parametrize("name", ["timeline", "report"])
def test_a_folder_named_as_the_file_is_one_line(name: str, tmp_path: Path) -> None:
    line = one_line_error(command(*WRITERS[name](tmp_path)))
    assert str(tmp_path) in line and "folder" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["timeline", "report"])
def test_a_full_device_is_one_line(name: str) -> None:
    """A device is written to (like `-o /dev/stdout`), not replaced: /dev/full says so."""
    line = one_line_error(command(*WRITERS[name](Path("/dev/full"))))
    assert "/dev/full" in line and "No space left" in line


def test_keygen_onto_an_existing_file_is_one_line(tmp_path: Path) -> None:
    existing = tmp_path / "keys"
    existing.write_text("not a folder\n")
    line = one_line_error(command("keygen", str(existing)))
    assert str(existing) in line and "file" in line
    assert existing.read_text() == "not a folder\n"


def test_the_demo_log_in_a_read_only_folder_or_a_folder_is_one_line(read_only: Path,
                                                                     tmp_path: Path) -> None:
    assert "folder" in one_line_error(command("demo", "--log", str(tmp_path)))
    assert str(read_only) in one_line_error(command("demo", "--log", str(read_only / "d.jsonl")))


@pytest.mark.parametrize("port", ["-1", "99999", "http"])
def test_a_port_out_of_range_is_one_line(port: str) -> None:
    assert "port" in one_line_error(command("emulator", "--port", port))


# -- one rule for replacing a file


def _targets(name: str, where: Path) -> tuple[list[str], list[Path]]:
    if name == "keygen":
        return ["keygen", str(where)], [where / "audit-signing-key.pem",
                                         where / "audit-signing-key.pub.pem"]
    if name.startswith("diagram"):
        prefix = where / "life"
        return WRITERS[name](prefix), [prefix.with_suffix(".mmd"), prefix.with_suffix(".dot")]
    target = where / ("t.svg" if name == "timeline" else "t.html")
    return WRITERS[name](target), [target]


@pytest.mark.parametrize("name", [*WRITERS, "keygen"])
def test_no_command_replaces_a_file_without_force(name: str, tmp_path: Path) -> None:
    """An existing output is refused in one line naming --force and left as it was; with
    --force it is replaced."""
    where = tmp_path / "out"
    where.mkdir()
    args, files = _targets(name, where)
    files[-1].write_text("precious\n")
    line = one_line_error(command(*args))
    assert "--force" in line and str(files[-1]) in line
    assert files[-1].read_text() == "precious\n"
    assert [p.name for p in where.iterdir()] == [files[-1].name]  # nothing else written
    done = command(*args, "--force")
    assert done.returncode == 0, done.stderr
    assert all(f.exists() for f in files) and files[-1].read_text() != "precious\n"


def test_diagram_from_log_without_o_prints_and_writes_nothing(tmp_path: Path) -> None:
    done = command("diagram", "--from-log", str(LOG), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stateDiagram-v2") and "classDef" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_demo_log_empty_is_an_error(tmp_path: Path) -> None:
    line = one_line_error(command("demo", "--log", "", cwd=tmp_path))
    assert "--log" in line and "empty" in line
    assert list(tmp_path.iterdir()) == []
