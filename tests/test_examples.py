"""Every Python example in README.md and docs/ runs as written, so an example that breaks fails CI.

Each ```python block of README.md and docs/**/*.md is found here; none is skipped. How a block is
checked is said in the document itself, by an HTML comment on the line just before it:

- no comment (or `<!-- example: run -->`): the block is run as written, top-level `await`
  allowed, in a process of its own whose current folder is an empty temp folder and whose
  environment points google-genai at a local emulator (GOOGLE_GEMINI_BASE_URL, SSL_CERT_FILE,
  GEMINI_API_KEY / GOOGLE_API_KEY: what `python -m statemachine emulator` prints). It must
  exit 0 within two minutes.
- `<!-- example: fragment: WHY -->`: placeholders (`...`, names the reader supplies) keep it from
  running; it is compiled, and every name it imports or reaches through `statemachine`,
  `google.genai` or `types` must exist.
- `<!-- example: real key: WHY -->`: needs the real service. Checked like a fragment; run as
  written (against the real service) only when STATEMACHINE_EXAMPLES_KEY holds a real key.

Any other `<!-- example: ... -->` comment is an error, and so is a block that fails its check.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from statemachine.emulator import LiveEmulator

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!--\s*example:\s*(run|fragment|real key)\s*(?::\s*(.+?))?\s*-->\s*$")
ANY_MARKER = re.compile(r"^<!--\s*example\b")
FENCE = re.compile(r"^```python\s*$")
REAL_KEY = "STATEMACHINE_EXAMPLES_KEY"

#: runs a block: top-level await allowed, like the asyncio REPL (`python -m asyncio`)
RUNNER = """
import ast, asyncio, sys
source = open(sys.argv[1]).read()
code = compile(source, sys.argv[2], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


@attrs.frozen
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    kind: str  # run, fragment, real key
    why: str
    source: str

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(doc: Path) -> Iterator[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if not FENCE.match(lines[i]):
            i += 1
            continue
        start = i
        before = lines[i - 1].strip() if i else ""
        kind, why = "run", ""
        if ANY_MARKER.match(before):
            marker = MARKER.match(before)
            if marker is None:
                raise AssertionError(f"{doc.relative_to(ROOT)}:{i}: unknown example marker "
                                     f"{before!r} (run, fragment: WHY, real key: WHY)")
            kind, why = marker.group(1), marker.group(2) or ""
            if kind != "run" and not why:
                raise AssertionError(f"{doc.relative_to(ROOT)}:{i}: a {kind} marker says why")
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        yield Block(doc, start + 1, kind, why, "\n".join(body) + "\n")
        i += 1


ALL = [b for doc in documents() for b in blocks(doc)]


def test_the_documents_have_examples() -> None:
    """The search finds blocks (a change of fence style would otherwise pass silently), at
    least one of which runs."""
    assert len(ALL) >= 5 and any(b.kind == "run" for b in ALL), [b.name for b in ALL]


def _compile(block: Block) -> ast.Module:
    try:
        tree = ast.parse(block.source, block.name)
        compile(block.source, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        raise AssertionError(f"{block.name}: does not compile: {exc}") from exc
    return tree


def _resolve(block: Block, tree: ast.Module) -> None:
    """Every import, and every attribute reached from an imported module, exists."""
    bound: dict[str, Any] = {}
    for node in ast.walk(tree):
        try:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    module = importlib.import_module(alias.name)
                    bound[alias.asname or alias.name.split(".")[0]] = (
                        module if alias.asname else importlib.import_module(
                            alias.name.split(".")[0]))
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        importlib.import_module(f"{node.module}.{alias.name}")
                    bound[alias.asname or alias.name] = getattr(module, alias.name)
        except ImportError as exc:
            raise AssertionError(f"{block.name}: {exc}") from exc
    for node in ast.walk(tree):
        chain: list[str] = []
        current: ast.expr = node if isinstance(node, ast.Attribute) else ast.Constant(None)
        while isinstance(current, ast.Attribute):
            chain.append(current.attr)
            current = current.value
        if not chain or not isinstance(current, ast.Name) or current.id not in bound:
            continue
        value = bound[current.id]
        if not (getattr(value, "__name__", "") or "").startswith(("statemachine", "google")):
            continue
        for attr in reversed(chain):
            if not hasattr(value, attr):
                raise AssertionError(f"{block.name}: {current.id}.{'.'.join(reversed(chain))}:"
                                     f" {value!r} has no {attr!r}")
            value = getattr(value, attr)
            if not isinstance(value, type) and not hasattr(value, "__module__"):
                break


@pytest.fixture(scope="module")
def emulator_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An emulator for the blocks that dial one from the environment, as a user who ran
    `python -m statemachine emulator` would."""
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    emu = LiveEmulator()
    asyncio.run_coroutine_threadsafe(emu.start(), loop).result(60)
    env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": emu.base_url, "SSL_CERT_FILE": emu.ca_file,
           "GEMINI_API_KEY": emu.api_key, "GOOGLE_API_KEY": emu.api_key,
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    env.pop(REAL_KEY, None)
    try:
        yield env
    finally:
        asyncio.run_coroutine_threadsafe(emu.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _run(block: Block, env: dict[str, str], cwd: Path) -> None:
    script = cwd / "example.py"
    script.write_text(block.source, encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", RUNNER, str(script), block.name],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"{block.name} failed (exit {done.returncode}):\n{block.source}\n{done.stderr[-3000:]}")


@pytest.mark.parametrize("block", ALL, ids=[b.name for b in ALL])
def test_every_example_runs_as_written(block: Block, emulator_env: dict[str, str],
                                       tmp_path: Path) -> None:
    tree = _compile(block)
    _resolve(block, tree)
    if block.kind == "run":
        _run(block, emulator_env, tmp_path)
    elif block.kind == "real key" and os.environ.get(REAL_KEY):
        env = {k: v for k, v in os.environ.items()
               if k not in ("GOOGLE_GEMINI_BASE_URL", "SSL_CERT_FILE")}
        env["GEMINI_API_KEY"] = env["GOOGLE_API_KEY"] = os.environ[REAL_KEY]
        _run(block, env, tmp_path)
