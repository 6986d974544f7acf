"""Graceful stops: SIGINT/SIGTERM finish the current update, then the loop saves and exits;
a second Ctrl-C exits at once."""

from __future__ import annotations

import os
import signal
from types import FrameType


class Interrupted(Exception):
    """Training stopped by a signal after saving; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int, checkpoint: str):
        self.signum, self.checkpoint = signum, checkpoint
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint: {checkpoint}")


class StopSignals:
    """Context manager: remembers the first SIGINT/SIGTERM in ``received``; a second one exits now."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # the second one: no more waiting
            os._exit(128 + signum)
        self.received = signum

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some launchers): keep the default behaviour
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
