"""Builders: what the config names, made into objects. Training (``acx.run.train``) and replay
(``acx.run.replay``) both build from here; nothing here imports either of them.

Every builder trusts a config that ``acx.config`` has validated and does not check it again.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from acx.algo.networks import ActorCritic, DictLayout
from acx.algo.normalize import ObsNormalizer, RewardNormalizer
from acx.algo.update import Learner
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
        shape, only = tuple(factory.observation_space.shape or ()), None
        if isinstance(factory.observation_space, gym.spaces.Dict):  # the packed vector's Box keys only
            layout = DictLayout(factory.observation_space)
            shape, only = (layout.size,), torch.from_numpy(layout.normalized())
        clip, epsilon = normalize.get("clip_obs", 10.0), normalize.get("epsilon", 1e-8)
        net.obs_norm = ObsNormalizer(shape, clip, epsilon, only=only)
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


def member_hyper(cfg: Mapping[str, Any], groups: Sequence[str]) -> dict[str, float]:
    """A member's hyperparameters as the learner takes them: the ones that may differ between the members
    of a cohort, and each optimizer group's lr (``lr_all``, or ``lr_actor`` and ``lr_critic``)."""
    algo = cfg.algo
    hyper = {
        "gamma": float(algo.gamma),
        "reward_scale": float(algo.reward_scale),
        "max_grad_norm": float(algo.max_grad_norm) if algo.max_grad_norm else float("inf"),
        "ent_coef": float(algo.loss.get("ent_coef", 0.0)),
        "vf_coef": float(algo.loss.get("vf_coef", 0.5)),
    }
    if algo.advantage.get("gae_lambda") is not None:
        hyper["gae_lambda"] = float(algo.advantage.gae_lambda)
    for group in groups:
        hyper[f"lr_{group}"] = float(cfg.optimizer.lr if group == "all" else cfg.optimizer[group].lr)
    return hyper


def optimizer_classes(optimizer_cfg: Mapping[str, Any]) -> dict[str, Callable[..., Any]]:
    """``conf/optimizer``: one optimizer over all parameters (a ``_target_`` at the top: group 'all'),
    or separate 'actor' and 'critic' optimizers (seed 001), each its class with its settings bound."""
    if "_target_" in optimizer_cfg:
        return {"all": instantiate(optimizer_cfg)}
    return {group: instantiate(optimizer_cfg[group]) for group in ("actor", "critic")}


def build_learner(
    cfgs: Sequence[Mapping[str, Any]], nets: Sequence[ActorCritic], generators: Sequence[torch.Generator]
) -> Learner:
    """The learner of a cohort whose members have the configs ``cfgs`` (one group: the first one's
    variant, loss and optimizer kind), networks ``nets`` and sampling generators ``generators``."""
    cfg = cfgs[0]
    algo, classes = cfg.algo, optimizer_classes(cfg.optimizer)
    return Learner(
        nets, classes, instantiate(algo.loss), build_estimator(algo.advantage),
        [member_hyper(c, list(classes)) for c in cfgs], generators,
        algo.get("epochs", 1), algo.get("minibatches", 1), algo.get("target_kl"),
        instantiate(cfg.lr_schedule) if cfg.get("lr_schedule") else None,
    )  # fmt: skip


def build_estimator(advantage_cfg: Mapping[str, Any]) -> Callable:
    """The return/advantage estimator ``algo.advantage`` names, as a plain ``functools.partial``.

    Hydra returns its own partial subclass, which re-runs Hydra's target policy on every call (~0.1 ms,
    ~6% of a CartPole update in a py-spy profile); the target was authorised when it was
    instantiated, and the loop only passes it tensors."""
    fn = instantiate(advantage_cfg)
    if isinstance(fn, functools.partial):
        return functools.partial(fn.func, *fn.args, **fn.keywords)
    return fn
