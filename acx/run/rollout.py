"""Rollout collection: step the vector env with the current policy into pre-allocated (T, N) storage.

The schedule is the one place where the variants differ in *when* they learn: ``n_steps`` fixed
(TD(0): k transitions from one env; n-step: T steps from N envs), or ``n_steps=None``: until the
episode ends (Monte-Carlo; one env).

Vector envs use Gymnasium's next-step autoreset: the observation returned with ``done`` is the real
final observation, and the *following* step of that env only resets it (its action is ignored). So
``obs[t + 1]`` is always the true next observation of step t, ``next_values[t] = values[t + 1]``
bootstraps truncations correctly, and the reset steps are marked invalid and masked out of the loss.

Episode returns are summed from the rewards the env returns. An env whose learner should see other
rewards or terminals (Atari: rewards clipped to [-1, 1], a lost life as terminal while the game goes
on) reports them in ``info['learning_reward']`` and ``info['learning_terminated']``; the rollout's
``rewards``/``terminated``/``done`` are those, and logged returns stay the game's scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from acx.algo.networks import ActorCritic


@dataclass
class Rollout:
    """One batch of (T, N) transitions; ``valid`` is False on autoreset steps.

    The tensors are views into the collector's pre-allocated storage: they hold until the next
    ``collect()`` (no allocation per rollout).
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    done: Tensor
    valid: Tensor
    values: Tensor
    next_values: Tensor
    episode_returns: list[float]
    episode_lengths: list[int]
    episode_envs: list[int]  # the env index of each finished episode (a population's env i is member i // N)
    log_probs: Tensor | None = None  # log pi(a_t|s_t) of the policy that acted, when the loss needs it (PPO)

    @property
    def num_transitions(self) -> int:
        return int(self.valid.sum())


class RolloutCollector:
    """Keeps the vector env's state between rollouts and fills storage for each one."""

    def __init__(
        self,
        envs,
        net: ActorCritic,
        n_steps: int | None,
        device: torch.device,
        env_actions: Callable[[np.ndarray], np.ndarray] = lambda a: a,
        initial_capacity: int = 512,
        store_log_probs: bool = False,
    ):
        self.envs, self.net, self.n_steps, self.device = envs, net, n_steps, device
        self.store_log_probs = store_log_probs  # PPO's ratio needs log pi_old(a|s); A2C's loss does not
        self.env_actions = env_actions
        self.num_envs = envs.num_envs
        obs, _ = envs.reset()
        self.obs = obs
        self.autoreset = np.zeros(self.num_envs, dtype=bool)
        self.ep_return = np.zeros(self.num_envs, dtype=np.float64)
        self.ep_length = np.zeros(self.num_envs, dtype=np.int64)
        capacity = n_steps if n_steps is not None else initial_capacity
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        n, dev = self.num_envs, self.device
        space = self.envs.single_action_space
        obs_shape = self.envs.single_observation_space.shape
        obs_dtype = torch.uint8 if self.envs.single_observation_space.dtype == np.uint8 else torch.float32
        act_shape = space.shape if space.shape else ()
        act_dtype = torch.float32 if np.issubdtype(space.dtype, np.floating) else torch.long
        self.capacity = capacity
        self.buf_obs = torch.zeros((capacity, n, *obs_shape), dtype=obs_dtype, device=dev)
        self.buf_actions = torch.zeros((capacity, n, *act_shape), dtype=act_dtype, device=dev)
        self.buf_values = torch.zeros((capacity + 1, n), device=dev)
        self.buf_rewards = np.zeros((capacity, n), dtype=np.float32)
        self.buf_terminated = np.zeros((capacity, n), dtype=bool)
        self.buf_done = np.zeros((capacity, n), dtype=bool)
        self.buf_valid = np.zeros((capacity, n), dtype=bool)
        self.buf_log_probs = torch.zeros((capacity, n), device=dev) if self.store_log_probs else None
        # one view per time step: row.copy_(x) costs a third of buf[t] = x, whose indexing runs per step
        self.obs_rows, self.action_rows = self.buf_obs.unbind(0), self.buf_actions.unbind(0)
        self.value_rows = self.buf_values.unbind(0)
        self.log_prob_rows = self.buf_log_probs.unbind(0) if self.store_log_probs else None

    BUFFERS = ("buf_obs", "buf_actions", "buf_values", "buf_rewards", "buf_terminated", "buf_done", "buf_valid")

    def _grow(self) -> None:
        """Double the storage (episodic rollouts only: an episode longer than the buffer)."""
        names = (*self.BUFFERS, "buf_log_probs") if self.store_log_probs else self.BUFFERS
        old = [getattr(self, name) for name in names]
        self._alloc(self.capacity * 2)
        for name, prev in zip(names, old, strict=True):
            getattr(self, name)[: len(prev)] = prev

    def collect(self) -> Rollout:
        """Step the envs until the schedule says stop; return the rollout and finished episodes."""
        returns: list[float] = []
        lengths: list[int] = []
        finished: list[int] = []
        t = 0
        while True:
            if t == self.capacity:
                self._grow()
            obs_t = self.obs_rows[t].copy_(torch.from_numpy(self.obs))  # the policy reads the stored row
            with torch.inference_mode():
                if self.store_log_probs:  # the policy that acts is the "old" one of PPO's ratio
                    pi, value = self.net(obs_t)
                    action = self.net.policy_head.sample(pi)  # what net.act does, keeping pi
                    self.log_prob_rows[t].copy_(self.net.policy_head.log_prob(pi, action))
                else:
                    action, value = self.net.act(obs_t)
            self.action_rows[t].copy_(action)
            self.value_rows[t].copy_(value)
            action_np = action.cpu().numpy()
            self.obs, reward, terminated, truncated, info = self.envs.step(self.env_actions(action_np))
            done = terminated | truncated  # the real episode's end: resets, returns and lengths follow it
            # the learner's view where an env reports one (Atari: clipped rewards, a lost life as terminal)
            learning_terminated = info.get("learning_terminated", terminated)
            valid = ~self.autoreset
            self.buf_rewards[t] = info.get("learning_reward", reward)
            self.buf_terminated[t] = learning_terminated
            self.buf_done[t] = done | learning_terminated
            self.buf_valid[t] = valid
            self.ep_return += reward * valid
            self.ep_length += valid
            if done.any():  # most steps end no episode: skip the bookkeeping's NumPy calls
                for i in np.flatnonzero(done & valid):
                    returns.append(float(self.ep_return[i]))
                    lengths.append(int(self.ep_length[i]))
                    finished.append(int(i))
                self.ep_return[done] = 0.0
                self.ep_length[done] = 0
            self.autoreset = done
            t += 1
            if self.n_steps is None:
                if done[0] and valid[0]:
                    break
            elif t == self.n_steps:
                break
        with torch.inference_mode():
            self.buf_values[t] = self.net.value(torch.as_tensor(self.obs, device=self.device))
        dev = self.device
        return Rollout(
            obs=self.buf_obs[:t],
            actions=self.buf_actions[:t],
            rewards=torch.as_tensor(self.buf_rewards[:t], device=dev),
            terminated=torch.as_tensor(self.buf_terminated[:t], device=dev),
            done=torch.as_tensor(self.buf_done[:t], device=dev),
            valid=torch.as_tensor(self.buf_valid[:t], device=dev),
            values=self.buf_values[:t],
            next_values=self.buf_values[1 : t + 1],
            episode_returns=returns,
            episode_lengths=lengths,
            episode_envs=finished,
            log_probs=self.buf_log_probs[:t] if self.store_log_probs else None,
        )

    def keep_envs(self, index: np.ndarray, envs) -> None:
        """Go on with only the envs at ``index`` of the old ones, now stepped as ``envs`` (a population
        drops the envs of members that stopped); their episodes continue where they were."""
        self.envs, self.num_envs = envs, len(index)
        self.obs = self.obs[index]
        self.autoreset, self.ep_return, self.ep_length = (
            self.autoreset[index],
            self.ep_return[index],
            self.ep_length[index],
        )
        self._alloc(self.capacity)
