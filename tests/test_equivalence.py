"""The issue-11 refactor changed no number: each reference case, run with today's code, gives the final
weights and metrics rows recorded with the code before it (tests/fixtures/record_runs.py)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
import torch

from tests.fixtures.record_runs import CASES, FIXTURE, run_case

REFERENCE = torch.load(FIXTURE, weights_only=True)


@pytest.mark.skipif(
    REFERENCE["torch"] != torch.__version__ or REFERENCE["machine"] != platform.machine(),
    reason=f"the fixture was recorded with torch {REFERENCE['torch']} on {REFERENCE['machine']}",
)
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_numbers_as_before_the_refactor(tmp_path: Path, case: str):
    expected = REFERENCE["cases"][case]
    got = run_case(CASES[case], tmp_path / case)
    assert json.loads(got["metrics"]) == json.loads(expected["metrics"])
    assert list(got["weights"]) == list(expected["weights"])
    for name, tensor in expected["weights"].items():
        assert torch.equal(got["weights"][name], tensor), f"{case}: {name} differs"
