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
- ``Beacon-v0``: Dict observations: ``"goal"`` a Discrete(3), a 36 x 36 x 1 uint8 ``"frame"``, dark
  or bright, and ``"noise"``, a Box(2) of float64 distractors around 1000 (``normalize.obs`` scales
  them). Action ``(goal + 1) % 3`` pays under a bright frame, ``goal`` under a dark one: a policy
  needs both keys. 20 steps per episode: the best return is 20, random play's 6.7, and a policy
  blind to the frame (or to the goal) gets 10 at most.
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


class Beacon(gym.Env):
    action_space = gym.spaces.Discrete(3)

    def __init__(self, extra: str | None = None):
        """``extra="text"``: a Text key "mission" too (as MiniGrid's), which acx refuses."""
        spaces = {
            "goal": gym.spaces.Discrete(3),
            "noise": gym.spaces.Box(-np.inf, np.inf, (2,), np.float64),
            "frame": gym.spaces.Box(0, 255, (36, 36, 1), np.uint8),
        }
        if extra == "text":
            spaces["mission"] = gym.spaces.Text(20)
        self.observation_space = gym.spaces.Dict(spaces)

    def _obs(self) -> dict:
        self.goal = int(self.np_random.integers(3))
        self.bright = bool(self.np_random.random() < 0.5)
        frame = np.full((36, 36, 1), 200 if self.bright else 20, dtype=np.uint8)
        obs = {"goal": self.goal, "noise": 1000 + self.np_random.normal(size=2), "frame": frame}
        return {**obs, "mission": "go"} if "mission" in self.observation_space.spaces else obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == (self.goal + self.bright) % 3)
        return self._obs(), reward, False, False, {}


class Chatty(gym.Env):
    """Text observations, which acx refuses."""

    observation_space = gym.spaces.Text(20)
    action_space = gym.spaces.Discrete(2)


gym.register("SignBandit-v0", entry_point=SignBandit, max_episode_steps=20)
gym.register("PayEveryStep-v0", entry_point=PayEveryStep, max_episode_steps=20)
gym.register("Buttons-v0", entry_point=Buttons, max_episode_steps=20)
gym.register("Bits-v0", entry_point=Bits, max_episode_steps=20)
gym.register("Beacon-v0", entry_point=Beacon, max_episode_steps=20)
gym.register("Chatty-v0", entry_point=Chatty)
