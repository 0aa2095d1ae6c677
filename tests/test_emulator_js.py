"""Google's JavaScript SDK (`@google/genai` 2.x on Node) against the emulator: the session-
management sample runs in full (connect, resume with a handle, a turn that remembers)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from statemachine.emulator import LiveEmulator

JS = Path(__file__).parent / "js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are needed for the JavaScript SDK sample",
)


def _installed() -> None:
    """`npm ci` once if CI has not installed the pinned SDK yet (CI does it in .ci/run)."""
    if (JS / "node_modules" / "@google" / "genai").is_dir():
        return
    import subprocess

    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True,
                   capture_output=True, timeout=300)


async def _run_sample(emu: LiveEmulator, model: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "NODE_EXTRA_CA_CERTS": emu.ca_file,
        "EMU_BASE_URL": emu.base_url,
        "EMU_API_KEY": emu.api_key,
        "EMU_MODEL": model,
    }
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        env.pop(proxy, None)
    proc = await asyncio.create_subprocess_exec(
        "node", "session_resumption.mjs", cwd=JS, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("model", ["gemini-live-2.5-flash-preview",
                                   "gemini-3.1-flash-live-preview"])
async def test_javascript_session_management_sample(emu: LiveEmulator, model: str) -> None:
    """The JS SDK dials `//ws/...` with `?key=`; the sample connects, resumes with the handle
    it was given, and the resumed session's reply remembers the first connection's turn."""
    await asyncio.to_thread(_installed)
    code, out, err = await _run_sample(emu, model)
    assert code == 0, f"node sample failed ({code}): {err or out}"
    result = json.loads(out.strip().splitlines()[-1])
    assert '"my name is Ada"' in result["reply"]
    assert len(emu.connections) == 2 and emu.connections[1].resumed
    first = emu.connections[0]
    assert first.path.startswith("//ws/") and "key=" in first.path
    assert not emu.refused_handshakes
