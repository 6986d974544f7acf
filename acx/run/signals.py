"""Graceful stops: SIGINT/SIGTERM finish the current update, then the loop saves and exits;
a second Ctrl-C exits at once.

On SLURM through submitit (``hydra/launcher=submitit_slurm``) the job's pre-emption signal (USR2, which
SLURM sends ``signal_delay_s`` before a time limit) stops the loop the same way; after the checkpoint is
saved and the loggers are closed, ``Interrupted.hand_over`` gives the signal to submitit's own handler,
which resubmits the job (``scontrol requeue``). A requeued job runs the same command again and
``requeued_checkpoint`` makes it continue its folder's checkpoint."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType


def preempt_signal() -> signal.Signals | None:
    """Inside a submitit job whose handler for it is installed: the signal SLURM sends before it stops
    the job (USR2, or what SUBMITIT_PREEMPT_SIGNAL names); else None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    sig = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG"), None)
    return sig if sig is not None and callable(signal.getsignal(sig)) else None


def requeued_checkpoint(out_dir: Path) -> Path | None:
    """The run folder to continue when this process is a SLURM job that was requeued (pre-empted,
    ``scontrol requeue``, or resubmitted by submitit after its time limit's signal) and its earlier
    attempt left checkpoints there; None otherwise. SLURM counts the requeues in SLURM_RESTART_COUNT."""
    restarts = os.environ.get("SLURM_RESTART_COUNT", "")
    if restarts.isdigit() and int(restarts) > 0 and any((out_dir / "checkpoints").glob("*.pt")):
        return out_dir
    return None


class Interrupted(Exception):
    """Training stopped by a signal after saving; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int, checkpoint: str):
        self.signum, self.checkpoint = signum, checkpoint
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint: {checkpoint}")

    def hand_over(self) -> None:
        """For submitit's pre-emption signal: call submitit's handler now that the checkpoint is saved
        (it requeues the job and exits, or raises if the job may not be requeued again). Else nothing."""
        if self.signum == preempt_signal():
            print(f"acx: {signal.Signals(self.signum).name}: handing over to submitit to requeue the job", flush=True)
            signal.getsignal(self.signum)(self.signum, None)


class StopSignals:
    """Context manager: remembers the first SIGINT/SIGTERM (or submitit's pre-emption signal) in
    ``received``; a second Ctrl-C exits now. Other repeats are ignored: SLURM may deliver a signal
    to a job's processes more than once (from slurmd and from srun), and SIGTERM follows USR2."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            if signum == signal.SIGINT:  # the second Ctrl-C: no more waiting
                os._exit(128 + signum)
            return
        self.received = signum

    def __enter__(self) -> StopSignals:
        preempt = preempt_signal()
        for sig in (*self.SIGNALS, *([preempt] if preempt is not None else [])):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some launchers): keep the default behaviour
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
