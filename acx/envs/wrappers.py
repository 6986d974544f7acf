"""Observation wrappers of acx's own, for ``env.wrappers``.

``KeepObservation``: the entries of a Box observation at the indices ``keep``, the others dropped, as the
zoo's partially observed ``NoVel`` envs drop the velocities (sb3-contrib's ``CartPoleNoVelEnv`` keeps the
cart position and the pole angle). Gymnasium has no wrapper that takes indices: ``TransformObservation``
needs a callable and the new space, which a YAML config cannot give.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from acx.errors import ConfigError


class KeepObservation(gym.ObservationWrapper):
    def __init__(self, env: gym.Env, keep: Sequence[int]):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ConfigError(f"KeepObservation: keeps entries of a flat Box observation, not of {space}")
        self.keep = np.asarray(list(keep), dtype=np.int64)
        if self.keep.size == 0 or self.keep.min() < -space.shape[0] or self.keep.max() >= space.shape[0]:
            raise ConfigError(f"KeepObservation: keep={list(keep)} is out of range for {space}")
        self.observation_space = gym.spaces.Box(space.low[self.keep], space.high[self.keep], dtype=space.dtype)

    def observation(self, observation):
        return observation[self.keep]
