"""The checks a run makes before it starts: its composed config against the schema, and the network
against the spaces of the built env (which only the env factory knows)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from acx.config.messages import validate
from acx.config.schema import CnnNetwork, Gaussian, LstmNetwork, MlpNetwork, TrainConfig
from acx.errors import ConfigError


def validate_train_config(cfg: DictConfig) -> TrainConfig:
    """A composed train config checked against ``TrainConfig`` (no env is built here)."""
    return validate(TrainConfig, cfg)


def check_network_fits(network: Any, factory: Any) -> None:
    """The network config must suit the env's spaces (which only the built env factory knows)."""
    import gymnasium as gym

    obs, act = factory.observation_space, factory.action_space  # spaces acx can read (acx.envs.factory.check_spaces)
    if isinstance(obs, gym.spaces.Dict):  # network=mlp and lstm give each key an encoder of its own (DictEncoder)
        if isinstance(network, CnnNetwork):
            raise ConfigError(f"network: {factory.id} has Dict observations: use network=mlp (an encoder per key)")
    # a Dict's keys reach the MLP as one flat vector, from the encoders
    shape = (1,) if isinstance(obs, gym.spaces.Dict) else tuple(obs.shape or ())
    seen = f"{factory.id} observations have shape {shape}"
    if isinstance(network, CnnNetwork):
        if len(shape) != 3:
            raise ConfigError(f"network: network=cnn needs image observations (C, H, W); {seen}: use network=mlp")
        if isinstance(act, gym.spaces.Box):
            raise ConfigError(f"network: network=cnn supports discrete actions only; {factory.id} has {act}")
    if isinstance(network, (MlpNetwork, LstmNetwork)):
        if len(shape) != 1:
            if isinstance(network, LstmNetwork):
                raise ConfigError(f"network: network={network.cell} reads flat vector or Dict observations; {seen}")
            raise ConfigError(f"network: network=mlp needs flat vector observations; {seen}: use network=cnn")
        if not isinstance(act, gym.spaces.Box):
            default = Gaussian()
            changed = sorted(k for k in Gaussian.model_fields if getattr(network.gaussian, k) != getattr(default, k))
            if changed:
                raise ConfigError(
                    f"network.gaussian.{changed[0]}: applies to continuous (Box) action spaces only; "
                    f"{factory.id} has {act}"
                )
