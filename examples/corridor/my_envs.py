"""A user's own env module: ``env.id: my_envs:Corridor-v0`` makes acx import it (it registers the env)."""

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """Walk right to the end of a corridor: -0.1 per step, +1 at the end (best return: 1 - 0.1 (length - 1))."""

    def __init__(self, length: int = 8):
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)  # 0: left, 1: right

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action == 1 else -1))
        done = self.pos == self.length
        return np.array([self.pos / self.length], np.float32), 1.0 if done else -0.1, done, False, {}


gym.register("Corridor-v0", entry_point=Corridor, max_episode_steps=100)
