"""``hydra/launcher=ray``: each job of a multirun is one Ray task, on a Ray instance this launcher
starts on this machine (``address: null``) or on an existing cluster (``address: HOST:PORT`` or
``auto``). It needs only the ``ray`` package: hydra-ray-launcher pins ``cloudpickle<3`` and
``ray[default]`` with boto3 for its AWS autoscaler, none of which a local or existing cluster needs."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


def execute_job(
    idx: int,
    overrides: Sequence[str],
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
    sweep_dir: str,
    driver_cwd: str,
) -> JobReturn:
    """Compose one job's config and run it; this runs in a Ray worker process."""
    setup_globals()
    Singleton.set_state(singleton_state)
    if Path(driver_cwd).is_dir():  # same machine or a shared file system: relative paths mean what they meant
        os.chdir(driver_cwd)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
        sweep_config.hydra.sweep.dir = sweep_dir  # absolute: a worker's cwd may differ from the driver's
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def connect(address: str | None, init_kwargs: dict[str, Any]) -> None:
    """``ray.init`` once: on a local instance (``address`` None) or on the cluster at ``address``."""
    try:
        import ray
    except ImportError:
        from acx.errors import ConfigError

        raise ConfigError("the Ray backend needs Ray: pip install -e '.[ray]'") from None
    if ray.is_initialized():
        return
    kwargs = {k: v for k, v in init_kwargs.items() if v is not None}
    if address:  # a cluster owns its resources: num_cpus & co. are for a local instance only
        for key in ("num_cpus", "num_gpus", "object_store_memory", "include_dashboard"):
            kwargs.pop(key, None)
    ray.init(address=address or None, **kwargs)
    resources = ray.cluster_resources()
    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
    log.info(f"Ray: jobs run on {where} ({resources.get('CPU', 0):g} CPUs, {len(ray.nodes())} nodes)")


class RayLauncher(Launcher):
    """Launch every job of a batch as a Ray task and wait for all of them."""

    def __init__(self, address: str | None = None, init: dict | None = None, remote: dict | None = None) -> None:
        self.address = address
        self.init_kwargs = dict(init or {})
        self.remote_options = dict(remote or {})
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def _connect(self) -> None:
        connect(self.address, self.init_kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self._connect()
        import ray

        log.info(f"Ray is launching {len(job_overrides)} jobs, sweep output dir: {sweep_dir}")
        for idx, overrides in enumerate(job_overrides):
            log.info(f"\t#{initial_job_idx + idx} : {' '.join(filter_overrides(overrides))}")
        options = OmegaConf.to_container(OmegaConf.create(self.remote_options), resolve=True)
        remote_job = ray.remote(execute_job).options(**options)
        singleton_state = Singleton.get_state()
        refs = [
            remote_job.remote(
                initial_job_idx + idx,
                list(overrides),
                self.hydra_context,
                self.config,
                self.task_function,
                singleton_state,
                str(sweep_dir),
                os.getcwd(),
            )  # fmt: skip
            for idx, overrides in enumerate(job_overrides)
        ]
        return ray.get(refs)
