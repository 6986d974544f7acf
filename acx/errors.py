"""The errors acx reports to the user as one line, with an exit code; anything else is a bug and keeps
its traceback (exit 1)."""

from __future__ import annotations


class AcxError(Exception):
    """A problem with the user's input or machine, not with acx: one line on stderr, ``exit_code``."""

    exit_code = 2


class ConfigError(AcxError):
    """A config value, command-line argument or env id outside what acx can run (exit 2)."""


class CheckpointError(AcxError):
    """A path that is not a loadable acx checkpoint, or one that does not fit the run (exit 2)."""


class NonFiniteError(AcxError):
    """A loss or gradient became NaN or infinite; no optimizer step was taken with it (exit 3)."""

    exit_code = 3


class OutputWriteError(AcxError):
    """The run's outputs could not be written (a full disk, a lost mount) mid-run (exit 4)."""

    exit_code = 4
