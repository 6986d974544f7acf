"""``hydra/launcher=population``: the jobs of a multirun that differ only in their seed and scalar
hyperparameters train as one population in one process (``acx.run.population``), with stacked networks.

The launcher composes every job's config and writes its job folder as Hydra's own launchers do
(``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``), groups the jobs by what changes the
shape of the computation (``acx.run.population.group_key``), and trains each group, split into at most
``max_members`` members and into ``n_jobs`` groups when there are fewer, in ``n_jobs`` processes side
by side. A job that cannot join a population (a resume, the episodic variant, a CNN) runs on its own,
as the basic launcher runs it, after one line saying why. Each job returns its value
(``optimized_metric``) to the sweeper, so an Optuna batch trains as one population.

``backend`` says where the populations train: ``local`` (processes on this machine), ``slurm`` (each
population one task of a SLURM job array, submitted with submitit's ``SlurmExecutor``) or ``ray`` (each
population one Ray task, on a local instance or a cluster). So a sweep of thousands of seeds trains
as populations on many machines. Jobs that run on their own run where acx runs, as with ``local``.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, _save_config, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


class SweepConfigs:
    """Hydra composes each job of a sweep from scratch, twice (the sweeper validates every batch, then
    the launcher composes it): ~0.2 s a job, 25 s for 64 seeds, longer than a population takes to
    train them. A job whose overrides differ from an earlier job's only in plain values of member keys
    (``seed=3``, ``optimizer.lr=1e-3``) gets a copy of that job's config with those values set as
    Hydra sets them (``OmegaConf.update(..., merge=True)``), its own ``hydra.overrides.task`` and
    ``override_dirname``; anything else is composed by Hydra. Installed on the sweep's config loader."""

    def __init__(self, load):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.load, self.parser = load, OverridesParser.create()
        self.composed: dict[tuple, DictConfig] = {}

    def _member(self, override) -> bool:
        from hydra.core.override_parser.types import OverrideType

        from acx.run.population import MEMBER_KEYS

        return (
            override.type == OverrideType.CHANGE
            and override.package is None
            and not override.is_sweep_override()
            and override.key_or_group in MEMBER_KEYS
        )

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        from hydra._internal.config_loader_impl import get_overrides_dirname

        parsed = self.parser.parse_overrides(list(sweep_overrides))
        members = [o for o in parsed if self._member(o)]
        key = (id(master_config), tuple(o.input_line for o in parsed if not self._member(o)),
               tuple(o.key_or_group for o in members))  # fmt: skip
        if key not in self.composed:
            self.composed[key] = self.load(master_config, sweep_overrides)
            return self.composed[key]
        config = copy.deepcopy(self.composed[key])
        try:
            for o in members:
                OmegaConf.update(config, o.key_or_group, o.value(), merge=True)
        except Exception:  # a value Hydra would reject: let it say so
            return self.load(master_config, sweep_overrides)
        task = [o for o in parsed if not o.is_hydra_override()]
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.overrides.task = [o.input_line for o in task]
            dirname = config.hydra.job.config.override_dirname
            config.hydra.job.override_dirname = get_overrides_dirname(
                overrides=task, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys
            )
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config


class PopulationLauncher(Launcher):
    """Launch a batch of jobs as populations; ``n_jobs`` processes (-1: one per core) run them."""

    def __init__(
        self,
        max_members: int = 64,
        n_jobs: int = -1,
        backend: str = "local",
        slurm: dict | None = None,
        ray: dict | None = None,
    ) -> None:
        self.max_members, self.n_jobs, self.backend = int(max_members), int(n_jobs), backend
        self.slurm = OmegaConf.to_container(OmegaConf.create(slurm or {}), resolve=True)
        self.ray = OmegaConf.to_container(OmegaConf.create(ray or {}), resolve=True)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context
        loader = hydra_context.config_loader  # the sweeper's too: its validation of each batch gets the same
        if not isinstance(loader.load_sweep_config, SweepConfigs):
            loader.load_sweep_config = SweepConfigs(loader.load_sweep_config)

    def _compose(self, idx: int, overrides: Sequence[str]) -> DictConfig:
        assert self.config is not None and self.hydra_context is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
            sweep_config.hydra.job.num = idx
        return sweep_config

    def _prepare(self, config: DictConfig) -> tuple[JobReturn, dict[str, Any]]:
        """What Hydra's ``run_job`` does before it calls the task: the job's output dir, its Hydra
        config, and the ``.hydra`` files; returns the job's return (to fill in) and its resolved config."""
        HydraConfig.instance().set_config(config)
        output_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = str(output_dir.absolute())
        HydraConfig.instance().set_config(config)
        ret = JobReturn()
        task_cfg = copy.deepcopy(config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        ret.cfg, ret.hydra_cfg = task_cfg, copy.deepcopy(HydraConfig.instance().cfg)
        ret.overrides = OmegaConf.to_container(config.hydra.overrides.task)
        ret.working_dir = os.getcwd()
        ret.task_name = config.hydra.job.name
        output_dir.mkdir(parents=True, exist_ok=True)
        if config.hydra.output_subdir is not None:
            hydra_output = output_dir / str(config.hydra.output_subdir)
            _save_config(task_cfg, "config.yaml", hydra_output)
            _save_config(ret.hydra_cfg, "hydra.yaml", hydra_output)
            _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
        resolved = OmegaConf.to_container(task_cfg, resolve=True)  # while this job's Hydra config is set
        return ret, resolved

    def _run_remote(self, args: list[tuple], sweep_dir: Path) -> list[list[Any]]:
        """Each population's ``run_group`` as a SLURM array task or a Ray task; their results in order."""
        from acx.run.population import run_group

        if self.backend == "slurm":
            import submitit

            executor = submitit.SlurmExecutor(folder=str(sweep_dir.absolute() / ".submitit" / "%j"))
            executor.update_parameters(**{k: v for k, v in self.slurm.items() if v is not None})
            jobs = executor.map_array(run_group, *zip(*args, strict=True))
            log.info(f"Population launcher: {len(jobs)} populations as SLURM job array {jobs[0].job_id.split('_')[0]}")
            return [job.result() for job in jobs]
        import ray

        from hydra_plugins.acx_ray_launcher.ray_launcher import connect

        connect(self.ray.get("address"), self.ray.get("init") or {})
        remote = ray.remote(run_group).options(**(self.ray.get("remote") or {}))
        log.info(f"Population launcher: {len(args)} populations as Ray tasks")
        return ray.get([remote.remote(*a) for a in args])

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from acx.analysis.runs import objective_value
        from acx.errors import AcxError
        from acx.run.population import group_key, plan_groups, run_group, why_alone
        from acx.run.signals import Interrupted

        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        original_hydra_cfg = HydraConfig.instance().cfg
        configs = [self._compose(initial_job_idx + i, o) for i, o in enumerate(job_overrides)]
        alone, together = [], []
        for i, config in enumerate(configs):
            why = why_alone(config)
            (alone if why else together).append(i)
            if why:
                log.info(
                    f"#{initial_job_idx + i} runs on its own ({why}): {' '.join(filter_overrides(job_overrides[i]))}"
                )
        prepared = {i: self._prepare(configs[i]) for i in together}
        HydraConfig.instance().cfg = original_hydra_cfg
        keys = [group_key(prepared[i][1]) for i in together]
        # populations at once: -1 is one per core here, and on a cluster no split beyond max_members
        n_jobs = self.n_jobs if self.n_jobs > 0 else (os.cpu_count() or 1) if self.backend == "local" else 1
        groups = [[together[j] for j in g] for g in plan_groups(keys, self.max_members, n_jobs)]
        sizes = ", ".join(str(len(g)) for g in groups)
        log.info(
            f"Population launcher: {len(together)} jobs in {len(groups)} populations ({sizes} members), "
            f"{min(n_jobs, max(len(groups), 1))} at a time; sweep output dir: {sweep_dir}"
        )
        args = [
            ([prepared[i][1] for i in g], [OmegaConf.to_container(prepared[i][0].hydra_cfg) for i in g], pos)
            for pos, g in enumerate(groups)
        ]
        outcomes: dict[int, Any] = {}
        try:
            if self.backend != "local" and groups:
                for g, result in zip(groups, self._run_remote(args, sweep_dir), strict=True):
                    outcomes.update(zip(g, result, strict=True))
            elif len(groups) <= 1 or n_jobs == 1:
                for g, a in zip(groups, args, strict=True):
                    outcomes.update(zip(g, run_group(*a), strict=True))
            else:
                spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch threads or locks
                with ProcessPoolExecutor(max_workers=min(n_jobs, len(groups)), mp_context=spawn) as pool:
                    futures = [pool.submit(run_group, *a) for a in args]
                    for g, future in zip(groups, futures, strict=True):
                        outcomes.update(zip(g, future.result(), strict=True))
        except Interrupted as exc:  # every member still training saved a checkpoint and said how to resume
            sys.exit(exc.exit_code)
        returns: list[JobReturn | None] = [None] * len(configs)
        for i in together:
            ret, resolved = prepared[i]
            result = outcomes[i]
            if isinstance(result, BaseException):
                ret.return_value, ret.status = result, JobStatus.FAILED
                if isinstance(result, AcxError):
                    print(f"acx: error: job #{initial_job_idx + i}: {str(result).splitlines()[0]}")
            else:
                metric = resolved.get("optimized_metric", "best_eval_return")
                ret.return_value = objective_value(metric, result, Path(resolved["paths"]["output_dir"]))
                ret.status = JobStatus.COMPLETED
            returns[i] = ret
        for i in alone:  # as the basic launcher runs a job
            HydraConfig.instance().set_config(configs[i])
            returns[i] = run_job(
                hydra_context=self.hydra_context,
                config=configs[i],
                task_function=self.task_function,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        HydraConfig.instance().cfg = original_hydra_cfg
        return returns
