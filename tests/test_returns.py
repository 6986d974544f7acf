"""Return/advantage estimators against hand-computed vectors (Dopamine / SB3 test_gae style)."""

import pytest
import torch

from acx.algo.returns import gae_advantages, monte_carlo_advantages, td0_advantages


def col(*xs):
    """A (T, 1) float tensor."""
    return torch.tensor(xs, dtype=torch.float32).unsqueeze(1)


def flags(T, at=(), *more):
    x = torch.zeros(T, 1, dtype=torch.bool)
    for t in at:
        x[t] = True
    return x


ONES = col(1, 1, 1, 1, 1)
ZEROS = col(0, 0, 0, 0, 0)


def test_monte_carlo_gamma_one_counts_down():
    adv, ret = monte_carlo_advantages(ONES, ZEROS, ZEROS, flags(5, [4]), flags(5, [4]), gamma=1.0)
    assert ret.squeeze(1).tolist() == [5, 4, 3, 2, 1]
    assert torch.equal(adv, ret)


def test_monte_carlo_gamma_zero_is_the_rewards():
    rewards = col(3, -1, 2, 0.5, 7)
    _, ret = monte_carlo_advantages(rewards, ZEROS, col(9, 9, 9, 9, 9), flags(5), flags(5), gamma=0.0)
    assert torch.equal(ret, rewards)


def test_monte_carlo_terminal_mid_rollout_does_not_leak():
    # terminal at t=1: t=0..1 is one episode, t=2..3 the next (bootstrapped at the rollout's end)
    r, nv = col(1, 2, 3, 4), col(10, 10, 10, 10)
    _, ret = monte_carlo_advantages(r, col(0, 0, 0, 0), nv, flags(4, [1]), flags(4, [1]), gamma=0.5)
    # t3: 4 + .5*10 = 9; t2: 3 + .5*9 = 7.5; t1: 2 (terminal); t0: 1 + .5*2 = 2
    assert ret.squeeze(1).tolist() == [2, 2, 7.5, 9]


def test_monte_carlo_truncation_bootstraps_from_final_observation():
    # truncated at t=1 with V(final obs) = 6: not terminal, so 2 + .5*6 = 5, and nothing flows back from t=2
    r, nv = col(1, 2, 3, 4), col(10, 6, 10, 10)
    _, ret = monte_carlo_advantages(r, col(0, 0, 0, 0), nv, flags(4), flags(4, [1]), gamma=0.5)
    assert ret.squeeze(1).tolist() == [3.5, 5, 7.5, 9]


def test_td0_targets_terminal_and_truncation():
    r, nv = col(1, 2, 3, 4), col(10, 6, 10, 10)
    v = col(1, 1, 1, 1)
    adv, ret = td0_advantages(r, v, nv, flags(4, [1]), flags(4, [1]), gamma=0.5)
    assert ret.squeeze(1).tolist() == [6, 2, 8, 9]  # terminal at t=1: no bootstrap
    assert torch.equal(adv, ret - v)
    _, ret = td0_advantages(r, v, nv, flags(4), flags(4, [1]), gamma=0.5)
    assert ret.squeeze(1).tolist() == [6, 5, 8, 9]  # truncated at t=1: bootstraps V(final) = 6


def test_gae_hand_computed():
    # gamma=1, lambda=.5: deltas = [1 + 0 - 0, 1 + 2 - 0] = [1, 3]; A1 = 3, A0 = 1 + .5*3 = 2.5
    adv, ret = gae_advantages(col(1, 1), col(0, 0), col(0, 2), flags(2), flags(2), gamma=1.0, gae_lambda=0.5)
    assert adv.squeeze(1).tolist() == [2.5, 3]
    assert torch.equal(ret, adv)


def test_gae_stops_at_episode_boundary():
    # done at t=0: A0 = delta0 only, whatever comes after
    adv, _ = gae_advantages(col(1, 5), col(0, 0), col(0, 0), flags(2, [0]), flags(2, [0]), gamma=1.0, gae_lambda=1.0)
    assert adv.squeeze(1).tolist() == [1, 5]


@pytest.mark.parametrize("seed", range(5))
def test_gae_limits_equal_monte_carlo_and_td0(seed):
    g = torch.Generator().manual_seed(seed)
    T, N = 17, 4
    r, v, final = (torch.randn(T, N, generator=g) for _ in range(3))
    done = torch.rand(T, N, generator=g) < 0.2
    term = done & (torch.rand(T, N, generator=g) < 0.5)
    # as in a rollout: within an episode V(s_{t+1}) is the next row's V; at an episode end it is V(final obs)
    nv = torch.where(done, final, torch.cat([v[1:], final[-1:]]))
    for gamma in (0.0, 0.9, 1.0):
        mc_adv, mc_ret = monte_carlo_advantages(r, v, nv, term, done, gamma)
        g1_adv, g1_ret = gae_advantages(r, v, nv, term, done, gamma, gae_lambda=1.0)
        torch.testing.assert_close(g1_adv, mc_adv)
        torch.testing.assert_close(g1_ret, mc_ret)
        td_adv, _ = td0_advantages(r, v, nv, term, done, gamma)
        g0_adv, _ = gae_advantages(r, v, nv, term, done, gamma, gae_lambda=0.0)
        torch.testing.assert_close(g0_adv, td_adv)


def test_columns_are_independent_envs():
    r = torch.cat([col(1, 2, 3, 4), col(1, 2, 3, 4)], 1)
    nv = torch.cat([col(10, 10, 10, 10), col(10, 6, 10, 10)], 1)
    term = torch.cat([flags(4, [1]), flags(4)], 1)
    done = torch.cat([flags(4, [1]), flags(4, [1])], 1)
    _, ret = monte_carlo_advantages(r, torch.zeros(4, 2), nv, term, done, gamma=0.5)
    assert ret[:, 0].tolist() == [2, 2, 7.5, 9]
    assert ret[:, 1].tolist() == [3.5, 5, 7.5, 9]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="next_values"):
        td0_advantages(col(1, 2), col(0, 0), col(0), flags(2), flags(2), 0.9)


ESTIMATORS = [
    (td0_advantages, {}),
    (monte_carlo_advantages, {}),
    (gae_advantages, {"gae_lambda": 0.9}),
]


def rollout(shape, seed=0):
    """A random rollout of shape (T, *B) with episode ends, as a collector writes it."""
    g = torch.Generator().manual_seed(seed)
    r, v, final = (torch.randn(shape, generator=g) for _ in range(3))
    done = torch.rand(shape, generator=g) < 0.2
    term = done & (torch.rand(shape, generator=g) < 0.5)
    nv = torch.where(done, final, torch.cat([v[1:], final[-1:]]))
    return r, v, nv, term, done


@pytest.mark.parametrize(("estimator", "extra"), ESTIMATORS, ids=lambda e: getattr(e, "__name__", ""))
def test_any_batch_shape_equals_a_loop_over_the_batch(estimator, extra):
    """(T, P, N) with a gamma (and lambda) per member, as (P, 1): each (member, env) column equals the
    estimator on that column alone, with that member's numbers, bit for bit."""
    T, P, N = 13, 3, 4
    r, v, nv, term, done = rollout((T, P, N))
    gamma = torch.tensor([0.9, 0.99, 0.5]).unsqueeze(1)
    rates = {k: torch.tensor([0.8, 0.95, 0.0]).unsqueeze(1) for k in extra}
    adv, ret = estimator(r, v, nv, term, done, gamma=gamma, **rates)
    assert adv.shape == ret.shape == (T, P, N)
    for p in range(P):
        for n in range(N):
            column = [x[:, p, n : n + 1] for x in (r, v, nv, term, done)]
            one = {k: float(x[p]) for k, x in rates.items()}
            a, g = estimator(*column, gamma=float(gamma[p]), **one)
            assert torch.equal(adv[:, p, n], a[:, 0]) and torch.equal(ret[:, p, n], g[:, 0]), (p, n)


@pytest.mark.parametrize(("estimator", "extra"), ESTIMATORS, ids=lambda e: getattr(e, "__name__", ""))
def test_a_leading_batch_dimension_changes_nothing(estimator, extra):
    """(T, N) and (T, 1, N) give the same numbers: a cohort of one is a single run."""
    r, v, nv, term, done = rollout((11, 5), seed=3)
    flat = estimator(r, v, nv, term, done, gamma=0.97, **extra)
    lifted = estimator(*(x.unsqueeze(1) for x in (r, v, nv, term, done)), gamma=0.97, **extra)
    for a, b in zip(flat, lifted, strict=True):
        assert torch.equal(a, b.squeeze(1))


def test_a_rate_that_does_not_broadcast_is_an_error():
    r, v, nv, term, done = rollout((4, 3, 2))
    with pytest.raises(ValueError, match=r"^gamma of shape \(3,\) does not broadcast to the batch \(3, 2\)$"):
        td0_advantages(r, v, nv, term, done, gamma=torch.tensor([0.9, 0.8, 0.7]))
    with pytest.raises(ValueError, match=r"^gae_lambda of shape \(3, 2, 1\) does not broadcast"):
        gae_advantages(r, v, nv, term, done, gamma=0.9, gae_lambda=torch.ones(3, 2, 1))
