"""A launcher's part of a sweep, in its own process (or a SLURM array task, or a Ray task): the jobs
of one group trained through one cohort whose freed slots are refilled from the part's queue."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from acx.config import upgrade_targets
from acx.errors import ConfigError
from acx.run.checkpoint import load_checkpoint
from acx.run.train import Job, train_cohort


def resumed_config(resume: str, overrides: Sequence[str]) -> dict[str, Any]:
    """A multirun job with ``resume=``: the run it continues, in its own folder, with its own config
    (from its checkpoint), the job's key=value overrides on top (``total_steps=...``), as
    ``acx train resume=`` composes a single run."""
    ckpt = load_checkpoint(resume)
    path = Path(ckpt["path"])
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    cfg = OmegaConf.create(upgrade_targets(ckpt["meta"]["config"]))
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key == "resume" or key.startswith("hydra") or not value:
            continue
        if "/" in key or isinstance(OmegaConf.select(cfg, key), DictConfig):
            raise ConfigError(f"{override}: a multirun of resume= jobs takes key=value overrides, not config groups")
        OmegaConf.update(cfg, key, yaml.safe_load(value), merge=True)
    cfg.resume, cfg.paths.output_dir = str(path), str(run_dir)
    return OmegaConf.to_container(cfg)


def run_part(cfgs: Sequence[dict], hydra_cfgs: Sequence[dict | None], position: int = 0, slots: int = 1) -> list[Any]:
    """Train resolved job configs (one ``group_key``) in a cohort of ``slots`` members; each job's
    Hydra config names the Optuna trial it reports to (if any). Returns each job's summary or the
    exception it ended with, in order."""
    jobs = []
    for i, (cfg, hydra_cfg) in enumerate(zip(cfgs, hydra_cfgs, strict=True)):
        cfg = OmegaConf.create(cfg)
        node = OmegaConf.create(hydra_cfg).hydra if hydra_cfg is not None else None
        reporter = None
        if node is not None and node.sweeper.get("trial_number") is not None:  # a trial of hydra/sweeper=acx_optuna
            from acx.sweep.tuning import trial_reporter

            reporter = trial_reporter(cfg, node)
        jobs.append(Job(i, cfg, reporter))
    if len(jobs) == 1 and hydra_cfgs[0] is not None and OmegaConf.create(hydra_cfgs[0]).hydra.job.get("chdir"):
        os.chdir(jobs[0].cfg.paths.output_dir)  # hydra.job.chdir=true: a cohort of its own, in its folder
    results = train_cohort(jobs, slots=slots, position=position)
    return [results[i] for i in range(len(jobs))]
