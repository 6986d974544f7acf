"""acx: config-driven actor-critic experiments (Hydra + PyTorch + Gymnasium)."""

import importlib
import re

from omegaconf import OmegaConf

__version__ = "0.1.0"

# ${slug:ALE/Pong-v5} -> ALE-Pong-v5: env ids made safe for run-directory names
OmegaConf.register_new_resolver("slug", lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "-", str(s)), replace=True)
# ${ale_id:space_invaders} -> ALE/SpaceInvaders-v5: an Atari game's Gymnasium id (conf/env/atari.yaml);
# ale-py is imported only when an Atari config is resolved
OmegaConf.register_new_resolver("ale_id", lambda game: importlib.import_module("acx.atari").id_from_game(game))
