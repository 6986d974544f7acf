"""Stop rules: when a run counts as solved and may end before its step budget.

The default is an evaluation over several deterministic episodes reaching the env's
``reward_threshold``. The seeds' own rules (a running reward, a last-100-episodes mean over training
episodes) are here for their presets; a run stopped by them still gets a final evaluation.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class StopRule:
    """Base: never stops early."""

    name = "budget"

    def __init__(self, threshold: float | None = None, default_threshold: float | None = None):
        self.threshold = threshold if threshold is not None else default_threshold

    def observe_episodes(self, returns: list[float]) -> bool:
        """Feed finished training episodes; True when the rule is met."""
        return False

    def observe_eval(self, return_mean: float) -> bool:
        """Feed one evaluation's mean return; True when the rule is met."""
        return False

    @property
    def stops_early(self) -> bool:
        """Whether this rule can end a run before its budget (a resumed solved run stays solved)."""
        return False

    def describe(self) -> str:
        return "the step budget"


class ThresholdRule(StopRule):
    """A rule met when a return reaches ``threshold``; with no threshold it never stops early."""

    @property
    def stops_early(self) -> bool:
        return self.threshold is not None


class EvalThreshold(ThresholdRule):
    """Solved when the evaluation mean return reaches ``threshold``."""

    name = "eval_threshold"

    def observe_eval(self, return_mean: float) -> bool:
        return self.threshold is not None and return_mean >= self.threshold

    def describe(self) -> str:
        return f"eval mean return >= {self.threshold}" if self.threshold is not None else "the step budget"


class RunningRewardThreshold(ThresholdRule):
    """Seeds 003/004: running = alpha * episode_return + (1 - alpha) * running, from 0; stop when > threshold."""

    name = "running_reward"

    def __init__(self, alpha: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha
        self.running = 0.0

    def observe_episodes(self, returns: list[float]) -> bool:
        met = False
        for r in returns:
            self.running = self.alpha * r + (1 - self.alpha) * self.running
            met = met or (self.threshold is not None and self.running > self.threshold)
        return met

    def describe(self) -> str:
        return f"running reward (alpha {self.alpha}) > {self.threshold}"


class MeanLastEpisodes(ThresholdRule):
    """Seed 002: mean return of the last ``window`` training episodes > threshold."""

    name = "mean_last_episodes"

    def __init__(self, window: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.window = window
        self.recent: deque[float] = deque(maxlen=window)

    def observe_episodes(self, returns: list[float]) -> bool:
        self.recent.extend(returns)
        return self.threshold is not None and len(self.recent) > 0 and float(np.mean(self.recent)) > self.threshold

    def describe(self) -> str:
        return f"mean of the last {self.window} episode returns > {self.threshold}"
