"""Metric sinks. ``metrics.jsonl`` in the run dir is always written: one JSON row per env step at which
anything was logged, with ``env_step``, ``wall_time`` and the metrics; other loggers come from the
``logger`` config group (``conf/logger/*.yaml``, several at once: ``logger=[wandb,tensorboard]``).
Every logger gets the same metric names at the same step (the env step), and none of them can stop a
training run."""

from __future__ import annotations

import json
import math
import secrets
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"acx: warning: {message}", file=sys.stderr)


def describe_error(exc: BaseException) -> str:
    """An exception as one short line (Hydra and pydantic wrap theirs in several)."""
    while exc.__cause__ is not None:  # Hydra's InstantiationException wraps the logger's own error
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = "; ".join(lines[:3])  # pydantic: "1 validation error for Settings; mode; Input should be ..."
    return f"{type(exc).__name__}: {text[:240]}"


def _row_step(line: str) -> float:
    try:
        return json.loads(line)["env_step"]
    except (ValueError, KeyError, TypeError):  # a row cut short by a kill
        return float("inf")


class JsonlLogger:
    """Append-only local record that reports and tests read without any tracking service.

    One row per env step: the steps of the rows strictly rise. What is logged at the step of the last
    row (an evaluation, its confirmation or its video at the step of a train row) joins that row, which
    is rewritten in place (the file is cut back to the row's start, so a kill leaves at worst a row cut
    short, which a resumed run drops); its ``wall_time`` stays that of the row's first part."""

    def __init__(self, path: Path, resume_step: int | None = None):
        """A fresh run starts the file anew; a resumed one keeps the rows up to its checkpoint's step
        (rows logged after it, before a crash, are dropped so the record continues from there)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None and path.exists():
            kept = [line for line in path.read_text().splitlines() if _row_step(line) <= resume_step]
        self.file = open(path, "wb", buffering=0)  # unbuffered: each row is one write
        self.file.write("".join(line + "\n" for line in kept).encode())
        self.last_row: dict[str, Any] | None = json.loads(kept[-1]) if kept else None
        self.last_start = self.file.tell() - (len(kept[-1].encode()) + 1 if kept else 0)

    def log(self, metrics: dict[str, float], step: int, wall_time: float) -> None:
        row = {"env_step": step, "wall_time": round(wall_time, 4)}
        row.update({k: (v if math.isfinite(v) else None) for k, v in metrics.items()})
        if self.last_row is not None and self.last_row["env_step"] == step:  # joins the row of its step
            row = {**self.last_row, **row, "wall_time": self.last_row["wall_time"]}
            self.file.truncate(self.last_start)
            self.file.seek(self.last_start)
        else:
            self.last_start = self.file.tell()
        self.file.write((json.dumps(row) + "\n").encode())
        self.last_row = row

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:  # the disk filled up: the write that failed has been reported already
            pass


class TensorBoardLogger:
    """Event files in ``<run_dir>/tensorboard``: every metric as a scalar at its env step, the config as text."""

    def __init__(
        self, run_dir: str | Path, run_config: Mapping[str, Any] | None = None, subdir: str = "tensorboard",
        flush_secs: int = 30,
    ):  # fmt: skip
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / subdir), flush_secs=flush_secs)
        if run_config is not None:  # indented: TensorBoard's text tab renders it as a code block
            text = OmegaConf.to_yaml(run_config)
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "), global_step=0)

    def log(self, metrics: dict[str, float], step: int, wall_time: float) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)

    def log_files(self, kind: str, paths: list[Path], step: int) -> None:
        """``kind='video'``: each MP4 as an animated GIF under ``eval/video`` (TensorBoard's own video
        format). Written here, not with ``SummaryWriter.add_video``, which needs moviepy 1.x's
        ``moviepy.editor`` (gone in moviepy 2). Other kinds are not for TensorBoard."""
        if kind != "video":
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        from acx.run.video import gif_bytes, read_video

        for path in paths:
            frames, fps = read_video(path)
            h, w = frames[0].shape[:2]
            image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif_bytes(frames, fps))
            self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag="eval/video", image=image)]),
                                                       global_step=step)  # fmt: skip

    def close(self) -> None:
        self.writer.close()


class LoggerStartError(Exception):
    """A logger that started in the background (W&B) could not start; says so in the usual words."""

    def __init__(self, name: str, cause: BaseException):
        super().__init__(f"logger.{name} could not start ({describe_error(cause)}); training goes on without it")


class WandbLogger:
    """A Weights & Biases run in ``<run_dir>/wandb``: the resolved config, every metric at its env step,
    videos, and the best and final checkpoints as one model artifact.

    ``mode`` is 'offline' unless asked otherwise (``conf/logger/wandb.yaml`` explains the rule); an
    offline run is a local directory that ``wandb sync`` uploads later. ``settings`` go to
    ``wandb.Settings``; the config's defaults keep W&B quiet and bound how long it may wait.
    """

    def __init__(
        self,
        run_dir: str | Path,
        run_config: Mapping[str, Any] | None = None,
        project: str = "acx",
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
        name: str | None = None,
        mode: str = "offline",
        settings: Mapping[str, Any] | None = None,
    ):
        self.mode = mode
        # a resumed acx run (same run dir) continues the same W&B run
        id_file = Path(run_dir) / "wandb" / "run-id"
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)  # not the seeded RNGs
        # written before W&B starts: a run stopped before W&B is up (a SLURM signal reaches W&B's own
        # process too) still continues under this id when it is resumed or requeued
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id)
        init_kwargs = dict(
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            config=dict(run_config or {}),
            project=project,
            entity=entity,
            group=group,
            tags=list(tags),
            name=name,
            mode=mode,
        )
        # W&B takes about a second to import and start its service: do that in a thread while training
        # runs, and hold the first metrics until the run exists (what this buys: ~1 s off every run)
        self._pending: list[tuple[dict[str, float], int]] = []
        self._error: BaseException | None = None
        self.run = None
        self._thread = threading.Thread(
            target=self._start, args=(init_kwargs, dict(settings or {}), id_file), name="acx-wandb-init", daemon=True
        )
        self._thread.start()

    def _start(self, init_kwargs: dict[str, Any], settings: dict[str, Any], id_file: Path) -> None:
        try:
            import wandb

            self.wandb = wandb
            run = wandb.init(**init_kwargs, settings=wandb.Settings(**settings))
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run.id)
            self.run = run
        except BaseException as exc:  # reported by the next call, so the LoggerGroup drops this logger
            self._error = exc

    def _ready(self, wait: bool) -> bool:
        """True once the W&B run exists; raises the start-up error if W&B could not start."""
        if wait:
            self._thread.join()
        if self._error is not None:
            raise LoggerStartError("wandb", self._error)
        if self.run is None:
            return False
        for metrics, step in self._pending:
            self.run.log(metrics, step=step)
        self._pending.clear()
        return True

    def log(self, metrics: dict[str, float], step: int, wall_time: float) -> None:
        if self._ready(wait=False):
            self.run.log(metrics, step=step)
        else:
            self._pending.append((dict(metrics), step))

    def log_files(self, kind: str, paths: list[Path], step: int) -> None:
        """``kind='model'``: the checkpoint files as one model artifact; ``'video'``: each file under
        ``eval/video`` at ``step``. Other kinds are not for W&B and are ignored."""
        self._ready(wait=True)
        if kind == "model" and paths:
            artifact = self.wandb.Artifact(f"model-{self.run.id}", type="model", metadata={"env_step": step})
            for path in paths:  # immutable: uploaded from the run dir, no copy in W&B's staging area
                artifact.add_file(str(path), name=Path(path).name, policy="immutable", skip_cache=True)
            self.run.log_artifact(artifact, aliases=["latest"])
        elif kind == "video":
            for path in paths:
                self.run.log({"eval/video": self.wandb.Video(str(path), format=Path(path).suffix[1:])}, step=step)

    def close(self) -> None:
        self._ready(wait=True)
        self.run.finish()
        if self.mode == "offline":
            run_dir = self.run.settings.sync_dir
            print(f"acx: W&B offline run in {run_dir}; upload it with: wandb sync {run_dir}")
        elif self.run.url:
            print(f"acx: W&B run: {self.run.url}")


def build_loggers(logger_cfg: Mapping[str, Any] | None, run_dir: Path, run_config: Mapping[str, Any]) -> list[Any]:
    """The loggers that ``cfg.logger`` names, each given the run dir and the resolved config; one that
    cannot start prints one warning and the run goes on without it."""
    loggers = []
    for name, node in (logger_cfg or {}).items():
        if node is None:
            continue
        try:
            # partial: the run's own arguments bypass OmegaConf (the resolved config holds _target_ keys)
            loggers.append(instantiate(node, _partial_=True, _convert_="all")(run_dir=run_dir, run_config=run_config))
        except Exception as exc:  # tracking must never stop training
            warn(str(LoggerStartError(name, exc)))
    return loggers


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
                if isinstance(exc, LoggerStartError):
                    warn(str(exc))
                else:
                    warn(f"{type(logger).__name__} failed ({describe_error(exc)}); continuing without it")
                self.loggers.remove(logger)

    def log(self, metrics: dict[str, float], step: int, wall_time: float) -> None:
        self._each("log", metrics, step, wall_time)

    def log_files(self, kind: str, paths: list[Path], step: int) -> None:
        self._each("log_files", kind, paths, step)

    def close(self) -> None:
        self._each("close")
