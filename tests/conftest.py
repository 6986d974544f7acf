"""Shared test helpers: compose the real config tree, run the real ``acx`` command."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import traceback
import weakref
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
ACX = [str(Path(sys.executable).parent / "acx")]  # the installed console script

# short-run settings that keep a test run to seconds
FAST = ["progress=false", "logger=none", "eval.episodes=2", "eval.every_steps=1000", "checkpoint.every_steps=1000"]


# metrics that are zero up to rounding, with the absolute tolerance they are compared at: the mean of
# normalised advantages is a float32 sum over the batch, a few 1e-6 either side on any CPU
ROUNDING_ZERO = {"train/advantage_mean": 1e-4}


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


def acx_main(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``acx <args>`` through ``acx.cli.main``, the console script's own entry point, in this process:
    what it prints and its exit code, without the ~2 s a new interpreter spends importing torch. For
    commands that stop on bad input before anything trains; what a run leaves behind in the process
    (Hydra's global state, the root logger's handlers, os.environ, sys.argv) is put back after it."""
    from hydra.core.global_hydra import GlobalHydra

    from acx import cli

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv, root = dict(os.environ), sys.argv, logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    # Hydra configures logging with dictConfig, which closes every handler the process ever made (absl's
    # closes the stream it holds: pytest's capture file, which is not sys.stderr within this call)
    all_handlers, named_handlers = logging._handlerList[:], logging._handlers
    logging._handlerList[:], logging._handlers = [], weakref.WeakValueDictionary()
    os.environ.update(env or {})
    sys.argv = ["acx", *args]
    GlobalHydra.instance().clear()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except Exception:  # what the interpreter prints for an exception nothing catches
                traceback.print_exc()
                code = 1
    finally:
        GlobalHydra.instance().clear()
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging._handlerList[:], logging._handlers = all_handlers, named_handlers
    return subprocess.CompletedProcess(["acx", *args], code, out.getvalue(), err.getvalue())


def resume_copy(first: Path, into: Path, overrides: list[str]) -> tuple[dict, list[dict]]:
    """A copy of the finished run ``first`` resumed in ``into`` with ``overrides``: its final checkpoint and
    its metrics rows without the wall-clock columns (what two resumes of one checkpoint must share)."""
    from acx.run.checkpoint import load_checkpoint
    from acx.run.train import train

    shutil.copytree(first, into)
    train(compose_train([*overrides, f"resume={into}"], into))
    ckpt = load_checkpoint(into / "checkpoints" / "final.pt")
    lines = (into / "metrics.jsonl").read_text().splitlines()
    return ckpt, [{k: v for k, v in json.loads(x).items() if k not in ("wall_time", "time/sps")} for x in lines]


def learner_of(net, loss=None, optimizer=None, estimator=None, seed: int = 0, **options):
    """A cohort of one around ``net``: its learner (Adam at lr 1e-3 and A2C's loss unless given), the
    network it trains (``learner.net``), sampling from a generator seeded with ``seed``."""
    import functools

    import torch

    from acx.algo.losses import ActorCriticLoss
    from acx.algo.optim import Adam
    from acx.algo.returns import gae_advantages
    from acx.algo.update import Learner

    hyper = {"gamma": 0.99, "reward_scale": 1.0, "max_grad_norm": 0.5, "ent_coef": 0.0, "vf_coef": 0.5,
             "lr_all": 1e-3}  # fmt: skip
    hyper.update(options.pop("hyper", {}))
    loss = loss or ActorCriticLoss()
    hyper["ent_coef"], hyper["vf_coef"] = float(loss.ent_coef), float(loss.vf_coef)
    return Learner([net], {"all": optimizer or functools.partial(Adam)}, loss, estimator or gae_advantages,
                   [hyper], [torch.Generator().manual_seed(seed)], **options)  # fmt: skip


@pytest.fixture(scope="session")
def good_run(tmp_path_factory) -> Path:
    """One short CartPole run through the real console script, shared (read-only) by the tests that
    need a whole checkpoint to start from or to break."""
    run_dir = tmp_path_factory.mktemp("good") / "run"
    proc = run_acx("train", *FAST, "total_steps=1000", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


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
