"""Shared test helpers: compose the real config tree, run the real ``acx`` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
ACX = [str(Path(sys.executable).parent / "acx")]  # the installed console script

# short-run settings that keep a test run to seconds
FAST = ["progress=false", "logger=none", "eval.episodes=2", "eval.every_steps=1000", "checkpoint.every_steps=1000"]


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The train config exactly as `acx train <overrides>` composes it, writing into output_dir."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={output_dir}"])


def run_acx(
    *args: str, timeout: float = 600, env: dict | None = None, wrap: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real acx console script in a subprocess (optionally under ``wrap``, e.g. xvfb-run)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [*(wrap or []), *ACX, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


needs_xvfb = pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs Xvfb (.ci/run installs it)")


def eval_in_window(ckpt: str | Path, out_dir: Path) -> dict:
    """`acx eval render=human` for one episode in a real pygame window on a virtual X screen."""
    proc = run_acx(
        "eval",
        f"ckpt={ckpt}",
        "episodes=1",
        "render=human",
        f"hydra.run.dir={out_dir}",
        env={"SDL_VIDEODRIVER": "x11"},
        wrap=["xvfb-run", "-a"],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out_dir / "eval.json").read_text())
