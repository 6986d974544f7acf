"""``hydra/launcher=population``: the jobs of a multirun that may share a cohort (they differ only in
their seed and scalar hyperparameters, ``acx.sweep.grouping``) train together in one process, with
stacked networks (``acx.run.cohort``): every variant (episodic, TD(0), n-step, PPO), every network
(MLP, CNN, a user's own), and runs that resume.

The launcher composes every job's config and writes its job folder as Hydra's own launchers do
(``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``), groups the jobs by what changes the
shape of the computation (``group_key``), cuts the groups into parts until ``n_jobs`` processes have
work, and trains each part as one cohort of up to ``max_members`` slots: when a member leaves (solved,
its budget spent, non-finite or pruned), the part's next job takes its slot. A job that cannot share a
cohort (``why_alone``: ``hydra.job.chdir``, a torch.optim optimizer) is a part of its own; the parts
run side by side in ``n_jobs`` processes, never one after another in the launcher's. Each job returns
its value (``optimized_metric``) to the sweeper, so an Optuna batch trains as one cohort.

``backend`` says where the parts train: ``local`` (processes on this machine), ``slurm`` (each part
one task of a SLURM job array, submitted with submitit's ``SlurmExecutor``) or ``ray`` (each part one
Ray task, on a local instance or a cluster). So a sweep of thousands of seeds trains as cohorts on
many machines.
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
from hydra.core.utils import JobReturn, JobStatus, _save_config, filter_overrides, setup_globals
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

        from acx.sweep.grouping import MEMBER_KEYS

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
    """Launch a batch of jobs as cohorts; ``n_jobs`` processes (-1: one per core) run them."""

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
        config, and the ``.hydra`` files; returns the job's return (to fill in) and its resolved config.
        A job with ``resume=`` continues its run in that run's own folder, with its own config
        (``resumed_config``), and leaves the run's ``.hydra`` files as they are."""
        from acx.sweep.refill import resumed_config

        HydraConfig.instance().set_config(config)
        if config.get("resume"):
            task = [o for o in OmegaConf.to_container(config.hydra.overrides.task)]
            resolved = resumed_config(str(config.resume), task)
            ret = JobReturn()
            ret.cfg, ret.hydra_cfg = OmegaConf.create(resolved), copy.deepcopy(HydraConfig.instance().cfg)
            ret.overrides, ret.working_dir, ret.task_name = task, os.getcwd(), config.hydra.job.name
            return ret, resolved
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
        """Each part's ``run_part`` as a SLURM array task or a Ray task; their results in order."""
        from acx.sweep.refill import run_part

        if self.backend == "slurm":
            import submitit

            executor = submitit.SlurmExecutor(folder=str(sweep_dir.absolute() / ".submitit" / "%j"))
            executor.update_parameters(**{k: v for k, v in self.slurm.items() if v is not None})
            jobs = executor.map_array(run_part, *zip(*args, strict=True))
            log.info(f"Population launcher: {len(jobs)} cohorts as SLURM job array {jobs[0].job_id.split('_')[0]}")
            return [job.result() for job in jobs]
        import ray

        from hydra_plugins.acx_ray_launcher.ray_launcher import connect

        connect(self.ray.get("address"), self.ray.get("init") or {})
        remote = ray.remote(run_part).options(**(self.ray.get("remote") or {}))
        log.info(f"Population launcher: {len(args)} cohorts as Ray tasks")
        return ray.get([remote.remote(*a) for a in args])

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from acx.analysis.learned import start_note
        from acx.analysis.runs import objective_value
        from acx.errors import AcxError
        from acx.run.signals import Interrupted
        from acx.sweep.grouping import group_key, plan_parts, processes, slots, why_alone
        from acx.sweep.refill import run_part

        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        original_hydra_cfg = HydraConfig.instance().cfg
        configs = [self._compose(initial_job_idx + i, o) for i, o in enumerate(job_overrides)]
        # once each: the (env, variant, defaults) cells of the sweep that docs/learning.md found do not learn
        for note in dict.fromkeys(filter(None, (start_note(c, c.hydra.runtime.choices) for c in configs))):
            print(f"acx: note: {note}")
        keys: list[str | None] = []
        for i, config in enumerate(configs):
            why = why_alone(config)
            keys.append(None if why else "")
            if why:
                log.info(f"#{initial_job_idx + i} trains in a cohort of its own ({why}): "
                         f"{' '.join(filter_overrides(job_overrides[i]))}")  # fmt: skip
        prepared = [self._prepare(config) for config in configs]
        HydraConfig.instance().cfg = original_hydra_cfg
        keys = [group_key(prepared[i][1]) if key is not None else None for i, key in enumerate(keys)]
        # processes at once: -1 is one per core here, refilling each cohort's slots from its part; on a
        # cluster each part is a task of its own: -1 cuts the groups into parts of max_members jobs
        if self.backend == "local":
            n_jobs = processes(self.n_jobs, os.cpu_count())
            parts = plan_parts(keys, n_jobs)
        else:
            n_jobs = max(self.n_jobs, 1)
            parts = plan_parts(keys, n_jobs, max_size=None if self.n_jobs > 0 else self.max_members)
        sizes = ", ".join(f"{len(p)} jobs in {slots(p, self.max_members)} slots" for p in parts)
        log.info(
            f"Population launcher: {len(configs)} jobs in {len(parts)} cohorts ({sizes}), "
            f"{min(n_jobs, max(len(parts), 1))} at a time; sweep output dir: {sweep_dir}"
        )
        args = [
            ([prepared[i][1] for i in part], [OmegaConf.to_container(prepared[i][0].hydra_cfg) for i in part], pos,
             slots(part, self.max_members))
            for pos, part in enumerate(parts)
        ]  # fmt: skip
        outcomes: dict[int, Any] = {}
        try:
            if self.backend != "local" and parts:
                for part, result in zip(parts, self._run_remote(args, sweep_dir), strict=True):
                    outcomes.update(zip(part, result, strict=True))
            elif len(parts) <= 1 or n_jobs == 1:
                for part, a in zip(parts, args, strict=True):
                    outcomes.update(zip(part, run_part(*a), strict=True))
            else:
                spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch threads or locks
                with ProcessPoolExecutor(max_workers=min(n_jobs, len(parts)), mp_context=spawn) as pool:
                    futures = [pool.submit(run_part, *a) for a in args]
                    for part, future in zip(parts, futures, strict=True):
                        outcomes.update(zip(part, future.result(), strict=True))
        except Interrupted as exc:  # every member still training saved a checkpoint and said how to resume
            sys.exit(exc.exit_code)
        returns: list[JobReturn] = []
        for i, (ret, resolved) in enumerate(prepared):
            result = outcomes[i]
            if isinstance(result, BaseException):
                ret.return_value, ret.status = result, JobStatus.FAILED
                if isinstance(result, AcxError):
                    print(f"acx: error: job #{initial_job_idx + i}: {str(result).splitlines()[0]}")
            else:
                metric = resolved.get("optimized_metric", "best_eval_return")
                ret.return_value = objective_value(metric, result, Path(resolved["paths"]["output_dir"]))
                ret.status = JobStatus.COMPLETED
            returns.append(ret)
        return returns
