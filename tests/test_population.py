"""Population training (acx/run/population.py, hydra/launcher=population): members learn exactly as they
would alone, stay independent, and leave ordinary run folders."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from acx.algo.losses import ActorCriticLoss
from acx.algo.update import Updater
from acx.envs.factory import GymEnvFactory
from acx.errors import NonFiniteError
from acx.run.build import build_network, seed_everything
from acx.run.population import MemberEnvs, Population, group_key, open_member, plan_groups, train_population, why_alone
from acx.run.rollout import Rollout
from hydra_plugins.acx_population_launcher.population_launcher import SweepConfigs
from tests.conftest import CONF, FAST, compose_train, run_acx


def members_of(tmp_path: Path, overrides: list[list[str]], resources: contextlib.ExitStack):
    cfgs = [compose_train([*FAST, *o], tmp_path / str(i)) for i, o in enumerate(overrides)]
    return [open_member(i, cfg, None, resources, time.perf_counter()) for i, cfg in enumerate(cfgs)], cfgs


def member_rollout(rollout: Rollout, k: int, n: int) -> Rollout:
    """Member k's columns of a population rollout, as its own collector would have stored them."""
    cols = slice(k * n, (k + 1) * n)
    fields = ("obs", "actions", "rewards", "terminated", "done", "valid", "values", "next_values")
    return Rollout(**{f: getattr(rollout, f)[:, cols] for f in fields}, episode_returns=[], episode_lengths=[],
                   episode_envs=[])  # fmt: skip


def test_members_update_exactly_as_they_would_alone(tmp_path: Path):
    """For one rollout, with different lr, clip norm, gamma, gae_lambda and loss coefficients per member,
    the population's targets and two optimizer steps equal each member's own single-run Updater's; the
    tiny clip norm of member 1 changes no other member."""
    per_member = [
        ["seed=0", "optimizer.lr=7e-4", "algo.max_grad_norm=0.5"],
        ["seed=1", "optimizer.lr=3e-3", "algo.max_grad_norm=0.001", "algo.gamma=0.9", "algo.loss.ent_coef=0.05"],
        ["seed=2", "optimizer.lr=1e-4", "algo.max_grad_norm=null", "algo.advantage.gae_lambda=0.9",
         "algo.loss.vf_coef=0.25", "algo.reward_scale=0.1"],
    ]  # fmt: skip
    with contextlib.ExitStack() as resources:
        members, cfgs = members_of(tmp_path, per_member, resources)
        alone = []
        for m, cfg in zip(members, cfgs, strict=True):
            net = copy.deepcopy(m.run.state.net)
            opt = type(m.run.state.optimizers["all"])(net.parameters(), **{
                k: v for k, v in m.run.state.optimizers["all"].param_groups[0].items() if k != "params"})  # fmt: skip
            loss = ActorCriticLoss(
                **{k: v for k, v in OmegaConf.to_container(cfg.algo.loss).items() if k != "_target_"}
            )
            alone.append((net, Updater(net, {"all": opt}, loss, cfg.algo.max_grad_norm)))
        pop = Population(members, cfgs[0], members[0].run.factory, torch.device("cpu"))
        n = pop.num_envs
        for _ in range(2):
            rollout = pop.collector.collect()
            advantages, returns = pop.estimate(rollout)
            for k, (cfg, (_, updater)) in enumerate(zip(cfgs, alone, strict=True)):
                own = member_rollout(rollout, k, n)
                estimator = pop.estimator
                extra = {"gae_lambda": cfg.algo.advantage.gae_lambda}
                adv_k, ret_k = estimator(own.rewards * cfg.algo.reward_scale, own.values, own.next_values,
                                         own.terminated, own.done, gamma=cfg.algo.gamma, **extra)  # fmt: skip
                torch.testing.assert_close(advantages[:, k * n : (k + 1) * n], adv_k)
                updater.step(own, adv_k, ret_k)
            stats, failed = pop.update(rollout, advantages, returns, diagnostics=True)
            assert failed == []
            assert stats[1]["train/grad_norm"] > 0.001  # member 1 was clipped
        for k, (net, _) in enumerate(alone):
            pop.sync(k)
            for (name, mine), theirs in zip(members[k].run.state.net.named_parameters(), net.parameters(), strict=True):
                torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6, msg=f"member {k} {name}")


def test_member_starts_from_the_single_runs_weights_and_joined_cartpole_matches_its_own_envs(tmp_path: Path):
    with contextlib.ExitStack() as resources:
        members, cfgs = members_of(tmp_path, [["seed=3"], ["seed=11"]], resources)
        for m, cfg in zip(members, cfgs, strict=True):
            seed_everything(cfg.seed)
            single = build_network(cfg.network, GymEnvFactory("CartPole-v1"), torch.device("cpu"))
            for a, b in zip(single.parameters(), m.run.state.net.parameters(), strict=True):
                assert torch.equal(a, b)
        factory = GymEnvFactory("CartPole-v1")
        own = [factory.make_vector(4, seed=s) for s in (3, 11)]
        joined = MemberEnvs([factory.make_vector(4, seed=s) for s in (3, 11)])
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


def test_same_population_twice_is_identical_and_nan_member_stops_alone(tmp_path: Path):
    """reward_scale=1e38 overflows member 1's targets at its first update: it stops with the
    message in its summary and no weight of it changes; the others train on, the same both times."""
    per_member = [["seed=0"], ["seed=1", "algo.reward_scale=1e38"], ["seed=2", "optimizer.lr=1e-3"]]
    finals = []
    for attempt in range(2):
        cfgs = [compose_train([*FAST, "total_steps=3000", *o], tmp_path / f"{attempt}_{i}")
                for i, o in enumerate(per_member)]  # fmt: skip
        results = train_population(cfgs)
        assert isinstance(results[1], NonFiniteError) and "non-finite" in str(results[1])
        summary = json.loads((tmp_path / f"{attempt}_1" / "summary.json").read_text())
        assert "non-finite" in summary["error"] and summary["updates"] == 0
        for i in (0, 2):
            assert results[i]["env_steps"] >= 3000 and "error" not in results[i]
        finals.append([torch.load(tmp_path / f"{attempt}_{i}" / "checkpoints" / "final.pt")["model"] for i in (0, 2)])
    for a, b in zip(*finals, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_grouping_and_who_trains_alone(tmp_path: Path):
    base = compose_train(FAST, tmp_path)
    other_seed = compose_train([*FAST, "seed=5", "optimizer.lr=1e-3", "algo.gamma=0.95"], tmp_path / "b")
    assert group_key(base) == group_key(other_seed)
    assert group_key(base) != group_key(compose_train([*FAST, "algo.num_envs=4"], tmp_path / "c"))
    assert group_key(base) != group_key(compose_train([*FAST, "env=acrobot"], tmp_path / "d"))
    assert why_alone(base) is None
    assert "episodic" in why_alone(compose_train([*FAST, "algo=episodic"], tmp_path / "e"))
    assert "resumes" in why_alone(compose_train([*FAST, "resume=somewhere"], tmp_path / "f"))
    assert "CNN" in why_alone(compose_train(["env=pong"], tmp_path / "g"))
    # 64 of one key on 2 processes: 2 populations of 32; max_members 16: 4 of 16; two keys: kept apart
    assert [len(g) for g in plan_groups(["a"] * 64, 64, 2)] == [32, 32]
    assert [len(g) for g in plan_groups(["a"] * 64, 16, 2)] == [16, 16, 16, 16]
    groups = plan_groups(["a", "b", "a", "b", "a"], 64, 1)
    assert groups == [[0, 2, 4], [1, 3]]
    assert plan_groups(["a"], 64, 8) == [[0]]
    assert [len(g) for g in plan_groups(["a"] * 12, 64, 4)] == [12]  # parts of 6 would not win back a process start


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
def test_population_launcher_folders_eval_resume_and_report(tmp_path: Path):
    """A real multirun: 4 members with different seeds and lrs, and an episodic job that runs on its
    own; each folder is a single run's: its config, a checkpoint acx eval replays, a member that
    acx train resume= continues alone; acx report reads the sweep."""
    sweep = tmp_path / "sweep"
    proc = run_acx(
        "train", "-m", "hydra/launcher=population", "hydra.launcher.n_jobs=1", "algo=nstep,episodic", "seed=0,1",
        "optimizer.lr=7e-4,2e-3", *FAST, "total_steps=4000", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 jobs in 1 populations (4 members)" in proc.stdout
    assert proc.stdout.count("runs on its own (the episodic variant") == 4
    folders = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(folders) == 8
    for folder in folders:
        config = OmegaConf.load(folder / ".hydra" / "config.yaml")
        summary = json.loads((folder / "summary.json").read_text())
        ckpt = torch.load(folder / "checkpoints" / "final.pt", weights_only=True)
        meta = json.loads(ckpt["meta"])
        assert meta["config"]["seed"] == config.seed == summary["seed"]
        assert meta["config"]["optimizer"]["lr"] == config.optimizer.lr
        assert ckpt["optimizers"]["all"]["param_groups"][0]["lr"] == config.optimizer.lr
        assert summary["env_steps"] >= 4000
    proc = run_acx("report", str(sweep))
    assert (
        proc.returncode == 0 and len(re.findall(r"^\| algo=\w+ optimizer\.lr=\S+ \| 2 \|", proc.stdout, re.M)) == 4
    ), proc.stdout + proc.stderr[-2000:]
    proc = run_acx("eval", f"ckpt={folders[1]}", "episodes=2", f"hydra.run.dir={tmp_path / 'eval'}")
    assert proc.returncode == 0 and "2 episodes of CartPole-v1" in proc.stdout, proc.stderr[-2000:]
    proc = run_acx("train", f"resume={folders[2]}", "total_steps=6000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = json.loads((folders[2] / "summary.json").read_text())
    assert resumed["env_steps"] >= 6000 and resumed["seed"] == 1
    steps = [json.loads(line)["env_step"] for line in (folders[2] / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)


@pytest.mark.slow
def test_optuna_batch_trains_as_one_population_with_pruning_per_member(tmp_path: Path):
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
    assert "4 jobs in 1 populations (4 members)" in proc.stdout
    study = optuna.load_study(study_name="cartpole_nstep", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["PRUNED"] * 4
    assert all(list(t.intermediate_values) == [1000] for t in study.trials)  # each pruned at its first eval


@pytest.mark.parametrize(
    "overrides",
    [[], ["algo=td0"], ["env=pendulum", "~tuned"], ["env=pendulum"]],
    ids=["nstep", "td0", "pendulum", "pendulum-tuned"],  # tuned: normalised obs and rewards (conf/tuned/)
)
def test_member_follows_the_single_run_of_its_seed(tmp_path: Path, overrides: list[str]):
    """A member of a population of 3 ends 2,000 env steps where `acx train seed=1` ends: the same env
    steps and episodes, weights equal to float rounding (its envs, initial weights and sampling
    stream are the single run's; only batched matmuls round differently)."""
    from acx.run.train import train

    common = [*FAST, "total_steps=2000", "stop=budget", *overrides]
    single = train(compose_train([*common, "seed=1"], tmp_path / "single"))
    cfgs = [compose_train([*common, f"seed={s}"], tmp_path / f"member{s}") for s in (0, 1, 2)]
    member = train_population(cfgs)[1]
    for key in ("env_steps", "episodes", "updates"):
        assert member[key] == single[key], key
    a = torch.load(tmp_path / "single" / "checkpoints" / "final.pt")["model"]
    b = torch.load(tmp_path / "member1" / "checkpoints" / "final.pt")["model"]
    assert a.keys() == b.keys()  # normalisation statistics included (each member's own)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
