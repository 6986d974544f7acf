"""``acx report DIR``: a markdown table per configuration (a run's overrides less ``seed``) and a PNG
of the learning curves, eval return vs env steps with the mean and a +-std band across seeds."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acx.config import ReportArgs, validate
from acx.errors import ConfigError
from acx.runs import RunRecord, find_run_dirs, load_run, without_seed

TABLE_NAME = "report.md"
PLOT_NAME = "learning_curves.png"


@dataclass
class Curve:
    """A configuration's learning curve on a common step grid."""

    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    runs: int


@dataclass
class Report:
    markdown: str
    table_path: Path
    plot_path: Path | None
    groups: dict[str, list[RunRecord]]
    rows: list[dict[str, Any]]
    curves: dict[str, Curve] = field(default_factory=dict)
    figure: Any = None  # the matplotlib Figure that was saved


def short_override(override: str) -> str:
    """``key=value`` with a long float (an Optuna sample) cut to 4 significant digits, for labels."""
    key, sep, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return f"{key}={number:.4g}" if sep and len(value) > 8 and not value.isdigit() else override


def group_runs(runs: list[RunRecord]) -> tuple[dict[str, list[RunRecord]], list[str]]:
    """Runs grouped by configuration, labelled by the overrides in which they differ; and the shared ones."""
    keys = [without_seed(r.overrides) for r in runs]
    shared = [o for o in keys[0] if all(o in k for k in keys)] if keys else []
    groups: dict[str, list[RunRecord]] = {}
    for run, key in zip(runs, keys, strict=True):
        label = " ".join(short_override(o) for o in key if o not in shared) or "(one configuration)"
        groups.setdefault(label, []).append(run)
    return groups, shared


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarize(runs: list[RunRecord]) -> dict[str, Any]:
    """One table row: statistics across the seeds of one configuration."""
    best = [r.best_eval for r in runs if r.best_eval is not None]
    final = [r.final_eval for r in runs if r.final_eval is not None]
    aucs = [r.eval_auc for r in runs if r.eval_auc is not None]
    thresholds = {r.threshold for r in runs}
    threshold = thresholds.pop() if len(thresholds) == 1 else None
    hits = [r.steps_to_threshold for r in runs]
    to_threshold = [float(h) if h is not None else float("inf") for h in hits]  # not reached: slower than all
    walls = [float(r.summary["wall_seconds"]) for r in runs if r.finished and "wall_seconds" in r.summary]
    return {
        "runs": len(runs),
        "finished": sum(r.finished for r in runs),
        "best": _mean_std(best) if best else None,
        "final": _mean_std(final) if final else None,
        "auc": _mean_std(aucs) if aucs else None,
        "threshold": threshold,
        "steps_to_threshold_median": float(np.median(to_threshold)) if threshold is not None and runs else None,
        "solved": sum(h is not None for h in hits),
        "wall_seconds_mean": float(np.mean(walls)) if walls else None,
    }


def _pm(stat: tuple[float, float] | None) -> str:
    return "-" if stat is None else f"{stat[0]:.1f} ± {stat[1]:.1f}"


def markdown_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """The per-configuration table in GitHub markdown."""
    lines = [
        "| configuration | runs | best eval return | final eval return | eval AUC | steps to threshold (median) "
        "| solved | wall time (s, mean) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in rows:
        runs = str(row["runs"]) if row["finished"] == row["runs"] else f"{row['runs']} ({row['finished']} finished)"
        median = row["steps_to_threshold_median"]
        if median is None:
            steps = "-"
        elif np.isinf(median):
            steps = "not reached"
        else:
            steps = f"{median:,.0f}"
        solved = f"{row['solved']}/{row['runs']}" if row["threshold"] is not None else "-"
        wall = "-" if row["wall_seconds_mean"] is None else f"{row['wall_seconds_mean']:.0f}"
        lines.append(
            f"| {label} | {runs} | {_pm(row['best'])} | {_pm(row['final'])} | {_pm(row['auc'])} | {steps} "
            f"| {solved} | {wall} |"
        )
    return "\n".join(lines)


def learning_curve(runs: list[RunRecord]) -> Curve | None:
    """Mean and std across seeds on the union of their eval steps; a run that stopped early (solved)
    holds its last evaluation, so a fast seed is not dropped from the mean once it is done."""
    runs = [r for r in runs if len(r.eval_steps)]
    if not runs:
        return None
    grid = np.unique(np.concatenate([r.eval_steps for r in runs]))
    values = np.stack([np.interp(grid, r.eval_steps, r.eval_returns) for r in runs])
    std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(grid))
    return Curve(steps=grid, mean=values.mean(axis=0), std=std, runs=len(runs))


def plot_curves(curves: dict[str, Curve], path: Path, threshold: float | None = None, title: str = ""):
    """One line per configuration with a +-std band; saved as PNG. Returns the Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, (label, curve) in enumerate(curves.items()):
        color = f"C{i % 10}"
        ax.plot(curve.steps, curve.mean, color=color, label=f"{label} (n={curve.runs})")
        ax.fill_between(curve.steps, curve.mean - curve.std, curve.mean + curve.std, color=color, alpha=0.2, lw=0)
    if threshold is not None:
        ax.axhline(threshold, color="0.5", ls="--", lw=1, label="_threshold")  # "_": not in the legend
        ax.annotate(f"threshold {threshold:g}", (0.005, threshold), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8, color="0.4")  # fmt: skip
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (mean over episodes)")
    ax.set_title(title or "learning curves: mean ± std across seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return fig


def optuna_trials_table(root: Path) -> str:
    """The trials of the Optuna studies in ``root/optuna.db`` (a search's sweep dir), best first; "" if none."""
    db = root / "optuna.db"
    if not db.is_file():
        return ""
    try:
        import optuna
    except ImportError:
        return ""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{db.absolute()}"
    lines = []
    for name in optuna.study.get_all_study_names(url):
        trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        rest = [t for t in trials if t.state.name != "COMPLETE"]
        trials = sorted(complete, key=lambda t: (-t.value, t.number)) + sorted(rest, key=lambda t: t.number)
        lines += [
            f"\nOptuna study `{name}`: {len(trials)} trials, the complete ones best first\n",
            "| trial | state | value | last reported (eval return @ step) | params |",
            "|---:|---|---:|---:|---|",
        ]
        for t in trials:
            value = f"{t.value:.2f}" if t.state.name == "COMPLETE" else "-"  # a pruned trial's value is its last report
            last = max(t.intermediate_values, default=None)
            reported = "-" if last is None else f"{t.intermediate_values[last]:.1f} @ {last:,}"
            params = " ".join(short_override(f"{k}={v}") for k, v in t.params.items())
            lines.append(f"| {t.number} | {t.state.name} | {value} | {reported} | {params} |")
    return "\n".join(lines) + "\n" if lines else ""


def write_report(root: Path) -> Report:
    """Read every run at or below ``root``; write the table and the plot into ``root``."""
    root = Path(root)
    runs = [load_run(p) for p in find_run_dirs(root)]
    if not runs:
        raise ConfigError(f"no runs under {root} (a run folder has metrics.jsonl or summary.json)")
    groups, shared = group_runs(runs)
    rows = [(label, summarize(group)) for label, group in groups.items()]
    curves = {label: c for label, group in groups.items() if (c := learning_curve(group)) is not None}
    thresholds = {row["threshold"] for _, row in rows}
    threshold = thresholds.pop() if len(thresholds) == 1 else None

    header = [f"# acx report: {root}", ""]
    header.append(f"{len(runs)} runs in {len(groups)} configurations (a configuration: the overrides less `seed`).")
    if shared:
        header.append(f"Shared overrides: `{' '.join(shared)}`.")
    header += [
        "Returns: mean ± sample std across seeds of each run's best and final evaluation (the mean over its eval "
        "episodes). Eval AUC: the mean eval return over the step budget (a run that stopped early holds its last "
        "evaluation). Steps to threshold: the first evaluation at or above the env's reward threshold"
        + (f" ({threshold:g})" if threshold is not None else "")
        + "; the median over seeds counts a seed that never reached it as slower than all.",
        "",
        "",
    ]
    markdown = "\n".join(header) + markdown_table(rows) + "\n" + optuna_trials_table(root)
    plot_path = None
    figure = None
    if curves:
        plot_path = root / PLOT_NAME
        figure = plot_curves(curves, plot_path, threshold, title=f"{root.name}: eval return, mean ± std across seeds")
        markdown += f"\n![learning curves]({PLOT_NAME})\n"
    table_path = root / TABLE_NAME
    table_path.write_text(markdown)
    return Report(markdown, table_path, plot_path, groups, [r for _, r in rows], curves, figure)


def main(argv: list[str] | None = None) -> int:
    """``acx report DIR``: write report.md and learning_curves.png into DIR and print the table."""
    parser = argparse.ArgumentParser(
        prog="acx report",
        description="Write report.md (a table per configuration: the overrides less seed) and learning_curves.png "
        "into DIR, and print the table.",
    )
    parser.add_argument("dir", type=Path, help="a run folder or a sweep folder (every run below it)")
    try:
        args = validate(ReportArgs, vars(parser.parse_args(argv)))
        report = write_report(args.dir)
    except ConfigError as exc:
        print(f"acx: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(report.markdown)
    print(f"acx: wrote {report.table_path}" + (f" and {report.plot_path}" if report.plot_path else ""))
    return 0
