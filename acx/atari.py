"""Atari through ale-py: the C++ vector env (frame skip + max-pool, no-op starts, fire reset,
84x84 grayscale, 4-frame stack, all in native threads) for training, and the same preprocessing from
Gymnasium's Python wrappers for single-env replay and rendering."""

from __future__ import annotations

import re

import ale_py
import gymnasium as gym
import numpy as np

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no emulator banner on every env


def game_from_id(env_id: str) -> str:
    """'ALE/SpaceInvaders-v5' or 'PongNoFrameskip-v4' -> the ROM name 'space_invaders' / 'pong'."""
    name = env_id.split("/")[-1].split("-")[0].replace("NoFrameskip", "").replace("Deterministic", "")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def id_from_game(game: str) -> str:
    """'space_invaders' -> 'ALE/SpaceInvaders-v5'."""
    return "ALE/" + "".join(part.capitalize() for part in game.split("_")) + "-v5"


class FireReset(gym.Wrapper):
    """Press FIRE after reset in games that wait for it (as the DQN wrappers do)."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        meanings = self.env.unwrapped.get_action_meanings()
        if len(meanings) > 1 and meanings[1] == "FIRE":
            obs, _, terminated, truncated, info = self.env.step(1)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


class AtariEnvFactory:
    """Builds any ALE game by ``game`` (ROM name) or Gymnasium ``id``, with DQN-style preprocessing."""

    def __init__(
        self,
        game: str | None = "pong",
        id: str | None = None,
        frame_skip: int = 4,
        noop_max: int = 30,
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
        if game is None:
            raise ValueError("env.game or env.id must name an Atari game")
        self.game = game
        self.id = id_from_game(game)
        if self.id not in gym.registry:
            known = sorted(game_from_id(k) for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5"))
            raise ValueError(f"env.game={game!r} is not an ALE game; known: {', '.join(known[:8])}, ...")
        self.spec = gym.spec(self.id)
        self.options = dict(
            frameskip=frame_skip,
            noop_max=noop_max,
            stack_num=stack,
            img_height=screen_size,
            img_width=screen_size,
            episodic_life=episodic_life,
            reward_clipping=reward_clipping,
            repeat_action_probability=repeat_action_probability,
            max_num_frames_per_episode=max_episode_frames,
        )
        self.num_threads = num_threads
        self.observation_space = gym.spaces.Box(0, 255, (stack, screen_size, screen_size), np.uint8)
        probe = gym.make(self.id)
        self.action_space = probe.action_space
        probe.close()
        self.reward_threshold = reward_threshold

    def make_vector(self, num_envs: int, seed: int | None = None) -> gym.vector.VectorEnv:
        """ale-py's native vector env with next-step autoreset."""
        envs = ale_py.vector_env.AtariVectorEnv(
            game=self.game, num_envs=num_envs, num_threads=self.num_threads, use_fire_reset=True, **self.options
        )
        envs.reset(seed=seed)
        return envs

    def make_single(self, render_mode: str | None = None) -> gym.Env:
        """One env with the same preprocessing from Gymnasium's wrappers (rendering shows the full colour game)."""
        o = self.options
        env = gym.make(
            self.id,
            frameskip=1,
            repeat_action_probability=o["repeat_action_probability"],
            max_num_frames_per_episode=o["max_num_frames_per_episode"],
            render_mode=render_mode,
        )
        env = gym.wrappers.AtariPreprocessing(
            env,
            noop_max=o["noop_max"],
            frame_skip=o["frameskip"],
            screen_size=o["img_height"],
            terminal_on_life_loss=o["episodic_life"],
        )
        env = FireReset(env)
        return gym.wrappers.FrameStackObservation(env, o["stack_num"])

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        return actions
