"""Scores across seeds and envs, as Agarwal et al. (NeurIPS 2021) recommend and their library rliable
computes them: aggregates over a (runs x envs) score matrix (IQM, median, mean, optimality gap) with
stratified bootstrap confidence intervals, performance profiles and the probability of improvement.

The bootstrap runs its statistic once per repetition, so the two costly ones are passed to it as
NumPy equivalents of rliable's own (tests/test_report.py checks them equal): ``iqm`` for
``metrics.aggregate_iqm`` (scipy's ``trim_mean`` costs ~0.2 ms a call in argument checks) and
``probability_of_improvement`` for ``metrics.probability_of_improvement`` (scipy's ``mannwhitneyu``,
~2 ms a call); the profiles use ``create_performance_profile``'s ``custom_profile_func``.

rliable draws its bootstrap indices from NumPy's global generator (its ``random_state`` argument is
not used for them), so every estimate here runs under ``numpy_seed``: a report is reproducible, and
NumPy's global state is left as it was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

# env id -> (random score, reference score): normalised, the first is 0 and the second 1. The random
# score is the mean return of uniform random actions over 100 episodes (reset seeds 0..99, measured by
# `random_score`, checked in tests/test_report.py); the reference is the env's registered reward
# threshold, or for Pendulum-v1, which has none, -200 (the score acx's Pendulum targets use).
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "CartPole-v0": (23.7, 195.0),
    "CartPole-v1": (23.7, 475.0),
    "Acrobot-v1": (-497.1, -100.0),
    "Pendulum-v1": (-1207.6, -200.0),
    "MountainCar-v0": (-200.0, -110.0),
    "MountainCarContinuous-v0": (-33.3, 90.0),
}

METRICS = ("IQM", "median", "mean", "optimality gap")


def random_score(env_id: str, episodes: int = 100) -> float:
    """The mean return of uniform random actions over ``episodes`` episodes (reset seeds 0, 1, ...)."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(0)
    returns = []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def normalize(scores: np.ndarray, env_id: str | None) -> np.ndarray | None:
    """``scores`` of ``env_id`` with its random score at 0 and its reference score at 1; None if the env
    has no reference scores."""
    if env_id not in REFERENCE_SCORES:
        return None
    low, high = REFERENCE_SCORES[env_id]
    return (np.asarray(scores, dtype=np.float64) - low) / (high - low)


@contextlib.contextmanager
def numpy_seed(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded for the block (rliable bootstraps with it), then restored."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% confidence interval."""

    point: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.point:.3g} [{self.low:.3g}, {self.high:.3g}]"


def iqm(scores: np.ndarray) -> float:
    """rliable's ``aggregate_iqm``: the mean of the middle 50% of all scores (25% cut from each end, as
    scipy's ``trim_mean`` cuts)."""
    flat = np.sort(np.ravel(scores))
    cut = int(0.25 * len(flat))
    return float(flat[cut : len(flat) - cut].mean())


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's ``probability_of_improvement``: per env (column), P(X > Y) + P(X = Y) / 2 over all pairs of
    a run of X and a run of Y (the Mann-Whitney U statistic over n_x n_y), averaged over the envs."""
    x, y = np.asarray(scores_x)[:, None, :], np.asarray(scores_y)[None, :, :]
    return float(((x > y) + 0.5 * (x == y)).mean(axis=(0, 1)).mean())


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """rliable's score distribution (``run_score_deviation`` at each tau): the fraction of runs above tau."""
    return (np.ravel(scores)[:, None] > np.asarray(taus)[None, :]).mean(axis=0)


def aggregates(scores: np.ndarray, gamma: float) -> np.ndarray:
    """rliable's IQM, median, mean and optimality gap (below ``gamma``) of a (runs x envs) matrix. The
    median and the mean are over the envs' mean scores, as rliable defines them (with one env, both are
    the mean over runs)."""
    from rliable import metrics

    return np.array(
        [
            iqm(scores),
            metrics.aggregate_median(scores),
            metrics.aggregate_mean(scores),
            metrics.aggregate_optimality_gap(scores, gamma),
        ]
    )


def interval_estimates(
    score_dict: Mapping[str, np.ndarray], gamma: float = 1.0, reps: int = 2000, seed: int = 0
) -> dict[str, dict[str, Estimate]]:
    """Per method, each of ``METRICS`` with its 95% stratified bootstrap CI (runs resampled within each env)."""
    from rliable import library

    with numpy_seed(seed):
        points, intervals = library.get_interval_estimates(
            dict(score_dict), lambda s: aggregates(s, gamma), reps=reps, confidence_interval_size=0.95
        )
    return {
        key: {m: Estimate(*map(float, (points[key][i], *intervals[key][:, i]))) for i, m in enumerate(METRICS)}
        for key in score_dict
    }


def iqm_curves(
    curves: Mapping[str, np.ndarray], reps: int = 2000, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """IQM across runs at each point of a (runs x envs x points) matrix, and its (2 x points) 95% CI."""
    from rliable import library

    def iqm_per_point(scores: np.ndarray) -> np.ndarray:  # ``iqm`` at each point, in one call
        flat = np.sort(scores.reshape(-1, scores.shape[-1]), axis=0)
        cut = int(0.25 * len(flat))
        return flat[cut : len(flat) - cut].mean(axis=0)

    with numpy_seed(seed):
        return library.get_interval_estimates(dict(curves), iqm_per_point, reps=reps)


def performance_profiles(
    score_dict: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = 2000, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The fraction of runs scoring above each tau, and its (2 x taus) 95% CI, per method."""
    from rliable import library

    with numpy_seed(seed):
        return library.create_performance_profile(
            dict(score_dict), taus, custom_profile_func=score_distribution, reps=reps
        )


def probabilities_of_improvement(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], reps: int = 2000, seed: int = 0
) -> dict[str, Estimate]:
    """P(X > Y) of each pair of (runs x envs) matrices over the same envs, with its 95% CI (the runs of X
    and of Y resampled independently, within each env)."""
    from rliable import library

    with numpy_seed(seed):
        points, intervals = library.get_interval_estimates(
            {k: list(v) for k, v in pairs.items()}, probability_of_improvement, reps=reps
        )
    return {k: Estimate(float(np.ravel(points[k])[0]), *map(float, np.ravel(intervals[k]))) for k in pairs}
