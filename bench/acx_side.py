"""The acx side of ``bench/compare.py``: one measurement per process, one JSON line out.

    PYTHONPATH=. python bench/acx_side.py cartpole --seed 3 --eval-every 2000 --stop-at-solve
    PYTHONPATH=. python bench/acx_side.py throughput --envs 64 --steps 100000
    PYTHONPATH=. python bench/acx_side.py ceiling-env --envs 8 | ceiling-collect --envs 8 | pong ...

``train()`` runs on the real config tree with Hydra's compose API; wall times come from its own
metrics.jsonl and summary.json, measured from the first env step (start-up is reported separately).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALWAYS = ["device.threads=1", "progress=false", "checkpoint.every_steps=1000000000"]
# A2C exactly as SB3 runs it (bench/sb3_side.py): RMSprop, the same losses, targets and clipping
SB3_SETTINGS = ["optimizer=rmsprop", "algo.n_steps=5", "algo.loss.ent_coef=0.0", "algo.advantage.gae_lambda=1.0"]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_train(overrides: list[str]) -> tuple[dict, list[dict]]:
    from hydra import compose, initialize_config_dir

    from acx.run.train import train

    with tempfile.TemporaryDirectory() as out, initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*ALWAYS, *overrides, f"paths.output_dir={out}"])
        summary = train(cfg)
        rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return summary, rows


def cartpole(args: argparse.Namespace) -> dict:
    """acx's default config (or ``--experiment``) on CartPole-v1, evaluating every ``eval_every`` steps."""
    stop = [f"eval.confirm_episodes={args.confirm}"] if args.stop_at_solve else ["stop=budget"]
    preset = [f"experiment={args.experiment}"] if args.experiment else []
    overrides = [*preset, f"seed={args.seed}", f"total_steps={args.steps}", f"eval.every_steps={args.eval_every}"]
    overrides += stop
    summary, rows = run_train([*overrides, f"logger={args.logger}"])
    setup = summary["setup_seconds"]  # wall times in metrics.jsonl count from train()'s start
    curve = [(r["env_step"], r["wall_time"] - setup, r["eval/return_mean"]) for r in rows if "eval/return_mean" in r]
    train_seconds = summary["wall_seconds"] - setup
    return {
        "startup_seconds": summary["startup_seconds"],
        "train_seconds": train_seconds,
        "env_steps": summary["env_steps"],
        "steps_per_s": summary["env_steps"] / train_seconds,
        "curve": curve,
        "final_eval": summary["final_eval_return"],
        "solved_at_step": summary["solved_at_step"],
    }


def throughput(args: argparse.Namespace) -> dict:
    """Training env steps/s with SB3's settings, between the first and last metrics rows (no evaluation)."""
    overrides = [*SB3_SETTINGS, f"algo.num_envs={args.envs}", f"total_steps={args.steps}", "stop=budget"]
    _, rows = run_train([*overrides, "logger=none", "eval.every_steps=1000000000", "eval.episodes=1"])
    rows = [r for r in rows if "time/sps" in r]
    steps, seconds = rows[-1]["env_step"] - rows[0]["env_step"], rows[-1]["wall_time"] - rows[0]["wall_time"]
    return {"env_steps": steps, "train_seconds": seconds, "steps_per_s": steps / seconds}


def ceiling_env(args: argparse.Namespace) -> dict:
    """CartPole's vector env (as acx builds it) with random actions: nothing faster can train."""
    import numpy as np

    from acx.envs.factory import GymEnvFactory

    envs = GymEnvFactory("CartPole-v1").make_vector(args.envs, seed=0)
    vector_steps = args.steps // args.envs
    actions = np.random.default_rng(0).integers(0, 2, (vector_steps, args.envs))
    start = time.perf_counter()
    for t in range(vector_steps):
        envs.step(actions[t])
    seconds = time.perf_counter() - start
    return {
        "env_steps": vector_steps * args.envs,
        "train_seconds": seconds,
        "steps_per_s": vector_steps * args.envs / seconds,
    }


def ceiling_collect(args: argparse.Namespace) -> dict:
    """acx's rollout collection alone (env + policy inference, no learning) with the default network."""
    import torch
    from hydra import compose, initialize_config_dir

    from acx.algo.networks import mlp_actor_critic
    from acx.envs.factory import GymEnvFactory
    from acx.run.build import build_learner
    from acx.run.rollout import RolloutCollector

    torch.set_num_threads(1)
    torch.manual_seed(0)
    factory = GymEnvFactory("CartPole-v1")
    net = mlp_actor_critic(factory.observation_space, factory.action_space)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["algo=nstep"])
    learner = build_learner([cfg], [net], [torch.Generator().manual_seed(0)])
    collector = RolloutCollector(factory.make_vector(args.envs, seed=0), learner, 1, 5, torch.device("cpu"))
    rollouts = args.steps // (5 * args.envs)
    collector.collect()  # warm-up
    start = time.perf_counter()
    steps = sum(collector.collect().transitions()[0] for _ in range(rollouts))
    seconds = time.perf_counter() - start
    return {"env_steps": steps, "train_seconds": seconds, "steps_per_s": steps / seconds}


def pong(args: argparse.Namespace) -> dict:
    """acx training on Pong (experiment=pong_fast) and the bare ALE vector env: bench/atari_throughput.py."""
    sys.path.insert(0, str(ROOT / "bench"))
    import atari_throughput

    if args.bare:
        r = atari_throughput.env_only(args.envs, args.steps // args.envs, 1, 1, bare=True)
    else:
        r = atari_throughput.acx_train(args.envs, args.steps, 1, 1)
    return {
        "env_steps": r["env_steps"],
        "train_seconds": r["seconds"],
        "frames_per_s": 4 * r["env_steps"] / r["seconds"],
    }


TASKS = {
    "cartpole": cartpole,
    "throughput": throughput,
    "ceiling-env": ceiling_env,
    "ceiling-collect": ceiling_collect,
    "pong": pong,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--stop-at-solve", action="store_true")
    parser.add_argument("--confirm", type=int, default=50, help="eval.confirm_episodes when stopping at solve")
    parser.add_argument("--logger", default="none")
    parser.add_argument("--bare", action="store_true", help="pong: the env-only ceiling")
    parser.add_argument("--experiment", default=None, help="cartpole: a preset from conf/experiment/")
    args = parser.parse_args()
    result = TASKS[args.task](args)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
