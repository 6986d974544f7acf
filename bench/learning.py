"""The learning-quality table: every variant x {CartPole-v1, Acrobot-v1, Pendulum-v1}, 10 seeds per
cell, fixed budgets; writes docs/learning.md (and its figures) from `acx report`'s statistics.

    make learning                  # or: python bench/learning.py [--seeds 10] [--reuse | --tuned-only]
    make learning ARGS="--env cartpole --env acrobot"   # train these envs only, reuse the others' sweeps
    make learning ARGS=--spaces    # the Dict, MultiDiscrete and network=lstm sweeps only, reuse the rest
    make learning ARGS=--cost      # only the timing of network=lstm against network=mlp

Each env is one real `acx train -m hydra/launcher=population` command over the three variants and
the seeds, with the plain presets (`env=X algo=Y ~tuned`, nothing tuned); then `acx train env=X` with
the tuned defaults of conf/tuned/ for the (env, variant) pairs in TUNED, the same seeds
(`--tuned-only`: train just those, and rewrite the doc with the other sweeps as they are). The
population launcher trains every variant's seeds as cohorts, one per core. Runs stop
early when they solve (the default eval_threshold stop rule); Pendulum has no registered threshold,
so it is given -200.
The seeds are 0..S-1; nothing in acx was tuned on them (conf/tuned/ was searched on seeds 100 and up).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from acx.analysis.report import format_ci, plot_profiles, write_report
from acx.analysis.scores import METRICS, REFERENCE_SCORES, interval_estimates, normalize, performance_profiles

ROOT = Path(__file__).resolve().parent.parent
ACX = str(Path(sys.executable).parent / "acx")
VARIANTS = ("episodic", "td0", "nstep")
# env preset, the budget in env steps, extra overrides; ~tuned: the plain presets, never conf/tuned/
ENVS = {
    "cartpole": (100_000, ["~tuned"]),
    "acrobot": (200_000, ["~tuned"]),
    "pendulum": (200_000, ["~tuned", "env.reward_threshold=-200"]),
}
# the tuned defaults (conf/tuned/<env>_<variant>.yaml) measured against that baseline: `acx train env=<env>`
TUNED = [("cartpole", "td0", 100_000), ("acrobot", "episodic", 200_000), ("pendulum", "nstep", 200_000),
         ("pendulum", "ppo", 100_000)]  # fmt: skip
# spaces and memory (`--spaces`): (sweep, what it shows, env preset, variant, budget, overrides); the CartPole
# without velocities pair differs only in the network, on the tuned file both pick
SPACES = [
    ("spaces_novel_lstm", "network=lstm, velocities hidden", "cartpole_novel", "ppo", 100_000, ["network=lstm"]),
    ("spaces_novel_mlp", "network=mlp, velocities hidden", "cartpole_novel", "ppo", 100_000, ["network=mlp"]),
    ("spaces_minigrid", "Dict observations (image, direction)", "minigrid", "ppo", 100_000, []),
    ("spaces_buttons", "MultiDiscrete([3, 4, 2]) actions", "cartpole", "nstep", 20_000,
     ["~tuned", "env.id=tests.toy_envs:Buttons-v0", "env.reward_threshold=19"]),
]  # fmt: skip
# the recurrent core's cost: one seed, a fixed budget, each network alone on the same CartPole settings
COST = [("nstep", 50_000), ("ppo", 50_000)]


def train(sweep_dir: Path, env: str, budget: int, extra: list[str], seeds: int, variants=VARIANTS) -> float:
    """One multirun: the variants x the seeds on ``env``; its wall seconds."""
    if sweep_dir.exists():
        shutil.rmtree(sweep_dir)
    args = [
        ACX, "train", "-m", "hydra/launcher=population", f"env={env}", f"algo={','.join(variants)}",
        f"seed=range(0,{seeds})", f"total_steps={budget}", *extra, "logger=none", "progress=false",
        f"hydra.sweep.dir={sweep_dir.resolve()}",  # acx runs in ROOT: a relative --runs is this cwd's
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def timed(run_dir: Path, overrides: list[str]) -> float:
    """One `acx train` to its budget; its training env steps per second (from its summary)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    args = [ACX, "train", *overrides, "stop=budget", "logger=none", "progress=false", f"hydra.run.dir={run_dir}"]
    subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((run_dir / "summary.json").read_text())
    return summary["env_steps"] / summary["wall_seconds"]


def cell(row: dict) -> dict[str, str]:
    """A table cell's numbers from an ``acx report`` row."""
    median = row["steps_to_threshold_median"]
    steps = "not reached" if median is None or np.isinf(median) else f"{median:,.0f}"
    return {
        "reached": f"{row['reached']}/{row['runs']}",
        "solved": f"{row['solved']}/{row['runs']}",
        "final": format_ci(row["final"]["IQM"]),
        "best": format_ci(row["best"]["IQM"]),
        "steps": steps,
        "wall": f"{row['wall_seconds_mean']:.0f}",
    }


def table_cell(row: dict, env: str, variant: str, defaults: str, budget: int) -> dict:
    """docs/learning.json's cell for an ``acx report`` row: a cell learns when any seed reached the
    threshold; one that does not says why (acx prints it at the start of such a run)."""
    learns = row["reached"] > 0
    why = None
    if not learns:
        random_play = REFERENCE_SCORES[row["env_id"]][0]
        below = row["final"]["IQM"].point < random_play
        why = (f"0/{row['runs']} seeds reached {row['threshold']:g} within {budget:,} env steps"
               + (f", and their final IQM ({row['final']['IQM'].point:.0f}) is below random play ({random_play:.0f})"
                  if below else ""))  # fmt: skip
    return {"env": env, "env_id": row["env_id"], "variant": variant, "defaults": defaults, "budget": budget,
            "runs": row["runs"], "reached": row["reached"], "solved": row["solved"], "learns": learns,
            "why": why}  # fmt: skip


def write_doc(runs: Path, out: Path, reps: int, walls: dict[str, float], seeds: int) -> Path:
    """docs/learning.md: a row per (env, variant), the normalised scores across envs, the figures."""
    figures = out / "learning"
    figures.mkdir(parents=True, exist_ok=True)
    envs = {env: v for env, v in ENVS.items() if (runs / env).is_dir()}  # --env without the others' sweeps
    names = [{"cartpole": "CartPole"}.get(env, env.capitalize()) for env in envs]
    lines = [
        "# Learning quality: every variant on "
        + (", ".join(names[:-1]) + " and " if len(names) > 1 else "")
        + names[-1],
        "",
        f"Written by `make learning` (`bench/learning.py`) on {datetime.date.today()}, {os.cpu_count()} CPU cores. "
        f"{seeds} seeds per cell (0..{seeds - 1}, never tuned on), the plain presets: "
        f"`acx train -m hydra/launcher=population env=<env> algo={','.join(VARIANTS)} 'seed=range(0,{seeds})' "
        "total_steps=<budget> '~tuned'`. Each variant's seeds train as cohorts, one per core. "
        "A run stops when an evaluation (10 deterministic episodes) reaches the threshold and 50 more episodes "
        "confirm it.",
        "",
        "Each cell: the seeds that reached the threshold (an evaluation at or above it) and those that solved "
        "(confirmed: the run stopped on it), the IQM across seeds of the final and of the best eval "
        "return with its 95% stratified bootstrap CI (rliable, "
        f"{reps} repetitions), the median env steps to the threshold (a seed that never reached it counts as slower "
        "than all), and the mean wall time of a run. A run that solved holds its last evaluation as its final one. "
        "*Learns*: whether any seed reached the threshold; where none did, why. A run of such a cell starts with a "
        "note that says so (`acx train env=pendulum algo=episodic`), read from `learning.json`, which is written "
        "with this page from the same rows.",
        "",
        "| env | budget | variant | reached | solved (confirmed) | final return, IQM [95% CI] "
        "| best return, IQM [95% CI] | steps to threshold (median) | wall s (mean) | learns |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    poor, finals, ids, cells = [], {}, [], []
    for env, (budget, _) in envs.items():
        report = write_report(runs / env, out=figures / env, baseline="algo=nstep", reps=reps)
        by_variant = {label.split("=", 1)[1]: row for label, row in zip(report.groups, report.rows, strict=True)}
        ids.append(by_variant[VARIANTS[0]]["env_id"])
        for variant in VARIANTS:
            row = by_variant[variant]
            c = cell(row)
            cells.append(table_cell(row, env, variant, "plain", budget))
            learns = "yes" if cells[-1]["learns"] else f"**no**: {cells[-1]['why']}"
            lines.append(f"| {row['env_id']} | {budget:,} | {variant} | {c['reached']} | {c['solved']} | {c['final']} "
                         f"| {c['best']} | {c['steps']} | {c['wall']} | {learns} |")  # fmt: skip
            if row["reached"] < row["runs"]:
                worse = row["final"]["IQM"].high < row["best"]["IQM"].low  # the policies got worse after their best
                poor.append(
                    f"**{variant} on {row['env_id']}**: {c['reached']} reached, {c['solved']} solved, "
                    f"final IQM {c['final']}"
                    + (f", below its best ({c['best']}): the policies got worse late in training" if worse else "")
                    + (f", below random play ({REFERENCE_SCORES[row['env_id']][0]:g})"
                       if row["final"]["IQM"].point < REFERENCE_SCORES[row["env_id"]][0] else "")
                )  # fmt: skip
            group = report.groups[f"algo={variant}"]
            finals.setdefault(variant, []).append(normalize([r.final_eval for r in group], row["env_id"])[:seeds])
    threshold_note = ", ".join(f"{env_id} {REFERENCE_SCORES[env_id][1]:g}" for env_id in ids)
    lines += [
        "",
        f"Thresholds: {threshold_note}"
        + (
            " (Pendulum-v1 has no registered threshold; -200 is given on the command line)."
            if "pendulum" in envs
            else "."
        ),
        "",
        "## Where a cell is poor",
        "",
    ]
    if poor:
        lines += [
            "Not every seed reached the threshold in these cells:",
            "",
            *[f"- {p}." for p in poor],
            "",
            "These are the plain presets (`~tuned`): nothing in them is tuned per env (`env=pendulum` runs the "
            "CartPole-tuned `algo=nstep` defaults). The tuned defaults of `conf/tuned/` are measured against this "
            "baseline below.",
        ]
    else:
        lines.append("None: every seed of every cell reached the threshold.")
    lines += [
        "",
        "Wall times are per run, measured while other work shared the machine's cores: compare them within a "
        "table, not with `docs/benchmarks.md`.",
    ]

    tuned_lines, tuned_cells = tuned_section(runs, figures, reps, walls, seeds)
    lines += tuned_lines
    lines += spaces_section(runs, figures, reps, walls, seeds)
    cells += tuned_cells
    matrices = {variant: np.stack(cols, axis=1) for variant, cols in finals.items()}  # seeds x envs
    estimates = interval_estimates(matrices, gamma=1.0, reps=reps)
    lines += [
        "",
        "## Across envs: normalised final returns",
        "",
        "Each run's final eval return normalised per env (random actions 0, the threshold 1: "
        + ", ".join(f"{e} {lo:g} → {hi:g}" for e, (lo, hi) in REFERENCE_SCORES.items() if e in ids)
        + f"), a (seeds x {len(ids)} envs) matrix per variant; the CIs resample seeds within each env.",
        "",
        "| variant | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for variant, metrics in estimates.items():
        lines.append(
            f"| {variant} | "
            + " | ".join(f"{e.point:.3f} [{e.low:.3f}, {e.high:.3f}]" for e in metrics.values())
            + " |"
        )
    everything = np.concatenate([m.ravel() for m in matrices.values()])
    taus = np.linspace(min(0.0, everything.min()), max(1.0, everything.max()), 51)
    profiles, cis = performance_profiles(matrices, taus, reps=reps)
    plot_profiles(taus, profiles, cis, figures / "performance_profile.png", "normalised final eval return (τ)")
    lines += [
        "",
        f"![performance profile across the {len(ids)} envs](learning/performance_profile.png)",
        "",
        "## Per env",
        "",
    ]
    for env in envs:
        lines += [
            f"### {env}" + (f" ({walls[env]:.0f} s for the sweep)" if env in walls else ""),
            "",
            f"![learning curves](learning/{env}/learning_curves.png)",
            f"![probability of improvement over nstep](learning/{env}/probability_of_improvement.png)",
            "",
            f"The whole report: [learning/{env}/report.md](learning/{env}/report.md).",
            "",
        ]
    path = out / "learning.md"
    path.write_text("\n".join(lines) + "\n")
    (out / "learning.json").write_text(json.dumps({"written": str(datetime.date.today()), "cells": cells}, indent=1))
    return path


def tuned_section(
    runs: Path, figures: Path, reps: int, walls: dict[str, float], seeds: int
) -> tuple[list[str], list[dict]]:
    """The tuned defaults of each TUNED pair against the plain preset's row of the same variant (when
    it has one), and the tuned rows' learning.json cells (nothing when no TUNED pair has its sweep and
    its env's in ``runs``)."""
    if not any((runs / f"tuned_{env}_{variant}").is_dir() and (runs / env).is_dir() for env, variant, _ in TUNED):
        return [], []
    cells = []
    lines = [
        "",
        "## Tuned defaults (`conf/tuned/`) against the plain presets",
        "",
        '`acx train env=<env> algo=<variant>` picks `conf/tuned/<env>_<variant>.yaml` (README, "How defaults '
        'are picked per env"). The same seeds as above: `acx train -m hydra/launcher=population '
        f"env=<env> algo=<variant> 'seed=range(0,{seeds})' total_steps=<budget>`. *Reached*: the seeds with a "
        "10-episode deterministic evaluation at or above the threshold within the budget; "
        "*confirmed*: those whose 50 confirmation episodes held it too, which stops the run.",
        "",
        "| env | budget | defaults | reached | confirmed | final return, IQM [95% CI] "
        "| best return, IQM [95% CI] | steps to threshold (median) | wall s (mean) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    figures_of = []  # after the table: each tuned sweep's curves and report
    for env, variant, budget in TUNED:
        name = f"tuned_{env}_{variant}"
        sweep = runs / name
        if not sweep.is_dir() or not (runs / env).is_dir():
            continue
        plain = write_report(runs / env, out=figures / env, baseline="algo=nstep", reps=reps)
        tuned = write_report(sweep, out=figures / name, reps=reps)
        for label, report in (("plain", plain), ("tuned", tuned)):
            rows = dict(zip(report.groups, report.rows, strict=True))
            key = next((k for k in rows if label == "tuned" or k == f"algo={variant}"), None)
            if key is None:  # a variant the plain sweeps leave out (ppo)
                continue
            row, c = rows[key], cell(rows[key])
            what = f"`conf/tuned/{env}_{variant}.yaml`" if label == "tuned" else f"plain `algo={variant}`"
            if label == "tuned":
                cells.append(table_cell(row, env, variant, f"conf/tuned/{env}_{variant}.yaml", budget))
            lines.append(f"| {row['env_id']} | {budget:,} | {what} | {c['reached']} | {c['solved']} "
                         f"| {c['final']} | {c['best']} | {c['steps']} | {c['wall']} |")  # fmt: skip
        figures_of += [
            "",
            f"### {env}, {variant}" + (f" ({walls[name]:.0f} s for the sweep)" if name in walls else ""),
            "",
            f"![learning curves, {env} {variant} tuned](learning/{name}/learning_curves.png)",
            "",
            f"The whole report: [learning/{name}/report.md](learning/{name}/report.md).",
        ]
    return lines + figures_of, cells


def spaces_section(runs: Path, figures: Path, reps: int, walls: dict[str, float], seeds: int) -> list[str]:
    """Dict observations, MultiDiscrete actions and network=lstm, each against random play (and the
    LSTM against the MLP), and the LSTM's cost (nothing when no SPACES sweep is in ``runs``)."""
    import minigrid  # noqa: F401  (registers MiniGrid's ids: random play's score below)

    import tests.toy_envs  # noqa: F401  (registers Buttons-v0)
    from acx.analysis.scores import random_score

    if not any((runs / name).is_dir() for name, *_ in SPACES):
        return []
    lines = [
        "",
        "## Spaces and memory: Dict observations, MultiDiscrete actions, `network=lstm`",
        "",
        f"The same seeds (0..{seeds - 1}): `acx train -m hydra/launcher=population env=<env> algo=<variant> "
        f"'seed=range(0,{seeds})' total_steps=<budget> <overrides>`. CartPole without its velocities "
        "(`env=cartpole_novel`, the zoo's CartPoleNoVel-v1) trains both networks on the zoo's RecurrentPPO "
        "settings (`conf/tuned/cartpole_novel_ppo.yaml`); Buttons-v0 is the tests' own MultiDiscrete env "
        "(`tests/toy_envs.py`). *Random play*: the mean return of uniform random actions over 100 episodes. "
        "`network=lstm`'s default of 128 units was picked on seeds 100-109 of this CartPole (never the seeds "
        "here): 64 units solved 6/10 of them, 128 units 10/10, a 64-unit GRU 9/10, and 64 units without the "
        "encoder before the LSTM 2/10.",
        "",
        "| sweep | env | variant | reached | confirmed | final return, IQM [95% CI] | best return, IQM [95% CI] "
        "| random play | steps to threshold (median) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    figures_of = []
    for name, what, _env, variant, budget, overrides in SPACES:
        if not (runs / name).is_dir():
            continue
        report = write_report(runs / name, out=figures / name, reps=reps)
        row = report.rows[0]
        c = cell(row)
        shown = " ".join(o for o in overrides if o != "~tuned")
        lines.append(f"| {what} | {row['env_id']} | `algo={variant}` {shown} (threshold {row['threshold']:g}, "
                     f"{budget:,} steps) | {c['reached']} | {c['solved']} | {c['final']} | {c['best']} "
                     f"| {random_score(row['env_id']):.1f} | {c['steps']} |")  # fmt: skip
        figures_of += [f"![{what}](learning/{name}/learning_curves.png)"]
    cost = walls.get("lstm_cost")
    if cost:
        lines += [
            "",
            "The recurrent core's cost, measured side by side (one seed, CartPole-v1, each run to its budget "
            "with `stop=budget`, one after the other on this machine): training env steps per second.",
            "",
            "| variant | budget | network=mlp | network=lstm | lstm / mlp |",
            "|---|---:|---:|---:|---:|",
        ]
        for variant, budget in COST:
            mlp, lstm = cost[f"{variant}_mlp"], cost[f"{variant}_lstm"]
            lines.append(f"| {variant} | {budget:,} | {mlp:,.0f} | {lstm:,.0f} | {lstm / mlp:.2f}x |")
        lines += [
            "",
            "Acting costs the LSTM one cell step per env step. PPO's update is where it pays: each minibatch "
            "unrolls its env columns step by step (acx's PPO defaults: 4 epochs x 4 minibatches of one column "
            "of 128 steps, 2,048 cell steps in Python per 512 env steps), where the MLP's minibatch is one "
            "matrix product. The zoo's CartPoleNoVel settings (one minibatch of 8 columns x 32 steps, 20 epochs) "
            "unroll 640 cell steps per 256 env steps.",
        ]
    return lines + ["", *figures_of]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--runs", default=str(ROOT / "outputs" / "learning"), help="where the sweeps are written")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where learning.md and its figures go")
    parser.add_argument("--reuse", action="store_true", help="write the doc from the sweeps already in --runs")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap repetitions")
    parser.add_argument("--tuned-only", action="store_true", help="train only the tuned sweeps, reuse the others")
    parser.add_argument(
        "--env", action="append", choices=list(ENVS), help="train this env only (repeatable); the doc: all in --runs"
    )
    parser.add_argument("--spaces", action="store_true", help="train only the spaces-and-memory sweeps, reuse the rest")
    parser.add_argument("--cost", action="store_true", help="time only the recurrent core's cost runs, reuse the rest")
    args = parser.parse_args()
    runs = Path(args.runs).resolve()
    runs = runs.relative_to(Path.cwd()) if runs.is_relative_to(Path.cwd()) else runs  # the reports name it as given
    walls: dict[str, float] = {}
    if (runs / "walls.json").is_file():
        walls = json.loads((runs / "walls.json").read_text())
    if not (args.reuse or args.spaces or args.cost):
        chosen = {env: v for env, v in ENVS.items() if not args.env or env in args.env}
        if not args.tuned_only:
            for env, (budget, extra) in chosen.items():
                print(f"learning: {env}, {len(VARIANTS)} variants x {args.seeds} seeds, {budget:,} steps", flush=True)
                walls[env] = train(runs / env, env, budget, extra, args.seeds)
                print(f"learning: {env} took {walls[env]:.0f} s", flush=True)
        for env, variant, budget in TUNED:
            if env not in chosen:
                continue
            print(f"learning: tuned {env} ({variant}), {args.seeds} seeds, {budget:,} steps", flush=True)
            name = f"tuned_{env}_{variant}"
            walls[name] = train(runs / name, env, budget, [], args.seeds, variants=(variant,))
        runs.mkdir(parents=True, exist_ok=True)
        (runs / "walls.json").write_text(json.dumps(walls))
    everything = not (args.reuse or args.tuned_only or args.env or args.spaces or args.cost)  # make learning
    if args.spaces or everything:
        for name, what, env, variant, budget, overrides in SPACES:
            print(f"learning: {what}, {args.seeds} seeds, {budget:,} steps", flush=True)
            walls[name] = train(runs / name, env, budget, overrides, args.seeds, variants=(variant,))
    if args.spaces or args.cost or everything:
        cost = {}
        for variant, budget in COST:
            for network in ("mlp", "lstm"):
                overrides = [f"algo={variant}", f"network={network}", f"total_steps={budget}", "seed=0"]
                cost[f"{variant}_{network}"] = timed(runs / "lstm_cost" / f"{variant}_{network}", overrides)
        walls["lstm_cost"] = cost
        runs.mkdir(parents=True, exist_ok=True)
        (runs / "walls.json").write_text(json.dumps(walls))
    missing = [env for env in ENVS if not (runs / env).is_dir()]
    if len(missing) == len(ENVS):
        raise SystemExit(f"learning: error: no sweeps in {runs} (train them: make learning)")
    path = write_doc(runs, Path(args.out), args.reps, walls, args.seeds)
    print(f"learning: wrote {path} ({datetime.date.today()})")
    if missing:  # the doc is drawn from the sweeps, so it holds only the envs that have one
        print(f"learning: note: {path} covers only {', '.join(e for e in ENVS if e not in missing)}: no sweeps in "
              f"{runs} for {', '.join(missing)} (make learning ARGS=\"--env {' --env '.join(missing)}\")")  # fmt: skip


if __name__ == "__main__":
    main()
