"""The demo's narration: a headline per step, who said what, one short line per transition.

A reader follows the session as a story; the audit log keeps every field. A transition line is
`   streaming → draining      goAway, 0.5 s left`: where the session went and, in a few words,
why, taken from the record's cause.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import attrs

from .core.actions import (
    ContextLost,
    Ended,
    InputDropped,
    Notice,
    RepeatedReply,
    ReplyInterrupted,
    Resumed,
    ToolCallEnded,
    ToolCallRepeated,
)
from .core.records import AuditRecord

WIDTH = 100  # longer lines (a model's reply) are cut with an ellipsis


def _cut(text: str, width: int = WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def why(record: AuditRecord, outage_ms: float | None = None,
        waited: tuple[str, float] | None = None) -> str:
    """A few words on why a transition happened, from its name and cause. `waited` is, for a
    retry, the failure the backoff followed and how long the backoff lasted (seconds)."""
    name = record["name"]
    raw = record.get("cause")
    cause: dict[str, Any] = raw if isinstance(raw, dict) else {}
    source = record.get("source")
    if name == "setup_complete":
        if source == "resuming":
            return "resumed" + (f" after {outage_ms:.0f} ms" if outage_ms is not None else "")
        return "connected" if source == "connecting" else "setup complete"
    if name == "go_away":
        return f"goAway, {float(cause.get('time_left', 0)):g} s left"
    if name == "setup_refused":
        what = "the handle" if source == "resuming" else "the setup"
        return f"close {cause.get('code')} at setup: the server refused {what}"
    if name == "restart_or_give_up":
        return "starting a fresh session" if record.get("dest") == "connecting" else "gave up"
    if name == "retry":
        if record.get("dest") == "expired":
            return "the resumption handle expired during the backoff"
        if waited is not None:
            failure, seconds = waited
            return _cut(f"trying again: {seconds * 1000:.0f} ms backoff after {failure}", 64)
        return "trying again after the backoff"
    if name == "connection_lost":
        code = cause.get("http_status") or cause.get("code")
        return _cut(f"close {code}: {cause.get('why') or cause.get('reason') or 'no reason'}",
                    64)
    if name == "compression_detected":
        return (f"context compressed by the server: {cause.get('previous', '?')} → "
                f"{cause.get('prompt_tokens', '?')} tokens")
    words: dict[str, str] = {
        "connect": "opening the first connection",
        "safe_point": "rotating at a safe point (no reply in flight)",
        "rotation_deadline": "rotating at the deadline (a reply was still in flight)",
        "session_cap": "the session reached its time cap",
        "close": "closed by the application",
    }
    return words.get(name, str(name).replace("_", " "))


def _failure_words(record: AuditRecord) -> str:
    raw = record.get("cause")
    cause: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if cause.get("http_status"):
        return f"HTTP {cause['http_status']}"
    code = cause.get("code")
    what = f"close {code}" if code is not None else "a failed connection"
    return what + (" at setup" if record["name"] == "setup_refused" else "")


def notice_line(notice: Notice) -> str:
    """What the application was told, in words."""
    name = type(notice).__name__
    if isinstance(notice, Resumed):
        held = f"{notice.replayed} input(s) replayed"
        extra = [f"{n} {what}" for n, what in ((notice.as_history, "sent as history"),
                                                (notice.repeated, "repeated"),
                                                (notice.dropped, "dropped")) if n]
        return f"{name}: {', '.join([held, *extra])}"
    if isinstance(notice, ReplyInterrupted):
        return f"{name}: discard the partial reply; the unanswered input is replayed"
    if isinstance(notice, ContextLost):
        return f"{name}: the server-side context is gone; re-seed the conversation"
    if isinstance(notice, InputDropped):
        return f"{name}: input #{notice.seq} ({notice.kind}) dropped: {notice.reason}"
    if isinstance(notice, RepeatedReply):
        return f"{name}: the model will answer input #{notice.seq} again"
    if isinstance(notice, ToolCallEnded):
        return f"{name}: tool call {notice.id} {notice.outcome}"
    if isinstance(notice, ToolCallRepeated):
        return f"{name}: {notice.id} repeats {notice.first} ({notice.name}): answer from cache"
    if isinstance(notice, Ended):
        return _cut(f"{name}: {notice.reason}")
    return name


@attrs.define
class Story:
    out: TextIO = attrs.field(factory=lambda: sys.stdout)
    step: int = 0
    _left_live_at: float | None = None
    _failure: tuple[str, float] | None = None  # the last failure shown, and when
    _silent: bool = False

    def silence(self) -> None:
        """Print nothing more (Ctrl-C: what the session does as it unwinds is not the story)."""
        self._silent = True

    def _print(self, text: str) -> None:
        if not self._silent:
            print(text, file=self.out, flush=True)

    def line(self, text: str) -> None:
        self._print(f"   {text}" if self.step else text)

    def headline(self, title: str) -> None:
        self.step += 1
        self._print(f"\n{self.step}. {title}")

    def user(self, text: str) -> None:
        self._print(f"   you    {_cut(text)}")

    def model(self, text: str) -> None:
        self._print(f"   model  {_cut(text)}")

    def tool(self, name: str, answer: dict[str, Any]) -> None:
        self._print(f"   model  calls {name}(); the application answers {answer}")

    def notice(self, notice: Notice) -> None:
        self._print(f"   told   {notice_line(notice)}")

    def record(self, record: AuditRecord) -> None:
        """Called for every audit record: prints the transitions."""
        if record.get("kind") != "transition":
            return
        source, dest = record["source"], record["dest"]
        outage = None
        if dest == "resuming" and source != "resuming":
            self._left_live_at = float(record["mono"])
        elif source == "resuming" and self._left_live_at is not None:
            outage = (float(record["mono"]) - self._left_live_at) * 1000
            self._left_live_at = None
        name, at = record["name"], float(record["mono"])
        waited = None
        if name == "retry" and self._failure is not None:
            waited = (self._failure[0], at - self._failure[1])
        move = f"{source} → {dest}"
        self._print(f"   {move:<26} {why(record, outage, waited)}")
        if name in ("connection_lost", "setup_refused"):
            self._failure = (_failure_words(record), at)
        elif name not in ("restart_or_give_up",):
            self._failure = None

    def ending(self, summary: dict[str, Any], log: Path) -> None:
        c = summary["counters"]
        self._print(
            f"\nSession {summary['session']} ended: {c.get('connections', 0)} connections, "
            f"{c.get('rotations', 0)} rotation(s), {c.get('resumes', 0)} resume(s),\n"
            f"  {c.get('fresh_restarts', 0)} fresh restart(s); {c.get('inputs', 0)} inputs, "
            f"{c.get('replayed', 0)} replayed, {c.get('dropped', 0)} dropped.")
        self._print(f"audit log (JSON Lines): {log}")
        self._print("\nNext:")
        self._print(f"  python -m statemachine audit {log}")
        self._print("      check it: hash chain, sequence, every transition legal")
        self._print(f"  python -m statemachine report {log} -o session.html")
        self._print("      the session on one page: path, timeline, outages, notices")
        self._print(f"  python -m statemachine timeline {log} -o timeline.svg")
