"""Tuned defaults per (env, variant), conf/tuned/<env>_<algo>.yaml: picked by naming the env,
beaten by any explicit override, switched off by experiment presets and by ~tuned."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from acx.config import validate_train_config
from tests.conftest import CONF, compose_train, run_acx

TUNED = sorted(p.stem for p in (CONF / "tuned").glob("*.yaml"))
ALGOS = sorted(p.stem for p in (CONF / "algo").glob("*.yaml"))


def pair(name: str) -> tuple[str, str]:
    env, _, algo = name.rpartition("_")
    return env, algo


def leaves(node, prefix: str = ""):
    if not isinstance(node, dict):
        yield prefix, node
        return
    for key, value in node.items():
        yield from leaves(value, f"{prefix}.{key}" if prefix else key)


def test_every_tuned_file_names_an_env_and_a_variant():
    assert {"pendulum_nstep", "halfcheetah_nstep", "hopper_nstep", "walker2d_nstep"} <= set(TUNED)
    for name in TUNED:
        env, algo = pair(name)
        assert (CONF / "env" / f"{env}.yaml").is_file() and algo in ALGOS, name


@pytest.mark.parametrize("name", TUNED)
def test_tuned_file_is_picked_for_its_pair_and_loses_to_an_explicit_override(tmp_path: Path, name: str):
    env, algo = pair(name)
    text = (CONF / "tuned" / f"{name}.yaml").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header[0] == "# @package _global_"
    assert any(word in " ".join(header) for word in ("rl-baselines3-zoo", "hparams_search", "searched")), (
        "the header says where the values come from"
    )
    cfg = compose_train([f"env={env}", f"algo={algo}"], tmp_path)
    assert cfg.tuned_from.startswith(f"conf/tuned/{name}.yaml")
    tuned = OmegaConf.to_container(OmegaConf.load(CONF / "tuned" / f"{name}.yaml"))
    composed = OmegaConf.to_container(cfg, resolve=True)
    for key, value in leaves(tuned):
        assert OmegaConf.select(OmegaConf.create(composed), key) == value, key
    validate_train_config(cfg)
    # an explicit override of a key the file sets wins, and so does one of a key it leaves alone
    overridden = compose_train([f"env={env}", f"algo={algo}", "algo.gamma=0.5", "seed=7"], tmp_path)
    assert overridden.algo.gamma == 0.5 and overridden.seed == 7
    assert overridden.tuned_from == cfg.tuned_from
    # another variant on the same env gets that variant's file, or none
    for other in ALGOS:
        if other != algo:
            picked = compose_train([f"env={env}", f"algo={other}"], tmp_path).tuned_from
            expected = f"{env}_{other}" in TUNED
            assert (picked is not None) == expected, (env, other)


def test_presets_and_tilde_tuned_switch_the_tuned_defaults_off(tmp_path: Path):
    assert compose_train(["env=pendulum"], tmp_path).tuned_from is not None
    assert compose_train(["env=pendulum", "~tuned"], tmp_path).tuned_from is None
    seed = compose_train(["experiment=seed001_episodic_pendulum"], tmp_path)
    assert seed.tuned_from is None and not seed.normalize.obs
    assert compose_train(["env=cartpole"], tmp_path).tuned_from is None  # no file: the plain presets


def test_cfg_job_shows_what_was_picked():
    proc = run_acx("train", "env=pendulum", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "tuned_from: conf/tuned/pendulum_nstep.yaml" in proc.stdout
