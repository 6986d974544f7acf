"""The gradient step: optimizers from config, one backward pass of the summed loss, clipping, step;
plus the diagnostics the logger reports (seed 002's gradient statistics, the critic's explained variance)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from acx.errors import NonFiniteError
from acx.losses import ActorCriticLoss, masked_mean
from acx.networks import ActorCritic
from acx.optim import Optimizer
from acx.rollout import Rollout


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


class Updater:
    """Turns a rollout and its advantages into one optimizer step per group."""

    def __init__(
        self,
        net: ActorCritic,
        optimizers: dict[str, Optimizer],
        loss_fn: ActorCriticLoss,
        max_grad_norm: float | None,
    ):
        self.net, self.optimizers, self.loss_fn, self.max_grad_norm = net, optimizers, loss_fn, max_grad_norm
        self.params = {name: [p for g in opt.param_groups for p in g["params"]] for name, opt in optimizers.items()}
        for opt in optimizers.values():
            for group in opt.param_groups:  # what a schedule scales (saved with the optimizer state)
                group.setdefault("initial_lr", group["lr"])

    def scale_lr(self, multiplier: float) -> None:
        """Set every parameter group's lr to ``multiplier`` x the lr it started the run with."""
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * multiplier

    def step(
        self, rollout: Rollout, advantages: Tensor, returns: Tensor, diagnostics: bool = True
    ) -> dict[str, float | Tensor]:
        """One update; returns the loss terms and diagnostics as tensors (one host sync: the finiteness check).

        ``diagnostics=False`` skips the statistics (a pass over every gradient, advantage and value
        moments): the training loop asks for them only on the updates it logs."""
        mask = rollout.valid.flatten()
        advantages, returns = self.loss_fn.targets(
            advantages.flatten(), returns.flatten(), rollout.values.flatten(), mask
        )
        obs = rollout.obs.flatten(0, 1)
        actions = rollout.actions.flatten(0, 1)
        log_probs, entropy, values, std = self.net.evaluate_actions(obs, actions)
        losses = self.loss_fn(log_probs, entropy, values, advantages, returns, mask)
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
        stats: dict[str, float | Tensor] = {f"losses/{k}": v.detach() for k, v in losses.items() if k != "entropy_mean"}
        stats["train/entropy"] = losses["entropy_mean"]
        if diagnostics:  # the loop logs every log.every_updates updates: no statistics the others would drop
            m = mask.float()
            stats["train/advantage_mean"] = masked_mean(advantages, m)
            stats["train/value_mean"] = masked_mean(values.detach(), m)
            stats["train/advantage_std"] = masked_var(advantages, m).sqrt()
            stats["train/explained_variance"] = explained_variance(values.detach(), returns, m)
        for name, norm in grad_norms.items():
            suffix = "" if name == "all" else "_" + name
            stats[f"train/grad_norm{suffix}"] = norm  # before clipping
            stats[f"train/lr{suffix}"] = self.optimizers[name].param_groups[0]["lr"]  # as lr_schedule set it
        stats.update(grad_stats)
        if std is not None:
            stats["train/policy_std"] = std.detach().mean()
        return stats
