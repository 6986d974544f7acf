"""Dict observations (goal-conditioned robotics, MiniGrid, an image with a vector): each key packed
into one flat float32 vector at the env, and split again by the network (``acx.algo.networks.DictLayout``
and ``DictEncoder``), which gives each key an encoder of its own, as SB3's ``CombinedExtractor`` does.

Why one flat vector: everything between the env and the network (the rollout buffers, a cohort's
joined envs, minibatches, evaluation, replay) then stays one tensor per step, as for a Box. The
packing needs no layout of its own: the keys in Gymnasium's order, a Discrete as its value, anything
else flattened, in float32 (uint8 images are exact in it); the network derives the same layout from
the Dict space, so nothing about it travels in a checkpoint.

Keys of other spaces (Text, Graph, Sequence, Tuple, a nested Dict) are refused with one line naming
the key.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from acx.errors import ConfigError

KEY_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiBinary)


def check_keys(space: gym.spaces.Dict, env_id: str) -> None:
    """One line naming the first key of a space the network has no encoder for."""
    for key, sub in space.spaces.items():
        if not isinstance(sub, KEY_SPACES):
            raise ConfigError(
                f"env: {env_id}'s observation key {key!r} is {sub}; acx reads Box, Discrete and MultiBinary keys "
                "of a Dict (drop it with env.wrappers=[{_target_: gymnasium.wrappers.FilterObservation, "
                "filter_keys: [...]}])"
            )


def pack(space: gym.spaces.Dict, observation: dict) -> np.ndarray:
    """One Dict observation as one flat float32 vector: its keys in the space's order."""
    return np.concatenate([np.asarray(observation[key], dtype=np.float32).reshape(-1) for key in space.spaces])


class PackDict(gym.ObservationWrapper):
    """A Dict-observation env as one of flat float32 vectors (``pack``)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.dict_space = env.observation_space
        size = pack(self.dict_space, self.dict_space.sample()).size  # what ``pack`` gives, whatever the keys
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)

    def observation(self, observation):
        return pack(self.dict_space, observation)
