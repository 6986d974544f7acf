"""Atari through ale-py: the C++ vector env (frame skip + max-pool, no-op starts, fire reset,
84x84 grayscale, 4-frame stack, all in native threads) for training, and the same preprocessing from
Gymnasium's Python wrappers for single-env replay and rendering.

What is logged and what is learnt from differ, as in DQN and A2C on Atari:

- the vector env always plays the real game: unclipped rewards, one episode per game (all lives),
  so episode returns are game scores and evaluations are whole games;
- :class:`LearningSignals` adds what the learner sees to ``info``: ``learning_reward`` (clipped to
  [-1, 1] with ``reward_clipping``) and ``learning_terminated`` (a lost life counts as terminal with
  ``episodic_life``; the game itself goes on, as in the DQN ``EpisodicLifeEnv``).

ale-py's own ``episodic_life`` is not used: it resets the whole game on a lost life, so the agent
would never see the later lives and logged returns would be per-life.

Train vs replay preprocessing (checked in ``tests/test_atari.py``): :meth:`AtariEnvFactory.make_single`
mirrors ale-py 0.12's C++ pipeline frame for frame: FIRE for one frame at reset, then no-ops, an
all-zero frame stack behind the first frame, max-pool of the last two of ``frame_skip`` frames,
INTER_AREA resize of the grayscale screen, truncation after ``max_episode_frames`` frames counted from
the end of the reset. What remains different: the no-op count is drawn from the same distribution by
a different random generator, so ``noop_max > 0`` gives other start states for the same seed.
"""

from __future__ import annotations

import re
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np

from acx.errors import ConfigError

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no emulator banner on every env

EMULATOR_FPS = 60


def game_from_id(env_id: str) -> str:
    """'ALE/SpaceInvaders-v5' or 'PongNoFrameskip-v4' -> the ROM name 'space_invaders' / 'pong'."""
    name = env_id.split("/")[-1].split("-")[0].replace("NoFrameskip", "").replace("Deterministic", "")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def id_from_game(game: str) -> str:
    """'space_invaders' -> 'ALE/SpaceInvaders-v5'."""
    return "ALE/" + "".join(part.capitalize() for part in game.split("_")) + "-v5"


def is_atari_id(env_id: str) -> bool:
    """Whether a registered Gymnasium id is an ALE game."""
    return env_id in gym.registry and str(gym.spec(env_id).entry_point).startswith("ale_py")


class NativeEpisodes(gym.Wrapper):
    """Start and cut episodes as ale-py's vector env does, on an env with ``frameskip=1``.

    Reset: FIRE for one frame in games that have it, then ``u - fire`` no-op frames with ``u``
    uniform in ``[0, noop_max - 1]`` (Gymnasium's ``AtariPreprocessing`` would take ``[1, noop_max]``
    no-ops and no FIRE; it is used here with ``noop_max=0``). Truncation after ``max_frames`` frames
    counted from the end of the reset (ALE's own limit would count the reset's frames too).
    """

    def __init__(self, env: gym.Env, noop_max: int = 30, fire: bool = True, max_frames: int = 108000):
        super().__init__(env)
        self.noop_max, self.max_frames = noop_max, max_frames
        self.fire = fire and ale_py.Action.FIRE in env.unwrapped.ale.getMinimalActionSet()
        self.frames = 0

    def reset(self, **kwargs) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        ale = self.env.unwrapped.ale
        if self.fire:
            ale.act(ale_py.Action.FIRE)
        noops = 0 if self.noop_max <= 0 else int(self.np_random.integers(0, self.noop_max)) - int(self.fire)
        for _ in range(noops):
            ale.act(ale_py.Action.NOOP)
            if ale.game_over():
                ale.reset_game()
        self.frames = 0
        return obs, info  # the wrapper above reads the screen itself

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames += 1
        truncated = bool(truncated or (self.frames >= self.max_frames and not terminated))
        return obs, reward, terminated, truncated, info


class LearningSignals(gym.vector.VectorWrapper):
    """Adds the learner's rewards and terminals to ``info`` of a vector env that plays the real game.

    ``info['learning_reward']``: rewards clipped to [-1, 1] (``reward_clipping``) or as they are;
    ``info['learning_terminated']``: ``terminated``, or a life lost when ``episodic_life``.
    The step's own outputs stay the real game's, so episode returns are game scores.
    """

    def __init__(self, env: gym.vector.VectorEnv, reward_clipping: bool = True, episodic_life: bool = False):
        super().__init__(env)
        self.reward_clipping, self.episodic_life = reward_clipping, episodic_life
        self.lives = np.zeros(env.num_envs, dtype=np.int32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.lives = np.asarray(info["lives"]).copy()
        return obs, info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        info = dict(info)
        info["learning_reward"] = learning_rewards(reward, self.reward_clipping)
        lives = np.asarray(info["lives"])
        life_lost = lives < self.lives  # on an autoreset step lives go up: never a loss
        self.lives = lives.copy()
        info["learning_terminated"] = terminated | life_lost if self.episodic_life else terminated
        return obs, reward, terminated, truncated, info


def learning_rewards(rewards: np.ndarray, clipping: bool) -> np.ndarray:
    """What the learner is paid for the game's rewards: clipped to [-1, 1] (DQN, A2C) or unchanged."""
    rewards = np.asarray(rewards, dtype=np.float32)
    return np.clip(rewards, -1.0, 1.0) if clipping else rewards


class AtariEnvFactory:
    """Builds any ALE game by ``game`` (ROM name) or Gymnasium ``id``, with DQN-style preprocessing."""

    def __init__(
        self,
        game: str | None = "pong",
        id: str | None = None,
        frame_skip: int = 4,
        noop_max: int = 30,
        fire_reset: bool = True,
        stack: int = 4,
        screen_size: int = 84,
        episodic_life: bool = False,
        reward_clipping: bool = True,
        repeat_action_probability: float = 0.0,
        max_episode_frames: int = 108000,
        num_threads: int = 0,
        reward_threshold: float | None = None,
    ):
        if id is not None:
            game = game_from_id(id)
        self.game = game
        self.id = id_from_game(game)
        if self.id not in gym.registry:
            known = sorted(game_from_id(k) for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5"))
            raise ConfigError(f"env.game={game!r} is not an ALE game; known: {', '.join(known[:8])}, ...")
        self.spec = gym.spec(self.id)
        self.frame_skip, self.noop_max, self.fire_reset = frame_skip, noop_max, fire_reset
        self.stack, self.screen_size = stack, screen_size
        self.episodic_life, self.reward_clipping = episodic_life, reward_clipping
        self.repeat_action_probability = repeat_action_probability
        self.max_episode_frames = max_episode_frames
        self.num_threads = num_threads
        self.observation_space = gym.spaces.Box(0, 255, (stack, screen_size, screen_size), np.uint8)
        probe = gym.make(self.id)
        self.action_space = probe.action_space
        self.action_meanings = probe.unwrapped.get_action_meanings()
        probe.close()
        self.reward_threshold = reward_threshold

    def make_vector(self, num_envs: int, seed: int | None = None) -> gym.vector.VectorEnv:
        """ale-py's native vector env (next-step autoreset) playing whole games with unclipped rewards."""
        envs = ale_py.vector_env.AtariVectorEnv(
            game=self.game,
            num_envs=num_envs,
            num_threads=self.num_threads,
            frameskip=self.frame_skip,
            noop_max=self.noop_max,
            use_fire_reset=self.fire_reset,
            stack_num=self.stack,
            img_height=self.screen_size,
            img_width=self.screen_size,
            episodic_life=False,  # see the module docstring: the learner's view comes from LearningSignals
            reward_clipping=False,
            repeat_action_probability=self.repeat_action_probability,
            max_num_frames_per_episode=self.max_episode_frames,
        )
        envs = LearningSignals(envs, self.reward_clipping, self.episodic_life)
        envs.reset(seed=seed)
        return envs

    def make_single(self, render_mode: str | None = None) -> gym.Env:
        """One env with the vector env's preprocessing from Gymnasium's wrappers; plays the whole game.

        Rendering shows the full-colour 210x160 screen, at the game's real speed (one frame per action).
        """
        env = gym.make(
            self.id,
            frameskip=1,
            repeat_action_probability=self.repeat_action_probability,
            max_num_frames_per_episode=0,  # NativeEpisodes cuts games where the C++ env does
            render_mode=render_mode,
        )
        env = NativeEpisodes(env, self.noop_max, self.fire_reset, self.max_episode_frames)
        env = gym.wrappers.AtariPreprocessing(
            env, noop_max=0, frame_skip=self.frame_skip, screen_size=self.screen_size, terminal_on_life_loss=False
        )
        env = gym.wrappers.FrameStackObservation(env, self.stack, padding_type="zero")
        env.metadata = {**env.metadata, "render_fps": max(1, round(EMULATOR_FPS / self.frame_skip))}
        return env

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        return actions
