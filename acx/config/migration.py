"""Configs saved before the package layout: their ``_target_`` paths, named as they are now."""

from __future__ import annotations

from typing import Any

# the modules that moved into acx/algo, acx/envs and acx/run: the configs in older checkpoints and run
# folders name their builders by the old paths
MOVED_TARGETS = {
    **{f"acx.{m}.": f"acx.algo.{m}." for m in ("networks", "normalize", "returns", "losses", "optim", "update")},
    "acx.envs.": "acx.envs.factory.",
    "acx.atari.": "acx.envs.atari.",
    **{f"acx.{m}.": f"acx.run.{m}." for m in ("device", "stopping", "loggers")},
}


def upgrade_target(target: str) -> str:
    """A ``_target_`` of before the package layout, as it is named now (any other: unchanged)."""
    for old, new in MOVED_TARGETS.items():
        if target.startswith(old) and target.count(".") == old.count("."):  # acx.envs.X, not acx.envs.factory.X
            return new + target[len(old) :]
    return target


def upgrade_targets(node: Any) -> Any:
    """A saved config (plain dicts and lists) with every ``_target_`` named as it is now."""
    if isinstance(node, dict):
        return {k: upgrade_target(v) if k == "_target_" and isinstance(v, str) else upgrade_targets(v)
                for k, v in node.items()}  # fmt: skip
    if isinstance(node, list):
        return [upgrade_targets(v) for v in node]
    return node
