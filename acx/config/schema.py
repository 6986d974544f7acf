"""The run schema: one declaration of every key's type and range, from which validation follows.

``conf/`` holds the values (the defaults and presets); the pydantic models here say which values are
allowed. ``validate_train_config`` (``acx.config.checks``) checks a composed ``acx train`` config against
them before any env, logger or file exists, and reports the first mistake as one line naming the key, the
value and the allowed range or choices (``acx.config.messages``). The builders trust what passed and do
not check again. ``acx eval`` and ``acx report`` arguments go through the same path.

A group whose ``_target_`` names an acx builder is checked against that builder's model; a
``_target_`` of the user's own is only checked to import, and its keys go to it unchecked.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from acx.config.messages import close_keys
from acx.names import ACTIVATIONS, INITS, OBJECTIVES, VALUE_LOSSES


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
    activation: Literal[tuple(ACTIVATIONS)] = "tanh"
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
    activation: Literal[tuple(ACTIVATIONS)] = "tanh"
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
