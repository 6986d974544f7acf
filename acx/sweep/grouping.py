"""Which jobs of a multirun train together, and how a sweep is cut into cohorts for the processes.

Jobs whose resolved configs differ only in member keys (``MEMBER_KEYS``: the seed and the scalar
hyperparameters the learner takes per member) and in each run's own bookkeeping (``OWN_KEYS``) share
a cohort: the same env, network, variant, rollout shape, optimizer kind and device (``group_key``).
A group is cut into parts, one cohort each, as far as the processes need work (``plan_parts``); a
part's cohort has up to ``max_members`` slots, refilled from the part's queue as members leave.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

# scalar keys whose values may differ between the members of one cohort
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
# each member's own bookkeeping: names, folders, budget, cadences, stop rule, loggers, the run it resumes
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
    "resume",
    "eval.every_steps",
    "eval.confirm_episodes",
    "eval.video_every_steps",
)
# a group is cut to give another process work only into parts of at least this many jobs: a process
# costs a few seconds to start (torch's import), which a smaller part would not win back
MIN_SPLIT = 8


def _drop(node: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(leaf, None)


def group_key(cfg: DictConfig | dict[str, Any]) -> str:
    """What must be equal for jobs to share a cohort: the resolved config without the member and
    bookkeeping keys (env, network, num_envs, n_steps, variant, optimizer kind, device, ...)."""
    node = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else copy.deepcopy(cfg)
    for key in (*MEMBER_KEYS, *OWN_KEYS):
        _drop(node, key)
    return json.dumps(node, sort_keys=True, default=str)


def why_alone(cfg: DictConfig | dict[str, Any]) -> str | None:
    """Why a job cannot share a cohort (None: it can). Such a job is a cohort of its own, in a process
    beside the others'."""
    cfg = cfg if OmegaConf.is_config(cfg) else OmegaConf.create(cfg)
    if OmegaConf.select(cfg, "hydra.job.chdir"):
        return "hydra.job.chdir=true: members share one working directory"
    targets = [cfg.optimizer.get("_target_")] if "_target_" in cfg.optimizer else [
        cfg.optimizer[g].get("_target_") for g in ("actor", "critic") if g in cfg.optimizer
    ]  # fmt: skip
    if any(str(t).startswith("torch.optim.") for t in targets):
        return "a torch.optim optimizer steps every parameter it holds with one lr: it trains one run"
    return None


def plan_parts(keys: Sequence[str | None], n_jobs: int, max_size: int | None = None) -> list[list[int]]:
    """Jobs (by their ``group_key``; None: a job alone) into parts, one cohort each: the jobs of one
    key together, in parts of at most ``max_size`` jobs (None: any size; a part's cohort refills its
    slots), and groups split further (into parts of ``MIN_SPLIT`` jobs or more) until there are
    ``n_jobs`` parts, so that every process has work; a split group's jobs are dealt out evenly."""
    by_key: dict[str, list[int]] = {}
    alone = []
    for i, key in enumerate(keys):
        if key is None:
            alone.append([i])
        else:
            by_key.setdefault(key, []).append(i)
    parts = {key: -(-len(jobs) // max_size) if max_size else 1 for key, jobs in by_key.items()}
    while parts and sum(parts.values()) + len(alone) < n_jobs:
        # split the group whose parts are largest, while its parts stay large enough
        key = max(parts, key=lambda k: len(by_key[k]) / parts[k])
        if len(by_key[key]) < MIN_SPLIT * (parts[key] + 1):
            break
        parts[key] += 1
    planned = []
    for key, jobs in by_key.items():
        planned += [jobs[i :: parts[key]] for i in range(parts[key])]
    return planned + alone


def slots(part: Sequence[int], max_members: int) -> int:
    """The slots of a part's cohort: all its jobs at once, up to ``max_members``."""
    return max(1, min(len(part), max_members))


def processes(n_jobs: int, cores: int | None) -> int:
    """``hydra.launcher.n_jobs`` as a number of processes (-1: one per core)."""
    return n_jobs if n_jobs > 0 else max(1, cores or 1)
