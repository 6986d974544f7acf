"""Learning tests: fixed seeds, fixed step budgets, thresholds documented here and in the README.

Measured on a 2-core CPU (see the README): nstep solves CartPole-v1 in 10k-26k env steps for seeds
0-4, td0 in 25k-35k, episodic in 5k-25k; the budgets below leave room for that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acx.run.checkpoint import load_checkpoint
from acx.run.train import train
from tests.conftest import compose_train, run_acx

pytestmark = pytest.mark.slow

QUIET = ["progress=false", "logger=none", "checkpoint.every_steps=1000000"]


@pytest.mark.parametrize("seed", [0, 1])
def test_nstep_solves_cartpole(tmp_path: Path, seed: int):
    cfg = compose_train([*QUIET, f"seed={seed}", "total_steps=100000", "eval.every_steps=2000"], tmp_path)
    summary = train(cfg)
    assert summary["solved"], summary
    assert summary["final_eval_return"] >= 475
    assert summary["solved_at_step"] <= 100000


@pytest.mark.parametrize("algo,threshold", [("td0", 400), ("episodic", 400)])
def test_td0_and_episodic_learn_cartpole(tmp_path: Path, algo: str, threshold: float):
    cfg = compose_train([*QUIET, f"algo={algo}", "seed=0", "total_steps=100000", "eval.every_steps=5000"], tmp_path)
    summary = train(cfg)
    assert summary["best_eval_return"] >= threshold, summary


def test_nstep_learns_pendulum(tmp_path: Path):
    cfg = compose_train([*QUIET, "experiment=pendulum_nstep", "seed=0"], tmp_path)
    summary = train(cfg)
    random_policy = -1200  # a uniform random policy scores about -1200 to -1400
    assert summary["best_eval_return"] >= -400, summary
    assert summary["final_eval_return"] > random_policy
    ckpt = load_checkpoint(summary["checkpoint"])
    assert ckpt["meta"]["action_space"]["type"] == "Box"


def test_plain_env_pendulum_learns_with_its_tuned_defaults(tmp_path: Path):
    """`acx train env=pendulum` and nothing else picks conf/tuned/pendulum_nstep.yaml; seed 0 (not
    searched on) reaches a best eval of -174 within 200k env steps (docs/learning.md), where the plain
    nstep defaults' best IQM is about -1130 and random play scores about -1200."""
    cfg = compose_train([*QUIET, "env=pendulum", "seed=0", "total_steps=200000"], tmp_path)
    assert cfg.tuned_from.startswith("conf/tuned/pendulum_nstep.yaml")
    summary = train(cfg)
    assert summary["best_eval_return"] >= -400, summary


# Tuned files (conf/tuned/): the plain command, seeds 0 and 1 as one cohort. Another CPU rounds
# differently, and over thousands of updates a seed's trajectory becomes another sample of the same
# distribution, so each budget and threshold holds for the seeds measured here (through the population
# launcher, docs/learning.md and the searches), not only for seeds 0 and 1 on this CPU:
# - pendulum ppo: all 10 seeds (0-9) above -300 by 52,984 env steps; random play about -1200;
# - acrobot episodic: all 40 seeds measured (0-9, 100-109 in three settings) above -300 by 150,001;
#   random play -500;
# - cartpole td0: 37 of 40 seeds reach 400 within 100k (3 never learn in that budget: seed 1 here,
#   2 of 110-129), so one of the two must; random play about 22.
TUNED_CELLS = [("pendulum", "ppo", 70_000, -300, 2), ("acrobot", "episodic", 160_000, -300, 2),
               ("cartpole", "td0", 100_000, 400, 1)]  # fmt: skip


@pytest.mark.parametrize("env,algo,budget,threshold,need", TUNED_CELLS, ids=[f"{e}-{a}" for e, a, *_ in TUNED_CELLS])
def test_plain_command_learns_with_its_tuned_defaults(
    tmp_path: Path, env: str, algo: str, budget: int, threshold: float, need: int
):
    """`acx train env=<env> algo=<algo>` picks conf/tuned/<env>_<algo>.yaml, and ``need`` of seeds 0 and 1
    reach ``threshold`` within ``budget``."""
    cfg = compose_train([f"env={env}", f"algo={algo}"], tmp_path)
    assert cfg.tuned_from.startswith(f"conf/tuned/{env}_{algo}.yaml")
    sweep = tmp_path / "sweep"
    proc = run_acx("train", "-m", "hydra/launcher=population", f"env={env}", f"algo={algo}", "seed=0,1",
                   f"total_steps={budget}", *QUIET, f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert sorted(s["seed"] for s in summaries) == [0, 1]
    assert sum(s["best_eval_return"] >= threshold for s in summaries) >= need, summaries
