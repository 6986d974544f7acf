"""The user's own config folders, searched before acx's: ``acx train --config-dir DIR`` (or
``ACX_CONFIG_DIR=DIR1:DIR2`` for a whole project) puts each folder ahead of ``pkg://acx.conf``, so that
its ``env/``, ``experiment/``, ``tuned/`` and ``hparams_search/`` files are found by name and a file of
the same name as one of acx's wins. Hydra's own ``--config-dir`` appends after the primary config's
folder, where acx's file would win; acx's command reads the flag itself and sets the variable."""

from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin

VARIABLE = "ACX_CONFIG_DIR"


def user_config_dirs() -> list[str]:
    """The folders ``ACX_CONFIG_DIR`` names, first searched first (separated by ``os.pathsep``)."""
    return [d for d in os.environ.get(VARIABLE, "").split(os.pathsep) if d]


class AcxSearchPathPlugin(SearchPathPlugin):
    """Puts the user's config folders ahead of acx's own (the search path's ``main`` entry)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for folder in user_config_dirs():  # each prepended before main, in the order given
            search_path.prepend(provider="acx-user", path=f"file://{os.path.abspath(folder)}",
                                anchor=SearchPathQuery(provider="main"))  # fmt: skip
