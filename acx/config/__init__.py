"""The config, by concern: ``schema`` (the run's keys, types and ranges), ``launchers`` (the
``hydra/launcher`` schemas and their pre-flight check), ``messages`` (validation as one-line errors),
``migration`` (``_target_`` paths of older runs) and ``checks`` (a run's config before it starts, the
network against the env's spaces). The defaults are the YAML's, in ``conf/``; the names the schema allows
are ``acx.names``'. Everything the rest of acx uses is importable from here."""

from acx.config.checks import check_network_fits, validate_train_config
from acx.config.launchers import launcher_check, validate_launcher
from acx.config.messages import close_keys, validate
from acx.config.migration import MOVED_TARGETS, upgrade_target, upgrade_targets
from acx.config.schema import *  # noqa: F403 (every model: TrainConfig, EvalConfig, ExportConfig, ReportArgs, ...)
from acx.names import ACTIVATIONS, INITS, OBJECTIVES, VALUE_LOSSES

__all__ = [
    "ACTIVATIONS", "INITS", "MOVED_TARGETS", "OBJECTIVES", "VALUE_LOSSES", "check_network_fits", "close_keys",
    "launcher_check", "upgrade_target", "upgrade_targets", "validate", "validate_launcher", "validate_train_config",
]  # fmt: skip
