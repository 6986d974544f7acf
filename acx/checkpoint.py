"""Checkpoints: atomic writes, and loading that cannot execute code.

A checkpoint is a ``torch.save`` of a dict holding only tensors, numbers, strings and nested
dicts/lists of those; metadata that is not a tensor (config, spaces, counters, NumPy RNG state) is a
JSON or YAML string. It is read with ``torch.load(weights_only=True)``, whose unpickler refuses any
other object, so a crafted file cannot run code on load.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "acx-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A path that is not a loadable acx checkpoint."""


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
