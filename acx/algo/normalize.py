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
- a cohort stacks them per member like its weights (``acx.algo.stack``): the code here reads a
  member dim, when there is one, as a leading dim of the statistics and of the batches.

When they change: the observation statistics take in each rollout's observations after the update on
that rollout, so a rollout is collected and learnt from under the same statistics (PPO's ratio starts
at exactly 1); the reward statistics are updated with the rollout's discounted returns before its
targets are computed, as SB3's ``VecNormalize`` does step by step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from acx.algo.networks import batch_broadcast


class RunningMeanStd(nn.Module):
    """Mean and (population) variance of everything ``update`` was given, merged batch by batch with
    Chan et al.'s parallel formula; float64 buffers ``mean`` and ``var`` (``shape``) and ``count`` ().

    Stacked for a cohort, the buffers get a member dim in front and ``update`` takes (P, batch..., *shape)."""

    stacks_by_broadcast = True

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("mean", torch.zeros(self.shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(self.shape, dtype=torch.float64))
        # a count of epsilon to start, as Gymnasium's and SB3's RunningMeanStd do (no division by 0)
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor, mask: Tensor | None = None) -> None:
        """Take in the entries of ``x`` (lead dims, batch dims, then ``shape``) where ``mask`` (lead and
        batch dims) is True."""
        lead, features = self.count.dim(), len(self.shape)
        x = x.to(torch.float64).flatten(lead, x.dim() - features - 1)  # (*lead, B, *shape)
        if mask is None:
            mask = torch.ones(x.shape[: lead + 1], dtype=torch.bool, device=x.device)
        m = mask.flatten(lead).to(torch.float64).view(*x.shape[: lead + 1], *[1] * features)
        n = m.sum(lead)  # (*lead, 1, ...): broadcasts against mean
        batch_mean = (x * m).sum(lead) / n.clamp(min=1)
        batch_var = ((x - batch_mean.unsqueeze(lead)) ** 2 * m).sum(lead) / n.clamp(min=1)
        count = self.count.reshape(tuple(self.count.shape) + (1,) * features)
        total = count + n
        delta = batch_mean - self.mean
        self.var.copy_((self.var * count + batch_var * n + delta**2 * count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total.reshape(self.count.shape))


class ObsNormalizer(nn.Module):
    """``clamp((obs - mean) / sqrt(var + epsilon), -clip, clip)`` with the running statistics, as float32."""

    stacks_by_broadcast = True

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8, only: Tensor | None = None):
        super().__init__()
        self.rms = RunningMeanStd(shape)
        self.clip, self.epsilon = float(clip), float(epsilon)
        # ``only``: which entries are normalised (a packed Dict's Box keys); the others pass as they are
        self.only: Tensor | None
        self.register_buffer("only", None if only is None else only.to(torch.bool).reshape(shape))

    def forward(self, obs: Tensor) -> Tensor:
        features = len(self.rms.shape)
        mean = batch_broadcast(self.rms.mean, obs, features)
        var = batch_broadcast(self.rms.var, obs, features)
        x = (obs.to(torch.float64) - mean) / torch.sqrt(var + self.epsilon)
        x = x.clamp(-self.clip, self.clip).to(torch.float32)
        return x if self.only is None else torch.where(batch_broadcast(self.only, obs, features), x, obs.float())

    def update(self, obs: Tensor, valid: Tensor) -> None:
        """A rollout's observations (lead dims, T, N, *shape) where ``valid`` (lead dims, T, N)."""
        self.rms.update(obs, valid)


class RewardNormalizer(nn.Module):
    """Rewards divided by the running std of the discounted return, clipped to [-clip, clip]: SB3's
    ``VecNormalize(norm_reward=True)`` and Gymnasium's ``NormalizeReward``. The return of each env's
    episode so far is the envs' state, not the run's: the caller keeps it (it restarts at 0 with fresh
    episodes, a resumed run's) and it is not saved."""

    stacks_by_broadcast = True

    def __init__(self, clip: float = 10.0, epsilon: float = 1e-8):
        super().__init__()
        self.rms = RunningMeanStd(())
        self.clip, self.epsilon = float(clip), float(epsilon)

    @torch.no_grad()
    def forward(
        self, rewards: Tensor, done: Tensor, valid: Tensor, gamma: float | Tensor, returns: Tensor
    ) -> tuple[Tensor, Tensor]:
        """A rollout's rewards (lead dims, T, N), normalised, and the envs' running returns (lead dims,
        N) after it; ``gamma`` a float or one per lead entry."""
        steps = rewards.shape[-2]
        # as float32 first: a cohort's per-member gammas are float32, and a member must match its single run
        gamma = torch.as_tensor(gamma, dtype=torch.float32, device=rewards.device).to(torch.float64)
        gamma = gamma.unsqueeze(-1)  # against (lead dims, N)
        seen = torch.empty(rewards.shape, dtype=torch.float64, device=rewards.device)
        for t in range(steps):
            returns = torch.where(valid[..., t, :], returns * gamma + rewards[..., t, :].double(), returns)
            seen[..., t, :] = returns
            returns = torch.where(done[..., t, :], torch.zeros_like(returns), returns)
        self.rms.update(seen, valid)
        var = batch_broadcast(self.rms.var, rewards, 0)
        scaled = rewards.double() / torch.sqrt(var + self.epsilon)
        return scaled.clamp(-self.clip, self.clip).to(rewards.dtype), returns
