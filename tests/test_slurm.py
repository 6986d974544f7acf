"""Sweeps on a real SLURM cluster: a single-node cluster (munged, MariaDB, slurmdbd, slurmctld, slurmd)
started on this machine for the session (tests/slurm_cluster.py), ``acx train -m hydra/launcher=submitit_slurm``
as a job array, a job requeued mid-run (``scontrol requeue``) and a job that reaches its time limit's
signal (sbatch --signal=USR2@...): both are requeued and finish their run in the same folder, from the
checkpoint saved at the signal. Skipped where Debian's slurm-wlm, slurmdbd, munge and mariadb-server
packages are missing (.ci/run installs them)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from acx.run.checkpoint import load_checkpoint
from tests.conftest import ACX, FAST, ROOT, run_acx
from tests.slurm_cluster import SlurmCluster, missing

SLURM = ["train", "-m", "hydra/launcher=submitit_slurm", "hydra.launcher.mem_gb=1"]


@pytest.fixture(scope="session")
def slurm():
    """One cluster for the module's tests, stopped (every daemon, every file) after the last."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the sweeps extra (submitit)")
    lacking = missing()
    if lacking:
        pytest.skip(f"SLURM test cluster: {', '.join(lacking)} not found (.ci/run installs Debian's slurm-wlm, "
                    "slurmdbd, munge and mariadb-server)")  # fmt: skip
    cluster = SlurmCluster()
    try:
        cluster.start()
    except RuntimeError as exc:
        pytest.fail(f"the SLURM test cluster did not start: {exc}")
    yield cluster
    cluster.stop()


def sacct_states(cluster: SlurmCluster, job: str) -> list[tuple[str, str]]:
    """(job id, state) of each allocation of ``job`` (array tasks, and each requeued attempt: -D)."""
    out = cluster.run("sacct", "-j", job, "-X", "-D", "-n", "-P", "-o", "JobID,State").stdout
    return [tuple(line.split("|")) for line in out.splitlines() if line]


def wait_for_accounting(cluster: SlurmCluster, job: str, done, timeout: float = 30) -> list[tuple[str, str]]:
    """sacct's records of ``job`` once ``done(records)`` (slurmctld sends them to slurmdbd asynchronously)."""
    deadline = time.time() + timeout
    while not done(states := sacct_states(cluster, job)) and time.time() < deadline:
        time.sleep(0.5)
    return states


def job_logs(sweep_dir: Path) -> str:
    return "".join(p.read_text() for p in sorted(sweep_dir.glob(".submitit/*/*_log.*")))


def job_id(sweep_dir: Path) -> str:
    """The SLURM job id of a one-job sweep: submitit names the job's folder after it."""
    return next(sweep_dir.glob(".submitit/*/*_submitted.pkl")).parent.name


def check_continued_run(run_dir: Path, total_steps: int) -> dict:
    """The run of a job that was stopped and requeued ended as one run: its summary, its final checkpoint's
    counters and its metrics.jsonl agree, the budget is counted once, the steps rise without a gap."""
    summary = json.loads((run_dir / "summary.json").read_text())
    final = load_checkpoint(run_dir / "checkpoints" / "final.pt")
    progress, cfg = final["meta"]["progress"], final["meta"]["config"]
    batch = cfg["algo"]["n_steps"] * cfg["algo"]["num_envs"]
    assert total_steps <= summary["env_steps"] < total_steps + batch, "the budget is spent once, not twice"
    for key in ("env_steps", "updates", "episodes"):
        assert progress[key] == summary[key], key
    assert summary["checkpoint"] == str(run_dir / "checkpoints" / "final.pt")
    steps = [json.loads(line)["env_step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "metrics.jsonl steps rise monotonically, none repeated"
    every = cfg["checkpoint"]["every_steps"]
    assert steps[0] <= every and summary["env_steps"] - steps[-1] <= every
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(gaps) <= every, "no gap beyond one checkpoint interval"
    return summary


@pytest.mark.slow
def test_job_array_of_four_runs_and_report(slurm: SlurmCluster, tmp_path: Path):
    proc = run_acx(*SLURM, "algo=td0,nstep", "seed=0,1", *FAST, "total_steps=2000", f"hydra.sweep.dir={tmp_path}",
                   env=slurm.env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + job_logs(tmp_path)[-3000:]
    runs = {p.parent.name: json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/summary.json"))}
    assert list(runs) == ["0_CartPole-v1_td0_s0", "1_CartPole-v1_td0_s1", "2_CartPole-v1_nstep_s0",
                          "3_CartPole-v1_nstep_s1"]  # fmt: skip
    assert all(s["env_steps"] >= 2000 and Path(s["checkpoint"]).is_file() for s in runs.values())

    (script,) = tmp_path.glob(".submitit/*/*_submission.sh")  # one sbatch for the sweep: an array of 4
    assert "#SBATCH --array=0-3" in script.read_text()
    array = script.parent.name
    states = wait_for_accounting(slurm, array, lambda s: len(s) == 4 and all(st == "COMPLETED" for _, st in s))
    assert sorted(states) == [(f"{array}_{i}", "COMPLETED") for i in range(4)], states

    report = run_acx("report", str(tmp_path))
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "report.md").read_text()
    assert "algo=td0" in text and "algo=nstep" in text


@pytest.mark.slow
def test_job_requeued_mid_run_continues_it(slurm: SlurmCluster, tmp_path: Path):
    """``scontrol requeue`` (what pre-emption with PreemptMode=REQUEUE does): SIGTERM, acx saves and
    exits, SLURM starts the job again and it continues from that checkpoint, with the same W&B run."""
    total = 30000
    args = [*SLURM, "algo=nstep", "seed=0", "progress=false", "eval.episodes=2", "eval.every_steps=2000",
            "checkpoint.every_steps=2000", f"total_steps={total}", "stop=budget",
            f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen([*ACX, *args], cwd=ROOT, env=slurm.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("*/checkpoints/step_*.pt")):  # mid-run: after its first periodic checkpoint
            assert driver.poll() is None and time.time() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(0.2)
        run_dir = next(tmp_path.glob("*/checkpoints")).parent
        job = job_id(tmp_path)
        slurm.run("scontrol", "requeue", job)
        assert driver.wait(timeout=240) == 0, (tmp_path / "driver.log").read_text()[-3000:] + job_logs(tmp_path)
    finally:
        if driver.poll() is None:  # a failure above: leave nothing running
            driver.kill()
            slurm.run("scancel", "--full", *[p.parent.name for p in tmp_path.glob(".submitit/*/*_submitted.pkl")],
                      check=False)  # fmt: skip

    logs = job_logs(tmp_path)
    assert "acx: interrupted at env step" in logs and "SLURM requeued this job (restart 1)" in logs, logs[-3000:]
    states = wait_for_accounting(slurm, job, lambda s: s[-1:] == [(job, "COMPLETED")])
    assert states == [(job, "REQUEUED"), (job, "COMPLETED")], states
    summary = check_continued_run(run_dir, total)
    assert summary["solved"] is False and summary["stop_rule"] == "the step budget"
    # one W&B run: the requeued attempt's offline segment has the first one's id
    run_id = (run_dir / "wandb" / "run-id").read_text().strip()
    segments = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(segments) == 2 and all(s.name.endswith(f"-{run_id}") for s in segments), segments


def steps_per_second(tmp_path: Path) -> float:
    """This machine's training speed for the time-limit test's config (a local run of 20k steps)."""
    out = tmp_path / "calibration"
    proc = run_acx("train", "algo=nstep", "progress=false", "logger=none", "eval.episodes=2", "eval.every_steps=2000",
                   "total_steps=20000", "stop=budget", f"hydra.run.dir={out}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    return summary["env_steps"] / (summary["wall_seconds"] - summary["setup_seconds"])


@pytest.mark.slow
def test_job_past_its_time_limit_signal_is_requeued_and_finishes(slurm: SlurmCluster, tmp_path: Path):
    """A 1-minute job with its signal (USR2) 55 s before the limit, and a budget that needs longer: at
    the signal acx saves, submitit requeues the job (as a timeout: max_num_timeout counts it), and the
    requeued job continues until the budget is spent. slurmctld checks time limits every 30 s, so the
    signal comes up to 30 s after it is due: the budget is ~32 s of training on this machine, which
    the first attempt cannot finish before it."""
    total = max(40000, int(round(steps_per_second(tmp_path) * 32, -3)))
    sweep = tmp_path / "sweep"
    proc = run_acx(*SLURM, "algo=nstep", "seed=0", "progress=false", "logger=none", "eval.episodes=2",
                   "eval.every_steps=2000", "checkpoint.every_steps=2000", f"total_steps={total}", "stop=budget",
                   "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=55",
                   "hydra.launcher.max_num_timeout=8", f"hydra.sweep.dir={sweep}",
                   env=slurm.env, timeout=400)  # fmt: skip
    logs = job_logs(sweep)
    assert proc.returncode == 0, proc.stderr[-3000:] + logs[-3000:]
    assert "#SBATCH --signal=USR2@55" in next(sweep.glob(".submitit/*/*_submission.sh")).read_text()
    assert "Caught signal SIGUSR2" in logs and "this job is timed-out" in logs, logs[-3000:]
    assert "acx: SIGUSR2: handing over to submitit to requeue the job" in logs
    job = job_id(sweep)
    states = wait_for_accounting(slurm, job, lambda s: s[-1:] == [(job, "COMPLETED")])
    requeues = len(states) - 1
    assert requeues >= 1 and states == [*[(job, "REQUEUED")] * requeues, (job, "COMPLETED")], states
    run_dir = next(sweep.glob("*/summary.json")).parent
    check_continued_run(run_dir, total)
    # each attempt that acx had started ended at its signal with a checkpoint, and the next one continued
    # from it (a signal that comes while a job is still starting is submitit's alone: it requeues, no checkpoint)
    stops = [int(line.rsplit("env step ", 1)[1].split(";")[0].replace(",", "")) for line in logs.splitlines()
             if line.startswith("acx: interrupted at env step")]  # fmt: skip
    resumes = [int(line.rsplit("env step ", 1)[1].replace(",", "")) for line in logs.splitlines()
               if line.startswith("acx: SLURM requeued this job")]  # fmt: skip
    assert stops and stops == resumes and len(stops) <= requeues, (stops, resumes, states)


@pytest.mark.slow
def test_population_launcher_trains_each_cohort_as_an_array_task(slurm: SlurmCluster, tmp_path: Path):
    """``hydra/launcher=population hydra.launcher.backend=slurm``: 4 seeds in cohorts of 2, each one
    task of one SLURM job array; the 4 usual run folders, and sacct shows both tasks completed."""
    proc = run_acx(
        "train", "-m", "hydra/launcher=population", "hydra.launcher.backend=slurm", "hydra.launcher.max_members=2",
        "hydra.launcher.slurm.mem=1G", "hydra.launcher.slurm.time=5", "seed=0,1,2,3", *FAST, "total_steps=2000",
        f"hydra.sweep.dir={tmp_path}", env=slurm.env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + job_logs(tmp_path)[-3000:]
    runs = {p.parent.name: json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/summary.json"))}
    assert sorted(runs) == [f"{i}_CartPole-v1_nstep_s{i}" for i in range(4)]
    assert [s["seed"] for s in runs.values()] == [0, 1, 2, 3] and all(s["env_steps"] >= 2000 for s in runs.values())
    (script,) = tmp_path.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --array=0-1" in script.read_text()  # one sbatch: 2 cohorts of max_members=2
    array = script.parent.name
    states = wait_for_accounting(slurm, array, lambda s: len(s) == 2 and all(st == "COMPLETED" for _, st in s))
    assert sorted(states) == [(f"{array}_{i}", "COMPLETED") for i in range(2)], states
