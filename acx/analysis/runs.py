"""Runs read back from their folders: the overrides and config Hydra saved, ``summary.json`` and the
evaluation curve in ``metrics.jsonl``. ``acx report`` and the sweep objective are built on these."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

SEED_KEY = "seed"


@dataclass
class RunRecord:
    """What one run left on disk; ``summary`` is None for a run that did not finish (pruned, killed)."""

    path: Path
    overrides: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    total_steps: int | None = None
    threshold: float | None = None
    env_id: str | None = None
    seed: int | None = None
    eval_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    eval_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def best_eval(self) -> float | None:
        if self.summary is not None and self.summary.get("best_eval_return") is not None:
            return float(self.summary["best_eval_return"])
        return float(self.eval_returns.max()) if len(self.eval_returns) else None

    @property
    def final_eval(self) -> float | None:
        if self.summary is not None and self.summary.get("final_eval_return") is not None:
            return float(self.summary["final_eval_return"])
        return float(self.eval_returns[-1]) if len(self.eval_returns) else None

    @property
    def solved(self) -> bool:
        """The run's own stop rule called it solved (summary.json's ``solved``: under the default rule, an
        evaluation at the threshold that its confirmation episodes held), not just an evaluation that reached it."""
        return bool(self.summary is not None and self.summary.get("solved"))

    @property
    def steps_to_threshold(self) -> int | None:
        """The first evaluation's env step whose mean return reached the threshold; None if none did."""
        return steps_to_threshold(self.eval_steps, self.eval_returns, self.threshold)

    @property
    def eval_auc(self) -> float | None:
        if not len(self.eval_returns):
            return None
        return eval_return_auc(self.eval_steps, self.eval_returns, self.total_steps)


def override_key(override: str) -> str:
    """The config key of a command-line override: ``+seed=3`` -> ``seed``."""
    return override.split("=", 1)[0].lstrip("+~")


def without_seed(overrides: list[str]) -> list[str]:
    """The overrides that name a configuration: all but ``seed``."""
    return [o for o in overrides if override_key(o) != SEED_KEY]


def read_eval_curve(metrics_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, eval mean returns) from metrics.jsonl, one point per step (the last row wins)."""
    points: dict[int, float] = {}
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a run killed mid-write leaves a partial last line
                continue
            value = row.get("eval/return_mean")
            if value is not None and math.isfinite(value):
                points[int(row["env_step"])] = float(value)
    steps = np.array(sorted(points), dtype=np.int64)
    return steps, np.array([points[s] for s in steps], dtype=np.float64)


def eval_return_auc(steps: np.ndarray, returns: np.ndarray, total_steps: int | None = None) -> float:
    """Area under the eval curve per env step: each evaluation stands for the steps since the previous
    one, and a run that stopped early (solved) holds its last evaluation up to ``total_steps``. With
    evaluations every k steps up to the budget this is the mean of all evaluations."""
    steps, returns = np.asarray(steps, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    if not len(steps):
        raise ValueError("no evaluation in the run")
    widths = np.diff(steps, prepend=0.0)
    end = max(float(total_steps or 0), float(steps[-1]))
    area = float(np.dot(widths, returns)) + (end - steps[-1]) * returns[-1]
    return area / end if end > 0 else float(returns[-1])


def steps_to_threshold(steps: np.ndarray, returns: np.ndarray, threshold: float | None) -> int | None:
    """The env step of the first evaluation whose mean return reached ``threshold``."""
    if threshold is None:
        return None
    hits = np.nonzero(np.asarray(returns) >= threshold)[0]
    return int(steps[hits[0]]) if len(hits) else None


def _reward_threshold(config: dict[str, Any]) -> float | None:
    """The threshold a run counted as solved against: stop.threshold, env.reward_threshold, the env's own."""
    for section in ("stop", "env"):
        value = (config.get(section) or {}).get("threshold" if section == "stop" else "reward_threshold")
        if isinstance(value, (int, float)):
            return float(value)
    env_id = (config.get("env") or {}).get("id")
    if isinstance(env_id, str):
        try:
            import gymnasium as gym

            return gym.spec(env_id).reward_threshold
        except Exception:  # an env that is not registered here: no threshold
            return None
    return None


def load_run(path: Path) -> RunRecord:
    """Read one run folder."""
    record = RunRecord(path=path)
    hydra_dir = path / ".hydra"
    if (hydra_dir / "overrides.yaml").is_file():
        record.overrides = [str(o) for o in OmegaConf.load(hydra_dir / "overrides.yaml")]
    config: dict[str, Any] = {}
    if (hydra_dir / "config.yaml").is_file():  # unresolved: ${hydra:...} only resolves inside a Hydra job
        config = OmegaConf.to_container(OmegaConf.load(hydra_dir / "config.yaml"), resolve=False)
    if (path / "summary.json").is_file():
        record.summary = json.loads((path / "summary.json").read_text())
    if isinstance(config.get("total_steps"), int):
        record.total_steps = config["total_steps"]
    record.threshold = _reward_threshold(config)
    env_id = (record.summary or {}).get("env_id", (config.get("env") or {}).get("id"))
    record.env_id = env_id if isinstance(env_id, str) else None
    seed = (record.summary or {}).get("seed", config.get("seed"))
    record.seed = seed if isinstance(seed, int) else None
    record.eval_steps, record.eval_returns = read_eval_curve(path / "metrics.jsonl")
    return record


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_run_dirs(root: Path) -> list[Path]:
    """``root`` if it is a run folder, else every run folder below it (job order: 2_... before 10_...)."""
    markers = ("metrics.jsonl", "summary.json")
    if any((root / m).is_file() for m in markers):
        return [root]
    found = {p.parent for m in markers for p in root.rglob(m)}
    return sorted(found, key=_natural_key)


def objective_value(name: str, summary: dict[str, Any], run_dir: Path) -> float:
    """The number a sweeper optimises for a finished run: ``optimized_metric``, one of
    ``acx.config.OBJECTIVES`` (checked with the rest of the config before the run started)."""
    if name != "eval_return_auc":
        return float(summary[name])
    run = load_run(run_dir)
    return eval_return_auc(run.eval_steps, run.eval_returns, run.total_steps)
