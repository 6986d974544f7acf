"""An Atari run's learning curve for docs/atari.md, and its facts for docs/atari.json.

    PYTHONPATH=. python bench/atari_curve.py outputs/atari/pong_fast_seed0 --preset pong_fast --command \
        "acx train experiment=pong_fast checkpoint.every_steps=250000 hydra.run.dir=outputs/atari/pong_fast_seed0"

Reads the run's ``metrics.jsonl`` (every evaluation: 8 deterministic games) and its checkpoints, draws the eval
return against env steps and against wall hours (docs/atari/<name>.png), runs ``acx eval`` on its latest
checkpoint for the 10-game mean (``final_eval_mean``; ``--no-eval`` keeps the one already recorded), and writes
the run's object into docs/atari.json (one object per run, keyed by its folder's name). A resumed run's log
and wall time go on from its checkpoint's, so nothing in them marks a resume: name each with ``--resumed``
(the env step it continued from and the command):
``--resumed "1681147=acx train resume=<run> network.precision=bf16"``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ACX = str(Path(sys.executable).parent / "acx")


def evaluations(run: Path) -> list[dict]:
    """The run's eval rows, in the order written (a resume may write steps again from its checkpoint)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "eval/return_mean" in r]


def plot(evals: list[dict], path: Path, title: str, resumed: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["env_step"] / 1e6 for r in evals]
    hours = [r["wall_time"] / 3600 for r in evals]
    returns = [r["eval/return_mean"] for r in evals]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, x, label in ((axes[0], steps, "env steps (millions)"), (axes[1], hours, "wall hours")):
        ax.plot(x, returns, marker="o", ms=3)
        for step in resumed:  # each resume, at the env step it continued from
            at = step / 1e6 if ax is axes[0] else np.interp(step, [r["env_step"] for r in evals], hours)
            ax.axvline(at, color="tab:orange", ls=":", lw=1.2)
        ax.axhline(18, color="0.5", ls="--", lw=1)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("eval return (8 games, deterministic)")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--command", required=True, help="the command that started the run")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--no-eval", action="store_true", help="keep the recorded final_eval_mean")
    parser.add_argument("--resumed", action="append", default=[], help="STEP=COMMAND of each resume (repeatable)")
    parser.add_argument("--paused", default=None, help="wall time the run spent stopped, e.g. '15 min (SIGSTOP)'")
    args = parser.parse_args()
    run = args.run
    evals = evaluations(run)
    if not evals:
        raise SystemExit(f"atari_curve: error: {run}/metrics.jsonl has no evaluation yet")
    name = run.name
    resumed = [int(r.split("=", 1)[0]) for r in args.resumed]
    title = f"{args.preset}: {name} (dotted: resumed)" if resumed else f"{args.preset}: {name}"
    plot(evals, args.docs / "atari" / f"{name}.png", title, resumed)
    facts_path = args.docs / "atari.json"
    facts = json.loads(facts_path.read_text()) if facts_path.is_file() else {"runs": []}
    old = next((r for r in facts["runs"] if r["run"] == name), {})
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    final_eval = old.get("final_eval_mean")
    if not args.no_eval:
        out = run.parent / f"{name}_eval"
        proc = subprocess.run([ACX, "eval", f"ckpt={run}", "episodes=10", f"hydra.run.dir={out}"], cwd=ROOT,
                              capture_output=True, text=True, check=True)  # fmt: skip
        final_eval = json.loads((out / "eval.json").read_text())["return_mean"]
        print(proc.stdout.strip().splitlines()[0])
    entry = {
        "run": name,
        "preset": args.preset,
        "command": args.command,
        "continue": f"acx train resume={run}",
        "env_steps": rows[-1]["env_step"],
        "wall_hours": round(rows[-1]["wall_time"] / 3600, 3),
        "best_eval": max(r["eval/return_mean"] for r in evals),
        "last_eval": evals[-1]["eval/return_mean"],
        "final_eval_mean": final_eval,  # the 10-game `acx eval` mean of the latest checkpoint
        "resume_points": [{"env_step": int(r.split("=", 1)[0]), "command": r.split("=", 1)[1]} for r in args.resumed],
        "paused": args.paused,
        "evaluations": [[r["env_step"], round(r["wall_time"], 1), r["eval/return_mean"]] for r in evals],
    }
    facts["runs"] = [r for r in facts["runs"] if r["run"] != name] + [entry]
    facts_path.write_text(json.dumps(facts, indent=1) + "\n")
    print(
        f"atari_curve: {name}: {entry['env_steps']:,} env steps, {entry['wall_hours']:.2f} h, best eval "
        f"{entry['best_eval']:g}, 10-game acx eval {final_eval}; wrote {facts_path}, docs/atari/{name}.png"
    )


if __name__ == "__main__":
    main()
