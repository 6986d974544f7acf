"""Builders: what the config names, made into objects. Training (``acx.run.train``) and replay
(``acx.run.replay``) both build from here; nothing here imports either of them.

Every builder trusts a config that ``acx.config`` has validated and does not check it again.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from acx.algo.networks import ActorCritic
from acx.algo.normalize import ObsNormalizer, RewardNormalizer
from acx.algo.optim import Optimizer
from acx.config import upgrade_targets
from acx.envs.factory import add_import_path
from acx.run.checkpoint import check_fits_env, load_weights


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_env_factory(env_cfg: Mapping[str, Any]):
    """The env factory that ``conf/env/*.yaml`` describes (its spaces are known once built); its
    ``wrappers`` are given to it as configs, each built around an env later."""
    return instantiate(env_cfg, _recursive_=False)


def build_network(
    network_cfg: Mapping[str, Any], factory, device: torch.device, normalize: Mapping[str, Any] | None = None
) -> ActorCritic:
    """The network ``conf/network/*.yaml`` describes, for the factory's spaces, on ``device``, with the
    running statistics that ``normalize`` switches on (``acx.algo.normalize``) among its buffers."""
    net = instantiate(network_cfg, observation_space=factory.observation_space, action_space=factory.action_space)
    if normalize and normalize.get("obs"):
        shape = tuple(factory.observation_space.shape)
        net.obs_norm = ObsNormalizer(shape, normalize.get("clip_obs", 10.0), normalize.get("epsilon", 1e-8))
    if normalize and normalize.get("reward"):
        net.reward_norm = RewardNormalizer(normalize.get("clip_reward", 10.0), normalize.get("epsilon", 1e-8))
    return net.to(device)


def build_from_checkpoint(ckpt: dict[str, Any], device: torch.device, env_id: str | None = None):
    """The env factory and the network with its weights, from a checkpoint's own config alone
    (``env_id``: another env with the same spaces)."""
    run_cfg = OmegaConf.create(upgrade_targets(ckpt["meta"]["config"]))  # a run saved before acx/algo, acx/run
    if env_id:
        run_cfg.env.id = env_id
    add_import_path(ckpt["meta"].get("env_module_path"))  # where a user's env module was imported from
    factory = build_env_factory(run_cfg.env)
    check_fits_env(ckpt, factory)
    net = build_network(run_cfg.network, factory, device, run_cfg.get("normalize"))
    return factory, load_weights(net, ckpt)


def build_optimizers(optimizer_cfg: Mapping[str, Any], net: ActorCritic) -> dict[str, Optimizer]:
    """``conf/optimizer``: one optimizer over all parameters (a ``_target_`` at the top, saved as 'all'),
    or separate 'actor' and 'critic' optimizers (seed 001)."""
    groups = net.parameter_groups()
    if "_target_" in optimizer_cfg:
        return {"all": instantiate(optimizer_cfg)(groups["all"])}
    return {name: instantiate(optimizer_cfg[name])(groups[name]) for name in ("actor", "critic")}


def build_estimator(advantage_cfg: Mapping[str, Any]) -> Callable:
    """The return/advantage estimator ``algo.advantage`` names, as a plain ``functools.partial``.

    Hydra returns its own partial subclass, which re-runs Hydra's target policy on every call (~0.1 ms,
    ~6% of a CartPole update in a py-spy profile); the target was authorised when it was
    instantiated, and the loop only passes it tensors."""
    fn = instantiate(advantage_cfg)
    if isinstance(fn, functools.partial):
        return functools.partial(fn.func, *fn.args, **fn.keywords)
    return fn
