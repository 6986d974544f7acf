"""Runs that survive faults: kill -9 at random moments, SIGINT/SIGTERM, a forced NaN, resume,
and bad checkpoints given to `acx train resume=`. Kills, signals and a full disk hit the real `acx`
command in a subprocess; resumes of a copied run go through `acx.cli.main` in the test's process."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from acx.run.checkpoint import load_checkpoint
from tests.conftest import ACX, FAST, ROOT, acx_main, run_acx
from tests.test_validation import BAD_CHECKPOINTS, make_bad

FAULT = ["progress=false", "logger=none", "stop=budget", "eval.episodes=2", "eval.every_steps=5000"]


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*ACX, "train", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def wait_for_any(folder: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(folder.glob(pattern)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {pattern} appeared in {folder}"
        time.sleep(0.02)


def every_checkpoint_loads(run_dir: Path) -> list[dict]:
    return [load_checkpoint(p) for p in sorted((run_dir / "checkpoints").glob("*.pt"))]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_to_the_end(tmp_path: Path):
    run_dir = tmp_path / "run"
    rng = random.Random(1234)
    # a checkpoint every 300 steps: kills often land in the middle of a checkpoint write
    args = [*FAULT, "total_steps=10000000", "checkpoint.every_steps=300", "checkpoint.keep=3"]
    steps_seen = []
    # The first run is killed once its first checkpoint is on disk; how long that took (start-up
    # included, ~3 s here, more on a loaded CI machine) scales the random kill moments of the
    # next 19 runs, so they land in start-up, in training and in checkpoint writes on any machine.
    proc = start(*args, f"hydra.run.dir={run_dir}")
    began = time.monotonic()
    wait_for_any(run_dir / "checkpoints", "step_*.pt", proc)
    to_first_checkpoint = time.monotonic() - began
    for attempt in range(20):
        if attempt:
            proc = start(*args, f"resume={run_dir}")
            time.sleep(rng.uniform(0.3, 1.0) * to_first_checkpoint + rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        loaded = every_checkpoint_loads(run_dir)  # every checkpoint file present is whole
        resumable = [c for c in loaded if c["meta"]["kind"] != "best"]  # best.pt is never resumed from
        if resumable:
            steps_seen.append(max(c["meta"]["progress"]["env_steps"] for c in resumable))
            latest = load_checkpoint(run_dir)  # what `resume=<run dir>` continues from: the newest one
            assert latest["meta"]["progress"]["env_steps"] == steps_seen[-1]
    assert steps_seen == sorted(steps_seen), "progress never goes backwards across kills"
    print("env steps of the newest checkpoint after each kill:", steps_seen)
    assert steps_seen[-1] > steps_seen[0], "resumed runs trained on between kills"
    target = steps_seen[-1] + 3000
    proc = run_acx("train", *args, f"resume={run_dir}", f"total_steps={target}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= target
    assert summary["checkpoint"] == str(run_dir / "checkpoints" / "final.pt")
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["env_step"] >= target  # the log continued, it did not restart at 0
    steps = [row["env_step"] for row in rows]
    assert steps == sorted(steps), "rows logged after a checkpoint, before a kill, are dropped on resume"


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_resumable_checkpoint(tmp_path: Path, sig: int, code: int):
    run_dir = tmp_path / "run"
    proc = start(*FAULT, "total_steps=10000000", "checkpoint.every_steps=2000", f"hydra.run.dir={run_dir}")
    wait_for(run_dir / "checkpoints" / "latest", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-2000:]
    assert f"resume with: acx train resume={run_dir}" in out
    ckpt = load_checkpoint(run_dir)
    stopped_at = ckpt["meta"]["progress"]["env_steps"]
    assert ckpt["path"].endswith(f"step_{stopped_at:09d}.pt")
    resumed = run_acx("train", f"resume={run_dir}", f"total_steps={stopped_at + 2000}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= stopped_at + 2000
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "stop=budget" in overrides and "logger=none" in overrides  # the original run's config came back


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory) -> Path:
    """A 3,000-step run through the real console script; each test below continues its own copy."""
    run_dir = tmp_path_factory.mktemp("fault") / "run"
    proc = run_acx("train", *FAULT, "total_steps=3000", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def copy_of(run: Path, tmp_path: Path) -> Path:
    """A copy of a finished run (its folder, checkpoints and .hydra overrides) to resume or break."""
    return Path(shutil.copytree(run, tmp_path / "run"))


def test_resume_restores_weights_optimizer_and_counters(tmp_path: Path, fault_run: Path):
    run_dir = copy_of(fault_run, tmp_path)
    first = load_checkpoint(run_dir / "checkpoints" / "final.pt")
    proc = acx_main("train", f"resume={run_dir}/checkpoints/final.pt", "total_steps=6000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    second = load_checkpoint(run_dir / "checkpoints" / "final.pt")
    p1, p2 = first["meta"]["progress"], second["meta"]["progress"]
    assert p2["env_steps"] >= 6000 and p2["updates"] > p1["updates"] and p2["episodes"] > p1["episodes"]
    assert p2["wall_seconds"] > p1["wall_seconds"]
    assert p2["best_eval_return"] >= p1["best_eval_return"]
    steps1 = first["optimizers"]["all"]["state"][0]["step"]
    steps2 = second["optimizers"]["all"]["state"][0]["step"]
    assert steps2 - steps1 == p2["updates"] - p1["updates"]  # Adam's counters continued


def test_forced_nan_stops_with_one_line_and_keeps_checkpoints_finite(tmp_path: Path, fault_run: Path):
    run_dir = copy_of(fault_run, tmp_path)
    before = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").glob("*.pt")}
    # rewards x 1e38 overflow the returns to inf at the first update after resuming
    proc = acx_main("train", f"resume={run_dir}", "total_steps=6000", "algo.reward_scale=1e38")
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "non-finite" in lines[0]
    assert "at env step 3,0" in lines[0] and f"last good checkpoint: {run_dir}/checkpoints/final.pt" in lines[0]
    after = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").glob("*.pt")}
    assert after == before, "a non-finite model is never saved"
    for ckpt in every_checkpoint_loads(run_dir):
        assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_in_resume(tmp_path: Path, good_run: Path, kind: str):
    bad = make_bad(kind, good_run / "checkpoints" / "final.pt", tmp_path)
    proc = acx_main("train", f"resume={bad}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and BAD_CHECKPOINTS[kind] in lines[0]
    assert not list(tmp_path.rglob(".hydra")), "no run dir is made for a bad checkpoint"


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path: Path, fault_run: Path):
    run_dir = copy_of(fault_run, tmp_path)
    proc = acx_main("train", *FAST, "total_steps=500", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2 and f"resume={run_dir}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_run_with_only_best_pt_resumes_from_it(tmp_path: Path, fault_run: Path):
    run_dir = copy_of(fault_run, tmp_path)
    for name in ("final.pt", "latest", *[p.name for p in (run_dir / "checkpoints").glob("step_*.pt")]):
        (run_dir / "checkpoints" / name).unlink()  # as if killed before the first periodic checkpoint
    best = load_checkpoint(run_dir)
    assert best["meta"]["kind"] == "best"
    proc = acx_main("train", f"resume={run_dir}", "total_steps=4000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] >= 4000


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 1 MiB tmpfs: a run on it fills the disk after its first few checkpoints."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root: .ci/run has it): {done.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_names_the_last_good_checkpoint_and_the_resume_command(tmp_path: Path, small_disk: Path):
    run_dir = small_disk / "run"
    args = [*FAULT, "total_steps=10000000", "checkpoint.every_steps=400", "checkpoint.keep=3", "log.every_updates=1"]
    proc = run_acx("train", *args, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 4, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[0].startswith("acx: error: could not write ") and "No space left on device" in lines[0]
    assert f"once there is room, resume with: acx train resume={run_dir}" in lines[0]
    named = Path(lines[0].split("last good checkpoint: ")[1].split(";")[0])
    assert named.parent == run_dir / "checkpoints" and named.name.startswith("step_")
    loaded = every_checkpoint_loads(run_dir)  # the atomic writes left only whole checkpoints
    assert str(named) in [c["path"] for c in loaded]
    assert not list((run_dir / "checkpoints").glob(".*.tmp")), "a failed write leaves no temporary file"
    # nothing is lost: with room again (a copy on the big disk), the run continues from that checkpoint
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    stopped_at = load_checkpoint(moved)["meta"]["progress"]["env_steps"]
    resumed = run_acx("train", f"resume={moved}", f"total_steps={stopped_at + 1000}", "checkpoint.every_steps=100000")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((moved / "summary.json").read_text())["env_steps"] >= stopped_at + 1000


def test_a_solved_run_resumed_with_a_bigger_budget_stays_solved(tmp_path: Path):
    run_dir = tmp_path / "run"
    solve = ["progress=false", "logger=none", "eval.every_steps=2000", "eval.confirm_episodes=0"]
    solve.append("env.reward_threshold=15")  # solved within a few thousand steps
    assert acx_main("train", *solve, "total_steps=50000", f"hydra.run.dir={run_dir}").returncode == 0
    first = json.loads((run_dir / "summary.json").read_text())
    assert first["solved"], first
    proc = acx_main("train", f"resume={run_dir}", "total_steps=100000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    second = json.loads((run_dir / "summary.json").read_text())
    assert second["solved"] and second["solved_at_step"] == first["solved_at_step"]
    assert second["env_steps"] == first["env_steps"], "a solved run does not train on"
    # with stop=budget it trains on to the new budget, and keeps the step it first solved at
    proc = acx_main("train", f"resume={run_dir}", "total_steps=60000", "stop=budget")
    assert proc.returncode == 0, proc.stderr[-2000:]
    third = json.loads((run_dir / "summary.json").read_text())
    assert third["env_steps"] >= 60000 and third["solved_at_step"] == first["solved_at_step"]


def test_a_run_made_with_optimizer_all_lr_still_resumes(tmp_path: Path):
    """Runs from before the single optimizer's keys moved up saved `optimizer.all.lr=...` as an override."""
    run_dir = tmp_path / "run"
    assert (
        acx_main("train", *FAULT, "total_steps=1000", "optimizer.lr=1e-3", f"hydra.run.dir={run_dir}").returncode == 0
    )
    overrides = run_dir / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text().replace("optimizer.lr=", "optimizer.all.lr="))
    proc = acx_main("train", f"resume={run_dir}", "total_steps=2000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(run_dir)["meta"]["config"]["optimizer"]["lr"] == 1e-3
