"""Reading runs back and ``acx report``: hand-computed curve statistics, grouping by configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from acx.errors import ConfigError
from acx.report import group_runs, learning_curve, short_override, write_report
from acx.runs import RunRecord, eval_return_auc, find_run_dirs, load_run, objective_value, steps_to_threshold
from tests.conftest import run_acx


def test_eval_return_auc_by_hand():
    # evaluations every 1000 steps up to the budget: the plain mean
    assert eval_return_auc(np.array([1000, 2000, 3000]), np.array([10.0, 20.0, 30.0]), 3000) == pytest.approx(20.0)
    # stopped (solved) at 2000 of a 4000 budget: the last evaluation holds for the remaining 2000 steps
    assert eval_return_auc(np.array([1000, 2000]), np.array([10.0, 30.0]), 4000) == pytest.approx(
        (10 * 1000 + 30 * 1000 + 30 * 2000) / 4000
    )
    # uneven spacing: each evaluation stands for the steps since the previous one
    assert eval_return_auc(np.array([500, 2000]), np.array([4.0, 8.0]), 2000) == pytest.approx(
        (4 * 500 + 8 * 1500) / 2000
    )
    with pytest.raises(ValueError):
        eval_return_auc(np.array([]), np.array([]), 10)


def test_steps_to_threshold():
    steps, returns = np.array([1000, 2000, 3000]), np.array([100.0, 480.0, 300.0])
    assert steps_to_threshold(steps, returns, 475) == 2000
    assert steps_to_threshold(steps, returns, 500) is None
    assert steps_to_threshold(steps, returns, None) is None


def fake_run(root: Path, name: str, overrides: list[str], curve: list[tuple[int, float]], summary: bool = True) -> Path:
    """A run folder as acx writes it: .hydra/, metrics.jsonl with eval rows, summary.json."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), run / ".hydra" / "overrides.yaml")
    OmegaConf.save(
        OmegaConf.create({"total_steps": 3000, "env": {"id": "CartPole-v1", "reward_threshold": None},
                          "stop": {"threshold": None}, "paths": {"output_dir": "${hydra:runtime.output_dir}"}}),
        run / ".hydra" / "config.yaml",
    )  # fmt: skip
    rows = [{"env_step": s, "wall_time": 0.1, "eval/return_mean": r, "eval/return_std": 0.0} for s, r in curve]
    rows.insert(1, {"env_step": 1500, "wall_time": 0.1, "train/episode_return": 12.0})  # not an eval row
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if summary:
        returns = [r for _, r in curve]
        (run / "summary.json").write_text(
            json.dumps({"best_eval_return": max(returns), "final_eval_return": returns[-1], "wall_seconds": 10.0})
        )
    return run


def test_runs_are_grouped_by_overrides_less_seed(tmp_path: Path):
    fake_run(tmp_path, "0_a_s0", ["algo=td0", "seed=0", "total_steps=3000"], [(1000, 10.0), (2000, 20.0), (3000, 30.0)])
    fake_run(tmp_path, "1_a_s1", ["algo=td0", "seed=1", "total_steps=3000"], [(1000, 20.0), (2000, 480.0)])
    fake_run(tmp_path, "2_b_s0", ["algo=nstep", "seed=0", "total_steps=3000"], [(1000, 9.0), (3000, 500.0)])
    fake_run(tmp_path, "10_b_s1", ["algo=nstep", "+seed=1", "total_steps=3000"], [(1000, 9.0)], summary=False)
    runs = [load_run(p) for p in find_run_dirs(tmp_path)]
    assert [r.path.name for r in runs] == ["0_a_s0", "1_a_s1", "2_b_s0", "10_b_s1"]  # job order, not string order
    groups, shared = group_runs(runs)
    assert shared == ["total_steps=3000"]
    assert {k: [r.path.name for r in v] for k, v in groups.items()} == {
        "algo=td0": ["0_a_s0", "1_a_s1"],
        "algo=nstep": ["2_b_s0", "10_b_s1"],
    }
    assert runs[0].threshold == 475.0  # CartPole-v1's own, from Gymnasium's registry
    assert runs[1].steps_to_threshold == 2000 and runs[0].steps_to_threshold is None

    # a seed that stopped early holds its last evaluation: td0 at 3000 is mean(30, 480)
    curve = learning_curve(groups["algo=td0"])
    np.testing.assert_array_equal(curve.steps, [1000, 2000, 3000])
    np.testing.assert_allclose(curve.mean, [15.0, 250.0, 255.0])
    np.testing.assert_allclose(curve.std, np.std([[10, 20], [20, 480], [30, 480]], axis=1, ddof=1))

    report = write_report(tmp_path)
    td0, nstep = report.rows
    assert td0["best"] == pytest.approx((np.mean([30, 480]), np.std([30, 480], ddof=1)))
    assert td0["final"] == pytest.approx((np.mean([30, 480]), np.std([30, 480], ddof=1)))
    # td0 seed 1 reached 475 at 2000, seed 0 never: the median of (2000, inf) is inf
    assert td0["solved"] == 1 and np.isinf(td0["steps_to_threshold_median"])
    assert td0["auc"][0] == pytest.approx(np.mean([20.0, (20 * 1000 + 480 * 2000) / 3000]))
    assert nstep["runs"] == 2 and nstep["finished"] == 1 and nstep["solved"] == 1
    assert nstep["steps_to_threshold_median"] == np.inf  # 3000 and never: inf
    text = (tmp_path / "report.md").read_text()
    assert "| algo=td0 | 2 | 255.0 ± 318.2 | 255.0 ± 318.2 |" in text
    assert "| algo=nstep | 2 (1 finished) |" in text


def test_short_override_and_objective(tmp_path: Path):
    assert short_override("optimizer.lr=0.0012520653814999472") == "optimizer.lr=0.001252"
    assert short_override("algo=td0") == "algo=td0" and short_override("total_steps=100000") == "total_steps=100000"
    run = fake_run(tmp_path, "r", ["seed=0"], [(1000, 10.0), (2000, 30.0)])
    summary = json.loads((run / "summary.json").read_text())
    assert objective_value("best_eval_return", summary, run) == 30.0
    assert objective_value("final_eval_return", summary, run) == 30.0
    assert objective_value("eval_return_auc", summary, run) == pytest.approx((10 + 30 + 30) / 3)  # budget 3000


def test_report_of_an_empty_folder_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="no runs"):
        write_report(tmp_path)
    assert RunRecord(path=tmp_path).best_eval is None


def test_report_cli_errors_are_one_line(tmp_path: Path):
    for target in (tmp_path, tmp_path / "missing"):
        proc = run_acx("report", str(target))
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("acx: error: ") and str(target) in lines[0]
