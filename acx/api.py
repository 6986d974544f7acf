"""The Python API: ``train`` (a run, or a sweep with ``multirun=True``) and ``load``, over the same code path
as the ``acx`` command (``acx.train`` and ``acx.load``; ``acx.sweep`` is the package of the sweep machinery,
so the sweep function is ``acx.api.sweep``).

```python
import acx

run = acx.train("env=cartpole", "algo=nstep", "seed=1", "total_steps=20000", "logger=none")
policy = acx.load(run.checkpoint)
policy.evaluate(episodes=5)["return_mean"]
```

Each override is what you would type after ``acx train``. Bad input raises `acx.AcxError` with
the command's one-line message (its ``exit_code`` is the command's); nothing is printed for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from acx.errors import AcxError

# what the recorder saw in this process, newest last: ("run", output dir) or ("multirun", sweep dir)
_FINISHED: list[tuple[str, Path]] = []


class RunRecorder(Callback):
    """A Hydra callback that tells the API where the run or the sweep it started wrote its outputs."""

    def on_run_end(self, config, **kwargs: Any) -> None:
        _FINISHED.append(("run", Path(config.hydra.runtime.output_dir).resolve()))

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        _FINISHED.append(("multirun", Path(config.hydra.sweep.dir).resolve()))


@dataclass(frozen=True)
class Run:
    """A finished run's folder, read back: ``summary``, ``metrics`` rows, ``checkpoint`` and ``config``."""

    dir: Path

    @property
    def summary(self) -> dict[str, Any]:
        """``summary.json``: ``solved``, ``env_steps``, ``best_eval_return``, ``final_eval_return``, ..."""
        path = self.dir / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl``, one per log step (``env_step``, ``train/*``, ``eval/*``, ...)."""
        path = self.dir / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    @property
    def config(self) -> dict[str, Any]:
        """The run's composed config (``.hydra/config.yaml``), unresolved."""
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(self.dir / ".hydra" / "config.yaml"))  # type: ignore[return-value]

    @property
    def checkpoint(self) -> Path:
        """The run's final (else newest) checkpoint."""
        from acx.run.checkpoint import resolve_checkpoint

        return resolve_checkpoint(self.dir)

    def load(self, device: str = "cpu") -> Policy:
        """The run's trained policy (``acx.load(run.checkpoint)``)."""
        return load(self.checkpoint, device=device)


@contextmanager
def _as_api() -> Iterator[None]:
    """Errors raised, not printed; the process's environment as it was afterwards."""
    from acx import cli

    saved = {k: os.environ.get(k) for k in ("HYDRA_FULL_ERROR", "ACX_CONFIG_DIR")}
    cli.RAISE_ERRORS = True
    try:
        yield
    finally:
        cli.RAISE_ERRORS = False
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _command(overrides: Sequence[str], config_dir: str | os.PathLike | Sequence[str | os.PathLike] | None,
             multirun: bool) -> tuple[str, Path]:  # fmt: skip
    """Run ``acx train`` with these overrides in this process; where its outputs went."""
    from acx.cli import run_command

    folders = [config_dir] if isinstance(config_dir, (str, os.PathLike)) else list(config_dir or [])
    args = [*(["--multirun"] if multirun else []), *(a for f in folders for a in ("--config-dir", str(f)))]
    args += [*map(str, overrides), f"+hydra.callbacks.acx_api._target_={RunRecorder.__module__}.RunRecorder"]
    before = len(_FINISHED)
    with _as_api():
        try:
            run_command("train", args)
        except SystemExit as exc:  # Hydra's own flags (--help, --cfg) exit after printing
            if exc.code not in (0, None):
                raise AcxError(f"acx train exited with {exc.code}") from None
            raise
    if len(_FINISHED) == before:
        raise AcxError("the run did not finish")  # not expected: a run that fails raises its own error
    return _FINISHED[-1]


def train(*overrides: str, config_dir=None, multirun: bool = False) -> Run | list[Run]:
    """Train as ``acx train OVERRIDES...`` does and return the `Run` (a list of them with
    ``multirun=True``, as `sweep`). ``config_dir``: your own config folder (or several), searched
    before acx's, as ``acx train --config-dir``."""
    kind, folder = _command(overrides, config_dir, multirun)
    if kind == "multirun":
        from acx.analysis.runs import find_run_dirs

        return [Run(d) for d in find_run_dirs(folder)]
    return Run(folder)


def sweep(*overrides: str, config_dir=None) -> list[Run]:
    """A multirun sweep, as ``acx train -m OVERRIDES...`` (``"seed=0,1,2"``, ``"hydra/launcher=population"``):
    the runs it trained, in job order."""
    runs = train(*overrides, config_dir=config_dir, multirun=True)
    assert isinstance(runs, list)
    return runs


class Policy:
    """A trained policy rebuilt from a checkpoint alone (as ``acx eval`` does): ``act`` on observations
    of its env, ``evaluate`` it over episodes, ``make_env`` for an env to play it in."""

    def __init__(self, checkpoint: str | os.PathLike, device: str = "cpu", env_id: str | None = None):
        import torch

        from acx.run.build import build_from_checkpoint
        from acx.run.checkpoint import load_checkpoint

        self.device = torch.device(device)
        ckpt = load_checkpoint(checkpoint, map_location=self.device)
        self.checkpoint = Path(ckpt["path"])
        self.factory, self.net = build_from_checkpoint(ckpt, self.device, env_id)
        self.net.eval()
        self.env_id: str = self.factory.id
        self.recurrent: bool = bool(self.net.recurrent)

    def make_env(self, render_mode: str | None = None):
        """One env of the policy's own (its wrappers and observation packing as in training)."""
        return self.factory.make_single(render_mode=render_mode)

    def act(self, obs, state=None, deterministic: bool = True):
        """The env action for one observation, and the recurrent state to pass back with the next one
        (``None`` for a feed-forward network; for ``network=lstm``/``gru`` start from ``state=None``)."""
        import torch

        batch = torch.as_tensor(obs, device=self.device).unsqueeze(0)
        with torch.no_grad():
            if self.recurrent:
                if state is None:
                    state = self.net.initial_state(1, self.device)
                action, state = self.net.action(batch, state, deterministic=deterministic)
            else:
                action = self.net.action(batch, deterministic=deterministic)
        return self.factory.env_actions(action.cpu().numpy()[0]), state

    def evaluate(self, episodes: int = 10, render: str | None = None, deterministic: bool = True,
                 seed: int | None = 0) -> dict[str, Any]:  # fmt: skip
        """Play ``episodes`` episodes one after another; ``render="human"`` shows them in a window,
        ``"rgb_array"`` returns their frames too (``result["frames"]``). Returns ``return_mean``,
        ``return_std``, ``length_mean``, ``returns`` and ``lengths``."""
        import gymnasium as gym
        import numpy as np
        import torch

        from acx.run.video import FrameRecorder, play_episodes

        if render not in (None, "human", "rgb_array"):
            raise AcxError(f"render={render!r}: expected None, 'human' or 'rgb_array'")
        env = self.make_env(render_mode=None if render is None else "rgb_array")
        recorder = None
        if render == "rgb_array":
            env = recorder = FrameRecorder(env)
        elif render == "human":
            env = gym.wrappers.HumanRendering(env)
        try:
            with torch.no_grad():
                returns, lengths = play_episodes(self.net, env, episodes, self.device, self.factory.env_actions,
                                                 deterministic, seed, capture=recorder is not None)  # fmt: skip
        finally:
            env.close()
        result: dict[str, Any] = {
            "env_id": self.env_id,
            "episodes": len(returns),
            "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns)),
            "length_mean": float(np.mean(lengths)),
            "returns": returns,
            "lengths": lengths,
        }
        if recorder is not None:
            result["frames"] = recorder.frames
        return result

    def __repr__(self) -> str:
        return f"Policy({self.env_id}, {str(self.checkpoint)!r})"


def load(path: str | os.PathLike, device: str = "cpu", env_id: str | None = None) -> Policy:
    """The `Policy` in a checkpoint, or in a run folder (its final, else newest, checkpoint).
    ``env_id``: play it in another env with the same spaces."""
    return Policy(path, device=device, env_id=env_id)


__all__ = ["Policy", "Run", "RunRecorder", "load", "sweep", "train"]
