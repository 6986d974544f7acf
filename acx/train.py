"""``train(cfg)``: build everything the config names, then collect -> estimate -> update, with
periodic evaluation, logging and checkpoints. One loop serves every algorithm variant: they differ
only in ``algo.n_steps``/``algo.num_envs`` (when to learn) and ``algo.advantage`` (which target)."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

import acx
from acx.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from acx.envs import space_to_dict
from acx.evaluate import evaluate_vector
from acx.loggers import JsonlLogger, LoggerGroup, build_loggers
from acx.networks import ActorCritic
from acx.rollout import RolloutCollector
from acx.signals import Interrupted, StopSignals
from acx.update import NonFiniteError, Updater, build_optimizers
from acx.validation import ConfigError, validate_train_config

EVAL_SEED_OFFSET = 1_000_000  # eval episodes start from states the training envs never use


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_env_factory(env_cfg: DictConfig):
    """The env factory that ``conf/env/*.yaml`` describes."""
    return instantiate(env_cfg)


def build_network(network_cfg: DictConfig, factory, device: torch.device, ckpt: dict | None = None) -> ActorCritic:
    """The network for the factory's spaces, with a checkpoint's weights if given."""
    net = instantiate(network_cfg, observation_space=factory.observation_space, action_space=factory.action_space)
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
    return net.to(device)


def plain_partial(fn: Callable) -> Callable:
    """A ``_partial_`` target that the loop calls on every update, as a plain ``functools.partial``.
    Hydra returns its own partial subclass, which re-runs Hydra's target policy on each call (~0.1 ms,
    ~6% of a CartPole update in a py-spy profile); the target was authorised when it was instantiated,
    and the loop only passes it tensors."""
    if isinstance(fn, functools.partial):
        return functools.partial(fn.func, *fn.args, **fn.keywords)
    return fn


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, in a form a weights-only checkpoint can hold."""
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "json": json.dumps(
            {
                "python": [py[0], list(py[1]), py[2]],
                "numpy": [np_state[0], np_state[1].tolist(), *(float(x) for x in np_state[2:])],
            }
        ),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    saved = json.loads(state["json"])
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))


def seconds_since_process_start() -> float | None:
    """How long this process has run (Linux /proc; None elsewhere): start-up cost, imports included."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time, ticks after boot
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None


def is_finite_model(net: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in net.parameters())


@dataclasses.dataclass
class Progress:
    """Where a run is: saved in every checkpoint, restored on resume."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    evals_done: int = 0
    best_eval_return: float = -float("inf")
    eval_return: float | None = None
    solved_at_step: int | None = None
    wall_seconds: float = 0.0  # of earlier segments of a resumed run


class CheckpointWriter:
    """Periodic (keeping the newest ``keep``), best and final checkpoints under ``run_dir/checkpoints``."""

    def __init__(self, folder: Path, keep: int, static: dict[str, Any]):
        self.folder, self.keep, self.static = folder, keep, static
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.tmp"):  # a write that a kill interrupted
            stale.unlink(missing_ok=True)
        self.periodic: deque[Path] = deque(sorted(folder.glob("step_*.pt")))
        self.last_saved: Path | None = None

    def save(self, name: str, net, optimizers, progress: Progress) -> Path:
        payload = {
            "model": net.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
            "rng": rng_state(),
            "meta": {**self.static, "progress": dataclasses.asdict(progress), "kind": name.split("_")[0]},
        }
        path = save_checkpoint(self.folder / f"{name}.pt", payload)
        if name.startswith("step_"):
            self.periodic.append(path)
            while len(self.periodic) > self.keep:
                self.periodic.popleft().unlink(missing_ok=True)
        if not name.startswith("best"):
            atomic_write(self.folder / "latest", lambda f: f.write(path.name.encode()))
        self.last_saved = path
        return path


def train(cfg: DictConfig, on_eval: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train from a composed config; write checkpoints, metrics.jsonl and summary.json; return the summary.

    ``on_eval(env_step, eval_return_mean)`` is called after each periodic evaluation (an Optuna trial
    reports it there, and raises ``optuna.TrialPruned`` to stop the run)."""
    start = time.perf_counter()
    factory = validate_train_config(cfg)  # before any training env, logger or file exists
    device = instantiate(cfg.device)
    resume = load_checkpoint(cfg.resume, map_location=device) if cfg.get("resume") else None
    out_dir = Path(cfg.paths.output_dir)
    if not resume and list((out_dir / "checkpoints").glob("*.pt")):
        raise ConfigError(
            f"hydra.run.dir={out_dir} already holds another run's checkpoints: continue it with "
            f"resume={out_dir}, or choose another folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(int(cfg.seed))
    algo = cfg.algo
    progress = Progress(**resume["meta"]["progress"]) if resume else Progress()
    # a resumed run restarts its envs on fresh episodes, seeded by where it stopped
    envs = factory.make_vector(int(algo.num_envs), seed=int(cfg.seed) + progress.env_steps)
    eval_envs = factory.make_vector(int(cfg.eval.episodes), seed=int(cfg.seed) + EVAL_SEED_OFFSET)
    net = build_network(cfg.network, factory, device, resume)
    optimizers = build_optimizers(cfg.optimizer, net)
    if resume:
        for name, opt in optimizers.items():
            opt.load_state_dict(resume["optimizers"][name])
        set_rng_state(resume["rng"])
    advantage_fn = plain_partial(instantiate(algo.advantage))
    updater = Updater(net, optimizers, instantiate(algo.loss), algo.max_grad_norm)
    # conf/lr_schedule: a multiplier of the optimizers' lr as a function of the fraction of total_steps done
    lr_schedule = instantiate(cfg.lr_schedule) if cfg.get("lr_schedule") else None
    collector = RolloutCollector(envs, net, algo.n_steps, device, factory.env_actions)
    stop = instantiate(cfg.stop, default_threshold=factory.reward_threshold)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    trackers = build_loggers(cfg.get("logger"), out_dir, resolved)  # conf/logger: W&B, TensorBoard
    jsonl = JsonlLogger(out_dir / "metrics.jsonl", resume_step=progress.env_steps if resume else None)
    loggers = LoggerGroup([jsonl, *trackers])
    ckpts = CheckpointWriter(
        out_dir / "checkpoints",
        int(cfg.checkpoint.keep),
        {
            "config": resolved,
            "env_id": factory.id,
            "observation_space": space_to_dict(factory.observation_space),
            "action_space": space_to_dict(factory.action_space),
            "acx_version": acx.__version__,
        },
    )
    if resume:
        ckpts.last_saved = Path(resume["path"])

    total_steps = int(cfg.total_steps)
    eval_every, ckpt_every = int(cfg.eval.every_steps), int(cfg.checkpoint.every_steps)
    log_every = int(cfg.log.every_updates)
    reward_scale = float(algo.reward_scale)
    gamma = algo.gamma  # read once: a DictConfig lookup per update costs ~2% of a CartPole update
    p = progress
    next_eval = (p.env_steps // eval_every + 1) * eval_every
    next_ckpt = (p.env_steps // ckpt_every + 1) * ckpt_every
    recent: deque[float] = deque(maxlen=100)
    window_returns: list[float] = []
    window_lengths: list[int] = []
    last_log_time, last_log_steps = time.perf_counter(), p.env_steps
    solved = False
    last_eval_step = -1

    def wall() -> float:
        return p.wall_seconds + time.perf_counter() - start

    def snapshot() -> Progress:
        return dataclasses.replace(p, wall_seconds=wall())

    def run_eval() -> float:
        # fresh start states for every evaluation: the same few would be passed by luck sooner or later
        nonlocal last_eval_step
        seed = int(cfg.seed) + EVAL_SEED_OFFSET + p.evals_done * 1000
        p.evals_done += 1
        last_eval_step = p.env_steps
        rets, lens = evaluate_vector(net, eval_envs, device, factory.env_actions, bool(cfg.eval.deterministic), seed)
        p.eval_return = float(rets.mean())
        metrics = {"eval/return_mean": p.eval_return, "eval/return_std": float(rets.std())}
        metrics["eval/length_mean"] = float(lens.mean())
        loggers.log(metrics, p.env_steps, wall())
        if p.eval_return > p.best_eval_return and is_finite_model(net):
            p.best_eval_return = p.eval_return
            ckpts.save("best", net, optimizers, snapshot())
        return p.eval_return

    def confirm_solved() -> bool:
        """A passing eval must hold over ``eval.confirm_episodes`` more episodes from new start states."""
        n = int(cfg.eval.confirm_episodes or 0)
        if n <= 0:
            return True
        confirm_envs = factory.make_vector(n)
        seed = int(cfg.seed) + 2 * EVAL_SEED_OFFSET + p.evals_done * 1000
        rets, _ = evaluate_vector(net, confirm_envs, device, factory.env_actions, bool(cfg.eval.deterministic), seed)
        confirm_envs.close()
        mean = float(rets.mean())
        loggers.log({"eval/confirm_return_mean": mean}, p.env_steps, wall())
        return stop.observe_eval(mean)

    bar = tqdm(
        total=total_steps,
        initial=min(p.env_steps, total_steps),
        unit="step",
        dynamic_ncols=True,
        disable=not cfg.progress,
        file=sys.stderr,
    )
    # start-up: process start (imports, config, envs, network, loggers) to the first env step
    startup_seconds = seconds_since_process_start()
    setup_seconds = time.perf_counter() - start  # the part of it spent inside train()
    try:
        with StopSignals() as signals:
            while p.env_steps < total_steps and not solved:
                rollout = collector.collect()
                rewards = rollout.rewards * reward_scale if reward_scale != 1.0 else rollout.rewards
                advantages, returns = advantage_fn(
                    rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done, gamma=gamma
                )
                if lr_schedule is not None:
                    updater.scale_lr(lr_schedule(p.env_steps / total_steps))
                try:
                    # the costlier diagnostics only on updates that get logged
                    stats = updater.step(rollout, advantages, returns, diagnostics=(p.updates + 1) % log_every == 0)
                except NonFiniteError as exc:
                    last = ckpts.last_saved or "none yet"
                    raise NonFiniteError(f"{exc} at env step {p.env_steps:,}; last good checkpoint: {last}") from None
                steps = rollout.num_transitions
                p.env_steps += steps
                p.updates += 1
                p.episodes += len(rollout.episode_returns)
                recent.extend(rollout.episode_returns)
                window_returns += rollout.episode_returns
                window_lengths += rollout.episode_lengths
                bar.update(steps)
                solved = stop.observe_episodes(rollout.episode_returns)

                if p.updates % log_every == 0:
                    now = time.perf_counter()
                    metrics = {k: float(v) for k, v in stats.items()}
                    metrics["time/sps"] = (p.env_steps - last_log_steps) / max(now - last_log_time, 1e-9)
                    if window_returns:
                        metrics["train/episode_return"] = float(np.mean(window_returns))
                        metrics["train/episode_length"] = float(np.mean(window_lengths))
                    loggers.log(metrics, p.env_steps, wall())
                    bar.set_postfix(
                        sps=f"{metrics['time/sps']:.0f}",
                        ret=f"{np.mean(recent):.1f}" if recent else "-",
                        eval=f"{p.eval_return:.1f}" if p.eval_return is not None else "-",
                        refresh=False,
                    )
                    window_returns, window_lengths = [], []
                    last_log_time, last_log_steps = now, p.env_steps

                if p.env_steps >= next_eval:
                    next_eval = (p.env_steps // eval_every + 1) * eval_every
                    solved = (stop.observe_eval(run_eval()) and confirm_solved()) or solved
                    if on_eval is not None:
                        on_eval(p.env_steps, p.eval_return)
                if p.env_steps >= next_ckpt:
                    next_ckpt = (p.env_steps // ckpt_every + 1) * ckpt_every
                    ckpts.save(f"step_{p.env_steps:09d}", net, optimizers, snapshot())
                if signals.received is not None:
                    path = ckpts.save(f"step_{p.env_steps:09d}", net, optimizers, snapshot())
                    bar.close()
                    print(f"acx: interrupted at env step {p.env_steps:,}; resume with: acx train resume={out_dir}")
                    raise Interrupted(signals.received, str(path))
            if solved:
                p.solved_at_step = p.env_steps

        if last_eval_step != p.env_steps:
            run_eval()  # the final model is always evaluated (unless it just was)
        final_path = ckpts.save("final", net, optimizers, snapshot())
        loggers.log_files("model", [f for f in (ckpts.folder / "best.pt", final_path) if f.exists()], p.env_steps)
    finally:
        bar.close()
        loggers.close()
        envs.close()
        eval_envs.close()

    confirm = int(cfg.eval.confirm_episodes or 0) if stop.name == "eval_threshold" else 0
    summary = {
        "env_id": factory.id,
        "algo": algo.get("name"),
        "seed": int(cfg.seed),
        "solved": p.solved_at_step is not None,
        "solved_at_step": p.solved_at_step,
        "stop_rule": stop.describe() + (f", confirmed over {confirm} more episodes" if confirm else ""),
        "env_steps": p.env_steps,
        "episodes": p.episodes,
        "updates": p.updates,
        "wall_seconds": round(wall(), 3),
        "setup_seconds": round(setup_seconds, 3),  # of wall_seconds: building envs, network, loggers
        "startup_seconds": round(startup_seconds, 3) if startup_seconds is not None else None,
        "best_eval_return": p.best_eval_return,
        "final_eval_return": p.eval_return,
        "checkpoint": str(final_path),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    where = f"in {summary['wall_seconds']:.1f} s; checkpoint: {final_path}"
    if p.solved_at_step is not None:
        print(
            f"acx: solved {factory.id} at env step {p.solved_at_step:,} ({summary['stop_rule']}; "
            f"final eval {p.eval_return:.1f}) {where}"
        )
    else:
        print(
            f"acx: not solved in {p.env_steps:,} env steps (best eval {p.best_eval_return:.1f}, "
            f"final eval {p.eval_return:.1f}) {where}"
        )
    return summary
