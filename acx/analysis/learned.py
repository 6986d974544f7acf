"""What ``make learning`` measured, as the table a run reads at its start.

``bench/learning.py`` writes ``acx/analysis/learning.json`` (package data, so the wheel carries it) from
the same report rows as ``docs/learning.md``: a cell per (env id, variant, defaults), where the defaults
are ``plain`` (no tuned file) or the ``conf/tuned/`` file a plain command picks. A cell that no seed
learned (none reached the threshold within the budget) carries why; a run whose env, variant and
defaults are such a cell starts with one line that says so. The note and the doc come from one table,
so they cannot drift apart.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

TABLE = Path(str(files("acx.analysis") / "learning.json"))


def defaults_of(tuned_from: str | None) -> str:
    """The cell's defaults for a config's ``tuned_from``: ``plain``, or the tuned file's path."""
    return tuned_from.split()[0] if tuned_from else "plain"


def not_learning_note(env_id: str, variant: str, tuned_from: str | None, table: Path = TABLE) -> str | None:
    """The start-of-run note for a run of ``variant`` on ``env_id`` with these defaults, when the
    table marks that cell as not learning; None otherwise (a cell that learns, or none measured)."""
    if not table.is_file():
        return None
    defaults = defaults_of(tuned_from)
    for cell in json.loads(table.read_text())["cells"]:
        if (cell["env_id"], cell["variant"], cell["defaults"]) == (env_id, variant, defaults) and not cell["learns"]:
            return (f"the {variant} variant has not been shown to learn {env_id} with these defaults: "
                    f"{cell['why']} (docs/learning.md)")  # fmt: skip
    return None


def start_note(cfg, choices) -> str | None:
    """The note for a run's composed config and Hydra's config-group choices: none for an experiment
    or search preset, which set their own hyperparameters (the table measured the plain command)."""
    if choices.get("experiment") is not None or choices.get("hparams_search") is not None:
        return None
    return not_learning_note(str(cfg.env.id), str(cfg.algo.name), cfg.get("tuned_from"))
