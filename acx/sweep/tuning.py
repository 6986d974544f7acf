"""Optuna search over acx's Hydra config, used by the ``hydra/sweeper=acx_optuna`` plugin.

The sweeper process owns the study: it asks Optuna for trials, launches them as Hydra jobs (through
any launcher), records a heartbeat for each trial in flight, and tells Optuna the results. A trial's
job reports its evaluations to the same study as it trains (``TrialReporter``), so the pruner can stop
it early. Storage is an RDB: a SQLite file in the sweep dir by default, any SQLAlchemy URL (PostgreSQL)
to share one study between machines. Rerunning the same command resumes the study: trials that a
killed run left RUNNING go stale after ``grace_period`` seconds without a heartbeat, are marked FAIL
and queued again with the same parameters. With ``seeds_per_trial`` = k, a trial is k jobs in one launch
(seeds ``seed`` to ``seed + k - 1``) and its value is their ``aggregate``; only the first seed's job
reports evaluations, so only it can prune the trial.
"""

from __future__ import annotations

import datetime
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import DictConfig
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from acx.errors import ConfigError

log = logging.getLogger(__name__)

DB_NAME = "optuna.db"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts toward n_trials


def storage_url(storage: str | None, sweep_dir: str | Path) -> str:
    """The study's SQLAlchemy URL: ``storage`` if given, else a SQLite file in the sweep dir."""
    return str(storage) if storage else f"sqlite:///{Path(sweep_dir).absolute() / DB_NAME}"


class Storage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, whose stale trials also count a trial that never beat: a sweeper killed
    between ``study.ask`` (the trial is RUNNING) and its first heartbeat, a few milliseconds later, leaves
    a trial with no heartbeat, which Optuna never finds stale, so every later sweeper of the study waited
    for it forever. Such a trial is stale once it started more than ``grace_period`` ago."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        from optuna.storages._rdb.models import TrialHeartbeatModel
        from optuna.storages._rdb.storage import _create_scoped_session

        stale = super()._get_stale_trial_ids(study_id)
        grace = datetime.timedelta(seconds=self.grace_period or 2 * (self.heartbeat_interval or 0))
        with _create_scoped_session(self.scoped_session) as session:
            beating = {trial_id for (trial_id,) in session.query(TrialHeartbeatModel.trial_id)}
        now = datetime.datetime.now()  # datetime_start is the asking process's clock, as this is
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            started = trial.datetime_start
            if trial._trial_id not in beating and started is not None and now - started > grace:
                stale.append(trial._trial_id)
        return stale


def make_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None, max_retry: int | None = None
) -> optuna.storages.RDBStorage:
    """An RDB storage; with ``heartbeat_interval``, stale trials are failed and queued again (``max_retry``)."""
    if url.startswith("sqlite"):  # several processes write one file: wait for the lock instead of failing
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        kwargs = {"heartbeat_interval": int(heartbeat_interval), "grace_period": int(grace_period or 0) or None}
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
            kwargs["heartbeat_stale_trial_callback"] = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry)
        else:
            kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry)
    for attempt in range(5):
        try:
            return Storage(url, engine_kwargs=engine_kwargs, **kwargs)
        except sqlalchemy.exc.SQLAlchemyError as exc:  # workers creating the tables of an empty database at once
            if attempt == 4:
                raise
            log.info(f"optuna storage not ready ({type(exc).__name__}); retrying")
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def requeue(study: optuna.Study, storage: optuna.storages.RDBStorage, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a failed trial's parameters again, as the storage does for a trial whose heartbeat stopped."""
    getter = getattr(storage, "get_heartbeat_stale_trial_callback", None) or storage.get_failed_trial_callback
    callback = getter()
    if callback is not None:
        callback(study, trial)


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override: ``choice(...)``, ``range(...)``, ``interval(...)``,
    with ``tag(log, ...)`` for a log scale and ``tag(int, interval(...))`` for integers."""
    value = override.value()
    tags = set(getattr(value, "tags", ()) or ())
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=lambda x: x)))
    if isinstance(value, RangeSweep):
        low, high, step = value.start, value.stop - value.step, value.step  # range() excludes its stop
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(int(low), int(high), step=int(step))
        return FloatDistribution(float(low), float(high), step=float(step))
    if isinstance(value, IntervalSweep):
        if "int" in tags or (isinstance(value.start, int) and isinstance(value.end, int) and "log" not in tags):
            return IntDistribution(int(value.start), int(value.end), log="log" in tags)
        return FloatDistribution(float(value.start), float(value.end), log="log" in tags)
    raise ConfigError(f"{override.input_line}: use choice(), range() or interval() to search over a key")


def search_space(params: dict[str, Any] | DictConfig | None, arguments: list[str]) -> tuple[dict, list[str]]:
    """Distributions from ``hydra.sweeper.params`` and from sweep overrides on the command line (which
    win), and the plain overrides every trial gets."""
    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    for key, value in (params or {}).items():
        override = parser.parse_override(f"{key}={value}")
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
    fixed = []
    for override in parser.parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed.append(override.input_line)
            space.pop(key, None)  # a plain value on the command line pins a searched key
    return space, fixed


def format_value(value: Any) -> str:
    """A sampled value as a Hydra override value."""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if value.replace("_", "").replace("-", "").replace(".", "").isalnum() else repr(value)
    if value is None:
        return "null"
    return str(value)


def trial_overrides(params: dict[str, Any], fixed: list[str], number: int) -> list[str]:
    """One job's overrides: the fixed ones, the trial's parameters, and its trial number."""
    return [*fixed, *(f"{k}={format_value(v)}" for k, v in params.items()), f"hydra.sweeper.trial_number={number}"]


AGGREGATES = ("mean", "median", "iqm")


def aggregate(values: list[float], how: str = "mean") -> float:
    """A trial's value from its seeds' values: ``mean``, ``median`` or ``iqm`` (the interquartile mean:
    the mean of the sorted values without the lowest and highest ``int(0.25 * n)``, as
    ``scipy.stats.trim_mean(values, 0.25)``)."""
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("no values to aggregate")
    n = len(xs)
    if how == "mean":
        return math.fsum(xs) / n
    if how == "median":
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    if how == "iqm":
        cut = int(0.25 * n)
        kept = xs[cut : n - cut]
        return math.fsum(kept) / len(kept)
    raise ConfigError(f"hydra.sweeper.aggregate={how}: expected one of {', '.join(AGGREGATES)}")


def check_seeds(seeds_per_trial: Any, how: Any, space: dict[str, Any]) -> int:
    """``hydra.sweeper.seeds_per_trial`` as an int >= 1, with a known ``aggregate`` and, for more than one
    seed, no ``seed`` in the search space."""
    if isinstance(seeds_per_trial, bool) or not isinstance(seeds_per_trial, int) or seeds_per_trial < 1:
        raise ConfigError(f"hydra.sweeper.seeds_per_trial={seeds_per_trial}: expected an int >= 1")
    if how not in AGGREGATES:
        raise ConfigError(f"hydra.sweeper.aggregate={how}: expected one of {', '.join(AGGREGATES)}")
    if seeds_per_trial > 1 and "seed" in space:
        raise ConfigError(
            f"seed cannot be both searched and per-trial (hydra.sweeper.seeds_per_trial={seeds_per_trial}): "
            "drop seed from the search space, or set seeds_per_trial=1"
        )
    return seeds_per_trial


def seed_jobs(params: dict[str, Any], fixed: list[str], number: int, seed: int, k: int) -> list[list[str]]:
    """The overrides of a trial's ``k`` jobs: seeds ``seed + i`` with ``hydra.sweeper.seed_index=i``. One
    seed is the one job of ``trial_overrides``, with the config's seed, as before seeds_per_trial."""
    overrides = trial_overrides(params, fixed, number)
    if k == 1:
        return [overrides]
    overrides = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "seed"]  # ours replace a fixed seed=
    return [[*overrides, f"seed={seed + i}", f"hydra.sweeper.seed_index={i}"] for i in range(k)]


class Heartbeat:
    """Records a heartbeat for every trial in flight, from a thread, while the sweeper waits on its jobs."""

    def __init__(self, storage: optuna.storages.RDBStorage, interval: float):
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="acx-optuna-heartbeat", daemon=True)
        self.thread.start()

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)
        with self.lock:
            self.trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                ids = list(self.trial_ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # a busy database: the next beat retries
                    log.warning(f"optuna heartbeat of trial id {trial_id} failed: {exc}")

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


class TrialReporter:
    """``on_eval`` hook of a trial's job: report each evaluation to the study and raise
    ``optuna.TrialPruned`` when the pruner says so. Steps are the eval grid (k * eval.every_steps),
    so every trial reports at the same steps whatever its rollout length."""

    def __init__(self, trial: optuna.Trial, every_steps: int):
        self.trial, self.every_steps = trial, max(1, int(every_steps))

    def __call__(self, env_step: int, return_mean: float) -> None:
        step = env_step // self.every_steps * self.every_steps
        self.trial.report(float(return_mean), step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"trial {self.trial.number} pruned at env step {env_step} (eval {return_mean:.1f})"
            )


def trial_reporter(cfg: DictConfig, hydra_cfg: DictConfig | None = None) -> Callable[[int, float], None] | None:
    """The reporter of this job's trial when it runs inside an acx Optuna search, else None.
    ``hydra_cfg``: the job's ``hydra`` node (a cohort member's); default: this process's."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    if hydra_cfg is None:
        if not HydraConfig.initialized():
            return None
        hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    number = sweeper.get("trial_number")
    if number is None or "study_name" not in sweeper:
        return None
    if sweeper.get("seed_index") not in (None, 0):  # seeds_per_trial > 1: only the first seed reports (and is pruned)
        return None
    url = storage_url(sweeper.get("storage"), hydra_cfg.sweep.dir)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        log.warning(f"{url} is not on this machine: trial {number} trains without pruning (use a server database)")
        return None
    storage = make_storage(url)
    study = optuna.load_study(
        study_name=str(sweeper.study_name),
        storage=storage,
        sampler=optuna.samplers.RandomSampler(),  # the job samples nothing: its parameters are in its overrides
        pruner=instantiate(sweeper.pruner) if sweeper.get("pruner") else optuna.pruners.NopPruner(),
    )
    study_id = storage.get_study_id_from_name(str(sweeper.study_name))
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
    return TrialReporter(optuna.Trial(study, trial_id), int(cfg.eval.every_steps))
