"""The update diagnostics (seed 002's gradient statistics, the critic's explained variance) against
hand-computed values."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch

from acx.update import explained_variance, gradient_stats

# computed only on the updates that are logged
DIAGNOSTIC_KEYS = {
    "train/advantage_std", "train/explained_variance", "train/grad_l2", "train/grad_max", "train/grad_var"
}  # fmt: skip


def test_gradient_stats_by_hand():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, 1))
    frozen = torch.nn.Parameter(torch.zeros(3))  # no gradient: left out
    a.grad, b.grad = torch.tensor([1.0, -2.0]), torch.tensor([[3.0], [0.0]])
    stats = gradient_stats([a, b, frozen])
    # all entries: 1, -2, 3, 0 -> mean 0.5, mean square 14 / 4
    assert stats["train/grad_l2"].item() == pytest.approx(math.sqrt(3.5))
    assert stats["train/grad_max"].item() == 3.0
    assert stats["train/grad_var"].item() == pytest.approx((0.25 + 6.25 + 6.25 + 0.25) / 4)


@pytest.mark.parametrize(
    ("values", "returns", "mask", "expected"),
    [
        ([1, 2, 3, 4], [1, 2, 3, 4], [1, 1, 1, 1], 1.0),  # perfect critic
        ([1, 1], [0, 2], [1, 1], 0.0),  # a constant: Var(returns - values) = Var(returns) = 1
        ([0, 1], [0, 2], [1, 1], 0.75),  # residuals 0, 1: variance 0.25 against 1
        ([1, 2, 3, -50], [1, 2, 3, 100], [1, 1, 1, 0], 1.0),  # the masked transition does not count
        ([0, 0], [5, 5], [1, 1], float("nan")),  # returns that do not vary explain nothing
    ],
)
def test_explained_variance_by_hand(values, returns, mask, expected):
    ev = explained_variance(torch.tensor(values, dtype=torch.float32), torch.tensor(returns, dtype=torch.float32),
                            torch.tensor(mask, dtype=torch.float32)).item()  # fmt: skip
    assert ev == pytest.approx(expected, nan_ok=True)


def test_update_diagnostics_are_taken_before_clipping_and_only_when_asked():
    from acx.envs import GymEnvFactory
    from acx.losses import ActorCriticLoss
    from acx.networks import mlp_actor_critic
    from acx.returns import gae_advantages
    from acx.rollout import RolloutCollector
    from acx.update import Updater

    torch.manual_seed(0)
    factory = GymEnvFactory("CartPole-v1")
    envs = factory.make_vector(4, seed=0)
    net = mlp_actor_critic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), hidden_sizes=(16,))
    updater = Updater(net, {"all": torch.optim.SGD(net.parameters(), lr=0.0)}, ActorCriticLoss(), max_grad_norm=1e-3)
    collector = RolloutCollector(envs, net, 8, torch.device("cpu"))

    def step(diagnostics: bool) -> dict:
        rollout = collector.collect()
        adv, ret = gae_advantages(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated,
                                  rollout.done, gamma=0.99)  # fmt: skip
        return {k: float(v) for k, v in updater.step(rollout, adv, ret, diagnostics=diagnostics).items()}

    quiet = step(diagnostics=False)
    assert not DIAGNOSTIC_KEYS & set(quiet)
    stats = step(diagnostics=True)
    assert DIAGNOSTIC_KEYS <= set(stats)
    n_params = sum(p.numel() for p in net.parameters())
    # grad_norm is the norm before clipping to 1e-3; grad_l2 must describe that same (unclipped) gradient
    assert stats["train/grad_norm"] > 1e-2
    assert stats["train/grad_l2"] == pytest.approx(stats["train/grad_norm"] / math.sqrt(n_params), rel=1e-4)
    envs.close()
