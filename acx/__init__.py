"""acx: config-driven actor-critic experiments (Hydra + PyTorch + Gymnasium)."""

import re

from omegaconf import OmegaConf

__version__ = "0.1.0"

# ${slug:ALE/Pong-v5} -> ALE-Pong-v5: env ids made safe for run-directory names
OmegaConf.register_new_resolver("slug", lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "-", str(s)), replace=True)
