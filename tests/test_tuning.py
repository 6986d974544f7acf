"""The Optuna search space from YAML/command-line overrides, and the sweep and launcher presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class

from tests.conftest import CONF, FAST, run_acx

optuna = pytest.importorskip("optuna", reason="the Optuna sweeper needs the sweeps extra: pip install -e '.[sweeps]'")
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402

from acx.analysis.runs import objective_value, read_eval_curve  # noqa: E402
from acx.errors import ConfigError  # noqa: E402
from acx.sweep.tuning import (  # noqa: E402
    TrialReporter,
    aggregate,
    check_seeds,
    format_value,
    search_space,
    seed_jobs,
    trial_overrides,
)

LAUNCHERS = sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml"))
SEARCHES = sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml"))


def test_search_space_from_yaml_and_command_line():
    params = {
        "optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
        "algo.n_steps": "choice(5, 8, 16)",
        "algo.num_envs": "range(2, 10, 2)",
        "algo.loss.ent_coef": "interval(0.0, 0.02)",
        "algo.gamma": "0.99",  # a plain value is not searched
        "network.hidden_sizes": "tag(int, interval(32, 256))",
    }
    space, fixed = search_space(params, ["env=cartpole", "algo.gamma=choice(0.9,0.99)", "algo.n_steps=16"])
    assert space["optimizer.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert space["algo.num_envs"] == IntDistribution(2, 8, step=2)  # range() excludes its stop, like Python's
    assert space["algo.loss.ent_coef"] == FloatDistribution(0.0, 0.02)
    assert space["network.hidden_sizes"] == IntDistribution(32, 256)
    assert space["algo.gamma"] == CategoricalDistribution([0.9, 0.99])  # the command line adds to the space
    assert "algo.n_steps" not in space  # ... and a plain value there pins a searched key
    assert fixed == ["env=cartpole", "algo.n_steps=16"]


def test_trial_overrides_round_trip():
    assert format_value(1e-05) == "1e-05" and format_value(0.1 + 0.2) == "0.30000000000000004"
    assert format_value("mse") == "mse" and format_value(None) == "null" and format_value(True) == "True"
    assert trial_overrides({"optimizer.lr": 3e-4, "algo.n_steps": 8}, ["env=cartpole"], 7) == [
        "env=cartpole", "optimizer.lr=0.0003", "algo.n_steps=8", "hydra.sweeper.trial_number=7",
    ]  # fmt: skip


def test_reporter_reports_on_the_eval_grid_and_prunes():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=10.0))
    trial = study.ask()
    reporter = TrialReporter(trial, every_steps=1000)
    reporter(1040, 12.0)  # an eval that happened at 1040 (8 envs x 5 steps) is reported at step 1000
    with pytest.raises(optuna.TrialPruned, match="env step 2080"):
        reporter(2080, 9.0)
    assert study.trials[0].intermediate_values == {1000: 12.0, 2000: 9.0}


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_launcher_presets_build(launcher: str):
    assert {"joblib", "ray", "submitit_local", "submitit_slurm"} <= set(LAUNCHERS)
    cfg = _compose([f"hydra/launcher={launcher}"]).hydra.launcher
    header = (CONF / "hydra" / "launcher" / f"{launcher}.yaml").read_text().splitlines()
    assert any(f"hydra/launcher={launcher}" in line for line in header if line.startswith("#")), "header says how"
    if launcher == "ray":
        pytest.importorskip("ray", reason="hydra/launcher=ray needs the ray extra")
    params = {k: v for k, v in cfg.items() if k != "_target_"}
    get_class(cfg._target_)(**params)  # every key is one the plugin takes


@pytest.mark.parametrize("preset", SEARCHES)
def test_hparams_search_presets(preset: str):
    cfg = _compose([f"hparams_search={preset}"])
    header = (CONF / "hparams_search" / f"{preset}.yaml").read_text().splitlines()
    assert any(f"hparams_search={preset}" in line for line in header if line.startswith("#")), "header says how"
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("AcxOptunaSweeper") and sweeper.study_name == preset
    assert cfg.optimized_metric in ("best_eval_return", "final_eval_return", "eval_return_auc")
    space, _ = search_space(sweeper.params, [])
    assert len(space) >= 3
    for params in sweeper.enqueue_trials:  # enqueued trials must lie inside the space
        assert set(params) == set(space)
        for key, value in params.items():
            assert space[key]._contains(space[key].to_internal_repr(value)), (key, value)
    assert Path(str(sweeper.pruner._target_)).suffix  # a pruner is configured


def test_aggregates_of_seed_values():
    values = [10.0, 0.0, 3.0, 7.0, 1.0, 50.0]  # sorted: 0 1 3 7 10 50
    assert aggregate(values, "mean") == pytest.approx(71 / 6)
    assert aggregate(values, "median") == 5.0  # (3 + 7) / 2
    assert aggregate(values, "iqm") == 5.25  # int(0.25 * 6) = 1 cut at each end: (1 + 3 + 7 + 10) / 4
    odd = [4.0, 1.0, 9.0, 2.0, 100.0]  # sorted: 1 2 4 9 100
    assert (aggregate(odd, "mean"), aggregate(odd, "median"), aggregate(odd, "iqm")) == (23.2, 4.0, 5.0)
    eight = [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 100.0]  # 2 cut at each end: (3 + 4 + 6 + 7) / 4
    assert aggregate(eight, "iqm") == 5.0 and aggregate(eight, "mean") == 16.375
    assert aggregate([1.0, 3.0], "iqm") == 2.0 and aggregate([7.0], "median") == 7.0  # nothing cut under 4 values
    with pytest.raises(ConfigError, match="aggregate=max"):
        aggregate(values, "max")


def test_seed_jobs_and_seed_checks():
    assert seed_jobs({"algo.n_steps": 8}, ["env=cartpole"], 3, 0, 1) == [  # one seed: the job as before
        ["env=cartpole", "algo.n_steps=8", "hydra.sweeper.trial_number=3"]
    ]
    jobs = seed_jobs({"algo.n_steps": 8}, ["seed=5", "env=cartpole"], 3, 5, 2)  # a fixed seed= is the first seed
    assert jobs == [
        ["env=cartpole", "algo.n_steps=8", "hydra.sweeper.trial_number=3", f"seed={s}", f"hydra.sweeper.seed_index={i}"]
        for i, s in enumerate((5, 6))
    ]
    assert check_seeds(3, "iqm", {"optimizer.lr": None}) == 3 and check_seeds(1, "mean", {"seed": None}) == 1
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="seeds_per_trial"):
            check_seeds(bad, "mean", {})
    with pytest.raises(ConfigError, match="seed cannot be both searched and per-trial"):
        check_seeds(2, "mean", {"seed": None})


def test_seed_run_folders():
    from omegaconf import OmegaConf

    def subdir(overrides: list[str]) -> str:
        cfg = _compose(["hparams_search=cartpole_nstep", "hydra.sweeper.trial_number=4", *overrides])
        return str(OmegaConf.select(cfg, "hydra.sweep.subdir"))

    assert subdir([]) == "trial_4"  # one seed per trial: the folders as before
    assert subdir(["seed=7", "hydra.sweeper.seed_index=1"]) == "trial_4/seed_7"


@pytest.mark.slow
def test_seeds_per_trial_search(tmp_path: Path):
    proc = run_acx(
        "train", "-m", "hparams_search=cartpole_nstep", "hydra.sweeper.n_trials=2", "hydra.sweeper.seeds_per_trial=2",
        *FAST, "total_steps=1500", "eval.every_steps=500", f"paths.log_dir={tmp_path}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir = tmp_path / "train" / "hparams_search" / "cartpole_nstep"
    runs = sorted(p.parent.relative_to(sweep_dir).as_posix() for p in sweep_dir.glob("**/summary.json"))
    assert runs == ["trial_0/seed_0", "trial_0/seed_1", "trial_1/seed_0", "trial_1/seed_1"]
    trials = optuna.load_study(study_name="cartpole_nstep", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    output = proc.stdout + proc.stderr
    for t in trials:
        seeds = []
        for s in (0, 1):
            run_dir = sweep_dir / f"trial_{t.number}" / f"seed_{s}"
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary["seed"] == s
            seeds.append(objective_value("eval_return_auc", summary, run_dir))
        assert t.user_attrs["seed_values"] == pytest.approx(seeds)
        assert t.value == pytest.approx((seeds[0] + seeds[1]) / 2)
        # only seed 0 reports its evaluations (on the eval grid) to the trial
        steps, returns = read_eval_curve(sweep_dir / f"trial_{t.number}" / "seed_0" / "metrics.jsonl")
        assert t.intermediate_values == pytest.approx(
            {int(x) // 500 * 500: r for x, r in zip(steps, returns, strict=True)}
        )
        assert f"trial {t.number}: {t.value:.2f} (mean of s0: {seeds[0]:.2f}, s1: {seeds[1]:.2f})" in output
    results = (sweep_dir / "optimization_results.yaml").read_text()
    assert "seeds_per_trial: 2" in results and "aggregate: mean" in results


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hydra.sweeper.seeds_per_trial=0"], "hydra.sweeper.seeds_per_trial=0: expected an int >= 1"),
        (["hydra.sweeper.seeds_per_trial=2", "seed=choice(0,1)"], "seed cannot be both searched and per-trial"),
    ],
)
def test_seeds_per_trial_errors(tmp_path: Path, overrides: list[str], message: str):
    proc = run_acx("train", "-m", "hparams_search=cartpole_nstep", *overrides, *FAST, f"paths.log_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("acx: error: ") and message in lines[0], proc.stderr
    assert not list(tmp_path.rglob("optuna.db"))  # refused before the study is created


def test_a_trial_that_never_beat_goes_stale(tmp_path: Path):
    """A sweeper killed between study.ask and the trial's first heartbeat leaves a RUNNING trial with no
    heartbeat: Optuna never finds such a trial stale, so a resumed study waited for it forever. acx's
    storage fails it once it is older than the grace period, and the retry callback queues it again."""
    import time

    from optuna.trial import TrialState

    from acx.sweep.tuning import make_storage

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = make_storage(url, heartbeat_interval=1, grace_period=1, max_retry=1)
    study = optuna.create_study(study_name="s", storage=storage)
    orphan = study.ask()  # RUNNING, and no heartbeat recorded: its sweeper died here
    beating = study.ask()
    storage.record_heartbeat(beating._trial_id)
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING, TrialState.RUNNING]  # within the grace
    time.sleep(1.5)
    storage.record_heartbeat(beating._trial_id)  # its sweeper is alive
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL and trials[beating.number].state == TrialState.RUNNING
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retried) == 1 and retried[0].state == TrialState.WAITING
