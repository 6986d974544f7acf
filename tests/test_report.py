"""Reading runs back and ``acx report``: hand-computed curve statistics, grouping by configuration."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from acx.analysis.report import group_runs, learning_curve, short_override, write_report
from acx.analysis.runs import RunRecord, eval_return_auc, find_run_dirs, load_run, objective_value, steps_to_threshold
from acx.analysis.scores import (
    METRICS,
    REFERENCE_SCORES,
    aggregates,
    interval_estimates,
    iqm,
    iqm_curves,
    normalize,
    performance_profiles,
    probabilities_of_improvement,
    probability_of_improvement,
    random_score,
    score_distribution,
)
from acx.errors import ConfigError
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


def fake_run(
    root: Path,
    name: str,
    overrides: list[str],
    curve: list[tuple[int, float]],
    summary: bool = True,
    env_id: str = "CartPole-v1",
    seed: int = 0,
    solved: bool = False,
) -> Path:
    """A run folder as acx writes it: .hydra/, metrics.jsonl with eval rows, summary.json (``solved``: its
    stop rule confirmed the threshold)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), run / ".hydra" / "overrides.yaml")
    OmegaConf.save(
        OmegaConf.create({"total_steps": 3000, "seed": seed, "env": {"id": env_id, "reward_threshold": None},
                          "stop": {"threshold": None}, "paths": {"output_dir": "${hydra:runtime.output_dir}"}}),
        run / ".hydra" / "config.yaml",
    )  # fmt: skip
    rows = [{"env_step": s, "wall_time": 0.1, "eval/return_mean": r, "eval/return_std": 0.0} for s, r in curve]
    rows.insert(1, {"env_step": 1500, "wall_time": 0.1, "train/episode_return": 12.0})  # not an eval row
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if summary:
        returns = [r for _, r in curve]
        (run / "summary.json").write_text(
            json.dumps(
                {
                    "env_id": env_id,
                    "seed": seed,
                    "best_eval_return": max(returns),
                    "final_eval_return": returns[-1],
                    "wall_seconds": 10.0 + seed,
                    "solved": solved,
                }
            )  # fmt: skip
        )
    return run


def test_runs_are_grouped_by_overrides_less_seed(tmp_path: Path):
    fake_run(tmp_path, "0_a_s0", ["algo=td0", "seed=0", "total_steps=3000"], [(1000, 10.0), (2000, 20.0), (3000, 30.0)])
    fake_run(tmp_path, "1_a_s1", ["algo=td0", "seed=1", "total_steps=3000"], [(1000, 20.0), (2000, 480.0)], solved=True)
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

    # a seed that stopped early holds its last evaluation: td0 at 3000 is the IQM (of 2: the mean) of 30, 480
    curve = learning_curve(groups["algo=td0"], reps=200)
    np.testing.assert_array_equal(curve.steps, [1000, 2000, 3000])
    np.testing.assert_allclose(curve.values, [[10, 20, 30], [20, 480, 480]])
    np.testing.assert_allclose(curve.iqm, [15.0, 250.0, 255.0])
    assert np.all(curve.low <= curve.iqm) and np.all(curve.iqm <= curve.high) and curve.env_id == "CartPole-v1"

    report = write_report(tmp_path, reps=200)
    td0, nstep = report.rows
    assert td0["best"]["IQM"].point == pytest.approx(np.mean([30, 480]))
    assert td0["final"]["mean"].point == pytest.approx(np.mean([30, 480]))
    assert td0["final"]["optimality gap"].point == pytest.approx(np.mean([475 - 30, 0]))  # the shortfall below 475
    # td0 seed 1 reached 475 at 2000, seed 0 never: the median of (2000, inf) is inf
    assert td0["reached"] == 1 and td0["solved"] == 1 and np.isinf(td0["steps_to_threshold_median"])
    assert td0["auc"]["mean"].point == pytest.approx(np.mean([20.0, (20 * 1000 + 480 * 2000) / 3000]))
    # nstep seed 0 reached 500 at its last evaluation, but its stop rule never confirmed it: reached, not solved
    assert nstep["runs"] == 2 and nstep["finished"] == 1 and nstep["reached"] == 1 and nstep["solved"] == 0
    assert nstep["steps_to_threshold_median"] == np.inf  # 3000 and never: inf
    text = (tmp_path / "report.md").read_text()
    assert re.search(r"^\| algo=td0 \| 2 \| 255\.0 \[\S+, \S+\] \| 255\.0 \[", text, re.M), text
    assert "| algo=nstep | 2 (1 finished) |" in text
    assert re.search(r"^\| algo=td0 \|.*\| 1/2 \| 1/2 \| \d+ \|$", text, re.M), text  # reached, solved, wall
    assert re.search(r"^\| algo=nstep \|.*\| 1/2 \| 0/2 \| \d+ \|$", text, re.M), text
    assert "| algo=td0 | final eval return | 255.0 [" in text  # the table of every metric
    assert "**Fewer than 5 seeds** in `algo=td0`, `algo=nstep`" in text


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


# --- statistics: acx.analysis.scores against hand-computed values and rliable's own functions ------------------

SCORES = np.array([[1, 10], [2, 30], [3, 20], [4, 50], [10, 40], [5, 60], [6, 70], [8, 80]], dtype=float)  # 8 x 2


def rliable_aggregates(gamma: float):
    from rliable import metrics

    return lambda s: np.array(
        [
            metrics.aggregate_iqm(s),
            metrics.aggregate_median(s),
            metrics.aggregate_mean(s),
            metrics.aggregate_optimality_gap(s, gamma),
        ]
    )


def test_aggregates_by_hand_and_their_cis_equal_rliables():
    from rliable import library, metrics

    # the 16 scores sorted: 1 2 3 4 | 5 6 8 10 10 20 30 40 | 50 60 70 80; the IQM is the mean of the middle 8
    assert iqm(SCORES) == 129 / 8 == pytest.approx(metrics.aggregate_iqm(SCORES))
    env_means = [39 / 8, 360 / 8]  # rliable's median and mean are over the envs' mean scores
    gap = (49 + 48 + 47 + 46 + 40 + 45 + 44 + 42 + 40 + 20 + 30 + 0 + 10 + 0 + 0 + 0) / 16  # mean shortfall below 50
    np.testing.assert_allclose(aggregates(SCORES, 50.0), [129 / 8, np.median(env_means), np.mean(env_means), gap])

    state = np.random.get_state()[1].copy()
    ours = interval_estimates({"both": SCORES, "first": SCORES[:, :1]}, gamma=50.0, reps=500, seed=3)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # NumPy's global generator is left as it was
    np.random.seed(3)
    points, cis = library.get_interval_estimates(
        {"both": SCORES, "first": SCORES[:, :1]}, rliable_aggregates(50.0), reps=500
    )
    for key in ("both", "first"):
        for i, metric in enumerate(METRICS):
            got = ours[key][metric]
            np.testing.assert_allclose([got.point, got.low, got.high], [points[key][i], *cis[key][:, i]], rtol=1e-12)
    assert ours["both"]["IQM"].low < ours["both"]["IQM"].point < ours["both"]["IQM"].high
    assert interval_estimates({"both": SCORES}, gamma=50.0, reps=500, seed=3)["both"] == ours["both"]  # reproducible


def test_probability_of_improvement_by_hand_and_against_rliable():
    from rliable import library, metrics

    # pairs (x, y): 1<2, 1<3, 3>2, 3=3 (a tie counts a half): 1.5 / 4
    assert probability_of_improvement(np.array([[1.0], [3.0]]), np.array([[2.0], [3.0]])) == 0.375
    x, y = SCORES, np.round(SCORES * 0.9 + 2)  # ties included
    assert probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
    assert probability_of_improvement(x, x) == 0.5 == metrics.probability_of_improvement(x, x)
    ours = probabilities_of_improvement({"x | y": (x, y[:6])}, reps=300, seed=5)["x | y"]
    np.random.seed(5)
    points, cis = library.get_interval_estimates({"p": [x, y[:6]]}, metrics.probability_of_improvement, reps=300)
    np.testing.assert_allclose([ours.point, ours.low, ours.high], [points["p"], *np.ravel(cis["p"])], rtol=1e-12)


def test_profiles_and_curves_against_rliable():
    from rliable import library, metrics

    taus = np.linspace(0, 80, 9)
    np.testing.assert_array_equal(score_distribution(SCORES, [0, 9, 80]), [1.0, 9 / 16, 0.0])  # > tau, not >=
    ours, our_cis = performance_profiles({"a": SCORES}, taus, reps=300, seed=1)
    np.random.seed(1)
    theirs, their_cis = library.create_performance_profile({"a": SCORES}, taus, reps=300)
    np.testing.assert_allclose(ours["a"], theirs["a"])
    np.testing.assert_allclose(our_cis["a"], their_cis["a"])

    curves = np.stack([SCORES, SCORES * 2, SCORES + 1], axis=-1)  # runs x envs x 3 points
    ours, our_cis = iqm_curves({"a": curves}, reps=300, seed=2)
    np.random.seed(2)
    per_point = lambda s: np.array([metrics.aggregate_iqm(s[..., t]) for t in range(s.shape[-1])])  # noqa: E731
    theirs, their_cis = library.get_interval_estimates({"a": curves}, per_point, reps=300)
    np.testing.assert_allclose(ours["a"], [129 / 8, 129 / 4, 129 / 8 + 1])
    np.testing.assert_allclose(ours["a"], theirs["a"])
    np.testing.assert_allclose(our_cis["a"], their_cis["a"])


def test_normalised_scores_and_the_random_references():
    np.testing.assert_allclose(normalize([23.7, 475.0, 249.35], "CartPole-v1"), [0.0, 1.0, 0.5])
    assert normalize([1.0], "Maze-v0") is None
    for env_id, (random, _) in REFERENCE_SCORES.items():
        if env_id != "CartPole-v0":  # the same dynamics as v1
            assert round(random_score(env_id), 1) == random, env_id


def population_of_runs(root: Path) -> dict[str, list[float]]:
    """2 configurations x 10 seeds on CartPole; their final returns."""
    finals: dict[str, list[float]] = {"algo=td0": [], "algo=nstep": []}
    for algo, shift in (("td0", 0.0), ("nstep", 60.0)):
        for seed in range(10):
            ramp = [(1000, 20.0 + 3 * seed), (2000, 100.0 + 30 * seed + shift), (3000, 150.0 + 35 * seed + shift)]
            curve = ramp if seed % 3 else ramp[:2]  # every third seed stopped (solved, say) at 2000
            fake_run(root, f"{len(finals['algo=td0']) + len(finals['algo=nstep'])}_{algo}_s{seed}",
                     [f"algo={algo}", f"seed={seed}"], curve, seed=seed)  # fmt: skip
            finals[f"algo={algo}"].append(curve[-1][1])
    return finals


def test_figures_hold_the_runs_metrics(tmp_path: Path):
    finals = population_of_runs(tmp_path)
    report = write_report(tmp_path, baseline="algo=td0", reps=200)
    assert set(report.figures) == {"learning_curves.png", "performance_profile.png", "probability_of_improvement.png"}
    for name in report.figures:
        assert (tmp_path / name).is_file() and f"]({name})" in report.markdown
    assert "Fewer than" not in report.markdown  # 10 seeds each

    ax = report.figures["learning_curves.png"].axes[0]
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == ["algo=td0 (n=10)", "algo=nstep (n=10)"]
    assert len(ax.collections) == 2  # one CI band per configuration
    for line, band, runs in zip(lines, ax.collections, report.groups.values(), strict=True):
        values = np.stack([np.interp([1000, 2000, 3000], r.eval_steps, r.eval_returns) for r in runs])
        np.testing.assert_allclose(line.get_xdata(), [1000, 2000, 3000])
        np.testing.assert_allclose(line.get_ydata(), [iqm(values[:, t]) for t in range(3)])
        low, high = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
        assert low <= line.get_ydata().min() and line.get_ydata().max() <= high

    ax = report.figures["performance_profile.png"].axes[0]
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == ["algo=td0", "algo=nstep"] and len(ax.collections) == 2
    for line, (label, values) in zip(lines, finals.items(), strict=True):
        np.testing.assert_allclose(report.profile_scores[label].ravel(), normalize(values, "CartPole-v1"))
        np.testing.assert_allclose(
            line.get_ydata(), score_distribution(normalize(values, "CartPole-v1"), line.get_xdata())
        )

    ax = report.figures["probability_of_improvement.png"].axes[0]
    (bar,) = ax.patches  # one pair: nstep over the baseline td0
    (estimate,) = report.improvements.values()
    assert list(report.improvements) == ["algo=nstep | algo=td0"] and report.baseline == "algo=td0"
    x, y = (np.array(finals[k])[:, None] for k in ("algo=nstep", "algo=td0"))
    assert estimate.point == pytest.approx(probability_of_improvement(x, y))
    assert bar.get_x() == pytest.approx(estimate.low) and bar.get_width() == pytest.approx(estimate.high - estimate.low)
    assert "| algo=nstep | " + f"{estimate.point:.2f} [" in report.markdown


def test_tidy_rows_equal_the_summaries(tmp_path: Path):
    population_of_runs(tmp_path)
    for fmt in ("csv", "json"):
        report = write_report(tmp_path, fmt=fmt, reps=100)
        assert report.tidy_path == tmp_path / f"runs.{fmt}"
        if fmt == "csv":
            import csv

            with report.tidy_path.open() as f:
                rows = list(csv.DictReader(f))
        else:
            rows = json.loads(report.tidy_path.read_text())
        assert len(rows) == 20
        for row in rows:
            summary = json.loads((tmp_path / row["run"] / "summary.json").read_text())
            overrides = OmegaConf.load(tmp_path / row["run"] / ".hydra" / "overrides.yaml")
            assert f"algo={row['algo']}" in overrides and row["configuration"] == f"algo={row['algo']}"
            assert float(row["seed"]) == summary["seed"] and row["env_id"] == summary["env_id"]
            assert float(row["final_return"]) == summary["final_eval_return"]
            assert float(row["best_return"]) == summary["best_eval_return"]
            assert float(row["wall_seconds"]) == summary["wall_seconds"]
            run = load_run(tmp_path / row["run"])
            assert float(row["auc_return"]) == pytest.approx(run.eval_auc)
            assert str(row["reached"]) == str(run.steps_to_threshold is not None)
            assert str(row["solved"]) == str(summary["solved"])


def test_runs_across_envs_are_aggregated_on_normalised_scores(tmp_path: Path):
    finals = {}
    for i, (env, env_id, algo, seed) in enumerate(
        (e, i, a, s) for e, i in (("cartpole", "CartPole-v1"), ("acrobot", "Acrobot-v1"))
        for a in ("td0", "nstep") for s in range(4)
    ):  # fmt: skip
        final = (300.0 + 40 * seed) if env == "cartpole" else (-300.0 + 30 * seed)
        final += 50.0 * (algo == "nstep")
        fake_run(tmp_path, f"{i}_{env}_{algo}_s{seed}", [f"env={env}", f"algo={algo}", f"seed={seed}"],
                 [(1000, final)], env_id=env_id, seed=seed)  # fmt: skip
        finals.setdefault(f"algo={algo}", {}).setdefault(env_id, []).append(final)
    report = write_report(tmp_path, reps=100)
    assert list(report.profile_scores) == ["algo=td0", "algo=nstep"]
    for method, per_env in finals.items():
        expected = np.array([normalize(per_env[e], e) for e in ("CartPole-v1", "Acrobot-v1")]).T  # runs x envs
        np.testing.assert_allclose(report.profile_scores[method], expected)
    assert "## Across envs" in report.markdown and "| algo=td0 | 2 | 4 |" in report.markdown
    # on each env, 13 of the 16 (nstep run, td0 run) pairs have nstep above (nstep is 50 above td0 seed by seed,
    # the seeds 40 or 30 apart): 13/16 on both
    assert report.improvements["algo=nstep | algo=td0"].point == 13 / 16
    assert len(report.figures["learning_curves.png"].axes) == 2  # one panel per env


def test_report_cli_writes_everything_and_refuses_bad_input_in_one_line(tmp_path: Path):
    population_of_runs(tmp_path / "sweep")
    out = tmp_path / "out"
    proc = run_acx("report", str(tmp_path / "sweep"), "--baseline", "algo=nstep", "--format", "json",
                   "--reps", "200", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Probability of improvement over `algo=nstep`" in proc.stdout and "| algo=td0 | 0." in proc.stdout
    for name in ("report.md", "learning_curves.png", "performance_profile.png", "probability_of_improvement.png",
                 "runs.json"):  # fmt: skip
        assert (out / name).is_file() and str(out / name) in proc.stdout
    for args, message in (
        (["--baseline", "algo=ppo"], "--baseline 'algo=ppo' matches none; the methods are: 'algo=td0', 'algo=nstep'"),
        (["--format", "xml"], "format"),
        (["--reps", "5"], "reps"),
    ):
        proc = run_acx("report", str(tmp_path / "sweep"), *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("acx: error: "), proc.stderr
        assert message in lines[0], lines[0]
