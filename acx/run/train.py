"""``train(cfg)``: collect -> estimate -> update -> record -> maybe evaluate -> maybe checkpoint ->
maybe stop, until the step budget is spent or the stop rule is met.

One loop serves every algorithm variant: they differ only in ``algo.n_steps``/``algo.num_envs`` (when
to learn), ``algo.advantage`` (which target), and for PPO ``algo.loss`` (the clipped surrogate) and
``algo.epochs``/``algo.minibatches`` (shuffled minibatch steps per rollout). ``open_run`` builds what
the config names into a ``Run``; the run's state (network, optimizers, progress) is one ``RunState``
that checkpoints save and ``acx.run.checkpoint.restore`` restores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

import acx
from acx.algo.update import Updater
from acx.config import TrainConfig, check_network_fits, validate_train_config
from acx.errors import ConfigError, NonFiniteError, OutputWriteError
from acx.run.build import build_env_factory, build_estimator, build_network, build_optimizers, seed_everything
from acx.run.checkpoint import (
    CheckpointWriter,
    Progress,
    RunState,
    check_fits_env,
    load_checkpoint,
    restore,
    space_to_dict,
)
from acx.run.evaluate import Evaluator
from acx.run.loggers import JsonlLogger, LoggerGroup, build_loggers
from acx.run.record import Every, MetricsWindow
from acx.run.rollout import Rollout, RolloutCollector
from acx.run.signals import Interrupted, StopSignals, requeued_checkpoint
from acx.run.stopping import StopRule

# errors that mean the run's outputs cannot be written (a full disk or quota, a lost or read-only mount)
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def train(cfg: DictConfig, on_eval: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train from a composed config; write checkpoints, metrics.jsonl and summary.json; return the summary.

    ``on_eval(env_step, eval_return_mean)`` is called after each periodic evaluation (an Optuna trial
    reports it there, and raises ``optuna.TrialPruned`` to stop the run)."""
    started = time.perf_counter()
    config = validate_train_config(cfg)  # before any training env, logger or file exists
    factory, resume = prepare(cfg, config)
    seed_everything(config.seed)
    run = None
    try:
        with contextlib.ExitStack() as resources:  # every path out closes what was opened
            run = open_run(cfg, config, factory, resume, resources, started)
            state, p = run.state, run.state.progress
            evals = Every(config.eval.every_steps, p.env_steps)
            saves = Every(config.checkpoint.every_steps, p.env_steps)
            solved = p.solved_at_step is not None and run.stop.stops_early  # a solved run resumed stays solved
            run.mark_started()
            while p.env_steps < config.total_steps and not solved:
                rollout = run.collector.collect()  # collect
                advantages, returns = run.estimate(rollout)  # estimate
                stats = run.update(rollout, advantages, returns)  # update
                run.record(rollout, stats)  # record
                solved = run.stop.observe_episodes(rollout.episode_returns)
                if evals.due(p.env_steps):  # maybe evaluate
                    solved = run.evaluator.passes(state, run.stop) or solved
                    if on_eval is not None:
                        on_eval(p.env_steps, p.eval_return)
                if saves.due(p.env_steps):  # maybe checkpoint
                    run.ckpts.save_periodic(state, run.wall())
                if run.signals.received is not None:  # maybe stop
                    run.interrupted()
            if solved and p.solved_at_step is None:
                p.solved_at_step = p.env_steps
            if run.evaluator.last_step != p.env_steps:
                run.evaluator.evaluate(state)  # the final model is always evaluated (unless it just was)
            final = run.ckpts.save("final", state, run.wall())
            models = [f for f in (run.ckpts.folder / "best.pt", final) if f.exists()]
            run.loggers.log_files("model", models, p.env_steps)
        return run.finish(final)
    except OSError as exc:
        if exc.errno not in WRITE_FAILURES:
            raise
        raise write_failure(exc, run, Path(config.paths.output_dir)) from None


def prepare(cfg: DictConfig, config: TrainConfig) -> tuple[Any, dict[str, Any] | None]:
    """The env factory (spaces known) and the checkpoint to resume from, both checked against the
    config, and the run folder; one line and nothing written if any of them does not fit."""
    factory = build_env_factory(cfg.env)  # an env id Gymnasium does not know is a ConfigError
    check_network_fits(config.network, factory)
    if config.normalize.obs and getattr(factory.observation_space, "dtype", None) == np.uint8:
        raise ConfigError("normalize.obs: the observations are uint8 images, which network=cnn scales to [0, 1] itself")
    resume = None
    out_dir = Path(config.paths.output_dir)
    requeued = None if config.resume else requeued_checkpoint(out_dir)  # a SLURM job requeued mid-run
    if config.resume or requeued:
        resume = load_checkpoint(config.resume or requeued, map_location="cpu")
        check_fits_env(resume, factory)
        if requeued:
            step, restarts = resume["meta"]["progress"]["env_steps"], os.environ["SLURM_RESTART_COUNT"]
            print(f"acx: SLURM requeued this job (restart {restarts}): continuing {resume['path']}, env step {step:,}")
    if not resume and list((out_dir / "checkpoints").glob("*.pt")):
        raise ConfigError(
            f"hydra.run.dir={out_dir} already holds another run's checkpoints: continue it with "
            f"resume={out_dir}, or choose another folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return factory, resume


@dataclasses.dataclass
class Clock:
    """The run's wall time: this process's part since ``started``, plus earlier segments of a resumed run."""

    state: RunState
    started: float  # perf_counter at the start of train()

    def __call__(self) -> float:
        return self.state.progress.wall_seconds + time.perf_counter() - self.started


@dataclasses.dataclass
class Run:
    """A training run's parts, built by ``open_run``; the loop in ``train`` steps them. A population
    member (``acx.run.population``) has the recording parts only: the population collects and learns."""

    cfg: TrainConfig
    factory: Any
    state: RunState
    stop: StopRule
    loggers: LoggerGroup
    ckpts: CheckpointWriter
    evaluator: Evaluator
    window: MetricsWindow
    wall: Clock
    collector: RolloutCollector | None = None
    estimator: Callable[..., tuple[Tensor, Tensor]] | None = None
    updater: Updater | None = None
    lr_schedule: Callable[[float], float] | None = None
    signals: StopSignals | None = None
    startup_seconds: float | None = None
    setup_seconds: float = 0.0

    def mark_started(self) -> None:
        # start-up: process start (imports, config, envs, network, loggers) to the first env step
        self.startup_seconds = seconds_since_process_start()
        self.setup_seconds = time.perf_counter() - self.wall.started  # the part of it spent inside train()

    def estimate(self, rollout: Rollout) -> tuple[Tensor, Tensor]:
        """The variant's advantages and return targets for one rollout (rewards scaled first)."""
        algo, net = self.cfg.algo, self.state.net
        rewards = rollout.rewards
        if net.reward_norm is not None:  # normalize.reward: divided by the running std of the return
            rewards = net.reward_norm(rewards, rollout.done, rollout.valid, algo.gamma)
        rewards = rewards * algo.reward_scale if algo.reward_scale != 1.0 else rewards
        return self.estimator(
            rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done, gamma=algo.gamma
        )

    def update(self, rollout: Rollout, advantages: Tensor, returns: Tensor) -> dict[str, Any]:
        """One gradient step at the lr the schedule gives for the steps done; counts the rollout in."""
        p = self.state.progress
        if self.lr_schedule is not None:
            self.updater.scale_lr(self.lr_schedule(p.env_steps / self.cfg.total_steps))
        try:
            # the costlier diagnostics only on updates that get logged
            stats = self.updater.step(rollout, advantages, returns, diagnostics=self.window.due(p.updates + 1))
        except NonFiniteError as exc:
            last = self.ckpts.last_saved or "none yet"
            raise NonFiniteError(f"{exc} at env step {p.env_steps:,}; last good checkpoint: {last}") from None
        if self.state.net.obs_norm is not None:  # normalize.obs: the next rollout sees this one's statistics too
            self.state.net.obs_norm.update(rollout.obs, rollout.valid)
        p.env_steps += rollout.num_transitions
        p.updates += 1
        p.episodes += len(rollout.episode_returns)
        return stats

    def record(self, rollout: Rollout, stats: dict[str, Any]) -> None:
        """The rollout's episodes into the window; a log row every ``log.every_updates`` updates."""
        p = self.state.progress
        self.window.add(rollout, p)
        if self.window.due(p.updates):
            self.loggers.log(self.window.row(stats, p), p.env_steps, self.wall())

    def interrupted(self) -> None:
        """A signal arrived: save, say how to resume, and stop with 128 + the signal number."""
        path = self.ckpts.save_periodic(self.state, self.wall())
        self.window.close()
        step, out_dir = self.state.progress.env_steps, self.cfg.paths.output_dir
        print(f"acx: interrupted at env step {step:,}; resume with: acx train resume={out_dir}")
        raise Interrupted(self.signals.received, str(path))

    def finish(self, final: Path | None, error: str | None = None) -> dict[str, Any]:
        """Write ``summary.json``, print the run's last line, return the summary. ``error``: why a
        population member stopped without a final checkpoint (a non-finite loss: exit 3 for a single run)."""
        p, cfg = self.state.progress, self.cfg
        confirm = (cfg.eval.confirm_episodes or 0) if self.stop.name == "eval_threshold" else 0
        summary = {
            "env_id": self.factory.id,
            "algo": cfg.algo.name,
            "seed": cfg.seed,
            "solved": p.solved_at_step is not None,
            "solved_at_step": p.solved_at_step,
            "stop_rule": self.stop.describe() + (f", confirmed over {confirm} more episodes" if confirm else ""),
            "env_steps": p.env_steps,
            "episodes": p.episodes,
            "updates": p.updates,
            "wall_seconds": round(self.wall(), 3),
            "setup_seconds": round(self.setup_seconds, 3),  # of wall_seconds: building envs, network, loggers
            "startup_seconds": round(self.startup_seconds, 3) if self.startup_seconds is not None else None,
            "best_eval_return": p.best_eval_return,
            "final_eval_return": p.eval_return,
            "checkpoint": str(final or self.ckpts.last_saved or ""),
        }
        if error is not None:
            summary["error"] = error
        (Path(cfg.paths.output_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
        where = f"in {summary['wall_seconds']:.1f} s; checkpoint: {summary['checkpoint'] or 'none'}"
        if error is not None:
            print(f"acx: {cfg.paths.output_dir}: {error}")
        elif p.solved_at_step is not None:
            print(
                f"acx: solved {self.factory.id} at env step {p.solved_at_step:,} ({summary['stop_rule']}; "
                f"final eval {p.eval_return:.1f}) {where}"
            )
        else:
            print(
                f"acx: not solved in {p.env_steps:,} env steps (best eval {p.best_eval_return:.1f}, "
                f"final eval {p.eval_return:.1f}) {where}"
            )
        return summary


def open_run(
    cfg: DictConfig,
    config: TrainConfig,
    factory,
    resume: dict[str, Any] | None,
    resources: contextlib.ExitStack,
    started: float,
) -> Run:
    """Build everything the config names, in the order the RNGs expect; each resource is registered
    with ``resources`` as soon as it exists, so an error while building closes what was built."""
    device = instantiate(cfg.device)
    algo = config.algo
    # a resumed run restarts its envs on fresh episodes, seeded by where it stopped
    start_step = resume["meta"]["progress"]["env_steps"] if resume else 0
    envs = factory.make_vector(algo.num_envs, seed=config.seed + start_step)
    resources.callback(envs.close)
    net = build_network(cfg.network, factory, device, cfg.get("normalize"))
    state = RunState(net, build_optimizers(cfg.optimizer, net), Progress())
    if resume:
        restore(state, resume)
    run = open_records(cfg, config, factory, state, device, resources, started, resume)
    loss = instantiate(cfg.algo.loss)
    keep_log_probs = getattr(loss, "needs_old_log_probs", False)  # PPO's ratio: log pi_old(a|s) from collection
    run.collector = RolloutCollector(
        envs, net, algo.n_steps, device, factory.env_actions, store_log_probs=keep_log_probs
    )
    run.estimator = build_estimator(cfg.algo.advantage)
    # epochs x minibatches gradient steps per rollout (PPO); 1 x 1: one step on the whole rollout
    run.updater = Updater(
        net, state.optimizers, loss, algo.max_grad_norm, algo.epochs, algo.minibatches, algo.target_kl
    )
    # conf/lr_schedule: a multiplier of the optimizers' lr as a function of the fraction of total_steps done
    run.lr_schedule = instantiate(cfg.lr_schedule) if cfg.get("lr_schedule") else None
    run.signals = resources.enter_context(StopSignals())
    return run


def open_records(
    cfg: DictConfig,
    config: TrainConfig,
    factory,
    state: RunState,
    device,
    resources: contextlib.ExitStack,
    started: float,
    resume: dict[str, Any] | None = None,
    show_bar: bool | None = None,
) -> Run:
    """A run's recording parts for ``state``: checkpoints, loggers, the evaluator, the stop rule and
    the metrics window (what a single run and a population member each have of their own)."""
    out_dir = Path(config.paths.output_dir)
    clock = Clock(state, started)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    static = {
        "config": resolved,
        "env_id": factory.id,
        # a user's env module (env.id=module:EnvId): the folder it was imported from, for acx eval
        "env_module_path": str(factory.module_path) if getattr(factory, "module_path", None) else None,
        "observation_space": space_to_dict(factory.observation_space),
        "action_space": space_to_dict(factory.action_space),
        "acx_version": acx.__version__,
    }
    last = Path(resume["path"]) if resume else None
    ckpts = CheckpointWriter(out_dir / "checkpoints", config.checkpoint.keep, static, last_saved=last)
    jsonl = JsonlLogger(out_dir / "metrics.jsonl", resume_step=state.progress.env_steps if resume else None)
    loggers = LoggerGroup([jsonl])
    resources.callback(loggers.close)
    loggers.loggers += build_loggers(cfg.get("logger"), out_dir, resolved)  # conf/logger: W&B, TensorBoard
    evaluator = Evaluator(
        factory, config.eval.episodes, config.eval.confirm_episodes or 0, config.eval.deterministic, config.seed,
        device, ckpts, loggers, clock, config.eval.video_every_steps, out_dir / "videos", state.progress.env_steps,
    )  # fmt: skip
    resources.callback(evaluator.close)
    stop = instantiate(cfg.stop, default_threshold=factory.reward_threshold)
    show_bar = config.progress if show_bar is None else show_bar
    window = MetricsWindow(state.progress, config.total_steps, config.log.every_updates, show_bar)
    resources.callback(window.close)
    return Run(config, factory, state, stop, loggers, ckpts, evaluator, window, clock)


def write_failure(exc: OSError, run: Run | None, out_dir: Path) -> OutputWriteError:
    """A full disk (or a lost mount) mid-run: one line with the last whole checkpoint and how to resume."""
    where = f" at env step {run.state.progress.env_steps:,}" if run is not None else ""
    last = run.ckpts.last_saved if run is not None and run.ckpts.last_saved else "none yet"
    target = f" {exc.filename}" if exc.filename else ""
    return OutputWriteError(
        f"could not write{target} ({exc.strerror or exc}){where}; last good checkpoint: {last}; "
        f"once there is room, resume with: acx train resume={out_dir}"
    )


def seconds_since_process_start() -> float | None:
    """How long this process has run (Linux /proc; None elsewhere): start-up cost, imports included."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time, ticks after boot
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None
