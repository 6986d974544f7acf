"""``hydra/sweeper=acx_optuna``: an Optuna search whose trials are Hydra jobs, on a maintained Optuna
(>= 4) with RDB storage, resumable studies and pruning. hydra-optuna-sweeper 1.3 needs optuna < 3,
whose RDB storage fails under SQLAlchemy 2. The logic lives in ``acx.sweep.tuning``; see its docstring."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class AcxOptunaSweeper(Sweeper):
    """Ask Optuna for trials, launch them in batches of ``n_jobs`` (``seeds_per_trial`` jobs each), tell
    Optuna how they ended."""

    def __init__(
        self,
        study_name: str,
        storage: str | None = None,
        direction: str = "maximize",
        n_trials: int = 20,
        n_jobs: int = 1,
        sampler: Any = None,
        pruner: Any = None,
        params: dict | None = None,
        enqueue_trials: list | None = None,
        heartbeat_interval: int = 30,
        grace_period: int = 120,
        max_retry: int | None = 3,
        trial_number: int | None = None,
        seeds_per_trial: int = 1,
        aggregate: str = "mean",
        seed_index: int | None = None,
    ) -> None:
        self.study_name, self.storage, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs = int(n_trials), max(1, int(n_jobs))
        self.sampler, self.pruner = sampler, pruner  # already built: Hydra instantiates plugins recursively
        self.params = OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else params
        self.enqueue_trials = (
            OmegaConf.to_container(enqueue_trials) if OmegaConf.is_config(enqueue_trials) else enqueue_trials
        )
        self.heartbeat_interval, self.grace_period, self.max_retry = heartbeat_interval, grace_period, max_retry
        self.seeds_per_trial, self.aggregate = seeds_per_trial, aggregate  # checked in sweep(): one-line errors
        self.config: DictConfig | None = None
        self.launcher = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Any]:
        from acx.errors import ConfigError

        try:
            import optuna
        except ImportError:
            raise ConfigError("hydra/sweeper=acx_optuna needs Optuna: pip install -e '.[sweeps]'") from None
        from optuna.trial import TrialState
        from sqlalchemy.engine import make_url

        from acx.sweep.tuning import (
            FINISHED,
            Heartbeat,
            check_seeds,
            make_storage,
            requeue,
            search_space,
            seed_jobs,
            storage_url,
        )

        assert self.config is not None and self.launcher is not None
        # heartbeats and fail_stale_trials are marked experimental, and meant for study.optimize(); this
        # sweeper runs them itself around ask/tell
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        space, fixed = search_space(self.params, arguments)
        if not space:
            raise ConfigError("hydra.sweeper.params names no key to search (use choice(), range() or interval())")
        per_trial = check_seeds(self.seeds_per_trial, self.aggregate, space)
        seed = int(self.config.get("seed", 0) or 0)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        url = storage_url(self.storage, sweep_dir)
        storage = make_storage(url, self.heartbeat_interval, self.grace_period, self.max_retry)
        study = optuna.create_study(
            study_name=self.study_name, storage=storage, sampler=self.sampler, pruner=self.pruner,
            direction=self.direction, load_if_exists=True,
        )  # fmt: skip
        if not study.trials:
            for params in self.enqueue_trials or []:  # e.g. today's defaults, so the search starts from them
                study.enqueue_trial(dict(params), skip_if_exists=True)
        done = sum(t.state in FINISHED for t in study.trials)
        where = make_url(url).render_as_string(hide_password=True)
        log.info(f"Optuna study '{self.study_name}' ({where}): {done} of {self.n_trials} trials done")
        log.info(f"search space: {', '.join(f'{k}: {d}' for k, d in space.items())}")
        if per_trial > 1:
            log.info(f"{per_trial} seeds per trial ({seed} to {seed + per_trial - 1}), value: their {self.aggregate}")
        study_id = storage.get_study_id_from_name(self.study_name)
        heartbeat = Heartbeat(storage, self.heartbeat_interval)
        in_flight: list[Any] = []
        results: list[Any] = []
        try:
            while True:
                optuna.storages.fail_stale_trials(study)  # a killed run's trials: FAIL, queued again
                trials = study.get_trials(deepcopy=False)
                done = sum(t.state in FINISHED for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                if done >= self.n_trials:
                    break
                room = min(self.n_jobs, self.n_trials - done - running)
                if room <= 0:  # the rest are running elsewhere (or stale until grace_period): wait for them
                    time.sleep(min(self.heartbeat_interval, 10))
                    continue
                in_flight = [study.ask(space) for _ in range(room)]
                for trial in in_flight:
                    heartbeat.add(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
                # seeds_per_trial jobs per trial, in one launch: a parallel launcher runs the seeds together
                batch = [jobs for t in in_flight for jobs in seed_jobs(t.params, fixed, t.number, seed, per_trial)]
                self.validate_batch_is_legal(batch)
                returns = list(self.launcher.launch(batch, initial_job_idx=self.job_idx))
                self.job_idx += len(batch)
                errors = []
                for i, trial in enumerate(in_flight):
                    value, error = self._tell(study, trial, returns[i * per_trial : (i + 1) * per_trial], seed)
                    results.append(value)
                    errors += [error] if error is not None else []
                    heartbeat.discard(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
                in_flight = []
                if errors:
                    raise errors[0]  # a job that crashed would crash again: stop and show why
        except BaseException as exc:  # Ctrl-C, or a job that exited: the trials still in flight did not finish
            for trial in in_flight:
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
                if storage.get_trial(trial_id).state == TrialState.RUNNING:
                    study.tell(trial, state=TrialState.FAIL)
                    if isinstance(exc, KeyboardInterrupt):  # interrupted, not broken: the next run tries it again
                        requeue(study, storage, storage.get_trial(trial_id))
            raise
        finally:
            heartbeat.stop()
        self._write_results(study, sweep_dir, url)
        return results

    def _tell(self, study: Any, trial: Any, rets: list[Any], seed: int) -> tuple[float | None, BaseException | None]:
        """Tell Optuna how a trial's jobs (one per seed) ended: the aggregate of their values, pruned when
        a job was pruned, or failed (with the first error) when a job raised."""
        import optuna
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        from acx.sweep.tuning import aggregate

        errors = [ret._return_value for ret in rets if ret.status != JobStatus.COMPLETED]
        if not errors:
            values = [float(ret.return_value) for ret in rets]
            value = aggregate(values, self.aggregate)
            if len(rets) == 1:
                study.tell(trial, value)
                log.info(f"trial {trial.number}: {value:.2f} {trial.params}")
                return value, None
            trial.set_user_attr("seed_values", values)  # a running trial's attrs, before the tell
            study.tell(trial, value)
            seeds = ", ".join(f"s{seed + i}: {v:.2f}" for i, v in enumerate(values))
            log.info(f"trial {trial.number}: {value:.2f} ({self.aggregate} of {seeds}) {trial.params}")
            return value, None
        failed = [e for e in errors if not isinstance(e, optuna.TrialPruned)]
        if not failed:
            study.tell(trial, state=TrialState.PRUNED)
            log.info(f"trial {trial.number}: pruned ({errors[0]}) {trial.params}")
            return None, None
        study.tell(trial, state=TrialState.FAIL)
        return None, failed[0]

    def _write_results(self, study: Any, sweep_dir: Path, url: str) -> None:
        from optuna.trial import TrialState

        states = {s.name.lower(): 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        for t in study.trials:
            if t.state.name.lower() in states:
                states[t.state.name.lower()] += 1
        from sqlalchemy.engine import make_url

        where = make_url(url).render_as_string(hide_password=True)
        results: dict[str, Any] = {"study_name": self.study_name, "storage": where, "trials": states}
        results.update(seeds_per_trial=int(self.seeds_per_trial), aggregate=self.aggregate)
        completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if completed:
            best = study.best_trial
            results.update(best_trial=best.number, best_value=best.value, best_params=best.params)
            log.info(f"best trial {best.number}: {best.value:.2f} with {best.params}")
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        log.info(f"trials: {states}; results in {sweep_dir / 'optimization_results.yaml'}")
