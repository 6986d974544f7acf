"""``acx report DIR [DIR ...]``: what the seeds support, per configuration (a run's overrides less
``seed``): the IQM, median, mean and optimality gap of the final, best and AUC eval returns with 95%
stratified bootstrap CIs (rliable, through ``acx.analysis.scores``), and three figures: IQM learning curves,
performance profiles and the probability of improvement over a baseline. ``--format csv|json`` also
writes the tidy per-run table."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acx.analysis.runs import RunRecord, find_run_dirs, load_run, override_key, without_seed
from acx.analysis.scores import (
    METRICS,
    REFERENCE_SCORES,
    Estimate,
    interval_estimates,
    iqm_curves,
    normalize,
    performance_profiles,
    probabilities_of_improvement,
)
from acx.config import ReportArgs, validate
from acx.errors import ConfigError

TABLE_NAME = "report.md"
PLOT_NAME = "learning_curves.png"
PROFILE_NAME = "performance_profile.png"
IMPROVEMENT_NAME = "probability_of_improvement.png"
TIDY_NAME = "runs"  # runs.csv or runs.json
SCORES = {"final": "final eval return", "best": "best eval return", "auc": "eval AUC"}
MAX_CURVE_POINTS = 200  # a curve's bootstrap is over at most this many eval steps (evenly spaced)
FEW_SEEDS = 5  # below this, the report warns that its CIs say little
PAIR = " | "  # joins the two methods of a probability-of-improvement pair (a method label has no " | ")


@dataclass
class Curve:
    """A configuration's eval returns on a common step grid: (runs x points), their IQM and its 95% CI."""

    steps: np.ndarray
    values: np.ndarray
    iqm: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: int
    env_id: str | None


@dataclass
class Report:
    markdown: str
    table_path: Path
    plot_path: Path | None
    groups: dict[str, list[RunRecord]]
    rows: list[dict[str, Any]]
    curves: dict[str, Curve] = field(default_factory=dict)
    figure: Any = None  # the learning curves' matplotlib Figure, as saved
    figures: dict[str, Any] = field(default_factory=dict)  # every saved Figure, by file name
    profile_scores: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (runs x envs)
    improvements: dict[str, Estimate] = field(default_factory=dict)  # "X | baseline" -> P(X > baseline)
    baseline: str | None = None
    tidy: list[dict[str, Any]] = field(default_factory=list)
    tidy_path: Path | None = None


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


def is_env_override(override: str) -> bool:
    """``env=...``, ``env.id=...``: an override that picks the env (a task), not the method."""
    key = override_key(override)
    return key == "env" or key.startswith("env.")


def method_of(label: str) -> str:
    """A configuration's method: its label less the env overrides (one method spans several envs)."""
    return " ".join(o for o in label.split(" ") if not is_env_override(o)) or "(all)"


def run_scores(run: RunRecord) -> dict[str, float | None]:
    return {"final": run.final_eval, "best": run.best_eval, "auc": run.eval_auc}


def _env_of(runs: list[RunRecord]) -> str | None:
    envs = {r.env_id for r in runs}
    return envs.pop() if len(envs) == 1 else None


def summarize(runs: list[RunRecord], reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """One table row: the configuration's scores across its seeds, each metric with its 95% CI."""
    thresholds = {r.threshold for r in runs}
    threshold = thresholds.pop() if len(thresholds) == 1 else None
    hits = [r.steps_to_threshold for r in runs]
    to_threshold = [float(h) if h is not None else float("inf") for h in hits]  # not reached: slower than all
    walls = [float(r.summary["wall_seconds"]) for r in runs if r.finished and "wall_seconds" in r.summary]
    row: dict[str, Any] = {
        "runs": len(runs),
        "finished": sum(r.finished for r in runs),
        "env_id": _env_of(runs),
        "threshold": threshold,
        "steps_to_threshold_median": float(np.median(to_threshold)) if threshold is not None and runs else None,
        "reached": sum(h is not None for h in hits),  # an evaluation at or above the threshold
        "solved": sum(r.solved for r in runs),  # the run's stop rule confirmed it (summary.json)
        "wall_seconds_mean": float(np.mean(walls)) if walls else None,
    }
    gap_below = threshold if threshold is not None else float("nan")  # the optimality gap: shortfall below it
    for name in SCORES:
        values = [v for r in runs if (v := run_scores(r)[name]) is not None]
        row[name] = (
            interval_estimates({name: np.array(values)[:, None]}, gamma=gap_below, reps=reps, seed=seed)[name]
            if values
            else None
        )
    return row


def format_ci(estimate: Estimate | None) -> str:
    if estimate is None or not np.isfinite(estimate.point):
        return "-"
    return f"{estimate.point:.1f} [{estimate.low:.1f}, {estimate.high:.1f}]"


def markdown_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """The per-configuration table in GitHub markdown: IQM [95% CI] of each score, and the counts."""
    lines = [
        "| configuration | runs | final eval return, IQM [95% CI] | best eval return, IQM [95% CI] "
        "| eval AUC, IQM [95% CI] | steps to threshold (median) | reached | solved (confirmed) | wall time (s, mean) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
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
        reached = f"{row['reached']}/{row['runs']}" if row["threshold"] is not None else "-"
        solved = f"{row['solved']}/{row['runs']}"
        wall = "-" if row["wall_seconds_mean"] is None else f"{row['wall_seconds_mean']:.0f}"
        iqm = [format_ci(row[name]["IQM"] if row[name] else None) for name in SCORES]
        lines.append(f"| {label} | {runs} | {' | '.join(iqm)} | {steps} | {reached} | {solved} | {wall} |")
    return "\n".join(lines)


def aggregates_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Every metric of every score, with its CI: a row per (configuration, score)."""
    lines = ["| configuration | score | " + " | ".join(METRICS) + " |", "|---|---|" + "---:|" * len(METRICS)]
    for label, row in rows:
        for name, title in SCORES.items():
            if row[name] is not None:
                lines.append(f"| {label} | {title} | " + " | ".join(format_ci(row[name][m]) for m in METRICS) + " |")
    return "\n".join(lines)


def learning_curve(runs: list[RunRecord], reps: int = 2000, seed: int = 0) -> Curve | None:
    """The IQM across seeds, with its 95% CI, on the union of their eval steps. A run that stopped early
    (solved) holds its last evaluation, so a fast seed is not dropped once it is done."""
    runs = [r for r in runs if len(r.eval_steps)]
    if not runs:
        return None
    grid = np.unique(np.concatenate([r.eval_steps for r in runs]))
    if len(grid) > MAX_CURVE_POINTS:
        grid = grid[np.linspace(0, len(grid) - 1, MAX_CURVE_POINTS).round().astype(int)]
    values = np.stack([np.interp(grid, r.eval_steps, r.eval_returns) for r in runs])
    points, intervals = iqm_curves({"curve": values[:, None, :]}, reps=reps, seed=seed)
    low, high = intervals["curve"]
    return Curve(grid, values, points["curve"], low, high, len(runs), _env_of(runs))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves: dict[str, Curve], path: Path, thresholds: dict[str | None, float | None], title: str = ""):
    """One panel per env, one line per configuration: the IQM across seeds with its 95% CI band (rliable's
    ``plot_sample_efficiency_curve``). Returns the Figure."""
    plt = _pyplot()
    from rliable import plot_utils

    envs = list(dict.fromkeys(c.env_id for c in curves.values()))
    fig, axes = plt.subplots(1, len(envs), figsize=(8 * len(envs), 5), dpi=100, squeeze=False)
    colors = {label: f"C{i % 10}" for i, label in enumerate(curves)}
    for ax, env in zip(axes[0], envs, strict=True):
        mine = {f"{label} (n={c.runs})": c for label, c in curves.items() if c.env_id == env}
        for label, c in mine.items():  # each configuration has its own eval grid
            plot_utils.plot_sample_efficiency_curve(
                c.steps, {label: c.iqm}, {label: (c.low, c.high)}, colors={label: colors[label.rsplit(" (n=", 1)[0]]},
                xlabel="env steps", ylabel="eval return (IQM across seeds)", ax=ax, marker="", linewidth=1.5,
                labelsize="medium", ticklabelsize="small",
            )  # fmt: skip
        threshold = thresholds.get(env)
        if threshold is not None:
            ax.axhline(threshold, color="0.5", ls="--", lw=1, label="_threshold")  # "_": not in the legend
            ax.annotate(f"threshold {threshold:g}", (0.005, threshold), xycoords=("axes fraction", "data"),
                        va="bottom", fontsize=8, color="0.4")  # fmt: skip
        ax.set_title(env or "", fontsize="medium")
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title or "learning curves: IQM across seeds, 95% bootstrap CI")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return fig


def plot_profiles(
    taus: np.ndarray, profiles: dict[str, np.ndarray], cis: dict[str, np.ndarray], path: Path, xlabel: str
):
    """The fraction of runs above each score tau, one line per method with its 95% CI band. Returns the Figure."""
    plt = _pyplot()
    from rliable import plot_utils

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    colors = {m: f"C{i % 10}" for i, m in enumerate(profiles)}
    plot_utils.plot_performance_profiles(
        profiles, taus, performance_profile_cis=cis, colors=colors, ax=ax, xlabel=xlabel,
        ylabel="fraction of runs with score > τ", labelsize="medium", ticklabelsize="small",
    )  # fmt: skip
    ax.legend(fontsize=8, loc="best")
    ax.set_title("performance profile of the final eval return (95% bootstrap CI)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return fig


def plot_improvements(improvements: dict[str, Estimate], colors: list[str], path: Path):
    """P(X > baseline) of each method X: its 95% CI as a bar, the estimate as a tick. Returns the Figure."""
    plt = _pyplot()
    from rliable import plot_utils

    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.6 * len(improvements)), dpi=100)
    points = {k: e.point for k, e in improvements.items()}
    intervals = {k: np.array([e.low, e.high]) for k, e in improvements.items()}
    plot_utils.plot_probability_of_improvement(
        points, intervals, pair_separator=PAIR, ax=ax, colors=colors, xticks=[0, 0.25, 0.5, 0.75, 1],
        left_ylabel="X", right_ylabel="baseline", labelsize="medium", ticklabelsize="small",
    )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.axvline(0.5, color="0.5", ls=":", lw=1)
    ax.set_title("probability of improvement P(X > baseline), final eval return", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return fig


def final_returns(groups: dict[str, list[RunRecord]]) -> dict[str, dict[str | None, np.ndarray]]:
    """Per method, per env: the final eval returns of its runs (those that have one)."""
    per_method: dict[str, dict[str | None, np.ndarray]] = {}
    for label, runs in groups.items():
        finals = [r.final_eval for r in runs if r.final_eval is not None]
        if finals:
            per_method.setdefault(method_of(label), {})[_env_of(runs)] = np.asarray(finals)
    return per_method


def method_matrices(groups: dict[str, list[RunRecord]], normalized: bool) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per method, its final eval returns as a (runs x envs) matrix (normalised if asked: random 0,
    reference 1), the first n seeds of each env where the envs have different numbers; and notes."""
    matrices, notes = {}, []
    for method, per_env in final_returns(groups).items():
        if normalized:
            per_env = {env: normalize(values, env) for env, values in per_env.items()}
        n = min(len(v) for v in per_env.values())
        if any(len(v) != n for v in per_env.values()):
            notes.append(f"`{method}`: its envs have different numbers of runs; the first {n} of each are used.")
        matrices[method] = np.array([v[:n] for v in per_env.values()]).T
    return matrices, notes


def pick_baseline(methods: list[str], baseline: str | None) -> str:
    """The method named by ``--baseline`` (all its overrides among the method's), or the first method."""
    if baseline is None:
        return methods[0]
    wanted = baseline.split()
    matches = [m for m in methods if all(o in m.split(" ") for o in wanted)]
    if len(matches) != 1:
        found = "none" if not matches else "several: " + ", ".join(f"'{m}'" for m in matches)
        raise ConfigError(
            f"--baseline '{baseline}' matches {found}; the methods are: {', '.join(repr(m) for m in methods)}"
        )
    return matches[0]


def improvements_over(groups: dict[str, list[RunRecord]], baseline: str, reps: int, seed: int) -> dict[str, Estimate]:
    """P(X > baseline) of each other method over the envs both have (raw final returns: the probability
    compares runs within an env, so it needs no normalisation)."""
    per_method = final_returns(groups)
    pairs = {}
    for method, per_env in per_method.items():
        envs = [e for e in per_env if e in per_method[baseline]]
        if method == baseline or not envs:
            continue
        x = min(len(per_env[e]) for e in envs)
        y = min(len(per_method[baseline][e]) for e in envs)
        pairs[f"{method}{PAIR}{baseline}"] = (
            np.array([per_env[e][:x] for e in envs]).T,
            np.array([per_method[baseline][e][:y] for e in envs]).T,
        )
    return probabilities_of_improvement(pairs, reps=reps, seed=seed) if pairs else {}


def tidy_rows(groups: dict[str, list[RunRecord]], root: Path) -> list[dict[str, Any]]:
    """One row per run: the configuration's override keys, the seed, its scores and counts."""
    keys = list(
        dict.fromkeys(override_key(o) for runs in groups.values() for r in runs for o in without_seed(r.overrides))
    )
    rows = []
    for label, runs in groups.items():
        for r in runs:
            values = {override_key(o): o.split("=", 1)[1] for o in without_seed(r.overrides) if "=" in o}
            final = r.final_eval
            normalized = normalize([final], r.env_id) if final is not None else None
            rows.append(
                {
                    "run": str(r.path.relative_to(root)) if r.path.is_relative_to(root) else str(r.path),
                    "configuration": label,
                    **{k: values.get(k) for k in keys},
                    "env_id": r.env_id,
                    "seed": r.seed,
                    "final_return": final,
                    "best_return": r.best_eval,
                    "auc_return": r.eval_auc,
                    "normalized_final": None if normalized is None else float(normalized[0]),
                    "reached": r.steps_to_threshold is not None,
                    "solved": r.solved,
                    "steps_to_threshold": r.steps_to_threshold,
                    "wall_seconds": (r.summary or {}).get("wall_seconds"),
                    "finished": r.finished,
                }
            )
    return rows


def write_tidy(rows: list[dict[str, Any]], path: Path, fmt: str) -> None:
    if fmt == "json":
        path.write_text(json.dumps(rows, indent=1) + "\n")
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{k: "" if v is None else v for k, v in row.items()} for row in rows])


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


def explanation(threshold: float | None, reps: int, seed: int) -> str:
    return (
        "Scores: each run's final and best evaluation (the mean over its eval episodes) and its eval AUC "
        "(the mean eval return over the step budget). Across the seeds of a configuration: the interquartile "
        "mean (IQM: the mean of the middle 50% of runs), the median and mean (rliable's: over the envs' mean "
        "scores, so with one env both are the mean over runs) and the optimality gap (the mean shortfall "
        "below the reward threshold), each with a 95% stratified bootstrap confidence interval "
        f"(rliable, {reps} repetitions, seed {seed}). A run that stopped early because it solved the env "
        "holds its last evaluation, in the AUC and in the curves. Steps to threshold: the first evaluation "
        "at or above the env's reward threshold" + (f" ({threshold:g})" if threshold is not None else "") + "; "
        "the median over seeds counts a seed that never reached it as slower than all. *Reached*: the runs with an "
        "evaluation at or above the threshold; *solved (confirmed)*: the runs whose own stop rule called them "
        "solved (summary.json's `solved`: under the default rule, the confirmation episodes after that "
        "evaluation held it too)."
    )


def load_runs(dirs: list[Path]) -> list[RunRecord]:
    paths = list(dict.fromkeys(p for d in dirs for p in find_run_dirs(Path(d))))
    return [load_run(p) for p in paths]


def write_report(
    root: Path | list[Path],
    out: Path | None = None,
    baseline: str | None = None,
    fmt: str = "md",
    reps: int = 2000,
    seed: int = 0,
) -> Report:
    """Read every run at or below ``root`` (one folder or several); write the report, its figures and
    (``fmt`` csv or json) the tidy per-run table into ``out`` (by default the first folder)."""
    dirs = [Path(d) for d in (root if isinstance(root, list) else [root])]
    out = Path(out) if out is not None else dirs[0]
    runs = load_runs(dirs)
    if not runs:
        raise ConfigError(f"no runs under {', '.join(map(str, dirs))} (a run folder has metrics.jsonl or summary.json)")
    out.mkdir(parents=True, exist_ok=True)
    groups, shared = group_runs(runs)
    from tqdm.auto import tqdm  # a widget in Jupyter, text on a terminal

    rows, curves = [], {}
    for label, group in tqdm(
        groups.items(), desc="acx report: bootstrap CIs", unit="config", disable=None, leave=False
    ):
        rows.append((label, summarize(group, reps, seed)))
        if (curve := learning_curve(group, reps, seed)) is not None:
            curves[label] = curve
    thresholds = {row["threshold"] for _, row in rows}
    threshold = thresholds.pop() if len(thresholds) == 1 else None
    envs = list(dict.fromkeys(row["env_id"] for _, row in rows))

    where = ", ".join(f"`{d}`" for d in dirs)
    text = [f"# acx report: {where}", ""]
    text.append(f"{len(runs)} runs in {len(groups)} configurations (a configuration: the overrides less `seed`).")
    if shared:
        text.append(f"Shared overrides: `{' '.join(shared)}`.")
    text += [explanation(threshold, reps, seed), ""]
    few = [label for label, row in rows if row["runs"] < FEW_SEEDS]
    if few:
        text += [
            f"**Fewer than {FEW_SEEDS} seeds** in {', '.join(f'`{label}`' for label in few)}: a bootstrap CI over so "
            "few runs understates the uncertainty (Agarwal et al. use 10 or more).",
            "",
        ]
    text += [markdown_table(rows), ""]
    text += ["## Every metric", "", aggregates_table(rows), ""]

    report = Report("", out / TABLE_NAME, None, groups, [r for _, r in rows], curves)
    if curves:
        report.plot_path = out / PLOT_NAME
        env_thresholds = {row["env_id"]: row["threshold"] for _, row in rows}
        report.figure = plot_curves(
            curves, report.plot_path, env_thresholds, title="eval return: IQM across seeds, 95% CI"
        )
        report.figures[PLOT_NAME] = report.figure
        text += ["## Learning curves", "", f"![learning curves]({PLOT_NAME})", ""]

    normalized = all(e in REFERENCE_SCORES for e in envs)
    if normalized or len(envs) == 1:
        report.profile_scores, notes = method_matrices(groups, normalized)
        what = "normalised final eval return (random 0, reference 1)" if normalized else "final eval return"
        if len(envs) > 1 and report.profile_scores:
            estimates = interval_estimates(report.profile_scores, gamma=1.0, reps=reps, seed=seed)
            text += [
                "## Across envs",
                "",
                f"Each method's {what}: a (runs x envs) matrix. " + " ".join(notes),
                "",
                "| method | envs | runs per env | " + " | ".join(METRICS) + " |",
                "|---|---:|---:|" + "---:|" * len(METRICS),
            ]
            for method, matrix in report.profile_scores.items():
                cells = " | ".join(f"{e.point:.3f} [{e.low:.3f}, {e.high:.3f}]" for e in estimates[method].values())
                text.append(f"| {method} | {matrix.shape[1]} | {matrix.shape[0]} | {cells} |")
            text.append("")
        if report.profile_scores:
            everything = np.concatenate([m.ravel() for m in report.profile_scores.values()])
            low, high = float(everything.min()), float(everything.max())
            if normalized:
                low, high = min(low, 0.0), max(high, 1.0)
            taus = np.linspace(low, high, 51)
            profiles, cis = performance_profiles(report.profile_scores, taus, reps=reps, seed=seed)
            report.figures[PROFILE_NAME] = plot_profiles(taus, profiles, cis, out / PROFILE_NAME, f"{what} (τ)")
            text += ["## Performance profile", "", f"![performance profile]({PROFILE_NAME})", ""]
    else:
        unknown = ", ".join(str(e) for e in envs if e not in REFERENCE_SCORES)
        text += [f"No performance profile: the runs span several envs and {unknown} has no reference scores.", ""]

    methods = list(dict.fromkeys(method_of(label) for label in groups))
    if len(methods) > 1:
        report.baseline = pick_baseline(methods, baseline)
        report.improvements = improvements_over(groups, report.baseline, reps, seed)
    elif baseline is not None:
        raise ConfigError(f"--baseline '{baseline}': the runs are of one method, there is nothing to compare")
    if report.improvements:
        colors = [f"C{methods.index(pair.split(PAIR)[0]) % 10}" for pair in report.improvements]  # as in the profile
        report.figures[IMPROVEMENT_NAME] = plot_improvements(report.improvements, colors, out / IMPROVEMENT_NAME)
        rows = [
            f"| {p.split(PAIR)[0]} | {e.point:.2f} [{e.low:.2f}, {e.high:.2f}] |"
            for p, e in report.improvements.items()
        ]
        text += [
            f"## Probability of improvement over `{report.baseline}`",
            "",
            "P(X > baseline): the probability that a run of X ends above a run of the baseline on the same env "
            "(final eval return; the mean over the envs they share), with its 95% CI.",
            "",
            "| X | P(X > baseline) [95% CI] |",
            "|---|---:|",
            *rows,
            "",
            f"![probability of improvement]({IMPROVEMENT_NAME})",
            "",
        ]  # fmt: skip

    report.tidy = tidy_rows(groups, out)
    if fmt in ("csv", "json"):
        report.tidy_path = out / f"{TIDY_NAME}.{fmt}"
        write_tidy(report.tidy, report.tidy_path, fmt)
    report.markdown = "\n".join(text) + optuna_trials_table(dirs[0])
    report.table_path.write_text(report.markdown)
    return report


def main(argv: list[str] | None = None) -> int:
    """``acx report DIR [DIR ...]``: write report.md and its figures and print the report."""
    parser = argparse.ArgumentParser(
        prog="acx report",
        description="Write report.md (per configuration, the overrides less seed: IQM, median, mean and optimality "
        "gap with 95%% bootstrap CIs), learning_curves.png, performance_profile.png and "
        "probability_of_improvement.png, and print the report.",
    )
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="run or sweep folders (every run below)")
    parser.add_argument("--out", type=Path, default=None, help="where the report goes (default: the first DIR)")
    parser.add_argument("--baseline", default=None, help="the method to compare against, e.g. 'algo=nstep'")
    parser.add_argument("--format", default="md", help="md, or csv|json: also write the tidy runs table")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap repetitions (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    try:
        args = validate(ReportArgs, vars(parser.parse_args(argv)))
        report = write_report(args.dirs, args.out, args.baseline, args.format, args.reps, args.seed)
    except ConfigError as exc:
        print(f"acx: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(report.markdown)
    written = [report.table_path, *(report.table_path.parent / name for name in report.figures)]
    if report.tidy_path:
        written.append(report.tidy_path)
    print(f"acx: wrote {', '.join(map(str, written))}")
    return 0
