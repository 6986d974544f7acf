"""Optimizers for a cohort's stacked parameters: Adam, RMSprop and SGD, one lr and one step count per member.

A cohort (``acx.run.cohort``) holds P members' copies of each parameter in one (P, ...) tensor
(``acx.algo.stack``). These optimizers step such tensors member by member in one pass: ``lr`` is a (P,)
tensor, and ``step(active)`` moves only the members in the (P,) mask ``active``; the others' parameters,
moments and step counts stay as they were (PPO's ``target_kl`` freezes a member for the rest of an
update; the episodic variant updates the members whose episodes ended). A single run is a cohort of one.

Why acx has its own instead of torch.optim:
- torch.optim takes one lr per parameter group and steps every parameter it holds;
- every ``torch.optim`` step, and its constructor, imports ``torch._dynamo`` (~1.3 s here, a third of
  an acx run's start-up), whether or not anything is compiled.

Each member's step is the same foreach kernels, in the same order, as torch.optim's foreach path, with
its hyperparameters as (P, 1, ...) tensors where torch has Python numbers; an active member's numbers
are torch's bit for bit (``tests/test_optim.py``). ``member_state_dict(k)`` is torch.optim's layout for
member k alone, and ``load_member`` takes one (from torch.optim too), so a checkpoint holds a single
run's optimizer state whichever cohort wrote it. Each optimizer keeps one parameter group, as acx builds them.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor


def column(values: Tensor, like: Tensor) -> Tensor:
    """A (P,) tensor as (P, 1, ..., 1), to scale the stacked tensor ``like`` member by member."""
    return values.view(-1, *[1] * (like.dim() - 1))


def as_members(value: float | Sequence[float] | Tensor, members: int) -> Tensor:
    """A learning rate as one value per member, (P,) float64: the Python float torch.optim would hold."""
    t = torch.as_tensor(value, dtype=torch.float64).flatten()
    return t.expand(members).clone() if t.numel() == 1 else t.clone()


class Optimizer:
    """One parameter group of stacked (P, ...) tensors; torch.optim's ``param_groups`` interface."""

    STATE: tuple[str, ...] = ()  # per-parameter state tensors besides "step"

    def __init__(self, params: Iterable[Tensor], lr: float | Sequence[float] | Tensor, **hyperparameters: Any):
        params = list(params)
        self.members = int(params[0].shape[0])
        lrs = as_members(lr, self.members)
        self.param_groups: list[dict[str, Any]] = [
            {"params": params, "lr": lrs, "initial_lr": lrs.clone(), **hyperparameters}
        ]
        self.state: dict[Tensor, dict[str, Tensor]] = {}

    @property
    def params(self) -> list[Tensor]:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _fresh(self, p: Tensor) -> dict[str, Tensor]:
        return {"step": torch.zeros(p.shape[0]), **{name: torch.zeros_like(p) for name in self.STATE}}

    def _state(self, params: list[Tensor]) -> dict[str, list[Tensor]]:
        """Each state tensor of ``params`` by name, created (zeros, step 0) on a parameter's first step
        (the lists are kept until the parameters or their state change: ``regroup``, ``load_member``)."""
        lists = getattr(self, "_lists", None)
        if lists is None or len(lists["step"]) != len(params):
            for p in params:
                if p not in self.state:
                    self.state[p] = self._fresh(p)
            lists = self._lists = {name: [self.state[p][name] for p in params] for name in ("step", *self.STATE)}
        return lists

    @torch.no_grad()
    def step(self, active: Tensor | None = None) -> None:
        """Step the members in ``active`` ((P,) bool; None: all) with the gradients the parameters hold."""
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        if active is None:
            active = torch.ones(self.members, dtype=torch.bool)
        active = active.cpu()
        if not bool(active.any()):
            return
        self._step(group, params, [p.grad for p in params], active)

    def _step(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], active: Tensor) -> None:
        raise NotImplementedError

    def scale_lr(self, multipliers: Tensor) -> None:
        """Each member's lr: its initial lr times its multiplier ((P,), the lr schedule's)."""
        group = self.param_groups[0]
        group["lr"] = group["initial_lr"] * multipliers.to(torch.float64)

    def lr_of(self, k: int) -> float:
        return float(self.param_groups[0]["lr"][k])

    # --- a member's state, as a single run's torch.optim state dict -------------------------------

    def member_state_dict(self, k: int) -> dict[str, Any]:
        """Member ``k``'s state in torch.optim's layout for an unstacked parameter list."""
        group = self.param_groups[0]
        state = {}
        for i, p in enumerate(group["params"]):
            if p in self.state:
                s = self.state[p]
                state[i] = {"step": s["step"][k].clone(), **{n: s[n][k].clone() for n in self.STATE if n in s}}
        hyper = {key: value for key, value in group.items() if key not in ("params", "lr", "initial_lr")}
        lrs = {"lr": float(group["lr"][k]), "initial_lr": float(group["initial_lr"][k])}
        return {"state": state, "param_groups": [{**hyper, **lrs, "params": list(range(len(group["params"])))}]}

    def load_member(self, k: int, state_dict: dict[str, Any]) -> None:
        """Member ``k``'s state from ``member_state_dict`` (or a torch.optim state dict of the same class)."""
        self._lists = None
        (saved,) = state_dict["param_groups"]
        group = self.param_groups[0]
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(
                f"the state dict holds {len(saved['params'])} parameters, this optimizer {len(group['params'])}"
            )
        group["lr"][k] = float(saved["lr"])
        group["initial_lr"][k] = float(saved.get("initial_lr", saved["lr"]))
        for i, p in zip(saved["params"], group["params"], strict=True):
            s = self.state.setdefault(p, self._fresh(p))
            saved_state = state_dict["state"].get(i, {})
            # torch.optim's SGD keeps no step count: a momentum buffer means it stepped before
            s["step"][k] = float(saved_state.get("step", 1.0 if saved_state else 0.0))
            for name in self.STATE:
                value = saved_state.get(name)
                s[name][k] = value.to(p.device) if value is not None else 0.0

    # --- members leaving and joining --------------------------------------------------------------

    def regroup(self, params: list[Tensor], rows: Sequence[int | None], lrs: Sequence[float]) -> None:
        """Go on with ``params`` (the stack's new tensors), whose row j is old row ``rows[j]`` or, where
        that is None, a member that joins (fresh state, lr ``lrs[j]``; ``load_member`` may fill it)."""
        group = self.param_groups[0]
        self._lists = None
        old = dict(zip(map(id, group["params"]), group["params"], strict=True))
        index = torch.tensor([r if r is not None else 0 for r in rows], dtype=torch.long)
        fresh = torch.tensor([r is None for r in rows])
        state = {}
        for new, prev in zip(params, old.values(), strict=True):
            if prev not in self.state:
                continue
            s = {}
            for name, value in self.state[prev].items():
                taken = value.index_select(0, index.to(value.device))
                taken[fresh.to(value.device)] = 0
                s[name] = taken
            state[new] = s
        self.state = state
        for key in ("lr", "initial_lr"):
            taken = group[key].index_select(0, index)
            taken[fresh] = torch.as_tensor(list(lrs), dtype=taken.dtype)
            group[key] = taken
        group["params"] = list(params)
        self.members = len(rows)


def _steps(state_steps: list[Tensor], active: Tensor) -> Tensor:
    """Count the step of the active members (each parameter keeps its own counts, as torch.optim does);
    returns the first parameter's counts (P,), float64 for the bias corrections."""
    if len(active) == 1 or bool(active.all()):  # (a step with no member active never gets here)
        torch._foreach_add_(state_steps, 1.0)
    else:
        torch._foreach_add_(state_steps, [active.float()] * len(state_steps))
    return state_steps[0].double()


def _in_step(active: Tensor, *per_member: Tensor) -> bool:
    """Whether every member steps, with the same values of ``per_member`` (a seed sweep in lockstep, a
    cohort of one): then the step is torch.optim's own, with Python numbers, and costs no more."""
    if len(active) == 1:
        return bool(active[0])
    return bool(active.all()) and all(bool((v == v[0]).all()) for v in per_member)


def _with_weight_decay(grads: list[Tensor], params: list[Tensor], weight_decay: float) -> list[Tensor]:
    """L2 regularisation added to the gradients (not decoupled, as torch.optim's default)."""
    return torch._foreach_add(grads, params, alpha=weight_decay) if weight_decay != 0 else grads


def _columns(values: Tensor, params: list[Tensor]) -> list[Tensor]:
    """One (P, 1, ..., 1) copy of ``values`` per parameter, in the parameters' dtype and device."""
    return [column(values.to(device=p.device, dtype=p.dtype), p) for p in params]


class Adam(Optimizer):
    """Adam (Kingma & Ba), with bias correction and L2 ``weight_decay``."""

    STATE = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float | Sequence[float] | Tensor = 1e-3,
        betas: tuple[float, float] | list[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _step(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], active: Tensor) -> None:
        state = self._state(params)
        (beta1, beta2), eps = group["betas"], group["eps"]
        steps = _steps(state["step"], active)
        grads = _with_weight_decay(grads, params, group["weight_decay"])
        exp_avgs, exp_avg_sqs = state["exp_avg"], state["exp_avg_sq"]
        if _in_step(active, steps, group["lr"]):
            t, lr = float(steps[0]), float(group["lr"][0])
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)  # m = beta1 m + (1 - beta1) g
            torch._foreach_mul_(exp_avg_sqs, beta2)  # v = beta2 v + (1 - beta2) g^2
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sqs)  # sqrt(v / (1 - beta2^t)) + eps
            torch._foreach_div_(denom, [(1 - beta2**t) ** 0.5] * len(params))
            torch._foreach_add_(denom, eps)
            # p -= lr / (1 - beta1^t) m / denom
            torch._foreach_addcdiv_(params, exp_avgs, denom, [(lr / (1 - beta1**t)) * -1] * len(params))
            return
        on = active.double()
        # m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2: an inactive member's weights are 0 and 1
        torch._foreach_lerp_(exp_avgs, grads, _columns((1 - beta1) * on, params))
        torch._foreach_mul_(exp_avg_sqs, _columns(torch.where(active, beta2, 1.0), params))
        torch._foreach_addcmul_(exp_avg_sqs, torch._foreach_mul(grads, _columns((1 - beta2) * on, params)), grads)
        t = torch.where(active, steps, 1.0)  # an inactive member's own count (never 0 once it stepped)
        step_size = -(group["lr"].double() / (1 - beta1**t)) * on
        denom = torch._foreach_sqrt(exp_avg_sqs)  # sqrt(v / (1 - beta2^t)) + eps
        torch._foreach_div_(denom, _columns((1 - beta2**t) ** 0.5, params))
        torch._foreach_add_(denom, eps)
        # p -= lr / (1 - beta1^t) m / denom; 0 for an inactive member
        torch._foreach_addcdiv_(params, torch._foreach_mul(exp_avgs, _columns(step_size, params)), denom)


class RMSprop(Optimizer):
    """RMSprop (Hinton), uncentred and without momentum: the A2C optimizer of SB3 and the zoo."""

    STATE = ("square_avg",)

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float | Sequence[float] | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay)

    def _step(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], active: Tensor) -> None:
        state = self._state(params)
        alpha, eps = group["alpha"], group["eps"]
        _steps(state["step"], active)
        grads = _with_weight_decay(grads, params, group["weight_decay"])
        square_avgs = state["square_avg"]
        if _in_step(active, group["lr"]):
            torch._foreach_mul_(square_avgs, alpha)  # s = alpha s + (1 - alpha) g^2
            torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
            avg = torch._foreach_sqrt(square_avgs)
            torch._foreach_add_(avg, eps)
            torch._foreach_addcdiv_(params, grads, avg, value=-float(group["lr"][0]))  # p -= lr g / (sqrt(s) + eps)
            return
        on = active.double()
        # s = alpha s + (1 - alpha) g^2
        torch._foreach_mul_(square_avgs, _columns(torch.where(active, alpha, 1.0), params))
        torch._foreach_addcmul_(square_avgs, torch._foreach_mul(grads, _columns((1 - alpha) * on, params)), grads)
        avg = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avg, eps)
        # p -= lr g / (sqrt(s) + eps)
        step_size = -group["lr"].double() * on
        torch._foreach_addcdiv_(params, torch._foreach_mul(grads, _columns(step_size, params)), avg)


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum and L2 ``weight_decay``."""

    STATE = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float | Sequence[float] | Tensor = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        kwargs = dict(momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params, lr=lr, **kwargs)

    def _step(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], active: Tensor) -> None:
        state = self._state(params)
        momentum = group["momentum"]
        steps = _steps(state["step"], active)
        grads = _with_weight_decay(grads, params, group["weight_decay"])
        if momentum != 0 and _in_step(active, steps):
            bufs = state["momentum_buffer"]
            if float(steps[0]) == 1:  # the first step's buffer is the gradient itself
                torch._foreach_copy_(bufs, grads)
            else:  # b = momentum b + (1 - dampening) g
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads, alpha=1 - group["dampening"])
            grads = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
        elif momentum != 0:
            bufs = state["momentum_buffer"]
            # b = momentum b + (1 - dampening) g (torch's fused add), the gradient itself on a member's
            # first step, unchanged for an inactive member
            stepped = torch._foreach_mul(bufs, momentum)
            torch._foreach_add_(stepped, grads, alpha=1 - group["dampening"])
            first = (steps == 1) & active
            for buf, new, g in zip(bufs, stepped, grads, strict=True):
                buf.copy_(torch.where(column(first, g), g, torch.where(column(active, g), new, buf)))
            if group["nesterov"]:
                grads = torch._foreach_add(grads, bufs, alpha=momentum)
            else:
                grads = bufs
        _add_per_member(params, grads, -group["lr"], active)  # p -= lr g


def _add_per_member(params: list[Tensor], updates: list[Tensor], alphas: Tensor, active: Tensor) -> None:
    """p += alpha_k u for each active member k, with torch's fused add (one rounding): one call when the
    members share one alpha, else one per member."""
    if bool(active.all()) and bool((alphas == alphas[0]).all()):
        torch._foreach_add_(params, updates, alpha=float(alphas[0]))
        return
    for k in active.nonzero().flatten().tolist():
        torch._foreach_add_([p[k] for p in params], [u[k] for u in updates], alpha=float(alphas[k]))


class TorchOptimizer:
    """A torch.optim optimizer (``optimizer._target_=torch.optim.AdamW``) for a cohort of one: it has one
    lr and steps every parameter it holds, so a job that names one trains alone. Its state dicts are
    torch.optim's, with the member dim taken off (a single run's checkpoint)."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.inner, self.members = optimizer, 1
        group = optimizer.param_groups[0]
        group.setdefault("initial_lr", group["lr"])
        self.param_groups = optimizer.param_groups

    @property
    def params(self) -> list[Tensor]:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self, active: Tensor | None = None) -> None:
        if active is None or bool(active[0]):
            self.inner.step()

    def member_state_dict(self, k: int) -> dict[str, Any]:
        state_dict = self.inner.state_dict()
        state = {i: {n: v[0].clone() if v.dim() > 0 else v.clone() for n, v in s.items()}
                 for i, s in state_dict["state"].items()}  # fmt: skip
        (group,) = state_dict["param_groups"]
        return {
            "state": state,
            "param_groups": [{**group, "lr": float(group["lr"]), "initial_lr": float(group["initial_lr"])}],
        }

    def load_member(self, k: int, state_dict: dict[str, Any]) -> None:
        state = {i: {n: v.unsqueeze(0) if n != "step" else v for n, v in s.items()}
                 for i, s in state_dict["state"].items()}  # fmt: skip
        self.inner.load_state_dict({"state": state, "param_groups": state_dict["param_groups"]})

    def regroup(self, params: list[Tensor], rows: Sequence[int | None], lrs: Sequence[float]) -> None:
        if list(rows) != [0]:
            raise ValueError("a torch.optim optimizer trains a cohort of one")
        state, old = self.inner.state, list(self.params)
        self.inner.state = collections.defaultdict(
            dict, {n: state[o] for n, o in zip(params, old, strict=True) if o in state}
        )
        self.param_groups[0]["params"] = list(params)

    def scale_lr(self, multipliers: Tensor) -> None:
        group = self.param_groups[0]
        group["lr"] = group["initial_lr"] * float(multipliers[0])

    def lr_of(self, k: int) -> float:
        return float(self.param_groups[0]["lr"])
