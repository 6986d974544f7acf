"""Stacking: P modules of one structure as one, for a cohort of members trained together.

``Stack(modules)`` holds every parameter and buffer of the P modules in one tensor per name, the members
along a new leading dim: ``Stack.tensors[name]`` is (P, ...), the parameters leaf tensors that the
optimizers step (``acx.algo.optim``). Two copies of the module read these tensors, neither holding one
of its own:

- ``single``: the module with each tensor bound to row 0's memory. A cohort of one (a single run) calls
  it as the plain module, at the plain module's cost; ``gather_grads`` hands its gradients to the
  stacked tensors;
- ``batched``: the module on inputs with the member dim in front, (P, B, ...) -> (P, B, ...). Leaves
  with a batched kernel are replaced by it: a small ``nn.Linear`` by one ``baddbmm`` (a large one, and
  ``nn.Conv2d``, by one call per member: faster on CPU than a batched product or a grouped
  convolution), ``nn.LayerNorm`` and ``nn.Flatten`` by their member-dim forms. Elementwise
  leaves (activations) run as they are. A module whose class says ``stacks_by_broadcast = True``
  (acx's networks, heads and normalisers) runs its own forward, its own tensors bound to the stacked
  ones: it broadcasts them against the batch dims so that a member dim in front passes through. Any
  other module runs under ``torch.vmap`` over ``torch.func.functional_call``: correct for any
  module, and slower for the small networks of RL (a fixed cost per op: measured in docs/population.md).

``call(method, *inputs, rows=...)`` is how a caller runs the members: inputs and outputs carry the member
dim in front for any P, and this is the one place that picks ``single`` for a cohort of one.
``rows(index)`` runs ``batched`` for some members only (the episodic variant updates the members whose
episodes ended); ``regroup`` drops and appends members; ``member_state_dict(k)`` is member k's
state dict in the module's own layout (a single run's checkpoint).
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

# leaves that act elementwise: a member dim in front changes nothing
ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.LeakyReLU, nn.Identity, nn.Dropout)
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _owner(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, attr = name.rpartition(".")
    return (root.get_submodule(parent) if parent else root), attr


def _bind(module: nn.Module, attr: str, tensor: Tensor) -> None:
    """``module.<attr>`` reads ``tensor`` (a view or a stacked tensor) instead of a tensor of its own."""
    module._parameters.pop(attr, None)
    if attr in module._buffers:
        module._buffers[attr] = tensor
    else:
        module.__dict__[attr] = tensor


class Stack:
    """P modules of one structure: their tensors stacked along dim 0, and the two modules that read them."""

    def __init__(self, modules: Sequence[nn.Module]):
        base = modules[0]
        self.param_names = [name for name, _ in base.named_parameters()]
        self.buffer_names = [name for name, _ in base.named_buffers()]
        self.state_names = list(base.state_dict().keys())  # persistent tensors, in the module's order
        with torch.no_grad():
            self.tensors: dict[str, Tensor] = {}
            for name in self.param_names:
                self.tensors[name] = torch.stack([m.get_parameter(name).detach() for m in modules])
                self.tensors[name].requires_grad_(True)
            for name in self.buffer_names:
                self.tensors[name] = torch.stack([m.get_buffer(name) for m in modules])
        self.template = copy.deepcopy(base)  # unbound: what member_module() copies
        self.single = copy.deepcopy(base)
        self.batched = copy.deepcopy(base)
        self.subset: dict[str, Tensor] | None = None  # rows(): the tensors of some members only
        self._bound: list[tuple[nn.Module, str, str]] = []  # (module, attribute, name) bound to a stacked tensor
        _batch(self, self.batched, "")
        self.rebind()

    @property
    def members(self) -> int:
        return self._members

    def call(self, method: str | None, *inputs: Tensor, rows: Sequence[int] | None = None):
        """``method`` of the members' module (None: the module itself; a dotted path such as
        ``obs_norm.update`` reaches a submodule's) on ``inputs`` with the member dim in front, (P', ...)
        each; its outputs (tensors, or tuples of them) likewise. ``rows``: the members, all when None.
        A cohort of one runs the plain module on row 0 (``single``: the plain module's cost); more
        members run ``batched``."""
        if self.members == 1:
            return _lead(_method(self.single, method)(*[x[0] for x in inputs]))
        with self.subset_of(rows):
            return _method(self.batched, method)(*inputs)

    def subset_of(self, rows: Sequence[int] | None):
        """``rows(index)`` for the members ``rows``; nothing to do when they are all of them (or None)."""
        if rows is None or list(rows) == list(range(self.members)):
            return contextlib.nullcontext()
        return self.rows(torch.as_tensor(list(rows), device=self.tensors[self.param_names[0]].device))

    def member(self, k: int) -> nn.Module:
        """A plain module with member ``k``'s tensors: ``single`` itself in a cohort of one, else a copy."""
        return self.single if self.members == 1 else self.member_module(k)

    @property
    def params(self) -> list[Tensor]:
        return [self.tensors[name] for name in self.param_names]

    def get(self, name: str) -> Tensor | None:
        """The stacked tensor ``name`` of the members the batched module runs for (None: no such tensor)."""
        return (self.subset if self.subset is not None else self.tensors).get(name)

    def rebind(self) -> None:
        """Point both modules at the current tensors (after ``regroup`` replaced them). ``single``'s
        parameters are leaves of their own that share row 0's memory: a cohort of one backpropagates
        through no view (``gather_grads`` hands their gradients to the stacked tensors)."""
        self._members = int(self.tensors[self.param_names[0]].shape[0])
        self._single_params = {}
        for name, tensor in self.tensors.items():
            module, attr = _owner(self.single, name)
            row = tensor.detach()[0]
            if name in self.param_names:
                row.requires_grad_(True)
                self._single_params[name] = row
            _bind(module, attr, row)
        self._bind_batched(self.tensors)

    def gather_grads(self) -> None:
        """After a backward pass through ``single``: its gradients as the stacked tensors' (1, ...)
        gradients, the same memory (nothing to do when ``batched`` ran: they are there already)."""
        for name, leaf in self._single_params.items():
            if leaf.grad is not None:
                self.tensors[name].grad = leaf.grad.unsqueeze(0)
                leaf.grad = None  # the next backward starts a new one, as the stacked zero_grad does

    def _bind_batched(self, tensors: dict[str, Tensor]) -> None:
        for module, attr, name in self._bound:
            _bind(module, attr, tensors[name])

    @contextlib.contextmanager
    def rows(self, index: Tensor) -> Iterator[None]:
        """Within: ``batched`` runs for the members at ``index`` only. Their parameters are gathered
        with autograd, so gradients reach the stacked tensors; their buffers are written back on the
        way out (a normaliser's statistics updated in place)."""
        self.subset = {name: t.index_select(0, index) for name, t in self.tensors.items()}
        self._bind_batched(self.subset)
        try:
            yield
        finally:
            with torch.no_grad():
                for name in self.buffer_names:
                    self.tensors[name].index_copy_(0, index, self.subset[name])
            self.subset = None
            self._bind_batched(self.tensors)

    def member_state_dict(self, k: int) -> OrderedDict[str, Tensor]:
        """Member ``k``'s tensors as the module's own ``state_dict`` would hold them."""
        return OrderedDict((name, self.tensors[name][k].detach().clone()) for name in self.state_names)

    def member_module(self, k: int) -> nn.Module:
        """A plain copy of the module with member ``k``'s tensors (videos, a member alone)."""
        module = copy.deepcopy(self.template)
        with torch.no_grad():
            for name in (*self.param_names, *self.buffer_names):
                target = module.get_parameter(name) if name in self.param_names else module.get_buffer(name)
                target.copy_(self.tensors[name][k])
        return module

    def regroup(self, rows: Sequence[int | None], joining: Sequence[nn.Module] = ()) -> None:
        """Go on with the members ``rows``: row j is old row ``rows[j]``, or where that is None the next
        module of ``joining`` (a member that joins)."""
        joining = list(joining)
        with torch.no_grad():
            tensors = {}
            for name, old in self.tensors.items():
                new = iter(joining)
                parts = []
                for r in rows:
                    if r is None:
                        module = next(new)
                        own = module.get_parameter(name) if name in self.param_names else module.get_buffer(name)
                        parts.append(own.detach().to(old.device).unsqueeze(0))
                    else:
                        parts.append(old[r : r + 1].detach())
                tensors[name] = torch.cat(parts).requires_grad_(old.requires_grad)
        self.tensors = tensors
        self.rebind()


def _method(module: nn.Module, path: str | None):
    for part in path.split(".") if path else ():
        module = getattr(module, part)
    return module


def _lead(out):
    """A single module's outputs with the member dim in front (a cohort of one)."""
    if isinstance(out, tuple):
        return tuple(_lead(o) for o in out)
    return out.unsqueeze(0) if torch.is_tensor(out) else out


def _batch(stack: Stack, module: nn.Module, prefix: str) -> None:
    """Below ``module``: each leaf that holds tensors replaced by its batched form, bound to ``stack``."""
    for child_name, child in list(module.named_children()):
        name = f"{prefix}{child_name}"
        batched = BATCHED.get(type(child))
        if batched is not None:
            module._modules[child_name] = batched(stack, name, child)
        elif isinstance(child, ELEMENTWISE):
            continue
        elif isinstance(child, CONTAINERS) or getattr(child, "stacks_by_broadcast", False):
            for attr, _ in [*child.named_parameters(recurse=False), *child.named_buffers(recurse=False)]:
                stack._bound.append((child, attr, f"{name}.{attr}"))
            _batch(stack, child, name + ".")
        else:
            module._modules[child_name] = Vmapped(stack, name, child)
    if not prefix:  # the root's own tensors
        if getattr(module, "stacks_by_broadcast", False):
            for attr, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                stack._bound.append((module, attr, attr))


class _Leaf(nn.Module):
    """A batched leaf: reads its member-stacked tensors from the stack at each call."""

    def __init__(self, stack: Stack, name: str):
        super().__init__()
        self._stack = [stack]  # in a list: not a submodule
        self.name = name

    def tensor(self, attr: str) -> Tensor | None:
        return self._stack[0].get(f"{self.name}.{attr}")


class BatchedLinear(_Leaf):
    """P Linear layers: (P, ..., in) -> (P, ..., out). Small ones (in x out below ``LOOP_ABOVE``) as one
    ``baddbmm``; large ones (a CNN's 3136 x 512) as one ``F.linear`` per member, which CPU BLAS runs
    faster than its batched product for such shapes (docs/population.md)."""

    LOOP_ABOVE = 1 << 16

    def __init__(self, stack: Stack, name: str, layer: nn.Linear):
        super().__init__(stack, name)
        self.loop = layer.in_features * layer.out_features > self.LOOP_ABOVE

    @property
    def weight(self) -> Tensor:
        return self.tensor("weight")

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.tensor("weight"), self.tensor("bias")
        if self.loop:  # unbind, not x[k]: one backward node for all members, not a zero-filled one each
            biases = bias.unbind(0) if bias is not None else [None] * x.shape[0]
            parts = zip(x.unbind(0), weight.unbind(0), biases, strict=True)
            return torch.stack([F.linear(xk, wk, bk) for xk, wk, bk in parts])
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        if bias is None:
            out = torch.bmm(flat, weight.transpose(1, 2))
        else:
            out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
        return out.view(*x.shape[:-1], weight.shape[1])


class BatchedConv2d(_Leaf):
    """P Conv2d layers: (P, B, C, H, W) -> (P, B, C', H', W'), one convolution per member. On CPU this is
    about twice as fast as one grouped convolution over the members' channels side by side, and as
    ``torch.vmap`` (docs/population.md); ``grouped = True`` selects the grouped one."""

    grouped = False

    def __init__(self, stack: Stack, name: str, conv: nn.Conv2d):
        super().__init__(stack, name)
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError("BatchedConv2d: groups=1 and zero padding only")
        self.options = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.tensor("weight"), self.tensor("bias")
        if not self.grouped:  # unbind, not x[k]: one backward node for all members, not a zero-filled one each
            biases = bias.unbind(0) if bias is not None else [None] * x.shape[0]
            return torch.stack([
                F.conv2d(xk, wk, bk, **self.options)
                for xk, wk, bk in zip(x.unbind(0), weight.unbind(0), biases, strict=True)
            ])  # fmt: skip
        members, batch = x.shape[:2]
        # the members' channels side by side: one group per member
        grouped = x.transpose(0, 1).reshape(batch, members * x.shape[2], *x.shape[3:])
        y = F.conv2d(grouped, weight.flatten(0, 1), bias.flatten() if bias is not None else None,
                     groups=members, **self.options)  # fmt: skip
        return y.view(batch, members, -1, *y.shape[2:]).transpose(0, 1)


class BatchedLayerNorm(_Leaf):
    """P LayerNorms, each with its own affine weight and bias."""

    def __init__(self, stack: Stack, name: str, norm: nn.LayerNorm):
        super().__init__(stack, name)
        self.normalized_shape, self.eps = tuple(norm.normalized_shape), norm.eps

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x, self.normalized_shape, eps=self.eps)
        weight, bias = self.tensor("weight"), self.tensor("bias")
        lead = (slice(None), *[None] * (x.dim() - 1 - len(self.normalized_shape)))  # (P, 1, ..., *shape)
        if weight is not None:
            y = y * weight[lead]
        return y + bias[lead] if bias is not None else y


class BatchedFlatten(nn.Module):
    """nn.Flatten with its dims counted after the member dim."""

    def __init__(self, stack: Stack, name: str, flatten: nn.Flatten):
        super().__init__()
        self.start, self.end = flatten.start_dim, flatten.end_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start + 1 if self.start >= 0 else self.start, self.end + 1 if self.end >= 0 else self.end)


class Vmapped(_Leaf):
    """Any other module: its forward under ``torch.vmap`` over the member dim of its tensors and inputs."""

    def __init__(self, stack: Stack, name: str, module: nn.Module):
        super().__init__(stack, name)
        self._module = [copy.deepcopy(module).to("meta")]  # in a list: its meta tensors are not the stack's
        self.names = [n for n, _ in module.named_parameters()] + [n for n, _ in module.named_buffers()]

    def forward(self, *args: Tensor) -> Tensor:
        tensors = {n: self.tensor(n) for n in self.names}
        return torch.vmap(lambda own, *inputs: functional_call(self._module[0], own, inputs))(tensors, *args)


BATCHED = {
    nn.Linear: BatchedLinear,
    nn.Conv2d: BatchedConv2d,
    nn.LayerNorm: BatchedLayerNorm,
    nn.Flatten: BatchedFlatten,
}
