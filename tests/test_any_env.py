"""Any env out of the box (acx/envs/factory.py, acx/algo/normalize.py): a user's env module, env kwargs and
wrappers, float64 and Discrete observations, observation and reward normalisation saved with the
weights, truncation bootstrapping, and MuJoCo."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from acx.algo.normalize import RunningMeanStd
from acx.envs.factory import GymEnvFactory
from acx.errors import ConfigError
from acx.run.build import build_from_checkpoint
from acx.run.checkpoint import load_checkpoint
from acx.run.train import train
from tests.conftest import ACX, FAST, ROOT, compose_train, run_acx

needs_mujoco = pytest.mark.skipif(importlib.util.find_spec("mujoco") is None, reason="needs the mujoco extra")
TOY = "tests.toy_envs"


def test_running_mean_std_merges_batches_as_one_and_per_member():
    """Chan's parallel update over masked batches equals the moments of everything seen at once
    (the starting count epsilon aside), for one run and for each member of stacked statistics."""
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 2)) for n in (5, 1, 17)]
    rms = RunningMeanStd((2,))
    for b in batches:
        rms.update(torch.from_numpy(b))
    seen = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean.numpy(), seen.mean(0) * 23 / (23 + 1e-4), rtol=1e-6)
    np.testing.assert_allclose(rms.var.numpy(), seen.var(0), rtol=1e-4)
    assert float(rms.count) == pytest.approx(23 + 1e-4)
    stacked = RunningMeanStd((2,))  # a cohort's: each statistic with a member dim in front (acx.algo.stack)
    stacked.mean, stacked.var = torch.zeros(3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64)
    stacked.count = torch.full((3,), 1e-4, dtype=torch.float64)
    x = torch.from_numpy(rng.normal(size=(3, 8, 2)))
    mask = torch.from_numpy(rng.random((3, 8)) > 0.4)
    stacked.update(x, mask)
    for k in range(3):
        alone = RunningMeanStd((2,))
        alone.update(x[k][mask[k]])
        torch.testing.assert_close(stacked.mean[k], alone.mean)
        torch.testing.assert_close(stacked.var[k], alone.var)


def test_float64_discrete_and_unsupported_spaces(tmp_path: Path):
    """float64 Box observations (MuJoCo's dtype) train and evaluate; Discrete ones are one-hot;
    a Tuple space is one line naming it."""
    bandit = GymEnvFactory(f"{TOY}:SignBandit-v0")
    assert bandit.observation_space.dtype == np.float64 and bandit.id == "SignBandit-v0"
    for variant in ("episodic", "nstep"):  # each member at its own row, and all in lockstep
        overrides = [*FAST, f"algo={variant}", f"env.id={TOY}:SignBandit-v0", "normalize.obs=false", "total_steps=200"]
        assert train(compose_train(overrides, tmp_path / variant))["env_steps"] >= 200
    lake = GymEnvFactory("FrozenLake-v1")
    assert lake.observation_space == gym.spaces.Box(0.0, 1.0, (16,), np.float32)
    obs, _ = lake.make_vector(2, seed=0).reset(seed=0)
    np.testing.assert_array_equal(obs, np.eye(16, dtype=np.float32)[[0, 0]])  # both start in state 0
    assert lake.make_single().reset(seed=0)[0].tolist() == np.eye(16)[0].tolist()
    summary = train(compose_train([*FAST, "env.id=FrozenLake-v1", "total_steps=400"], tmp_path / "lake"))
    assert summary["env_steps"] >= 400
    with pytest.raises(ConfigError, match=r"Blackjack-v1 has Tuple\(Discrete\(32\).*Box, Discrete and Dict"):
        GymEnvFactory("Blackjack-v1")


def test_env_kwargs_and_wrappers_reach_the_env():
    factory = GymEnvFactory(
        "Pendulum-v1",
        kwargs={"g": 1.5},
        wrappers=[
            {"_target_": "gymnasium.wrappers.TimeAwareObservation"},
            {"_target_": "gymnasium.wrappers.TransformReward", "func": {"_target_": "builtins.abs", "_partial_": True}},
        ],
    )
    env = factory.make_single()
    assert env.unwrapped.g == 1.5
    assert factory.observation_space.shape == (4,)  # cos, sin, speed, and the time step the wrapper adds
    env.reset(seed=0)
    assert env.step(np.zeros(1, dtype=np.float32))[1] >= 0  # |reward|: the second wrapper is outermost
    envs = factory.make_vector(3, seed=0)
    assert envs.reset(seed=0)[0].shape == (3, 4)
    with pytest.raises(ConfigError, match=r"env.wrappers\[0\]: .*"):
        GymEnvFactory("Pendulum-v1", wrappers=[{"_target_": "gymnasium.wrappers.TimeLimit", "nonsense": 1}])


def test_own_env_module_through_the_cli_then_acx_eval_from_elsewhere_with_ckpt_only(tmp_path: Path):
    """`acx train env.id=tests.toy_envs:SignBandit-v0 normalize.obs=true` learns the bandit (20 of
    20; it cannot without normalisation); `acx eval ckpt=...` run from another folder imports the
    module from where the checkpoint says and replays the training run's final eval."""
    run = tmp_path / "run"
    proc = run_acx("train", f"env.id={TOY}:SignBandit-v0", "normalize.obs=true", "total_steps=20000", "stop=budget",
                   "logger=none", "progress=false", f"hydra.run.dir={run}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_id"] == "SignBandit-v0" and summary["final_eval_return"] == 20.0
    ckpt = load_checkpoint(run / "checkpoints" / "final.pt")
    assert ckpt["meta"]["env_module_path"] == str(ROOT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    replay = subprocess.run([*ACX, "eval", f"ckpt={run}/checkpoints/final.pt", f"hydra.run.dir={elsewhere}/out"],
                            cwd=elsewhere, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert json.loads((elsewhere / "out" / "eval.json").read_text())["return_mean"] == 20.0


def test_multi_discrete_and_multi_binary_actions_learn_then_replay(tmp_path: Path):
    """MultiDiscrete([3, 4, 2]) actions (Buttons: random play scores 7.2 of 20) learn with n-step, and
    MultiBinary((2, 2)) ones (Bits: random 10 of 20) with PPO in a cohort of two seeds, through the
    CLI; `acx eval` replays a checkpoint on its env. Every variant reached 20 on both in 20k steps here,
    and PPO's seeds 0-2 18.8-19.4 on Bits in 10k; the thresholds ask for half of the way from random
    play to 20."""
    run = tmp_path / "buttons"
    proc = run_acx("train", f"env.id={TOY}:Buttons-v0", "algo=nstep", "total_steps=20000", "stop=budget",
                   "logger=none", "progress=false", f"hydra.run.dir={run}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["final_eval_return"] >= 13.6
    sweep = tmp_path / "bits"
    proc = run_acx("train", "-m", "hydra/launcher=population", "seed=0,1", f"env.id={TOY}:Bits-v0", "algo=ppo",
                   "total_steps=10000", "stop=budget", "logger=none", "progress=false",
                   f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=s${seed}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for seed in (0, 1):
        assert json.loads((sweep / f"s{seed}" / "summary.json").read_text())["final_eval_return"] >= 15.0
    replay = run_acx("eval", f"ckpt={sweep / 's1'}", "episodes=3", f"hydra.run.dir={tmp_path / 'eval'}")
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["return_mean"] >= 15.0


def test_dict_observations_learn_through_the_cli_then_replay(tmp_path: Path):
    """Beacon's Dict observations (a Discrete goal, a 36 x 36 image, float64 noise around 1000) learn
    with PPO and normalize.obs through the CLI: no policy blind to the goal or to the image gets more
    than 10 of 20 in expectation, and seed 0 got a best eval of 16.1 at 20k steps here (seeds 0-2 16.6-17.0
    at 40k); `acx eval` replays the checkpoint."""
    run = tmp_path / "beacon"
    proc = run_acx("train", f"env.id={TOY}:Beacon-v0", "algo=ppo", "normalize.obs=true", "total_steps=20000",
                   "stop=budget", "logger=none", "progress=false", f"hydra.run.dir={run}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_eval_return"] >= 12.0, summary
    replay = run_acx("eval", f"ckpt={run}", "episodes=3", f"hydra.run.dir={tmp_path / 'eval'}")
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["return_mean"] > 10.0


def test_spaces_acx_cannot_read_are_one_line_naming_them(tmp_path: Path):
    """A Dict key of a space acx has no encoder for, and a Text observation, are one line, exit 2."""
    proc = run_acx("train", f"env.id={TOY}:Beacon-v0", "+env.kwargs.extra=text", f"hydra.run.dir={tmp_path / 'a'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("acx: error: env: Beacon-v0's observation key 'mission' is Text(")
    assert "FilterObservation" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_acx("train", f"env.id={TOY}:Chatty-v0", f"hydra.run.dir={tmp_path / 'b'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("acx: error: env: Chatty-v0 has Text(")
    assert proc.stderr.strip().endswith("acx trains on Box, Discrete and Dict observations")


def test_keep_observation_hides_the_velocities_of_the_novel_presets():
    """env=cartpole_novel keeps x and theta of CartPole's observation, env=pendulum_novel cos and sin."""
    for preset, full_id, keep in (("cartpole_novel", "CartPole-v1", [0, 2]), ("pendulum_novel", "Pendulum-v1", [0, 1])):
        cfg = compose_train([f"env={preset}"], Path("/tmp/unused"))
        factory = GymEnvFactory(full_id, wrappers=cfg.env.wrappers)
        assert factory.observation_space.shape == (2,)
        obs, _ = factory.make_single().reset(seed=3)
        full, _ = gym.make(full_id).reset(seed=3)
        np.testing.assert_array_equal(obs, full[keep])
    with pytest.raises(ConfigError, match=r"KeepObservation: keep=\[0, 7\] is out of range"):
        GymEnvFactory("CartPole-v1", wrappers=[{"_target_": "acx.envs.wrappers.KeepObservation", "keep": [0, 7]}])


def test_env_module_that_fails_to_import_is_one_line(tmp_path: Path):
    proc = run_acx("train", "env.id=no_such_pkg.envs:Maze-v0", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "acx: error: env.id='no_such_pkg.envs:Maze-v0': cannot import module 'no_such_pkg.envs' "
        "(ModuleNotFoundError: No module named 'no_such_pkg')"
    )
    proc = run_acx("train", "env.id=tests.toy_envs:Maze-v0", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert "env.id='Maze-v0' is not registered by importing 'tests.toy_envs'" in proc.stderr


def test_readme_own_env_example_works_as_written(tmp_path: Path):
    """The README's "Train on your own environment" file, saved as my_envs.py, trains with the
    README's command run in that folder."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Train on your own environment", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 25
    (tmp_path / "my_envs.py").write_text(code)
    lines = re.findall(r"^acx train (env\.id=my_envs:\S+.*)$", section, re.M)
    assert len(lines) == 2
    for i, line in enumerate(lines):  # each README command, with a short budget
        command = line.split("#")[0].split()
        proc = subprocess.run([*ACX, "train", *command, "total_steps=2000", "logger=none", "progress=false",
                               f"hydra.run.dir=run{i}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (tmp_path / f"run{i}" / "checkpoints" / "final.pt").is_file()


def test_truncation_bootstraps_the_critic_to_one_over_one_minus_gamma(tmp_path: Path):
    """After SB3's test_infinite_horizon: 1 per step, never terminated, truncated after 20 steps.
    V must approach 1 / (1 - 0.9) = 10; a learner that took truncation for termination would learn
    the mean discounted sum of the steps left, about 6.1."""
    cfg = compose_train([*FAST, f"env.id={TOY}:PayEveryStep-v0", "algo.gamma=0.9", "optimizer.lr=3e-3",
                         "total_steps=30000", "stop=budget"], tmp_path)  # fmt: skip
    train(cfg)
    _, net = build_from_checkpoint(load_checkpoint(tmp_path / "checkpoints" / "final.pt"), torch.device("cpu"))
    with torch.no_grad():
        value = float(net.value(torch.ones(1, 1)))
    assert value == pytest.approx(10.0, abs=0.5)


def test_normalisation_statistics_are_saved_and_restored_bit_for_bit(tmp_path: Path):
    """Every checkpoint holds the float64 statistics; a checkpoint rebuilds a network with them
    exactly; a resumed run goes on from them (its counts are those of all its env steps, not only
    of the resumed part)."""
    common = [*FAST, "env=pendulum", "~tuned", "normalize.obs=true", "normalize.reward=true", "stop=budget"]
    first = train(compose_train([*common, "total_steps=2000"], tmp_path))
    keys = ("obs_norm.rms.mean", "obs_norm.rms.var", "obs_norm.rms.count", "reward_norm.rms.var")
    saved = [tmp_path / "checkpoints" / name for name in ("best.pt", "final.pt")]
    saved += sorted((tmp_path / "checkpoints").glob("step_*.pt"))  # the periodic ones
    assert len(saved) >= 3
    for path in saved:
        model = load_checkpoint(path)["model"]
        assert all(model[k].dtype == torch.float64 for k in keys), path.name
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "final.pt")
    _, net = build_from_checkpoint(ckpt, torch.device("cpu"))
    for key, value in net.state_dict().items():
        assert torch.equal(value, ckpt["model"][key]), key
    assert float(ckpt["model"]["obs_norm.rms.count"]) == first["env_steps"] + 1e-4
    assert not torch.equal(ckpt["model"]["obs_norm.rms.var"], torch.ones(3, dtype=torch.float64))
    resumed = train(compose_train([*common, "total_steps=4000", f"resume={tmp_path}"], tmp_path))
    model = load_checkpoint(tmp_path / "checkpoints" / "final.pt")["model"]
    assert float(model["obs_norm.rms.count"]) == resumed["env_steps"] + 1e-4
    assert float(model["reward_norm.rms.count"]) == resumed["env_steps"] + 1e-4


@needs_mujoco
def test_halfcheetah_trains_checkpoints_and_replays(tmp_path: Path):
    """HalfCheetah-v5 (float64 observations) for a few hundred steps with its tuned defaults, then `acx eval`."""
    run = tmp_path / "run"
    proc = run_acx("train", "env=halfcheetah", "total_steps=400", "eval.every_steps=200", "eval.episodes=1",
                   "logger=none", "progress=false", f"hydra.run.dir={run}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    replay = run_acx("eval", f"ckpt={run}", "episodes=1", f"hydra.run.dir={tmp_path / 'eval'}")
    assert replay.returncode == 0, replay.stderr[-2000:]
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert result["env_id"] == "HalfCheetah-v5" and result["length_mean"] == 1000


def test_observation_normalisation_of_uint8_frames_is_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"^normalize.obs: the observations are uint8 images"):
        train(compose_train([*FAST, "env=pong", "normalize.obs=true"], tmp_path))
