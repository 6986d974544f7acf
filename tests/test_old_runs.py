"""Runs saved before the cohort rewrite and the package layout (tests/fixtures/runs_before_cohort: their
configs name builders like ``acx.networks.mlp_actor_critic``) still replay, export and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from acx.run.checkpoint import load_checkpoint
from tests.conftest import acx_main

OLD_RUNS = Path(__file__).parent / "fixtures" / "runs_before_cohort"


@pytest.fixture(params=["cartpole", "pendulum"])
def old_run(request, tmp_path: Path) -> Path:
    return Path(shutil.copytree(OLD_RUNS / request.param, tmp_path / request.param))


def test_the_fixture_names_the_old_targets(old_run: Path):
    config = load_checkpoint(old_run)["meta"]["config"]
    assert config["network"]["_target_"] == "acx.networks.mlp_actor_critic"
    assert config["env"]["_target_"] == "acx.envs.GymEnvFactory"
    assert yaml.safe_load((old_run / ".hydra" / "config.yaml").read_text())["algo"]["advantage"]["_target_"] == (
        "acx.returns.gae_advantages"
    )


def test_an_old_run_replays_exports_and_resumes(old_run: Path, tmp_path: Path):
    proc = acx_main("eval", f"ckpt={old_run}", "episodes=2", f"hydra.run.dir={tmp_path / 'eval'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["episodes"] == 2
    proc = acx_main("export", f"ckpt={old_run}", "format=torchscript", f"hydra.run.dir={tmp_path / 'export'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "export" / "policy.pt").is_file()
    before = load_checkpoint(old_run)["meta"]["progress"]
    proc = acx_main("train", f"resume={old_run}", f"total_steps={before['env_steps'] + 1000}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = load_checkpoint(old_run / "checkpoints" / "final.pt")
    assert after["meta"]["progress"]["env_steps"] >= before["env_steps"] + 1000
    assert after["meta"]["progress"]["updates"] > before["updates"]
    assert after["meta"]["config"]["network"]["_target_"] == "acx.algo.networks.mlp_actor_critic"
    old = load_checkpoint(OLD_RUNS / old_run.name)
    assert after["model"].keys() == old["model"].keys()  # the same state dict names, normalisers included
