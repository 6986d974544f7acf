"""The real ``acx`` command in a subprocess: train -> checkpoint -> eval -> eval.json, video, window."""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import pytest

from tests.conftest import FAST, eval_in_window, needs_xvfb, run_acx


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One short real CartPole training run shared by the eval tests, with the default loggers (W&B
    offline: it must work with no network and no API key)."""
    run_dir = tmp_path_factory.mktemp("cli") / "train"
    fast = [o for o in FAST if not o.startswith("logger=")]
    proc = run_acx("train", *fast, "total_steps=4000", f"hydra.run.dir={run_dir}", env={"WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def test_train_cli_outputs(trained: Path):
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["env_steps"] >= 4000
    assert (trained / "checkpoints" / "final.pt").is_file()
    assert (trained / ".hydra" / "config.yaml").is_file()
    assert list((trained / "wandb").glob("offline-run-*/run-*.wandb")), "the default W&B logger left no offline run"


def test_train_prints_final_line(tmp_path: Path):
    proc = run_acx("train", *FAST, "total_steps=1000", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("acx: ") and "env step" in last and str(tmp_path / "checkpoints" / "final.pt") in last


def test_eval_writes_eval_json(trained: Path, tmp_path: Path):
    proc = run_acx("eval", f"ckpt={trained}/checkpoints/final.pt", "episodes=3", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["episodes"] == 3 and len(result["returns"]) == 3
    assert result["checkpoint"].endswith("final.pt")
    assert result["return_mean"] == pytest.approx(sum(result["returns"]) / 3)
    assert result["length_mean"] == pytest.approx(result["return_mean"])  # CartPole: +1 per step
    assert "return" in proc.stdout and "+-" in proc.stdout


def test_eval_of_a_run_dir_and_sampling(trained: Path, tmp_path: Path):
    proc = run_acx("eval", f"ckpt={trained}", "episodes=2", "deterministic=false", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["deterministic"] is False and result["episodes"] == 2


def test_eval_video_has_one_frame_per_step(trained: Path, tmp_path: Path):
    ckpt = f"ckpt={trained}/checkpoints/final.pt"
    proc = run_acx("eval", ckpt, "episodes=2", "video=true", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    video = Path(result["video"])
    assert video == tmp_path / "video.mp4" and str(video) in proc.stdout
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames == sum(result["lengths"]) + result["episodes"]  # each reset frame, then one per step
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    assert meta["size"] == (600, 400)
    frame = next(reader)
    assert len(frame) == 600 * 400 * 3 and len(set(frame)) > 2  # real pixels (cart, pole, track), not a blank frame


@needs_xvfb
def test_eval_render_human_under_xvfb(trained: Path, tmp_path: Path):
    assert eval_in_window(trained / "checkpoints" / "final.pt", tmp_path)["episodes"] == 1


def test_help_and_unknown_command():
    assert run_acx("--help").returncode == 0
    proc = run_acx("fly")
    assert proc.returncode == 2 and "unknown command" in proc.stderr


@pytest.mark.parametrize(
    "args,expected",
    [
        (["train", "env.id=CartPol-v1"], "did you mean CartPole-v1"),
        (["train", "network=cnn"], "network=cnn needs image observations"),
        (["eval", "ckpt=/nonexistent/final.pt"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str):
    proc = run_acx(*args, f"hydra.run.dir={tmp_path / 'out'}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("acx: error: ") and expected in lines[0]


def test_crafted_checkpoint_does_not_execute(tmp_path: Path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import torch

    torch.save({"format": "acx-checkpoint", "model": Payload()}, tmp_path / "evil.pt")
    proc = run_acx("eval", f"ckpt={tmp_path / 'evil.pt'}", f"hydra.run.dir={tmp_path / 'out'}")
    assert proc.returncode == 2 and "safe" in proc.stderr
    assert not marker.exists(), "loading the checkpoint ran its payload"
