"""Rewrites of the training loop change no number: each reference case, run with today's code, gives the
metrics rows and final weights recorded before them (tests/fixtures/record_runs.py).

Two checks, because bit-for-bit equality holds only on the CPU that recorded the fixture:

- on any machine, the first ``FIRST_UPDATES`` updates' rows (losses, gradient norms and statistics,
  evaluations) equal the reference within float rounding. Another SIMD level's kernels (simulated here
  with ATEN_CPU_CAPABILITY=default) move these numbers by at most 3e-6; a changed loss, target, sampling
  order or initialisation moves them by far more. Later updates are not compared across CPUs: a
  difference in the last bit can flip a sampled action or an episode's end, and two correct runs
  then part ways;
- on the CPU the fixture was recorded on (same torch, SIMD level and processor), every row and the
  final weights bit for bit. Elsewhere this test is skipped, and the skip says which CPU it needs.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import ROUNDING_ZERO
from tests.fixtures.record_runs import CASES, FIXTURE, cpu_fingerprint, run_case

REFERENCE = torch.load(FIXTURE, weights_only=True)
HERE = cpu_fingerprint()
FIRST_UPDATES = 10
# float rounding of another CPU's kernels over the first updates: measured at most 3e-6 absolute
ROUNDING = {"rel": 1e-4, "abs": 1e-5}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """Each case run once with today's code, for both checks."""
    tmp = tmp_path_factory.mktemp("equivalence")
    return {case: run_case(overrides, tmp / case) for case, overrides in CASES.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_first_updates_equal_the_reference_within_rounding(runs: dict, case: str):
    got, expected = (json.loads(r["metrics"])[:FIRST_UPDATES] for r in (runs[case], REFERENCE["cases"][case]))
    assert len(got) == len(expected) == FIRST_UPDATES
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.keys() == b.keys(), f"{case} row {i}"
        assert a["env_step"] == b["env_step"], f"{case} row {i}"
        for key in a:
            if b[key] is None:
                assert a[key] is None, f"{case} row {i} {key}"
            else:
                tolerance = {**ROUNDING, "abs": ROUNDING_ZERO.get(key, ROUNDING["abs"])}
                assert a[key] == pytest.approx(b[key], **tolerance), f"{case} row {i} {key}"


@pytest.mark.skipif(
    REFERENCE["cpu"] != HERE,
    reason=f"bit for bit needs the CPU the fixture was recorded on ({REFERENCE['cpu']}); this one is {HERE}",
)
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_numbers_bit_for_bit_on_the_recording_cpu(runs: dict, case: str):
    got, expected = runs[case], REFERENCE["cases"][case]
    assert json.loads(got["metrics"]) == json.loads(expected["metrics"])
    assert list(got["weights"]) == list(expected["weights"])
    for name, tensor in expected["weights"].items():
        assert torch.equal(got["weights"][name], tensor), f"{case}: {name} differs"
