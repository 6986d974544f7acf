"""acx: config-driven actor-critic experiments (Hydra + PyTorch + Gymnasium).

The Python API (``acx.train``, ``acx.load``, ``acx.AcxError``) lives in ``acx.api`` and is
imported on first use, so that ``import acx`` (and the ``acx`` command) does not pay for torch up front.
"""

import importlib
import re
from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (dynamic version), acx --version prints it

# not "sweep": acx.sweep is the package of the sweep machinery (acx.api.sweep is acx.train(..., multirun=True))
_API = {"train", "load", "Run", "Policy"}


def __getattr__(name: str):
    if name in _API:
        from acx import api

        return getattr(api, name)
    if name == "AcxError":
        from acx.errors import AcxError

        return AcxError
    raise AttributeError(f"module 'acx' has no attribute {name!r}")


def sweep_name() -> str | None:
    """The multirun sweep directory's name inside a ``-m`` job, else None (names W&B's run group)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).name


# ${slug:ALE/Pong-v5} -> ALE-Pong-v5: env ids made safe for run-directory names
OmegaConf.register_new_resolver("slug", lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "-", str(s)), replace=True)
OmegaConf.register_new_resolver("sweep_name", sweep_name, replace=True)
# ${seed_subdir:${hydra.sweeper.seed_index},${seed}} -> "" or "/seed_3": an Optuna trial's folder per seed,
# when hydra.sweeper.seeds_per_trial > 1 (the sweeper sets seed_index only then)
OmegaConf.register_new_resolver("seed_subdir", lambda i, seed: "" if i is None else f"/seed_{seed}", replace=True)
# ${ale_id:space_invaders} -> ALE/SpaceInvaders-v5: an Atari game's Gymnasium id (conf/env/atari.yaml);
# ale-py is imported only when an Atari config is resolved
OmegaConf.register_new_resolver("ale_id", lambda game: importlib.import_module("acx.envs.atari").id_from_game(game))
