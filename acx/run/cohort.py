"""A cohort: P >= 1 runs (members) trained together in one loop. ``acx train`` is a cohort of one; the
population launcher runs cohorts of many, whose members differ in their seeds and in the
hyperparameters that may differ (``acx.sweep.grouping.MEMBER_KEYS``).

A member has everything a run has of its own: its config, envs (seeded as ``acx train seed=s`` seeds
them), initial weights (those of ``acx train seed=s``, or the ones it resumes), a torch generator for
its sampling and shuffling (continuing the stream a run alone would draw from), progress, evaluations,
stop rule, checkpoints, metrics and loggers, in its own run folder. Its checkpoints are single runs':
``acx eval`` replays them and ``acx train resume=`` continues one alone or in another cohort. What the
members share is the computation: one learner (``acx.algo.update``: stacked networks, optimizers with
one lr per member), one collector over their joined envs (``acx.envs.join``).

The loop (``Cohort.step``): collect -> estimate -> update -> record -> maybe evaluate -> maybe
checkpoint -> maybe stop. A member leaves when it solves, spends its budget, goes non-finite or is
pruned: its rows leave the learner, the collector and the envs, so it costs nothing more; a member
that joins (``join``, refilling a freed slot) takes a new row with fresh state.
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
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import acx
from acx.algo.networks import ActorCritic
from acx.config import TrainConfig, check_network_fits, validate_train_config
from acx.envs.join import JoinedEnvs
from acx.errors import ConfigError, NonFiniteError, OutputWriteError
from acx.run.build import build_env_factory, build_learner, build_network, member_hyper, seed_everything
from acx.run.checkpoint import (
    CheckpointWriter,
    Progress,
    RunState,
    check_fits_env,
    load_checkpoint,
    load_weights,
    rng_state,
    set_rng_state,
    space_to_dict,
)
from acx.run.evaluate import Evaluator, play_together
from acx.run.loggers import JsonlLogger, LoggerGroup, build_loggers
from acx.run.record import Every, MetricsWindow
from acx.run.rollout import RolloutCollector
from acx.run.signals import Interrupted, StopSignals, requeued_checkpoint
from acx.run.stopping import StopRule

# errors that mean the run's outputs cannot be written (a full disk or quota, a lost or read-only mount)
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


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
    """A run's wall time: this process's part since ``started``, plus earlier segments of a resumed run."""

    progress: Progress
    started: float  # perf_counter when the member was opened

    def __call__(self) -> float:
        return self.progress.wall_seconds + time.perf_counter() - self.started


def seconds_since_process_start() -> float | None:
    """How long this process has run (Linux /proc; None elsewhere): start-up cost, imports included."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time, ticks after boot
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None


@dataclasses.dataclass
class Member:
    """One run of a cohort: its config, envs, records, sampling generator and how it ended."""

    index: int  # its place in the list of jobs
    cfg: DictConfig
    config: TrainConfig
    factory: Any
    progress: Progress
    net: ActorCritic  # its network as opened (initial or resumed weights): what it brings to the learner
    envs: Any
    generator: torch.Generator  # its sampling and shuffling stream
    stop: StopRule
    loggers: LoggerGroup
    ckpts: CheckpointWriter
    evaluator: Evaluator
    window: MetricsWindow
    wall: Clock
    resources: contextlib.ExitStack  # its envs, loggers and evaluator: closed when it leaves
    optimizer_states: dict[str, dict] | None = None  # a resumed member's
    on_eval: Callable[[int, float], None] | None = None
    evals: Every | None = None
    saves: Every | None = None
    solved: bool = False
    result: Any = None  # its summary, or the exception it ended with
    startup_seconds: float | None = None
    setup_seconds: float = 0.0

    def started(self) -> None:
        # start-up: process start (imports, config, envs, network, loggers) to the first env step
        self.startup_seconds = seconds_since_process_start()
        self.setup_seconds = time.perf_counter() - self.wall.started  # the part of it spent opening the member

    def rng(self) -> dict[str, Any]:
        """The RNG states its checkpoints save: its own torch generator (on CPU; a checkpoint holds no
        CUDA RNG state), and the process's others."""
        saved = rng_state()
        if self.generator.device.type == "cpu":
            saved["torch"] = self.generator.get_state()
        return saved

    def finish(self, final: Path | None, error: str | None = None) -> dict[str, Any]:
        """Write ``summary.json``, print the run's last line, return the summary. ``error``: why it
        stopped without a final checkpoint (a non-finite loss)."""
        p, cfg = self.progress, self.config
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


def open_member(
    index: int,
    cfg: DictConfig,
    on_eval: Callable[[int, float], None] | None,
    resources: contextlib.ExitStack,
    show_bar: bool | None = None,
) -> Member:
    """A member's envs, network (the initial weights of ``acx train seed=s``, or its checkpoint's),
    sampling generator and records, built in a single run's order for its seed; what it opens closes
    when it leaves (or with ``resources``). Bad input is a ConfigError before anything is written."""
    started = time.perf_counter()
    config = validate_train_config(cfg)  # before any training env, logger or file exists
    factory, resume = prepare(cfg, config)
    own = resources.enter_context(contextlib.ExitStack())
    seed_everything(config.seed)
    device = instantiate(cfg.device)
    # a resumed run restarts its envs on fresh episodes, seeded by where it stopped
    start_step = resume["meta"]["progress"]["env_steps"] if resume else 0
    envs = factory.make_vector(config.algo.num_envs, seed=config.seed + start_step)
    own.callback(envs.close)
    net = build_network(cfg.network, factory, device, cfg.get("normalize"))
    progress = Progress()
    if resume:
        load_weights(net, resume)
        progress = Progress(**resume["meta"]["progress"])
        set_rng_state(resume["rng"])
    generator = torch.Generator(device=device)  # where a run alone would start drawing: the torch RNG now
    generator.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    out_dir = Path(config.paths.output_dir)
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
    jsonl = JsonlLogger(out_dir / "metrics.jsonl", resume_step=progress.env_steps if resume else None)
    loggers = LoggerGroup([jsonl])
    own.callback(loggers.close)
    loggers.loggers += build_loggers(cfg.get("logger"), out_dir, resolved)  # conf/logger: W&B, TensorBoard
    clock = Clock(progress, started)
    evaluator = Evaluator(
        factory, config.eval.episodes, config.eval.confirm_episodes or 0, config.eval.deterministic, config.seed,
        device, ckpts, loggers, clock, config.eval.video_every_steps, out_dir / "videos", progress.env_steps,
    )  # fmt: skip
    own.callback(evaluator.close)
    stop = instantiate(cfg.stop, default_threshold=factory.reward_threshold)
    window = MetricsWindow(progress, config.total_steps, config.log.every_updates,
                           config.progress if show_bar is None else show_bar)  # fmt: skip
    own.callback(window.close)
    member = Member(
        index, cfg, config, factory, progress, net, envs, generator, stop, loggers, ckpts, evaluator, window, clock,
        own, optimizer_states=resume["optimizers"] if resume else None, on_eval=on_eval,
    )  # fmt: skip
    member.evals = Every(config.eval.every_steps, progress.env_steps)
    member.saves = Every(config.checkpoint.every_steps, progress.env_steps)
    member.solved = progress.solved_at_step is not None and stop.stops_early  # a solved run resumed stays solved
    return member


class Cohort:
    """The members, their learner and the collector over their joined envs; ``step`` is one iteration
    of the loop for every member, ``join`` takes in a member that refills a freed slot."""

    def __init__(self, members: list[Member]):
        lead = members[0]
        algo = lead.config.algo
        self.device = lead.evaluator.device
        self.factory = lead.factory
        self.learner = build_learner([m.cfg for m in members], [m.net for m in members], [m.generator for m in members])
        for k, m in enumerate(members):
            if m.optimizer_states is not None:
                self.learner.load_member(k, m.optimizer_states)
        self.members = list(members)
        self.envs = self._join()
        keep_log_probs = getattr(self.learner.loss_fn, "needs_old_log_probs", False)  # PPO's ratio
        self.collector = RolloutCollector(
            self.envs, self.learner, len(members), algo.n_steps, self.device, self.factory.env_actions,
            store_log_probs=keep_log_probs,
        )  # fmt: skip
        for m in members:
            m.started()

    def _join(self) -> JoinedEnvs:
        return JoinedEnvs([m.envs for m in self.members], make=lambda n: self.factory.make_vector(n))

    def state(self, row: int) -> RunState:
        """Member ``row``'s state as its checkpoints hold it."""
        model, optimizers = self.learner.member_state(row)
        m = self.members[row]
        return RunState(model, optimizers, m.progress, m.rng())

    # --- the loop -----------------------------------------------------------------------------------

    def step(self, signals: StopSignals) -> list[Member]:
        """One iteration for every member: collect -> estimate -> update -> record -> maybe evaluate ->
        maybe checkpoint -> maybe stop. Returns the members that stopped (and left)."""
        members, learner = self.members, self.learner
        learner.scale_lr([m.progress.env_steps / m.config.total_steps for m in members])
        rollout = self.collector.collect()  # collect
        rows = rollout.rows
        advantages, returns = learner.estimate(
            rows, rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done, rollout.valid
        )  # estimate
        # the costlier diagnostics only on updates that get logged
        diagnostics = any(members[r].window.due(members[r].progress.updates + 1) for r in rows)
        stats, failed = learner.update(rollout.batch(advantages, returns), rows, diagnostics)  # update
        learner.observe(rows, rollout.obs, rollout.valid)  # normalize.obs: the next rollout sees this one's too
        for i, (r, steps, (ep_returns, ep_lengths)) in enumerate(
            zip(rows, rollout.transitions(), rollout.episodes, strict=True)
        ):  # record
            m = members[r]
            if r in failed:
                last = m.ckpts.last_saved or "none yet"
                m.result = NonFiniteError(
                    f"{failed[r]} at env step {m.progress.env_steps:,}; last good checkpoint: {last}"
                )
                continue
            p = m.progress
            p.env_steps += int(steps)
            p.updates += 1
            p.episodes += len(ep_returns)
            m.window.add(ep_returns, ep_lengths, p)
            if m.window.due(p.updates):
                m.loggers.log(m.window.row(stats[i], p), p.env_steps, m.wall())
            m.solved = m.stop.observe_episodes(ep_returns) or m.solved
        self.evaluate_due([r for r in rows if r not in failed])  # maybe evaluate
        for r in rows:  # maybe checkpoint
            m = members[r]
            if m.result is None and m.saves.due(m.progress.env_steps):
                m.ckpts.save_periodic(self.state(r), m.wall())
        if signals.received is not None:  # maybe stop
            self.interrupted(signals)
        return self.finish_done()

    def evaluate_due(self, rows: list[int]) -> None:
        """Evaluate the members whose eval cadence is due, their episodes (and then the confirmation
        episodes of those that met the stop rule) played at once; each evaluation is recorded as a
        single run's (logged, best.pt, video, confirmation, stop rule, Optuna report)."""
        due = [r for r in rows if self.members[r].evals.due(self.members[r].progress.env_steps)]
        confirm = []
        for r, eval_return in zip(due, self.evaluate(due), strict=True):
            m = self.members[r]
            if m.stop.observe_eval(eval_return):
                if m.evaluator.confirm_episodes > 0:
                    confirm.append(r)
                else:
                    m.solved = True
        for count in sorted({self.members[r].evaluator.confirm_episodes for r in confirm}):
            group = [r for r in confirm if self.members[r].evaluator.confirm_episodes == count]
            envs = [self.factory.make_vector(count) for _ in group]
            try:
                seeds = [self.members[r].evaluator.confirm_seed(self.members[r].progress) for r in group]
                for r, (returns, _) in zip(group, self.play(group, envs, seeds), strict=True):
                    m = self.members[r]
                    m.solved = m.evaluator.confirmed(m.progress, m.stop, returns) or m.solved
            finally:
                for e in envs:
                    e.close()
        for r in due:
            m = self.members[r]
            if m.on_eval is not None:
                try:
                    m.on_eval(m.progress.env_steps, m.progress.eval_return)
                except Exception as exc:  # optuna.TrialPruned: this member stops, as a pruned run alone does
                    m.result = exc

    def play(self, rows: list[int], envs: list[Any], seeds: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One episode in each env of ``envs[i]`` (member ``rows[i]``'s), all played at once."""
        deterministic = self.members[rows[0]].evaluator.deterministic
        with self.learner.acting(rows):
            return play_together(lambda obs: self.learner.action(obs, deterministic), envs, seeds, self.device,
                                 self.factory.env_actions, make=self.factory.make_vector)  # fmt: skip

    def evaluate(self, rows: list[int]) -> list[float]:
        """One evaluation of each member at ``rows``, their episodes played at once, each recorded as
        a single run's (logged, best.pt, video); returns their mean returns."""
        if not rows:
            return []
        members = [self.members[r] for r in rows]
        seeds = [m.evaluator.next_seed(m.progress) for m in members]
        played = self.play(rows, [m.evaluator.envs for m in members], seeds)
        return [
            m.evaluator.record(self.state(r), returns, lengths, lambda r=r: self.learner.member_net(r))
            for r, m, (returns, lengths) in zip(rows, members, played, strict=True)
        ]

    def finish_done(self) -> list[Member]:
        """The members that solved, spent their budget, failed or were pruned leave; those that finished
        get their final evaluation (at once, unless they were just evaluated), final checkpoint and summary."""
        done = [r for r, m in enumerate(self.members)
                if m.solved or m.progress.env_steps >= m.config.total_steps or m.result is not None]  # fmt: skip
        if not done:
            return []
        final = [r for r in done if self.members[r].result is None]
        self.evaluate([r for r in final if self.members[r].evaluator.last_step != self.members[r].progress.env_steps])
        for r in final:
            m = self.members[r]
            if m.solved and m.progress.solved_at_step is None:
                m.progress.solved_at_step = m.progress.env_steps
            path = m.ckpts.save("final", self.state(r), m.wall())
            models = [f for f in (m.ckpts.folder / "best.pt", path) if f.exists()]
            m.loggers.log_files("model", models, m.progress.env_steps)
            m.result = m.finish(path)
        for r in done:
            m = self.members[r]
            if isinstance(m.result, NonFiniteError):
                m.finish(None, error=str(m.result))
        left = [self.members[r] for r in done]
        self.leave(done)
        for m in left:
            m.resources.close()  # W&B and TensorBoard runs end as the member does
        return left

    def leave(self, rows: list[int]) -> None:
        """The members at ``rows`` leave: their rows of the learner, the collector and the envs go."""
        keep = [r for r in range(len(self.members)) if r not in rows]
        self.envs.detach()
        self.members = [self.members[r] for r in keep]
        if self.members:
            self.learner.regroup(keep)
            self.envs = self._join()
            self.collector.regroup(keep, self.envs)

    def join(self, member: Member) -> None:
        """``member`` joins (a freed slot refilled): a new row with its network, hyperparameters,
        generator and envs, fresh optimizer state (or the state it resumes)."""
        self.envs.detach()
        obs, _ = member.envs.reset()  # as a cohort of its own would start
        rows = [*range(len(self.members)), None]
        hyper = member_hyper(member.cfg, list(self.learner.optimizers))
        self.learner.regroup(rows, [member.net], [hyper], [member.generator])
        if member.optimizer_states is not None:
            self.learner.load_member(len(self.members), member.optimizer_states)
        self.members.append(member)
        self.envs = self._join()
        self.collector.regroup(rows, self.envs, [obs])
        member.started()

    def interrupted(self, signals: StopSignals) -> None:
        """A signal arrived: every member saves a checkpoint; each resumes as a run alone."""
        paths = []
        for r, m in enumerate(self.members):
            paths.append(str(m.ckpts.save_periodic(self.state(r), m.wall())))
            m.window.close()
        if len(self.members) == 1:
            (m,) = self.members
            where = m.config.paths.output_dir
            print(f"acx: interrupted at env step {m.progress.env_steps:,}; resume with: acx train resume={where}")
            raise Interrupted(signals.received, paths[0])
        folders = " ".join(str(m.config.paths.output_dir) for m in self.members)
        saved = f"{len(self.members)} members saved"
        print(f"acx: interrupted; {saved}; resume each with: acx train resume=<folder> ({folders})")
        raise Interrupted(signals.received, folders)


def write_failure(exc: OSError, member: Member | None, out_dir: Path) -> OutputWriteError:
    """A full disk (or a lost mount) mid-run: one line with the last whole checkpoint and how to resume."""
    where = f" at env step {member.progress.env_steps:,}" if member is not None else ""
    last = member.ckpts.last_saved if member is not None and member.ckpts.last_saved else "none yet"
    target = f" {exc.filename}" if exc.filename else ""
    return OutputWriteError(
        f"could not write{target} ({exc.strerror or exc}){where}; last good checkpoint: {last}; "
        f"once there is room, resume with: acx train resume={out_dir}"
    )
