"""Does network.precision=bf16 change what pong_fast learns? The first env steps of one seed in float32 and
in bfloat16, against a second float32 seed as the yardstick of noise.

    PYTHONPATH=. python bench/atari_precision.py [--steps 100000]

Each run: `acx train experiment=pong_fast stop=budget total_steps=<steps>` (no evaluations). Printed per run,
over its last quarter of updates: the policy's entropy, the critic's loss, the explained variance and the mean
game score of the episodes that ended, and its training env steps per second.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ACX = str(Path(sys.executable).parent / "acx")
KEYS = ("train/entropy", "losses/value", "train/explained_variance", "train/episode_return")


def run(out: Path, steps: int, seed: int, precision: str) -> dict:
    if out.exists():
        shutil.rmtree(out)
    args = [ACX, "train", "experiment=pong_fast", "stop=budget", f"total_steps={steps}", f"seed={seed}",
            f"network.precision={precision}", "eval.every_steps=1000000000", "checkpoint.every_steps=1000000000",
            "logger=none", "progress=false", f"hydra.run.dir={out}"]  # fmt: skip
    subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    late = [r for r in rows if r["env_step"] >= 0.75 * steps]
    trained = [r for r in rows if "time/sps" in r]
    stats = {k: float(np.mean([r[k] for r in late if k in r])) for k in KEYS}
    first, last = trained[0], trained[-1]
    stats["steps/s"] = (last["env_step"] - first["env_step"]) / (last["wall_time"] - first["wall_time"])
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "atari_precision")
    args = parser.parse_args()
    print(f"| run | {' | '.join(KEYS)} | steps/s |")
    print("|---|" + "---:|" * (len(KEYS) + 1))
    for seed, precision in ((0, "fp32"), (0, "bf16"), (1, "fp32")):
        stats = run(args.out / f"s{seed}_{precision}", args.steps, seed, precision)
        cells = " | ".join(f"{stats[k]:.3f}" for k in KEYS)
        print(f"| seed {seed}, {precision} | {cells} | {stats['steps/s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
