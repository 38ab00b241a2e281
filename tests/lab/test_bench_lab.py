"""The benchmarks that reach into natdeck's code, run small on the lab's miniupnpd.

:mod:`tests.bench.turnaround_steps` times a turnaround by wrapping the functions that end each
step; a rename or a step that stops happening would leave a table of NaNs in ``make bench``
with nothing failing. Run here with a few ports, every step must be measured, for each client.
"""

from __future__ import annotations

import math

import pytest

from tests.bench import turnaround_steps

from .netlab import Lab

pytestmark = pytest.mark.lab


def test_every_step_of_a_turnaround_is_measured_for_every_client(lab: Lab) -> None:
    results = turnaround_steps.measure(lab, count=5, rounds=1)
    assert set(results) == {name for name, _, _ in turnaround_steps.CLIENTS}
    for name, (run,) in results.items():
        steps = {step: seconds for step, seconds in run.items() if step != "total"}
        assert list(steps) == [step for _, step in turnaround_steps.STEPS[1:]], name
        assert all(math.isfinite(seconds) and seconds > 0 for seconds in steps.values()), run
        # The steps are the turnaround, cut where each ends: they add up to it (medians of
        # each, so not exactly) and none is longer.
        assert max(steps.values()) <= run["total"] < 1.0
    assert lab.dnat_rules() == []  # every mapping deleted
