"""The commands never surprise: they write only what they are asked to, stop on Ctrl-C with one
line and exit 130, turn bad arguments, a port in use and a closed pipe into one line (no
traceback), clean up after SIGTERM, and name themselves in --help. Every case runs the real
command in a process of its own; signals go to real processes once they said they are ready."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from statemachine.audit import diagram

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "gemini-live-statemachine"


def command(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "statemachine", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The command in a process group of its own (a terminal's Ctrl-C reaches the group),
    stdout and stderr merged, unbuffered, and SIGINT at its default, as a terminal's foreground
    job has it: a test run started in the background of a script (`.ci/run &`) has SIGINT
    ignored, every child inherits that, and a command that leaves SIGINT to Python (bench)
    would then run its whole course after the test's Ctrl-C."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "statemachine", *args], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**(env or os.environ), "PYTHONUNBUFFERED": "1"})
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def ctrl_c(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for the first line (the command is under way), press Ctrl-C, collect the rest."""
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first, "the command printed nothing before exiting"
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, first + rest


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


# -- diagram writes only when asked


def test_diagram_prints_and_writes_nothing(tmp_path: Path) -> None:
    """Run in an application's folder, `diagram` prints the Mermaid text and leaves its README
    and the folder as they were."""
    readme = tmp_path / "README.md"
    readme.write_text("# my app\n")
    done = command("diagram", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == diagram.mermaid()
    assert readme.read_text() == "# my app\n" and sorted(tmp_path.iterdir()) == [readme]


def test_diagram_readme_refuses_a_readme_that_is_not_the_projects(tmp_path: Path) -> None:
    """`--readme` updates only a README with the generated block: anywhere else it is one line
    and exit 2, nothing written."""
    readme = tmp_path / "README.md"
    readme.write_text("# my app\n")
    done = command("diagram", "--readme", cwd=tmp_path)
    assert done.returncode == 2
    assert "no generated lifecycle block" in one_line(done.stderr)
    assert readme.read_text() == "# my app\n" and sorted(tmp_path.iterdir()) == [readme]


def test_diagram_readme_rewrites_the_block_and_the_files(tmp_path: Path) -> None:
    """In a checkout (a README with the block), `--readme` regenerates the block and
    diagrams/lifecycle.*, and `--check` then passes."""
    readme = tmp_path / "README.md"
    readme.write_text(f"# project\n\n{diagram.README_START}\nstale\n{diagram.README_END}\n")
    done = command("diagram", "--readme", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert diagram.readme_block() in readme.read_text()
    assert (tmp_path / "diagrams" / "lifecycle.mmd").read_text() == diagram.mermaid()
    assert command("diagram", "--check", cwd=tmp_path).returncode == 0


def test_diagram_output_prefix_writes_the_files(tmp_path: Path) -> None:
    """`diagram -o PREFIX` writes PREFIX.mmd and PREFIX.dot (and .svg with Graphviz)."""
    done = command("diagram", "-o", str(tmp_path / "out" / "life"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "life.mmd").read_text() == diagram.mermaid()
    assert (tmp_path / "out" / "life.dot").read_text() == diagram.dot()


# -- demo --log


def test_demo_refuses_to_overwrite_its_log(tmp_path: Path) -> None:
    """`demo --log FILE` with FILE present: one line, exit 2, the file untouched."""
    log = tmp_path / "precious.jsonl"
    log.write_text("keep me\n")
    done = command("demo", "--log", str(log))
    assert done.returncode == 2
    assert "--force" in one_line(done.stderr) and done.stdout == ""
    assert log.read_text() == "keep me\n"


def test_demo_force_overwrites_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    """`--force` lets the demo start over an existing log; Ctrl-C then stops it with one line
    and exit 130, no traceback, and no story line about the unwinding (no `close None`)."""
    log = tmp_path / "old.jsonl"
    log.write_text("keep me\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    status, out = ctrl_c(start("demo", "--log", str(log), "--force", env=env))
    assert status == 130, out
    assert "Traceback" not in out and "Exception" not in out
    assert out.rstrip().splitlines()[-1].endswith("interrupted")
    assert "keep me" not in log.read_text()
    # the session unwinding after Ctrl-C is not narrated as if it were part of the demo
    assert "close None" not in out and "→ terminated" not in out, out


# -- emulator


def _emulator(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Path]:
    """A standalone emulator with its own TMPDIR; returns it once it printed its CA file."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = start("emulator", env={**os.environ, "TMPDIR": str(tmp)})
    assert proc.stdout is not None
    for line in proc.stdout:
        if "SSL_CERT_FILE=" in line:
            return proc, tmp, Path(line.split("=", 1)[1].strip())
    raise AssertionError(f"the emulator exited with {proc.wait()} before it was ready")


def test_emulator_ctrl_c_one_line_and_130(tmp_path: Path) -> None:
    """Ctrl-C: 'interrupted' on one line, exit 130, its temporary CA file removed."""
    proc, tmp, ca_file = _emulator(tmp_path)
    assert ca_file.is_file() and tmp in ca_file.parents
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in rest and "Traceback" not in rest
    assert rest.splitlines()[-1].endswith("interrupted, stopped")
    assert list(tmp.iterdir()) == []


def test_emulator_sigterm_removes_its_temporary_files(tmp_path: Path) -> None:
    """SIGTERM stops the emulator cleanly (exit 0): its temporary CA directory is gone."""
    proc, tmp, ca_file = _emulator(tmp_path)
    assert ca_file.is_file()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "Traceback" not in rest
    assert not ca_file.exists() and list(tmp.iterdir()) == []


def test_emulator_port_in_use_is_one_line(tmp_path: Path) -> None:
    """A port another process listens on: one line naming it, exit 2, no temporary files."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = command("emulator", "--port", str(port), env={**os.environ, "TMPDIR": str(tmp)})
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert f"127.0.0.1:{port}" in line and "in use" in line
    assert list(tmp.iterdir()) == []


# -- bench


def test_bench_ctrl_c_one_line_and_130() -> None:
    """Ctrl-C during the benchmark (and its child processes): one line, exit 130."""
    status, out = ctrl_c(start("bench", "--quick"))
    assert status == 130, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if not line.startswith("bench [")]
    assert len(lines) == 1 and lines[0].endswith("interrupted"), out


# -- bad arguments, closed pipes


@pytest.mark.parametrize("args", [
    ["emulator", "--port", "eighty"],
    ["emulator", "--time-scale", "nan"],
    ["emulator", "--time-scale", "-1"],
    ["bench", "--json", "/nonexistent-dir/bench.json"],
    ["demo", "--log", "/proc/demo.jsonl"],
    ["bench", "--from-json", "/nonexistent-dir/bench.json"],
    ["no-such-command"],
    ["diagram", "--readme", "--check"],
], ids=lambda a: " ".join(a))
def test_bad_arguments_are_one_line(args: list[str]) -> None:
    """A bad argument or setting: exit 2 and one line on stderr (what, and where to look)."""
    done = command(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error" in one_line(done.stderr)
    assert done.stdout == ""


@pytest.mark.parametrize("args", [["table"], ["diagram"]])
def test_closed_pipe_is_silent(args: list[str]) -> None:
    """stdout closed before the command writes (`... | head -1`): no traceback, nothing on
    stderr, exit 141 (128 + SIGPIPE) like other tools."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "statemachine", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == ""


def test_head_of_the_table() -> None:
    """`table | head -1` in a real shell: the first line, and nothing on stderr."""
    done = subprocess.run(
        ["bash", "-c", f"'{sys.executable}' -m statemachine table | head -1"],
        capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("initial: idle") and done.stderr == ""


# -- audit


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (b"hello\nworld\n", "not an audit log"),
    (b'{"level": "info", "msg": "an application log"}\n', "not an audit log"),
])
def test_audit_of_something_that_is_not_a_log_is_an_error(tmp_path: Path, content: bytes,
                                                         reason: str) -> None:
    """An empty file, or one with no audit record at all, exits 2: it is not 'clean'."""
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    done = command("audit", str(path))
    assert done.returncode == 2
    assert reason in done.stdout and "clean" not in done.stdout


# -- --help


def test_help_names_the_module() -> None:
    """`python -m statemachine --help` shows that usage."""
    done = command("--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m statemachine ")


@pytest.mark.skipif(not SCRIPT.exists(), reason="the package is not installed with its script")
def test_help_names_the_console_script() -> None:
    """The installed `gemini-live-statemachine` names itself, also in a command's help."""
    for args in (["--help"], ["demo", "--help"]):
        done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0
        assert done.stdout.startswith(f"usage: gemini-live-statemachine {args[0]}"
                                      if args[0] != "--help" else
                                      "usage: gemini-live-statemachine "), done.stdout


def test_bench_help_and_the_docs_agree_on_how_long_quick_takes() -> None:
    """Every line of the README and docs/ that says how long `bench --quick` takes says what
    `bench --help` says."""
    import re

    helptext = " ".join(command("bench", "--help").stdout.split())
    said = re.search(r"--quick a smaller run: (a few minutes|about [\w.]+ minutes?)", helptext)
    assert said, helptext
    claims = 0
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in doc.read_text().splitlines():
            if "bench --quick" in line and re.search(r"minute|\d+ ?s\b|second", line) \
                    and "windows" not in line:
                claims += 1
                assert said.group(1) in line, (doc.name, line)
    assert claims, "no document says how long bench --quick takes"
