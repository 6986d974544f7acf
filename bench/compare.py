"""acx against Stable-Baselines3 A2C on this machine: writes docs/benchmarks.md and docs/benchmarks.png.

    make bench                                   # creates bench/.venv-sb3, then runs this
    python bench/compare.py --sb3-python bench/.venv-sb3/bin/python [--quick]

Every measurement is a fresh process (its own peak RSS, clean thread settings) that prints one JSON
line: bench/acx_side.py for acx, bench/sb3_side.py for SB3 (in its own venv; SB3 is not an acx
dependency). The two tools alternate run by run so that machine drift (other jobs, thermal) hits both,
and every ratio comes from this one run. Both sides use one torch thread.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLVED = 475.0
BUDGET = 200_000
EVAL_EVERY = 2000


def run(cmd: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_SILENT": "true"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def first_solve(curve: list) -> tuple[int, float] | None:
    """(env steps, seconds since the first env step) of the first eval with mean return >= 475."""
    return next(((steps, secs) for steps, secs, ret in curve if ret >= SOLVED), None)


def median_min_max(xs: list[float], fmt: str = "{:.1f}") -> str:
    if not xs:
        return "-"
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def timed(cmd: list[str], repeats: int = 3) -> float:
    """Median wall seconds of a command (start-up measurements)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def versions(python: str) -> str:
    """Python and package versions of an interpreter ('-' where a package is absent)."""
    code = (
        "import importlib.metadata as m, platform\n"
        "def v(p):\n"
        "    try: return m.version(p)\n"
        "    except m.PackageNotFoundError: return '-'\n"
        "names = ('torch', 'gymnasium', 'numpy', 'ale-py', 'stable-baselines3')\n"
        "print('python ' + platform.python_version(), *(f'{p} {v(p)}' for p in names if v(p) != '-'), sep=', ')"
    )
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def replace_section(doc: Path, text: str, begin: str, end: str) -> None:
    """Put ``text`` (a section from marker ``begin`` to marker ``end``) into ``doc`` in place of an
    earlier one, or at its end (bench/ppo.py's and bench/mujoco_a2c.py's sections of benchmarks.md)."""
    current = doc.read_text() if doc.exists() else ""
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + text + rest.split(end, 1)[1].lstrip("\n")
    else:
        current = current.rstrip("\n") + "\n\n" + text
    doc.write_text(current)


def save_and_report(out: Path, name: str, report_only: bool, measure, section, begin: str, end: str) -> None:
    """The end of bench/ppo.py and bench/mujoco_a2c.py: ``measure()`` (or, with ``report_only``, the
    numbers saved in ``out/<name>.json`` before), saved, then their section of ``out/benchmarks.md``."""
    path = out / f"{name}.json"
    if report_only:
        R = json.loads(path.read_text())
    else:
        R = measure()
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(R, indent=1))
    replace_section(out / "benchmarks.md", section(R), begin, end)
    print(f"wrote the {name} section of {out / 'benchmarks.md'}", file=sys.stderr)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sb3-python", default=str(ROOT / "bench/.venv-sb3/bin/python"))
    parser.add_argument("--quick", action="store_true", help="3 seeds and shorter runs: for iterating")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the doc and chart from benchmarks.json")
    args = parser.parse_args()
    if args.report_only:
        return write_report(json.loads((Path(args.out) / "benchmarks.json").read_text()), Path(args.out))
    seeds = range(args.seeds if args.seeds is not None else (3 if args.quick else 10))
    acx = [sys.executable, "bench/acx_side.py"]
    sb3 = [args.sb3_python, "bench/sb3_side.py"]
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    R: dict[str, list[dict]] = {}

    def record(name: str, cmd: list[str]) -> dict:
        r = run(cmd)
        R.setdefault(name, []).append(r)
        log(f"{name:<22} {json.dumps({k: v for k, v in r.items() if k != 'curve'})}")
        return r

    # 1. CartPole time-to-solve (stop at the first eval >= 475) and stability (final eval after 200k steps)
    for seed in seeds:
        s = ["--seed", str(seed), "--steps", str(BUDGET)]
        record(
            "acx_solve", [*acx, "cartpole", *s, "--eval-every", str(EVAL_EVERY), "--stop-at-solve", "--confirm", "0"]
        )
        record("sb3_solve", [*sb3, "cartpole", *s, "--eval-every", str(EVAL_EVERY), "--stop-at-solve"])
        record("acx_solve_confirm", [*acx, "cartpole", *s, "--eval-every", str(EVAL_EVERY), "--stop-at-solve"])
        record("acx_budget", [*acx, "cartpole", *s, "--eval-every", "1000000000"])
        record("sb3_budget", [*sb3, "cartpole", *s, "--eval-every", "0"])
        # the preset tuned for time-to-solve (32 envs, Adam 4e-3, linear lr decay), same protocol
        fast = [*acx, "cartpole", *s, "--experiment", "cartpole_fast"]
        record("acx_fast_solve", [*fast, "--eval-every", str(EVAL_EVERY), "--stop-at-solve", "--confirm", "0"])
        record("acx_fast_budget", [*fast, "--eval-every", "1000000000"])

    # 2 and 5. Throughput with SB3's settings, and the ceilings, at 8 and 64 envs
    steps = {8: 40_000 if args.quick else 100_000, 64: 100_000 if args.quick else 300_000}
    for _repeat in range(1 if args.quick else 2):
        for n in (8, 64):
            e = ["--envs", str(n), "--steps", str(steps[n])]
            record(f"acx_tp{n}", [*acx, "throughput", *e])
            record(f"sb3_tp{n}", [*sb3, "cartpole", *e, "--eval-every", "0"])
            record(f"env_tp{n}", [*acx, "ceiling-env", "--envs", str(n), "--steps", str(steps[n] * 4)])
            record(f"collect_tp{n}", [*acx, "ceiling-collect", *e])

    # 3. Pong, 16 envs: acx, SB3, the bare ALE vector env
    pong_steps = 8_000 if args.quick else 24_000
    p = ["--envs", "16", "--steps", str(pong_steps)]
    record("acx_pong", [*acx, "pong", *p])
    record("sb3_pong", [*sb3, "pong", *p])
    record("env_pong", [*acx, "pong", *p[:2], "--steps", str(pong_steps * 4), "--bare"])

    # 4. Start-up
    acx_cli = [sys.executable, "-m", "acx.cli", "train"]
    help_s = timed([*acx_cli, "--help"])
    for logger in ("wandb", "none"):
        for _ in range(3):
            record(
                f"acx_startup_{logger}",
                [*acx, "cartpole", "--steps", "8", "--eval-every", "1000000000", "--logger", logger],
            )
    for _ in range(3):
        record("sb3_startup", [*sb3, "cartpole", "--steps", "8", "--eval-every", "0"])

    R["meta"] = [
        {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}",
            "acx_versions": versions(sys.executable),
            "sb3_versions": versions(args.sb3_python),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "minutes": (time.perf_counter() - started) / 60,
            "acx_help_seconds": help_s,
            "seeds": len(seeds),
            "quick": args.quick,
        }
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(R, indent=1))
    write_report(R, out)
    log(f"wrote {out / 'benchmarks.md'} and {out / 'benchmarks.png'}")


def write_report(R: dict, out: Path) -> None:
    meta = R["meta"][0]
    n = meta["seeds"]
    med = lambda name, key: statistics.median(r[key] for r in R[name])  # noqa: E731
    rows: list[tuple[str, str, str, str, str]] = []  # (measure, acx, SB3, ratio, target)

    def solve_stats(name: str, from_summary: bool = False):
        solved = [first_solve(r["curve"]) for r in R[name]]
        if from_summary:  # acx's own stop rule (the confirmation runs after the eval that passed)
            solved = [(r["solved_at_step"], r["train_seconds"]) if r["solved_at_step"] else None for r in R[name]]
        hits = [s for s in solved if s is not None]
        return [s[1] for s in hits], [s[0] for s in hits], len(hits)

    a_sec, a_steps, a_n = solve_stats("acx_solve")
    s_sec, s_steps, s_n = solve_stats("sb3_solve")
    c_sec, c_steps, c_n = solve_stats("acx_solve_confirm", from_summary=True)
    ratio = statistics.median(a_sec) / statistics.median(s_sec) if a_sec and s_sec else float("nan")
    rows.append(
        (
            "CartPole time-to-solve, wall s: median (min-max)",
            median_min_max(a_sec, "{:.2f}"),
            median_min_max(s_sec, "{:.2f}"),
            f"{ratio:.2f}x the time",
            "<= 0.33x",
        )
    )
    rows.append(
        (
            "CartPole time-to-solve, env steps: median (min-max)",
            median_min_max(a_steps, "{:,.0f}"),
            median_min_max(s_steps, "{:,.0f}"),
            "",
            "",
        )
    )
    rows.append((f"solved within {BUDGET:,} steps", f"{a_n}/{n}", f"{s_n}/{n}", "", f"{n}/{n}"))
    rows.append(
        (
            "acx default stop rule (+50-episode confirmation): wall s / env steps / solved",
            f"{median_min_max(c_sec, '{:.2f}')} / {median_min_max(c_steps, '{:,.0f}')} / {c_n}/{n}",
            "(no such rule)",
            "",
            "",
        )
    )
    a_stable = sum(r["final_eval"] >= SOLVED for r in R["acx_budget"])
    s_stable = sum(r["final_eval"] >= SOLVED for r in R["sb3_budget"])
    rows.append(
        (
            f"stability: final eval >= 475 after {BUDGET:,} steps (no early stop)",
            f"{a_stable}/{n}",
            f"{s_stable}/{n}",
            "",
            f"{n}/{n}",
        )
    )
    rows.append(
        (
            "final eval returns after the budget",
            ", ".join(f"{r['final_eval']:.0f}" for r in R["acx_budget"]),
            ", ".join(f"{r['final_eval']:.0f}" for r in R["sb3_budget"]),
            "",
            "",
        )
    )
    if "acx_fast_solve" in R:  # JSON from before the preset rows existed has none
        f_sec, f_steps, f_n = solve_stats("acx_fast_solve")
        f_ratio = statistics.median(f_sec) / statistics.median(s_sec) if f_sec and s_sec else float("nan")
        f_stable = sum(r["final_eval"] >= SOLVED for r in R["acx_fast_budget"])
        rows.append(
            (
                "`experiment=cartpole_fast` time-to-solve: wall s / env steps / solved",
                f"{median_min_max(f_sec, '{:.2f}')} / {median_min_max(f_steps, '{:,.0f}')} / {f_n}/{n}",
                "(SB3 as above)",
                f"{f_ratio:.2f}x the time",
                "<= 0.33x",
            )
        )
        rows.append(
            (
                f"`experiment=cartpole_fast` stability after {BUDGET:,} steps: held / final returns",
                f"{f_stable}/{n}: " + ", ".join(f"{r['final_eval']:.0f}" for r in R["acx_fast_budget"]),
                "",
                "",
                f"{n}/{n}",
            )
        )
    tp = {}
    for envs in (8, 64):
        a, s = med(f"acx_tp{envs}", "steps_per_s"), med(f"sb3_tp{envs}", "steps_per_s")
        e, c = med(f"env_tp{envs}", "steps_per_s"), med(f"collect_tp{envs}", "steps_per_s")
        tp[envs] = (a, s, e, c)
        rows.append(
            (
                f"training throughput, {envs} envs x 5 steps (env steps/s)",
                f"{a:,.0f}",
                f"{s:,.0f}",
                f"{a / s:.2f}x",
                ">= 3x",
            )
        )
        rows.append(
            (
                f"  ceiling: CartPole vector env alone, random actions, {envs} envs",
                f"{e:,.0f} (training reaches {100 * a / e:.0f}%)",
                "",
                "",
                "",
            )
        )
        rows.append(
            (
                f"  ceiling: acx collection alone (env + policy, no learning), {envs} envs",
                f"{c:,.0f} (training reaches {100 * a / c:.0f}%)",
                "",
                "",
                "",
            )
        )
    ap, sp, ep = med("acx_pong", "frames_per_s"), med("sb3_pong", "frames_per_s"), med("env_pong", "frames_per_s")
    rows.append(("Pong training, 16 envs (frames/s)", f"{ap:,.0f}", f"{sp:,.0f}", f"{ap / sp:.2f}x", ">= 2x"))
    rows.append(
        (
            "  ceiling: ALE vector env alone, random actions",
            f"{ep:,.0f} (training reaches {100 * ap / ep:.0f}%)",
            "",
            "",
            "",
        )
    )
    rows.append(("start-up: `acx train --help` (s)", f"{meta['acx_help_seconds']:.2f}", "", "", ""))
    rows.append(
        (
            "start-up: process start to first env step, default W&B logger (s)",
            f"{med('acx_startup_wandb', 'startup_seconds'):.2f}",
            f"{med('sb3_startup', 'startup_seconds'):.2f}",
            "",
            "< 2 s",
        )
    )
    rows.append(
        ("start-up: the same with logger=none (s)", f"{med('acx_startup_none', 'startup_seconds'):.2f}", "", "", "")
    )
    for label, a, s in (
        ("peak RSS, CartPole 200k-step run (MiB)", "acx_budget", "sb3_budget"),
        ("peak RSS, throughput run 64 envs (MiB)", "acx_tp64", "sb3_tp64"),
        ("peak RSS, Pong run (MiB)", "acx_pong", "sb3_pong"),
    ):
        am, sm = med(a, "peak_rss_mib"), med(s, "peak_rss_mib")
        rows.append(
            (label, f"{am:.0f}", f"{sm:.0f}", f"{am / sm:.2f}x", "< 1x (CartPole)" if "CartPole" in label else "")
        )

    table = ["| measure | acx | SB3 A2C | acx / SB3 | target |", "|---|---|---|---|---|"]
    table += [f"| {' | '.join(r)} |" for r in rows]
    text = (ROOT / "bench/benchmarks_template.md").read_text()
    fields = {
        "date": meta["date"],
        "machine": f"{meta['cpu']}, {meta['cpus']} CPUs, {meta['system']}",
        "acx_versions": meta["acx_versions"],
        "sb3_versions": meta["sb3_versions"],
        "load": f"{meta['load_before']:.2f} before, {meta['load_after']:.2f} after",
        "minutes": f"{meta['minutes']:.1f}",
        "seeds": f"{n}" + (" (--quick)" if meta["quick"] else ""),
        "table": "\n".join(table),
    }
    for key, value in fields.items():
        text = text.replace("{" + key + "}", value)
    previous = (out / "benchmarks.md").read_text() if (out / "benchmarks.md").exists() else ""
    marker = "<!-- PPO: written by bench/ppo.py -->"  # bench/ppo.py's section: kept as it wrote it
    if marker in previous:
        text = text.rstrip("\n") + "\n\n" + marker + previous.split(marker, 1)[1]
    (out / "benchmarks.md").write_text(text)
    chart(R, tp, (ap, sp, ep), (a_sec, s_sec), out / "benchmarks.png")


def chart(R: dict, tp: dict, pong: tuple, solve: tuple, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    colors = {"acx": "#1f77b4", "SB3 A2C": "#ff7f0e", "env only": "#9a9a9a", "acx collect only": "#aec7e8"}
    ax = axes[0]
    labels = ["8 envs", "64 envs"]
    width = 0.2
    for i, (name, idx) in enumerate((("acx", 0), ("SB3 A2C", 1), ("acx collect only", 3), ("env only", 2))):
        vals = [tp[8][idx], tp[64][idx]]
        ax.bar([x + (i - 1.5) * width for x in range(2)], vals, width, label=name, color=colors[name])
    ax.set_yscale("log")
    ax.set_xticks(range(2), labels)
    ax.set_title("CartPole training throughput (env steps/s, log)")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.bar(["acx", "SB3 A2C", "env only"], pong, color=[colors["acx"], colors["SB3 A2C"], colors["env only"]])
    ax.set_title("Pong, 16 envs (frames/s)")
    ax = axes[2]
    a_sec, s_sec = solve
    boxes, labels = [a_sec or [0], s_sec or [0]], ["acx default", "SB3 A2C"]
    if "acx_fast_solve" in R:
        fast = [first_solve(r["curve"]) for r in R["acx_fast_solve"]]
        boxes.insert(1, [f[1] for f in fast if f is not None] or [0])
        labels.insert(1, "acx cartpole_fast")
    ax.boxplot(boxes, tick_labels=labels)
    ax.set_title("CartPole time-to-solve (wall s, eval included)")
    fig.suptitle(f"acx vs Stable-Baselines3 A2C, {R['meta'][0]['date']}, 1 torch thread each")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
