"""The ``acx`` command: ``acx train ...`` and ``acx eval ...`` are Hydra apps over ``conf/``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

USAGE = """usage: acx {train,eval} [hydra overrides...]

  acx train                                  train the default (CartPole-v1, n-step A2C)
  acx train env=pendulum algo=episodic       pick config groups; any key: algo.gamma=0.98 seed=3
  acx train experiment=<preset>              a preset from conf/experiment/
  acx train -m algo=episodic,td0,nstep seed=0,1,2   a multirun sweep
  acx eval ckpt=PATH [episodes=N] [render=human] [video=true] [deterministic=false]

Each command takes Hydra's own flags too: acx train --help, acx train --cfg job.
"""


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def train_app(cfg: DictConfig) -> float:
    """Hydra wrapper around train(); returns the metric a sweeper optimises."""
    from acx.train import train

    summary = train(cfg)
    return float(summary["best_eval_return"])


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def eval_app(cfg: DictConfig) -> float:
    """Hydra wrapper around evaluate_checkpoint()."""
    from acx.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(cfg)
    print(
        f"acx: {result['episodes']} episodes of {result['env_id']}: return {result['return_mean']:.2f} "
        f"+- {result['return_std']:.2f}, length {result['length_mean']:.1f}"
    )
    if "video" in result:
        print(f"acx: video ({result['video_frames']} frames): {result['video']}")
    print(f"acx: wrote {Path(cfg.paths.output_dir) / 'eval.json'}")
    return result["return_mean"]


APPS = {"train": train_app, "eval": eval_app}


def main() -> None:
    """Entry point of the ``acx`` console script."""
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    command = args[0]
    if command not in APPS:
        print(f"acx: unknown command {command!r}; expected one of: {', '.join(APPS)}", file=sys.stderr)
        sys.exit(2)
    os.environ.setdefault("WANDB_SILENT", "true")
    sys.argv = [f"acx-{command}", *args[1:]]
    APPS[command]()


if __name__ == "__main__":
    main()
