"""The update: optimizers from config; per gradient step one backward pass of the summed loss,
clipping, step; epochs of shuffled minibatches for PPO; plus the diagnostics the logger reports
(seed 002's gradient statistics, the critic's explained variance, PPO's approx KL and clip fraction)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from acx.algo.losses import ActorCriticLoss, masked_mean
from acx.algo.networks import ActorCritic
from acx.algo.optim import Optimizer
from acx.errors import NonFiniteError
from acx.run.rollout import Rollout


def linear_lr(fraction_done: float, final_fraction: float = 0.0) -> float:
    """Learning-rate multiplier falling linearly from 1 at the first step to ``final_fraction`` at
    ``total_steps`` (rl-baselines3-zoo's ``lin_`` schedules); held at the ends outside [0, 1]."""
    return 1.0 - (1.0 - final_fraction) * min(max(fraction_done, 0.0), 1.0)


@dataclass(frozen=True)
class ConstantLR:
    """``lr_schedule=constant``: the configured lr throughout."""

    def __call__(self, fraction_done: float) -> float:
        return 1.0


@dataclass(frozen=True)
class LinearLR:
    """``lr_schedule=linear``: ``linear_lr`` of the fraction of ``total_steps`` done. A function of
    progress alone, so a resumed run continues the same schedule. (An object, not a ``_partial_``
    function: Hydra re-authorises a partial on every call, ~0.1 ms, and this runs every update.)"""

    final_fraction: float = 0.0

    def __call__(self, fraction_done: float) -> float:
        return linear_lr(fraction_done, self.final_fraction)


def masked_var(x: Tensor, mask: Tensor) -> Tensor:
    """Variance (biased) of x over the True entries of mask, along the last dim."""
    return masked_mean((x - masked_mean(x, mask, keepdim=True)) ** 2, mask)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 - Var(returns - values) / Var(returns) over the masked transitions: 1 is a perfect critic, 0 is
    no better than a constant, below 0 is worse; NaN when the returns do not vary."""
    var_returns = masked_var(returns, mask)
    ratio = masked_var(returns - values, mask) / var_returns
    return torch.where(var_returns > 0, 1 - ratio, torch.full_like(ratio, float("nan")))


def gradient_stats(params: list[nn.Parameter]) -> dict[str, Tensor]:
    """Seed 002's statistics over every gradient entry: RMS (``grad_l2``), max |g| and variance."""
    grads = torch.cat([p.grad.detach().flatten() for p in params if p.grad is not None])
    return {
        "train/grad_l2": grads.square().mean().sqrt(),
        "train/grad_max": grads.abs().max(),
        "train/grad_var": grads.var(correction=0),
    }


@dataclass(frozen=True)
class Batch:
    """A rollout's transitions flattened to (B,): what one gradient step reads. ``values`` and
    ``log_probs`` are the critic's and the policy's at collection (``log_probs`` None when not stored)."""

    obs: Tensor
    actions: Tensor
    advantages: Tensor
    returns: Tensor
    values: Tensor
    log_probs: Tensor | None
    mask: Tensor

    @classmethod
    def of(cls, rollout: Rollout, advantages: Tensor, returns: Tensor) -> Batch:
        log_probs = rollout.log_probs.flatten() if rollout.log_probs is not None else None
        obs, actions = rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1)
        return cls(obs, actions, advantages.flatten(), returns.flatten(), rollout.values.flatten(), log_probs,
                   rollout.valid.flatten())  # fmt: skip

    def take(self, index: Tensor) -> Batch:
        """The transitions at ``index`` (valid ones: the minibatch's mask is all True)."""
        log_probs = self.log_probs[index] if self.log_probs is not None else None
        mask = torch.ones(len(index), dtype=torch.bool, device=index.device)
        return Batch(self.obs[index], self.actions[index], self.advantages[index], self.returns[index],
                     self.values[index], log_probs, mask)  # fmt: skip


def rollout_stats(advantages: Tensor, values: Tensor, returns: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """The advantages and targets the loss used and the critic's values before the update, over the rollout."""
    m = mask.float()
    return {
        "train/advantage_mean": masked_mean(advantages, m),
        "train/value_mean": masked_mean(values.detach(), m),
        "train/advantage_std": masked_var(advantages, m).sqrt(),
        "train/explained_variance": explained_variance(values.detach(), returns, m),
    }


# what a loss returns besides its terms, and the metric each is logged as
LOSS_STATS = {"entropy_mean": "train/entropy", "approx_kl": "train/approx_kl", "clip_fraction": "train/clip_fraction"}


class Updater:
    """Turns a rollout and its advantages into optimizer steps: ``epochs`` passes over the rollout's
    valid transitions, each shuffled into ``minibatches`` parts with one step per part (PPO). One
    epoch of one minibatch is a single step on the whole rollout in its own order (the A2C variants).

    ``target_kl``: stop the update's remaining steps at the first minibatch whose approx KL from
    the collecting policy exceeds 1.5 x target_kl, before its step (Stable-Baselines3's rule)."""

    def __init__(
        self,
        net: ActorCritic,
        optimizers: dict[str, Optimizer],
        loss_fn: ActorCriticLoss,
        max_grad_norm: float | None,
        epochs: int = 1,
        minibatches: int = 1,
        target_kl: float | None = None,
    ):
        self.net, self.optimizers, self.loss_fn, self.max_grad_norm = net, optimizers, loss_fn, max_grad_norm
        self.epochs, self.minibatches, self.target_kl = epochs, minibatches, target_kl
        # PPO's loss compares with the policy and critic at collection; A2C's (or a user's) takes no such inputs
        self.old_inputs = getattr(loss_fn, "needs_old_log_probs", False)
        self.params = {name: [p for g in opt.param_groups for p in g["params"]] for name, opt in optimizers.items()}
        for opt in optimizers.values():
            for group in opt.param_groups:  # what a schedule scales (saved with the optimizer state)
                group.setdefault("initial_lr", group["lr"])

    def scale_lr(self, multiplier: float) -> None:
        """Set every parameter group's lr to ``multiplier`` x the lr it started the run with (and PPO's
        clip ranges to ``multiplier`` x the configured ones, when its loss anneals them)."""
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * multiplier
        if getattr(self.loss_fn, "anneal_clip", False):
            self.loss_fn.clip_scale = multiplier

    def minibatch_indices(self, mask: Tensor) -> Iterator[Tensor]:
        """``epochs`` passes over the valid transitions, each a fresh permutation split into
        ``minibatches`` parts of near-equal size: every valid transition once per epoch, never an
        autoreset step. The permutations come from torch's global generator, whose state every
        checkpoint saves, so a resumed run shuffles as the uninterrupted one would have."""
        valid = mask.nonzero().squeeze(-1)
        for _ in range(self.epochs):
            order = valid[torch.randperm(len(valid)).to(valid.device)]
            yield from (part for part in order.tensor_split(self.minibatches) if len(part))

    def step(
        self, rollout: Rollout, advantages: Tensor, returns: Tensor, diagnostics: bool = True
    ) -> dict[str, float | Tensor]:
        """One update; returns the loss terms and diagnostics as tensors (one host sync per
        gradient step: the finiteness check). Terms and gradient norms are the means over the steps.

        ``diagnostics=False`` skips the statistics (a pass over every gradient, advantage and value
        moments): the training loop asks for them only on the updates it logs."""
        batch = Batch.of(rollout, advantages, returns)
        if self.epochs == 1 and self.minibatches == 1:
            stats, used = self.gradient_step(batch, diagnostics)
            if diagnostics:  # the critic's values from the step's own forward pass (before its update)
                stats.update(rollout_stats(*used))
            return stats
        steps = []
        for index in self.minibatch_indices(batch.mask):
            stats, _ = self.gradient_step(batch.take(index), diagnostics)
            if stats is None:  # target_kl reached
                break
            steps.append(stats)
        if not steps:  # stopped before the first step: nothing changed
            return {"train/gradient_steps": 0}
        stats = {
            k: torch.stack([s[k] for s in steps]).mean() if torch.is_tensor(v) else v for k, v in steps[-1].items()
        }
        stats["train/gradient_steps"] = len(steps)
        if diagnostics:  # over the whole rollout, with the values the critic gave at collection
            advantages, returns = self.loss_fn.targets(batch.advantages, batch.returns, batch.values, batch.mask)
            stats.update(rollout_stats(advantages, batch.values, returns, batch.mask))
        return stats

    def gradient_step(self, batch: Batch, diagnostics: bool) -> tuple[dict[str, Any] | None, tuple]:
        """One optimizer step per group on ``batch``: the stats, and the (advantages, values, returns,
        mask) the loss used; (None, ()) when ``target_kl`` stops the update before this step."""
        mask = batch.mask
        advantages, returns = self.loss_fn.targets(batch.advantages, batch.returns, batch.values, mask)
        log_probs, entropy, values, std = self.net.evaluate_actions(batch.obs, batch.actions)
        old = {"old_log_probs": batch.log_probs, "old_values": batch.values} if self.old_inputs else {}
        losses = self.loss_fn(log_probs, entropy, values, advantages, returns, mask, **old)
        if self.target_kl is not None and float(losses["approx_kl"]) > 1.5 * self.target_kl:
            return None, ()
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        # taken before clipping: the gradient the loss produced
        grad_stats = gradient_stats([p for params in self.params.values() for p in params]) if diagnostics else {}
        grad_norms = {}
        for name in self.optimizers:
            if self.max_grad_norm:
                # foreach: one multi-tensor norm and scale, not a loop of small ops per parameter
                grad_norms[name] = torch.nn.utils.clip_grad_norm_(self.params[name], self.max_grad_norm, foreach=True)
            else:
                grad_norms[name] = torch.nn.utils.get_total_norm(
                    [p.grad for p in self.params[name] if p.grad is not None]
                )
        # a NaN/inf must never reach the weights: check before any optimizer steps
        if not bool(torch.isfinite(torch.stack([losses["total"].detach(), *grad_norms.values()])).all()):
            bad = "loss" if not torch.isfinite(losses["total"]) else "gradient"
            raise NonFiniteError(f"non-finite {bad} ({', '.join(f'{k}={v.item():.3g}' for k, v in losses.items())})")
        for opt in self.optimizers.values():
            opt.step()
        stats: dict[str, Any] = {f"losses/{k}": v.detach() for k, v in losses.items() if k not in LOSS_STATS}
        stats.update({LOSS_STATS[k]: v for k, v in losses.items() if k in LOSS_STATS})
        for name, norm in grad_norms.items():
            suffix = "" if name == "all" else "_" + name
            stats[f"train/grad_norm{suffix}"] = norm  # before clipping
            stats[f"train/lr{suffix}"] = self.optimizers[name].param_groups[0]["lr"]  # as lr_schedule set it
        stats.update(grad_stats)
        if std is not None:
            stats["train/policy_std"] = std.detach().mean()
        return stats, (advantages, values, returns, mask)
