"""``train(cfg)``: build everything the config names, then collect -> estimate -> update, with
periodic evaluation, logging and checkpoints. One loop serves every algorithm variant: they differ
only in ``algo.n_steps``/``algo.num_envs`` (when to learn) and ``algo.advantage`` (which target)."""

from __future__ import annotations

import json
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
from acx.checkpoint import atomic_write, save_checkpoint
from acx.envs import space_to_dict
from acx.evaluate import evaluate_vector
from acx.loggers import JsonlLogger, LoggerGroup
from acx.networks import ActorCritic
from acx.rollout import RolloutCollector
from acx.update import Updater, build_optimizers

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


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, in a form a weights-only checkpoint can hold."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "json": json.dumps(
            {
                "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
                "numpy": [np_state[0], np_state[1].tolist(), *map(float, np_state[2:])],
            }
        ),
    }


class CheckpointWriter:
    """Periodic (keeping the newest ``keep``), best and final checkpoints under ``run_dir/checkpoints``."""

    def __init__(self, folder: Path, keep: int, static: dict[str, Any]):
        self.folder, self.keep, self.static = folder, keep, static
        self.periodic: deque[Path] = deque()

    def save(self, name: str, net, optimizers, counters: dict[str, Any]) -> Path:
        payload = {
            "model": net.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
            "rng": rng_state(),
            "meta": {**self.static, **counters, "kind": name.split("_")[0]},
        }
        path = save_checkpoint(self.folder / f"{name}.pt", payload)
        if name.startswith("step_"):
            self.periodic.append(path)
            while len(self.periodic) > self.keep:
                self.periodic.popleft().unlink(missing_ok=True)
        if not name.startswith("best"):
            atomic_write(self.folder / "latest", lambda f: f.write(path.name.encode()))
        return path


def train(cfg: DictConfig, on_eval: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train from a composed config; write checkpoints, metrics.jsonl and summary.json; return the summary.

    ``on_eval(env_step, eval_return_mean)`` is called after each periodic evaluation (an Optuna trial
    reports it there, and raises ``optuna.TrialPruned`` to stop the run)."""
    start = time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(int(cfg.seed))
    device = instantiate(cfg.device)
    factory = build_env_factory(cfg.env)
    algo = cfg.algo
    envs = factory.make_vector(int(algo.num_envs), seed=int(cfg.seed))
    eval_envs = factory.make_vector(int(cfg.eval.episodes), seed=int(cfg.seed) + EVAL_SEED_OFFSET)
    net = build_network(cfg.network, factory, device)
    optimizers = build_optimizers(cfg.optimizer, net)
    advantage_fn = instantiate(algo.advantage)
    updater = Updater(net, optimizers, instantiate(algo.loss), algo.max_grad_norm)
    collector = RolloutCollector(envs, net, algo.n_steps, device, factory.env_actions)
    stop = instantiate(cfg.stop, default_threshold=factory.reward_threshold)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    loggers = LoggerGroup([JsonlLogger(out_dir / "metrics.jsonl")])
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

    total_steps = int(cfg.total_steps)
    eval_every, ckpt_every = int(cfg.eval.every_steps), int(cfg.checkpoint.every_steps)
    log_every = int(cfg.log.every_updates)
    reward_scale = float(algo.reward_scale)
    env_steps = updates = episodes = 0
    next_eval, next_ckpt = eval_every, ckpt_every
    best_eval, last_eval = -float("inf"), None
    solved_at: int | None = None
    recent: deque[float] = deque(maxlen=100)
    window_returns: list[float] = []
    window_lengths: list[int] = []
    last_log_time, last_log_steps = time.perf_counter(), 0

    def counters() -> dict[str, Any]:
        return {"env_step": env_steps, "updates": updates, "episodes": episodes, "best_eval_return": best_eval,
                "eval_return": last_eval, "wall_seconds": time.perf_counter() - start}  # fmt: skip

    def run_eval() -> float:
        nonlocal best_eval, last_eval
        rets, lens = evaluate_vector(
            net, eval_envs, device, factory.env_actions, bool(cfg.eval.deterministic), int(cfg.seed) + EVAL_SEED_OFFSET
        )
        last_eval = float(rets.mean())
        loggers.log(
            {"eval/return_mean": last_eval, "eval/return_std": float(rets.std()), "eval/length_mean": float(lens.mean())},
            env_steps, time.perf_counter() - start,
        )  # fmt: skip
        if last_eval > best_eval:
            best_eval = last_eval
            ckpts.save("best", net, optimizers, counters())
        return last_eval

    bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True, disable=not cfg.progress, file=sys.stderr)
    while env_steps < total_steps:
        rollout = collector.collect()
        rewards = rollout.rewards * reward_scale if reward_scale != 1.0 else rollout.rewards
        advantages, returns = advantage_fn(
            rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done, gamma=algo.gamma
        )
        stats = updater.step(rollout, advantages, returns)
        steps = rollout.num_transitions
        env_steps += steps
        updates += 1
        episodes += len(rollout.episode_returns)
        recent.extend(rollout.episode_returns)
        window_returns += rollout.episode_returns
        window_lengths += rollout.episode_lengths
        bar.update(steps)
        solved = stop.observe_episodes(rollout.episode_returns)

        if updates % log_every == 0:
            now = time.perf_counter()
            metrics = {k: float(v) for k, v in stats.items()}
            metrics["time/sps"] = (env_steps - last_log_steps) / max(now - last_log_time, 1e-9)
            if window_returns:
                metrics["train/episode_return"] = float(np.mean(window_returns))
                metrics["train/episode_length"] = float(np.mean(window_lengths))
            loggers.log(metrics, env_steps, now - start)
            bar.set_postfix(
                sps=f"{metrics['time/sps']:.0f}",
                ret=f"{np.mean(recent):.1f}" if recent else "-",
                eval=f"{last_eval:.1f}" if last_eval is not None else "-",
                refresh=False,
            )
            window_returns, window_lengths = [], []
            last_log_time, last_log_steps = now, env_steps

        if env_steps >= next_eval:
            next_eval += eval_every * max(1, (env_steps - next_eval) // eval_every + 1)
            solved = stop.observe_eval(run_eval()) or solved
            if on_eval is not None:
                on_eval(env_steps, last_eval)
        if env_steps >= next_ckpt:
            next_ckpt += ckpt_every * max(1, (env_steps - next_ckpt) // ckpt_every + 1)
            ckpts.save(f"step_{env_steps:09d}", net, optimizers, counters())
        if solved:
            solved_at = env_steps
            break
    bar.close()

    if last_eval is None or solved_at is None or stop.name != "eval_threshold":
        run_eval()  # the final model is always evaluated on the eval episodes
    final_path = ckpts.save("final", net, optimizers, counters())
    loggers.close()
    envs.close()
    eval_envs.close()
    summary = {
        "env_id": factory.id,
        "algo": algo.get("name"),
        "seed": int(cfg.seed),
        "solved": solved_at is not None,
        "solved_at_step": solved_at,
        "stop_rule": stop.describe(),
        "env_steps": env_steps,
        "episodes": episodes,
        "updates": updates,
        "wall_seconds": round(time.perf_counter() - start, 3),
        "best_eval_return": best_eval,
        "final_eval_return": last_eval,
        "checkpoint": str(final_path),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if solved_at is not None:
        print(
            f"acx: solved {factory.id} at env step {solved_at:,} ({stop.describe()}; final eval {last_eval:.1f}) "
            f"in {summary['wall_seconds']:.1f} s; checkpoint: {final_path}"
        )
    else:
        print(
            f"acx: not solved in {env_steps:,} env steps (best eval {best_eval:.1f}, final eval {last_eval:.1f}) "
            f"in {summary['wall_seconds']:.1f} s; checkpoint: {final_path}"
        )
    return summary
