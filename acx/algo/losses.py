"""The actor-critic losses: policy-gradient, critic and entropy terms, returned separately.

``ActorCriticLoss`` is A2C's; ``PPOLoss`` clips the policy's probability ratio (and optionally the
critic's change) against what the rollout stored at collection. The caller sums ``total``; each term
is reported under ``losses/`` by the logger.

The coefficients (``vf_coef``, ``ent_coef``, PPO's ``clip_scale``) are arguments of each call, as numbers
or as one per member ((P,) tensors, a cohort's), as TorchRL's losses take theirs; the values given to
the constructor are what a call without them uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Coef = float | Tensor  # a number, or one per member: (P,)


def masked_mean(x: Tensor, mask: Tensor, keepdim: bool = False) -> Tensor:
    """Mean of x over the True entries of mask, along the last dim: a (B,) batch gives a scalar, a
    cohort's (P, B) batches give one mean per member."""
    return (x * mask).sum(-1, keepdim=keepdim) / mask.sum(-1, keepdim=keepdim).clamp(min=1)


def per_row(value: float | Tensor, like: Tensor) -> float | Tensor:
    """A coefficient as it scales ``like`` entry by entry: a number as it is, one per member ((P,), a
    cohort's) against the member's row of a (P, B) batch."""
    return value.unsqueeze(-1) if torch.is_tensor(value) and value.dim() == 1 else value


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

    # whether the loss compares with the policy and critic at collection: the collector then stores
    # log pi_old(a|s), and the Updater passes old_log_probs and old_values
    needs_old_log_probs = False

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

    def critic_per_step(self, values: Tensor, returns: Tensor) -> Tensor:
        """The critic's loss per transition, before ``vf_coef`` and the reduction."""
        if self.value_loss == "mse":
            return F.mse_loss(values, returns, reduction="none")
        return F.huber_loss(values, returns, reduction="none", delta=self.huber_delta)  # delta=1: smooth-L1

    def __call__(
        self,
        log_probs: Tensor,
        entropy: Tensor,
        values: Tensor,
        advantages: Tensor,
        returns: Tensor,
        mask: Tensor,
        old_log_probs: Tensor | None = None,
        old_values: Tensor | None = None,
        *,
        vf_coef: Coef | None = None,
        ent_coef: Coef | None = None,
    ) -> dict[str, Tensor]:
        """Loss terms for flat (B,) tensors, or per member for a cohort's (P, B) tensors (then the
        coefficients may be (P,) tensors); ``advantages``/``returns`` carry no gradient. A2C's
        gradient is taken at the policy that collected the batch, so ``old_log_probs``/``old_values``
        (PPO's) are not used."""
        mask = mask.float()
        advantages, returns = advantages.detach(), returns.detach()
        policy = self._reduce(-log_probs * advantages, mask)
        critic = self.critic_per_step(values, returns)
        return self._with_critic_and_entropy(policy, critic, entropy, mask, vf_coef, ent_coef)

    def _with_critic_and_entropy(self, policy: Tensor, critic: Tensor, entropy: Tensor, mask: Tensor,
                                 vf_coef: Coef | None, ent_coef: Coef | None) -> dict:  # fmt: skip
        value = (self.vf_coef if vf_coef is None else vf_coef) * self._reduce(critic, mask)
        entropy_mean = masked_mean(entropy, mask)
        entropy_term = -(self.ent_coef if ent_coef is None else ent_coef) * self._reduce(entropy, mask)
        return {
            "policy": policy,
            "value": value,
            "entropy": entropy_term,
            "total": policy + value + entropy_term,
            "entropy_mean": entropy_mean.detach(),
        }


class PPOLoss(ActorCriticLoss):
    """PPO's clipped surrogate (Schulman et al. 2017) with A2C's critic and entropy terms, over one
    minibatch (the Updater passes each minibatch to ``targets``: advantages are normalised per minibatch).

    - ``clip_range`` c: the policy term is -min(r A, clip(r, 1 - c, 1 + c) A), with the ratio
      r = pi(a|s) / pi_old(a|s) against the log-probs stored at collection; null: -r A, unclipped
      (at r = 1, one epoch of one minibatch, its gradient is A2C's);
    - ``clip_range_vf`` c_v: the critic's loss per transition is the larger of the plain one and the
      one of V_old + clip(V - V_old, -c_v, c_v), V_old the value at collection (OpenAI baselines,
      CleanRL); null: the plain loss;
    - ``anneal_clip``: both ranges are multiplied by the lr schedule's multiplier (the ``clip_scale``
      argument, which the learner passes each update): with ``lr_schedule=linear``, rl-baselines3-zoo's
      ``lin_0.2``.

    Besides the terms it returns ``approx_kl`` (mean of (r - 1) - log r, an unbiased estimate of
    KL(pi_old || pi)) and, when clipping, ``clip_fraction`` (the share of ratios outside [1 - c, 1 + c]).
    """

    needs_old_log_probs = True

    def __init__(
        self, clip_range: float | None = 0.2, clip_range_vf: float | None = None, anneal_clip: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.clip_range, self.clip_range_vf, self.anneal_clip = clip_range, clip_range_vf, anneal_clip

    def __call__(
        self,
        log_probs: Tensor,
        entropy: Tensor,
        values: Tensor,
        advantages: Tensor,
        returns: Tensor,
        mask: Tensor,
        old_log_probs: Tensor | None = None,
        old_values: Tensor | None = None,
        *,
        vf_coef: Coef | None = None,
        ent_coef: Coef | None = None,
        clip_scale: Coef = 1.0,
    ) -> dict[str, Tensor]:
        """Loss terms for flat (B,) tensors (or a cohort's (P, B)); ``old_log_probs`` (and ``old_values``
        with value clipping) come from collection and carry no gradient."""
        mask = mask.float()
        advantages, returns = advantages.detach(), returns.detach()
        log_ratio = log_probs - old_log_probs.detach()
        ratio = log_ratio.exp()
        surrogate = ratio * advantages
        if self.clip_range is not None:
            c = per_row(self.clip_range * clip_scale, ratio)
            surrogate = torch.min(surrogate, ratio.clamp(1.0 - c, 1.0 + c) * advantages)
        policy = self._reduce(-surrogate, mask)
        critic = self.critic_per_step(values, returns)
        if self.clip_range_vf is not None:
            old_values, c_v = old_values.detach(), per_row(self.clip_range_vf * clip_scale, values)
            clipped = old_values + (values - old_values).clamp(-c_v, c_v)
            critic = torch.max(critic, self.critic_per_step(clipped, returns))
        terms = self._with_critic_and_entropy(policy, critic, entropy, mask, vf_coef, ent_coef)
        with torch.no_grad():
            terms["approx_kl"] = masked_mean((ratio - 1.0) - log_ratio, mask)
            if self.clip_range is not None:
                terms["clip_fraction"] = masked_mean(((ratio - 1.0).abs() > c).float(), mask)
        return terms
