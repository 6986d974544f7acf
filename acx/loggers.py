"""Metric sinks. ``metrics.jsonl`` in the run dir is always written: one JSON row per log step with
``env_step``, ``wall_time`` and the metrics; other loggers come from the ``logger`` config group."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any


class JsonlLogger:
    """Append-only local record that reports and tests read without any tracking service."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", buffering=1)

    def log(self, metrics: dict[str, float], step: int, wall_time: float) -> None:
        row = {"env_step": step, "wall_time": round(wall_time, 4)}
        row.update({k: (v if math.isfinite(v) else None) for k, v in metrics.items()})
        self.file.write(json.dumps(row) + "\n")

    def close(self) -> None:
        self.file.close()


class LoggerGroup:
    """Fans metrics out to every logger; a failing optional logger is dropped with one warning."""

    def __init__(self, loggers: list[Any]):
        self.loggers = loggers

    def _each(self, method: str, *args, **kwargs) -> None:
        for logger in list(self.loggers):
            fn = getattr(logger, method, None)
            if fn is None:
                continue
            try:
                fn(*args, **kwargs)
            except Exception as exc:  # tracking must never stop training
                if isinstance(logger, JsonlLogger):
                    raise
                print(f"acx: warning: {type(logger).__name__} failed ({exc}); continuing without it", file=sys.stderr)
                self.loggers.remove(logger)

    def log(self, metrics: dict[str, float], step: int, wall_time: float) -> None:
        self._each("log", metrics, step, wall_time)

    def log_files(self, kind: str, paths: list[Path], step: int) -> None:
        self._each("log_files", kind, paths, step)

    def close(self) -> None:
        self._each("close")
