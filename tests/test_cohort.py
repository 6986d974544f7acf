"""Cohorts (acx/run/cohort.py, hydra/launcher=population): a run is a cohort of one; in a cohort of many,
each member learns as it would alone, for every variant and for a CNN, also when it joins late through
refill; members stay independent, and leave ordinary run folders."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from acx.envs.factory import GymEnvFactory
from acx.envs.join import JoinedEnvs
from acx.errors import NonFiniteError
from acx.run.build import build_network, seed_everything
from acx.run.checkpoint import load_checkpoint
from acx.run.cohort import open_member
from acx.run.train import Job, train, train_cohort
from acx.sweep.grouping import group_key, plan_parts, why_alone
from hydra_plugins.acx_population_launcher.population_launcher import SweepConfigs
from tests.conftest import ACX, CONF, FAST, ROOT, ROUNDING_ZERO, compose_train, run_acx

CLOCK_KEYS = ("wall_time", "time/sps")


def rows_of(run_dir: Path, train_only: bool = True) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in CLOCK_KEYS} for r in rows if not train_only or "losses/total" in r]


def assert_rows_close(a: list[dict], b: list[dict], rel: float = 1e-4, abs_: float = 1e-5) -> None:
    assert len(a) == len(b) > 0
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.keys() == y.keys() and x["env_step"] == y["env_step"], i
        for key in x:
            if y[key] is not None:
                assert x[key] == pytest.approx(y[key], rel=rel, abs=ROUNDING_ZERO.get(key, abs_)), (i, key)


VARIANTS = {
    "nstep": [],
    "td0": ["algo=td0"],
    "episodic": ["algo=episodic"],
    # float64 observations, as MuJoCo's, read as they are: episodes cut at 20 steps bootstrap through the stack
    "episodic-float64": ["algo=episodic", "env.id=tests.toy_envs:SignBandit-v0", "normalize.obs=false"],
    "ppo": ["algo=ppo", "algo.n_steps=32"],
    "pendulum-tuned": ["env=pendulum"],  # normalised observations and rewards (conf/tuned/)
    # episodic, a Gaussian policy, separate actor and critic optimizers
    "seed001-split": ["experiment=seed001_episodic_pendulum", "eval.every_steps=1000", "eval.episodes=2"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_member_learns_as_its_single_run_also_when_it_joins_late(tmp_path: Path, variant: str):
    """Three jobs through two slots: job 0 leaves early (a small budget), and job 2 joins in its slot.
    Jobs 1 and 2 each equal `acx train seed=s` alone: the same env steps, episodes and updates, every
    update's row within float rounding (only batched matmuls round differently), final weights too."""
    common = [*FAST, "stop=budget", "log.every_updates=1", *VARIANTS[variant]]
    budget = 1500
    singles = {
        s: compose_train([*common, f"total_steps={budget}", f"seed={s}"], tmp_path / f"single{s}") for s in (1, 2)
    }
    for cfg in singles.values():
        train(cfg)
    jobs = [Job(0, compose_train([*common, "total_steps=300", "seed=0"], tmp_path / "member0"))]
    jobs += [
        Job(s, compose_train([*common, f"total_steps={budget}", f"seed={s}"], tmp_path / f"member{s}")) for s in (1, 2)
    ]
    results = train_cohort(jobs, slots=2)
    for s in (1, 2):
        single = json.loads((tmp_path / f"single{s}" / "summary.json").read_text())
        for key in ("env_steps", "episodes", "updates"):
            assert results[s][key] == single[key], (s, key)
        # seed 001's standardised returns make the critic's explained variance a ratio of small numbers
        rel = 1e-3 if variant == "seed001-split" else 1e-4
        assert_rows_close(rows_of(tmp_path / f"member{s}"), rows_of(tmp_path / f"single{s}"), rel=rel)
        a = load_checkpoint(tmp_path / f"single{s}" / "checkpoints" / "final.pt")["model"]
        b = load_checkpoint(tmp_path / f"member{s}" / "checkpoints" / "final.pt")["model"]
        assert a.keys() == b.keys()  # normalisation statistics included (each member's own)
        # atol 1e-4: the weights carry every update's last-bit differences, and TD(0)'s ~1,500 updates moved
        # one bias of 0.0013 by 1.4e-5 on an Intel Xeon (AMD EPYC: within 1e-5)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-4, msg=k)
    assert results[0]["env_steps"] >= 300


@pytest.mark.slow
def test_a_cnn_member_on_pong_learns_as_its_single_run(tmp_path: Path):
    common = ["env=pong", "algo.num_envs=2", "env.max_episode_frames=400", "progress=false", "logger=none",
              "eval.episodes=1", "eval.every_steps=1000000", "checkpoint.every_steps=1000000", "stop=budget",
              "log.every_updates=1", "total_steps=200"]  # fmt: skip
    train(compose_train([*common, "seed=1"], tmp_path / "single"))
    jobs = [Job(s, compose_train([*common, f"seed={s}"], tmp_path / f"member{s}")) for s in (0, 1)]
    train_cohort(jobs, slots=2)
    # the first updates: a grouped convolution rounds differently from a plain one, and a CNN's near-uniform
    # policy over 6 actions turns a last-bit difference into another sampled action sooner than an MLP's
    assert_rows_close(rows_of(tmp_path / "member1")[:5], rows_of(tmp_path / "single")[:5], rel=1e-3, abs_=1e-4)


def test_members_with_their_own_hyperparameters_and_a_non_finite_member(tmp_path: Path):
    """lr, clip norm, gamma, GAE lambda, loss coefficients and reward scale differ per member; member 1's
    reward_scale=1e38 overflows its targets at its first update: it stops with the message in its
    summary and no weight of it changes; the others train on, each as its single run, the same twice."""
    per_member = [
        ["seed=0", "optimizer.lr=7e-4", "algo.max_grad_norm=0.5"],
        ["seed=1", "algo.reward_scale=1e38"],
        ["seed=2", "optimizer.lr=3e-3", "algo.max_grad_norm=0.001", "algo.gamma=0.9", "algo.loss.ent_coef=0.05"],
        ["seed=3", "optimizer.lr=1e-4", "algo.max_grad_norm=null", "algo.advantage.gae_lambda=0.9",
         "algo.loss.vf_coef=0.25", "algo.reward_scale=0.1"],
    ]  # fmt: skip
    common = [*FAST, "total_steps=2000", "stop=budget", "log.every_updates=1"]
    finals = []
    for attempt in range(2):
        jobs = [Job(i, compose_train([*common, *o], tmp_path / f"{attempt}_{i}")) for i, o in enumerate(per_member)]
        results = train_cohort(jobs, slots=4)
        assert isinstance(results[1], NonFiniteError) and "non-finite" in str(results[1])
        summary = json.loads((tmp_path / f"{attempt}_1" / "summary.json").read_text())
        assert "non-finite" in summary["error"] and summary["updates"] == 0
        finals.append(
            [load_checkpoint(tmp_path / f"{attempt}_{i}" / "checkpoints" / "final.pt")["model"] for i in (0, 2, 3)]
        )
    for a, b in zip(*finals, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    for i in (0, 2, 3):
        train(compose_train([*common, *per_member[i]], tmp_path / f"single{i}"))
        assert_rows_close(rows_of(tmp_path / f"0_{i}"), rows_of(tmp_path / f"single{i}"))
    clipped = rows_of(tmp_path / "0_2")
    assert clipped[0]["train/grad_norm"] > 0.001  # member 2 was clipped, and no other member with it


def test_a_member_starts_from_its_single_runs_weights_and_joined_cartpole_matches_its_own_envs(tmp_path: Path):
    with contextlib.ExitStack() as resources:
        for seed in (3, 11):
            cfg = compose_train([*FAST, f"seed={seed}"], tmp_path / str(seed))
            member = open_member(0, cfg, None, resources)
            seed_everything(seed)
            single = build_network(cfg.network, GymEnvFactory("CartPole-v1"), torch.device("cpu"))
            for a, b in zip(single.parameters(), member.net.parameters(), strict=True):
                assert torch.equal(a, b)
    factory = GymEnvFactory("CartPole-v1")
    own = [factory.make_vector(4, seed=s) for s in (3, 11)]
    joined = JoinedEnvs([factory.make_vector(4, seed=s) for s in (3, 11)], make=factory.make_vector)
    assert joined.joined is not None  # one CartPoleVectorEnv for both members
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(300):
        actions = rng.integers(0, 2, size=8)
        mine = [e.step(actions[4 * k : 4 * (k + 1)]) for k, e in enumerate(own)]
        theirs = joined.step(actions)
        for i in range(4):
            np.testing.assert_array_equal(theirs[i], np.concatenate([r[i] for r in mine]))
        ends += int(theirs[2].sum() + theirs[3].sum())
    assert ends > 10  # resets drawn from each member's own generator, many times


def test_grouping_and_parts(tmp_path: Path):
    base = compose_train(FAST, tmp_path)
    other_seed = compose_train([*FAST, "seed=5", "optimizer.lr=1e-3", "algo.gamma=0.95"], tmp_path / "b")
    assert group_key(base) == group_key(other_seed)
    assert group_key(base) == group_key(compose_train([*FAST, "resume=somewhere"], tmp_path / "f"))
    assert group_key(base) != group_key(compose_train([*FAST, "algo.num_envs=4"], tmp_path / "c"))
    assert group_key(base) != group_key(compose_train([*FAST, "env=acrobot"], tmp_path / "d"))
    for overrides in (["algo=episodic"], ["algo=ppo"], ["env=pong"], ["resume=somewhere"]):
        assert why_alone(compose_train(overrides, tmp_path / "e")) is None, overrides
    assert "torch.optim" in why_alone(compose_train(["optimizer._target_=torch.optim.AdamW"], tmp_path / "g"))
    # 64 of one key on 2 processes: 2 parts of 32; two keys kept apart; a job alone is a part of its own
    assert [len(p) for p in plan_parts(["a"] * 64, 2)] == [32, 32]
    assert plan_parts(["a", "b", "a", "b", "a"], 1) == [[0, 2, 4], [1, 3]]
    assert plan_parts(["a", None, "a"], 4) == [[0, 2], [1]]
    assert [len(p) for p in plan_parts(["a"] * 12, 4)] == [12]  # parts of 6 would not win back a process start
    assert [len(p) for p in plan_parts(["a"] * 5, 1, max_size=2)] == [2, 2, 1]  # a cluster's tasks: max_members each


def test_sweep_configs_equal_hydras_own_composition():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().hydra.config_loader
        master = loader.load_configuration("train", ["hydra/launcher=population"], run_mode=RunMode.MULTIRUN)
        fast = SweepConfigs(loader.load_sweep_config)
        jobs = [
            ["seed=0", "optimizer.lr=7e-4", "logger=none"],
            ["seed=5", "optimizer.lr=0.001", "logger=none"],
            ["seed=2", "algo.gamma=0.9", "logger=none"],
            ["seed=3", "optimizer.lr=3e-4", "logger=none"],
        ]
        for overrides in jobs:
            derived, composed = fast(master, overrides), loader.load_sweep_config(master, overrides)
            a, b = OmegaConf.to_container(derived), OmegaConf.to_container(composed)
            for cfg in (a, b):
                cfg["hydra"]["runtime"].pop("output_dir", None)
            assert a == b, overrides
        assert len(fast.composed) == 2  # seed+lr jobs share one composition, seed+gamma another


@pytest.mark.slow
def test_twelve_jobs_through_four_slots_leave_twelve_ordinary_run_folders(tmp_path: Path):
    """A real multirun of 12 jobs (budgets from 1,000 to 3,000 steps, so members leave at different times)
    in one process with 4 slots: every job trains (8 of them join as others leave), and each folder is a
    single run's: its config, a checkpoint acx eval replays, a run acx train resume= continues alone;
    acx report reads the sweep."""
    sweep = tmp_path / "sweep"
    proc = run_acx(
        "train", "-m", "hydra/launcher=population", "hydra.launcher.n_jobs=1", "hydra.launcher.max_members=4",
        "seed=0,1,2,3,4,5", "total_steps=1000,3000", *FAST, "stop=budget", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "12 jobs in 1 cohorts (12 jobs in 4 slots)" in proc.stdout
    folders = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(folders) == 12
    for folder in folders:
        config = OmegaConf.load(folder / ".hydra" / "config.yaml")
        summary = json.loads((folder / "summary.json").read_text())
        ckpt = load_checkpoint(folder / "checkpoints" / "final.pt")
        assert ckpt["meta"]["config"]["seed"] == config.seed == summary["seed"]
        assert config.total_steps <= summary["env_steps"] < config.total_steps + 40
        assert ckpt["optimizers"]["all"]["state"][0]["step"] == summary["updates"]  # its own step count
    proc = run_acx("report", str(sweep))
    assert proc.returncode == 0 and len(re.findall(r"^\| total_steps=\d+ \| 6 \|", proc.stdout, re.M)) == 2, (
        proc.stdout + proc.stderr[-2000:]
    )
    proc = run_acx("eval", f"ckpt={folders[1]}", "episodes=2", f"hydra.run.dir={tmp_path / 'eval'}")
    assert proc.returncode == 0 and "2 episodes of CartPole-v1" in proc.stdout, proc.stderr[-2000:]
    proc = run_acx("train", f"resume={folders[2]}", "total_steps=4000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((folders[2] / "summary.json").read_text())["env_steps"] >= 4000


@pytest.mark.slow
def test_kill_9_of_the_launcher_then_resume_finishes_every_member_and_sigint_saves_them_all(tmp_path: Path):
    """kill -9 of a cohort mid-sweep: every checkpoint on disk loads, and a multirun of resume= jobs (a
    cohort of resumed members) finishes each. Then SIGINT of that cohort saves every member."""
    sweep = tmp_path / "sweep"
    args = ["train", "-m", "hydra/launcher=population", "hydra.launcher.n_jobs=1", "seed=0,1,2", "stop=budget",
            "progress=false", "logger=none", "eval.episodes=2", "eval.every_steps=5000", "checkpoint.every_steps=500",
            "total_steps=1000000", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = subprocess.Popen([*ACX, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(sweep.glob("*/checkpoints/step_*.pt"))) < 6:  # two periodic checkpoints each
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    folders = sorted(p.parent for p in sweep.glob("*/.hydra"))
    assert len(folders) == 3
    stopped = {}
    for folder in folders:
        for path in (folder / "checkpoints").glob("*.pt"):
            load_checkpoint(path)  # whole
        stopped[folder] = load_checkpoint(folder)["meta"]["progress"]["env_steps"]
    resumes = ",".join(str(f) for f in folders)
    resumed = run_acx("train", "-m", "hydra/launcher=population", "hydra.launcher.n_jobs=1", f"resume={resumes}",
                      "total_steps=3000", f"hydra.sweep.dir={tmp_path / 'resumed'}")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "3 jobs in 1 cohorts (3 jobs in 3 slots)" in resumed.stdout  # resumed members share a cohort
    for folder in folders:
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["env_steps"] >= 3000 and summary["checkpoint"].endswith("final.pt"), folder
        steps = [json.loads(line)["env_step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps)) and steps[0] < stopped[folder] < steps[-1]
    # SIGINT: every member saves, and says how to resume
    proc = subprocess.Popen([*ACX, *args[:-1], f"hydra.sweep.dir={tmp_path / 'again'}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "again").glob("*/checkpoints/step_*.pt"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "3 members saved; resume each with: acx train resume=<folder>" in out
    for folder in (tmp_path / "again").glob("*/.hydra"):
        assert load_checkpoint(folder.parent)["meta"]["kind"] == "step"


@pytest.mark.slow
def test_optuna_batch_trains_as_one_cohort_with_pruning_per_member(tmp_path: Path):
    """hparams_search with hydra/launcher=population: a batch of 4 trials; a pruner that prunes every
    trial below 1e9 prunes each member at its own first evaluation, and the study records it."""
    import optuna

    sweep = tmp_path / "study"
    proc = run_acx(
        "train", "-m", "hparams_search=cartpole_nstep", "hydra/launcher=population", "hydra.launcher.n_jobs=1",
        "hydra.sweeper.n_jobs=4", "hydra.sweeper.n_trials=4", "algo.n_steps=5", "algo.num_envs=8",
        "+hydra.sweeper.pruner.lower=1e9", "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "~hydra.sweeper.pruner.n_startup_trials", "~hydra.sweeper.pruner.n_warmup_steps",
        *FAST, "total_steps=5000", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 jobs in 1 cohorts (4 jobs in 4 slots)" in proc.stdout
    study = optuna.load_study(study_name="cartpole_nstep", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["PRUNED"] * 4
    assert all(list(t.intermediate_values) == [1000] for t in study.trials)  # each pruned at its first eval
