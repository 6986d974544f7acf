"""Population training against one process per run, side by side on this machine: writes
docs/population.md and docs/population.json.

    make bench-population          # or: python bench/population.py [--seeds 64] [--budget 100000]

Arms, each one real `acx train` command (logger=none, progress=false), in this order:
- joblib:      -m hydra/launcher=joblib seed=range(0,S)      one process per run, one per core
- population:  -m hydra/launcher=population seed=range(0,S)  the default: one population per core
- population_1proc: the same in one process (hydra.launcher.n_jobs=1): its peak RSS, P = S members
- throughput: stop=budget, a fixed budget, no evaluations: a single run, then P = S members in one
  process; training steps/s = the median logged time/sps, summed over members
- single_rss:  one plain `acx train seed=0` run, to 100k steps or solved: its peak RSS
Learning: seeds 0..31 of the joblib and population arms (the same seeds, the same config), solved
count and steps to solve, and a two-sided Mann-Whitney U test (scipy) on steps to solve, a seed that
did not solve counted as slower than every solve.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACX = str(Path(sys.executable).parent / "acx")
QUIET = ["logger=none", "progress=false"]


def acx_train(args: list[str]) -> tuple[float, float]:
    """Run `acx train ARGS` in a fresh process; (wall seconds, peak RSS in MiB of the largest process
    among it and the workers it waited for: wait4's ru_maxrss)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([ACX, "train", *args], stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"acx train {' '.join(args)} failed:\n{err.read()[-3000:]}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def summaries(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("**/summary.json"))]


def training_sps(run_dir: Path) -> float:
    """The median of a run's logged training steps/s (``time/sps``: env steps per second between log
    rows, so start-up, the final evaluation and checkpoint writes are not in it)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["time/sps"] for r in rows if "time/sps" in r)


def by_seed(runs: list[dict]) -> dict[int, dict]:
    return {r["seed"]: r for r in runs}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--budget", type=int, default=100_000)
    parser.add_argument("--throughput-steps", type=int, default=50_000)
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="acx-bench-population-"))
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    seeds = f"seed=range(0,{args.seeds})"
    budget = [*QUIET, f"total_steps={args.budget}"]
    R: dict = {"seeds": args.seeds, "budget": args.budget, "cores": os.cpu_count(),
               "throughput_steps": args.throughput_steps}  # fmt: skip
    load_before = os.getloadavg()[0]

    for arm, launcher in (("joblib", ["hydra/launcher=joblib"]), ("population", ["hydra/launcher=population"]),
                          ("population_1proc", ["hydra/launcher=population", "hydra.launcher.n_jobs=1"])):  # fmt: skip
        wall, rss = acx_train(["-m", *launcher, seeds, *budget, f"hydra.sweep.dir={work / arm}"])
        runs = summaries(work / arm)
        assert len(runs) == args.seeds, f"{arm}: {len(runs)} runs"
        R[arm] = {"wall_seconds": wall, "peak_rss_mib": rss, "runs": runs}
        log(f"{arm}: {wall:.1f} s, peak RSS {rss:.0f} MiB, solved {sum(r['solved'] for r in runs)}/{len(runs)}")

    fixed = [*QUIET, "stop=budget", f"total_steps={args.throughput_steps}", "eval.every_steps=100000000",
             "checkpoint.every_steps=100000000"]  # fmt: skip
    wall, _ = acx_train([*fixed, f"hydra.run.dir={work / 'single_sps'}"])
    single_sps = training_sps(work / "single_sps")
    wall, _ = acx_train(["-m", "hydra/launcher=population", "hydra.launcher.n_jobs=1", seeds, *fixed,
                         f"hydra.sweep.dir={work / 'pop_sps'}"])  # fmt: skip
    members = sorted(p.parent for p in (work / "pop_sps").glob("*/summary.json"))
    pop_sps = sum(training_sps(folder) for folder in members)  # members step together: their rates add up
    R["throughput"] = {"single_sps": single_sps, "population_sps": pop_sps, "members": len(members)}
    log(f"throughput: single {single_sps:,.0f} steps/s, population of {len(members)} {pop_sps:,.0f} steps/s")

    wall, rss = acx_train([*budget, "seed=0", f"hydra.run.dir={work / 'single_rss'}"])
    R["single_rss_mib"] = rss
    R["load_before"], R["load_after"] = load_before, os.getloadavg()[0]
    R["date"] = datetime.date.today().isoformat()
    R["cpu"] = cpu_name()
    out = Path(args.out)
    (out / "population.json").write_text(json.dumps(R, indent=1))
    write_report(R, out)
    shutil.rmtree(work, ignore_errors=True)


def learning(R: dict, n: int = 32) -> tuple[list[str], float]:
    """Rows comparing seeds 0..n-1 of the joblib and population arms, and the Mann-Whitney p-value."""
    from scipy.stats import mannwhitneyu

    budget = R["budget"]
    rows, samples = [], []
    for arm in ("joblib", "population"):
        runs = by_seed(R[arm]["runs"])
        picked = [runs[s] for s in range(min(n, R["seeds"]))]
        steps = [r["solved_at_step"] for r in picked if r["solved"]]
        samples.append([r["solved_at_step"] if r["solved"] else 10 * budget for r in picked])
        spread = f"{min(steps):,}-{max(steps):,}" if steps else "-"
        median = f"{statistics.median(steps):,.0f}" if steps else "-"
        rows.append(f"| {arm} | {len(steps)}/{len(picked)} | {median} | {spread} |")
    p = float(mannwhitneyu(samples[0], samples[1], alternative="two-sided").pvalue)
    return rows, p


def arm_row(name: str, command: str, arm: dict) -> str:
    solved = sum(r["solved"] for r in arm["runs"])
    return (
        f"| {name} | {command} | {arm['wall_seconds']:.1f} | {solved}/{len(arm['runs'])} | {arm['peak_rss_mib']:.0f} |"
    )


def write_report(R: dict, out: Path) -> None:
    j, pop, one = R["joblib"], R["population"], R["population_1proc"]
    t = R["throughput"]
    rows, p = learning(R)
    spent = sum(r["env_steps"] for r in pop["runs"])
    budget_total = R["seeds"] * R["budget"]
    n = min(32, R["seeds"])
    text = f"""# Population training against one process per run

Written by `make bench-population` (`bench/population.py`) on {R["date"]}: {R["cpu"]}, {R["cores"]} cores,
load {R["load_before"]:.2f} before and {R["load_after"]:.2f} after. Every number below comes from this one
run, each arm one real `acx train` command (`logger=none progress=false`), one after another.

## {R["seeds"]} seeds of the default CartPole config, each to solved or {R["budget"]:,} env steps

| arm | command | wall time (s) | solved | peak RSS of its largest process (MiB) |
|---|---|---:|---:|---:|
{arm_row("joblib", f"`acx train -m hydra/launcher=joblib 'seed=range(0,{R['seeds']})'`", j)}
{arm_row("population", f"`acx train -m hydra/launcher=population 'seed=range(0,{R['seeds']})'`", pop)}
{arm_row("population, one process", "the same with `hydra.launcher.n_jobs=1`", one)}
| a single run | `acx train seed=0` | | | {R["single_rss_mib"]:.0f} |

- **Wall time: the population launcher is {j["wall_seconds"] / pop["wall_seconds"]:.1f}x faster than
  joblib** (one job per core, {R["cores"]} cores); in one process it is {j["wall_seconds"] / one["wall_seconds"]:.1f}x.
- **Memory:** the one process holding all {R["seeds"]} members peaks at
  {one["peak_rss_mib"] / R["single_rss_mib"]:.2f}x a single run's RSS.

## Training throughput

`stop=budget total_steps={R["throughput_steps"]}`: a fixed budget with no evaluations or
checkpoints; steps/s: the median of a run's logged `time/sps` (env steps per second between log rows),
summed over the members of the population (they step together).

| | steps/s |
|---|---:|
| a single run | {t["single_sps"]:,.0f} |
| a population of {t["members"]} in one process | {t["population_sps"]:,.0f} |

**Aggregate throughput at P={t["members"]}: {t["population_sps"] / t["single_sps"]:.1f}x a single run's.**

**What leaving saves.** A member that solves leaves the population and costs nothing more. The
{R["seeds"]} members of the population arm trained {spent:,} env steps of the {budget_total:,} a population
without early stops would ({100 * spent / budget_total:.0f}%); at the throughput above, the other
{budget_total - spent:,} would have taken about {(budget_total - spent) / t["population_sps"]:.0f} s more.

## Learning: the same seeds 0-{n - 1}, as separate runs and as one population

| arm | solved | steps to solve (median) | spread (min-max) |
|---|---:|---:|---:|
{chr(10).join(rows)}

Two-sided Mann-Whitney U test on steps to solve (a seed that did not solve counts as slower than every
solve): p = {p:.3f}. A member follows the single run of its seed to float rounding (the same envs, initial
weights and sampling stream; `tests/test_population.py`), so the two arms differ only where rounding
has grown into a different trajectory.
"""
    (out / "population.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
