"""Every metric the library reports, defined once: the observer creates its instruments from
`METRICS`, and the README's table is generated from it (`python -m statemachine telemetry
--readme`), so names, units and attributes cannot drift from what is exported.

Nothing here imports OpenTelemetry.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

#: Our own attributes and metrics live under this prefix; `gen_ai.*` follows the OpenTelemetry
#: GenAI semantic conventions (development status) where they define a name.
NAMESPACE = "gemini_live"

#: attributes every metric carries
COMMON = ("gen_ai.provider.name", "gen_ai.request.model")


@attrs.frozen(kw_only=True)
class Metric:
    name: str
    #: "counter", "histogram", "updown" (observable up-down counter), "gauge" (observable) or
    #: "observable_counter" (summed as reported, read when a reader collects)
    kind: str
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    #: histogram bucket boundaries (advisory), in the metric's unit
    buckets: tuple[float, ...] | None = None

    @property
    def prometheus(self) -> str:
        """The name the OpenTelemetry Prometheus exporter gives it."""
        return prometheus_name(self.name, self.unit, self.kind)


_OUTAGE_BUCKETS = (10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0,
                   12800.0, 30000.0, 60000.0)

METRICS: tuple[Metric, ...] = (
    Metric(name="gemini_live.rotation.outage", kind="histogram", unit="ms",
           description="Planned move to a new connection: from leaving the old connection to "
                       "the new one's setupComplete; cause: what announced it (go_away, "
                       "token_expiring), trigger: what made the move (safe_point, "
                       "rotation_deadline)",
           attributes=("gemini_live.cause", "gemini_live.trigger"), buckets=_OUTAGE_BUCKETS),
    Metric(name="gemini_live.resume.outage", kind="histogram", unit="ms",
           description="Unplanned outage: from losing the connection (cause and trigger: "
                       "connection_lost, setup_refused, session_cap...) to the next one's "
                       "setupComplete, retries and fresh restarts included",
           attributes=("gemini_live.cause", "gemini_live.trigger"), buckets=_OUTAGE_BUCKETS),
    Metric(name="gemini_live.resumes", kind="counter", unit="{resume}",
           description="Resumed connections (a Resumed notice), by what made the session move "
                       "(go_away, token_expiring, connection_lost...)",
           attributes=("gemini_live.cause",)),
    Metric(name="gemini_live.inputs.replayed", kind="counter", unit="{input}",
           description="Client inputs sent again on a resumed connection"),
    Metric(name="gemini_live.inputs.dropped", kind="counter", unit="{input}",
           description="Client inputs that will never reach the model (an InputDropped notice)",
           attributes=("gemini_live.reason", "gemini_live.input.kind")),
    Metric(name="gemini_live.inputs.repeated", kind="counter", unit="{input}",
           description="Turns the model will answer again (a RepeatedReply notice); possible: "
                       "it may have taken the turn in already",
           attributes=("gemini_live.possible",)),
    Metric(name="gemini_live.replies.cut", kind="counter", unit="{reply}",
           description="Replies cut by the end of their connection (a ReplyInterrupted notice)",
           attributes=("gemini_live.cause",)),
    Metric(name="gemini_live.sessions", kind="updown", unit="{session}",
           description="Open sessions, by lifecycle state (an ended session leaves the count)",
           attributes=("gemini_live.state",)),
    Metric(name="gemini_live.sessions.ended", kind="counter", unit="{session}",
           description="Sessions ended: closed by the application, or failed (error.type: the "
                       "failure or close code)",
           attributes=("gemini_live.outcome", "error.type")),
    Metric(name="gemini_live.context.lost", kind="counter", unit="{session}",
           description="Fresh sessions that replaced an expired one: the application must "
                       "re-seed the conversation (a ContextLost notice)"),
    Metric(name="gemini_live.store.degraded.time", kind="counter", unit="ms",
           description="Time sessions ran with the handle store failing (their handle in memory "
                       "only), counted when the store recovers or the session ends"),
    Metric(name="gemini_live.store.degradations", kind="counter", unit="{episode}",
           description="Times a session's handle store started failing (a StoreDegraded notice)"),
    Metric(name="gemini_live.token.renewals", kind="counter", unit="{token}",
           description="Ephemeral tokens about to expire (a TokenExpiring notice); renewing: the "
                       "session moves to a fresh token, otherwise it ends at the expiry",
           attributes=("gemini_live.renewing",)),
    Metric(name="gemini_live.connection.closes", kind="counter", unit="{close}",
           description="Connections lost (closed by the server or the network, or refused), by "
                       "close code and the library's classification of it",
           attributes=("gemini_live.close.code", "gemini_live.close.class",
                       "gemini_live.close.failure")),
    Metric(name="gemini_live.journal.depth", kind="updown", unit="{input}",
           description="Client inputs journaled and not yet covered by a resumption handle, "
                       "summed over open sessions"),
    Metric(name="gemini_live.journal.depth.max", kind="gauge", unit="{input}",
           description="The deepest journal of any open session"),
    Metric(name="gemini_live.tokens", kind="observable_counter", unit="{token}",
           description="Tokens the usageMetadata reports counted, by type (input, output) and "
                       "modality (audio, other)",
           attributes=("gen_ai.token.type", "gemini_live.modality")),
)

BY_NAME = {m.name: m for m in METRICS}

_UNIT_WORDS = {"ms": "milliseconds", "s": "seconds", "By": "bytes"}


def prometheus_name(name: str, unit: str, kind: str) -> str:
    """OpenTelemetry's Prometheus translation: dots to underscores, the unit spelled out as a
    suffix (annotations in braces are dropped), `_total` for counters."""
    base = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    word = _UNIT_WORDS.get(unit, "" if unit.startswith("{") else unit)
    if word and not base.endswith(word):
        base += "_" + word
    return base + ("_total" if kind in ("counter", "observable_counter") else "")


_KINDS = {"counter": "counter", "histogram": "histogram", "updown": "up-down counter",
          "gauge": "gauge", "observable_counter": "counter"}


def table() -> str:
    """The metrics as a Markdown table."""
    lines = ["| metric (Prometheus name) | type | unit | attributes | what it counts |",
             "|---|---|---|---|---|"]
    for m in METRICS:
        attributes = ", ".join(f"`{a}`" for a in m.attributes) or "-"
        lines.append(f"| `{m.name}` (`{m.prometheus}`) | {_KINDS[m.kind]} | `{m.unit}` | "
                     f"{attributes} | {m.description} |")
    return "\n".join(lines)


README_START = ("<!-- telemetry metrics: generated by "
                "`python -m statemachine telemetry --readme` -->")
README_END = "<!-- end of generated telemetry metrics -->"
SECTION = "## Telemetry metrics"


def readme_block() -> str:
    """The README's generated section, markers included."""
    common = ", ".join(f"`{a}`" for a in COMMON)
    return "\n".join([
        README_START,
        f"Reported with `connect(..., telemetry=True)` (see docs/telemetry.md). Every metric "
        f"also carries {common}.",
        "",
        table(),
        README_END,
    ])


def render_readme(text: str) -> str:
    """`text` with the generated block replaced, or appended at the end in its own section."""
    start, end = text.find(README_START), text.find(README_END)
    if start != -1 and end > start:
        return text[:start] + readme_block() + text[end + len(README_END):]
    return text.rstrip("\n") + f"\n\n{SECTION}\n\n{readme_block()}\n"


def write_readme(root: Path) -> bool:
    """Rewrite the README's block; True when it changed."""
    path = root / "README.md"
    text = path.read_text()
    new = render_readme(text)
    if new != text:
        path.write_text(new)
    return new != text


def readme_current(root: Path) -> bool:
    text = (root / "README.md").read_text()
    return render_readme(text) == text
