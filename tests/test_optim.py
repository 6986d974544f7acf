"""acx.algo.optim's steps are torch.optim's foreach steps, bit for bit, and load torch.optim's state dicts."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch

from acx.algo import optim

CASES = [
    ("Adam", dict(lr=7e-4, eps=1e-5, weight_decay=0.0)),
    ("Adam", dict(lr=1e-3, betas=(0.8, 0.99), eps=1e-8, weight_decay=1e-4)),
    ("RMSprop", dict(lr=7e-4, alpha=0.99, eps=1e-5, weight_decay=0.0)),
    ("RMSprop", dict(lr=1e-2, alpha=0.9, eps=1e-8, weight_decay=1e-3)),
    ("SGD", dict(lr=5e-3, momentum=0.0, weight_decay=0.0)),
    ("SGD", dict(lr=1e-2, momentum=0.9, dampening=0.1, weight_decay=1e-4)),
    ("SGD", dict(lr=1e-2, momentum=0.9, nesterov=True)),
]


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in [(64, 4), (64,), (2, 64), (2,), (1,)]]


def run_steps(opt, params, steps: int, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * 0.1
        opt.step()


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_steps_equal_torch_optim_bit_for_bit(name: str, kwargs: dict):
    ours, theirs = make_params(), make_params()
    opt_ours = getattr(optim, name)(ours, **kwargs)
    opt_theirs = getattr(torch.optim, name)(theirs, foreach=True, **kwargs)
    run_steps(opt_ours, ours, 25)
    run_steps(opt_theirs, theirs, 25)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(ours, make_params(), strict=True)), "the steps moved nothing"


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_a_torch_optim_state_dict_continues_here(name: str, kwargs: dict):
    """A checkpoint written with torch.optim resumes with acx.algo.optim and continues exactly."""
    first, second = make_params(), make_params()
    torch_opt = getattr(torch.optim, name)(first, foreach=True, **kwargs)
    run_steps(torch_opt, first, 10)
    for a, b in zip(second, first, strict=True):
        a.data.copy_(b.data)
    ours = getattr(optim, name)(second, **kwargs)
    ours.load_state_dict(torch_opt.state_dict())
    run_steps(torch_opt, first, 10, seed=2)
    run_steps(ours, second, 10, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    # and our own state dict round-trips through a weights-only save
    again = getattr(optim, name)(make_params(), **kwargs)
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    again.load_state_dict(torch.load(buffer, weights_only=True))
    assert again.state_dict()["param_groups"][0]["lr"] == kwargs["lr"]


def test_the_lr_a_schedule_sets_is_the_lr_used():
    params = make_params()
    opt = optim.SGD(params, lr=0.1)
    opt.param_groups[0]["lr"] = 0.0
    before = [p.detach().clone() for p in params]
    run_steps(opt, params, 1)
    assert all(torch.equal(a, b) for a, b in zip(params, before, strict=True))


def test_training_imports_no_torch_dynamo():
    """torch.optim imports torch._dynamo (~1.3 s of start-up) on its first step; acx.algo.optim does not."""
    code = (
        "import sys, torch\n"
        "from acx.algo import optim\n"
        "from acx.run.build import build_env_factory, build_network, build_optimizers\n"
        "from tests.conftest import compose_train\n"
        "from pathlib import Path\n"
        "cfg = compose_train(['optimizer=rmsprop'], Path('/tmp/acx-no-dynamo'))\n"
        "net = build_network(cfg.network, build_env_factory(cfg.env), torch.device('cpu'))\n"
        "opt = build_optimizers(cfg.optimizer, net)['all']\n"
        "net(torch.zeros(3, 4))[1].sum().backward()\n"
        "torch.nn.utils.clip_grad_norm_(list(net.parameters()), 0.5, foreach=True)\n"
        "opt.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr
