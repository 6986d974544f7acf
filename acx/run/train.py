"""``train(cfg)``: a run, trained as a cohort of one (``acx.run.cohort``); ``train_cohort`` trains many
jobs through a cohort of up to ``slots`` members, each freed slot refilled from the jobs still queued.

The loop is ``Cohort.step``: collect -> estimate -> update -> record -> maybe evaluate -> maybe
checkpoint -> maybe stop, until every member solved, spent its step budget, failed or was pruned.
One loop serves every algorithm variant: they differ only in ``algo.n_steps``/``algo.num_envs`` (when
to learn), ``algo.advantage`` (which target), and for PPO ``algo.loss`` (the clipped surrogate) and
``algo.epochs``/``algo.minibatches`` (shuffled minibatch steps per rollout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from tqdm.auto import tqdm  # a widget in Jupyter, text on a terminal

from acx.errors import AcxError
from acx.run.cohort import WRITE_FAILURES, Cohort, Member, open_member, write_failure
from acx.run.signals import StopSignals


@dataclass
class Job:
    """A run to train: its place in the list of jobs, its composed config, and who hears of its evaluations."""

    index: int
    cfg: DictConfig
    on_eval: Callable[[int, float], None] | None = None


def train(cfg: DictConfig, on_eval: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train from a composed config; write checkpoints, metrics.jsonl and summary.json; return the summary.

    ``on_eval(env_step, eval_return_mean)`` is called after each periodic evaluation (an Optuna trial
    reports it there, and raises ``optuna.TrialPruned`` to stop the run). Bad input, a non-finite
    loss, a full disk or a signal are raised as the error they are."""
    result = train_cohort([Job(0, cfg, on_eval)], alone=True)[0]
    if isinstance(result, BaseException):
        raise result
    return result


def train_cohort(
    jobs: Iterable[Job], slots: int = 1, position: int | None = None, alone: bool = False
) -> dict[int, Any]:
    """Train ``jobs`` (resolved configs that may share a cohort: ``acx.sweep.grouping.group_key``) in
    one cohort of at most ``slots`` members; a member that leaves frees its slot for the next job.
    Returns, by job index, each job's summary or the exception it ended with (a ConfigError,
    NonFiniteError, optuna.TrialPruned). ``position``: the row of the cohort's progress bar (a
    launcher's); ``alone``: a single run, whose bad input is raised before anything starts."""
    queue: Iterator[Job] = iter(jobs)
    results: dict[int, Any] = {}
    with contextlib.ExitStack() as resources:
        members: list[Member] = []
        for job in queue:
            opened = _open(job, resources, position, results, alone)
            if opened is not None:
                members.append(opened)
            if len(members) == slots:
                break
        if not members:
            return results
        cohort = Cohort(members)
        signals = resources.enter_context(StopSignals())
        bar = None
        if position is not None:
            bar = tqdm(unit="step", dynamic_ncols=True, position=position, disable=not members[0].config.progress,
                       desc="cohort")  # fmt: skip
            resources.callback(bar.close)
        try:
            while True:
                while len(cohort.members) < slots:  # refill the freed slots
                    job = next(queue, None)
                    if job is None:
                        break
                    opened = _open(job, resources, position, results, alone)
                    if opened is not None:
                        cohort.join(opened)
                # members that need no training (a run resumed solved, or with its budget spent) finish here
                finished = cohort.finish_done()
                for m in finished:
                    results[m.index] = m.result
                if finished:
                    continue
                if not cohort.members:
                    break
                for m in cohort.step(signals):
                    results[m.index] = m.result
                if bar is not None:
                    done = sum(r.get("env_steps", 0) for r in results.values() if isinstance(r, dict))
                    bar.update(done + sum(m.progress.env_steps for m in cohort.members) - bar.n)
                    bar.set_postfix(training=len(cohort.members), finished=len(results), refresh=False)
        except OSError as exc:  # a full disk: the members still training stop with the one line
            if exc.errno not in WRITE_FAILURES:
                raise
            for m in cohort.members:
                results[m.index] = write_failure(exc, m, Path(m.config.paths.output_dir))
    return results


def _open(job: Job, resources: contextlib.ExitStack, position: int | None, results: dict, alone: bool) -> Member | None:
    """The job's member, or None when its input is bad (its result is the error; a run alone raises it)."""
    try:
        return open_member(job.index, job.cfg, job.on_eval, resources, show_bar=False if position is not None else None)
    except AcxError as exc:
        if alone:
            raise
        results[job.index] = exc
        return None
