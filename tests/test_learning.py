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


def test_episodic_learns_cartpole(tmp_path: Path):
    """TD(0) on CartPole runs its tuned file (conf/tuned/cartpole_td0.yaml): tested with the others below."""
    cfg = compose_train([*QUIET, "algo=episodic", "seed=0", "total_steps=100000", "eval.every_steps=5000"], tmp_path)
    summary = train(cfg)
    assert summary["best_eval_return"] >= 400, summary


def test_nstep_learns_pendulum(tmp_path: Path):
    cfg = compose_train([*QUIET, "experiment=pendulum_nstep", "seed=0"], tmp_path)
    summary = train(cfg)
    random_policy = -1200  # a uniform random policy scores about -1200 to -1400
    assert summary["best_eval_return"] >= -400, summary
    assert summary["final_eval_return"] > random_policy
    ckpt = load_checkpoint(summary["checkpoint"])
    assert ckpt["meta"]["action_space"]["type"] == "Box"


# Tuned files (conf/tuned/): the plain command, seeds 0 and 1 as one cohort. Another CPU rounds
# differently, and over thousands of updates a seed's trajectory becomes another sample of the same
# distribution, so each budget and threshold holds for the seeds measured here (through the population
# launcher, docs/learning.md and the searches), not only for the seeds here on this CPU:
# - pendulum nstep: with a 100k budget (its lr anneals to 0 by then, not by 300k) all of seeds 100-109
#   above -700 (-189 to -695; 4 above -400); random play about -1200, the plain preset's best IQM -1112;
# - pendulum ppo: all 10 seeds (0-9) above -300 by 52,984 env steps; random play about -1200;
# - acrobot episodic: all 40 seeds measured (0-9, 100-109 in three settings) above -300 by 150,001;
#   random play -500;
# - cartpole td0: 37 of 40 seeds reach 400 within 100k (3 never learn in that budget: seed 1 here,
#   2 of 110-129), so one of the two must; random play about 22;
# - mountaincar ppo: seeds 100-104 all at -131 to -139 at their first eval (20,624 env steps); random
#   play -200 (the car never reaches the flag);
# - halfcheetah ppo: 9 of seeds 100-109 above 50 within 20,480 env steps (one at -1, standing still);
#   random play about -280;
# - hopper ppo: all of seeds 100-109 above 250 within 20,480 env steps (297 to 1,025); random play
#   about 18;
# - mountaincar_continuous nstep: 14 of 15 seeds (100-114) reach an eval of 10 or more within 30k env
#   steps, so one of two must;
# mountaincar_continuous ppo has no test here: the cheapest that its seeds support (three seeds to 40k env
# steps, one of which must reach 10, as 22 of 25 measured did) took 95 s, an eighth of the whole suite's
# budget; docs/learning.md measures it (10/10 of seeds 0-9 confirm 90 within 100k).
MUJOCO_EVAL = ["eval.every_steps=10240"]  # their files evaluate every 51,200 steps
TUNED_CELLS = [("pendulum", "nstep", 100_000, -800, 2, []), ("pendulum", "ppo", 70_000, -300, 2, []),
               ("acrobot", "episodic", 160_000, -300, 2, []), ("cartpole", "td0", 100_000, 400, 1, []),
               ("mountaincar", "ppo", 20_480, -160, 2, []),
               ("halfcheetah", "ppo", 20_480, 50, 1, MUJOCO_EVAL), ("hopper", "ppo", 20_480, 250, 2, MUJOCO_EVAL),
               ("mountaincar_continuous", "nstep", 30_000, 10, 1, [])]  # fmt: skip


@pytest.mark.parametrize(
    "env,algo,budget,threshold,need,extra", TUNED_CELLS, ids=[f"{e}-{a}" for e, a, *_ in TUNED_CELLS]
)
def test_plain_command_learns_with_its_tuned_defaults(
    tmp_path: Path, env: str, algo: str, budget: int, threshold: float, need: int, extra: list[str]
):
    """`acx train env=<env> algo=<algo>` picks conf/tuned/<env>_<algo>.yaml, and ``need`` of seeds 0 and 1
    reach ``threshold`` within ``budget``."""
    cfg = compose_train([f"env={env}", f"algo={algo}"], tmp_path)
    assert cfg.tuned_from.startswith(f"conf/tuned/{env}_{algo}.yaml")
    sweep = tmp_path / "sweep"
    proc = run_acx("train", "-m", "hydra/launcher=population", f"env={env}", f"algo={algo}", "seed=0,1",
                   f"total_steps={budget}", *QUIET, *extra, f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert sorted(s["seed"] for s in summaries) == [0, 1]
    assert sum(s["best_eval_return"] >= threshold for s in summaries) >= need, summaries
