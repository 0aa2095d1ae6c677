"""The documentation site builds with `--strict`: a broken cross-reference, link or include
fails it (CI also builds it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict` succeeds, and the API reference holds the public entry points."""
    pytest.importorskip("mkdocs")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    session = (tmp_path / "reference" / "session" / "index.html").read_text()
    for name in ("statemachine.aio.session.connect", "LiveSession", "instrument"):
        assert name in session, name
    testing = (tmp_path / "reference" / "testing" / "index.html").read_text()
    assert "CoreDriver" in testing and "capture" in testing
    lifecycle = (tmp_path / "lifecycle" / "index.html").read_text()
    assert "safe_point [at_safe_point]" in lifecycle  # the generated diagram, included


def test_every_docs_page_is_in_the_navigation() -> None:
    """No page is built but unreachable: each Markdown file under docs/ is in mkdocs.yml."""
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        rel = page.relative_to(ROOT / "docs").as_posix()
        assert rel in nav, f"{rel} is not in mkdocs.yml's nav"
