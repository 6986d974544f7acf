"""Atari: preprocessing, train-vs-replay pipeline equivalence, game scores vs learning rewards,
game selection, and (slow) a real Pong run through the acx command with a video of the game."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException

from acx.algo.networks import mlp_actor_critic
from acx.envs.atari import AtariEnvFactory, LearningSignals, game_from_id, id_from_game, learning_rewards
from acx.errors import ConfigError
from acx.run.build import build_env_factory, build_network
from acx.run.rollout import RolloutCollector
from acx.run.train import train
from tests.conftest import compose_train, eval_in_window, learner_of, needs_xvfb, run_acx


def test_preprocessing_shapes_and_dtypes():
    factory = AtariEnvFactory("pong")
    assert factory.observation_space.shape == (4, 84, 84) and factory.observation_space.dtype == np.uint8
    envs = factory.make_vector(2, seed=0)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    obs, reward, terminated, truncated, info = envs.step(np.zeros(2, dtype=np.int64))
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert info["learning_reward"].dtype == np.float32 and info["learning_terminated"].dtype == bool
    envs.close()
    env = factory.make_single(render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert not obs[:3].any() and obs[3].any(), "a new episode's stack is zeros behind the first frame"
    frame = env.render()
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8  # the full-colour screen
    assert env.metadata["render_fps"] == 15  # 60 Hz emulator, one frame shown per 4-frame action
    env.close()


def test_uint8_observations_are_scaled_on_the_model(tmp_path: Path):
    factory = AtariEnvFactory("pong")
    net = build_network(compose_train(["env=pong"], tmp_path).network, factory, torch.device("cpu"))
    cnn = net.actor_encoder[0]  # the Nature-CNN trunk takes the uint8 frames as they come
    frames = torch.full((2, 4, 84, 84), 255, dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(cnn(frames), torch.nn.Sequential.forward(cnn, torch.ones(2, 4, 84, 84)))
        assert net.action(frames).shape == (2,)


@pytest.mark.parametrize(
    "game,options,steps",
    [
        ("pong", {}, 1200),  # a whole game of random play (about 950 steps), then the next start
        ("breakout", {}, 400),  # five lives lost and the game over within ~220 steps
        ("pong", {"frame_skip": 2, "stack": 3, "screen_size": 64}, 300),
        ("pong", {"max_episode_frames": 400}, 250),  # truncated at the same step, twice
    ],
)
def test_vector_and_replay_pipelines_give_the_same_observations(game: str, options: dict, steps: int):
    """The C++ vector env (training) and Gymnasium's wrappers (replay) agree frame for frame."""
    factory = AtariEnvFactory(game, noop_max=0, **options)  # no-op counts come from different RNGs
    envs = factory.make_vector(1, seed=3)
    env = factory.make_single()
    obs_v, _ = envs.reset(seed=3)
    obs_s, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs_v[0], obs_s)
    rng = np.random.default_rng(0)
    games = truncations = 0
    for t in range(steps):
        action = int(rng.integers(factory.action_space.n))
        obs_v, reward_v, term_v, trunc_v, _ = envs.step(np.array([action]))
        obs_s, reward_s, term_s, trunc_s, _ = env.step(action)
        assert np.array_equal(obs_v[0], obs_s), f"observations differ at step {t}"
        assert (reward_v[0], term_v[0], trunc_v[0]) == (reward_s, term_s, trunc_s), f"step {t}"
        if term_s or trunc_s:
            games += 1
            truncations += int(trunc_s)
            obs_v, *_ = envs.step(np.array([0]))  # next-step autoreset: this step only resets
            obs_s, _ = env.reset()
            np.testing.assert_array_equal(obs_v[0], obs_s)
    if game == "pong" and not options:
        assert games == 1, "the Pong comparison should cover a whole game and the next start"
    if options.get("max_episode_frames"):
        assert truncations == 2, "400 frames: both envs truncate after 100 steps, twice in 250"
    envs.close()
    env.close()


@pytest.mark.parametrize("game,frames", [("pong", range(1, 30)), ("freeway", range(0, 30))])
def test_no_op_starts_have_the_same_range(game: str, frames: range):
    """noop_max=30: u in [0, 29] no-op frames, less the FIRE frame where the game has FIRE."""
    factory = AtariEnvFactory(game, noop_max=30)
    envs = factory.make_vector(16, seed=0)  # each sub-env loads its ROM: seconds, so a few only
    _, info = envs.reset()
    vector_frames = set(info["episode_frame_number"].tolist())
    env = factory.make_single()
    env.reset(seed=0)
    replay_frames = set()
    for _ in range(32):
        env.reset()
        replay_frames.add(env.unwrapped.ale.getEpisodeFrameNumber())
    assert vector_frames <= set(frames) and replay_frames <= set(frames)
    assert len(vector_frames) > 5 and len(replay_frames) > 5
    envs.close()


class ScriptedAtari(gym.vector.VectorEnv):
    """One env replaying a fixed script of (reward, lives, terminated) with next-step autoreset."""

    SCRIPT = [  # reward, lives after the step, game over
        (0, 3, False),
        (25, 3, False),
        (0, 2, False),  # a life lost: terminal for the learner, the game goes on
        (10, 2, False),
        (1, 0, True),  # game over
        (0, 3, False),  # the autoreset step
        (200, 3, False),
        (-5, 3, False),
    ]

    def __init__(self):
        self.num_envs = 1
        self.single_observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, 1)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, 1)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros((1, 1), np.float32), {"lives": np.array([3], np.int32)}

    def step(self, actions):
        reward, lives, over = self.SCRIPT[self.t]
        self.t += 1
        info = {"lives": np.array([lives], np.int32)}
        obs = np.full((1, 1), self.t / 10, np.float32)
        return obs, np.array([reward], np.int32), np.array([over]), np.array([False]), info


@pytest.mark.parametrize("clipping,episodic_life", [(True, True), (False, False), (True, False)])
def test_learner_sees_clipped_rewards_and_life_loss_while_returns_are_game_scores(clipping, episodic_life):
    envs = LearningSignals(ScriptedAtari(), reward_clipping=clipping, episodic_life=episodic_life)
    torch.manual_seed(0)
    net = mlp_actor_critic(envs.single_observation_space, envs.single_action_space)
    rollout = RolloutCollector(envs, learner_of(net), 1, n_steps=8, device=torch.device("cpu")).collect()
    raw = [0, 25, 0, 10, 1, 0, 200, -5]
    clipped = [0, 1, 0, 1, 1, 0, 1, -1]
    assert rollout.rewards[:, 0, 0].tolist() == (clipped if clipping else raw)
    life_lost = [False, False, episodic_life, False, True, False, False, False]
    assert rollout.terminated[:, 0, 0].tolist() == life_lost
    assert rollout.done[:, 0, 0].tolist() == life_lost
    # only the autoreset step after the game over is masked out; after a lost life play goes on
    assert rollout.valid[:, 0, 0].tolist() == [True] * 5 + [False, True, True]
    assert rollout.episodes == [([36.0], [5])]  # 0 + 25 + 0 + 10 + 1


def test_learning_rewards_values():
    raw = np.array([0, 1, 4, 7, 200, -3], np.int32)
    np.testing.assert_array_equal(learning_rewards(raw, True), [0, 1, 1, 1, 1, -1])
    np.testing.assert_array_equal(learning_rewards(raw, False), raw.astype(np.float32))


def test_real_game_scores_and_lives():
    """Space Invaders pays 5-30 per alien: the learner gets 1; Breakout goes on after a lost life."""
    envs = AtariEnvFactory("space_invaders").make_vector(2, seed=0)
    rng = np.random.default_rng(0)
    raw_seen = []
    for _ in range(300):
        _, reward, _, _, info = envs.step(rng.integers(0, 6, 2))
        np.testing.assert_array_equal(info["learning_reward"], np.clip(reward, -1, 1))
        raw_seen += reward.tolist()
    assert max(raw_seen) >= 5 and set(np.unique(np.clip(raw_seen, -1, 1))) <= {0, 1}
    envs.close()

    envs = AtariEnvFactory("breakout", episodic_life=True).make_vector(1, seed=0)
    _, info = envs.reset(seed=0)
    lives, frames = int(info["lives"][0]), int(info["episode_frame_number"][0])
    for _ in range(1000):
        _, _, terminated, _, info = envs.step(rng.integers(0, 4, 1))
        if info["lives"][0] < lives:
            break
    assert info["learning_terminated"][0] and not terminated[0], "a lost life ends the learner's episode only"
    _, _, _, _, info = envs.step(np.array([1]))
    assert info["episode_frame_number"][0] > frames, "the game went on (no reset after a lost life)"
    envs.close()


def test_game_names_and_ids():
    assert id_from_game("space_invaders") == "ALE/SpaceInvaders-v5" and game_from_id("ALE/SpaceInvaders-v5") == (
        "space_invaders"
    )
    assert game_from_id("PongNoFrameskip-v4") == "pong"


@pytest.mark.parametrize("overrides", [["env=atari", "env.game=breakout"], ["env=atari", "env.id=ALE/Breakout-v5"]])
def test_select_another_game(tmp_path: Path, overrides: list[str]):
    cfg = compose_train(overrides, tmp_path)
    assert cfg.env.id == "ALE/Breakout-v5" and cfg.network._target_.endswith("cnn_actor_critic")
    factory = build_env_factory(cfg.env)
    assert factory.id == "ALE/Breakout-v5" and factory.game == "breakout" and factory.action_space.n == 4


def test_env_preset_picks_cnn_and_a_long_run_cadence(tmp_path: Path):
    cfg = compose_train(["env=pong"], tmp_path)
    assert cfg.network._target_.endswith("cnn_actor_critic") and cfg.env.id == "ALE/Pong-v5"
    assert cfg.eval.every_steps == 250_000 and cfg.total_steps == 10_000_000
    cfg = compose_train(["env=pong", "network=mlp", "eval.every_steps=7"], tmp_path)
    assert cfg.network._target_.endswith("mlp_actor_critic") and cfg.eval.every_steps == 7
    assert compose_train([], tmp_path).network._target_.endswith("mlp_actor_critic")  # CartPole keeps the MLP


def test_bad_game_choices_are_clear(tmp_path: Path):
    with pytest.raises(ConfigError, match="not an ALE game"):
        AtariEnvFactory("breakoutt")
    with pytest.raises(InstantiationException, match="train it with env=atari"):
        build_env_factory(compose_train(["env.id=ALE/Breakout-v5"], tmp_path).env)


def test_breakout_trains_with_episodic_life(run_dir: Path):
    overrides = ["env=atari", "env.game=breakout", "env.episodic_life=true", "env.max_episode_frames=400"]
    fast = ["algo.num_envs=4", "total_steps=200", "eval.episodes=1", "progress=false"]
    summary = train(compose_train([*overrides, *fast], run_dir))
    assert summary["env_id"] == "ALE/Breakout-v5" and summary["env_steps"] >= 200
    assert np.isfinite(summary["final_eval_return"])


@pytest.fixture(scope="module")
def pong_run(tmp_path_factory) -> Path:
    """A short real Pong training run through the acx command (short games: 240 frames, 60 actions)."""
    run_dir = tmp_path_factory.mktemp("pong") / "train"
    proc = run_acx(
        "train",
        "env=pong",
        "env.max_episode_frames=240",
        "total_steps=3000",
        "eval.episodes=1",
        "eval.every_steps=1500",
        "checkpoint.every_steps=1500",
        "progress=false",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


@pytest.mark.slow
def test_pong_run_writes_checkpoints_and_game_returns(pong_run: Path):
    summary = json.loads((pong_run / "summary.json").read_text())
    assert summary["env_id"] == "ALE/Pong-v5" and summary["env_steps"] >= 3000
    ckpts = pong_run / "checkpoints"
    assert (ckpts / "final.pt").is_file() and (ckpts / "best.pt").is_file()
    assert len(list(ckpts.glob("step_*.pt"))) == 2
    rows = [json.loads(line) for line in (pong_run / "metrics.jsonl").read_text().splitlines()]
    returns = [r["train/episode_return"] for r in rows if "train/episode_return" in r]
    assert returns and all(-21 <= r <= 21 for r in returns)


@pytest.mark.slow
def test_pong_eval_video_is_the_full_colour_game(pong_run: Path, tmp_path: Path):
    proc = run_acx("eval", f"ckpt={pong_run}", "episodes=1", "video=true", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["env_id"] == "ALE/Pong-v5" and "ALE/Pong-v5" in proc.stdout
    assert result["lengths"][0] == 60  # truncated: 240 frames / frame skip 4
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(result["video"])
    assert frames == result["video_frames"] == result["lengths"][0] + 1  # the reset frame, then one per step
    assert seconds == pytest.approx(frames / 15, abs=0.2)  # real speed: 15 actions a second
    reader = imageio_ffmpeg.read_frames(result["video"])
    assert next(reader)["size"] == (160, 210)  # the 210x160 screen, not the 84x84 network input
    frame = np.frombuffer(next(reader), np.uint8).reshape(210, 160, 3).astype(int)
    assert np.abs(frame[..., 0] - frame[..., 2]).mean() > 50  # colour: Pong's brown court, not grayscale


@pytest.mark.slow
@needs_xvfb
def test_pong_eval_render_human_under_xvfb(pong_run: Path, tmp_path: Path):
    result = eval_in_window(pong_run, tmp_path)
    assert result["episodes"] == 1 and result["wall_seconds"] >= 60 / 15 * 0.9  # shown at the game's speed


def test_seed002_preset_is_the_seed(tmp_path: Path):
    """Seed 002's hyperparameters, as its notebook sets them."""
    cfg = compose_train(["experiment=seed002_a2c_pong"], tmp_path)
    algo, opt = cfg.algo, cfg.optimizer
    assert (algo.num_envs, algo.n_steps, algo.gamma, algo.max_grad_norm) == (50, 4, 0.99, 0.1)
    assert algo.advantage.gae_lambda == 1.0 and algo.reward_scale == 1.0
    assert (algo.loss.value_loss, algo.loss.vf_coef, algo.loss.ent_coef) == ("mse", 1.0, 0.01)
    assert not algo.loss.normalize_advantage and not algo.loss.normalize_returns
    assert opt._target_ == "acx.algo.optim.Adam" and (opt.lr, opt.eps) == (1e-3, 1e-3)
    assert cfg.network.head_hidden == 512 and cfg.network.init == "default" and cfg.seed == 42
    assert cfg.stop._target_.endswith("MeanLastEpisodes") and (cfg.stop.window, cfg.stop.threshold) == (100, 18)
    assert cfg.env.id == "ALE/Pong-v5" and cfg.env.repeat_action_probability == 0.0  # as PongNoFrameskip-v4
    net = build_network(cfg.network, build_env_factory(cfg.env), torch.device("cpu"))
    assert not isinstance(net.policy_head.out, torch.nn.Linear)  # a 512-unit hidden layer per head
