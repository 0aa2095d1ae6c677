"""`python -m statemachine report LOG -o session.html`: one session on one self-contained page.

The page answers, in order: can the log be trusted (the checker's verdict), which way did the
session go (its path on the lifecycle diagram), when (the timeline), what did each outage cost
(rotations and resumes, with close codes and what they mean), what was the application told
(notices), and what happened to its input (the journal figures). No script, no font, no request:
the pictures are inline SVG drawn here, and a Content-Security-Policy forbids anything else.
"""

from __future__ import annotations

from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

import attrs

from ..core import closecodes
from ..core.table import ROTATIONS, State
from . import check as auditcheck
from . import pathpicture, timeline
from .reader import SessionLog, read_session

_ROTATION_NAMES = frozenset(t.value for t in ROTATIONS)
_CONNECTED = frozenset({State.STREAMING.value, State.COMPRESSED.value, State.DRAINING.value})


@attrs.define
class Outage:
    """From leaving a live connection to the next live one (or the end)."""

    start: float
    cause: str
    closes: list[dict[str, Any]] = attrs.field(factory=list)
    retries: int = 0
    route: list[str] = attrs.field(factory=list)
    end: float | None = None
    replayed: int | None = None

    @property
    def outage_ms(self) -> float | None:
        return None if self.end is None else (self.end - self.start) * 1000


def outages(log: SessionLog) -> list[Outage]:
    """Every rotation, drop and refusal, with how the session came back."""
    found: list[Outage] = []
    current: Outage | None = None
    last_go_away: float | None = None
    pending_close: dict[str, Any] | None = None
    for record in log.records:
        kind, name = record["kind"], record["name"]
        cause = record.get("cause") if isinstance(record.get("cause"), dict) else {}
        if kind == "event" and name == "go_away" and not record.get("stale"):
            last_go_away = float((cause or {}).get("time_left", 0))
        elif kind == "event" and name == "connection_lost" and not record.get("stale"):
            pending_close = dict(cause or {})
            if current is not None:
                current.closes.append(pending_close)
                pending_close = None
        elif kind == "transition":
            source, dest = record["source"], record["dest"]
            if current is None and source in _CONNECTED and dest not in _CONNECTED \
                    and dest != State.TERMINATED.value:
                if name in _ROTATION_NAMES:
                    how = "at the safe point" if name == "safe_point" else "at the deadline"
                    left = f", goAway {last_go_away:g} s ahead" if last_go_away else ""
                    label = f"rotation {how}{left}"
                else:
                    label = name.replace("_", " ")
                current = Outage(start=log.at(record), cause=label)
                if pending_close is not None and name == "connection_lost":
                    current.closes.append(pending_close)
                pending_close = None
                found.append(current)
            elif current is not None:
                if source == dest:
                    current.retries += 1
                else:
                    current.route.append(f"{name}>{dest}")
                if dest in _CONNECTED or dest == State.TERMINATED.value:
                    current.end = log.at(record) if dest in _CONNECTED else None
                    if dest == State.TERMINATED.value:
                        current.route.append("(ended)")
                    current = None
        elif kind == "notice" and name == "resumed" and found and found[-1].replayed is None:
            found[-1].replayed = int((cause or {}).get("replayed", 0))
    return found


def _meaning(close: dict[str, Any]) -> tuple[str, str, str]:
    """(code as shown, disposition, why) for one close, from the close-code table."""
    if close.get("http_status"):
        status = int(close["http_status"])
        disposition, why = closecodes.classify_http(status)
        return f"HTTP {status}", disposition.value, why
    code = close.get("code")
    phase = closecodes.Phase.SETUP if close.get("during_setup") else closecodes.Phase.LIVE
    disposition, why = closecodes.classify_close(code, str(close.get("reason", "")), phase)
    shown = str(code) if code is not None else "none"
    return shown + (" (setup)" if close.get("during_setup") else ""), disposition.value, why


#: How an outage went on, by trigger and destination (or trigger alone).
_WAY_BACK = {"setup_complete": "live again", "setup_refused>expired": "handle refused",
             "setup_refused>terminated": "setup refused",
             "restart_or_give_up>connecting": "fresh session",
             "restart_or_give_up>terminated": "gave up", "retry>expired": "handle expired",
             "session_cap": "session cap"}


def _way_back(step: str) -> str:
    trigger = step.split(">")[0]
    return _WAY_BACK.get(step) or _WAY_BACK.get(trigger) or trigger.replace("_", " ")


def _fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _table(head: list[str], rows: list[list[str]], *, numeric: set[int] | None = None) -> str:
    if not rows:
        return '<p class="none">none</p>'
    numeric = numeric or set()
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:#1f2328;margin:24px auto;max-width:1120px;padding:0 16px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}.sub{color:#57606a;margin:0 0 12px}
.verdict{padding:10px 14px;border-radius:6px;font-weight:600}
.ok{background:#dafbe1;border:1px solid #1a7f37}.bad{background:#ffebe9;border:1px solid #cf222e}
table{border-collapse:collapse;margin:4px 0}th,td{border:1px solid #d0d7de;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;
font-variant-numeric:tabular-nums}.none{color:#57606a}figure{margin:0}
figure svg{display:block;max-width:100%;height:auto}
figcaption{color:#57606a;font-size:12px}code{font-size:13px}
.figures{display:flex;gap:12px;flex-wrap:wrap}.figures div{border:1px solid #d0d7de;
border-radius:6px;padding:6px 12px;min-width:110px}.figures b{display:block;font-size:18px}
"""


def render(log_path: Path, session: str | None = None, *, whole_table: bool = False) -> str:
    """The HTML page for one session of `log_path`."""
    log = read_session(log_path, session)
    checked = auditcheck.check([str(log_path)])
    summary = checked.sessions.get(log.session)
    mine = [v for v in checked.violations if v.session in (None, log.session)]
    path = log.path()
    parts: list[str] = []
    final = path.final
    parts.append(f"<h1>Session <code>{escape(log.session)}</code></h1>")
    parts.append(f'<p class="sub">{escape(str(log_path))} · {len(log.records)} records · '
                 f"{log.duration:.3f} s · ends in <b>{escape(final)}</b></p>")

    parts.append("<h2>Integrity</h2>")
    if checked.exit_code == 0:
        parts.append('<p class="verdict ok">Clean: hash chain intact, sequence contiguous, every '
                     "transition a row of the table, a sane ending "
                     f"({len(checked.sessions)} session(s) in the file checked).</p>")
    else:
        what = "unreadable" if checked.exit_code == 2 else f"{len(checked.violations)} violation(s)"
        parts.append(f'<p class="verdict bad">Not clean: {escape(what)}. The pictures below '
                     "show what could be read.</p>")
        items = [escape(str(v)) for v in mine[:20]] + [escape(u) for u in checked.unreadable]
        more = len(mine) - 20
        parts.append("<ul>" + "".join(f"<li><code>{i}</code></li>" for i in items) + "</ul>"
                     + (f"<p>and {more} more (run <code>python -m statemachine audit</code>)</p>"
                        if more > 0 else ""))

    picture = pathpicture.draw(path, whole=whole_table)
    parts.append("<h2>Lifecycle path</h2>")
    parts.append(f"<figure>{picture.svg}<figcaption>"
                 + ("The whole transition table, the session's path in blue"
                    if whole_table else "Only the states and edges this session took (the whole "
                    "table: <code>--whole-table</code>)")
                 + "; drawn by statemachine itself as SVG (no Graphviz needed).</figcaption>"
                 "</figure>")

    drawn = timeline.layout(timeline.from_session(log))
    parts.append("<h2>Timeline</h2>")
    parts.append(f"<figure>{drawn.svg}<figcaption>Each visited state has a lane; hover a band "
                 "for its exact duration.</figcaption></figure>")

    parts.append("<h2>Rotations and resumes</h2>")
    rows = []
    for i, o in enumerate(outages(log), start=1):
        closes = "<br>".join(
            f"<b>{escape(code)}</b> {escape(disp)}: {escape(why)}"
            for code, disp, why in map(_meaning, o.closes)) or "— (closed by the client)"
        route = " → ".join(_way_back(step) for step in o.route)
        route += f" (+{o.retries} retries)" if o.retries else ""
        rows.append([str(i), f"{o.start:.3f}", escape(o.cause), closes, escape(route),
                     _fmt_ms(o.outage_ms), "—" if o.replayed is None else str(o.replayed)])
    parts.append(_table(["#", "at (s)", "why", "close code: what it means", "way back",
                         "outage (ms)", "replayed"], rows, numeric={0, 1, 5, 6}))
    if summary is not None:
        d = summary.as_dict()
        r, k = d["rotation_outage_ms"], d["drop_outage_ms"]
        parts.append(f"<p>Rotation outage p50 {r['p50']} ms, p95 {r['p95']} ms, max {r['max']} ms "
                     f"(n={r['n']}); drop outage p50 {k['p50']} ms, max {k['max']} ms "
                     f"(n={k['n']}).</p>")

    parts.append("<h2>Close codes</h2>")
    codes: Counter[tuple[str, str, str]] = Counter()
    for record in log.records:
        if record["kind"] == "event" and record["name"] == "connection_lost" \
                and not record.get("stale") and isinstance(record.get("cause"), dict):
            codes[_meaning(record["cause"])] += 1
    parts.append(_table(["code", "times", "what the library does", "what it means"],
                        [[escape(c), str(n), escape(d), escape(w)]
                         for (c, d, w), n in sorted(codes.items())], numeric={1}))

    parts.append("<h2>Notices to the application</h2>")
    notices = []
    for record in log.records:
        if record["kind"] == "notice":
            cause = record.get("cause") if isinstance(record.get("cause"), dict) else {}
            details = ", ".join(f"{k}={v}" for k, v in (cause or {}).items() if v not in (None, 0))
            notices.append([f"{log.at(record):.3f}", escape(record["name"]), escape(details)])
    parts.append(_table(["at (s)", "notice", "details"], notices, numeric={0}))

    parts.append("<h2>Input journal</h2>")
    parts.append(_journal(log, summary))
    if summary is not None:
        times = summary.as_dict()["time_in_state_s"]
        parts.append("<h2>Time in each state</h2>")
        parts.append(_table(["state", "seconds"], [[escape(s), f"{t:.3f}"]
                                                  for s, t in times.items()], numeric={1}))
    parts.append('<p class="sub">Made by <code>python -m statemachine report</code>; check the '
                 "log itself with <code>python -m statemachine audit LOG</code>.</p>")
    title = f"session {log.session}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def _journal(log: SessionLog, summary: auditcheck.SessionSummary | None) -> str:
    inputs: Counter[str] = Counter()
    deepest = 0
    for record in log.records:
        if record["kind"] == "event" and record["name"] == "client_input":
            cause = record.get("cause") if isinstance(record.get("cause"), dict) else {}
            inputs[str((cause or {}).get("kind", "input"))] += 1
        depth = record.get("journal")
        if isinstance(depth, int):
            deepest = max(deepest, depth)
    resumed = [r.get("cause") or {} for r in log.records
               if r["kind"] == "notice" and r["name"] == "resumed"]
    figures = [
        ("inputs sent", sum(inputs.values())),
        ("deepest journal", deepest),
        ("replayed", sum(int(c.get("replayed", 0)) for c in resumed)),
        ("sent as history", sum(int(c.get("as_history", 0)) for c in resumed)),
        ("repeated replies", sum(int(c.get("repeated", 0)) for c in resumed)),
        ("dropped", summary.dropped if summary is not None else 0),
    ]
    boxes = "".join(f"<div><b>{n}</b>{escape(label)}</div>" for label, n in figures)
    kinds = ", ".join(f"{n} {escape(k)}" for k, n in sorted(inputs.items()))
    return (f'<div class="figures">{boxes}</div>'
            + (f'<p class="sub">By kind: {kinds}. The journal holds input until a resumption '
               "handle covers it; what it held at a resume was replayed.</p>" if kinds else ""))


def write(log_path: Path, out: Path, session: str | None = None, *,
          whole_table: bool = False) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(log_path, session, whole_table=whole_table), encoding="utf-8")
