"""The actor-critic loss: policy-gradient, critic and entropy terms, returned separately.

The caller sums ``total``; each term is reported under ``losses/`` by the logger.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor, keepdim: bool = False) -> Tensor:
    """Mean of x over the True entries of mask, along the last dim: a (B,) batch gives a scalar, a
    population's (P, B) batches give one mean per member."""
    return (x * mask).sum(-1, keepdim=keepdim) / mask.sum(-1, keepdim=keepdim).clamp(min=1)


def normalize(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / (std + eps) over the masked entries of the last dim (unbiased std, as torch.std)."""
    n = mask.sum(-1, keepdim=True).clamp(min=2)
    mean = masked_mean(x, mask, keepdim=True)
    var = (((x - mean) * mask) ** 2).sum(-1, keepdim=True) / (n - 1)
    return (x - mean) / (var.sqrt() + eps)


class ActorCriticLoss:
    """A2C loss over one rollout.

    - ``normalize_returns``: standardise the return targets per batch before the critic sees them
      and recompute advantages from them (seeds 001, 003, 004);
    - ``normalize_advantage``: standardise advantages per batch (seed 000);
    - ``reduction``: 'mean' over transitions, or 'sum' (seeds 003 and 004 sum per-step losses).

    ``value_loss``: 'mse', or 'huber'/'smooth_l1' (the same loss; ``huber_delta`` 1 is smooth-L1).
    """

    def __init__(
        self,
        value_loss: str = "mse",
        vf_coef: float = 0.5,
        ent_coef: float = 0.0,
        normalize_advantage: bool = False,
        normalize_returns: bool = False,
        reduction: str = "mean",
        huber_delta: float = 1.0,
    ):
        self.value_loss, self.vf_coef, self.ent_coef = value_loss, vf_coef, ent_coef
        self.normalize_advantage, self.normalize_returns = normalize_advantage, normalize_returns
        self.reduction, self.huber_delta = reduction, huber_delta

    def targets(self, advantages: Tensor, returns: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The advantages and critic targets actually used, after the optional normalisations."""
        if self.normalize_returns:
            returns = normalize(returns, mask)
            advantages = returns - values
        if self.normalize_advantage:
            advantages = normalize(advantages, mask)
        return advantages, returns

    def _reduce(self, x: Tensor, mask: Tensor) -> Tensor:
        return (x * mask).sum(-1) if self.reduction == "sum" else masked_mean(x, mask)

    def __call__(
        self, log_probs: Tensor, entropy: Tensor, values: Tensor, advantages: Tensor, returns: Tensor, mask: Tensor
    ) -> dict[str, Tensor]:
        """Loss terms for flat (B,) tensors, or per member for a population's (P, B) tensors (then the
        coefficients may be (P,) tensors); ``advantages``/``returns`` carry no gradient."""
        mask = mask.float()
        advantages, returns = advantages.detach(), returns.detach()
        policy = self._reduce(-log_probs * advantages, mask)
        if self.value_loss == "mse":
            per_step = F.mse_loss(values, returns, reduction="none")
        else:  # huber with delta=1 is smooth-L1
            per_step = F.huber_loss(values, returns, reduction="none", delta=self.huber_delta)
        value = self.vf_coef * self._reduce(per_step, mask)
        entropy_mean = masked_mean(entropy, mask)
        entropy_term = -self.ent_coef * self._reduce(entropy, mask)
        return {
            "policy": policy,
            "value": value,
            "entropy": entropy_term,
            "total": policy + value + entropy_term,
            "entropy_mean": entropy_mean.detach(),
        }
