"""Bad configs and bad checkpoints through `acx`'s entry point: one line naming the problem, exit code
2, no traceback, and no run directory left behind. The tables run ``acx.cli.main`` in the test's
process (``acx_main``); tests/test_cli.py runs bad input through the installed console script too."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, ROOT, acx_main, run_acx

BAD_CONFIGS = [
    (["env.id=CartPol-v1"], "did you mean CartPole-v1"),
    (["algo=nonexistent"], "algo=nonexistent: no such option; choose from episodic, nstep, ppo, td0"),
    (["-m", "algo=td0,nstep,bogus"], "algo=bogus: no such option"),
    (["logger=[tensorboard,wandbb]"], "logger=wandbb: no such option"),
    (["algo.gamma=0"], "algo.gamma: must be in (0, 1]"),
    (["algo.gamma=1.01"], "algo.gamma: must be in (0, 1]"),
    (["optimizer.lr=-0.001"], "optimizer.lr: must be > 0"),
    (["optimizer=adam_split", "optimizer.critic.lr=0"], "optimizer.critic.lr: must be > 0"),
    (["algo.n_steps=0"], "algo.n_steps: must be an integer >= 1"),
    (["algo.num_envs=0"], "algo.num_envs: must be an integer >= 1"),
    (["network.hidden_sizes=[]"], "network.hidden_sizes: must be a list of at least 1 item, got []"),
    (["network.hidden_sizes=[64,0]"], "network.hidden_sizes[1]: must be an integer >= 1, got 0"),
    (["lr_schedule=linear", "lr_schedule.final_fraction=1.5"], "lr_schedule.final_fraction: must be in [0, 1]"),
    (["lr_schedule=cosine"], "lr_schedule=cosine: no such option; choose from constant, linear"),
    (["network=cnn"], "network=cnn needs image observations"),
    (["env=pong", "network=mlp"], "network=mlp needs flat vector observations"),
    (["network.gaussian.mean_bound=true"], "network.gaussian.mean_bound: applies to continuous"),
    (["total_steps=0"], "total_steps: must be an integer >= 1, got 0"),
    (["total_steps=-5"], "total_steps: must be an integer >= 1, got -5"),
    (["total_steps=1.5"], "total_steps: must be an integer >= 1, got 1.5"),
    (["log.every_updates=0"], "log.every_updates: must be an integer >= 1, got 0"),
    (["log.every_updates=-3"], "log.every_updates: must be an integer >= 1, got -3"),
    (["eval.every_steps=0"], "eval.every_steps: must be an integer >= 1, got 0"),
    (["checkpoint.keep=0"], "checkpoint.keep: must be an integer >= 1, got 0"),
    (["seed=-1"], "seed: must be an integer >= 0, got -1"),
    (["progress=maybe"], "progress: must be true or false, got 'maybe'"),
    (
        ["network.activation=tahn"],
        "network.activation: must be one of relu, tanh, elu, gelu, silu, got 'tahn'; did you mean tanh?",
    ),
    (["network.init=orthogonl"], "did you mean orthogonal?"),
    (["algo.loss.value_loss=l1"], "algo.loss.value_loss: must be one of mse, huber, smooth_l1, got 'l1'"),
    (["logger.wandb.mode=not-a-mode"], "logger.wandb.mode: must be one of offline, online, disabled"),
    (["optimized_metric=auc"], "optimized_metric: must be one of best_eval_return, final_eval_return, eval_return_auc"),
    (["+network.activatoin=relu"], "network.activatoin: no such key; did you mean network.activation?"),
    (["optimizer.all.lr=1e-3"], "optimizer.all.lr: no such key; did you mean optimizer.lr?"),
    (["optimizer.lrr=1e-3"], "optimizer.lrr: no such key; did you mean optimizer.lr?"),
    (["optimizer=adam_split", "optimizer.lr=1e-3"], "did you mean optimizer.actor.lr, optimizer.critic.lr?"),
    (["optimizer=adam_split", "network=mlp_shared"], "optimizer: separate actor and critic optimizers need separate"),
    (
        ["algo.advantage._target_=acx.algo.returns.nope"],
        "algo.advantage: cannot import _target_ 'acx.algo.returns.nope'",
    ),
    (["+env.kwargs.bogus=1"], "env.kwargs: CartPole-v1 does not take them"),
    (["env.kwargs={bogus: 1}"], "env.kwargs.bogus: no such key"),
    (["algo=episodic", "algo.num_envs=4"], "algo.num_envs: must be 1 when algo.n_steps is null"),
]


@pytest.mark.parametrize("overrides,expected", BAD_CONFIGS, ids=[" ".join(o) for o, _ in BAD_CONFIGS])
def test_bad_config_is_rejected_before_anything_starts(tmp_path: Path, overrides: list[str], expected: str):
    run_dir = tmp_path / "run"
    proc = acx_main("train", *overrides, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not run_dir.exists(), "a rejected run must not leave a run directory"


POP, MUST_BE_1 = "hydra/launcher=population", "must be an integer >= 1, got 0"
BAD_LAUNCHERS = [
    ([POP, "hydra.launcher.max_members=0"], f"hydra.launcher.max_members: {MUST_BE_1}"),
    ([POP, "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs: must be -1 (one per core) or an integer >= 1, got 0"),
    (
        [POP, "hydra.launcher.backend=slurmm"],
        "hydra.launcher.backend: must be one of local, slurm, ray, got 'slurmm'; did you mean slurm?",
    ),
    ([POP, "hydra.launcher.slurm.time=0"], f"hydra.launcher.slurm.time: {MUST_BE_1}"),
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs: must be -1 (one per core)"),
    (["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=0"], f"hydra.launcher.timeout_min: {MUST_BE_1}"),
    (
        ["hydra/launcher=submitit_slurm", "hydra.launcher.signal_delay_s=-1"],
        "hydra.launcher.signal_delay_s: must be an integer >= 0, got -1",
    ),
    (["hydra/launcher=ray", "+hydra.launcher.adress=x"], "hydra.launcher.adress: no such key; did you mean"),
]


@pytest.mark.parametrize("overrides,expected", BAD_LAUNCHERS, ids=[" ".join(o) for o, _ in BAD_LAUNCHERS])
def test_bad_launcher_value_is_one_line_before_any_job(tmp_path: Path, overrides: list[str], expected: str):
    proc = acx_main("train", "-m", *overrides, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"acx: error: {expected}"), lines
    assert not (tmp_path / "sweep").exists(), "no job started"


@pytest.fixture
def good_checkpoint(good_run: Path) -> Path:
    return good_run / "checkpoints" / "final.pt"


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
    proc = acx_main("eval", f"ckpt={path}", f"hydra.run.dir={tmp_path / 'out'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and BAD_CHECKPOINTS[kind] in lines[0]
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_a_different_env(tmp_path: Path, good_checkpoint: Path):
    proc = acx_main("eval", f"ckpt={good_checkpoint}", "env_id=Acrobot-v1", f"hydra.run.dir={tmp_path / 'out'}")
    assert proc.returncode == 2
    assert "trained on CartPole-v1" in proc.stderr and "Acrobot-v1" in proc.stderr


def test_eval_arguments_are_checked_the_same_way(tmp_path: Path, good_checkpoint: Path):
    for args, expected in (
        (["episodes=0"], "episodes: must be an integer >= 1, got 0"),
        (["render=window"], "render: must be one of human, none, got 'window'"),
        (["+episode=3"], "episode: no such key; did you mean episodes?"),
    ):
        proc = acx_main("eval", f"ckpt={good_checkpoint}", *args, f"hydra.run.dir={tmp_path / 'out'}")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"acx: error: {expected}"]
        assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_made(tmp_path: Path):
    (tmp_path / "file").write_text("not a folder")
    proc = acx_main("train", *FAST, f"hydra.run.dir={tmp_path / 'file' / 'run'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("acx: error: cannot write ") and "Not a directory" in lines[0]


def test_resume_with_another_env_is_one_line(tmp_path: Path, good_checkpoint: Path):
    proc = acx_main("train", f"resume={good_checkpoint}", "env=acrobot", f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "trained on CartPole-v1" in lines[0] and "Acrobot-v1" in lines[0]
    proc = acx_main(
        "train", f"resume={good_checkpoint}", "network.hidden_sizes=[32]", f"hydra.run.dir={tmp_path / 'r'}"
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds a network that the network config does not build" in lines[0]


def test_a_bug_below_the_cli_shows_its_traceback(tmp_path: Path):
    """A ValueError raised by code (not by acx's input checks) is a bug: traceback and exit 1, not exit 2."""
    bug = "algo.advantage._target_=tests.injected_bug.estimator"
    proc = run_acx("train", *FAST, bug, f"hydra.run.dir={tmp_path / 'run'}", env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" in proc.stderr and "ValueError: an injected bug" in proc.stderr
    assert "acx: error" not in proc.stderr


def test_debug_switch_shows_the_traceback(tmp_path: Path):
    proc = acx_main("train", "algo.gamma=0", f"hydra.run.dir={tmp_path / 'x'}", env={"ACX_DEBUG": "1"})
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr or "ConfigError" in proc.stderr
