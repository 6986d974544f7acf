"""The Optuna search space from YAML/command-line overrides, and the sweep and launcher presets."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class

from tests.conftest import CONF

optuna = pytest.importorskip("optuna", reason="the Optuna sweeper needs the sweeps extra: pip install -e '.[sweeps]'")
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402

from acx.tuning import TrialReporter, format_value, search_space, trial_overrides  # noqa: E402

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
