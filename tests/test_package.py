"""acx as a package: the configs and the measured table come from the installed package, a user's own
config folder is searched before acx's, the Python API (acx.train, acx.load) runs the command's
code path, and one version is printed everywhere. Every run here starts outside the checkout, from a copy
of examples/corridor. (.ci/run checks the same commands against the built wheel in a clean venv.)"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch

import acx
from tests.conftest import ACX, ROOT

EXAMPLE = ROOT / "examples" / "corridor"
QUIET = ["logger=none", "progress=false"]


def run(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real acx console script (or ``python`` when args start with it) in a subprocess, from ``cwd``."""
    command = list(args) if args[0] == sys.executable else [*ACX, *args]
    full_env = {k: v for k, v in os.environ.items() if k != "ACX_CONFIG_DIR"} | {"PYTHONUNBUFFERED": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=full_env | (env or {}), check=False)  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of examples/corridor: a user's project, outside the checkout."""
    folder = tmp_path / "corridor"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("outputs", "__pycache__", ".ipynb_checkpoints"))
    return folder


def job_config(done: subprocess.CompletedProcess) -> dict:
    import yaml

    assert done.returncode == 0, done.stderr[-2000:]
    return yaml.safe_load(done.stdout)


def test_one_version_everywhere(tmp_path: Path):
    done = run("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"acx {acx.__version__}", done
    assert importlib.metadata.version("acx") == acx.__version__  # pyproject.toml reads it (dynamic)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]


def test_the_configs_and_the_table_are_package_data():
    """Hydra reads pkg://acx.conf, and the start-of-run note reads the table through acx.analysis: the
    wheel carries both (pyproject.toml's package-data), and nothing is read relative to the checkout."""
    from importlib.resources import files

    from acx.analysis.learned import TABLE
    from acx.cli import CONF_DIR, CONF_PACKAGE

    assert CONF_PACKAGE == "pkg://acx.conf" and (files("acx.conf") / "train.yaml").is_file()
    assert Path(CONF_DIR).resolve() == (ROOT / "conf").resolve()  # acx/conf links to the top-level conf/
    assert TABLE == Path(str(files("acx.analysis") / "learning.json")) and TABLE.is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert data == {"acx.conf": ["**/*.yaml"], "acx.analysis": ["learning.json"]}
    for module in ("cli.py", "analysis/learned.py"):  # no path from the source file up to the checkout
        assert "Path(__file__)" not in (ROOT / "acx" / module).read_text(), module


def test_a_user_config_folder_is_searched_first(project: Path):
    """--config-dir's env/, experiment/ and tuned/ files are found by name (the tuned file by the pair),
    and a file named like one of acx's wins over it; ACX_CONFIG_DIR does the same for every command."""
    tuned = job_config(run("train", "--config-dir", "conf", "env=corridor", "--cfg", "job", cwd=project))
    assert tuned["env"]["id"] == "my_envs:Corridor-v0" and tuned["tuned_from"].startswith("conf/tuned/corridor_nstep")
    preset = job_config(run("train", "-cd", "conf", "experiment=corridor_long", "--cfg", "job", cwd=project))
    assert preset["env"]["kwargs"]["length"] == 10 and preset["tuned_from"] is None
    (project / "conf" / "env" / "cartpole.yaml").write_text(
        (ROOT / "conf" / "env" / "cartpole.yaml").read_text().replace("reward_threshold: null", "reward_threshold: 123")
    )
    ours = job_config(run("train", "--config-dir=conf", "env=cartpole", "--cfg", "job", cwd=project))
    assert ours["env"]["reward_threshold"] == 123  # the user's cartpole.yaml, not acx's
    theirs = job_config(run("train", "env=cartpole", "--cfg", "job", cwd=project))
    assert theirs["env"]["reward_threshold"] is None  # without the folder: acx's own
    by_variable = job_config(run("train", "env=corridor", "--cfg", "job", cwd=project, env={"ACX_CONFIG_DIR": "conf"}))
    assert by_variable["tuned_from"] == tuned["tuned_from"]
    evaluated = job_config(run("eval", "--config-dir", "conf", "ckpt=x.pt", "--cfg", "job", cwd=project))
    assert evaluated["ckpt"] == "x.pt"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config-dir", "nowhere", "env=corridor"], "--config-dir {}/nowhere: no such folder"),
        (["--config-dir"], "--config-dir: expects a folder"),
        (["env=corridor"], "env=corridor: no such option; choose from acrobot,"),  # not without the folder
    ],
)
def test_a_bad_config_folder_is_one_line(project: Path, args: list[str], message: str):
    done = run("train", *args, cwd=project)
    assert done.returncode == 2, done
    assert done.stderr.startswith("acx: error: " + message.format(project)), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert not (project / "outputs").exists()
    variable = run("train", "env=corridor", cwd=project, env={"ACX_CONFIG_DIR": str(project / "gone")})
    assert variable.returncode == 2 and variable.stderr == f"acx: error: --config-dir {project}/gone: no such folder\n"


@pytest.mark.slow
def test_the_example_project_trains_evaluates_sweeps_and_reports_from_its_own_folder(project: Path):
    trained = run("train", "--config-dir", "conf", "env=corridor", *QUIET, "hydra.run.dir=outputs/one", cwd=project)
    assert trained.returncode == 0, trained.stderr[-2000:]
    summary = json.loads((project / "outputs" / "one" / "summary.json").read_text())
    assert summary["solved"] and summary["env_id"] == "Corridor-v0", summary
    evaluated = run("eval", "ckpt=outputs/one", "episodes=3", "hydra.run.dir=outputs/eval", cwd=project)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads((project / "outputs" / "eval" / "eval.json").read_text())["return_mean"] >= 0.25
    swept = run("train", "--config-dir", "conf", "-m", "hydra/launcher=population", "env=corridor", "seed=0,1",
                *QUIET, "hydra.sweep.dir=outputs/sweep", cwd=project)  # fmt: skip
    assert swept.returncode == 0, swept.stderr[-2000:]
    assert sorted(p.name for p in (project / "outputs" / "sweep").glob("*_s*")) == [
        "0_my_envs-Corridor-v0_nstep_s0",
        "1_my_envs-Corridor-v0_nstep_s1",
    ]
    reported = run("report", "--config-dir", "conf", "outputs/sweep", cwd=project)  # accepted, as by every command
    assert reported.returncode == 0, reported.stderr[-2000:]
    assert "| (one configuration) | 2 | 0.3 [0.3, 0.3] |" in reported.stdout, reported.stdout  # both at the best
    assert (project / "outputs" / "sweep" / "learning_curves.png").is_file()


def readme_api_example() -> str:
    """The README's Python API example: the ```python block under its "Python API" heading."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_api_example_runs(tmp_path: Path):
    code = readme_api_example()
    assert "acx.train(" in code and "acx.load(" in code and "policy.act(" in code
    done = run(sys.executable, "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    *_, first, last = done.stdout.splitlines()  # print(run.dir, best eval, rows), print(mean return)
    runs = list((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 1 and first.startswith(f"{runs[0]} "), done.stdout
    assert float(first.split()[-1]) > 1 and float(last) > 9, done.stdout  # metrics rows; CartPole's return


def test_the_api_raises_the_commands_one_line_errors(tmp_path: Path, monkeypatch):
    """Bad input is an AcxError with the command's message, and nothing is printed for it; no run folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(acx.AcxError, match=r"^optimizer.lr: must be > 0, got -1$") as raised:
        acx.train("optimizer.lr=-1", *QUIET)
    assert raised.value.exit_code == 2
    with pytest.raises(acx.AcxError, match=r"^env=nope: no such option; choose from acrobot, "):
        acx.train("env=nope")
    with pytest.raises(acx.AcxError, match=r"^algo.gama: no such key; did you mean algo.gamma\?"):
        acx.train("algo.gama=0.9")
    with pytest.raises(acx.AcxError, match="no such folder"):
        acx.train("env=corridor", config_dir=tmp_path / "missing")
    with pytest.raises(acx.AcxError, match="is not an acx checkpoint|does not exist"):
        acx.load(tmp_path / "none.pt")
    assert not list(tmp_path.glob("outputs/train/runs/*")), "a run that never started leaves no folder"
    assert "ACX_CONFIG_DIR" not in os.environ


@pytest.mark.slow
def test_the_api_sweeps_and_loads_from_a_users_folder(project: Path, monkeypatch):
    monkeypatch.chdir(project)
    runs = acx.train("env=corridor", "seed=0,1", "hydra/launcher=population", *QUIET, config_dir="conf", multirun=True)
    sweep_package = importlib.import_module("acx.sweep")  # keeps its name; the API's function is acx.api.sweep
    assert acx.sweep is sweep_package and callable(acx.api.sweep)
    assert [r.dir.name for r in runs] == ["0_my_envs-Corridor-v0_nstep_s0", "1_my_envs-Corridor-v0_nstep_s1"]
    assert all(r.summary["solved"] and r.metrics and r.config["env"]["id"] == "my_envs:Corridor-v0" for r in runs)
    policy = runs[1].load()
    assert policy.env_id == "Corridor-v0" and not policy.recurrent
    assert policy.evaluate(episodes=3)["return_mean"] == pytest.approx(0.3)
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    steps, done = 0, False
    while not done:  # the trained policy walks right, step by step
        action, state = policy.act(obs)
        assert state is None and int(action) == 1
        obs, _, done, _, _ = env.step(action)
        steps += 1
    assert steps == 8


@pytest.mark.slow
def test_the_example_notebook_runs(project: Path):
    """examples/corridor/corridor.ipynb, executed as Jupyter would (nbclient, a python3 kernel)."""
    import nbclient
    import nbformat

    notebook = nbformat.read(project / "corridor.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3")
    client.execute(cwd=str(project))  # the kernel starts in the project's folder, as Jupyter's would
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("env=corridr: no such option" in o.get("text", "") for o in outputs)


def test_a_recurrent_policy_carries_its_state(tmp_path: Path, monkeypatch):
    """network=lstm: Policy.act starts from the zero state and hands back the next one, which changes."""
    monkeypatch.chdir(tmp_path)
    run = acx.train("network=lstm", "algo=ppo", "algo.n_steps=32", "total_steps=300", "eval.every_steps=300",
                    "eval.episodes=1", "eval.confirm_episodes=0", *QUIET)  # fmt: skip
    policy = acx.load(run.dir)
    assert policy.recurrent
    obs, _ = policy.make_env().reset(seed=0)
    action, state = policy.act(obs)
    assert state is not None and state.shape[0] == 1 and int(action) in (0, 1)
    _, later = policy.act(obs, state)
    assert not torch.equal(later, state)
    assert policy.evaluate(episodes=2)["episodes"] == 2
