"""Return and advantage estimators: pure functions over (T, *B) rollout tensors.

Time is the first dimension; the batch ``B`` after it is any shape: ``(N,)`` envs for one run, ``(P, N)``
members x envs for a cohort. ``gamma`` (and GAE's ``gae_lambda``) is a float, or a tensor that broadcasts
against one step's batch ``B`` (a cohort's per-member values as ``(P, 1)``), so a member dimension costs
nothing here. Every estimator takes the same inputs, TorchRL-style, with ``terminated`` and ``done``
kept apart:

- ``rewards[t]``: reward of the transition taken at step t;
- ``values[t]``: V(s_t);
- ``next_values[t]``: V(s_{t+1}) where s_{t+1} is the *true* next observation, also when the
  episode ended at t (the final observation, before any reset);
- ``terminated[t]``: the MDP reached a terminal state at t (no bootstrap: V(terminal) = 0);
- ``done[t]``: terminated *or* truncated at t. A time-limit truncation is not terminal: its target
  bootstraps from ``next_values[t]``, but nothing after t belongs to the same episode, so no return
  flows back across it.

The last row of a rollout is bootstrapped from ``next_values[-1]`` unless it is terminal.
Each returns ``(advantages, returns)`` with ``returns = advantages + values``.
"""

from __future__ import annotations

import torch
from torch import Tensor

Rate = float | Tensor  # a float, or a tensor that broadcasts against one step's batch B


def _check(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, done: Tensor,
           **rates: Rate) -> None:  # fmt: skip
    shape = rewards.shape
    if rewards.dim() < 1:
        raise ValueError(f"expected (T, *B) tensors, got rewards of shape {tuple(shape)}")
    for name, x in (("values", values), ("next_values", next_values), ("terminated", terminated), ("done", done)):
        if x.shape != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, rewards has {tuple(shape)}")
    for name, rate in rates.items():
        if torch.is_tensor(rate) and not _broadcasts(rate.shape, shape[1:]):
            raise ValueError(f"{name} of shape {tuple(rate.shape)} does not broadcast to the batch {tuple(shape[1:])}")


def _broadcasts(shape: torch.Size, batch: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, batch) == batch
    except RuntimeError:
        return False


def td0_advantages(
    rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, done: Tensor, gamma: Rate
) -> tuple[Tensor, Tensor]:
    """One-step TD(0): target r + gamma * (1 - terminated) * V(s'), advantage = target - V(s)."""
    _check(rewards, values, next_values, terminated, done, gamma=gamma)
    targets = rewards + gamma * (1.0 - terminated.float()) * next_values
    return targets - values, targets


def monte_carlo_advantages(
    rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, done: Tensor, gamma: Rate
) -> tuple[Tensor, Tensor]:
    """Discounted return to the end of each episode; truncated or unfinished episodes bootstrap from V."""
    _check(rewards, values, next_values, terminated, done, gamma=gamma)
    not_terminated = 1.0 - terminated.float()
    done = done.bool()
    returns = torch.empty_like(rewards)
    following = next_values[-1]  # the bootstrap for an episode still running at the rollout's end
    for t in range(rewards.shape[0] - 1, -1, -1):
        episode_end = not_terminated[t] * next_values[t]
        following = rewards[t] + gamma * torch.where(done[t], episode_end, following)
        returns[t] = following
    return returns - values, returns


def gae_advantages(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    done: Tensor,
    gamma: Rate,
    gae_lambda: Rate = 1.0,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation; lambda=1 gives n-step returns, lambda=0 gives TD(0)."""
    _check(rewards, values, next_values, terminated, done, gamma=gamma, gae_lambda=gae_lambda)
    deltas = rewards + gamma * (1.0 - terminated.float()) * next_values - values
    carry = gamma * gae_lambda * (1.0 - done.float())
    advantages = torch.empty_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = deltas[t] + carry[t] * last
        advantages[t] = last
    return advantages, advantages + values
