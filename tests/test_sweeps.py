"""Sweeps through the real ``acx`` command: a multirun and its report, the same on a Ray head started
here on loopback, submitit's local executor, and Optuna searches on SQLite (killed and resumed) and on
a PostgreSQL server started here on loopback, shared by two workers."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from acx.analysis.runs import eval_return_auc, read_eval_curve
from tests.conftest import ACX, FAST, ROOT, run_acx

TINY = [*FAST, "total_steps=2000"]
TEST_CONF = f"hydra.searchpath=[file://{ROOT / 'tests' / 'conf'}]"  # tests/conf/hparams_search/tiny_cartpole


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))}


@pytest.mark.slow
def test_multirun_two_configs_two_seeds_and_report(tmp_path: Path):
    sweep = tmp_path / "sweep"
    proc = run_acx(
        "train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "algo=td0,nstep", "seed=0,1", *TINY,
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ConfigStore schema" not in proc.stderr  # the launcher presets do not warn
    runs = summaries(sweep)
    assert sorted(runs) == ["0_CartPole-v1_td0_s0", "1_CartPole-v1_td0_s1", "2_CartPole-v1_nstep_s0",
                            "3_CartPole-v1_nstep_s1"]  # fmt: skip
    assert [(s["algo"], s["seed"]) for s in runs.values()] == [("td0", 0), ("td0", 1), ("nstep", 0), ("nstep", 1)]
    assert all(s["env_steps"] >= 2000 for s in runs.values())

    proc = run_acx("report", str(sweep))
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (sweep / "report.md").read_text()
    assert table.strip() in proc.stdout.strip() and str(sweep / "learning_curves.png") in proc.stdout
    for algo in ("td0", "nstep"):
        jobs = [(0, 0), (1, 1)] if algo == "td0" else [(2, 0), (3, 1)]
        final, best = (
            [runs[f"{i}_CartPole-v1_{algo}_s{s}"][f"{k}_eval_return"] for i, s in jobs] for k in ("final", "best")
        )
        # the IQM of two runs is their mean; the CI lies between them
        row = re.search(rf"^\| algo={algo} \| 2 \| (\S+) \[(\S+), (\S+)\] \| (\S+) \[", table, re.M)
        assert row, table
        assert float(row[1]) == pytest.approx(np.mean(final), abs=0.05)
        assert min(final) - 0.05 <= float(row[2]) <= float(row[3]) <= max(final) + 0.05
        assert float(row[4]) == pytest.approx(np.mean(best), abs=0.05)

    from acx.analysis.report import write_report

    report = write_report(sweep)  # the figure the PNG was drawn from
    lines = [line for line in report.figure.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == ["algo=td0 (n=2)", "algo=nstep (n=2)"]
    for line, (label, group) in zip(lines, report.groups.items(), strict=True):
        curves = [read_eval_curve(run.path / "metrics.jsonl") for run in group]
        grid = np.unique(np.concatenate([steps for steps, _ in curves]))
        expected = np.mean([np.interp(grid, steps, returns) for steps, returns in curves], axis=0)  # IQM of 2
        np.testing.assert_allclose(line.get_xdata(), grid)
        np.testing.assert_allclose(line.get_ydata(), expected, err_msg=label)
    import matplotlib.image

    pixels = (matplotlib.image.imread(sweep / "learning_curves.png")[..., :3] * 255).round().astype(int)
    for hex_color in ("#1f77b4", "#ff7f0e"):  # matplotlib's C0 and C1: both curves are drawn in the PNG
        rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=-1) <= 6).sum() > 200, hex_color


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path: Path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the sweeps extra")
    proc = run_acx("train", "-m", "hydra/launcher=submitit_local", "algo=td0", "seed=0,1", *FAST, "total_steps=1000",
                   f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = summaries(tmp_path)
    assert [s["seed"] for s in runs.values()] == [0, 1] and all(s["env_steps"] >= 1000 for s in runs.values())
    assert len(list(tmp_path.glob(".submitit/*/*_log.out"))) == 2  # each job ran as a submitit job


@pytest.fixture
def ray_head():
    """A real Ray head on loopback (`ray start --head --block`), stopped by SIGTERM afterwards."""
    pytest.importorskip("ray", reason="needs the ray extra: pip install -e '.[ray]'")
    temp_dir = Path(tempfile.mkdtemp(prefix="acxray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node IP 127.0.0.1: every Ray service binds to loopback
        "RAY_AUTH_MODE": "token",  # Ray >= 2.5x: the head requires a token; ours, not ~/.ray's
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    port = free_port()
    ray_bin = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}",
         f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
         "--object-store-memory=100000000"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            line = head.stdout.readline()
            if "Ray runtime started" in line or "--block" in line:
                break
            if head.poll() is not None:
                pytest.fail(f"ray start --head exited with {head.returncode}")
        yield f"127.0.0.1:{port}", env, temp_dir
    finally:
        head.send_signal(signal.SIGTERM)  # --block: drains and stops every process it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_ray_launcher_on_a_ray_head(ray_head, tmp_path: Path):
    address, env, temp_dir = ray_head
    proc = run_acx(
        "train", "-m", "hydra/launcher=ray", f"hydra.launcher.address={address}", "algo=td0,nstep", "seed=0", *TINY,
        f"hydra.sweep.dir={tmp_path}", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    output = proc.stdout + proc.stderr
    assert f"Connecting to existing Ray cluster at address: {address}" in output
    assert "Started a local Ray instance" not in output
    runs = summaries(tmp_path)
    assert sorted(runs) == ["0_CartPole-v1_td0_s0", "1_CartPole-v1_nstep_s0"]
    # the jobs ran in the head's worker processes: their output is in the head's session logs
    worker_logs = "".join(p.read_text(errors="replace") for p in temp_dir.glob("session_*/logs/worker-*.out"))
    for name, summary in runs.items():
        assert summary["checkpoint"] in worker_logs, name


@pytest.mark.slow
def test_population_launcher_trains_each_cohort_as_a_ray_task(ray_head, tmp_path: Path):
    """``hydra/launcher=population hydra.launcher.backend=ray``: 4 seeds in cohorts of 2, each one Ray
    task on the head; the 4 usual run folders, trained in the head's workers."""
    address, env, temp_dir = ray_head
    proc = run_acx(
        "train", "-m", "hydra/launcher=population", "hydra.launcher.backend=ray",
        f"hydra.launcher.ray.address={address}", "hydra.launcher.max_members=2", "seed=0,1,2,3", *TINY,
        f"hydra.sweep.dir={tmp_path}", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    output = proc.stdout + proc.stderr
    assert f"Connecting to existing Ray cluster at address: {address}" in output
    assert "Population launcher: 2 cohorts as Ray tasks" in output
    runs = summaries(tmp_path)
    assert sorted(runs) == [f"{i}_CartPole-v1_nstep_s{i}" for i in range(4)]
    assert [s["seed"] for s in runs.values()] == [0, 1, 2, 3] and all(s["env_steps"] >= 2000 for s in runs.values())
    worker_logs = "".join(p.read_text(errors="replace") for p in temp_dir.glob("session_*/logs/worker-*.out"))
    for name, summary in runs.items():  # each member's last line came from a worker of the head
        assert summary["checkpoint"] in worker_logs, name


@pytest.mark.slow
def test_ray_launcher_starts_a_local_instance(tmp_path: Path):
    pytest.importorskip("ray", reason="needs the ray extra: pip install -e '.[ray]'")
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}  # a local instance on loopback
    proc = run_acx("train", "-m", "hydra/launcher=ray", "hydra.launcher.init.num_cpus=2", "seed=0,1", *FAST,
                   "total_steps=1000", f"hydra.sweep.dir={tmp_path}", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Started a local Ray instance" in proc.stdout + proc.stderr
    assert "Ray: jobs run on a local Ray instance (2 CPUs" in proc.stdout + proc.stderr
    assert [s["seed"] for s in summaries(tmp_path).values()] == [0, 1]


def optuna_trials(storage_url: str, study_name: str = "tiny_cartpole"):
    import optuna

    return optuna.load_study(study_name=study_name, storage=storage_url).get_trials(deepcopy=False)


def check_trial_values(trials, sweep_dir: Path) -> None:
    """A complete trial's value is its run's eval AUC; its intermediate values are its eval rows, on the
    eval grid (the final evaluation repeats the last periodic one at the same step)."""
    from optuna.trial import TrialState

    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        steps, returns = read_eval_curve(sweep_dir / f"trial_{t.number}" / "metrics.jsonl")
        assert t.value == pytest.approx(eval_return_auc(steps, returns, 1500))
        reported = {int(s) // 500 * 500: r for s, r in zip(steps, returns, strict=True)}
        assert t.intermediate_values == pytest.approx(reported)


def done_count(output: str) -> int:
    return int(re.search(r"(\d+) of \d+ trials done", output).group(1))


@pytest.mark.slow
def test_optuna_sqlite_killed_and_resumed(tmp_path: Path):
    pytest.importorskip("optuna", reason="needs the sweeps extra: pip install -e '.[sweeps]'")
    from optuna.trial import TrialState

    args = ["train", "-m", "hparams_search=tiny_cartpole", TEST_CONF, f"paths.log_dir={tmp_path}",
            "total_steps=1500", "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]  # fmt: skip
    sweep_dir = tmp_path / "train" / "hparams_search" / "tiny_cartpole"
    url = f"sqlite:///{sweep_dir / 'optuna.db'}"
    worker = subprocess.Popen([*ACX, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill -9 once two trials are done and a third is in flight: no chance to clean up
        deadline = time.time() + 120
        while time.time() < deadline and worker.poll() is None:
            try:
                states = [t.state for t in optuna_trials(url)]
            except Exception:  # no database or no study yet
                states = []
            if sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) >= 2 and TrialState.RUNNING in states:
                break
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    before = optuna_trials(url)
    killed = [t for t in before if t.state == TrialState.RUNNING]
    assert len(killed) == 1, [t.state for t in before]
    killed = killed[0]
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.PRUNED  # enqueued 0 and 1
    assert before[1].intermediate_values == {500: pytest.approx(before[1].intermediate_values[500])}
    assert before[1].intermediate_values[500] <= 5.0  # a 5-step episode limit: pruned at the first evaluation
    assert (sweep_dir / "trial_0" / "summary.json").is_file() and not (sweep_dir / "trial_1" / "summary.json").exists()

    time.sleep(3.5)  # past the grace period: the killed trial's heartbeat is stale
    proc = run_acx(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = optuna_trials(url)
    assert [t.number for t in after] == list(range(len(after)))
    assert len(after) > len(before)  # numbering went on from where the killed run stopped
    assert after[killed.number].state == TrialState.FAIL
    retry = [t for t in after if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params and retry[0].number > killed.number
    finished = [t for t in after if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    output = proc.stdout + proc.stderr
    assert len(finished) == 4 and done_count(output) == sum(t.state != TrialState.RUNNING for t in before)
    check_trial_values(after, sweep_dir)
    report = run_acx("report", str(sweep_dir))  # the study's trials, with their states, in the report
    assert report.returncode == 0, report.stderr[-2000:]
    assert re.search(r"^\| 1 \| PRUNED \| - \| [0-5]\.0 @ 500 \|", report.stdout, re.M), report.stdout
    assert re.search(rf"^\| {killed.number} \| FAIL \|", report.stdout, re.M)
    results = (sweep_dir / "optimization_results.yaml").read_text()
    assert "fail: 1" in results and f"best_trial: {max(finished, key=lambda t: t.value or -1).number}" in results

    proc = run_acx(*args)  # once the study is done, rerunning it runs nothing
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and done_count(output) == 4 and "Launching" not in output
    assert len(optuna_trials(url)) == len(after)


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql package), run as a child of this
    process (as the postgres user when root: postgres refuses root) and stopped with a fast shutdown."""
    psycopg = pytest.importorskip("psycopg", reason="needs the sweeps extra (psycopg)")
    initdb, server_bin = _pg_binary("initdb"), _pg_binary("postgres")
    if not initdb or not server_bin:
        pytest.skip("PostgreSQL server binaries not found (.ci/run installs Debian's postgresql)")
    data = Path(tempfile.mkdtemp(prefix="acxpg-", dir="/tmp"))
    user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
    if user:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    server = None
    try:
        subprocess.run([initdb, "-D", str(data / "db"), "-U", "acx", "-A", "trust", "--no-sync"], cwd=data,
                       capture_output=True, check=True, **user)  # fmt: skip
        with open(data / "log", "w") as log:
            server = subprocess.Popen(
                [server_bin, "-D", str(data / "db"), "-p", str(port), "-k", str(data),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                cwd=data, stdout=log, stderr=subprocess.STDOUT, **user,
            )  # fmt: skip
        deadline = time.time() + 60
        while True:
            try:
                psycopg.connect(f"host=127.0.0.1 port={port} user=acx dbname=postgres", connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail("postgres did not start: " + (data / "log").read_text()[-2000:])
                time.sleep(0.2)
        yield f"postgresql+psycopg://acx@127.0.0.1:{port}/postgres"
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)  # fast shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_optuna_postgres_study_shared_by_two_workers(postgres: str, tmp_path: Path):
    from optuna.trial import TrialState

    args = ["train", "-m", "hparams_search=tiny_cartpole", TEST_CONF, f"hydra.sweeper.storage={postgres}",
            "hydra.sweeper.n_trials=6", "total_steps=1500", f"paths.log_dir={tmp_path}"]  # fmt: skip
    workers = [  # two machines in real life: one study in the server, one n_trials budget between them
        subprocess.Popen([*ACX, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err[-3000:]
    ran = [{int(n) for n in re.findall(r"\] trial (\d+): ", out + err)} for out, err in outputs]
    assert ran[0] and ran[1] and not ran[0] & ran[1]  # both workers ran trials, never the same one
    trials = optuna_trials(postgres)
    # n_trials is checked before each batch: two workers may overshoot it by one trial each at most
    assert 6 <= len(trials) <= 7 and [t.number for t in trials] == list(range(len(trials)))
    assert ran[0] | ran[1] == set(range(len(trials)))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    sweep_dir = tmp_path / "train" / "hparams_search" / "tiny_cartpole"
    assert not (sweep_dir / "optuna.db").exists()  # the study is in the server, not in a file
    check_trial_values(trials, sweep_dir)
