"""The config schema: one declaration of every key's type and range, from which validation follows.

``conf/`` holds the values (the defaults and presets); the pydantic models here say which values are
allowed. ``validate_train_config`` checks a composed ``acx train`` config against them before any
env, logger or file exists, and reports the first mistake as one line naming the key, the value and
the allowed range or choices (with a "did you mean" for a misspelt key or option). The builders trust
what passed and do not check again. ``acx eval`` and ``acx report`` arguments go through the same path.

A group whose ``_target_`` names an acx builder is checked against that builder's model; a
``_target_`` of the user's own is only checked to import, and its keys go to it unchecked.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator
from pydantic.fields import FieldInfo

from acx.errors import ConfigError

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu")
INITS = ("default", "orthogonal", "kaiming_normal")
VALUE_LOSSES = ("mse", "huber", "smooth_l1")
OBJECTIVES = ("best_eval_return", "final_eval_return", "eval_return_auc")


class Schema(BaseModel):
    """Strict: no coercion (the validated values are the config's own), no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, frozen=True)


class UserTarget(BaseModel):
    """A ``_target_`` that acx does not know (the user's own class or function): it must import; its
    keys are its own business."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    target: str = Field(alias="_target_")
    partial: bool = Field(False, alias="_partial_")

    @model_validator(mode="after")
    def _imports(self) -> UserTarget:
        module, _, name = self.target.rpartition(".")
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"cannot import _target_ {self.target!r} ({type(exc).__name__}: {exc})") from None
        return self


def by_target(*models: type[BaseModel]) -> Any:
    """A config group picked by its ``_target_``: the acx model that builds it, or ``UserTarget``."""
    known = {m.model_fields["target"].annotation.__args__[0]: m for m in models}

    def tag(value: Any) -> str:
        target = value.get("_target_") if isinstance(value, Mapping) else getattr(value, "target", None)
        return target if target in known else "user"

    members = [Annotated[m, Tag(t)] for t, m in known.items()] + [Annotated[UserTarget, Tag("user")]]
    return Annotated[Union[tuple(members)], Discriminator(tag)]  # noqa: UP007 (a runtime-built union)


# ---- env -----------------------------------------------------------------------------------------


class GymEnv(Schema):
    target: Literal["acx.envs.factory.GymEnvFactory"] = Field(alias="_target_")
    id: str
    kwargs: dict[str, Any] = {}
    vectorization: Literal["auto", "sync", "async", "vector_entry_point", "envpool"] = "auto"
    max_episode_steps: int | None = Field(None, ge=1, description="null: the env's registered time limit")
    reward_threshold: float | None = None
    wrappers: list[dict[str, Any]] = []

    @model_validator(mode="after")
    def _wrappers_have_targets(self) -> GymEnv:
        for i, wrapper in enumerate(self.wrappers):
            if "_target_" not in wrapper:
                raise ValueError(f"env.wrappers[{i}]: needs a _target_ (a Gymnasium wrapper class), got {wrapper}")
        return self


class AtariEnv(Schema):
    target: Literal["acx.envs.atari.AtariEnvFactory"] = Field(alias="_target_")
    game: str | None = "pong"
    id: str | None = None
    frame_skip: int = Field(4, ge=1)
    noop_max: int = Field(30, ge=0)
    fire_reset: bool = True
    stack: int = Field(4, ge=1)
    screen_size: int = Field(84, ge=8)
    episodic_life: bool = False
    reward_clipping: bool = True
    repeat_action_probability: float = Field(0.0, ge=0, le=1)
    max_episode_frames: int = Field(108000, ge=1)
    num_threads: int = Field(0, ge=0, description="0: one per core")
    reward_threshold: float | None = None

    @model_validator(mode="after")
    def _names_a_game(self) -> AtariEnv:
        if self.game is None and self.id is None:
            raise ValueError("env.game or env.id must name an Atari game")
        return self


# ---- network -------------------------------------------------------------------------------------


class Gaussian(Schema):
    log_std: Literal["state_independent", "state_dependent"] = "state_independent"
    log_std_init: float = 0.0
    log_std_bounds: list[float] = Field([-20.0, 2.0], min_length=2, max_length=2)
    mean_bound: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Gaussian:
        low, high = self.log_std_bounds
        if not low < high:
            raise ValueError(f"network.gaussian.log_std_bounds: must be [low, high] with low < high, got {[low, high]}")
        return self


class Init(Schema):
    init: Literal[INITS] = "orthogonal"
    init_gain: float = Field(2**0.5, gt=0)
    policy_init_gain: float = Field(0.01, gt=0)
    value_init_gain: float = Field(1.0, gt=0)


class MlpNetwork(Init):
    target: Literal["acx.algo.networks.mlp_actor_critic"] = Field(alias="_target_")
    hidden_sizes: list[Annotated[int, Field(ge=1)]] = Field([64, 64], min_length=1)
    activation: Literal[ACTIVATIONS] = "tanh"
    layer_norm: bool = False
    shared: bool = False
    bias: bool = True
    gaussian: Gaussian = Gaussian()
    cnn_features: int = Field(256, ge=1, description="Dict observations: units after each image key's CNN")


class LstmNetwork(Init):
    target: Literal["acx.algo.networks.lstm_actor_critic"] = Field(alias="_target_")
    hidden_sizes: list[Annotated[int, Field(ge=1)]] = Field([64], min_length=0)
    lstm_hidden: int = Field(128, ge=1)
    cell: Literal["lstm", "gru"] = "lstm"
    activation: Literal[ACTIVATIONS] = "tanh"
    gaussian: Gaussian = Gaussian()
    cnn_features: int = Field(256, ge=1, description="Dict observations: units after each image key's CNN")


class CnnNetwork(Init):
    target: Literal["acx.algo.networks.cnn_actor_critic"] = Field(alias="_target_")
    head_hidden: int = Field(0, ge=0, description="0: one shared 512-unit layer")
    features: int = Field(512, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"


# ---- algo ----------------------------------------------------------------------------------------


class Estimator(Schema):
    target: Literal[
        "acx.algo.returns.gae_advantages", "acx.algo.returns.td0_advantages", "acx.algo.returns.monte_carlo_advantages"
    ] = Field(alias="_target_")
    partial: Literal[True] = Field(alias="_partial_")
    gae_lambda: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _lambda_for_gae(self) -> Estimator:
        if self.gae_lambda is not None and self.target != "acx.algo.returns.gae_advantages":
            raise ValueError(
                f"algo.advantage.gae_lambda: applies to acx.algo.returns.gae_advantages, not {self.target}"
            )
        return self


class Loss(Schema):
    target: Literal["acx.algo.losses.ActorCriticLoss"] = Field(alias="_target_")
    value_loss: Literal[VALUE_LOSSES] = "mse"
    vf_coef: float = Field(0.5, ge=0)
    ent_coef: float = Field(0.0, ge=0)
    normalize_advantage: bool = False
    normalize_returns: bool = False
    reduction: Literal["mean", "sum"] = "mean"
    huber_delta: float = Field(1.0, gt=0)


class ClippedLoss(Loss):
    """PPO's loss: A2C's keys, plus the clip ranges of the policy's ratio and of the critic's change."""

    target: Literal["acx.algo.losses.PPOLoss"] = Field(alias="_target_")
    clip_range: float | None = Field(0.2, gt=0, description="null: no clipping")
    clip_range_vf: float | None = Field(None, gt=0, description="null: no value clipping")
    anneal_clip: bool = False


class Algo(Schema):
    name: str
    num_envs: int = Field(ge=1)
    n_steps: int | None = Field(ge=1, description="null: until the episode ends")
    gamma: float = Field(gt=0, le=1)
    reward_scale: float = Field(1.0, gt=0)
    max_grad_norm: float | None = Field(gt=0, description="null: no clipping")
    advantage: by_target(Estimator)
    loss: by_target(Loss, ClippedLoss)
    # how a rollout becomes gradient steps: epochs passes, each in minibatches shuffled parts (PPO);
    # 1 and 1: one step on the whole rollout (the A2C variants)
    epochs: int = Field(1, ge=1)
    minibatches: int = Field(1, ge=1)
    target_kl: float | None = Field(None, gt=0, description="null: no early stop")

    @model_validator(mode="after")
    def _fits_the_rollout(self) -> Algo:
        if self.n_steps is None and self.num_envs != 1:
            raise ValueError(
                f"algo.num_envs: must be 1 when algo.n_steps is null (whole episodes from one env), got {self.num_envs}"
            )
        if self.n_steps is not None and self.minibatches > self.num_envs * self.n_steps:
            raise ValueError(
                f"algo.minibatches: must be at most algo.num_envs x algo.n_steps = "
                f"{self.num_envs * self.n_steps} (the transitions of a rollout), got {self.minibatches}"
            )
        return self


# ---- optimizer and schedule ----------------------------------------------------------------------


class Optimizer(Schema):
    """An optimizer class given the parameters later (``_partial_``): acx.algo.optim's (or torch.optim's)."""

    target: str = Field(alias="_target_", pattern=r"^(acx\.algo|torch)\.optim\.\w+$")
    partial: Literal[True] = Field(alias="_partial_")
    lr: float = Field(gt=0)
    eps: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    momentum: float | None = Field(None, ge=0)
    dampening: float | None = Field(None, ge=0)
    nesterov: bool | None = None
    alpha: float | None = Field(None, gt=0, le=1)
    betas: list[Annotated[float, Field(ge=0, lt=1)]] | None = Field(None, min_length=2, max_length=2)

    @model_validator(mode="after")
    def _keys_the_class_takes(self) -> Optimizer:
        module, _, name = self.target.rpartition(".")
        try:
            taken = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import _target_ {self.target!r} ({type(exc).__name__}: {exc})") from None
        for key in sorted(self.model_fields_set - {"target", "partial"}):
            if key not in taken:
                close = close_keys(key, [k for k in taken if k != "params"])
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ValueError(f".{key}: {self.target} takes no such key{hint}")  # "." : under the group's key
        return self


class SplitOptimizers(Schema):
    """Separate actor and critic optimizers (seed 001); needs separate networks."""

    actor: Optimizer
    critic: Optimizer


def _optimizer_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "split" if "_target_" not in value and ("actor" in value or "critic" in value) else "one"
    return "split" if isinstance(value, SplitOptimizers) else "one"


OptimizerGroup = Annotated[
    Union[Annotated[Optimizer, Tag("one")], Annotated[SplitOptimizers, Tag("split")]],  # noqa: UP007
    Discriminator(_optimizer_kind),
]


class ConstantLR(Schema):
    target: Literal["acx.algo.update.ConstantLR"] = Field(alias="_target_")


class LinearLR(Schema):
    target: Literal["acx.algo.update.LinearLR"] = Field(alias="_target_")
    final_fraction: float = Field(0.0, ge=0, le=1)


# ---- stop, device, loggers -----------------------------------------------------------------------


class BudgetStop(Schema):
    target: Literal["acx.run.stopping.StopRule"] = Field(alias="_target_")
    threshold: float | None = None


class EvalThresholdStop(Schema):
    target: Literal["acx.run.stopping.EvalThreshold"] = Field(alias="_target_")
    threshold: float | None = Field(None, description="null: the env's reward_threshold")


class MeanLastEpisodesStop(Schema):
    target: Literal["acx.run.stopping.MeanLastEpisodes"] = Field(alias="_target_")
    window: int = Field(100, ge=1)
    threshold: float | None = None


class RunningRewardStop(Schema):
    target: Literal["acx.run.stopping.RunningRewardThreshold"] = Field(alias="_target_")
    alpha: float = Field(0.05, gt=0, le=1)
    threshold: float | None = None


class Device(Schema):
    target: Literal["acx.run.device.resolve_device"] = Field(alias="_target_")
    name: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    threads: int | None = Field(1, ge=1, description="null: torch's default")


class WandbLogger(Schema):
    target: Literal["acx.run.loggers.WandbLogger"] = Field(alias="_target_")
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "acx"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = []
    name: str | None = None
    settings: dict[str, Any] = {}  # wandb.Settings keys: W&B checks them, and a bad one only warns


class TensorBoardLogger(Schema):
    target: Literal["acx.run.loggers.TensorBoardLogger"] = Field(alias="_target_")
    subdir: str = "tensorboard"
    flush_secs: int = Field(30, ge=1)


# ---- the train and eval configs ------------------------------------------------------------------


class Normalize(Schema):
    obs: bool = False
    reward: bool = False
    clip_obs: float = Field(10.0, gt=0)
    clip_reward: float = Field(10.0, gt=0)
    epsilon: float = Field(1e-8, gt=0)


class Eval(Schema):
    every_steps: int = Field(ge=1)
    episodes: int = Field(ge=1)
    confirm_episodes: int | None = Field(0, ge=0, description="0 or null: off")
    deterministic: bool = True
    video_every_steps: int | None = Field(None, ge=1, description="off")


class Checkpoint(Schema):
    every_steps: int = Field(ge=1)
    keep: int = Field(ge=1)


class Log(Schema):
    every_updates: int = Field(ge=1)


class Paths(Schema):
    log_dir: str
    output_dir: str


class TrainConfig(Schema):
    """``conf/train.yaml`` once composed."""

    task_name: str
    run_name: str
    seed: int = Field(ge=0)
    tuned_from: str | None = None
    resume: str | None = None
    total_steps: int = Field(ge=1)
    optimized_metric: Literal[OBJECTIVES] = "best_eval_return"
    normalize: Normalize = Normalize()
    eval: Eval
    checkpoint: Checkpoint
    log: Log
    progress: bool = True
    env: by_target(GymEnv, AtariEnv)
    network: by_target(MlpNetwork, CnnNetwork, LstmNetwork)
    algo: Algo
    optimizer: OptimizerGroup
    lr_schedule: by_target(ConstantLR, LinearLR) | None = None
    device: by_target(Device)
    stop: by_target(BudgetStop, EvalThresholdStop, MeanLastEpisodesStop, RunningRewardStop)
    logger: dict[str, by_target(WandbLogger, TensorBoardLogger) | None] | None = None
    paths: Paths

    @model_validator(mode="after")
    def _split_optimizers_need_split_networks(self) -> TrainConfig:
        if isinstance(self.optimizer, SplitOptimizers) and getattr(self.network, "shared", True):
            raise ValueError(
                "optimizer: separate actor and critic optimizers need separate networks (network=mlp, "
                "network.shared=false)"
            )
        return self

    @model_validator(mode="after")
    def _recurrent_minibatches_are_env_columns(self) -> TrainConfig:
        if isinstance(self.network, LstmNetwork) and self.algo.minibatches > self.algo.num_envs:
            raise ValueError(
                f"algo.minibatches: network={self.network.cell}'s minibatches are whole env columns, so at most "
                f"algo.num_envs ({self.algo.num_envs}), got {self.algo.minibatches}"
            )
        return self


class EvalConfig(Schema):
    """``conf/eval.yaml`` once composed: ``acx eval``'s arguments."""

    task_name: str
    run_name: str
    ckpt: str
    episodes: int = Field(ge=1)
    deterministic: bool = True
    render: Literal["human", "none"] | None = Field(None, description="human: a window")
    video: bool = False
    seed: int = Field(ge=0)
    env_id: str | None = None
    device: by_target(Device)
    paths: Paths


class ExportConfig(Schema):
    """``conf/export.yaml`` once composed: ``acx export``'s arguments."""

    task_name: str
    run_name: str
    ckpt: str
    format: Literal["onnx", "torchscript"] = "onnx"
    device: by_target(Device)
    paths: Paths


class ReportArgs(Schema):
    """``acx report``'s arguments."""

    dirs: list[Path] = Field(min_length=1)
    out: Path | None = None
    baseline: str | None = None
    format: Literal["md", "csv", "json"] = "md"
    reps: int = Field(2000, ge=100)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _are_folders(self) -> ReportArgs:
        for d in self.dirs:
            if not d.is_dir():
                raise ValueError(f"{d} is not a directory")
        return self


# ---- launchers (hydra/launcher) ------------------------------------------------------------------


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


# ---- targets saved before the package layout -----------------------------------------------------

# the modules that moved into acx/algo, acx/envs and acx/run: the configs in older checkpoints and run
# folders name their builders by the old paths
MOVED_TARGETS = {
    **{f"acx.{m}.": f"acx.algo.{m}." for m in ("networks", "normalize", "returns", "losses", "optim", "update")},
    "acx.envs.": "acx.envs.factory.",
    "acx.atari.": "acx.envs.atari.",
    **{f"acx.{m}.": f"acx.run.{m}." for m in ("device", "stopping", "loggers")},
}


def upgrade_target(target: str) -> str:
    """A ``_target_`` of before the package layout, as it is named now (any other: unchanged)."""
    for old, new in MOVED_TARGETS.items():
        if target.startswith(old) and target.count(".") == old.count("."):  # acx.envs.X, not acx.envs.factory.X
            return new + target[len(old) :]
    return target


def upgrade_targets(node: Any) -> Any:
    """A saved config (plain dicts and lists) with every ``_target_`` named as it is now."""
    if isinstance(node, dict):
        return {k: upgrade_target(v) if k == "_target_" and isinstance(v, str) else upgrade_targets(v)
                for k, v in node.items()}  # fmt: skip
    if isinstance(node, list):
        return [upgrade_targets(v) for v in node]
    return node


# ---- validation ----------------------------------------------------------------------------------


def close_keys(key: str, candidates: list[str]) -> list[str]:
    """The candidates a misspelt ``key`` most likely meant: those ending in the same last part, or else
    the closest spellings (only the ones about as close as the best)."""
    last = key.rpartition(".")[2]
    pool = [c for c in candidates if c.rpartition(".")[2] == last and c != key] or candidates
    scored = sorted(((difflib.SequenceMatcher(None, key, c).ratio(), c) for c in pool), reverse=True)
    best = scored[0][0] if scored else 0.0
    return [c for r, c in scored[:3] if r >= max(0.6, best - 0.05)]


def validate(model: type[BaseModel], cfg: DictConfig | Mapping[str, Any]) -> Any:
    """``cfg`` checked against ``model``; the first mistake raised as a one-line ConfigError."""
    try:
        data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    except OmegaConfBaseException as exc:  # an interpolation that does not resolve
        key = getattr(exc, "full_key", "") or ""
        raise ConfigError(f"{key}: {str(exc).splitlines()[0]}" if key else str(exc).splitlines()[0]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc.errors()[0], model)) from None


def describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    """One line for one pydantic error: the key, what it must be, the value it got."""
    keys, field, siblings = _walk(model, error["loc"])
    key = ".".join(keys)
    kind, value = error["type"], error.get("input")
    if kind == "value_error":  # a rule of the model's own: its message names the key, or gets it here
        message = str(error["msg"]).removeprefix("Value error, ")
        if message.startswith("."):  # a key below this model's: ".alpha: ..." -> "optimizer.alpha: ..."
            return key + message
        return message if re.match(r"^[\w.\[\]]+: ", message) else f"{key}: {message}"
    if kind == "extra_forbidden":
        parent = key.rpartition(".")[0]
        close = close_keys(key, [f"{parent}.{c}" if parent else c for c in siblings])
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"{key}: no such key{hint}"
    if kind == "missing":
        return f"{key}: required, and not set"
    if kind == "literal_error":
        choices = [str(c) for c in typing.get_args(_unwrap(field.annotation))] if field is not None else []
        choices = [c for c in choices if c != "None"]
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"{key}: must be one of {', '.join(choices)}, got {value!r}{hint}"
    return f"{key}: must be {allowed(field)}, got {value!r}"


def allowed(field: FieldInfo | None) -> str:
    """What a field accepts, in words: 'in (0, 1]', 'an integer >= 1 (or null: ...)'."""
    if field is None:
        return "valid"
    bounds = {k: getattr(m, k) for m in field.metadata for k in ("gt", "ge", "lt", "le", "min_length") if hasattr(m, k)}
    low = f"({bounds['gt']:g}" if "gt" in bounds else f"[{bounds['ge']:g}" if "ge" in bounds else None
    high = f"{bounds['lt']:g})" if "lt" in bounds else f"{bounds['le']:g}]" if "le" in bounds else None
    base = _unwrap(field.annotation)
    kind = {int: "an integer", bool: "true or false", str: "a string"}.get(base, "")  # a float: just the range
    if typing.get_origin(base) is list:
        length = bounds.get("min_length")
        kind = f"a list of at least {length} item{'s' if length != 1 else ''}" if length else "a list"
    if low and high:
        text = f"{kind} in {low}, {high}".strip()
    elif low:
        text = f"{kind} {'>' if low[0] == '(' else '>='} {low[1:]}".strip()
    elif high:
        text = f"{kind} {'<' if high[-1] == ')' else '<='} {high[:-1]}".strip()
    else:
        text = kind or "valid"
    if _optional(field.annotation):
        text += f" (or null{': ' + field.description.removeprefix('null: ') if field.description else ''})"
    return text


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _unwrap(annotation: Any) -> Any:
    """``int | None`` -> int, ``Annotated[int, ...]`` -> int."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        return _unwrap(args[0])
    return annotation


def _members(annotation: Any) -> dict[str, Any]:
    """The tagged members of a ``by_target`` union, by tag."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    found = {}
    for member in typing.get_args(annotation):
        if typing.get_origin(member) is Annotated:
            inner, *meta = typing.get_args(member)
            tags = {m.tag: inner for m in meta if isinstance(m, Tag)}
            found.update(tags or _members(inner))  # no tag: a union inside an Optional
        elif member is not type(None):
            found.update(_members(member))
    return found


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str], FieldInfo | None, list[str]]:
    """Follow a pydantic error location through the models: the config keys (union tags dropped),
    the FieldInfo at the end, and the keys beside the last one (for "did you mean")."""
    keys: list[str] = []
    node: Any = model
    field: FieldInfo | None = None
    siblings: list[str] = []
    for part in loc:
        tagged = _members(node) if not (isinstance(node, type) and issubclass(node, BaseModel)) else {}
        if part in tagged:  # a union's tag: the model it chose
            node = tagged[part]
            continue
        if isinstance(node, type) and issubclass(node, BaseModel):
            fields = node.model_fields
            siblings = [f.alias or name for name, f in fields.items()]
            name = next((n for n, f in fields.items() if part in (n, f.alias)), None)
            keys.append(str(part))
            field = fields[name] if name else None
            node = field.annotation if field else None
            continue
        # a dict key or a list index: the element's own constraints, if it has any
        keys[-1:] = [f"{keys[-1]}[{part}]"] if isinstance(part, int) and keys else [*keys[-1:], str(part)]
        args = typing.get_args(_unwrap(node))
        node = args[-1] if args else None
        field = FieldInfo.from_annotation(node) if node is not None else None
    return keys, field, siblings


def validate_train_config(cfg: DictConfig) -> TrainConfig:
    """A composed train config checked against ``TrainConfig`` (no env is built here)."""
    return validate(TrainConfig, cfg)


def check_network_fits(network: Any, factory: Any) -> None:
    """The network config must suit the env's spaces (which only the built env factory knows)."""
    import gymnasium as gym

    obs, act = factory.observation_space, factory.action_space  # spaces acx can read (acx.envs.factory.check_spaces)
    if isinstance(obs, gym.spaces.Dict):  # network=mlp and lstm give each key an encoder of its own (DictEncoder)
        if isinstance(network, CnnNetwork):
            raise ConfigError(f"network: {factory.id} has Dict observations: use network=mlp (an encoder per key)")
    # a Dict's keys reach the MLP as one flat vector, from the encoders
    shape = (1,) if isinstance(obs, gym.spaces.Dict) else tuple(obs.shape or ())
    seen = f"{factory.id} observations have shape {shape}"
    if isinstance(network, CnnNetwork):
        if len(shape) != 3:
            raise ConfigError(f"network: network=cnn needs image observations (C, H, W); {seen}: use network=mlp")
        if isinstance(act, gym.spaces.Box):
            raise ConfigError(f"network: network=cnn supports discrete actions only; {factory.id} has {act}")
    if isinstance(network, (MlpNetwork, LstmNetwork)):
        if len(shape) != 1:
            if isinstance(network, LstmNetwork):
                raise ConfigError(f"network: network={network.cell} reads flat vector or Dict observations; {seen}")
            raise ConfigError(f"network: network=mlp needs flat vector observations; {seen}: use network=cnn")
        if not isinstance(act, gym.spaces.Box):
            default = Gaussian()
            changed = sorted(k for k in Gaussian.model_fields if getattr(network.gaussian, k) != getattr(default, k))
            if changed:
                raise ConfigError(
                    f"network.gaussian.{changed[0]}: applies to continuous (Box) action spaces only; "
                    f"{factory.id} has {act}"
                )
