"""What the loop records between log steps (the episodes that finished, steps/s, the progress bar),
and the cadences in env steps at which it evaluates, checkpoints and records videos."""

from __future__ import annotations

import sys
import time
from collections import deque

import numpy as np
from tqdm.auto import tqdm  # a widget in Jupyter, text on a terminal

from acx.run.checkpoint import Progress


class Every:
    """A cadence in env steps: due once each time the step count passes the next multiple."""

    def __init__(self, every: int, start: int):
        self.every, self.next = every, (start // every + 1) * every

    def due(self, step: int) -> bool:
        if step < self.next:
            return False
        self.next = (step // self.every + 1) * self.every
        return True


class MetricsWindow:
    """Owns the recent episode returns (the bar's last 100), the episodes since the last log row,
    steps/s over that window, and the tqdm bar with its text."""

    def __init__(self, progress: Progress, total_steps: int, every_updates: int, show_bar: bool):
        self.every_updates = every_updates
        self.recent: deque[float] = deque(maxlen=100)
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.since_time, self.since_steps = time.perf_counter(), progress.env_steps
        self.bar = tqdm(
            total=total_steps,
            initial=min(progress.env_steps, total_steps),
            unit="step",
            dynamic_ncols=True,
            disable=not show_bar,
            file=sys.stderr,
        )

    def add(self, returns: list[float], lengths: list[int], progress: Progress) -> None:
        """A rollout's finished episodes; the bar moves to the run's env steps."""
        self.recent.extend(returns)
        self.returns += returns
        self.lengths += lengths
        self.bar.update(progress.env_steps - self.bar.n)

    def due(self, updates: int) -> bool:
        """Whether update number ``updates`` gets a log row (and the costlier diagnostics)."""
        return updates % self.every_updates == 0

    def row(self, stats: dict, progress: Progress) -> dict[str, float]:
        """The log row for the window that ends now (the update's stats, steps/s, episodes); starts a new
        window and refreshes the bar's text."""
        now = time.perf_counter()
        metrics = {k: float(v) for k, v in stats.items()}
        metrics["time/sps"] = (progress.env_steps - self.since_steps) / max(now - self.since_time, 1e-9)
        if self.returns:
            metrics["train/episode_return"] = float(np.mean(self.returns))
            metrics["train/episode_length"] = float(np.mean(self.lengths))
        self.bar.set_postfix(
            sps=f"{metrics['time/sps']:.0f}",
            ret=f"{np.mean(self.recent):.1f}" if self.recent else "-",
            eval=f"{progress.eval_return:.1f}" if progress.eval_return is not None else "-",
            refresh=False,
        )
        self.returns, self.lengths = [], []
        self.since_time, self.since_steps = now, progress.env_steps
        return metrics

    def close(self) -> None:
        self.bar.close()
