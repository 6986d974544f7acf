"""Optimizers: Adam, RMSprop and SGD written out as their multi-tensor (foreach) steps.

Why acx has its own instead of torch.optim:
- every ``torch.optim`` step, and its constructor, imports ``torch._dynamo`` (~1.3 s here, a third
  of an acx run's start-up), whether or not anything is compiled;
- population training needs a step that takes a learning rate per member, which torch.optim refuses.

Each step is the same foreach kernels, in the same order, as torch.optim's foreach path for the same
settings, so the numbers are torch's bit for bit (``tests/test_optim.py`` checks this against
torch.optim). The state dicts have torch.optim's layout and state names, so a checkpoint written
with torch.optim loads here. Each optimizer keeps one parameter group, as acx builds them.

A population (``acx.run.population``) stacks its members' parameters along dim 0 and gives ``lr`` as a
list, one per member: the step is then scaled per member (``_per_member``), the rest is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class Optimizer:
    """One parameter group, torch.optim's ``param_groups``/``state_dict`` interface, a foreach ``step``."""

    STATE: tuple[str, ...] = ()  # per-parameter state tensors besides "step"

    def __init__(self, params: Iterable[Tensor], **hyperparameters: Any):
        self.param_groups: list[dict[str, Any]] = [{"params": list(params), **hyperparameters}]
        self.state: dict[Tensor, dict[str, Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _state(self, params: list[Tensor]) -> dict[str, list[Tensor]]:
        """Each state tensor of ``params`` by name, created (zeros, step 0) on a parameter's first step."""
        for p in params:
            if p not in self.state:
                self.state[p] = {"step": torch.tensor(0.0, dtype=torch.float32)}
                self.state[p].update({name: torch.zeros_like(p, memory_format=torch.preserve_format)
                                      for name in self.STATE})  # fmt: skip
        return {name: [self.state[p][name] for p in params] for name in ("step", *self.STATE)}

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        if params:
            self._step(group, params, [p.grad for p in params])

    def _step(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: state by parameter index, and the group with indices for its params."""
        group = self.param_groups[0]
        index = {id(p): i for i, p in enumerate(group["params"])}
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": [{**group, "params": list(range(len(group["params"])))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict`` of this optimizer or of the torch.optim class of the same name."""
        (saved,) = state_dict["param_groups"]
        params = self.param_groups[0]["params"]
        if len(saved["params"]) != len(params):
            raise ValueError(f"the state dict holds {len(saved['params'])} parameters, this optimizer {len(params)}")
        self.param_groups[0] = {**saved, "params": params}
        self.state = {}
        for i, p in zip(saved["params"], params, strict=True):
            if i in state_dict["state"]:
                s = state_dict["state"][i]
                self.state[p] = {
                    k: v.to(device="cpu" if k == "step" else p.device, copy=True) for k, v in s.items() if v is not None
                }


def _per_member(scales: list[float], params: list[Tensor]) -> list[Tensor]:
    """One (P, 1, ..., 1) tensor per stacked parameter: member k's scale along dim 0."""
    column = torch.tensor(scales, dtype=params[0].dtype, device=params[0].device)
    return [column.view(-1, *[1] * (p.dim() - 1)) for p in params]


def _count_step(steps: list[Tensor]) -> None:
    torch._foreach_add_(steps, torch.tensor(1.0, device="cpu"), alpha=1.0)


def _with_weight_decay(grads: list[Tensor], params: list[Tensor], weight_decay: float) -> list[Tensor]:
    """L2 regularisation added to the gradients (not decoupled, as torch.optim's default)."""
    return torch._foreach_add(grads, params, alpha=weight_decay) if weight_decay != 0 else grads


class Adam(Optimizer):
    """Adam (Kingma & Ba), with bias correction and L2 ``weight_decay``."""

    STATE = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] | list[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _step(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        state = self._state(params)
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        _count_step(state["step"])
        grads = _with_weight_decay(grads, params, group["weight_decay"])
        exp_avgs, exp_avg_sqs = state["exp_avg"], state["exp_avg_sq"]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)  # m = beta1 m + (1 - beta1) g
        torch._foreach_mul_(exp_avg_sqs, beta2)  # v = beta2 v + (1 - beta2) g^2
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        steps = [s.item() for s in state["step"]]
        step_size = [(lr / (1 - beta1**t)) * -1 for t in steps] if not isinstance(lr, list) else None
        bias_correction2_sqrt = [(1 - beta2**t) ** 0.5 for t in steps]
        denom = torch._foreach_sqrt(exp_avg_sqs)  # sqrt(v / (1 - beta2^t)) + eps
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        if isinstance(lr, list):  # a population: member k's lr; its members have taken the same steps
            ratio = torch._foreach_div(exp_avgs, denom)
            torch._foreach_mul_(ratio, _per_member([-(lr_k / (1 - beta1 ** steps[0])) for lr_k in lr], params))
            torch._foreach_add_(params, ratio)
            return
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_size)  # p -= lr / (1 - beta1^t) m / denom


class RMSprop(Optimizer):
    """RMSprop (Hinton), uncentred and without momentum: the A2C optimizer of SB3 and the zoo."""

    STATE = ("square_avg",)

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay)

    def _step(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        state = self._state(params)
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        _count_step(state["step"])
        grads = _with_weight_decay(grads, params, group["weight_decay"])
        square_avgs = state["square_avg"]
        torch._foreach_mul_(square_avgs, alpha)  # s = alpha s + (1 - alpha) g^2
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        avg = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avg, eps)
        if isinstance(lr, list):  # a population: member k's lr
            ratio = torch._foreach_div(grads, avg)
            torch._foreach_mul_(ratio, _per_member([-lr_k for lr_k in lr], params))
            torch._foreach_add_(params, ratio)
            return
        torch._foreach_addcdiv_(params, grads, avg, value=-lr)  # p -= lr g / (sqrt(s) + eps)


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum and L2 ``weight_decay``."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        kwargs = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params, **kwargs)

    def _state(self, params: list[Tensor]) -> dict[str, list[Tensor]]:
        for p in params:  # no step counter; the momentum buffer starts as the first gradient
            self.state.setdefault(p, {})
        return {}

    def _step(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        self._state(params)
        lr, momentum = group["lr"], group["momentum"]
        grads = _with_weight_decay(grads, params, group["weight_decay"])
        if momentum != 0:
            if all("momentum_buffer" in self.state[p] for p in params):
                bufs = [self.state[p]["momentum_buffer"] for p in params]
                torch._foreach_mul_(bufs, momentum)  # b = momentum b + (1 - dampening) g
                torch._foreach_add_(bufs, grads, alpha=1 - group["dampening"])
            else:
                bufs = []
                for p, g in zip(params, grads, strict=True):
                    if "momentum_buffer" not in self.state[p]:
                        self.state[p]["momentum_buffer"] = g.detach().clone()
                    else:
                        self.state[p]["momentum_buffer"].mul_(momentum).add_(g, alpha=1 - group["dampening"])
                    bufs.append(self.state[p]["momentum_buffer"])
            if group["nesterov"]:
                torch._foreach_add_(grads, bufs, alpha=momentum)
            else:
                grads = bufs
        if isinstance(lr, list):  # a population: member k's lr
            torch._foreach_add_(params, torch._foreach_mul(grads, _per_member([-lr_k for lr_k in lr], params)))
            return
        torch._foreach_add_(params, grads, alpha=-lr)  # p -= lr g
