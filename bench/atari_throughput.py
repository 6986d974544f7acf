"""Pong throughput on this machine: acx training vs the env-only ceiling, with peak memory.

    PYTHONPATH=. python bench/atari_throughput.py                # 16 envs, all thread settings
    PYTHONPATH=. python bench/atari_throughput.py --threads 1,1  # torch threads, ALE threads
    PYTHONPATH=. python bench/atari_throughput.py --threads 1,0 --kinds acx,acx_bf16 --rounds 2  # fp32 vs bf16

Each measurement runs in a fresh process (clean thread settings, its own peak RSS):
- env only: ale-py's vector env as acx builds it (with acx's LearningSignals wrapper) stepping
  random actions, and the bare ``AtariVectorEnv`` (the ceiling);
- acx: ``train()`` with experiment=pong_fast (16 envs x 5 steps, Nature-CNN, RMSprop) on the CPU,
  timed between its first and last metrics rows (start-up and the final evaluation left out);
  ``acx_bf16`` the same with network.precision=bf16 (the conv trunk under bfloat16 autocast).
Frames are emulator frames: 4 per env step (frame skip 4).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAME_SKIP = 4


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def env_only(num_envs: int, steps: int, ale_threads: int, torch_threads: int, bare: bool) -> dict:
    """Random actions through the vector env, as fast as it goes."""
    import numpy as np
    import torch

    from acx.envs.atari import AtariEnvFactory

    torch.set_num_threads(torch_threads)
    factory = AtariEnvFactory("pong", num_threads=ale_threads)
    envs = factory.make_vector(num_envs, seed=0)
    if bare:
        envs = envs.env  # the AtariVectorEnv itself, without acx's wrapper
    envs.reset()
    actions = np.random.default_rng(0).integers(0, factory.action_space.n, (steps, num_envs))
    start = time.perf_counter()
    for t in range(steps):
        envs.step(actions[t])
    seconds = time.perf_counter() - start
    envs.close()
    return {"env_steps": steps * num_envs, "seconds": seconds}


def acx_train(num_envs: int, steps: int, ale_threads: int, torch_threads: int, precision: str = "fp32") -> dict:
    """acx's own training loop on Pong; throughput from its metrics log."""
    from hydra import compose, initialize_config_dir

    from acx.run.train import train

    with tempfile.TemporaryDirectory() as out, initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "experiment=pong_fast",
                f"algo.num_envs={num_envs}",
                f"total_steps={steps}",
                f"env.num_threads={ale_threads}",
                f"device.threads={torch_threads}",
                f"network.precision={precision}",
                "eval.every_steps=1000000000",
                "eval.episodes=1",
                "checkpoint.every_steps=1000000000",
                "log.every_updates=10",
                "progress=false",
                f"paths.output_dir={out}",
            ],
        )
        train(cfg)
        rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "time/sps" in r]
    first, last = rows[0], rows[-1]
    return {"env_steps": last["env_step"] - first["env_step"], "seconds": last["wall_time"] - first["wall_time"]}


def child(args: argparse.Namespace) -> None:
    kind, torch_threads, ale_threads = args.child.split(":")
    torch_threads, ale_threads = int(torch_threads), int(ale_threads)
    if kind.startswith("acx"):
        precision = "bf16" if kind == "acx_bf16" else "fp32"
        result = acx_train(args.envs, args.train_steps, ale_threads, torch_threads, precision)
    else:
        result = env_only(args.envs, args.env_steps, ale_threads, torch_threads, bare=kind == "bare")
    sps = result["env_steps"] / result["seconds"]
    result.update(kind=kind, torch_threads=torch_threads, ale_threads=ale_threads, steps_per_s=sps)
    result.update(frames_per_s=sps * FRAME_SKIP, peak_rss_mib=peak_rss_mib())
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--env-steps", type=int, default=2000, help="vector steps of the env-only runs")
    parser.add_argument("--train-steps", type=int, default=24000, help="env steps of each acx run")
    parser.add_argument("--threads", default="1,1;1,2;2,1;2,2", help="torch,ALE thread pairs, ';'-separated")
    parser.add_argument("--kinds", default="bare,env,acx", help="of bare, env, acx, acx_bf16; ','-separated")
    parser.add_argument("--rounds", type=int, default=1, help="the whole grid this many times, interleaved")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    print(f"# {os.cpu_count()} CPUs, {args.envs} Pong envs, frame skip {FRAME_SKIP}; load {os.getloadavg()[0]:.2f}")
    print(f"{'run':<10} {'torch thr':>9} {'ALE thr':>7} {'steps/s':>8} {'frames/s':>9} {'peak RSS MiB':>12}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sizes = ["--envs", str(args.envs), "--env-steps", str(args.env_steps), "--train-steps", str(args.train_steps)]
    grid = [pair for _ in range(args.rounds) for pair in args.threads.split(";")]
    for pair in grid:
        torch_threads, ale_threads = (int(x) for x in pair.split(","))
        for kind in args.kinds.split(","):
            cmd = [sys.executable, __file__, "--child", f"{kind}:{torch_threads}:{ale_threads}", *sizes]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"{kind:<10} {torch_threads:>9} {ale_threads:>7} {r['steps_per_s']:>8.0f} "
                f"{r['frames_per_s']:>9.0f} {r['peak_rss_mib']:>12.0f}",
                flush=True,
            )
    print(f"# load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
