"""Headless Chromium driven over the DevTools protocol: load a page, and tell what went wrong.

Debian's `chromium` package (.ci/run installs it). The browser gets a fresh profile, no network
services, and a free debugging port it picks itself (read from its stderr). What a test gets back:
console errors, uncaught exceptions, requests to anything but the page itself, the value of a
script evaluated in the page, and a full-page screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs
import websockets

EXE = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--hide-scrollbars", "--remote-debugging-port=0"]


@attrs.define
class Loaded:
    errors: list[str] = attrs.field(factory=list)  # console errors and uncaught exceptions
    requests: list[str] = attrs.field(factory=list)  # URLs other than the page's own
    value: Any = None  # what `script` evaluated to
    png: bytes = b""


LIMIT = 60.0  # seconds for the whole visit, browser start included


async def load(page: Path, script: str = "null", *, width: int = 1200) -> Loaded:
    """Open `page` (a local file), wait for its load event, evaluate `script`, screenshot it."""
    assert EXE is not None, "chromium is not installed (apt-get install chromium)"
    page_url = page.resolve().as_uri()  # noqa: ASYNC240 (no I/O: a path made absolute)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = await asyncio.create_subprocess_exec(
            EXE, *FLAGS, f"--user-data-dir={profile}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(LIMIT):
                url = await _devtools_url(proc)
                return await _drive(url, page_url, script, width)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def _devtools_url(proc: asyncio.subprocess.Process) -> str:
    assert proc.stderr is not None
    async for raw in proc.stderr:
        found = re.search(rb"DevTools listening on (ws://\S+)", raw)
        if found:
            return found.group(1).decode()
    raise RuntimeError(f"chromium exited ({proc.returncode}) before its DevTools port was known")


async def _drive(url: str, page_url: str, script: str, width: int) -> Loaded:
    out = Loaded()
    ids = itertools.count(1)
    async with websockets.connect(url, max_size=None) as ws:
        pending: dict[int, asyncio.Future[Any]] = {}
        loaded = asyncio.Event()
        session: str | None = None

        async def reader() -> None:
            async for message in ws:
                data = json.loads(message)
                if "id" in data and data["id"] in pending:
                    pending.pop(data["id"]).set_result(data)
                    continue
                method, params = data.get("method"), data.get("params", {})
                if method == "Page.loadEventFired":
                    loaded.set()
                elif method == "Runtime.exceptionThrown":
                    out.errors.append(json.dumps(params["exceptionDetails"])[:500])
                elif method == "Runtime.consoleAPICalled" and params["type"] in ("error",
                                                                                 "assert"):
                    out.errors.append(json.dumps(params["args"])[:500])
                elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                    out.errors.append(params["entry"]["text"][:500])
                elif method == "Network.requestWillBeSent":
                    request_url = params["request"]["url"]
                    if request_url != page_url and not request_url.startswith("data:"):
                        out.requests.append(request_url)

        async def call(method: str, **params: Any) -> Any:
            number = next(ids)
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            pending[number] = future
            message: dict[str, Any] = {"id": number, "method": method, "params": params}
            if session is not None:
                message["sessionId"] = session
            await ws.send(json.dumps(message))
            reply = await future
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply.get("result", {})

        task = asyncio.create_task(reader())
        try:
            target = await call("Target.createTarget", url="about:blank")
            attached = await call("Target.attachToTarget", targetId=target["targetId"],
                                  flatten=True)
            session = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                await call(f"{domain}.enable")
            await call("Emulation.setDeviceMetricsOverride", width=width, height=800,
                       deviceScaleFactor=1, mobile=False)
            await call("Page.navigate", url=page_url)
            await loaded.wait()
            result = await call("Runtime.evaluate", expression=script, returnByValue=True)
            if "exceptionDetails" in result:
                out.errors.append(json.dumps(result["exceptionDetails"])[:500])
            out.value = result.get("result", {}).get("value")
            shot = await call("Page.captureScreenshot", format="png",
                              captureBeyondViewport=True)
            out.png = base64.b64decode(shot["data"])
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return out


#: For every inline SVG in the page: the drawn boxes of its labels that meet another label.
OVERLAPS = """
(() => {
  const found = [];
  let labels = 0;
  for (const svg of document.querySelectorAll('svg')) {
    const boxes = [...svg.querySelectorAll('text.label')].map(t => [t.textContent, t.getBBox()]);
    labels += boxes.length;
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const [a, p] = boxes[i], [b, q] = boxes[j];
      if (p.x < q.x + q.width && q.x < p.x + p.width && p.y < q.y + q.height
          && q.y < p.y + p.height) found.push([a, b]);
    }
  }
  return {labels, overlaps: found.slice(0, 20), svgs: document.querySelectorAll('svg').length};
})()
"""
