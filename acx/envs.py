"""Environment factories: vectorised training envs, evaluation envs, and a single env for rendering.

A factory is what ``conf/env/*.yaml`` instantiates. Other families (Atari) provide a factory with the
same four members: ``spec_id``, ``observation_space``/``action_space``, ``make_vector`` and ``make_single``.
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym
import numpy as np

from acx.errors import ConfigError


class UnknownEnvError(ConfigError):
    """An env id that Gymnasium does not know."""


def check_env_id(env_id: str) -> None:
    """Raise a one-line error with close registered ids if ``env_id`` is unknown."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownEnvError(f"env.id={env_id!r} is not a registered Gymnasium environment{hint}")


class GymEnvFactory:
    """Builds Gymnasium envs by id, picking the fastest vector implementation the env offers."""

    def __init__(
        self,
        id: str,
        kwargs: dict[str, Any] | None = None,
        vectorization: str = "auto",
        max_episode_steps: int | None = None,
        reward_threshold: float | None = None,
    ):
        # importing acx.atari registers ALE's ids with Gymnasium; an id Gymnasium already knows as a
        # non-ALE env (CartPole) needs no ale-py import (~6 MiB of memory, ~0.06 s of start-up)
        if id not in gym.registry or str(gym.spec(id).entry_point).startswith("ale_py"):
            from acx.atari import is_atari_id

            if is_atari_id(id):  # raw 210x160 RGB frames: Atari needs the preprocessing of env=atari
                raise ConfigError(f"env.id={id!r} is an Atari game: train it with env=atari env.id={id}")
        check_env_id(id)
        self.id = id
        self.kwargs = dict(kwargs or {})
        self.vectorization = vectorization
        self.max_episode_steps = max_episode_steps
        self.spec = gym.spec(id)
        try:
            probe = self.make_single()
        except TypeError as exc:  # a keyword the env's constructor does not take
            raise ConfigError(f"env.kwargs: {id} does not take them ({exc})") from None
        self.observation_space = probe.observation_space
        self.action_space = probe.action_space
        self.episode_limit = probe.spec.max_episode_steps if probe.spec else None
        probe.close()
        # the env's own "solved" bar unless the config names one
        self.reward_threshold = reward_threshold if reward_threshold is not None else self.spec.reward_threshold

    def _mode(self) -> str:
        if self.vectorization != "auto":
            return self.vectorization
        # a native vector env (CartPole's) steps all copies in one NumPy call
        return "vector_entry_point" if self.spec.vector_entry_point else "sync"

    def make_vector(self, num_envs: int, seed: int | None = None) -> gym.vector.VectorEnv:
        """``num_envs`` copies in one vector env with next-step autoreset, reset with ``seed``."""
        mode = self._mode()
        kwargs = dict(self.kwargs)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        envs = gym.make_vec(self.id, num_envs=num_envs, vectorization_mode=mode, **kwargs)
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
        return envs

    def make_single(self, render_mode: str | None = None) -> gym.Env:
        """One env, e.g. for rendering to a window or to video frames."""
        kwargs = dict(self.kwargs)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        return gym.make(self.id, render_mode=render_mode, **kwargs)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """What the env is sent for sampled actions: Box actions clipped to the space's bounds."""
        if isinstance(self.action_space, gym.spaces.Box):
            return np.clip(actions, self.action_space.low, self.action_space.high)
        return actions
