"""The launchers' schemas (``hydra/launcher``), checked before a multirun's first job by a Hydra callback."""

from __future__ import annotations

import sys
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import ConfigDict, Field, model_validator

from acx.config.messages import validate
from acx.config.schema import Schema, by_target
from acx.errors import ConfigError


class PopulationSlurm(Schema):
    partition: str | None = None
    time: int = Field(60, ge=1, description="minutes")
    cpus_per_task: int | None = Field(None, ge=1)
    mem: str | None = None
    array_parallelism: int = Field(256, ge=1)
    additional_parameters: dict[str, Any] = {}
    setup: list[str] | None = None


class PopulationRay(Schema):
    address: str | None = None
    init: dict[str, Any] = {}
    remote: dict[str, Any] = {}


def _n_jobs(value: int | None, allow_null: bool) -> None:
    if value == 0 or (value is None and not allow_null):
        raise ValueError(f".n_jobs: must be -1 (one per core) or an integer >= 1, got {value!r}")


class PopulationLauncher(Schema):
    target: Literal["hydra_plugins.acx_population_launcher.population_launcher.PopulationLauncher"] = Field(
        alias="_target_"
    )
    max_members: int = Field(64, ge=1)
    n_jobs: int = Field(-1, ge=-1)
    backend: Literal["local", "slurm", "ray"] = "local"
    slurm: PopulationSlurm = PopulationSlurm()
    ray: PopulationRay = PopulationRay()

    @model_validator(mode="after")
    def _some_jobs(self) -> PopulationLauncher:
        _n_jobs(self.n_jobs, allow_null=False)
        return self


class RayLauncher(PopulationRay):
    target: Literal["hydra_plugins.acx_ray_launcher.ray_launcher.RayLauncher"] = Field(alias="_target_")


class JoblibLauncher(Schema):
    """hydra-joblib-launcher's keys that have a range; the plugin's own schema checks the others."""

    model_config = ConfigDict(extra="allow")
    target: Literal["hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"] = Field(alias="_target_")
    n_jobs: int | None = Field(-1, description="null: joblib's default")
    verbose: int = Field(0, ge=0)
    timeout: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_jobs(self) -> JoblibLauncher:
        _n_jobs(self.n_jobs, allow_null=True)
        return self


class SubmititLocalLauncher(Schema):
    """hydra-submitit-launcher's keys that have a range; the plugin's own schema checks the others."""

    model_config = ConfigDict(extra="allow")
    target: Literal["hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"] = Field(alias="_target_")
    timeout_min: int = Field(60, ge=1)
    cpus_per_task: int | None = Field(None, ge=1)
    gpus_per_node: int | None = Field(None, ge=0)
    tasks_per_node: int = Field(1, ge=1)
    mem_gb: float | None = Field(None, gt=0)
    nodes: int = Field(1, ge=1)


class SubmititSlurmLauncher(SubmititLocalLauncher):
    target: Literal["hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"] = Field(alias="_target_")
    signal_delay_s: int = Field(120, ge=0)
    max_num_timeout: int = Field(0, ge=0)
    array_parallelism: int = Field(256, ge=1)


class HydraLaunch(Schema):
    """``hydra.launcher`` (the rest of ``hydra`` is Hydra's business)."""

    model_config = ConfigDict(extra="ignore")
    launcher: by_target(PopulationLauncher, RayLauncher, JoblibLauncher, SubmititLocalLauncher, SubmititSlurmLauncher)


class MultirunConfig(Schema):
    model_config = ConfigDict(extra="ignore")
    hydra: HydraLaunch


def validate_launcher(config: DictConfig) -> None:
    """A multirun's ``hydra.launcher`` checked against the launcher's model (a launcher acx does not
    know: its ``_target_`` must import)."""
    validate(MultirunConfig, {"hydra": {"launcher": OmegaConf.to_container(config.hydra.launcher, resolve=True)}})


def launcher_check():
    """A Hydra callback (``hydra.callbacks`` in ``conf/hydra/default.yaml``) that checks the launcher's
    keys before the sweeper builds it: a value out of range is one line and exit 2, as for any other
    key, instead of the launcher's traceback. (Hydra turns a callback's exceptions into warnings, so
    it exits itself, as ``acx.cli`` does for the app's own input errors.)"""
    from hydra.experimental.callback import Callback

    class LauncherCheck(Callback):
        def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
            try:
                validate_launcher(config)
            except ConfigError as exc:
                print(f"acx: error: {exc}", file=sys.stderr)
                sys.exit(exc.exit_code)

    return LauncherCheck()
