"""Observation and reward normalisation (``normalize.obs``, ``normalize.reward``): running statistics
over the training envs, held as float64 buffers of the network.

Why in the network and not Gymnasium's ``wrappers.vector.NormalizeObservation``/``NormalizeReward``:

- the statistics then travel wherever the weights go: every checkpoint (best, final, periodic) holds
  them in its weights-only ``model`` state dict, resume restores them bit for bit, and ``acx eval``,
  the training videos and ``acx export`` (the ONNX graph normalises its input) use them with no
  plumbing of their own;
- evaluation uses them frozen without copying statistics between wrapper instances (the eval envs,
  the video env and ``acx eval``'s single env are all other envs than the training ones);
- Gymnasium's reward wrapper changes the rewards the env returns, so the logged episode returns would
  be normalised ones; here the learner's rewards are scaled and logged returns stay the env's;
- a population stacks the statistics per member like its weights (``acx.run.population``).

When they change: the observation statistics take in each rollout's observations after the update on
that rollout, so a rollout is collected and learnt from under the same statistics (PPO's ratio starts
at exactly 1); the reward statistics are updated with the rollout's discounted returns before its
targets are computed, as SB3's ``VecNormalize`` does step by step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RunningMeanStd(nn.Module):
    """Mean and (population) variance of everything ``update`` was given, merged batch by batch with
    Chan et al.'s parallel formula; float64 buffers ``mean``, ``var`` and ``count``.

    ``members``: a population's stacked statistics, one row per member (``mean`` (P, *shape),
    ``count`` (P,)), updated from (P, B, *shape) batches; 0: a single run's, from (B, *shape)."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4, members: int = 0):
        super().__init__()
        lead = (members,) if members else ()
        self.register_buffer("mean", torch.zeros((*lead, *shape), dtype=torch.float64))
        self.register_buffer("var", torch.ones((*lead, *shape), dtype=torch.float64))
        # a count of epsilon to start, as Gymnasium's and SB3's RunningMeanStd do (no division by 0)
        self.register_buffer("count", torch.full(lead, epsilon, dtype=torch.float64))

    @property
    def stacked(self) -> bool:
        return self.count.dim() == 1

    def _lead(self, t: Tensor) -> Tensor:
        """A per-member statistic broadcast over a (P, B, ...) batch."""
        return t.unsqueeze(1) if self.stacked else t

    @torch.no_grad()
    def update(self, x: Tensor, mask: Tensor | None = None) -> None:
        """Take in the rows of ``x`` (batch dim 0, or 1 for stacked statistics) where ``mask`` is True."""
        x = x.to(torch.float64)
        dim = 1 if self.stacked else 0
        if mask is None:
            mask = torch.ones(x.shape[: dim + 1], dtype=torch.bool, device=x.device)
        m = mask.to(torch.float64).reshape(tuple(mask.shape) + (1,) * (x.dim() - mask.dim()))
        n = m.sum(dim)  # broadcasts against mean: (P, 1, ...) or (1, ...)
        batch_mean = (x * m).sum(dim) / n.clamp(min=1)
        batch_var = ((x - batch_mean.unsqueeze(dim)) ** 2 * m).sum(dim) / n.clamp(min=1)
        count = self.count.reshape(tuple(self.count.shape) + (1,) * (self.mean.dim() - self.count.dim()))
        total = count + n
        delta = batch_mean - self.mean
        self.var.copy_((self.var * count + batch_var * n + delta**2 * count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total.reshape(self.count.shape))

    def select(self, index: Tensor) -> None:
        """Keep the members at ``index`` only (stacked statistics)."""
        for name in ("mean", "var", "count"):
            setattr(self, name, getattr(self, name).index_select(0, index))


class ObsNormalizer(nn.Module):
    """``clamp((obs - mean) / sqrt(var + epsilon), -clip, clip)`` with the running statistics, as float32."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8, members: int = 0):
        super().__init__()
        self.rms = RunningMeanStd(shape, members=members)
        self.clip, self.epsilon = float(clip), float(epsilon)

    def forward(self, obs: Tensor) -> Tensor:
        rms = self.rms
        x = (obs.to(torch.float64) - rms._lead(rms.mean)) / torch.sqrt(rms._lead(rms.var) + self.epsilon)
        return x.clamp(-self.clip, self.clip).to(torch.float32)

    def update(self, obs: Tensor, valid: Tensor) -> None:
        """A rollout's (T, N, ...) observations where ``valid`` (T, N); stacked: (T, P * N, ...)."""
        if self.rms.stacked:
            members = self.rms.count.shape[0]
            steps = obs.shape[0]
            obs = obs.reshape(steps, members, -1, *obs.shape[2:]).transpose(0, 1).flatten(1, 2)
            valid = valid.reshape(steps, members, -1).transpose(0, 1).flatten(1, 2)
        else:
            obs, valid = obs.flatten(0, 1), valid.flatten(0, 1)
        self.rms.update(obs, valid)


class RewardNormalizer(nn.Module):
    """Rewards divided by the running std of the discounted return, clipped to [-clip, clip]: SB3's
    ``VecNormalize(norm_reward=True)`` and Gymnasium's ``NormalizeReward``. The return of each env's
    episode so far (``returns``) is the envs' state, not the run's: it restarts at 0 with fresh
    episodes (a resumed run's), and is not saved."""

    def __init__(self, clip: float = 10.0, epsilon: float = 1e-8, members: int = 0):
        super().__init__()
        self.rms = RunningMeanStd((), members=members)
        self.clip, self.epsilon = float(clip), float(epsilon)
        self.returns: Tensor | None = None  # (N,) or a population's (P * N,)

    @torch.no_grad()
    def forward(self, rewards: Tensor, done: Tensor, valid: Tensor, gamma: float | Tensor) -> Tensor:
        """A rollout's (T, N) rewards, normalised; ``gamma`` a float or one per env column."""
        steps, cols = rewards.shape
        if self.returns is None or self.returns.shape[0] != cols:
            self.returns = torch.zeros(cols, dtype=torch.float64, device=rewards.device)
        # as float32 first: a population's per-member gammas are float32, and a member must match its single run
        gamma = torch.as_tensor(gamma, dtype=torch.float32, device=rewards.device).to(torch.float64)
        seen = torch.empty((steps, cols), dtype=torch.float64, device=rewards.device)
        for t in range(steps):
            self.returns = torch.where(valid[t], self.returns * gamma + rewards[t].double(), self.returns)
            seen[t] = self.returns
            self.returns = torch.where(done[t], torch.zeros_like(self.returns), self.returns)
        if self.rms.stacked:
            members = self.rms.count.shape[0]
            self.rms.update(seen.reshape(steps, members, -1).transpose(0, 1).flatten(1, 2),
                            valid.reshape(steps, members, -1).transpose(0, 1).flatten(1, 2))  # fmt: skip
            var = self.rms.var.repeat_interleave(cols // members)
        else:
            self.rms.update(seen.flatten(), valid.flatten())
            var = self.rms.var
        scaled = rewards.double() / torch.sqrt(var + self.epsilon)
        return scaled.clamp(-self.clip, self.clip).to(rewards.dtype)

    def keep_columns(self, index: Tensor) -> None:
        """A population that dropped members: the returns of the envs at ``index`` go on."""
        if self.returns is not None:
            self.returns = self.returns.index_select(0, index)
