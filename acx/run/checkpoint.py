"""Checkpoints: a run's state, its format on disk, and the writer.

A checkpoint is a ``torch.save`` of a dict holding only tensors, numbers, strings and nested
dicts/lists of those; metadata that is not a tensor (config, spaces, counters, NumPy RNG state) is a
JSON string. It is read with ``torch.load(weights_only=True)``, whose unpickler refuses any other
object, so a crafted file cannot run code on load. Writes are atomic: a temporary file, fsync, rename.

What it holds: ``model`` (the network's state dict), ``optimizers`` (one state dict per optimizer
group), ``rng`` (every RNG the run draws from) and ``meta`` (the resolved config, the env id and
spaces, the acx version, the run's ``Progress`` and the kind: step, best or final).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acx.errors import CheckpointError

FORMAT = "acx-checkpoint"
FORMAT_VERSION = 1


@dataclasses.dataclass
class Progress:
    """Where a run is: saved in every checkpoint, restored on resume."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    evals_done: int = 0
    best_eval_return: float = -float("inf")
    eval_return: float | None = None
    solved_at_step: int | None = None
    wall_seconds: float = 0.0  # of earlier segments of a resumed run


@dataclasses.dataclass
class RunState:
    """What a checkpoint of one run (one member of a cohort) holds: its network's and optimizers' state
    dicts, where it is, and the RNG states it draws from."""

    model: dict[str, torch.Tensor]
    optimizers: dict[str, dict[str, Any]]  # torch.optim's layout, one per optimizer group
    progress: Progress
    rng: dict[str, Any]


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, in a form a weights-only checkpoint can hold."""
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "json": json.dumps(
            {
                "python": [py[0], list(py[1]), py[2]],
                "numpy": [np_state[0], np_state[1].tolist(), *(float(x) for x in np_state[2:])],
            }
        ),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    saved = json.loads(state["json"])
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))


def atomic_write(path: Path, write) -> None:
    """Write via a temporary file in the same folder, fsync it, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Save ``payload`` (tensors, state dicts, and JSON-able ``meta``) atomically."""
    data = dict(payload)
    data["format"] = FORMAT
    data["format_version"] = FORMAT_VERSION
    data["meta"] = json.dumps(payload.get("meta", {}))
    atomic_write(Path(path), lambda f: torch.save(data, f))
    return Path(path)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or for a run dir / checkpoints dir its latest (else final) checkpoint."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    if p.is_dir():
        for folder in (p / "checkpoints", p):
            pointer = folder / "latest"  # names the newest periodic or final checkpoint
            named = folder / pointer.read_text().strip() if pointer.is_file() else None
            if named is not None and named.name.startswith("final") and named.is_file():
                return named
            # otherwise the pointer names a periodic checkpoint, or one behind the newest when a kill
            # fell between a checkpoint's rename and the pointer's update: take the newest
            steps = sorted(folder.glob("step_*.pt"))  # zero-padded env steps: name order is step order
            if steps:
                return steps[-1]
            # last resort: best.pt holds a whole state too (older), e.g. before the first periodic save
            found = sorted(folder.glob("final*.pt")) or sorted(folder.glob("best*.pt"))
            if found:
                return found[-1]
        raise CheckpointError(f"no acx checkpoint in directory {str(p)!r}")
    return p


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; raise CheckpointError with a one-line reason if it is not one."""
    p = resolve_checkpoint(path)
    try:
        data = torch.load(p, map_location=map_location, weights_only=True)
    except Exception:  # truncated, corrupt, or holding objects the safe unpickler refuses
        raise CheckpointError(
            f"{p} is not a loadable acx checkpoint: it is truncated or corrupt, or holds Python objects "
            "that the safe (weights-only) loader refuses to run"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not an acx checkpoint")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format {data.get('format_version')}, this acx reads format {FORMAT_VERSION}"
        )
    data["meta"] = json.loads(data["meta"])
    data["path"] = str(p)
    return data


def space_to_dict(space) -> dict[str, Any]:
    """A JSON-able description of a Gymnasium space, stored in checkpoints."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": list(space.shape)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_dict(sub) for key, sub in space.spaces.items()}}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": np.asarray(space.low).flatten().tolist()[:16],
            "high": np.asarray(space.high).flatten().tolist()[:16],
        }
    return {"type": type(space).__name__}


def space_signature(space: dict[str, Any]) -> str:
    """What a network depends on in a space: its type and shape (or action count), e.g. 'Box[4]'; a
    Dict's keys with theirs."""
    if space["type"] == "Dict":
        return "Dict(" + ", ".join(f"{k}: {space_signature(v)}" for k, v in space["spaces"].items()) + ")"
    detail = space.get("n", space.get("nvec", space.get("shape")))
    return f"{space['type']}{detail}" if detail is not None else space["type"]


def check_fits_env(ckpt: dict[str, Any], factory) -> None:
    """The checkpoint's spaces must be the env's: one line naming both otherwise."""
    meta = ckpt["meta"]
    for name in ("observation_space", "action_space"):
        here, there = space_signature(space_to_dict(getattr(factory, name))), space_signature(meta[name])
        if here != there:
            raise CheckpointError(
                f"{ckpt['path']} was trained on {meta['env_id']} ({name} {there}), "
                f"which does not fit {factory.id} ({here})"
            )


def load_weights(net: torch.nn.Module, ckpt: dict[str, Any]) -> torch.nn.Module:
    """The checkpoint's weights in ``net``; a network config that does not fit them is one line."""
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as exc:  # size mismatch, missing or unexpected keys
        detail = " ".join(str(exc).split("\n\t")[1:2]).strip() or str(exc).splitlines()[0]
        raise CheckpointError(
            f"{ckpt['path']} holds a network that the network config does not build ({detail})"
        ) from None
    return net


def is_finite(model: dict[str, torch.Tensor]) -> bool:
    """Whether every floating-point tensor of a state dict is finite (a non-finite model is never saved as best)."""
    return all(bool(torch.isfinite(t).all()) for t in model.values() if t.is_floating_point())


class CheckpointWriter:
    """Periodic (keeping the newest ``keep``), best and final checkpoints under ``folder``.

    ``static`` is the metadata every checkpoint of the run shares (config, env id, spaces, version)."""

    def __init__(self, folder: Path, keep: int, static: dict[str, Any], last_saved: Path | None = None):
        self.folder, self.keep, self.static = folder, keep, static
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.tmp"):  # a write that a kill interrupted
            stale.unlink(missing_ok=True)
        self.periodic: deque[Path] = deque(sorted(folder.glob("step_*.pt")))
        self.last_saved = last_saved  # the newest whole checkpoint: named when a run fails

    def save(self, name: str, state: RunState, wall_seconds: float) -> Path:
        """``name``: 'best', 'final' or 'step_<env steps>'; ``wall_seconds``: the run's wall time so far."""
        progress = dataclasses.replace(state.progress, wall_seconds=wall_seconds)
        payload = {
            "model": state.model,
            "optimizers": state.optimizers,
            "rng": state.rng,
            "meta": {**self.static, "progress": dataclasses.asdict(progress), "kind": name.split("_")[0]},
        }
        path = save_checkpoint(self.folder / f"{name}.pt", payload)
        if name.startswith("step_"):
            self.periodic.append(path)
            while len(self.periodic) > self.keep:
                self.periodic.popleft().unlink(missing_ok=True)
        if not name.startswith("best"):
            atomic_write(self.folder / "latest", lambda f: f.write(path.name.encode()))
        self.last_saved = path
        return path

    def save_periodic(self, state: RunState, wall_seconds: float) -> Path:
        return self.save(f"step_{state.progress.env_steps:09d}", state, wall_seconds)
