"""Each voice framework, driven headless against the emulator in its own virtual environment
(`.venv-fw/<name>`, made by `.ci/run`), once as it is and once after `statemachine.instrument()`.
Counted from what the emulator's model took in: with the one line nothing is lost, repeated or
cut; without it the framework's own losses show."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from statemachine.bench.peers import FRAMEWORKS, Load, run_framework, venv_python

LOAD = Load()  # 2 s connections, goAway 0.5 s before the end, 10 rotations
#: CI sets it: a missing environment is then a failure, not a skip
REQUIRED = os.environ.get("STATEMACHINE_FRAMEWORKS_REQUIRED") == "1"


@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_framework_lossless_with_one_line(name: str) -> None:
    if not venv_python(name).exists():
        if REQUIRED:
            pytest.fail(f"no virtual environment for {name} (see .ci/run)")
        pytest.skip(f"no virtual environment for {name} (see .ci/run)")
    # the two runs share nothing (each has its own emulator): run them side by side
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(run_framework, name, instrumented=flag, load=LOAD)
                for flag in (False, True)]
        without, with_ = (run.result() for run in runs)
    for result in (without, with_):
        assert result["rotations"] >= LOAD.rotations, result
        assert result["audio_sent"] > 100 and result["turns_sent"] > 10, result
    assert _clean(with_), with_
    assert not _clean(without), without  # the framework alone loses, repeats or cuts


def _clean(result: dict[str, Any]) -> bool:
    return (result["audio_lost"], result["turns_lost"], result["repeated"],
            result["replies_cut"]) == (0, 0, 0, 0)
