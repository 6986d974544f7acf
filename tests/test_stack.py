"""acx.algo.stack: P networks of one structure as one, for any module: the batched forward and its
gradients equal each member's own, a cohort of one runs the plain module on the stacked tensors, and
members leave and join without changing the others."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from acx.algo.networks import DictLayout, cnn_actor_critic, mlp_actor_critic
from acx.algo.normalize import ObsNormalizer, RewardNormalizer
from acx.algo.stack import BatchedConv2d, BatchedLinear, Stack, Vmapped
from acx.envs.dict_obs import pack

BOX4 = gym.spaces.Box(-1, 1, (4,), np.float32)
ACTIONS = {
    "discrete": gym.spaces.Discrete(3),
    "multi_discrete": gym.spaces.MultiDiscrete([3, 4, 2]),  # its padding is a buffer of the head's own
    "box": gym.spaces.Box(-2, 2, (2,), np.float32),
}
NETWORKS = {
    "mlp": dict(),
    "layer_norm": dict(layer_norm=True),
    "shared": dict(shared=True),
    "no_bias": dict(bias=False),
    "relu": dict(activation="relu", hidden_sizes=(16, 8)),
}


def mlps(kind: str, action: str, members: int, obs_norm: bool = False) -> list[nn.Module]:
    nets = []
    for seed in range(members):
        torch.manual_seed(seed)
        kwargs = dict(NETWORKS[kind])
        if action == "box":  # the shared log-std and the mean bound's buffers are the head's own tensors
            kwargs["gaussian"] = {"log_std": "state_independent", "mean_bound": True}
        net = mlp_actor_critic(BOX4, ACTIONS[action], **kwargs)
        if obs_norm:
            net.obs_norm = ObsNormalizer((4,))
            net.obs_norm.rms.update(torch.randn(50, 4) * (seed + 1) + seed)
        nets.append(net)
    return nets


def flat(out) -> list[torch.Tensor]:
    """A network's outputs as a list of tensors (a policy's (mean, log_std) unpacked)."""
    if torch.is_tensor(out):
        return [out]
    return [t for o in out for t in (o if isinstance(o, tuple) else (o,))]


def check_rows(batched, alone, rtol=1e-5, atol=1e-6) -> None:
    for k, own in enumerate(alone):
        for a, b in zip(flat(batched), flat(own), strict=True):
            torch.testing.assert_close(a[k], b, rtol=rtol, atol=atol)


DICT_OBS = gym.spaces.Dict(
    {"frame": gym.spaces.Box(0, 255, (36, 36, 2), np.uint8), "goal": gym.spaces.Discrete(3), "x": BOX4}
)


def test_a_dict_observations_encoders_stack_too():
    """The Dict encoder (a CNN for the image key, one-hot for the Discrete) and a normaliser of the
    Box key only, for three members at once, as each member alone."""
    layout = DictLayout(DICT_OBS)
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        net = mlp_actor_critic(DICT_OBS, ACTIONS["discrete"], hidden_sizes=(16,), cnn_features=8)
        net.obs_norm = ObsNormalizer((layout.size,), only=torch.from_numpy(layout.normalized()))
        net.obs_norm.rms.update(torch.randn(50, layout.size) * (seed + 1))
        nets.append(net)
    stack = Stack(nets)
    obs = torch.from_numpy(np.stack([[pack(DICT_OBS, DICT_OBS.sample()) for _ in range(5)] for _ in range(3)]))
    check_rows(stack.batched(obs), [net(obs[k]) for k, net in enumerate(nets)])


@pytest.mark.parametrize("kind", list(NETWORKS))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_batched_forward_and_gradients_equal_each_members_own(kind: str, action: str):
    nets = mlps(kind, action, 3, obs_norm=kind == "mlp")
    stack = Stack(nets)
    obs = torch.randn(3, 7, 4)
    out = stack.batched(obs)
    check_rows(out, [net(obs[k]) for k, net in enumerate(nets)])
    sum(t.sum() for t in flat(out)).backward()
    for k, net in enumerate(nets):
        sum(t.sum() for t in flat(net(obs[k]))).backward()
        for name, param in net.named_parameters():
            torch.testing.assert_close(stack.tensors[name].grad[k], param.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_a_cohort_of_one_runs_the_plain_module_on_the_stacked_tensors():
    (net,) = mlps("mlp", "box", 1, obs_norm=True)
    stack = Stack([net])
    obs = torch.randn(5, 4)
    for a, b in zip(flat(stack.single(obs)), flat(net(obs)), strict=True):
        assert torch.equal(a, b)
    sum(t.sum() for t in flat(stack.single(obs))).backward()
    stack.gather_grads()
    assert all(t.grad is not None and t.grad.shape[0] == 1 for t in stack.params)
    first = [t.grad.clone() for t in stack.params]
    for t in stack.params:
        t.grad = None  # an optimizer's zero_grad
    sum(t.sum() for t in flat(stack.single(obs))).backward()
    stack.gather_grads()
    assert all(torch.equal(t.grad, g) for t, g in zip(stack.params, first, strict=True)), "no stale gradient added"
    with torch.no_grad():  # an optimizer's in-place step on the stacked tensors is what the module reads next
        stack.tensors["value_head.bias"].add_(1.0)
    assert torch.allclose(stack.single(obs)[1], net(obs)[1] + 1.0)


@pytest.mark.parametrize("grouped", [False, True], ids=["a-convolution-per-member", "one-grouped-convolution"])
def test_the_nature_cnn_stacks_with_batched_convolutions(grouped, monkeypatch):
    monkeypatch.setattr(BatchedConv2d, "grouped", grouped)
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    nets = []
    for seed in range(2):
        torch.manual_seed(seed)
        nets.append(cnn_actor_critic(space, gym.spaces.Discrete(6)))
    stack = Stack(nets)
    kinds = {type(m).__name__ for m in stack.batched.modules()}
    assert {"BatchedConv2d", "BatchedLinear"} <= kinds and "Vmapped" not in kinds
    assert any(m.loop for m in stack.batched.modules() if isinstance(m, BatchedLinear))  # the 3136 x 512 layer
    frames = torch.randint(0, 255, (2, 3, 4, 84, 84), dtype=torch.uint8)
    out = stack.batched(frames)
    check_rows(out, [net(frames[k]) for k, net in enumerate(nets)], rtol=1e-4, atol=1e-5)
    sum(t.sum() for t in flat(out)).backward()
    for k, net in enumerate(nets):
        sum(t.sum() for t in flat(net(frames[k]))).backward()
        for name, param in net.named_parameters():
            torch.testing.assert_close(stack.tensors[name].grad[k], param.grad, rtol=1e-4, atol=1e-4, msg=name)


class PositiveDims(nn.Module):
    """A module of a user's own that indexes dims from the front: it cannot take a member dim as it is."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x * self.scale, dim=1)


def test_any_other_module_runs_under_vmap():
    modules = [nn.Sequential(nn.Linear(4, 4), PositiveDims()) for _ in range(3)]
    stack = Stack(modules)
    assert isinstance(stack.batched[1], Vmapped)
    x = torch.randn(3, 5, 4)
    check_rows(stack.batched(x), [m(x[k]) for k, m in enumerate(modules)])


def test_some_members_only_and_members_leaving_and_joining():
    nets = mlps("mlp", "discrete", 4, obs_norm=True)
    stack = Stack(nets)
    obs = torch.randn(2, 5, 4)
    with stack.rows(torch.tensor([3, 1])):
        check_rows(stack.batched(obs), [nets[3](obs[0]), nets[1](obs[1])])
    assert stack.batched(torch.randn(4, 5, 4))[0].shape == (4, 5, 3)  # all members again
    newcomer = mlps("mlp", "discrete", 6, obs_norm=True)[5]
    stack.regroup([2, None, 0], [newcomer])
    assert stack.members == 3
    for k, net in enumerate([nets[2], newcomer, nets[0]]):
        own = net.state_dict()
        mine = stack.member_state_dict(k)
        assert list(mine) == list(own)  # the module's own layout, normalisation statistics included
        assert all(torch.equal(mine[n], own[n]) for n in own)
    assert stack.batched(torch.randn(3, 5, 4))[0].shape == (3, 5, 3)
    copy = stack.member_module(1)
    x = torch.randn(5, 4)
    torch.testing.assert_close(copy(x)[0], newcomer(x)[0])


def test_normalisers_update_each_members_statistics_as_their_own():
    nets = mlps("mlp", "discrete", 3, obs_norm=True)
    for net in nets:
        net.reward_norm = RewardNormalizer()
    stack = Stack(nets)
    obs, valid = torch.randn(3, 6, 2, 4), torch.rand(3, 6, 2) > 0.2
    stack.batched.obs_norm.update(obs, valid)
    rewards, done = torch.randn(3, 6, 2), torch.rand(3, 6, 2) > 0.7
    gamma = torch.tensor([0.99, 0.9, 0.5])
    scaled, returns = stack.batched.reward_norm(rewards, done, valid, gamma, torch.zeros(3, 2, dtype=torch.float64))
    for k, net in enumerate(nets):
        net.obs_norm.update(obs[k], valid[k])
        own, own_returns = net.reward_norm(
            rewards[k], done[k], valid[k], float(gamma[k]), torch.zeros(2, dtype=torch.float64)
        )
        torch.testing.assert_close(scaled[k], own)
        torch.testing.assert_close(returns[k], own_returns)
        for name in ("obs_norm.rms.mean", "obs_norm.rms.var", "obs_norm.rms.count", "reward_norm.rms.var"):
            torch.testing.assert_close(stack.tensors[name][k], net.get_buffer(name), msg=name)
