"""The benchmark's targets, in one place, and the verdict on a run.

Each target names one figure of the results (the `--json` key), how it is compared and why it
is the bar. `bench` prints every target as met or missed; `bench --check` exits 1 when one is
missed (or was not measured).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import attrs

_OPS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "<=": operator.le, ">=": operator.ge,
}


@attrs.frozen(kw_only=True)
class Target:
    figure: str  # dotted key into the results, e.g. "rotation.lost"
    op: str  # "==", "<=" or ">="
    bound: float
    unit: str
    meaning: str

    def met(self, value: object) -> bool:
        """Whether `value` meets the target; a missing figure does not."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return _OPS[self.op](value, self.bound)

    def __str__(self) -> str:
        bound = int(self.bound) if float(self.bound).is_integer() else self.bound
        return f"{self.figure} {self.op} {bound} {self.unit}".rstrip()


TARGETS: tuple[Target, ...] = (
    Target(figure="rotation.lost", op="==", bound=0, unit="inputs",
           meaning="inputs the model never took in, across rotations"),
    Target(figure="rotation.cut_replies", op="==", bound=0, unit="replies",
           meaning="replies cut by a rotation"),
    Target(figure="rotation.outage_p50_over_floor", op="<=", bound=1.5, unit="x floor",
           meaning="outage median over the same run's bare connect()+setup median"),
    Target(figure="rotation.outage_p99_over_floor_p99", op="<=", bound=1.5, unit="x floor",
           meaning="outage p99 over the same run's bare connect()+setup p99 (like for like: "
                   "a bare connect's own p99 is 2-7x its median on a shared machine)"),
    Target(figure="overhead.ratio", op=">=", bound=0.95, unit="x raw SDK",
           meaning="receive() messages/s against the raw SDK's"),
    Target(figure="core.events_per_s_audit", op=">=", bound=30_000, unit="events/s",
           meaning="engine throughput with the JSONL audit log on"),
    Target(figure="scale.lost", op="==", bound=0, unit="inputs",
           meaning="inputs lost with hundreds of rotating sessions"),
    Target(figure="capacity.ratio", op=">=", bound=0.9, unit="x raw SDK",
           meaning="voice sessions one core carries (p99 input delay < 20 ms) against the raw "
                   "SDK's"),
    Target(figure="capacity.telemetry_ratio", op=">=", bound=0.9, unit="x telemetry off",
           meaning="voice sessions one core carries with OpenTelemetry metrics and traces on "
                   "(telemetry=True, the real SDK) against off, in the same run"),
    Target(figure="capacity.outage_p99_over_floor_p99_loaded", op="<=", bound=1.5,
           unit="x floor",
           meaning="rotation outage p99 over the same run's bare connect()+setup p99, at the "
                   "largest N ours carries"),
    Target(figure="memory.kb_per_session", op="<=", bound=20, unit="KB",
           meaning="memory of an idle session above a raw SDK connection"),
    Target(figure="handoff.lost_unreported", op="==", bound=0, unit="inputs",
           meaning="inputs handed from worker to worker that the model never took in, "
                   "beyond those reported dropped"),
    Target(figure="handoff.failed", op="==", bound=0, unit="hand-offs",
           meaning="hand-offs that did not complete (the store is healthy)"),
    Target(figure="memory.busy.kb_per_session", op="<=", bound=64, unit="KB",
           meaning="memory of a busy session (300 rotating, 20 ms audio) above the raw SDK's "
                   "with the same traffic (tracemalloc)"),
    Target(figure="rotation.duplicated_per_rotation", op="<=", bound=1, unit="inputs",
           meaning="inputs the model took in twice across a rotation, on average"),
    Target(figure="scale.duplicated_per_rotation", op="<=", bound=1, unit="inputs",
           meaning="inputs taken in twice per rotation with hundreds of voice sessions"),
    Target(figure="capacity.duplicated_per_rotation_loaded", op="<=", bound=1, unit="inputs",
           meaning="inputs taken in twice per rotation at the largest N ours carries"),
    Target(figure="scale.chunks_per_s", op=">=", bound=45, unit="chunks/s",
           meaning="audio rate per session the largest fleet reached (1,000 sessions in the "
                   "full run; real rate 50): below it the machine could not carry the fleet, "
                   "and its figures are not a real-rate fleet's"),
    Target(figure="memory.busy.chunks_per_s.ours", op=">=", bound=45, unit="chunks/s",
           meaning="audio rate per second of the busy sessions' time while their memory was "
                   "traced (real rate 50): below it they held less than real sessions do"),
)


def figure(results: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted key of the results, or None if the run did not measure it."""
    value: Any = results
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


@attrs.frozen(kw_only=True)
class Verdict:
    target: Target
    value: Any
    met: bool

    def as_dict(self) -> dict[str, Any]:
        return {"figure": self.target.figure, "target": f"{self.target.op} {self.target.bound}",
                "unit": self.target.unit, "value": self.value, "met": self.met}


def verdicts(results: Mapping[str, Any],
             targets: tuple[Target, ...] = TARGETS) -> list[Verdict]:
    out = []
    for target in targets:
        value = figure(results, target.figure)
        out.append(Verdict(target=target, value=value, met=target.met(value)))
    return out


def render(found: list[Verdict]) -> list[str]:
    """One line per target (met or MISSED, the bar, the figure measured, what it means), then
    the overall verdict."""
    lines = ["Targets:"]
    bars = [str(v.target) for v in found]
    got = ["not measured" if v.value is None else str(v.value) for v in found]
    bar_w, got_w = max(map(len, bars)), max(map(len, got))
    for v, bar, value in zip(found, bars, got, strict=True):
        mark = "met   " if v.met else "MISSED"
        lines.append(f"  {mark}  {bar:<{bar_w}}  got {value:>{got_w}}  {v.target.meaning}")
    missed = [v.target.figure for v in found if not v.met]
    lines.append(f"Verdict: {len(found) - len(missed)} of {len(found)} targets met"
                 + (f"; missed: {', '.join(missed)}" if missed else ""))
    return lines
