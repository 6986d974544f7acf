"""The learning-quality table: every variant x {CartPole-v1, Acrobot-v1, Pendulum-v1, MountainCar-v0,
MountainCarContinuous-v0}, the zoo's A2C and PPO settings on HalfCheetah-v5 and Hopper-v5 at 1M steps
(and the plain episodic and TD(0) presets there at 100k), 10 seeds per cell, fixed budgets; writes
docs/learning.md (and its figures) from `acx report`'s statistics, beside rl-baselines3-zoo's published
results.

    make learning                  # or: python bench/learning.py [--seeds 10] [--reuse | --tuned-only]
    make learning ARGS="--env cartpole --env acrobot"   # train these envs only, reuse the others' sweeps
    make learning ARGS="--env halfcheetah"              # MuJoCo: hours (10 seeds x 1M steps a variant)
    make learning ARGS=--spaces    # the Dict, MultiDiscrete and network=lstm sweeps only, reuse the rest
    make learning ARGS=--cost      # only the timing of network=lstm against network=mlp

Each classic env is one real `acx train -m hydra/launcher=population` command over the four variants and
the seeds, with the plain presets (`env=X algo=Y ~tuned`, nothing tuned); then `acx train env=X` with
the tuned defaults of conf/tuned/ for the (env, variant) pairs in TUNED, the same seeds
(`--tuned-only`: train just those, and rewrite the doc with the other sweeps as they are). The
population launcher trains every variant's seeds as cohorts, one per core. Runs stop
early when they solve (the default eval_threshold stop rule); Pendulum has no registered threshold,
so it is given -200. MuJoCo runs train to their budget (stop=budget), as the zoo's results do; a MuJoCo
sweep enters the doc once every seed has finished (resume a stopped one with `acx train -m
hydra/launcher=population resume=<run>,<run>,...`).
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

from acx.analysis.learned import TABLE
from acx.analysis.report import Report, format_ci, plot_profiles, write_report
from acx.analysis.scores import METRICS, REFERENCE_SCORES, interval_estimates, normalize, performance_profiles

ROOT = Path(__file__).resolve().parent.parent
ACX = str(Path(sys.executable).parent / "acx")
VARIANTS = ("episodic", "td0", "nstep", "ppo")
# env preset, the budget in env steps, extra overrides; ~tuned: the plain presets, never conf/tuned/
ENVS = {
    "cartpole": (100_000, ["~tuned"]),
    "acrobot": (200_000, ["~tuned"]),
    "pendulum": (200_000, ["~tuned", "env.reward_threshold=-200"]),
    "mountaincar": (200_000, ["~tuned"]),
    "mountaincar_continuous": (200_000, ["~tuned"]),
}
# the tuned defaults (conf/tuned/<env>_<variant>.yaml) measured against that baseline: `acx train env=<env>`
TUNED = [("cartpole", "td0", 100_000), ("acrobot", "episodic", 200_000), ("pendulum", "nstep", 300_000),
         ("pendulum", "ppo", 100_000), ("mountaincar", "nstep", 1_000_000),
         ("mountaincar", "ppo", 1_000_000), ("mountaincar_continuous", "nstep", 100_000),
         ("mountaincar_continuous", "ppo", 100_000)]  # fmt: skip
# MuJoCo: the zoo's A2C and PPO settings (conf/tuned/<env>_{nstep,ppo}.yaml) at its 1M budget, every run
# to the end (stop=budget: the zoo reports the return after 1M steps, not the first to pass a threshold)
MUJOCO = {"halfcheetah": 1_000_000, "hopper": 1_000_000}
MUJOCO_VARIANTS = ("nstep", "ppo")
# the variants the zoo has no settings for, with the plain presets (no tuned file), one sweep per env in
# runs/<env>: a tenth of the budget, judged against the zoo's A2C return and acx's A2C at the same step
# (an evaluation is 10 episodes of 1,000 steps: every 20k steps, not the default 5k)
MUJOCO_PLAIN = (("episodic", "td0"), 100_000, ["stop=budget", "eval.every_steps=20000"])
# why such a cell does not learn (seen in its runs here), after its numbers and before acx's A2C at that step
MUJOCO_WHY = {
    ("HalfCheetah-v5", "episodic"): ": it takes one gradient step per 1,000-step episode (100 in 100k steps, "
    "where A2C's 5-step rollouts take 20,000), and its deterministic policies mostly still hold the body "
    "nearly still (returns near 0)",
    ("HalfCheetah-v5", "td0"): ": the plain presets learn from one-step targets on raw observations and rewards "
    "(the zoo's A2C settings: 5-step returns, both normalised)",
    ("Hopper-v5", "ppo"): ": most seeds' deterministic policies stand in place for all 1,000 steps, a return equal "
    "to the episode's length (the healthy reward alone), and never learn to hop forward",
}
# why a cell of these envs that no seed learned did not (seen in every such cell's runs here), after its numbers
WHY = {
    "MountainCar-v0": ": every evaluation scored -200, the car never reached the flag, and until it does every "
    "step costs the same -1, so there is nothing to learn from (the zoo's settings, conf/tuned/mountaincar_nstep "
    "and _ppo, reach it)",
    "MountainCarContinuous-v0": ": the policies learn to push as little as possible (a return of 0, the action "
    "cost saved) before their noise drives the car up the hill; the zoo's settings "
    "(conf/tuned/mountaincar_continuous_nstep and _ppo: rewards normalised, a high gamma or long rollouts) reach it",
}
# rl-baselines3-zoo's published results (its benchmark.md: one trained agent per cell, its mean return
# and std over ~150k deterministic eval steps), (env id, acx variant): (zoo algo, mean, std, budget, zoo env id)
ZOO = {
    ("CartPole-v1", "nstep"): ("a2c", 500.0, 0.0, 500_000, "CartPole-v1"),
    ("CartPole-v1", "ppo"): ("ppo", 500.0, 0.0, 100_000, "CartPole-v1"),
    ("Acrobot-v1", "nstep"): ("a2c", -83.353, 17.213, 500_000, "Acrobot-v1"),
    ("Acrobot-v1", "ppo"): ("ppo", -73.506, 18.201, 1_000_000, "Acrobot-v1"),
    ("Pendulum-v1", "nstep"): ("a2c", -162.965, 103.210, 1_000_000, "Pendulum-v1"),
    ("Pendulum-v1", "ppo"): ("ppo", -172.225, 104.159, 100_000, "Pendulum-v1"),
    ("MountainCar-v0", "nstep"): ("a2c", -111.263, 24.087, 1_000_000, "MountainCar-v0"),
    ("MountainCar-v0", "ppo"): ("ppo", -110.423, 19.473, 1_000_000, "MountainCar-v0"),
    ("MountainCarContinuous-v0", "nstep"): ("a2c", 91.166, 0.255, 100_000, "MountainCarContinuous-v0"),
    ("MountainCarContinuous-v0", "ppo"): ("ppo", 88.343, 2.572, 20_000, "MountainCarContinuous-v0"),
    ("HalfCheetah-v5", "nstep"): ("a2c", 3041.174, 157.265, 1_000_000, "HalfCheetah-v3"),
    ("HalfCheetah-v5", "ppo"): ("ppo", 5819.099, 663.530, 1_000_000, "HalfCheetah-v3"),
    ("Hopper-v5", "nstep"): ("a2c", 733.454, 376.574, 1_000_000, "Hopper-v3"),
    ("Hopper-v5", "ppo"): ("ppo", 2410.435, 10.026, 1_000_000, "Hopper-v3"),
}
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


REPORTS: dict[Path, Report] = {}


def report_of(sweep: Path, out: Path, reps: int) -> Report:
    """``acx report`` of one sweep (its figures in ``out``), computed once however many tables use it;
    a sweep of several variants compares them against nstep."""
    if sweep not in REPORTS:
        REPORTS[sweep] = write_report(sweep, out=out, baseline="algo=nstep" if sweep.name in ENVS else None, reps=reps)
    return REPORTS[sweep]


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


def table_cell(
    row: dict, env: str, variant: str, defaults: str, budget: int, reached: int | None = None, target: str = ""
) -> dict:
    """learning.json's cell for an ``acx report`` row: a cell learns when any seed reached the
    threshold (or ``reached`` seeds a ``target`` of its own: MuJoCo's is the zoo's published return);
    one that does not says why (acx prints it at the start of such a run)."""
    reached = row["reached"] if reached is None else reached
    learns = reached > 0
    why = None
    if not learns:
        random_play = REFERENCE_SCORES.get(row["env_id"], (None,))[0]
        below = random_play is not None and row["final"]["IQM"].point < random_play
        why = (f"0/{row['runs']} seeds reached {target or format(row['threshold'], 'g')} within {budget:,} env steps"
               + (f", and their final IQM ({row['final']['IQM'].point:.0f}) is below random play ({random_play:.0f})"
                  if below else "") + WHY.get(row["env_id"], ""))  # fmt: skip
    return {"env": env, "env_id": row["env_id"], "variant": variant, "defaults": defaults, "budget": budget,
            "runs": row["runs"], "reached": reached, "solved": row["solved"], "learns": learns,
            "why": why}  # fmt: skip


# the headings that start docs/learning.md's sections after its first (the title, the plain presets' table and
# where a cell is poor): a redraw keeps a section whose sweeps are not in --runs as the last doc had it
SECTIONS = ("## Tuned defaults", "## MuJoCo", "## Against rl-baselines3-zoo", "## Spaces and memory",
            "## Across envs", "## Per env")  # fmt: skip
KEPT = "Partly redrawn on"  # the first section's last line, after a redraw that kept some sections


def last_doc(out: Path, table: Path) -> tuple[dict[str, list[str]], list[dict]]:
    """The doc a previous run wrote in ``out``: its sections' lines, keyed by the start of their heading
    in SECTIONS ("" for the first; less the line that says what an earlier redraw kept), and the cells
    of its ``table`` (learning.json); ({}, []) when there is none."""
    sections: dict[str, list[str]] = {}
    if (out / "learning.md").is_file():
        key = ""
        for line in (out / "learning.md").read_text().splitlines():
            key = next((s for s in SECTIONS if line.startswith(s)), key)
            if not line.startswith(KEPT):
                sections.setdefault(key, []).append(line)
    return sections, json.loads(table.read_text())["cells"] if table.is_file() else []


def table_rows(lines: list[str], key: tuple[int, int] = (0, 1)) -> dict[tuple[str, str], str]:
    """A section's table rows by two of their cells (``key``: those of the env id and the variant), less
    the headers."""
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) > 2 and cells[0] != "env" and not set(cells[0]) <= set("-:"):
            rows[(cells[key[0]], cells[key[1]])] = line
    return rows


def env_id_of(env: str) -> str:
    """The Gymnasium id of an env preset (conf/env/<env>.yaml)."""
    from omegaconf import OmegaConf

    return str(OmegaConf.load(ROOT / "conf" / "env" / f"{env}.yaml").id)


def write_doc(
    runs: Path, out: Path, table: Path, reps: int, walls: dict[str, float], seeds: int
) -> tuple[Path, list[str]]:
    """docs/learning.md (in ``out``) and its ``table`` (learning.json) from the sweeps in ``runs``; and the
    sections kept as the last doc had them, none of their sweeps being in ``runs`` (a fresh machine's
    `make learning ARGS="--env hopper"` redraws Hopper's rows and keeps the rest).
    The zoo's and MuJoCo's tables keep the rows they cannot redraw."""
    old, old_cells = last_doc(out, table)
    kept = []
    envs = {env: v for env, v in ENVS.items() if (runs / env).is_dir()}  # --env without the others' sweeps
    if not envs and "" not in old:
        raise SystemExit(f"learning: error: no sweeps in {runs} and no {out / 'learning.md'} (make learning)")
    figures = out / "learning"
    figures.mkdir(parents=True, exist_ok=True)
    if envs:
        top, across, per_env, cells = plain_sections(runs, envs, figures, reps, walls, seeds)
    else:
        top, across, per_env = old[""], old.get("## Across envs", []), old.get("## Per env", [])
        cells = [c for c in old_cells if c["defaults"] == "plain" and c["env"] in ENVS]
        kept.append("the plain presets")
    tuned, tuned_cells = tuned_section(runs, figures, reps, walls, seeds)
    if not tuned and "## Tuned defaults" in old:
        tuned = old["## Tuned defaults"]
        tuned_cells = [c for c in old_cells if c["defaults"] != "plain" and c["env"] in ENVS]
        kept.append("the tuned defaults")
    mujoco, mujoco_cells = mujoco_section(runs, figures, reps, seeds, old.get("## MuJoCo", []), old_cells)
    zoo = zoo_section(runs, figures, reps, seeds, old.get("## Against rl-baselines3-zoo", []))
    spaces = spaces_section(runs, figures, reps, walls, seeds)
    if not spaces and "## Spaces and memory" in old:
        spaces = old["## Spaces and memory"]
        kept.append("the spaces-and-memory sweeps")
    if kept:  # the first section says which are older than this run
        top = [
            "\n".join(top).rstrip("\n"),
            "",
            f"{KEPT} {datetime.date.today()}: {', '.join(kept)} as the doc before had them "
            "(this run had none of their sweeps).",
        ]
    sections = [top, tuned, mujoco, zoo, spaces, across, per_env]
    text = "\n\n".join("\n".join(s).strip("\n") for s in sections if "".join(s).strip())
    path = out / "learning.md"
    path.write_text(text + "\n")
    cells += tuned_cells + mujoco_cells
    table.write_text(json.dumps({"written": str(datetime.date.today()), "cells": cells}, indent=1))
    return path, kept


def plain_sections(
    runs: Path, envs: dict, figures: Path, reps: int, walls: dict[str, float], seeds: int
) -> tuple[list[str], list[str], list[str], list[dict]]:
    """The plain presets' sweeps of ``envs``: the doc's first section (a row per env and variant, where a
    cell is poor), the normalised scores across envs, the per-env figures; and their learning.json cells."""
    names = [{"cartpole": "CartPole", "mountaincar": "MountainCar", "mountaincar_continuous": "MountainCarContinuous"}
             .get(env, env.capitalize()) for env in envs]  # fmt: skip
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
        report = report_of(runs / env, figures / env, reps)
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
                low, high = REFERENCE_SCORES[row["env_id"]]
                gap = 0.01 * (high - low)  # 1% of random play to the threshold: -0.0 against -0.0 is no decline
                worse = row["final"]["IQM"].high < row["best"]["IQM"].low - gap  # worse after their best
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

    top, lines = lines, []
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
    lines += ["", f"![performance profile across the {len(ids)} envs](learning/performance_profile.png)"]
    across, lines = lines, ["## Per env", ""]
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
    return top, across, lines, cells


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
        plain = report_of(runs / env, figures / env, reps)
        tuned = report_of(sweep, figures / name, reps)
        for label, report in (("plain", plain), ("tuned", tuned)):
            rows = dict(zip(report.groups, report.rows, strict=True))
            key = next((k for k in rows if label == "tuned" or k == f"algo={variant}"), None)
            if key is None:  # a variant the plain sweeps leave out (ppo)
                continue
            row, c = rows[key], cell(rows[key])
            what = f"`conf/tuned/{env}_{variant}.yaml`" if label == "tuned" else f"plain `algo={variant}`"
            if label == "tuned":
                cells.append(table_cell(row, env, variant, f"conf/tuned/{env}_{variant}.yaml", budget))
            steps = budget if label == "tuned" else ENVS[env][0]  # the plain row: the plain sweep's budget
            lines.append(f"| {row['env_id']} | {steps:,} | {what} | {c['reached']} | {c['solved']} "
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


def zoo_of(env_id: str, variant: str) -> str:
    """The zoo's published result for a cell, as the tables show it."""
    algo, mean, std, budget, zoo_env = ZOO[(env_id, variant)]
    return f"{mean:.1f} ± {std:.1f} ({algo.upper()}, {zoo_env}, {budget / 1e6:g}M)"


def finished(sweep: Path, seeds: int) -> bool:
    """Whether every seed's run of ``sweep`` has ended (its summary.json written): an hours-long MuJoCo
    sweep still training, or stopped to be resumed, is left out of the doc rather than shown half done."""
    return len(list(sweep.glob("*/summary.json"))) >= seeds


def mujoco_section(
    runs: Path, figures: Path, reps: int, seeds: int, old: list[str], old_cells: list[dict]
) -> tuple[list[str], list[dict]]:
    """HalfCheetah and Hopper: the zoo's A2C and PPO settings at its 1M budget against its published
    returns, and their learning.json cells (a cell learns when a seed's final return reached the zoo's);
    a cell with no finished sweep in ``runs`` keeps its row and cell of the last doc (``old``)."""
    from acx.analysis.scores import random_score

    sweeps = [(env, variant, budget) for env, budget in MUJOCO.items() for variant in MUJOCO_VARIANTS]
    drawn = {(env, variant) for env, variant, _ in sweeps if finished(runs / f"tuned_{env}_{variant}", seeds)}
    old_rows = table_rows(old)
    plain_lines, plain_cells = mujoco_plain(runs, figures, reps, seeds, old, old_cells)
    if not drawn and not old_rows and not plain_cells:
        return [], []
    lines = [
        "",
        "## MuJoCo at the zoo's budget: HalfCheetah-v5 and Hopper-v5",
        "",
        "`acx train env=<env> algo=<variant>` picks the zoo's settings (`conf/tuned/<env>_nstep.yaml`: its "
        "a2c.yml MuJoCo defaults; `conf/tuned/<env>_ppo.yaml`: its tuned ppo.yml entry). Seeds "
        f"0..{seeds - 1}, each run to its budget (`stop=budget`: the zoo reports the return after 1M steps): "
        f"`acx train -m hydra/launcher=population env=<env> algo=<variant> 'seed=range(0,{seeds})' stop=budget`. "
        "*At or above the zoo*: the seeds whose final return (10 deterministic episodes) is at or above "
        "the zoo's published return for the same algorithm; a cell learns when any seed is. The zoo's "
        "numbers are one trained agent each on the v3 envs (its `benchmark.md`), so they carry no spread "
        "across seeds; v5 differs from v3 in MuJoCo's bindings and defaults, not in the task.",
        "",
        "| env | variant | budget | at or above the zoo | final return, IQM [95% CI] | best return, IQM [95% CI] "
        "| the zoo's return | random play | wall s (mean) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cells, figures_of = [], []
    for env, variant, budget in sweeps:
        name = f"tuned_{env}_{variant}"
        defaults = f"conf/tuned/{env}_{variant}.yaml"
        if (env, variant) not in drawn:
            if (row_kept := old_rows.get((env_id_of(env), variant))) is not None:
                lines.append(row_kept)
                cells += [c for c in old_cells if (c["env"], c["variant"], c["defaults"]) == (env, variant, defaults)]
                figures_of += [f"![{env} {variant}](learning/{name}/learning_curves.png)"]
            continue
        report = report_of(runs / name, figures / name, reps)
        row, group = report.rows[0], next(iter(report.groups.values()))
        finals = np.array([r.final_eval for r in group], dtype=float)
        zoo_mean = ZOO[(row["env_id"], variant)][1]
        above = int((finals >= zoo_mean).sum())
        c = cell(row)
        random_play = random_score(row["env_id"], episodes=10)
        lines.append(f"| {row['env_id']} | {variant} | {budget:,} | {above}/{row['runs']} | {c['final']} | {c['best']} "
                     f"| {zoo_of(row['env_id'], variant)} | {random_play:.0f} | {c['wall']} |")  # fmt: skip
        target = f"the zoo's return ({zoo_mean:.0f})"
        cells.append(table_cell(row, env, variant, defaults, budget, above, target))
        if cells[-1]["why"] is not None:
            spread = f"; seeds' final returns {finals.min():.0f} to {finals.max():.0f}"
            cells[-1]["why"] += final_of(row, random_play, spread) + MUJOCO_WHY.get((row["env_id"], variant), "")
        figures_of += [f"![{env} {variant}](learning/{name}/learning_curves.png)"]
    shown = {(c["env"], c["variant"]) for c in cells}
    missing = [f"{env_id_of(env)} {variant}" for env, variant, _ in sweeps if (env, variant) not in shown]
    if missing:  # hours a sweep: say which have not been run to the end here yet
        lines += ["", f"Not measured here yet: {', '.join(missing)} (`make learning ARGS=\"--env <env>\"`: "
                      "10 seeds x 1M steps take one to three hours on one core)."]  # fmt: skip
    return lines + plain_lines + ["", *figures_of], cells + plain_cells


def final_of(row: dict, random_play: float, more: str = "") -> str:
    """What a MuJoCo cell that does not learn reached instead (REFERENCE_SCORES has no random play for
    MuJoCo, so table_cell cannot say it), and ``more`` in the same parentheses."""
    return f" (their final IQM {row['final']['IQM'].point:.0f}, random play {random_play:.0f}{more})"


def mujoco_plain(
    runs: Path, figures: Path, reps: int, seeds: int, old: list[str], old_cells: list[dict]
) -> tuple[list[str], list[dict]]:
    """MUJOCO_PLAIN's rows (the plain presets of the variants the zoo has no settings for), each against
    the zoo's A2C return and acx's A2C sweep at the same step, and their learning.json cells; an env
    with no finished sweep keeps its rows and cells of the last doc (``old``)."""
    from acx.analysis.scores import random_score

    variants, budget, _ = MUJOCO_PLAIN
    old_rows = table_rows(old, key=(0, 2))
    rows, cells = [], []
    for env in MUJOCO:
        sweep = runs / env
        if not finished(sweep, seeds * len(variants)):
            for variant in variants:
                if (row_kept := old_rows.get((env_id_of(env), variant))) is not None:
                    rows.append(row_kept)
                    cells += [c for c in old_cells if (c["env"], c["variant"]) == (env, variant)
                              and c["defaults"] == "plain"]  # fmt: skip
            continue
        report = report_of(sweep, figures / env, reps)
        a2c = None  # acx's A2C (the tuned nstep sweep above) at this budget: IQM [95% CI] across its seeds
        if finished(runs / f"tuned_{env}_nstep", seeds):
            name = f"tuned_{env}_nstep"
            curve = next(iter(report_of(runs / name, figures / name, reps).curves.values()))
            at = int(np.searchsorted(curve.steps, budget, side="right")) - 1
            a2c = f"{curve.iqm[at]:.0f} [{curve.low[at]:.0f}, {curve.high[at]:.0f}] (step {curve.steps[at]:,.0f})"
        for label, row in zip(report.groups, report.rows, strict=True):
            variant = label.split("=", 1)[1]
            finals = np.array([r.final_eval for r in report.groups[label]], dtype=float)
            zoo_mean = ZOO[(row["env_id"], "nstep")][1]
            above, c = int((finals >= zoo_mean).sum()), cell(row)
            target = f"the zoo's A2C return ({zoo_mean:.0f})"
            cells.append(table_cell(row, env, variant, "plain", budget, above, target))
            random_play = random_score(row["env_id"], episodes=10)
            if cells[-1]["why"] is not None:
                cells[-1]["why"] += (
                    final_of(row, random_play) + MUJOCO_WHY.get((row["env_id"], variant), "")
                    + (f"; acx's A2C with the zoo's settings had reached {a2c} by then" if a2c else "")
                )  # fmt: skip
            learns = "yes" if cells[-1]["learns"] else f"**no**: {cells[-1]['why']}"
            rows.append(f"| {row['env_id']} | {budget:,} | {variant} | {above}/{row['runs']} | {c['final']} "
                        f"| {c['best']} | {a2c or 'no A2C sweep here'} | {random_play:.0f} | {learns} |")  # fmt: skip
    if not rows:
        return [], []
    return [
        "",
        f"The variants the zoo has no settings for, with the plain presets (no tuned file: `acx train env=<env> "
        f"algo={'|'.join(variants)}`), the same seeds, each run to {budget:,} steps, a tenth of the budget above: "
        f"`acx train -m hydra/launcher=population env=<env> algo={','.join(variants)} 'seed=range(0,{seeds})' "
        f"total_steps={budget} {' '.join(MUJOCO_PLAIN[2])}`. Each is judged against the zoo's A2C return and "
        "beside acx's A2C (`conf/tuned/<env>_nstep.yaml`, the runs above) at the same step.",
        "",
        "| env | budget | variant | at or above the zoo's A2C | final return, IQM [95% CI] "
        "| best return, IQM [95% CI] | acx's A2C at this step, IQM [95% CI] | random play | learns |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        *[f"![{env}: {' and '.join(variants)}](learning/{env}/learning_curves.png)" for env in MUJOCO
          if any(c["env"] == env for c in cells)],
    ], cells  # fmt: skip


def zoo_section(runs: Path, figures: Path, reps: int, seeds: int, old: list[str]) -> list[str]:
    """acx's n-step and PPO, with the defaults a plain command picks, against the zoo's published A2C and
    PPO returns on every env with a sweep; an env and variant with none keeps its row of the last doc
    (``old``)."""
    lines = [
        "",
        "## Against rl-baselines3-zoo's published results",
        "",
        "acx's `algo=nstep` (A2C) and `algo=ppo` with the defaults `acx train env=<env> algo=<variant>` picks "
        f"(the tuned file where there is one, else the plain presets), seeds 0..{seeds - 1}, against the zoo's "
        "`benchmark.md`: one trained agent per cell, its mean return and std over about 150k deterministic "
        "eval steps, at the zoo's own budget. *Verdict*: the zoo's mean against acx's final IQM CI (above it, "
        "inside it, below it). On the classic envs an acx run stops once it solves (its final return is the "
        "first confirmed evaluation at the threshold), so its final return is what it reached, not its "
        "ceiling.",
        "",
        "| env | variant | acx defaults | acx budget | acx final return, IQM [95% CI] | the zoo | verdict |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    tuned = {(env, variant): budget for env, variant, budget in TUNED}
    tuned.update({(env, variant): budget for env, budget in MUJOCO.items() for variant in MUJOCO_VARIANTS})
    shown, old_rows = 0, table_rows(old)
    for env in [*ENVS, *MUJOCO]:
        for variant in ("nstep", "ppo"):
            name = f"tuned_{env}_{variant}"
            if (env, variant) in tuned and finished(runs / name, seeds):
                sweep, budget, defaults = runs / name, tuned[(env, variant)], f"`conf/tuned/{env}_{variant}.yaml`"
            elif env in ENVS and (env, variant) not in tuned and (runs / env).is_dir():
                sweep, budget, defaults = runs / env, ENVS[env][0], "plain"
            else:
                if (row_kept := old_rows.get((env_id_of(env), variant))) is not None:
                    lines.append(row_kept)
                    shown += 1
                continue
            report = report_of(sweep, figures / sweep.name, reps)
            rows = dict(zip(report.groups, report.rows, strict=True))
            row = rows.get(f"algo={variant}", report.rows[0])
            if (row["env_id"], variant) not in ZOO:
                continue
            final, zoo_mean = row["final"]["IQM"], ZOO[(row["env_id"], variant)][1]
            verdict = "above" if final.low > zoo_mean else "below" if final.high < zoo_mean else "inside"
            lines.append(f"| {row['env_id']} | {variant} | {defaults} | {budget:,} | {format_ci(final)} "
                         f"| {zoo_of(row['env_id'], variant)} | {verdict} |")  # fmt: skip
            shown += 1
    return lines if shown else []


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
    parser.add_argument("--table", default=str(TABLE), help="the learning.json a run's start-of-run note reads")
    parser.add_argument("--reuse", action="store_true", help="write the doc from the sweeps already in --runs")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap repetitions")
    parser.add_argument("--tuned-only", action="store_true", help="train only the tuned sweeps, reuse the others")
    parser.add_argument(
        "--env",
        action="append",
        choices=[*ENVS, *MUJOCO],
        help="train this env only (repeatable); the doc: all in --runs",
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
        chosen = {env: v for env, v in ENVS.items() if not args.env or env in args.env}  # MuJoCo: below
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
        for env, budget in MUJOCO.items():
            if args.env and env not in args.env:
                continue
            for variant in MUJOCO_VARIANTS:  # hours each: 10 seeds x 1M MuJoCo steps on one core
                print(f"learning: {env} ({variant}), {args.seeds} seeds, {budget:,} steps", flush=True)
                name = f"tuned_{env}_{variant}"
                walls[name] = train(runs / name, env, budget, ["stop=budget"], args.seeds, variants=(variant,))
            variants, budget, extra = MUJOCO_PLAIN
            print(f"learning: {env} ({', '.join(variants)}), {args.seeds} seeds, {budget:,} steps", flush=True)
            walls[env] = train(runs / env, env, budget, extra, args.seeds, variants=variants)
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
    path, kept = write_doc(runs, Path(args.out), Path(args.table), args.reps, walls, args.seeds)
    print(f"learning: wrote {path} ({datetime.date.today()})")
    if kept:  # none of their sweeps in --runs: a fresh machine's --env halfcheetah
        print(f"learning: note: kept {', '.join(kept)} as the last {path} had them: none of their sweeps in {runs}")
    elif missing:  # the plain presets' section is drawn from the sweeps, so it holds only the envs that have one
        print(f"learning: note: {path} covers only {', '.join(e for e in ENVS if e not in missing)}: no sweeps in "
              f"{runs} for {', '.join(missing)} (make learning ARGS=\"--env {' --env '.join(missing)}\")")  # fmt: skip


if __name__ == "__main__":
    main()
