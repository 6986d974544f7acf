"""PPO (algo=ppo): the clipped losses against hand-computed values, the minibatch epochs, the
degenerate case that is A2C, the presets, exact resume, the population launcher, and learning."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from acx.algo.losses import ActorCriticLoss, PPOLoss
from acx.algo.networks import mlp_actor_critic
from acx.config import validate_train_config
from acx.envs.factory import GymEnvFactory
from acx.errors import ConfigError
from acx.run.build import build_estimator
from acx.run.checkpoint import load_checkpoint
from acx.run.rollout import RolloutCollector
from acx.run.train import train
from acx.sweep.grouping import why_alone
from tests.conftest import FAST, compose_train, learner_of, resume_copy, run_acx
from tests.test_config import EXPERIMENTS

# ---- the loss ----------------------------------------------------------------------------------


def test_clipped_surrogate_hand_values_inside_and_outside_the_clip_range():
    # ratios r and advantages A (clip 0.2), the last entry masked out:
    #   r=1.1 A=+1: inside           -> min(1.1, 1.1)    =  1.1, gradient flows
    #   r=1.5 A=+2: above, A > 0     -> min(3.0, 2.4)    =  2.4, clipped: no gradient
    #   r=0.5 A=-1: below, A < 0     -> min(-0.5, -0.8)  = -0.8, clipped: no gradient
    #   r=1.5 A=-1: above, A < 0     -> min(-1.5, -1.2)  = -1.5, the unclipped term (pessimistic): gradient
    #   r=0.9 A=-2: inside           -> min(-1.8, -1.8)  = -1.8, gradient flows
    ratio = torch.tensor([1.1, 1.5, 0.5, 1.5, 0.9, 3.0])
    adv = torch.tensor([1.0, 2.0, -1.0, -1.0, -2.0, 5.0])
    mask = torch.tensor([True, True, True, True, True, False])
    old = torch.tensor([-0.3, -1.0, -0.7, -0.2, -1.5, -0.1])
    log_probs = (old + ratio.log()).requires_grad_()
    zeros = torch.zeros(6)
    loss = PPOLoss(clip_range=0.2, vf_coef=0.0, ent_coef=0.0)
    terms = loss(log_probs, zeros, zeros, adv, zeros, mask, old_log_probs=old, old_values=zeros)
    expected = -(1.1 + 2.4 - 0.8 - 1.5 - 1.8) / 5
    assert terms["policy"].item() == pytest.approx(expected, abs=1e-6)
    terms["total"].backward()
    # d/dlog pi of -r A / 5 is -r A / 5 where the term is not clipped, 0 where it is (and masked)
    grad = torch.tensor([-1.1 * 1.0, 0.0, 0.0, -1.5 * -1.0, -0.9 * -2.0, 0.0]) / 5
    torch.testing.assert_close(log_probs.grad, grad)
    assert terms["clip_fraction"].item() == pytest.approx(3 / 5)  # |r - 1| > 0.2: 1.5, 0.5, 1.5
    r = ratio[:5]
    assert terms["approx_kl"].item() == pytest.approx(((r - 1) - r.log()).mean().item(), abs=1e-6)


def test_unclipped_surrogate_is_ratio_times_advantage():
    ratio, adv = torch.tensor([1.5, 0.5]), torch.tensor([2.0, -1.0])
    old = torch.zeros(2)
    z = torch.zeros(2)
    terms = PPOLoss(clip_range=None, vf_coef=0.0)(ratio.log(), z, z, adv, z, torch.ones(2, dtype=torch.bool), old, z)
    assert terms["policy"].item() == pytest.approx(-(3.0 - 0.5) / 2)
    assert "clip_fraction" not in terms


def test_value_clipping_hand_values():
    # V_old = 0, c_v = 0.5, mse:
    #   V=1.0 R=2: plain (1-2)^2 = 1, clipped V 0.5: (0.5-2)^2 = 2.25 -> 2.25 (clipped: no gradient)
    #   V=1.0 R=0: plain 1, clipped 0.25                                -> 1    (plain: 2(V-R) gradient)
    #   V=0.2 R=1: inside, both 0.64                                    -> 0.64
    values = torch.tensor([1.0, 1.0, 0.2]).requires_grad_()
    returns = torch.tensor([2.0, 0.0, 1.0])
    z, mask = torch.zeros(3), torch.ones(3, dtype=torch.bool)
    loss = PPOLoss(clip_range=0.2, clip_range_vf=0.5, vf_coef=0.5)
    terms = loss(z, z, values, z, returns, mask, old_log_probs=z, old_values=z)
    assert terms["value"].item() == pytest.approx(0.5 * (2.25 + 1.0 + 0.64) / 3)
    terms["value"].backward()
    grad = 0.5 * torch.tensor([0.0, 2 * (1.0 - 0.0), 2 * (0.2 - 1.0)]) / 3
    torch.testing.assert_close(values.grad, grad)
    unclipped = PPOLoss(clip_range=0.2, clip_range_vf=None, vf_coef=0.5)(
        z, z, values, z, returns, mask, old_log_probs=z, old_values=z
    )
    assert unclipped["value"].item() == pytest.approx(0.5 * (1.0 + 1.0 + 0.64) / 3)


# ---- the update --------------------------------------------------------------------------------


def short_rollout(loss=None, n_envs: int = 4, n_steps: int = 40, **options):
    """A real CartPole rollout with a 7-step time limit (many autoreset, invalid, steps), collected by a
    cohort of one whose learner has ``loss`` (PPO's) and ``options``."""
    factory = GymEnvFactory("CartPole-v1", max_episode_steps=7)
    torch.manual_seed(0)
    net = mlp_actor_critic(factory.observation_space, factory.action_space)
    estimator = build_estimator({"_target_": "acx.algo.returns.gae_advantages", "_partial_": True, "gae_lambda": 0.95})
    hyper = {"gae_lambda": 0.95, **options.pop("hyper", {})}
    learner = learner_of(net, loss=loss or PPOLoss(), estimator=estimator, hyper=hyper, **options)
    collector = RolloutCollector(factory.make_vector(n_envs, seed=0), learner, 1, n_steps, torch.device("cpu"),
                                 store_log_probs=True)  # fmt: skip
    r = collector.collect()
    adv, ret = learner.estimate(r.rows, r.rewards, r.values, r.next_values, r.terminated, r.done, r.valid)
    return learner, r, r.batch(adv, ret)


def test_minibatch_epochs_visit_every_valid_transition_once_per_epoch(monkeypatch):
    learner, rollout, batch = short_rollout(epochs=3, minibatches=4)
    valid = batch.mask[0]
    assert not valid.all(), "the 7-step limit must leave autoreset steps in the rollout"
    seen = []
    from acx.algo import update

    take = update.Batch.take
    monkeypatch.setattr(
        update.Batch,
        "take",
        lambda self, index, mask: seen.append(index[0][mask[0]].clone()) or take(self, index, mask),
    )
    ((stats,), failed) = learner.update(batch, [0])
    assert not failed and len(seen) == 3 * 4 and stats["train/gradient_steps"] == 12
    expected = torch.nonzero(valid).squeeze(-1)
    orders = []
    for epoch in range(3):
        parts = seen[4 * epoch : 4 * epoch + 4]
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1
        visited = torch.cat(parts)
        assert torch.equal(visited.sort().values, expected)  # each valid transition exactly once
        assert valid[visited].all()  # never an autoreset step
        orders.append(visited)
    assert not torch.equal(orders[0], orders[1]), "each epoch reshuffles"
    for key in ("train/approx_kl", "train/clip_fraction", "train/explained_variance", "losses/policy"):
        assert math.isfinite(float(stats[key])), key


@pytest.mark.parametrize("clip_range", [None, 0.2])
def test_one_epoch_of_one_minibatch_is_exactly_the_nstep_update(clip_range):
    """epochs=1, minibatches=1: the ratio is 1, and the step equals A2C's bit for bit (weights and
    optimizer state), on a rollout with autoreset steps; clipping changes nothing at ratio 1. (Only
    the first step on a rollout: after it the ratio is no longer 1.)"""
    coefs = dict(vf_coef=0.5, ent_coef=0.01, normalize_advantage=True)
    ppo, rollout, batch = short_rollout(PPOLoss(clip_range=clip_range, **coefs))
    a2c = learner_of(copy.deepcopy(ppo.stack.template), loss=ActorCriticLoss(**coefs), hyper={"gae_lambda": 0.95})
    # the old log-probs as the whole batch evaluates them: the collector's per-step ones are the same
    # numbers here, but a matmul may round by one ulp differently for another batch size elsewhere
    with torch.no_grad():
        log_probs = ppo.net.evaluate_actions(batch.obs[0], batch.actions[0])[0][None]
    batch = dataclasses.replace(batch, log_probs=log_probs)
    (sa,), _ = a2c.update(batch, [0])
    (sp,), _ = ppo.update(batch, [0])
    for name in a2c.stack.tensors:
        assert torch.equal(a2c.stack.tensors[name], ppo.stack.tensors[name]), name
    state_a, state_p = (
        a2c.optimizers["all"].member_state_dict(0)["state"],
        ppo.optimizers["all"].member_state_dict(0)["state"],
    )
    assert all(torch.equal(state_a[i]["exp_avg_sq"], state_p[i]["exp_avg_sq"]) for i in state_a)
    assert sa["losses/value"] == sp["losses/value"] and sa["train/grad_norm"] == sp["train/grad_norm"]


def test_target_kl_stops_the_update_early():
    learner, _, batch = short_rollout(
        epochs=10, minibatches=4, target_kl=1e-4, hyper={"lr_all": 3e-2, "gae_lambda": 0.95}
    )
    ((stats,), _) = learner.update(batch, [0])  # large steps: the policy moves away fast
    assert 1 <= stats["train/gradient_steps"] < 40


# ---- the config --------------------------------------------------------------------------------


def test_algo_ppo_composes_and_the_other_variants_take_one_step(tmp_path: Path):
    cfg = compose_train(["algo=ppo"], tmp_path)
    config = validate_train_config(cfg)
    assert config.algo.epochs == 4 and config.algo.minibatches == 4
    assert isinstance(instantiate(cfg.algo.loss), PPOLoss) and cfg.algo.loss.clip_range == 0.2
    for algo in ("nstep", "td0", "episodic"):
        a = validate_train_config(compose_train([f"algo={algo}"], tmp_path)).algo
        assert (a.epochs, a.minibatches, a.target_kl) == (1, 1, None)


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if e.startswith("ppo_")])
def test_ppo_presets_compose(tmp_path: Path, experiment: str):
    cfg = compose_train([f"experiment={experiment}"], tmp_path)
    config = validate_train_config(cfg)
    assert config.algo.name == "ppo" and config.algo.epochs > 1
    assert why_alone(cfg) is None  # PPO jobs share cohorts


def test_ppo_preset_values(tmp_path: Path):
    atari = compose_train(["experiment=ppo_atari"], tmp_path)
    assert (atari.algo.num_envs, atari.algo.n_steps, atari.algo.loss.clip_range) == (8, 128, 0.1)
    assert atari.network._target_.endswith("cnn_actor_critic") and atari.optimizer.lr == 2.5e-4
    pendulum = compose_train(["experiment=ppo_pendulum"], tmp_path)
    assert pendulum.algo.num_envs * pendulum.algo.n_steps // pendulum.algo.minibatches == 64  # zoo batch


def test_too_many_minibatches_is_one_line(tmp_path: Path):
    cfg = compose_train(["algo=ppo", "algo.num_envs=2", "algo.n_steps=4", "algo.minibatches=9"], tmp_path)
    with pytest.raises(ConfigError, match=r"algo.minibatches: must be at most .* = 8 .* got 9"):
        validate_train_config(cfg)
    with pytest.raises(ConfigError, match=r"algo.loss.clip_range: must be > 0"):
        validate_train_config(compose_train(["algo=ppo", "algo.loss.clip_range=0"], tmp_path))


# ---- training ----------------------------------------------------------------------------------

PPO_FAST = ["algo=ppo", *FAST, "stop=budget", "algo.n_steps=64", "log.every_updates=1"]


def test_ppo_trains_logs_its_statistics_and_resumes_exactly(tmp_path: Path):
    """A run's rows hold approx_kl, clip_fraction and explained_variance; resuming one checkpoint
    twice gives the same weights, optimizer states and rows (RNG, shuffles and Adam restored), and
    Adam counted epochs x minibatches steps per update across the resume."""
    first = tmp_path / "first"
    train(compose_train([*PPO_FAST, "total_steps=1024"], first))
    rows = [json.loads(line) for line in (first / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "train/approx_kl" in r]
    assert logged and all(k in logged[0] for k in ("train/clip_fraction", "train/explained_variance"))
    assert logged[0]["train/gradient_steps"] == 16

    (a, rows_a), (b, rows_b) = (resume_copy(first, tmp_path / name, [*PPO_FAST, "total_steps=2048"]) for name in "ab")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert rows_a == rows_b
    state_a, state_b = a["optimizers"]["all"]["state"], b["optimizers"]["all"]["state"]
    assert all(torch.equal(state_a[i]["exp_avg"], state_b[i]["exp_avg"]) for i in state_a)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    updates = a["meta"]["progress"]["updates"]
    assert int(state_a[0]["step"]) == 16 * updates
    start = load_checkpoint(first / "checkpoints" / "final.pt")
    assert not torch.equal(start["model"]["policy_head.out.weight"], a["model"]["policy_head.out.weight"])


def test_ppo_through_the_cli_train_eval_and_the_population_launcher(tmp_path: Path):
    sweep = tmp_path / "sweep"
    proc = run_acx(
        "train", "-m", "hydra/launcher=population", "hydra.launcher.n_jobs=1", "algo=ppo", "seed=0,1",
        *FAST, "stop=budget", "total_steps=1024", "logger=tensorboard", "log.every_updates=1",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 jobs in 1 cohorts (2 jobs in 2 slots)" in proc.stdout
    folders = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(folders) == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folders[0] / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"]) | set(events.Tags().get("tensors", []))
    assert {"train/approx_kl", "train/clip_fraction", "train/explained_variance"} <= tags
    proc = run_acx("eval", f"ckpt={folders[0]}", "episodes=2", f"hydra.run.dir={tmp_path / 'eval'}")
    assert proc.returncode == 0 and "2 episodes of CartPole-v1" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_solves_cartpole_within_a_budget(tmp_path: Path, seed: int):
    """algo=ppo alone (CleanRL's rollout and epochs, the default Adam 7e-4): 10 deterministic
    episodes >= 475, confirmed over 50 more, within 100k env steps."""
    overrides = ["algo=ppo", f"seed={seed}", "progress=false", "logger=none", "total_steps=100000"]
    cfg = compose_train(overrides, tmp_path)
    summary = train(cfg)
    assert summary["solved"] and summary["solved_at_step"] <= 100_000, summary


def test_anneal_clip_follows_the_lr_schedule():
    from acx.algo.update import linear_lr

    class Recording(PPOLoss):  # the real loss, remembering the clip scale each call was given
        scales: list = []

        def __call__(self, *args, **kwargs):
            self.scales.append(kwargs.get("clip_scale"))
            return super().__call__(*args, **kwargs)

    loss = Recording(clip_range=0.2, clip_range_vf=0.4, anneal_clip=True)
    learner, _, batch = short_rollout(loss, epochs=2, minibatches=2, lr_schedule=linear_lr)
    learner.scale_lr([0.75])  # lr_schedule=linear with 75% of the budget done
    assert learner.clip_scale.tolist() == [0.25] and learner.optimizers["all"].lr_of(0) == pytest.approx(2.5e-4)
    learner.update(batch, [0])
    assert len(loss.scales) == 4 and all(s.tolist() == [0.25] for s in loss.scales)  # each step: this member's
    ratio = torch.tensor([[1.04, 1.06]])  # outside 1 +- 0.05 (0.2 x 0.25) only the second
    z, mask = torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool)
    terms = loss(ratio.log(), z, z, z + 1, z, mask, old_log_probs=z, old_values=z, clip_scale=torch.tensor([0.25]))
    assert terms["clip_fraction"].item() == 0.5
    assert loss(ratio.log(), z, z, z + 1, z, mask, old_log_probs=z, old_values=z)["clip_fraction"].item() == 0.0
    fixed = PPOLoss(clip_range=0.2)
    learner, _, _ = short_rollout(fixed, lr_schedule=linear_lr)
    learner.scale_lr([0.75])
    assert "clip_scale" not in learner.loss_coefficients([0])  # not annealed: the loss's own ranges
