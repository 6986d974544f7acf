"""Config validation before anything starts: each mistake is one line naming the key and the
allowed range. The env factory is built here (a probe env is made and closed) because some checks
need the env's spaces; no training env, logger or checkpoint exists yet."""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
from hydra.utils import instantiate
from omegaconf import DictConfig

from acx.networks import GaussianHead


class ConfigError(ValueError):
    """A config value outside what acx can run."""


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _number(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, DictConfig) else None
    return node


def _gaussian_defaults() -> dict[str, Any]:
    params = inspect.signature(GaussianHead.__init__).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def validate_train_config(cfg: DictConfig):
    """Check a composed train config; return the env factory it names (spaces known)."""
    total = _number(cfg, "total_steps")
    _require(isinstance(total, int) and total > 0, "total_steps", f"must be a positive integer, got {total!r}")
    algo = cfg.algo
    gamma = algo.gamma
    _require(isinstance(gamma, (int, float)) and 0 < gamma <= 1, "algo.gamma", f"must be in (0, 1], got {gamma!r}")
    num_envs = algo.num_envs
    _require(isinstance(num_envs, int) and num_envs >= 1, "algo.num_envs", f"must be an integer >= 1, got {num_envs!r}")
    n_steps = algo.n_steps
    _require(
        n_steps is None or (isinstance(n_steps, int) and n_steps >= 1),
        "algo.n_steps",
        f"must be an integer >= 1 (or null: until the episode ends), got {n_steps!r}",
    )
    _require(
        n_steps is not None or num_envs == 1,
        "algo.num_envs",
        f"must be 1 when algo.n_steps is null (whole episodes from one env), got {num_envs}",
    )
    scale = algo.get("reward_scale", 1.0)
    _require(isinstance(scale, (int, float)) and scale > 0, "algo.reward_scale", f"must be > 0, got {scale!r}")
    clip = algo.max_grad_norm
    _require(clip is None or clip > 0, "algo.max_grad_norm", f"must be > 0 or null (no clipping), got {clip!r}")
    lam = algo.advantage.get("gae_lambda")
    _require(lam is None or 0 <= lam <= 1, "algo.advantage.gae_lambda", f"must be in [0, 1], got {lam!r}")
    for coef in ("vf_coef", "ent_coef"):
        value = algo.loss.get(coef)
        _require(value is None or value >= 0, f"algo.loss.{coef}", f"must be >= 0, got {value!r}")
    for name, opt in cfg.optimizer.items():
        lr = opt.get("lr")
        _require(isinstance(lr, (int, float)) and lr > 0, f"optimizer.{name}.lr", f"must be > 0, got {lr!r}")
    final = (cfg.get("lr_schedule") or {}).get("final_fraction")
    _require(
        final is None or (isinstance(final, (int, float)) and 0 <= final <= 1),
        "lr_schedule.final_fraction",
        f"must be in [0, 1], got {final!r}",
    )
    hidden = cfg.network.get("hidden_sizes", [1])
    _require(
        hidden is not None and len(hidden) > 0 and all(isinstance(h, int) and h > 0 for h in hidden),
        "network.hidden_sizes",
        f"must list at least one positive layer size, got {hidden!r}",
    )
    for key in ("every_steps", "episodes"):
        value = cfg.eval[key]
        _require(isinstance(value, int) and value >= 1, f"eval.{key}", f"must be an integer >= 1, got {value!r}")
    every = cfg.checkpoint.every_steps
    _require(isinstance(every, int) and every >= 1, "checkpoint.every_steps", f"must be an integer >= 1, got {every!r}")

    factory = instantiate(cfg.env)  # unknown env ids fail here, with close matches suggested
    check_network_fits_env(cfg.network, factory)
    return factory


def check_network_fits_env(network_cfg: DictConfig, factory) -> None:
    """The network group must suit the env's observation and action spaces."""
    obs_shape = tuple(factory.observation_space.shape or ())
    target = str(network_cfg.get("_target_", ""))
    env = f"{factory.id} observations have shape {obs_shape}"
    if target.endswith("cnn_actor_critic"):
        _require(
            len(obs_shape) == 3, "network", f"network=cnn needs image observations (C, H, W); {env}: use network=mlp"
        )
        _require(
            isinstance(factory.action_space, gym.spaces.Discrete),
            "network",
            f"network=cnn supports discrete actions only; {factory.id} has {factory.action_space}",
        )
    if target.endswith("mlp_actor_critic"):
        _require(len(obs_shape) == 1, "network", f"network=mlp needs flat vector observations; {env}: use network=cnn")
    gaussian = network_cfg.get("gaussian") or {}
    if not isinstance(factory.action_space, gym.spaces.Box):
        defaults = _gaussian_defaults()
        changed = sorted(k for k, v in gaussian.items() if k in defaults and _differs(v, defaults[k]))
        _require(
            not changed,
            f"network.gaussian.{changed[0] if changed else ''}",
            f"applies to continuous (Box) action spaces only; {factory.id} has {factory.action_space}",
        )


def _differs(value: Any, default: Any) -> bool:
    if isinstance(default, (tuple, list)):
        return [float(x) for x in value] != [float(x) for x in default]
    return value != default
