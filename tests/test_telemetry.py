"""OpenTelemetry traces and metrics (`connect(..., telemetry=...)`), through the real
OpenTelemetry SDK: its in-memory span exporter and metric reader for exact assertions, the
Prometheus exporter scraped over HTTP while sessions rotate against the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, start_http_server

import statemachine
from statemachine import ContextLost, Ended, InputDropped, SettingsError, Telemetry
from statemachine.core.records import fingerprint
from statemachine.emulator import ConnectionPlan, EmulatorSettings, LiveEmulator
from statemachine.telemetry import definitions
from statemachine.telemetry.observer import DROP_REASONS, drop_reason

from .app import FAST_ROTATION, App, fast_policy, start
from .sdk import MODEL

ROOT = Path(__file__).resolve().parent.parent
AUDIO = {"data": b"\x00" * 640, "mime_type": "audio/pcm;rate=16000"}


@attrs.define
class Otel:
    """A tracer and a meter provider of the real SDK, read in memory."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    @property
    def telemetry(self) -> Telemetry:
        return Telemetry(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of metric `name` (empty when nothing was recorded)."""
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out

    def value(self, name: str, **attributes: Any) -> float:
        """The sum of the points of `name` whose attributes include `attributes` (a histogram
        point counts its count)."""
        total = 0.0
        for p in self.points(name):
            if all(p.attributes.get(k) == v for k, v in attributes.items()):
                total += p.count if hasattr(p, "count") else p.value
        return total


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def by_generation(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    conns = [s for s in spans if s.name.startswith("realtime_connection ")]
    return sorted(conns, key=lambda s: s.attributes["gemini_live.connection.generation"])


def usage_records(app: App) -> list[dict[str, Any]]:
    return [r["cause"] for r in app.records if r["kind"] == "event" and r["name"] == "usage"]


async def test_a_rotating_session_as_spans_and_metrics(otel: Otel) -> None:
    """A session that rotates at goAway and resumes after a drop: one session span, one child
    span per connection linked to the one before, transitions and notices as span events, the
    drop as an error with its close code and classification, usage per connection and per
    session, and the outage and resume metrics."""
    async with LiveEmulator(FAST_ROTATION) as emu:
        emu.plan(ConnectionPlan(), ConnectionPlan(drop_after=5.0))
        app = await start(emu, telemetry=otel.telemetry)
        counters = app.session.core.counters
        for i in range(80):
            if counters.rotations >= 1 and counters.resumes >= 2:
                break
            await app.ask(f"fact {i}")
        assert counters.rotations >= 1 and counters.resumes >= 2
        # while open: the session counts as streaming
        assert otel.value("gemini_live.sessions", **{"gemini_live.state": "streaming"}) == 1
        await app.stop()

    spans = otel.finished()
    [session] = [s for s in spans if s.name == f"realtime_session {MODEL}"]
    assert session.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert session.attributes["gen_ai.request.model"] == MODEL
    assert session.attributes["gen_ai.operation.name"] == "realtime_session"
    assert session.attributes["gen_ai.realtime_session.id"] == app.session.session_id
    assert session.status.status_code is StatusCode.UNSET
    assert [e.name for e in session.events][-1] == "gen_ai.client.realtime_session.ended"

    conns = by_generation(spans)
    assert len(conns) == counters.connections == len(emu.connections)
    assert [c.attributes["gemini_live.connection.generation"] for c in conns] == \
        list(range(1, len(conns) + 1))
    for before, conn in zip([None, *conns], conns, strict=False):
        assert conn.name == f"realtime_connection {MODEL}"
        assert conn.parent is not None and conn.parent.span_id == session.context.span_id
        assert conn.context.trace_id == session.context.trace_id
        assert conn.attributes["gen_ai.realtime_session.id"] == app.session.session_id
        if before is None:
            assert not conn.links and conn.attributes["gemini_live.connection.resumed"] is False
        else:  # a resumed connection: linked to the one before, with the handle's fingerprint
            assert [link.context.span_id for link in conn.links] == [before.context.span_id]
            assert conn.attributes["gemini_live.connection.resumed"] is True
            fp = conn.attributes["gemini_live.connection.handle_fp"]
            assert re.fullmatch(r"h-[0-9a-f]{12}", str(fp))
            assert "gemini_live.resumed" in [e.name for e in conn.events]
    events = {(e.name, e.attributes.get("gemini_live.trigger")) for c in conns for e in c.events}
    assert {("gemini_live.transition", "go_away"), ("gemini_live.transition", "safe_point"),
            ("gemini_live.transition", "connection_lost")} <= events

    dropped = [c for c in conns if c.status.status_code is StatusCode.ERROR]
    assert len(dropped) == 1
    assert dropped[0].attributes["gemini_live.close.code"] == 1006
    assert dropped[0].attributes["error.type"] == "1006"
    assert dropped[0].attributes["gemini_live.close.class"] == "resume"
    assert [c.attributes["gemini_live.connection.opened_by"] for c in conns][:3] == \
        ["connect", "safe_point", "connection_lost"]

    reported = usage_records(app)
    prompt = sum(u["prompt_tokens"] for u in reported)
    output = sum(u["response_tokens"] for u in reported)
    assert prompt > 0 and output > 0
    assert sum(c.attributes.get("gen_ai.usage.input_tokens", 0) for c in conns) == prompt
    assert session.attributes["gen_ai.usage.input_tokens"] == prompt
    assert session.attributes["gen_ai.usage.output_tokens"] == output
    assert session.attributes["gemini_live.session.rotations"] == counters.rotations

    assert otel.value("gemini_live.rotation.outage") == counters.rotations
    assert otel.value("gemini_live.resume.outage", **{"gemini_live.cause": "connection_lost"}) \
        == 1
    assert all(p.sum > 0 for p in otel.points("gemini_live.rotation.outage"))
    assert otel.value("gemini_live.resumes", **{"gemini_live.cause": "connection_lost"}) == 1
    assert otel.value("gemini_live.resumes") == counters.resumes
    assert otel.value("gemini_live.connection.closes", **{
        "gemini_live.close.code": "1006", "gemini_live.close.class": "resume"}) == 1
    assert otel.value("gemini_live.sessions.ended", **{"gemini_live.outcome": "closed"}) == 1
    assert otel.value("gemini_live.sessions") == 0  # ended: it left the count
    assert otel.value("gemini_live.tokens", **{"gen_ai.token.type": "input"}) == prompt
    assert otel.value("gemini_live.tokens", **{"gen_ai.token.type": "output"}) == output
    assert otel.value("gemini_live.tokens", **{"gemini_live.modality": "audio"}) == sum(
        (u["prompt_audio_tokens"] or 0) + (u["response_audio_tokens"] or 0) for u in reported)
    for point in otel.points("gemini_live.rotation.outage"):
        assert point.attributes["gen_ai.provider.name"] == "gcp.gemini"
        assert point.attributes["gemini_live.cause"] == "go_away"
        assert point.attributes["gemini_live.trigger"] in ("safe_point", "rotation_deadline")


async def test_context_lost_dropped_input_and_a_failed_end(slow_emu: LiveEmulator,
                                                          otel: Otel) -> None:
    """A refused resume: the fresh session's context loss and the input it dropped are
    counted; a fatal close then ends the session: its span is an error with the close code."""
    app = await start(slow_emu, telemetry=otel.telemetry)
    await app.ask("remember me")
    for _ in range(3):  # input no handle covers yet: the expired session drops it
        await app.session.send_realtime_input(audio=AUDIO)
    slow_emu.refuse_resumes = True
    slow_emu.connections[-1].drop()
    await app.wait_until(lambda: app.noticed(ContextLost))
    dropped = [n for n in app.notices if isinstance(n, InputDropped)]
    assert dropped
    assert otel.value("gemini_live.context.lost") == 1
    assert otel.value("gemini_live.inputs.dropped", **{
        "gemini_live.reason": "context_lost", "gemini_live.input.kind": "audio"}) == len(dropped)
    assert otel.value("gemini_live.connection.closes",
                      **{"gemini_live.close.class": "rejected"}) == 1
    await app.wait_until(lambda: app.session.state == "streaming")
    await slow_emu.connections[-1].close(1007, "Request contains an invalid argument.")
    await app.wait_until(lambda: app.noticed(Ended))
    with pytest.raises(statemachine.SessionTerminated):
        await app.stop()

    [session] = [s for s in otel.finished() if s.name.startswith("realtime_session ")]
    assert session.status.status_code is StatusCode.ERROR
    assert session.attributes["gemini_live.close.code"] == 1007
    assert session.attributes["gemini_live.session.fresh_restarts"] == 1
    assert "gemini_live.context_lost" in [e.name for e in session.events] + [
        e.name for s in by_generation(otel.finished()) for e in s.events]
    assert otel.value("gemini_live.sessions.ended", **{
        "gemini_live.outcome": "failed", "error.type": "closed"}) == 1
    assert otel.value("gemini_live.resume.outage", **{"gemini_live.cause": "connection_lost"}) \
        == 1


def test_drop_reasons_have_short_names() -> None:
    """Every reason the core gives for a dropped input maps to a short metric attribute."""
    sources = "".join(p.read_text() for p in (ROOT / "statemachine/core").glob("*.py"))
    for begins, short in DROP_REASONS:
        assert begins in sources, f"no drop reason starts with {begins!r} any more"
        assert drop_reason(begins + " (details)") == short
    assert drop_reason("something new") == "other"


async def test_no_key_token_or_handle_is_exported(otel: Otel) -> None:
    """Everything exported (spans, their events, links and attributes, metric points and their
    labels, the Prometheus page) is searched for the API key, every ephemeral token and every
    handle the server issued: none is there; the handles' fingerprints are."""
    from .test_tokens import Minter

    registry = CollectorRegistry()
    prometheus = PrometheusMetricReader(registry=registry)
    memory = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[memory, prometheus])
    settings = EmulatorSettings(time_scale=0.01, connection_lifetime=60.0, go_away_lead=20.0,
                                chunk_interval=1.0)
    async with LiveEmulator(settings) as emu:
        minter = Minter(emu)
        emu.plan(ConnectionPlan(), ConnectionPlan(close_after=3.0, close_code=1011,
                                                  close_reason="Internal error occurred."))
        app = await start(emu, token_provider=minter, telemetry=Telemetry(
            tracer_provider=otel.tracer_provider, meter_provider=meter_provider))
        counters = app.session.core.counters
        for i in range(80):
            if counters.rotations >= 1 and counters.resumes >= 2:
                break
            await app.ask(f"fact {i}")
        assert counters.rotations >= 1 and counters.resumes >= 2
        await app.stop()
        handles = list(emu.issued_handles)
        key = emu.api_key
    exported = "\n".join(s.to_json() for s in otel.finished())
    exported += memory.get_metrics_data().to_json()
    exported += "".join(
        f"{m.name} {s.labels} {s.value}\n" for m in registry.collect() for s in m.samples)
    secrets = [key, *minter.given, *(t.split("/")[-1] for t in minter.given), *handles]
    assert len(minter.given) >= 2 and len(handles) >= 2
    leaked = [s for s in secrets if s in exported]
    assert not leaked, f"exported: {leaked}"
    used = {r["handle_fp"] for r in app.records if r["kind"] == "transition"
            and r["dest"] == "resuming" and r["handle_fp"]}
    assert used and all(fp in exported for fp in used)
    assert any(fingerprint(h) in exported for h in handles)
    meter_provider.shutdown()


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _sample(page: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` on a Prometheus page whose labels include `labels`."""
    total = 0.0
    for line in page.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(4))
    return total


async def test_prometheus_page_scraped_while_sessions_rotate() -> None:
    """The Prometheus exporter's `/metrics` page, served over HTTP on a free port and scraped
    while three sessions rotate against the emulator, then after they end; every metric the run
    reported is there under the name the README's table gives."""
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    meter_provider = MeterProvider(metric_readers=[reader])
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    port = server.server_port
    telemetry = Telemetry(meter_provider=meter_provider, traces=False)
    try:
        async with LiveEmulator(FAST_ROTATION) as emu:
            apps = [await start(emu, telemetry=telemetry) for _ in range(3)]

            async def talk(app: App) -> None:
                for i in range(80):
                    if app.session.core.counters.rotations >= 2:
                        return
                    await app.ask(f"fact {i}")

            await asyncio.gather(*(talk(app) for app in apps))
            before = sum(app.session.core.counters.resumes for app in apps)
            page = await asyncio.to_thread(_scrape, port)
            after = sum(app.session.core.counters.resumes for app in apps)
            # open, in whichever state each is in now (streaming, draining, resuming)
            assert _sample(page, "gemini_live_sessions", gen_ai_provider_name="gcp.gemini") == 3
            assert _sample(page, "gemini_live_sessions", gemini_live_state="terminated") == 0
            assert before >= 3
            assert before <= _sample(page, "gemini_live_rotation_outage_milliseconds_count") \
                <= after
            assert before <= _sample(page, "gemini_live_resumes_total",
                                     gemini_live_cause="go_away") <= after
            for app in apps:
                await app.stop()
        page = await asyncio.to_thread(_scrape, port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        meter_provider.shutdown()
    assert _sample(page, "gemini_live_sessions") == 0
    assert _sample(page, "gemini_live_sessions_ended_total", gemini_live_outcome="closed") == 3
    names = {line.split("{")[0].split(" ")[0] for line in page.splitlines()
             if line and not line.startswith("#")}
    for metric in ("gemini_live.rotation.outage", "gemini_live.resumes", "gemini_live.sessions",
                   "gemini_live.sessions.ended", "gemini_live.journal.depth",
                   "gemini_live.tokens"):
        name = definitions.BY_NAME[metric].prometheus
        assert name in names or f"{name}_count" in names, f"{name} not on the page"


async def test_off_by_default_and_on_through_instrument(slow_emu: LiveEmulator,
                                                        otel: Otel) -> None:
    """Without telemetry= a session reports nothing; `instrument(telemetry=...)` and
    `wrap_client(..., telemetry=...)` report the sessions frameworks open."""
    app = await start(slow_emu)
    await app.ask("quiet")
    await app.stop()
    assert not otel.finished()
    client = slow_emu.client(**statemachine.websocket_args())
    from .sdk import text_config

    statemachine.instrument(policy=fast_policy(), telemetry=otel.telemetry)
    try:
        async with client.aio.live.connect(model=MODEL, config=text_config()) as session:
            await session.send_client_content(turns="hello", turn_complete=True)
            async for _ in session.receive():
                pass
    finally:
        statemachine.uninstrument()
    wrapped = statemachine.wrap_client(client, policy=fast_policy(), telemetry=otel.telemetry)
    async with wrapped.aio.live.connect(model=MODEL, config=text_config()):
        pass
    names = [s.name for s in otel.finished()]
    assert names.count(f"realtime_session {MODEL}") == 2
    assert names.count(f"realtime_connection {MODEL}") == 2


async def test_telemetry_argument_is_checked(slow_emu: LiveEmulator) -> None:
    with pytest.raises(SettingsError, match="telemetry="):
        slow_emu.connect(telemetry="yes")  # type: ignore[arg-type]


_SCRIPT = """
import asyncio, importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"blocked: {name}")
        return None

if sys.argv[1] == "blocked":
    sys.meta_path.insert(0, Block())

import statemachine
from statemachine.emulator import EmulatorSettings, LiveEmulator

async def main():
    out = {}
    async with LiveEmulator(EmulatorSettings(time_scale=0.01)) as emu:
        async with emu.connect(config={"response_modalities": ["TEXT"]}) as session:
            await session.send_client_content(turns="hi", turn_complete=True)
            async for m in session.receive():
                if m.server_content and m.server_content.turn_complete:
                    break
        out["state"] = session.state
        out["modules"] = sorted(m for m in sys.modules if m.startswith("opentelemetry")
                                or m == "statemachine.telemetry.observer")
        try:
            emu.connect(telemetry=True)
            out["connect"] = "ok"
        except statemachine.SettingsError as exc:
            out["connect"] = str(exc)
        try:
            statemachine.instrument(telemetry=True)
            statemachine.uninstrument()
            out["instrument"] = "ok"
        except statemachine.SettingsError as exc:
            out["instrument"] = str(exc)
    print(json.dumps(out))

asyncio.run(main())
"""


def _run(mode: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_SCRIPT), mode],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_without_opentelemetry_nothing_changes_and_telemetry_says_what_to_install() -> None:
    """With OpenTelemetry not importable a session runs as before, and asking for telemetry
    is a SettingsError naming the extra; with it installed but not asked for, a session
    imports none of it."""
    blocked = _run("blocked")
    assert blocked["state"] == "terminated" and blocked["modules"] == []
    for asked in (blocked["connect"], blocked["instrument"]):
        assert "gemini-live-statemachine[otel]" in asked and "OpenTelemetry" in asked
    installed = _run("installed")
    assert installed["state"] == "terminated" and installed["modules"] == []
    assert installed["connect"] == installed["instrument"] == "ok"


_GLOBAL = """
import asyncio, json
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from statemachine.emulator import EmulatorSettings, LiveEmulator

spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

async def main():
    async with LiveEmulator(EmulatorSettings(time_scale=0.01)) as emu:
        with trace.get_tracer("app").start_as_current_span("call") as call:
            async with emu.connect(config={"response_modalities": ["TEXT"]},
                                   telemetry=True):
                pass
    names = {s.name: s for s in spans.get_finished_spans()}
    session = next(s for n, s in names.items() if n.startswith("realtime_session"))
    ended = [m.name for rm in reader.get_metrics_data().resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics]
    print(json.dumps({"parent": session.parent.span_id == call.get_span_context().span_id,
                      "spans": sorted(n.split()[0] for n in names), "metrics": ended}))

asyncio.run(main())
"""


def test_global_providers_and_the_callers_span() -> None:
    """`telemetry=True` reports to the global providers; the session span is a child of the
    span current where the session was opened."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_GLOBAL)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["parent"] is True
    assert out["spans"] == ["call", "realtime_connection", "realtime_session"]
    assert "gemini_live.sessions.ended" in out["metrics"]


def test_readme_metrics_table_is_generated_from_the_code() -> None:
    """The README's metrics table is the one the code generates, in its own section at the end;
    `telemetry --check` says so too."""
    text = (ROOT / "README.md").read_text()
    assert definitions.readme_current(ROOT), \
        "README's metrics table is stale: run python -m statemachine telemetry --readme"
    block = definitions.readme_block()
    assert text.rstrip().endswith(block)
    assert text.count(definitions.README_START) == 1
    for metric in definitions.METRICS:
        assert f"`{metric.name}` (`{metric.prometheus}`)" in block
    done = subprocess.run([sys.executable, "-m", "statemachine", "telemetry", "--check"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    stale = definitions.render_readme(text.replace("`gemini_live.resumes`", "`x`", 1))
    assert stale == text


def test_demo_says_where_its_traces_went(tmp_path: Path) -> None:
    """`demo --telemetry FILE`: the session's spans and metrics as JSON Lines, the trace named
    at the end, and no key or handle in them."""
    out = tmp_path / "otel.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "statemachine", "demo", "--log", str(tmp_path / "demo.jsonl"),
         "--telemetry", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "GEMINI_API_KEY"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    spans = [line for line in lines if "name" in line]
    [session] = [s for s in spans if s["name"].startswith("realtime_session ")]
    trace_id = session["context"]["trace_id"][2:]
    said = done.stdout.strip().splitlines()[-1]
    assert said.startswith(f"Telemetry (written to {out}): trace {trace_id}: {len(spans)} spans")
    assert "gemini_live.rotation.outage" in said and "metrics" in lines[-1]
    text = out.read_text()
    assert EmulatorSettings().api_key not in text and "emu-" not in text


class _Failing(TracerProvider):
    """A tracer provider whose tracers fail to start a span (a broken exporter setup)."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        tracer = super().get_tracer(*args, **kwargs)

        def fail(*_: Any, **__: Any) -> Any:
            raise RuntimeError("exporter setup is broken")

        tracer.start_span = fail  # type: ignore[method-assign]
        return tracer


async def test_a_failing_telemetry_setup_never_takes_the_session_down(
        slow_emu: LiveEmulator, otel: Otel) -> None:
    """The observer stops reporting for the session, which goes on as if telemetry were off."""
    app = await start(slow_emu, telemetry=Telemetry(tracer_provider=_Failing(),
                                                    meter_provider=otel.meter_provider))
    assert "Reply 1" in await app.ask("hello")
    await app.stop()
    assert app.error is None and app.session.state == "terminated"


async def test_store_degraded_time_and_token_renewals(otel: Otel) -> None:
    """A handle store that fails for a while: one degradation, its time (from the degraded to
    the recovered notice); a token provider: each move to a fresh token is a renewal."""
    from statemachine import StoreDegraded, StoreRecovered, TokenExpiring

    from .test_persistence import FlakyStore
    from .test_tokens import LONG_CONNECTIONS, Minter

    store = FlakyStore()
    async with LiveEmulator(LONG_CONNECTIONS) as emu:
        minter = Minter(emu)
        app = await start(emu, fast_policy(), store=store, session_key="k", lease_ttl=0.3,
                          token_provider=minter, telemetry=otel.telemetry)
        await app.ask("one")
        assert await app.session.flush_handle()
        store.down = True
        asyncio.get_running_loop().call_later(0.25, setattr, store, "down", False)
        await app.wait_until(lambda: app.noticed(StoreRecovered))
        await app.wait_until(lambda: any(isinstance(n, TokenExpiring) and n.renewing
                                         for n in app.notices), within=30)
        await app.wait_until(lambda: app.session.state == "streaming")
        await app.stop()
    walls = {r["name"]: r["wall"] for r in app.records if r["kind"] == "notice"}
    assert app.noticed(StoreDegraded)
    assert otel.value("gemini_live.store.degradations") == 1
    assert otel.value("gemini_live.store.degraded.time") == pytest.approx(
        (walls["store_recovered"] - walls["store_degraded"]) * 1000)
    renewing = [n for n in app.notices if isinstance(n, TokenExpiring) and n.renewing]
    assert otel.value("gemini_live.token.renewals", **{"gemini_live.renewing": True}) == \
        len(renewing) >= 1
    assert otel.value("gemini_live.rotation.outage", **{"gemini_live.cause": "token_expiring"}) \
        >= 1
    assert otel.value("gemini_live.resumes", **{"gemini_live.cause": "token_expiring"}) >= 1


async def test_vertex_sessions_name_their_provider(slow_emu: LiveEmulator, otel: Otel) -> None:
    """A Vertex AI client's session reports `gen_ai.provider.name` gcp.vertex_ai."""
    app = await start(slow_emu, vertex=True, telemetry=otel.telemetry)
    await app.ask("hello")
    await app.stop()
    providers = {s.attributes["gen_ai.provider.name"] for s in otel.finished()}
    assert providers == {"gcp.vertex_ai"}
    assert otel.value("gemini_live.sessions.ended", **{"gen_ai.provider.name": "gcp.vertex_ai"}) \
        == 1
