"""Envs of the tests' own, registered with Gymnasium on import: trained as ``env.id=tests.toy_envs:<Id>``.

- ``SignBandit-v0``: each step shows a float64 observation ``[1000 + s]`` with a random sign s in
  {-1, +1}; action 1 pays 1 when s > 0, action 0 when s < 0. 20 steps per episode (truncated), so
  the best return is 20 and random play's is 10. Raw, the two observations differ by 0.2% of their
  size: a policy reads them well only normalised (``normalize.obs=true``).
- ``PayEveryStep-v0``: a constant observation, 1 paid every step, never terminated, truncated by
  its time limit after 20 steps. V(s) = 1 / (1 - gamma) when truncation bootstraps; a learner that
  treats truncation as termination learns the mean discounted sum of the steps left instead.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class SignBandit(gym.Env):
    def __init__(self, offset: float = 1000.0):
        self.offset = offset
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
        self.action_space = gym.spaces.Discrete(2)
        self.sign = 1.0

    def _obs(self) -> np.ndarray:
        self.sign = float(self.np_random.choice([-1.0, 1.0]))
        return np.array([self.offset + self.sign], dtype=np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == int(self.sign > 0))
        return self._obs(), reward, False, False, {}


class PayEveryStep(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, dtype=np.float32), {}

    def step(self, action):
        return np.ones(1, dtype=np.float32), 1.0, False, False, {}


gym.register("SignBandit-v0", entry_point=SignBandit, max_episode_steps=20)
gym.register("PayEveryStep-v0", entry_point=PayEveryStep, max_episode_steps=20)
