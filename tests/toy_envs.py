"""Envs of the tests' own, registered with Gymnasium on import: trained as ``env.id=tests.toy_envs:<Id>``.

- ``SignBandit-v0``: each step shows a float64 observation ``[1000 + s]`` with a random sign s in
  {-1, +1}; action 1 pays 1 when s > 0, action 0 when s < 0. 20 steps per episode (truncated), so
  the best return is 20 and random play's is 10. Raw, the two observations differ by 0.2% of their
  size: a policy reads them well only normalised (``normalize.obs=true``).
- ``PayEveryStep-v0``: a constant observation, 1 paid every step, never terminated, truncated by
  its time limit after 20 steps. V(s) = 1 / (1 - gamma) when truncation bootstraps; a learner that
  treats truncation as termination learns the mean discounted sum of the steps left instead.
- ``Buttons-v0``: a MultiDiscrete([3, 4, 2]) action for a context c in 0..3 shown one-hot; the parts
  pay when they press c % 3, c and c % 2. Each step pays the fraction of parts right; 20 steps per
  episode, so the best return is 20 and random play's is 20 x (1/3 + 1/4 + 1/2) / 3 = 7.2.
- ``Bits-v0``: a MultiBinary((2, 2)) action for four random signs shown as +-1; bit i pays when it is
  1 exactly where sign i is +. Each step pays the fraction of bits right: best 20, random 10.
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


class Buttons(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.MultiDiscrete([3, 4, 2])

    def _obs(self) -> np.ndarray:
        self.context = int(self.np_random.integers(4))
        return np.eye(4, dtype=np.float32)[self.context]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        c = self.context
        right = np.asarray(action) == np.array([c % 3, c, c % 2])
        return self._obs(), float(right.mean()), False, False, {}


class Bits(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.MultiBinary((2, 2))

    def _obs(self) -> np.ndarray:
        self.signs = self.np_random.choice([-1.0, 1.0], size=4).astype(np.float32)
        return self.signs.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        assert np.shape(action) == (2, 2), np.shape(action)
        right = np.asarray(action).reshape(-1) == (self.signs > 0)
        return self._obs(), float(right.mean()), False, False, {}


gym.register("SignBandit-v0", entry_point=SignBandit, max_episode_steps=20)
gym.register("PayEveryStep-v0", entry_point=PayEveryStep, max_episode_steps=20)
gym.register("Buttons-v0", entry_point=Buttons, max_episode_steps=20)
gym.register("Bits-v0", entry_point=Bits, max_episode_steps=20)
