"""The torch device a run uses ('cpu', 'cuda' or 'auto') and its CPU thread count."""

from __future__ import annotations

import torch

from acx.errors import ConfigError


def resolve_device(name: str = "auto", threads: int | None = None) -> torch.device:
    """The device named by ``conf/device/*.yaml``; ``threads`` caps torch's CPU intra-op threads."""
    if threads:
        torch.set_num_threads(int(threads))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for, but PyTorch sees no CUDA GPU here; use device=cpu or device=auto")
    return torch.device(name)
