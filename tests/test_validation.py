"""Bad configs and bad checkpoints through the real `acx` command: one line naming the problem,
exit code 2, no traceback, and no run directory left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, run_acx

BAD_CONFIGS = [
    (["env.id=CartPol-v1"], "did you mean CartPole-v1"),
    (["algo=nonexistent"], "algo=nonexistent: no such option; choose from episodic, nstep, td0"),
    (["-m", "algo=td0,nstep,bogus"], "algo=bogus: no such option"),
    (["logger=[tensorboard,wandbb]"], "logger=wandbb: no such option"),
    (["algo.gamma=0"], "algo.gamma: must be in (0, 1]"),
    (["algo.gamma=1.01"], "algo.gamma: must be in (0, 1]"),
    (["optimizer.all.lr=-0.001"], "optimizer.all.lr: must be > 0"),
    (["optimizer=adam_split", "optimizer.critic.lr=0"], "optimizer.critic.lr: must be > 0"),
    (["algo.n_steps=0"], "algo.n_steps: must be an integer >= 1"),
    (["algo.num_envs=0"], "algo.num_envs: must be an integer >= 1"),
    (["network.hidden_sizes=[]"], "network.hidden_sizes: must list at least one"),
    (["lr_schedule=linear", "lr_schedule.final_fraction=1.5"], "lr_schedule.final_fraction: must be in [0, 1]"),
    (["lr_schedule=cosine"], "lr_schedule=cosine: no such option; choose from constant, linear"),
    (["network=cnn"], "network=cnn needs image observations"),
    (["env=pong", "network=mlp"], "network=mlp needs flat vector observations"),
    (["network.gaussian.mean_bound=true"], "network.gaussian.mean_bound: applies to continuous"),
    (["total_steps=0"], "total_steps: must be a positive integer"),
    (["total_steps=-5"], "total_steps: must be a positive integer"),
    (["algo=episodic", "algo.num_envs=4"], "algo.num_envs: must be 1 when algo.n_steps is null"),
]


@pytest.mark.parametrize("overrides,expected", BAD_CONFIGS, ids=[" ".join(o) for o, _ in BAD_CONFIGS])
def test_bad_config_is_rejected_before_anything_starts(tmp_path: Path, overrides: list[str], expected: str):
    run_dir = tmp_path / "run"
    proc = run_acx("train", *overrides, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not run_dir.exists(), "a rejected run must not leave a run directory"


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("good") / "run"
    proc = run_acx("train", *FAST, "total_steps=1000", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    return run_dir / "checkpoints" / "final.pt"


def make_bad(kind: str, good: Path, folder: Path) -> Path:
    if kind == "missing":
        return folder / "nope.pt"
    if kind == "empty_dir":
        (folder / "empty").mkdir()
        return folder / "empty"
    if kind == "truncated":
        data = good.read_bytes()
        (folder / "cut.pt").write_bytes(data[: len(data) // 2])
        return folder / "cut.pt"
    if kind == "garbage":
        (folder / "garbage.pt").write_bytes(b"\x00not a checkpoint" * 100)
        return folder / "garbage.pt"
    if kind == "not_acx":
        torch.save({"weights": torch.zeros(3)}, folder / "plain.pt")
        return folder / "plain.pt"
    if kind == "future_version":
        ckpt = torch.load(good, weights_only=True)
        ckpt["format_version"] = 999
        torch.save(ckpt, folder / "future.pt")
        return folder / "future.pt"
    raise AssertionError(kind)


BAD_CHECKPOINTS = {
    "missing": "does not exist",
    "empty_dir": "no acx checkpoint in directory",
    "truncated": "not a loadable acx checkpoint",
    "garbage": "not a loadable acx checkpoint",
    "not_acx": "is not an acx checkpoint",
    "future_version": "checkpoint format 999",
}


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_in_eval(tmp_path: Path, good_checkpoint: Path, kind: str):
    path = make_bad(kind, good_checkpoint, tmp_path)
    proc = run_acx("eval", f"ckpt={path}", f"hydra.run.dir={tmp_path / 'out'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and BAD_CHECKPOINTS[kind] in lines[0]
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_a_different_env(tmp_path: Path, good_checkpoint: Path):
    proc = run_acx("eval", f"ckpt={good_checkpoint}", "env_id=Acrobot-v1", f"hydra.run.dir={tmp_path / 'out'}")
    assert proc.returncode == 2
    assert "trained on CartPole-v1" in proc.stderr and "Acrobot-v1" in proc.stderr


def test_debug_switch_shows_the_traceback(tmp_path: Path):
    proc = run_acx("train", "algo.gamma=0", f"hydra.run.dir={tmp_path / 'x'}", env={"ACX_DEBUG": "1"})
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr or "ConfigError" in proc.stderr
