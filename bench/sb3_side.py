"""The Stable-Baselines3 side of ``bench/compare.py``: one measurement per process, one JSON line out.

Runs in the benchmark's own venv (``bench/.venv-sb3``: torch, stable-baselines3, gymnasium, ale-py);
it never imports acx. Hyperparameters are rl-baselines3-zoo's ``hyperparams/a2c.yml`` entries, copied
here so the benchmark needs no rl_zoo3 install:

    CartPole-v1: n_envs 8, policy MlpPolicy, ent_coef 0.0 (everything else A2C's defaults:
                 n_steps 5, RMSprop lr 7e-4 alpha 0.99 eps 1e-5, gamma 0.99, gae_lambda 1.0,
                 vf_coef 0.5, max_grad_norm 0.5, normalize_advantage False)
    atari:       AtariWrapper, frame_stack 4, CnnPolicy, n_envs 16, ent_coef 0.01, vf_coef 0.25,
                 policy_kwargs dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=1e-5))
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch


def seconds_since_process_start() -> float:
    after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    started = int(after_name[19]) / os.sysconf("SC_CLK_TCK")
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cartpole(args: argparse.Namespace) -> dict:
    """A2C on CartPole-v1 with the zoo's settings; evaluates every ``eval_every`` env steps."""
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    env = make_vec_env("CartPole-v1", n_envs=args.envs, seed=args.seed)
    # 10 eval envs: evaluate_policy spreads the 10 episodes over them (faster than EvalCallback's usual 1 env)
    eval_env = make_vec_env("CartPole-v1", n_envs=10, seed=args.seed + 1_000_000)
    model = A2C("MlpPolicy", env, n_steps=5, ent_coef=0.0, seed=args.seed, device="cpu", verbose=0)

    class Timer(BaseCallback):
        """Eval every ``eval_every`` steps (wall time includes it); stop at the first eval >= 475 if asked."""

        def __init__(self):
            super().__init__()
            self.t0 = 0.0
            self.next_eval = args.eval_every
            self.curve: list[tuple[int, float, float]] = []  # (env steps, seconds since first step, return)
            self.startup = 0.0

        def _on_training_start(self) -> None:
            self.startup = seconds_since_process_start()
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            if not args.eval_every or self.num_timesteps < self.next_eval:
                return True
            self.next_eval += args.eval_every
            rets, _ = evaluate_policy(
                self.model, eval_env, n_eval_episodes=10, deterministic=True, return_episode_rewards=True
            )
            mean = float(sum(rets) / len(rets))
            self.curve.append((self.num_timesteps, time.perf_counter() - self.t0, mean))
            return not (args.stop_at_solve and mean >= 475)

    timer = Timer()
    model.learn(total_timesteps=args.steps, callback=timer)
    seconds = time.perf_counter() - timer.t0
    final_rets, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=10, deterministic=True, return_episode_rewards=True
    )
    return {
        "startup_seconds": timer.startup,
        "train_seconds": seconds,
        "env_steps": int(model.num_timesteps),
        "steps_per_s": model.num_timesteps / seconds,
        "curve": timer.curve,
        "final_eval": float(sum(final_rets) / len(final_rets)),
    }


def pong(args: argparse.Namespace) -> dict:
    """A2C on Pong with SB3's Atari pipeline and the zoo's Atari settings; frames/s after set-up."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=args.envs, seed=args.seed), n_stack=4)
    model = A2C(
        "CnnPolicy",
        env,
        ent_coef=0.01,
        vf_coef=0.25,
        policy_kwargs=dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=1e-5)),
        seed=args.seed,
        device="cpu",
        verbose=0,
    )

    class Start(BaseCallback):
        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            return True

    start = Start()
    model.learn(total_timesteps=args.steps, callback=start)
    seconds = time.perf_counter() - start.t0
    return {
        "env_steps": int(model.num_timesteps),
        "train_seconds": seconds,
        "frames_per_s": 4 * model.num_timesteps / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=["cartpole", "pong"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--eval-every", type=int, default=0, help="0: no evaluation during training")
    parser.add_argument("--stop-at-solve", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # the same as acx's device.threads=1: 2 threads oversubscribe 2 cores
    result = cartpole(args) if args.task == "cartpole" else pong(args)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
