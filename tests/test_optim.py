"""acx.algo.optim steps a cohort's stacked parameters member by member: each active member's numbers are
torch.optim's foreach steps for that member alone, bit for bit, with its own lr; an inactive member does
not move; a member's state dict is torch.optim's and continues in either."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from acx.algo import optim

CASES = [
    ("Adam", dict(eps=1e-5, weight_decay=0.0)),
    ("Adam", dict(betas=(0.8, 0.99), eps=1e-8, weight_decay=1e-4)),
    ("RMSprop", dict(alpha=0.99, eps=1e-5, weight_decay=0.0)),
    ("RMSprop", dict(alpha=0.9, eps=1e-8, weight_decay=1e-3)),
    ("SGD", dict(momentum=0.0, weight_decay=0.0)),
    ("SGD", dict(momentum=0.9, dampening=0.1, weight_decay=1e-4)),
    ("SGD", dict(momentum=0.9, nesterov=True)),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
SHAPES = [(64, 4), (64,), (2, 64), (2,), (1,)]
LRS = [7e-4, 3e-3, 1e-2]


def member_params(k: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(k)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in SHAPES]


def stacked(members: int) -> list[torch.Tensor]:
    own = [member_params(k) for k in range(members)]
    return [torch.stack([own[k][i].detach() for k in range(members)]).requires_grad_(True) for i in range(len(SHAPES))]


def grads(step: int, k: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + k)
    return [torch.randn(shape, generator=g) * 0.1 for shape in SHAPES]


def step_alone(opt, params, step: int, k: int) -> None:
    for p, g in zip(params, grads(step, k), strict=True):
        p.grad = g
    opt.step()


def step_stacked(opt, params, step: int, active: list[bool]) -> None:
    for i, p in enumerate(params):
        p.grad = torch.stack([grads(step, k)[i] for k in range(len(active))])
    opt.step(torch.tensor(active))


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_each_member_steps_as_torch_optim_would_alone_bit_for_bit(name: str, kwargs: dict):
    """Three members with their own lrs; member 1 sits out steps 5-9 (a frozen PPO member): it moves as
    a torch.optim that skipped those steps, the others as torch.optim on every step."""
    ours = stacked(3)
    opt = getattr(optim, name)(ours, lr=LRS, **kwargs)
    alone = [member_params(k) for k in range(3)]
    theirs = [getattr(torch.optim, name)(alone[k], lr=LRS[k], foreach=True, **kwargs) for k in range(3)]
    for step in range(25):
        active = [True, not 5 <= step < 10, True]
        step_stacked(opt, ours, step, active)
        for k in range(3):
            if active[k]:
                step_alone(theirs[k], alone[k], step, k)
    for k in range(3):
        for mine, their in zip(ours, alone[k], strict=True):
            assert torch.equal(mine[k], their), (name, k)
    assert not torch.equal(ours[0][0], member_params(0)[0]), "the steps moved nothing"


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_a_members_state_dict_is_torch_optims_and_continues_either_way(name: str, kwargs: dict):
    ours = stacked(2)
    opt = getattr(optim, name)(ours, lr=LRS[:2], **kwargs)
    for step in range(10):
        step_stacked(opt, ours, step, [True, True])
    # each member continues in torch.optim from its state dict, and in another cohort from torch.optim's
    alone = [[torch.nn.Parameter(p[k].detach().clone()) for p in ours] for k in range(2)]
    theirs = [getattr(torch.optim, name)(alone[k], lr=LRS[k], foreach=True, **kwargs) for k in range(2)]
    for k in range(2):
        theirs[k].load_state_dict(opt.member_state_dict(k))
    other = [p.detach().clone().requires_grad_(True) for p in ours]
    opt2 = getattr(optim, name)(other, lr=[0.5, 0.5], **kwargs)
    for k in range(2):
        opt2.load_member(k, theirs[k].state_dict())
    for step in range(10, 20):
        step_stacked(opt, ours, step, [True, True])
        step_stacked(opt2, other, step, [True, True])
        for k in range(2):
            step_alone(theirs[k], alone[k], step, k)
    for k in range(2):
        assert all(torch.equal(a[k], b) for a, b in zip(ours, alone[k], strict=True)), k
    assert all(torch.equal(a, b) for a, b in zip(ours, other, strict=True))


def test_members_leave_and_join_without_disturbing_the_others():
    """Member 1 leaves after 5 steps and a fresh member joins behind member 2: members 0 and 2 go on as
    torch.optim alone would, and the new member starts from step 0 with its own lr."""
    ours = stacked(3)
    opt = optim.Adam(ours, lr=LRS)
    alone = {k: member_params(k) for k in (0, 2, 9)}
    theirs = {k: torch.optim.Adam(alone[k], lr=LRS[k] if k < 3 else 1e-3, foreach=True) for k in alone}
    for step in range(5):
        step_stacked(opt, ours, step, [True] * 3)
        for k in (0, 2):
            step_alone(theirs[k], alone[k], step, k)
    joined = [torch.cat([p[[0, 2]].detach(), q.detach()[None]]).requires_grad_(True)
              for p, q in zip(ours, member_params(9), strict=True)]  # fmt: skip
    opt.regroup(joined, [0, 2, None], lrs=[1e-3])
    assert opt.param_groups[0]["lr"].tolist() == [LRS[0], LRS[2], 1e-3]
    assert [opt.member_state_dict(k)["state"][0]["step"].item() for k in range(3)] == [5.0, 5.0, 0.0]
    for step in range(5, 10):
        for i, p in enumerate(joined):
            p.grad = torch.stack([grads(step, k)[i] for k in (0, 2, 9)])
        opt.step()
        for k in (0, 2, 9):
            step_alone(theirs[k], alone[k], step, k)
    for row, k in enumerate((0, 2, 9)):
        assert all(torch.equal(a[row], b) for a, b in zip(joined, alone[k], strict=True)), k


def test_the_lr_a_schedule_sets_is_the_lr_used():
    params = stacked(2)
    opt = optim.SGD(params, lr=0.1)
    opt.scale_lr(torch.tensor([0.0, 1.0]))
    before = [p.detach().clone() for p in params]
    step_stacked(opt, params, 0, [True, True])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(params, before, strict=True))
    assert not torch.equal(params[0][1], before[0][1])
    assert opt.lr_of(0) == 0.0 and opt.lr_of(1) == pytest.approx(0.1)


def test_training_imports_no_torch_dynamo(tmp_path):
    """torch.optim imports torch._dynamo (~1.3 s of start-up) on its first step; acx.algo.optim does not."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from acx.run.train import train\n"
        "from tests.conftest import FAST, compose_train\n"
        f"train(compose_train([*FAST, 'optimizer=rmsprop', 'total_steps=200'], Path({str(tmp_path)!r})))\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr
