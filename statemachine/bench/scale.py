"""Scale: hundreds to a thousand concurrent rotating voice sessions at real rates, ours beside
the raw SDK at the same N.

Each run is a fleet (`fleet.py`): N sessions sending 20 ms audio chunks in real time with a
text turn every `capacity.TURN_EVERY` s, rotating at every goAway, shared out over one client
process per core this machine lets us use, the emulator in a process of its own. The same
traffic runs on the raw SDK (reconnecting with the last handle on goAway: the peers' pattern)
and on ours, each against a fresh emulator. Per N:
- memory per session: the RSS growth of the client processes (summed) once the fleet has run
  `ramp + seconds`, over N; ours above the raw SDK's is the figure;
- outage p50/p99: each rotation's time without a connection (ours: in `resuming`, the
  client's view as in the audit summary; raw: from leaving the old connection to the new one);
- lost: inputs the model never took in, nobody was told of, and no session still held when
  the run closed it (ours reports what its replay policy drops); `lost_unread_at_close`,
  apart: inputs never taken in that a session of ours still held uncovered when it was closed
  (a saturated server may not have read them yet), told apart by identity (`ledger.py`);
  duplicated: inputs the model took in twice (the crossing window), also per
  rotation. Raw input sent while it has no connection is `skipped` (lost to the application).
A machine with fewer cores than the fleet needs saturates: the audio rate actually reached is
printed beside (`chunks/s`, 50 at real rate).
"""

from __future__ import annotations

from typing import Any

from ..audit.stats import percentile
from . import fleet

#: audio chunks per second of a session's time at real rate (20 ms chunks)
REAL_RATE = 50.0
#: below this share of the real rate a fleet is taken as saturated: the machine could not carry
#: it, and its figures are not those of sessions at real rate
CARRIED = 0.9


def saturated(*rates: float) -> bool:
    """Whether a fleet (ours or the baseline beside it) fell short of the real audio rate."""
    return any(rate < REAL_RATE * CARRIED for rate in rates)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _side(out: dict[str, Any]) -> dict[str, Any]:
    outages, delays = out["outages"], out["delays"]
    return {
        "rotations": len(outages),
        "outage_p50_ms": _ms(percentile(outages, 0.5)),
        "outage_p99_ms": _ms(percentile(outages, 0.99)),
        "input_delay_p99_ms": _ms(percentile(delays, 0.99)),
        "chunks_per_s": round(out["chunks_per_s"], 1),
        "inputs": out["inputs"],
        "lost": out["lost"],
        "lost_unread_at_close": out["lost_unread_at_close"],
        "lost_examples": out["lost_examples"],
        "dropped": out["dropped"],
        "skipped": out["skipped"],
        "duplicated": out["duplicated"],
        "duplicated_per_rotation": fleet.per_rotation(out["duplicated"], len(outages)),
        "failed_sessions": out["failed"],
        "failures": out["failures"],
        "kb_per_session": round(out["rss_growth_kb"] / out["sessions"], 1),
    }


async def run_one(n: int, seconds: float, lifetime_s: float,
                  ramp: float | None = None) -> dict[str, Any]:
    """N sessions of the raw SDK, then of ours, each fleet against a fresh emulator."""
    # connections opened over the ramp: 50 a second (a thousand at once time out on 2 cores)
    ramp = min(20.0, max(1.0, n / 50)) if ramp is None else ramp
    raw = _side(await fleet.run("raw", n, ramp=ramp, warm=seconds, lifetime=lifetime_s))
    out = await fleet.run("ours", n, ramp=ramp, warm=seconds, lifetime=lifetime_s)
    ours = _side(out)
    return {
        "sessions": n,
        "processes": out["processes"],
        **{k: v for k, v in ours.items() if k != "kb_per_session"},
        "unconfirmed_at_close": out["unconfirmed_at_close"],
        "unmatched_sessions": out["unmatched_sessions"],
        "sdk_kb_per_connection": raw["kb_per_session"],
        "ours_kb_per_session": ours["kb_per_session"],
        "kb_per_session": round(ours["kb_per_session"] - raw["kb_per_session"], 1),
        "raw": raw,
    }


async def run(sizes: list[int], seconds: float, lifetime_s: float,
              ramp: float | None = None) -> dict[str, Any]:
    """Each size in turn (`run_one`); the totals over every run, and how the figures grow."""
    runs = [await run_one(n, seconds, lifetime_s, ramp) for n in sizes]
    first, last = runs[0], runs[-1]
    rotations = sum(r["rotations"] for r in runs)
    duplicated = sum(r["duplicated"] for r in runs)
    return {
        "runs": runs,
        "sessions": last["sessions"],
        "kb_per_session": last["kb_per_session"],
        # the audio rate the largest fleet reached (50 = real rate), ours and the raw SDK's
        "chunks_per_s": last["chunks_per_s"],
        "raw_chunks_per_s": last["raw"]["chunks_per_s"],
        "saturated": saturated(last["chunks_per_s"], last["raw"]["chunks_per_s"]),
        "lost": sum(r["lost"] for r in runs),
        "lost_unread_at_close": sum(r["lost_unread_at_close"] for r in runs),
        "duplicated": duplicated,
        "rotations": rotations,
        "duplicated_per_rotation": fleet.per_rotation(duplicated, rotations),
        "growth": {
            "sessions": f"{first['sessions']} -> {last['sessions']}",
            "kb_per_session": f"{first['kb_per_session']} -> {last['kb_per_session']}",
            "outage_p50_ms": f"{first['outage_p50_ms']} -> {last['outage_p50_ms']}",
            "outage_p99_ms": f"{first['outage_p99_ms']} -> {last['outage_p99_ms']}",
            "lost": f"{first['lost']} -> {last['lost']}",
        },
    }
