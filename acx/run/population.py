"""Population training: many runs of one configuration shape trained together in one process.

P members (different seeds, and scalar hyperparameters that may differ: ``MEMBER_KEYS``) share one
stacked network: every weight gets a leading member dim, and each Linear layer is one batched matmul
over the members. Members share no parameters, so one backward pass of the sum of their losses gives
each member exactly its own gradient; gradient clipping and the optimizer step (``acx.algo.optim`` with one
lr per member) are per member. Everything else a member has of its own, as a single run does: its
envs (seeded as ``acx train seed=s`` seeds them), its initial weights (those of ``acx train seed=s``),
a torch generator for its action sampling (continuing the stream a single run would draw from), its
evaluations, stop rule, checkpoints, metrics and loggers, in its own job folder. Its checkpoints are
single-run checkpoints: ``acx eval`` replays them and ``acx train resume=`` continues one alone.

A member that solves, spends its budget, goes non-finite or is pruned leaves the population: its rows
are dropped from the stacked weights, the optimizer state and the envs, so it costs nothing more.

The loop is ``acx.run.train``'s: collect (``RolloutCollector`` over every member's envs at once) ->
estimate (the variant's estimator, with per-env gamma) -> update -> record -> maybe evaluate ->
maybe checkpoint -> maybe stop, per member.

``hydra/launcher=population`` (``hydra_plugins/acx_population_launcher``) groups a sweep's jobs by
``group_key`` and calls ``train_population`` for each group.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm

from acx.algo.losses import masked_mean
from acx.algo.networks import ActorCritic, CategoricalHead, GaussianHead
from acx.algo.normalize import RunningMeanStd
from acx.algo.update import explained_variance, masked_var
from acx.config import validate_train_config
from acx.errors import AcxError, NonFiniteError
from acx.run.build import build_estimator, build_network, build_optimizers, seed_everything
from acx.run.checkpoint import Progress, RunState, rng_state
from acx.run.evaluate import evaluate_vector
from acx.run.record import Every
from acx.run.rollout import Rollout, RolloutCollector
from acx.run.signals import Interrupted, StopSignals
from acx.run.train import Run, open_records, prepare, write_failure

# scalar keys whose values may differ between the members of one population
MEMBER_KEYS = (
    "seed",
    "algo.gamma",
    "algo.reward_scale",
    "algo.max_grad_norm",
    "algo.advantage.gae_lambda",
    "algo.loss.ent_coef",
    "algo.loss.vf_coef",
    "optimizer.lr",
    "optimizer.actor.lr",
    "optimizer.critic.lr",
)
# each member's own bookkeeping: names, folders, budget, cadences, stop rule, loggers
OWN_KEYS = (
    "run_name",
    "paths",
    "logger",
    "checkpoint",
    "stop",
    "log",
    "progress",
    "total_steps",
    "optimized_metric",
    "task_name",
    "eval.every_steps",
    "eval.confirm_episodes",
    "eval.video_every_steps",
)


class Unsupported(AcxError):
    """A job that cannot join a population (it trains on its own)."""


def _drop(node: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(leaf, None)


def group_key(cfg: DictConfig | dict) -> str:
    """What must be equal for jobs to train as one population: the resolved config without the
    member and bookkeeping keys (env, network, num_envs, n_steps, variant, optimizer kind, device, ...)."""
    node = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else copy.deepcopy(cfg)
    for key in (*MEMBER_KEYS, *OWN_KEYS):
        _drop(node, key)
    return json.dumps(node, sort_keys=True, default=str)


def why_alone(cfg: DictConfig) -> str | None:
    """Why a job cannot join a population (None: it can)."""
    from hydra.utils import get_class

    if cfg.get("resume"):
        return "it resumes a run"
    if cfg.algo.n_steps is None:
        return "the episodic variant collects until each episode ends, which members do at different steps"
    if cfg.algo.get("epochs", 1) != 1 or cfg.algo.get("minibatches", 1) != 1:
        return "PPO's minibatch epochs are not stacked yet (algo.epochs x algo.minibatches is not 1 x 1)"
    try:  # a loss that compares with the policy at collection (PPO's ratio) needs its log-probs stored
        loss = get_class(str(cfg.algo.loss.get("_target_", "")))
    except Exception:  # a target that does not import: validation reports it, not this check
        loss = None
    if getattr(loss, "needs_old_log_probs", False):
        return "PPO's clipped loss needs the collecting policy's log-probs, which populations do not store yet"
    if OmegaConf.select(cfg, "hydra.job.chdir"):
        return "hydra.job.chdir=true: members share one working directory"
    target = str(cfg.network.get("_target_", ""))
    if not target.endswith("mlp_actor_critic"):
        return f"network {target.rsplit('.', 1)[-1]}: populations stack MLP networks only (not yet CNNs)"
    return None


# --- the stacked network ---------------------------------------------------------------------------


class StackedLinear(nn.Module):
    """P Linear layers as one: weight (P, out, in), bias (P, out); (P, B, in) -> (P, B, out)."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        if layers[0].bias is not None:
            self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class StackedLayerNorm(nn.Module):
    """P LayerNorms over the last dim, each with its own affine weight and bias (P, size)."""

    def __init__(self, norms: Sequence[nn.LayerNorm]):
        super().__init__()
        self.normalized_shape, self.eps = tuple(norms[0].normalized_shape), norms[0].eps
        self.weight = nn.Parameter(torch.stack([n.weight.detach() for n in norms]))
        self.bias = nn.Parameter(torch.stack([n.bias.detach() for n in norms]))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, eps=self.eps) * self.weight.unsqueeze(1) + self.bias.unsqueeze(1)


class StackedCategoricalHead(CategoricalHead):
    """CategoricalHead over (P, B, A) logits; member k samples from its own generator."""

    generators: list[torch.Generator]

    def uniform(self, like: Tensor) -> Tensor:
        u = torch.empty_like(like)
        for row, generator in zip(u, self.generators, strict=True):  # what rand_like draws in a single run
            row.uniform_(generator=generator)
        return u


class StackedGaussianHead(GaussianHead):
    """GaussianHead over (P, B, D); log_std_param is (P, D); member k samples from its own generator."""

    generators: list[torch.Generator]

    def shared_log_std(self, mean: Tensor) -> Tensor:
        return self.log_std_param.unsqueeze(-2).expand_as(mean)  # member k's (D,) for each of its B rows

    def normal(self, like: Tensor) -> Tensor:
        noise = torch.empty_like(like)
        for row, generator in zip(noise, self.generators, strict=True):  # what randn_like draws in a single run
            row.normal_(generator=generator)
        return noise


def stack_networks(nets: Sequence[ActorCritic], generators: list[torch.Generator]) -> ActorCritic:
    """One ActorCritic over (P, B, ...) inputs whose parameters are the members' stacked along dim 0,
    under the members' own parameter names (``stacked.weight[k]`` is member k's ``weight``)."""
    stacked = copy.deepcopy(nets[0])
    for name, module in list(stacked.named_modules()):
        own = list(module.parameters(recurse=False))
        if isinstance(module, (nn.Linear, nn.LayerNorm)):
            layers = [net.get_submodule(name) for net in nets]
            replacement = StackedLinear(layers) if isinstance(module, nn.Linear) else StackedLayerNorm(layers)
            parent, _, child = name.rpartition(".")
            stacked.get_submodule(parent)._modules[child] = replacement
        elif isinstance(module, RunningMeanStd):  # normalisation statistics: one row per member
            stats = RunningMeanStd(tuple(module.mean.shape), members=len(nets))
            for key in ("mean", "var", "count"):
                getattr(stats, key).copy_(torch.stack([getattr(n.get_submodule(name), key) for n in nets]))
            parent, _, child = name.rpartition(".")
            stacked.get_submodule(parent)._modules[child] = stats
        elif type(module) is CategoricalHead:
            module.__class__ = StackedCategoricalHead  # the same module, with a stacked sampler
        elif type(module) is GaussianHead:
            module.__class__ = StackedGaussianHead
            if module.log_std_param is not None:
                module.log_std_param = nn.Parameter(torch.stack([n.get_submodule(name).log_std_param for n in nets]))
        elif own:
            raise Unsupported(f"network layer {type(module).__name__}: populations stack Linear and LayerNorm layers")
    set_generators(stacked, generators)
    return stacked


def select_statistics(net: nn.Module, index: Tensor) -> None:
    """The members at ``index`` of every stacked normalisation statistic of ``net``."""
    for module in net.modules():
        if isinstance(module, RunningMeanStd):
            module.select(index)


class FlatPopulation(nn.Module):
    """The stacked network as the collector and the evaluator call a single run's: (P * N, ...)
    observations in (member k's env i at row k * N + i), flat actions and values out."""

    def __init__(self, stacked: ActorCritic, members: int):
        super().__init__()
        self.stacked, self.members = stacked, members

    def _split(self, obs: Tensor) -> Tensor:
        return obs.view(self.members, -1, *obs.shape[1:])

    def act(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        action, value = self.stacked.act(self._split(obs))
        return action.flatten(0, 1), value.flatten(0, 1)

    def value(self, obs: Tensor) -> Tensor:
        return self.stacked.value(self._split(obs)).flatten(0, 1)

    def action(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        return self.stacked.action(self._split(obs), deterministic).flatten(0, 1)


def set_generators(net: nn.Module, generators: list[torch.Generator] | None) -> None:
    """The sampling generators of a stacked network's policy head, one per member row."""
    for module in net.modules():
        if isinstance(module, (StackedCategoricalHead, StackedGaussianHead)):
            module.generators = generators


class MemberEnvs:
    """Several members' vector envs stepped as one (Gymnasium's vector API over their concatenation).

    Members' CartPole envs (Gymnasium's NumPy ``CartPoleVectorEnv``) are joined into one, so a step of
    all P x N envs is one NumPy call; each member's resets still draw from its own env's generator,
    exactly what its own env would draw (``MemberDraws``), so a member sees the episodes of
    ``acx train seed=s``. ``detach()`` hands the joined state back to the members' envs."""

    LEARNING_KEYS = ("learning_reward", "learning_terminated")

    def __init__(self, envs: Sequence[Any]):
        self.envs = list(envs)
        sizes = [e.num_envs for e in self.envs]
        self.bounds = np.cumsum([0, *sizes])
        self.num_envs = int(self.bounds[-1])
        self.single_observation_space = self.envs[0].single_observation_space
        self.single_action_space = self.envs[0].single_action_space
        self.joined = self._join() if all(type(e) is CartPoleVectorEnv for e in self.envs) else None

    def _join(self) -> CartPoleVectorEnv:
        first = self.envs[0]
        joined = CartPoleVectorEnv(
            num_envs=self.num_envs,
            max_episode_steps=first.max_episode_steps,
            sutton_barto_reward=first._sutton_barto_reward,
        )
        for name in (
            "gravity",
            "masscart",
            "masspole",
            "total_mass",
            "length",
            "polemass_length",
            "force_mag",
            "tau",
            "kinematics_integrator",
            "theta_threshold_radians",
            "x_threshold",
            "low",
            "high",
        ):
            setattr(joined, name, getattr(first, name))  # fmt: skip
        self._pull(joined)
        joined._np_random = MemberDraws(joined, [e.np_random for e in self.envs], self.bounds)
        return joined

    def _pull(self, joined: CartPoleVectorEnv) -> None:
        joined.state = np.concatenate([e.state for e in self.envs], axis=1)
        joined.steps = np.concatenate([e.steps for e in self.envs])
        joined.prev_done = np.concatenate([e.prev_done for e in self.envs])

    def detach(self) -> None:
        """Each member's env takes back its part of the joined envs' state (before they are regrouped)."""
        if self.joined is not None:
            for e, a, b in zip(self.envs, self.bounds[:-1], self.bounds[1:], strict=True):
                e.state = self.joined.state[:, a:b].copy()
                e.steps, e.prev_done = self.joined.steps[a:b].copy(), self.joined.prev_done[a:b].copy()

    def reset(self, seed: int | Sequence[int] | None = None):
        seeds = seed if isinstance(seed, (list, tuple)) else [seed] * len(self.envs)
        obs = np.concatenate([e.reset(seed=s)[0] for e, s in zip(self.envs, seeds, strict=True)])
        if self.joined is not None:
            self._pull(self.joined)
            self.joined._np_random = MemberDraws(self.joined, [e.np_random for e in self.envs], self.bounds)
        return obs, {}

    def step(self, actions: np.ndarray):
        if self.joined is not None:
            return self.joined.step(actions)
        out = [e.step(actions[a:b]) for e, a, b in zip(self.envs, self.bounds[:-1], self.bounds[1:], strict=True)]
        obs, reward, terminated, truncated = (np.concatenate([o[i] for o in out]) for i in range(4))
        info = {}
        for key in self.LEARNING_KEYS:
            if key in out[0][4]:
                info[key] = np.concatenate([o[4][key] for o in out])
        return obs, reward, terminated, truncated, info

    def close(self) -> None:  # each member's envs are closed by the member's own resources
        pass


class MemberDraws:
    """The ``np_random`` of joined CartPole envs: the start states of the envs that reset draw from
    their members' generators, member by member, as each member's own env draws them."""

    def __init__(self, joined: CartPoleVectorEnv, generators: list[np.random.Generator], bounds: np.ndarray):
        self.joined, self.generators, self.bounds = joined, generators, bounds

    def uniform(self, low: float, high: float, size: tuple[int, int]) -> np.ndarray:
        resetting = self.joined.prev_done
        parts = []
        for generator, a, b in zip(self.generators, self.bounds[:-1], self.bounds[1:], strict=True):
            n = int(resetting[a:b].sum())
            if n:
                parts.append(generator.uniform(low=low, high=high, size=(size[0], n)))
        return np.concatenate(parts, axis=1) if parts else np.empty(size)


# --- per-member clipping and statistics -----------------------------------------------------------


def _column(values: Tensor, like: Tensor) -> Tensor:
    """A (P,) tensor shaped (P, 1, ..., 1) to scale the stacked tensor ``like`` member by member."""
    return values.view(-1, *[1] * (like.dim() - 1))


def member_norms(grads: list[Tensor]) -> Tensor:
    """Each member's gradient norm over all its parameters, (P,): clip_grad_norm_'s total norm, per member."""
    per_param = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
    return torch.linalg.vector_norm(per_param, dim=0)


def clip_per_member(grads: list[Tensor], max_norms: Tensor) -> Tensor:
    """Scale member k's gradients so their norm is at most ``max_norms[k]`` (inf: no clipping), as
    clip_grad_norm_ does for one model; returns the norms before clipping. One member never changes another."""
    norms = member_norms(grads)
    coef = (max_norms / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [_column(coef, g) for g in grads])
    return norms


def member_gradient_stats(grads: list[Tensor]) -> dict[str, Tensor]:
    """acx.algo.update.gradient_stats per member: RMS, max |g| and variance over each member's entries."""
    flat = torch.cat([g.detach().flatten(1) for g in grads], dim=1)
    return {
        "train/grad_l2": flat.square().mean(1).sqrt(),
        "train/grad_max": flat.abs().amax(1),
        "train/grad_var": flat.var(dim=1, correction=0),
    }


# --- the members and the population ---------------------------------------------------------------


@dataclasses.dataclass
class Member:
    """One job of the population: its config, its run (records, state) and how it ended."""

    index: int  # its place in the list given to train_population
    cfg: DictConfig
    run: Run
    envs: Any  # its training vector env
    generator: torch.Generator  # its action sampling stream
    resources: contextlib.ExitStack  # its envs, loggers and evaluator: closed when it leaves
    on_eval: Callable[[int, float], None] | None = None
    evals: Every | None = None
    saves: Every | None = None
    solved: bool = False

    @property
    def progress(self) -> Progress:
        return self.run.state.progress


def member_rng(member: Member) -> Callable[[], dict[str, Any]]:
    """The RNG states a member's checkpoint saves: its own torch generator (on CPU; a checkpoint holds
    no CUDA RNG state, as a single run's does not), the process's others."""
    if member.generator.device.type != "cpu":
        return rng_state
    return lambda: {**rng_state(), "torch": member.generator.get_state()}


class Population:
    """The stacked learner: network, optimizers, per-member hyperparameters, the collector over every
    member's envs; ``keep`` drops the members that left."""

    def __init__(self, members: list[Member], cfg: DictConfig, factory, device: torch.device):
        self.members, self.factory, self.device = members, factory, device
        self.num_envs = int(cfg.algo.num_envs)
        self.net = stack_networks([m.run.state.net for m in members], [m.generator for m in members])
        self.optimizers = build_optimizers(cfg.optimizer, self.net)
        for name, opt in self.optimizers.items():  # the lr of each member's own optimizer, in its row
            lrs = [m.run.state.optimizers[name].param_groups[0]["lr"] for m in members]
            opt.param_groups[0]["lr"], opt.param_groups[0]["initial_lr"] = list(lrs), list(lrs)
        self.params = {name: opt.param_groups[0]["params"] for name, opt in self.optimizers.items()}
        self.loss_fn = instantiate(cfg.algo.loss)
        self.estimator = build_estimator(cfg.algo.advantage)
        self.lr_schedule = instantiate(cfg.lr_schedule) if cfg.get("lr_schedule") else None
        self.scalars = {  # per member, (P,)
            "gamma": [m.run.cfg.algo.gamma for m in members],
            "reward_scale": [m.run.cfg.algo.reward_scale for m in members],
            "max_grad_norm": [m.run.cfg.algo.max_grad_norm or math.inf for m in members],
            "ent_coef": [float(m.cfg.algo.loss.get("ent_coef", 0.0)) for m in members],
            "vf_coef": [float(m.cfg.algo.loss.get("vf_coef", 0.5)) for m in members],
        }
        if "gae_lambda" in self.estimator.keywords:
            self.scalars["gae_lambda"] = [float(m.cfg.algo.advantage.gae_lambda) for m in members]
        self._tensors()
        self.flat = FlatPopulation(self.net, len(members))
        self.collector = RolloutCollector(
            MemberEnvs([m.envs for m in members]), self.flat, cfg.algo.n_steps, device, factory.env_actions
        )

    def _tensors(self) -> None:
        """The per-member scalars as tensors: (P,) for the loss, (P * N,) per env column for the targets."""
        t = {k: torch.tensor(v, dtype=torch.float32, device=self.device) for k, v in self.scalars.items()}
        self.loss_fn.ent_coef, self.loss_fn.vf_coef, self.max_grad_norm = (
            t["ent_coef"],
            t["vf_coef"],
            t["max_grad_norm"],
        )
        per_env = {k: t[k].repeat_interleave(self.num_envs) for k in ("gamma", "reward_scale", "gae_lambda") if k in t}
        self.gamma, self.reward_scale, self.gae_lambda = (
            per_env["gamma"],
            per_env["reward_scale"],
            per_env.get("gae_lambda"),
        )

    def by_member(self, x: Tensor) -> Tensor:
        """(T, P * N, ...) rollout storage as (P, T * N, ...): each member's batch in its row."""
        steps, members = x.shape[0], len(self.members)
        return x.reshape(steps, members, self.num_envs, *x.shape[2:]).transpose(0, 1).flatten(1, 2)

    def estimate(self, rollout: Rollout) -> tuple[Tensor, Tensor]:
        rewards = rollout.rewards
        if self.net.reward_norm is not None:  # each member's rewards by its own running return std
            rewards = self.net.reward_norm(rewards, rollout.done, rollout.valid, self.gamma)
        rewards = rewards * self.reward_scale
        extra = {"gae_lambda": self.gae_lambda} if self.gae_lambda is not None else {}
        return self.estimator(
            rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done, gamma=self.gamma, **extra
        )

    def scale_lr(self) -> None:
        """Each member's lr as ``lr_schedule`` gives it for that member's fraction of its budget."""
        if self.lr_schedule is None:
            return
        for opt in self.optimizers.values():
            group = opt.param_groups[0]
            group["lr"] = [
                lr * self.lr_schedule(m.progress.env_steps / m.run.cfg.total_steps)
                for lr, m in zip(group["initial_lr"], self.members, strict=True)
            ]

    def update(self, rollout: Rollout, advantages: Tensor, returns: Tensor, diagnostics: bool):
        """One update of every member; returns per-member stats (lists) and the members dropped because
        their loss or gradient was not finite, with the message of each (checked before any step)."""
        mask = self.by_member(rollout.valid)
        advantages, returns = self.loss_fn.targets(
            self.by_member(advantages), self.by_member(returns), self.by_member(rollout.values), mask
        )
        obs, actions = self.by_member(rollout.obs), self.by_member(rollout.actions)
        log_probs, entropy, values, std = self.net.evaluate_actions(obs, actions)
        losses = self.loss_fn(log_probs, entropy, values, advantages, returns, mask)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        losses["total"].sum().backward()  # members share no parameter: each gets exactly its own gradient
        grads = {name: [p.grad for p in params if p.grad is not None] for name, params in self.params.items()}
        grad_stats = member_gradient_stats([g for gs in grads.values() for g in gs]) if diagnostics else {}
        norms = {name: clip_per_member(gs, self.max_grad_norm) for name, gs in grads.items()}
        finite = torch.isfinite(torch.stack([losses["total"].detach(), *norms.values()])).all(0).tolist()
        stats: dict[str, Tensor | list[float]] = {
            f"losses/{k}": v.detach() for k, v in losses.items() if k != "entropy_mean"
        }
        stats["train/entropy"] = losses["entropy_mean"]
        if diagnostics:
            m = mask.float()
            stats["train/advantage_mean"] = masked_mean(advantages, m)
            stats["train/value_mean"] = masked_mean(values.detach(), m)
            stats["train/advantage_std"] = masked_var(advantages, m).sqrt()
            stats["train/explained_variance"] = explained_variance(values.detach(), returns, m)
        for name, norm in norms.items():
            suffix = "" if name == "all" else "_" + name
            stats[f"train/grad_norm{suffix}"] = norm
            stats[f"train/lr{suffix}"] = list(self.optimizers[name].param_groups[0]["lr"])
        stats.update(grad_stats)
        if std is not None:
            stats["train/policy_std"] = std.detach().flatten(1).mean(1)
        rows = {k: v.tolist() if isinstance(v, Tensor) else v for k, v in stats.items()}
        per_member = [{k: v[i] for k, v in rows.items()} for i in range(len(self.members))]
        if self.net.obs_norm is not None:  # each member's statistics take in its own envs' observations
            self.net.obs_norm.update(rollout.obs, rollout.valid)
        failed = []
        if not all(finite):
            for i, ok in enumerate(finite):
                if not ok:
                    bad = "loss" if not math.isfinite(rows["losses/total"][i]) else "gradient"
                    terms = ", ".join(
                        f"{k}={rows['losses/' + k][i]:.3g}" for k in ("policy", "value", "entropy", "total")
                    )
                    failed.append((self.members[i], f"non-finite {bad} ({terms})"))
            keep = [i for i, ok in enumerate(finite) if ok]
            per_member = [per_member[i] for i in keep]
            self.keep(keep)  # a NaN/inf never reaches the weights: the member leaves before any step
        if self.members:
            for opt in self.optimizers.values():
                opt.step()
        return per_member, failed

    def keep(self, rows: list[int]) -> None:
        """Go on with the members at ``rows`` only: their rows of every stacked tensor, optimizer
        state, per-member scalar and env; the others stop costing compute."""
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        with torch.no_grad():
            for opt in self.optimizers.values():
                group = opt.param_groups[0]
                for p in group["params"]:
                    p.data = p.data.index_select(0, index)
                    if p.grad is not None:
                        p.grad = p.grad.index_select(0, index)
                    for name, value in opt.state.get(p, {}).items():
                        if name != "step":
                            opt.state[p][name] = value.index_select(0, index)
                group["lr"] = [group["lr"][i] for i in rows]
                group["initial_lr"] = [group["initial_lr"][i] for i in rows]
            select_statistics(self.net, index)
        self.scalars = {k: [v[i] for i in rows] for k, v in self.scalars.items()}
        self.members = [self.members[i] for i in rows]
        set_generators(self.net, [m.generator for m in self.members])
        self._tensors()
        self.flat.members = len(rows)
        self.collector.envs.detach()
        if self.members:
            env_rows = np.concatenate([np.arange(r * self.num_envs, (r + 1) * self.num_envs) for r in rows])
            self.collector.keep_envs(env_rows, MemberEnvs([m.envs for m in self.members]))
            if self.net.reward_norm is not None:
                self.net.reward_norm.keep_columns(torch.as_tensor(env_rows, device=self.device))

    def subset(self, rows: list[int]) -> FlatPopulation:
        """The members at ``rows`` alone, as a copy of their rows of the stacked network (an
        evaluation of the members due for one costs nothing for the others)."""
        set_generators(self.net, None)  # generators are not copied
        try:
            sub = copy.deepcopy(self.net)
        finally:
            set_generators(self.net, [m.generator for m in self.members])
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        with torch.no_grad():
            for p in sub.parameters():
                p.data = p.data.index_select(0, index)
            select_statistics(sub, index)
        set_generators(sub, [self.members[row].generator for row in rows])
        return FlatPopulation(sub, len(rows))

    def episodes(self, rows: list[int], envs: list[Any], seeds: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One episode in each env of ``envs[i]`` (member ``rows[i]``'s), all played at once: the
        returns and lengths of each member's, as ``evaluate_vector`` gives a single run's."""
        joined = MemberEnvs(envs)
        ev = self.members[rows[0]].run.evaluator
        returns, lengths = evaluate_vector(
            self.subset(rows), joined, self.device, self.factory.env_actions, ev.deterministic, seeds
        )
        bounds = zip(joined.bounds[:-1], joined.bounds[1:], strict=True)
        return [(returns[a:b], lengths[a:b]) for a, b in bounds]

    def sync(self, row: int) -> RunState:
        """Member ``row``'s own network and optimizers set to its rows of the stacked ones (before a
        checkpoint or an evaluation that reads them); returns its state."""
        state = self.members[row].run.state
        with torch.no_grad():
            for name, opt in self.optimizers.items():
                own = state.optimizers[name]
                group = opt.param_groups[0]
                own.param_groups[0].update(
                    {k: v for k, v in group.items() if k not in ("params", "lr", "initial_lr")},
                    lr=group["lr"][row],
                    initial_lr=group["initial_lr"][row],
                )
                for stacked, mine in zip(group["params"], own.param_groups[0]["params"], strict=True):
                    mine.copy_(stacked[row])
                    if stacked in opt.state:
                        own.state[mine] = {
                            k: v.clone() if k == "step" else v[row].clone() for k, v in opt.state[stacked].items()
                        }
            for name, stats in self.net.named_modules():  # normalisation statistics: its row
                if isinstance(stats, RunningMeanStd):
                    mine = state.net.get_submodule(name)
                    for key in ("mean", "var", "count"):
                        getattr(mine, key).copy_(getattr(stats, key)[row])
        return state


def open_member(index: int, cfg: DictConfig, on_eval, resources: contextlib.ExitStack, started: float) -> Member:
    """A member's envs, network (the initial weights of ``acx train seed=s``), sampling generator and
    records, built in a single run's order for its seed; what it opens closes when it leaves (or
    with ``resources``)."""
    resources = resources.enter_context(contextlib.ExitStack())
    config = validate_train_config(cfg)
    why = why_alone(cfg)
    if why:
        raise Unsupported(why)
    factory, _ = prepare(cfg, config)
    seed_everything(config.seed)
    device = instantiate(cfg.device)
    envs = factory.make_vector(config.algo.num_envs, seed=config.seed)
    resources.callback(envs.close)
    net = build_network(cfg.network, factory, device, cfg.get("normalize"))
    generator = torch.Generator(device=device)  # where a single run's sampling would start drawing:
    generator.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    state = RunState(net, build_optimizers(cfg.optimizer, net), Progress())
    run = open_records(cfg, config, factory, state, device, resources, started, show_bar=False)
    member = Member(index, cfg, run, envs, generator, resources, on_eval)
    state.rng = member_rng(member)
    member.evals = Every(config.eval.every_steps, 0)
    member.saves = Every(config.checkpoint.every_steps, 0)
    return member


def train_population(
    cfgs: Sequence[DictConfig],
    on_evals: Sequence[Callable[[int, float], None] | None] | None = None,
    position: int = 0,
) -> list[Any]:
    """Train the members ``cfgs`` (resolved train configs of one ``group_key``) as one population;
    each leaves what ``acx.run.train.train`` leaves in its folder. Returns, per member, its summary or
    the exception it ended with (a ConfigError, NonFiniteError, optuna.TrialPruned)."""
    started = time.perf_counter()
    on_evals = list(on_evals) if on_evals is not None else [None] * len(cfgs)
    results: list[Any] = [None] * len(cfgs)
    members: list[Member] = []
    with contextlib.ExitStack() as resources:
        for i, cfg in enumerate(cfgs):
            try:
                members.append(open_member(i, cfg, on_evals[i], resources, started))
            except AcxError as exc:  # this member's input: it alone fails
                results[i] = exc
        if not members:
            return results
        if len({group_key(m.cfg) for m in members}) > 1:
            raise ValueError("train_population: the members' configs differ in more than member keys")
        lead = members[0]
        pop = Population(members, lead.cfg, lead.run.factory, lead.run.evaluator.device)
        signals = resources.enter_context(StopSignals())
        bar = tqdm(
            total=sum(m.run.cfg.total_steps for m in members), unit="step", dynamic_ncols=True,
            disable=not lead.run.cfg.progress, position=position, desc=f"population of {len(members)}",
        )  # fmt: skip
        resources.callback(bar.close)
        for m in members:
            m.run.mark_started()
        try:
            while pop.members:
                step(pop, signals, results)
                training = {id(m) for m in pop.members}  # a member that stopped early counts as its whole budget
                steps = sum(m.progress.env_steps if id(m) in training else m.run.cfg.total_steps for m in members)
                bar.update(steps - bar.n)
                solved = sum(m.solved for m in members)
                bar.set_postfix(training=len(pop.members), solved=solved, refresh=False)
        except OSError as exc:  # a full disk: the members still training stop with the one line
            from acx.run.train import WRITE_FAILURES

            if exc.errno not in WRITE_FAILURES:
                raise
            for m in pop.members:
                results[m.index] = write_failure(exc, m.run, Path(m.run.cfg.paths.output_dir))
    return results


def step(pop: Population, signals: StopSignals, results: list[Any]) -> None:
    """One iteration of the loop for every member still training: collect -> estimate -> update ->
    record -> maybe evaluate -> maybe checkpoint -> maybe stop."""
    lead = pop.members[0].progress
    pop.scale_lr()
    rollout = pop.collector.collect()  # collect
    advantages, returns = pop.estimate(rollout)  # estimate
    diagnostics = any(m.run.window.due(lead.updates + 1) for m in pop.members)
    members = list(pop.members)
    stats, failed = pop.update(rollout, advantages, returns, diagnostics)  # update
    for m, message in failed:
        p = m.progress
        last = m.run.ckpts.last_saved or "none yet"
        error = NonFiniteError(f"{message} at env step {p.env_steps:,}; last good checkpoint: {last}")
        m.run.finish(None, error=str(error))
        results[m.index] = error
        m.resources.close()  # its envs left the population with its update
    valid = rollout.valid.reshape(rollout.valid.shape[0], len(members), pop.num_envs).sum((0, 2)).tolist()
    episodes: list[tuple[list[float], list[int]]] = [([], []) for _ in members]
    for env, ret, length in zip(rollout.episode_envs, rollout.episode_returns, rollout.episode_lengths, strict=True):
        episodes[env // pop.num_envs][0].append(ret)
        episodes[env // pop.num_envs][1].append(length)
    row_of = {id(m): row for row, m in enumerate(pop.members)}
    done: list[Member] = []
    for m, n_valid, (ep_returns, ep_lengths) in zip(members, valid, episodes, strict=True):
        if id(m) not in row_of:
            continue  # left with a non-finite update
        p = m.progress
        p.env_steps += int(n_valid)
        p.updates += 1
        p.episodes += len(ep_returns)
        record = Rollout(*([None] * 8), episode_returns=ep_returns, episode_lengths=ep_lengths, episode_envs=[])
        m.run.record(record, stats[row_of[id(m)]])  # record
        m.solved = m.run.stop.observe_episodes(ep_returns) or m.solved
    evaluate_due(pop, results)  # maybe evaluate
    for row, m in enumerate(pop.members):
        if m.saves.due(m.progress.env_steps):  # maybe checkpoint
            m.run.ckpts.save_periodic(pop.sync(row), m.run.wall())
    if signals.received is not None:  # maybe stop
        interrupted(pop, signals)
    for m in pop.members:
        if m.solved or m.progress.env_steps >= m.run.cfg.total_steps or isinstance(results[m.index], Exception):
            done.append(m)
    if done:
        final = [row for row, m in enumerate(pop.members) if m in done and results[m.index] is None]
        # the final model is always evaluated (unless it just was), as a single run's
        unevaluated = [m.run.evaluator.last_step != m.progress.env_steps for m in pop.members]
        evaluate(pop, [row for row in final if unevaluated[row]])
        for row in final:
            results[pop.members[row].index] = finish(pop, pop.members[row])
        pop.keep([row for row, m in enumerate(pop.members) if m not in done])
        for m in done:
            m.resources.close()  # W&B and TensorBoard runs end as the member does


def evaluate_due(pop: Population, results: list[Any]) -> None:
    """Evaluate the members whose eval cadence is due, their episodes (and then the confirmation
    episodes of those that met the stop rule) played at once; each member's evaluation is recorded
    as a single run's: logged, best.pt, video, confirmation, stop rule, Optuna report."""
    rows = [row for row, m in enumerate(pop.members) if m.evals.due(m.progress.env_steps)]
    due = [pop.members[row] for row in rows]
    confirm = []
    for row, m, eval_return in zip(rows, due, evaluate(pop, rows), strict=True):
        ev = m.run.evaluator
        if m.run.stop.observe_eval(eval_return):
            if ev.confirm_episodes > 0:
                confirm.append(row)
            else:
                m.solved = True
    if confirm:
        members = [pop.members[row] for row in confirm]
        envs = [m.run.factory.make_vector(m.run.evaluator.confirm_episodes) for m in members]
        try:
            seeds = [m.run.evaluator.confirm_seed(m.progress) for m in members]
            for m, (returns, _) in zip(members, pop.episodes(confirm, envs, seeds), strict=True):
                m.solved = m.run.evaluator.confirmed(m.run.state, m.run.stop, returns) or m.solved
        finally:
            for e in envs:
                e.close()
    for m in due:
        if m.on_eval is not None:
            try:
                m.on_eval(m.progress.env_steps, m.progress.eval_return)
            except Exception as exc:  # optuna.TrialPruned: this member stops, as a pruned single run does
                results[m.index] = exc


def evaluate(pop: Population, rows: list[int]) -> list[float]:
    """One evaluation of each member at ``rows``, their episodes played at once, each recorded as a
    single run's (logged, best.pt, video); returns their mean returns."""
    if not rows:
        return []
    members = [pop.members[row] for row in rows]
    seeds = [m.run.evaluator.next_seed(m.progress) for m in members]
    played = pop.episodes(rows, [m.run.evaluator.envs for m in members], seeds)
    return [
        m.run.evaluator.record(pop.sync(row), returns, lengths)
        for row, m, (returns, lengths) in zip(rows, members, played, strict=True)
    ]


def finish(pop: Population, m: Member) -> dict[str, Any]:
    """A member that solved or spent its budget, its final model evaluated (``step`` evaluates the
    members that finish together at once): final checkpoint, summary.json."""
    p, run = m.progress, m.run
    state = pop.sync(pop.members.index(m))
    if m.solved and p.solved_at_step is None:
        p.solved_at_step = p.env_steps
    final = run.ckpts.save("final", state, run.wall())
    models = [f for f in (run.ckpts.folder / "best.pt", final) if f.exists()]
    run.loggers.log_files("model", models, p.env_steps)
    return run.finish(final)


def interrupted(pop: Population, signals: StopSignals) -> None:
    """A signal arrived: every member still training saves a checkpoint; each resumes as a single run."""
    for row, m in enumerate(pop.members):
        m.run.ckpts.save_periodic(pop.sync(row), m.run.wall())
        m.run.window.close()
    folders = " ".join(str(m.run.cfg.paths.output_dir) for m in pop.members)
    print(
        f"acx: interrupted; {len(pop.members)} members saved; resume each with: acx train resume=<folder> ({folders})"
    )
    raise Interrupted(signals.received, folders)


# --- the launcher's side: which jobs train together, and one group's run ---------------------------


# a group is split to give another process work only into parts of at least this many members: a
# process costs a few seconds to start (torch's import), which a small part would not win back
MIN_SPLIT = 8


def plan_groups(keys: Sequence[str], max_members: int, n_jobs: int) -> list[list[int]]:
    """Jobs (by their ``group_key``) into populations: jobs of one key together, a group larger than
    ``max_members`` split, and groups split further (into parts of ``MIN_SPLIT`` members or more)
    until there are ``n_jobs`` of them, so every process has one; a split group's members are dealt
    out evenly."""
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    parts = {key: math.ceil(len(jobs) / max_members) for key, jobs in by_key.items()}
    while parts and sum(parts.values()) < n_jobs:  # parts is empty when every job runs alone
        # split the group whose populations are largest, while it has more members than populations
        key = max(parts, key=lambda k: len(by_key[k]) / parts[k])
        if len(by_key[key]) < MIN_SPLIT * (parts[key] + 1):
            break
        parts[key] += 1
    groups = []
    for key, jobs in by_key.items():
        groups += [jobs[i :: parts[key]] for i in range(parts[key])]
    return groups


def run_group(cfgs: Sequence[dict], hydra_cfgs: Sequence[dict | None], position: int = 0) -> list[Any]:
    """One population, as the launcher runs it (in its own process or in the launcher's): resolved
    job configs, and each job's Hydra config, for the Optuna trial it reports to (if any)."""
    member_cfgs = [OmegaConf.create(c) for c in cfgs]
    on_evals = []
    for cfg, hydra_cfg in zip(member_cfgs, hydra_cfgs, strict=True):
        node = OmegaConf.create(hydra_cfg).hydra if hydra_cfg is not None else None
        reporter = None
        if node is not None and node.sweeper.get("trial_number") is not None:  # a trial of hydra/sweeper=acx_optuna
            from acx.sweep.tuning import trial_reporter

            reporter = trial_reporter(cfg, node)
        on_evals.append(reporter)
    return train_population(member_cfgs, on_evals, position)
