"""The table of measured results (acx/analysis/learning.json, written with docs/learning.md by bench/learning.py)
and the note a run of a cell that does not learn starts with."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from acx.analysis.learned import TABLE, defaults_of, not_learning_note, start_note
from tests.conftest import ROOT, compose_train, run_acx

CELLS = json.loads(TABLE.read_text())["cells"]
DOCS = ROOT / "docs"
PLAIN = {"experiment": None, "hparams_search": None}  # Hydra's choices for a plain command


def cell_id(cell: dict) -> str:
    return f"{cell['env']}-{cell['variant']}-{'plain' if cell['defaults'] == 'plain' else 'tuned'}"


def test_the_table_holds_cells_that_learn_and_cells_that_do_not():
    assert any(c["learns"] for c in CELLS) and any(not c["learns"] for c in CELLS)
    for cell in CELLS:
        assert cell["learns"] == (cell["reached"] > 0), cell
        assert (cell["why"] is None) == cell["learns"], cell


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_the_note_appears_exactly_for_the_cells_the_table_marks_as_not_learning(tmp_path: Path, cell: dict):
    """The command a user types for the cell: the plain presets (``~tuned`` where a tuned file would be
    picked) or the tuned file that naming the env picks."""
    overrides = [f"env={cell['env']}", f"algo={cell['variant']}", *(["~tuned"] if cell["defaults"] == "plain" else [])]
    cfg = compose_train(overrides, tmp_path)
    assert defaults_of(cfg.tuned_from) == cell["defaults"]
    note = start_note(cfg, PLAIN)
    assert (note is not None) == (not cell["learns"]), (cell, note)
    if note is not None:
        assert note.startswith(f"the {cell['variant']} variant has not been shown to learn {cell['env_id']}")
        assert cell["why"] in note and note.endswith("(docs/learning.md)")
    # an experiment preset sets its own hyperparameters: the table says nothing about it
    assert start_note(cfg, {**PLAIN, "experiment": "anything"}) is None


def test_the_doc_and_the_table_say_the_same():
    """docs/learning.md's learns column is the table's, row by row (both written by bench/learning.py)."""
    doc = (DOCS / "learning.md").read_text()
    for cell in (c for c in CELLS if c["defaults"] == "plain"):
        row = re.search(rf"^\| {re.escape(cell['env_id'])} \| [\d,]+ \| {cell['variant']} \|.*$", doc, re.M)
        assert row, cell
        assert row.group(0).endswith("| yes |" if cell["learns"] else f"| **no**: {cell['why']} |"), row.group(0)


def test_note_lookup(tmp_path: Path):
    table = tmp_path / "learning.json"
    assert not_learning_note("Pendulum-v1", "episodic", None, table) is None  # no table: no note
    cells = [
        {"env_id": "Pendulum-v1", "variant": "episodic", "defaults": "plain", "learns": False, "why": "0/10 reached"},
        {"env_id": "Pendulum-v1", "variant": "nstep", "defaults": "plain", "learns": False, "why": "0/10 reached"},
        {"env_id": "Pendulum-v1", "variant": "nstep", "defaults": "conf/tuned/pendulum_nstep.yaml", "learns": True,
         "why": None},
    ]  # fmt: skip
    table.write_text(json.dumps({"cells": cells}))
    note = not_learning_note("Pendulum-v1", "episodic", None, table)
    assert note == (
        "the episodic variant has not been shown to learn Pendulum-v1 with these defaults: 0/10 reached "
        "(docs/learning.md)"
    )
    tuned = "conf/tuned/pendulum_nstep.yaml (searched here)"
    assert not_learning_note("Pendulum-v1", "nstep", tuned, table) is None  # the tuned cell learns
    assert not_learning_note("Pendulum-v1", "nstep", None, table) is not None  # the plain one does not
    assert not_learning_note("Pendulum-v1", "td0", None, table) is None  # not measured
    assert not_learning_note("CartPole-v1", "episodic", None, table) is None


def test_a_run_and_a_sweep_of_a_cell_that_does_not_learn_start_with_the_note(tmp_path: Path):
    quiet = ["logger=none", "progress=false", "total_steps=1000", "eval.every_steps=1000"]
    note = "acx: note: the episodic variant has not been shown to learn Pendulum-v1"
    single = run_acx("train", "env=pendulum", "algo=episodic", *quiet, f"hydra.run.dir={tmp_path / 'one'}")
    assert single.returncode == 0, single.stderr[-2000:]
    assert single.stdout.startswith(note), single.stdout
    # the same variant and env from an experiment preset: its own settings, no note
    preset = run_acx("train", "experiment=seed001_episodic_pendulum", *quiet, f"hydra.run.dir={tmp_path / 'preset'}")
    assert preset.returncode == 0 and "acx: note" not in preset.stdout, preset.stdout + preset.stderr[-2000:]
    # a sweep says it once, and nothing for its cells that learn (n-step with Pendulum's tuned file)
    sweep = run_acx("train", "-m", "hydra/launcher=population", "env=pendulum", "algo=episodic,nstep", "seed=0,1",
                    *quiet, f"hydra.sweep.dir={tmp_path / 'sweep'}")  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert sweep.stdout.count("acx: note:") == 1 and note in sweep.stdout, sweep.stdout


def test_a_redraw_with_no_sweeps_keeps_every_section_and_cell(tmp_path: Path):
    """`bench/learning.py --reuse` on a fresh machine (outputs/ is not in git: no sweeps in --runs) keeps
    the doc and the table as they were, and says so; with no doc either, it stops with one line."""
    shutil.copy(DOCS / "learning.md", tmp_path / "learning.md")
    shutil.copy(TABLE, tmp_path / "learning.json")
    bench = [sys.executable, "bench/learning.py", "--reuse", "--runs", str(tmp_path / "runs"), "--reps", "100",
             "--table", str(tmp_path / "learning.json")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*bench, "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "note: kept the plain presets, the tuned defaults, the spaces-and-memory sweeps" in done.stdout
    assert json.loads((tmp_path / "learning.json").read_text())["cells"] == CELLS
    before, after = (
        [line for line in (folder / "learning.md").read_text().splitlines() if line.strip()]
        for folder in (DOCS, tmp_path)
    )
    assert any(line.startswith("Partly redrawn on") for line in after)
    assert [line for line in after if not line.startswith("Partly redrawn on")] == [
        line for line in before if not line.startswith("Partly redrawn on")
    ]
    empty = subprocess.run([*bench, "--out", str(tmp_path / "none")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert empty.returncode == 1 and empty.stderr.strip().endswith("(make learning)"), empty.stderr
