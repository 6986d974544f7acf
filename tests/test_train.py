"""train(cfg) on the real config tree: rollouts, checkpoints, summaries, presets, determinism."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from acx.algo.networks import mlp_actor_critic
from acx.algo.update import ConstantLR, LinearLR, linear_lr
from acx.envs.factory import GymEnvFactory
from acx.run.build import build_env_factory, build_estimator, build_network
from acx.run.checkpoint import load_checkpoint, load_weights
from acx.run.rollout import RolloutCollector
from acx.run.train import train
from tests.conftest import FAST, compose_train, learner_of
from tests.test_config import EXPERIMENTS


def test_rollout_masks_autoreset_steps_and_bootstraps_truncation():
    factory = GymEnvFactory("CartPole-v1", max_episode_steps=7)  # truncates every 7 steps unless it falls
    envs = factory.make_vector(3, seed=0)
    torch.manual_seed(0)
    net = mlp_actor_critic(factory.observation_space, factory.action_space)
    collector = RolloutCollector(envs, learner_of(net), 1, n_steps=40, device=torch.device("cpu"))
    r = collector.collect()
    assert r.rows == [0] and r.rewards.shape == (40, 1, 3)
    done, valid, term = r.done[:, 0].numpy(), r.valid[:, 0].numpy(), r.terminated[:, 0].numpy()
    # the step after an episode end is the env's reset step: invalid, and only those are invalid
    np.testing.assert_array_equal(valid[1:], ~done[:-1])
    assert valid[0].all()
    truncated = done & ~term
    assert truncated.any(), "a 7-step limit must truncate some episodes"
    # V(s_{t+1}) is the next row's value: at a truncation that is V(final observation)
    torch.testing.assert_close(r.next_values[:-1], r.values[1:])
    with torch.no_grad():
        final_obs = r.obs[1:, 0][torch.as_tensor(truncated[:-1])]
        torch.testing.assert_close(net.value(final_obs), r.next_values[:-1, 0][torch.as_tensor(truncated[:-1])])
    # CartPole pays 1 per step: returns of finished episodes equal their lengths, at most 7
    ((returns, lengths),) = r.episodes
    assert returns == [float(n) for n in lengths]
    assert max(lengths) <= 7 and len(lengths) == int((done & valid).sum())
    assert r.transitions() == [int(valid.sum())]


def test_episodic_rollout_is_one_whole_episode():
    factory = GymEnvFactory("CartPole-v1")
    net = mlp_actor_critic(factory.observation_space, factory.action_space)
    collector = RolloutCollector(factory.make_vector(1, seed=1), learner_of(net), 1, n_steps=None,
                                 device=torch.device("cpu"))  # fmt: skip
    first = collector.collect()  # views into the collector's storage: check before collecting again
    assert first.done[-1, 0, 0] and not first.done[:-1].any() and first.valid.all()
    ((returns, lengths),) = first.episodes
    assert len(returns) == 1 and lengths[0] == len(first.rewards)
    second = collector.collect()
    assert not second.valid[0, 0, 0], "the next rollout starts with the env's reset step"
    assert second.valid[1:].all() and second.episodes[0][1][0] == len(second.rewards) - 1


def test_train_writes_checkpoints_summary_and_metrics(run_dir: Path):
    cfg = compose_train([*FAST, "total_steps=3000", "checkpoint.keep=2"], run_dir)
    summary = train(cfg)
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved == summary
    for key in ("solved", "solved_at_step", "env_steps", "wall_seconds", "best_eval_return", "final_eval_return"):
        assert key in saved
    assert saved["env_steps"] >= 3000 and saved["checkpoint"].endswith("checkpoints/final.pt")
    ckpt_dir = run_dir / "checkpoints"
    assert sorted(ckpt_dir.glob("final*")) and sorted(ckpt_dir.glob("best*"))
    assert len(list(ckpt_dir.glob("step_*.pt"))) == 2  # keep=2 newest periodic checkpoints
    assert (ckpt_dir / "latest").read_text() == "final.pt"

    ckpt = load_checkpoint(run_dir)  # a run dir resolves to its latest checkpoint
    meta = ckpt["meta"]
    assert meta["env_id"] == "CartPole-v1" and meta["acx_version"]
    assert meta["observation_space"] == {
        "type": "Box",
        "shape": [4],
        "dtype": "float32",
        "low": meta["observation_space"]["low"],
        "high": meta["observation_space"]["high"],
    }
    assert meta["action_space"] == {"type": "Discrete", "n": 2}
    assert meta["progress"]["env_steps"] == saved["env_steps"] and meta["progress"]["episodes"] > 0
    assert meta["config"]["algo"]["name"] == "nstep"
    assert set(ckpt["optimizers"]) == {"all"} and ckpt["optimizers"]["all"]["state"]
    assert isinstance(ckpt["rng"]["torch"], torch.Tensor)
    factory = build_env_factory(cfg.env)
    net = load_weights(build_network(cfg.network, factory, torch.device("cpu")), ckpt)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ckpt["model"].values(), strict=True))

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [row["env_step"] for row in rows]
    assert steps == sorted(steps)
    assert any("losses/total" in row for row in rows) and any("eval/return_mean" in row for row in rows)


def short_budget(experiment: str) -> list[str]:
    if "pong" in experiment or "atari" in experiment:  # many envs per update; short game for the final eval
        return ["total_steps=400", "eval.episodes=1", "env.max_episode_frames=400"]
    return ["total_steps=2000"]


ATARI_SLOW = [pytest.param(e, marks=pytest.mark.slow) if "pong" in e or "atari" in e else e for e in EXPERIMENTS]


@pytest.mark.parametrize("experiment", ATARI_SLOW)
def test_every_preset_runs(run_dir: Path, experiment: str):
    cfg = compose_train([f"experiment={experiment}", *FAST, *short_budget(experiment)], run_dir)
    summary = train(cfg)
    assert summary["env_steps"] >= cfg.total_steps or summary["solved"]
    assert np.isfinite(summary["final_eval_return"])
    assert load_checkpoint(summary["checkpoint"])["meta"]["config"]["seed"] == cfg.seed


@pytest.mark.parametrize("algo", ["episodic", "td0", "nstep", "ppo"])
def test_same_seed_same_run(tmp_path: Path, algo: str):
    def run(name: str):
        cfg = compose_train([f"algo={algo}", *FAST, "total_steps=3000", "seed=7"], tmp_path / name)
        train(cfg)
        weights = load_checkpoint(tmp_path / name / "checkpoints" / "final.pt")["model"]
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return weights, [{k: v for k, v in r.items() if k not in ("wall_time", "time/sps")} for r in rows]

    (w1, m1), (w2, m2) = run("a"), run("b")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert m1 == m2


def test_linear_lr_hand_values():
    assert [linear_lr(f) for f in (0.0, 0.25, 0.5, 1.0)] == [1.0, 0.75, 0.5, 0.0]
    assert linear_lr(0.5, final_fraction=0.1) == pytest.approx(0.55)
    assert linear_lr(1.0, final_fraction=0.1) == pytest.approx(0.1)
    assert linear_lr(1.3) == 0.0 and linear_lr(-0.1) == 1.0  # a resumed run past its budget: held at the ends
    assert LinearLR(final_fraction=0.1)(0.5) == pytest.approx(0.55) and ConstantLR()(0.7) == 1.0


def test_linear_lr_schedule_in_training_and_across_resume(tmp_path: Path):
    """Every update's lr is 7e-4 x (1 - steps done before it / total_steps), also after a resume."""
    total, first_part = 4000, 2000
    args = [*FAST, "lr_schedule=linear", "log.every_updates=1", f"total_steps={total}"]
    train(compose_train([*args, f"total_steps={first_part}"], tmp_path / "a"))
    # resume: same run dir, the full budget; the schedule follows env steps, not this process's updates
    cfg = compose_train([*args, f"resume={tmp_path / 'a'}"], tmp_path / "a")
    summary = train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train/lr" in r]
    # a row is logged after its update: the update's lr came from the env steps of the row before it
    before = [0] + [r["env_step"] for r in train_rows[:-1]]
    first_end = next(r["env_step"] for r in train_rows if r["env_step"] >= first_part)
    expected = [7e-4 * (1 - b / (first_part if b < first_end else total)) for b in before]
    assert [r["train/lr"] for r in train_rows] == pytest.approx(expected, rel=1e-6)
    assert train_rows[-1]["train/lr"] < 7e-4 * 0.02  # nearly zero at the end of the budget
    saved = load_checkpoint(summary["checkpoint"])["optimizers"]["all"]["param_groups"][0]
    assert saved["initial_lr"] == pytest.approx(7e-4)  # the base the schedule scales, kept across resumes


def test_the_estimator_is_a_plain_partial_without_hydras_wrapper():
    from hydra.utils import instantiate

    node = {"_target_": "acx.algo.returns.gae_advantages", "_partial_": True, "gae_lambda": 0.9}
    hydra_fn = instantiate(node)
    fn = build_estimator(node)
    assert type(fn) is functools.partial and fn.keywords == {"gae_lambda": 0.9}
    rewards, values, next_values = torch.rand(5, 3), torch.rand(5, 3), torch.rand(5, 3)
    terminated = torch.rand(5, 3) < 0.2
    done = terminated | (torch.rand(5, 3) < 0.1)
    for a, b in zip(hydra_fn(rewards, values, next_values, terminated, done, gamma=0.9),
                    fn(rewards, values, next_values, terminated, done, gamma=0.9), strict=True):  # fmt: skip
        assert torch.equal(a, b)


def test_an_error_while_building_closes_what_was_built(tmp_path: Path, monkeypatch):
    """Resources are registered as soon as they exist: a failure later in the build closes the training
    and eval envs and the loggers."""
    import acx.run.cohort as cohort_module
    from acx.run.loggers import JsonlLogger

    made, closed, jsonl = [], [], []
    real_make_vector, real_jsonl_init = GymEnvFactory.make_vector, JsonlLogger.__init__

    def make_vector(self, *args, **kwargs):
        envs = real_make_vector(self, *args, **kwargs)
        real_close = envs.close
        envs.close = lambda: (closed.append(envs), real_close())  # CartPole's vector env keeps no `closed` flag
        made.append(envs)
        return envs

    def jsonl_init(self, *args, **kwargs):
        real_jsonl_init(self, *args, **kwargs)
        jsonl.append(self)

    def broken_window(*args, **kwargs):
        raise RuntimeError("built last, fails")

    monkeypatch.setattr(GymEnvFactory, "make_vector", make_vector)
    monkeypatch.setattr(JsonlLogger, "__init__", jsonl_init)
    monkeypatch.setattr(cohort_module, "MetricsWindow", broken_window)
    with pytest.raises(RuntimeError, match="built last"):
        train(compose_train([*FAST, "total_steps=1000"], tmp_path / "run"))
    assert len(made) == 2 and {id(e) for e in closed} == {id(e) for e in made}, "training and eval envs are closed"
    assert len(jsonl) == 1 and jsonl[0].file.closed
