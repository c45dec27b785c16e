"""Signals that end a run: SIGTERM (what `timeout`, `kill` and Slurm send) and SIGHUP (a closed terminal) are
handled like Ctrl-C. The handler raises `Interrupted`, a KeyboardInterrupt, so the code that ends a run KILLED
on Ctrl-C ends it KILLED on these too; the command then prints one line and exits with 128 + the signal number.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from harness import interrupts
from harness.interrupts import Interrupted, interrupt

__all__ = ["HANDLED", "Interrupted", "as_interrupts", "exit_code", "signal_name"]

HANDLED = (signal.SIGTERM, signal.SIGHUP)


def signal_name(error: BaseException) -> str:
    """The signal behind a KeyboardInterrupt (SIGINT for a plain Ctrl-C)."""
    return signal.Signals(error.signum).name if isinstance(error, Interrupted) else "SIGINT"


def exit_code(error: BaseException) -> int:
    """The shell's exit status for a process ended by the signal behind `error` (130 for Ctrl-C, 143 SIGTERM)."""
    return 128 + (error.signum if isinstance(error, Interrupted) else int(signal.SIGINT))


def _raise(signum: int, frame: FrameType | None) -> None:
    interrupt(signum)  # now, or when the tracking-store write in progress ends


@contextmanager
def as_interrupts() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise `Interrupted` in the main thread; the previous handlers come
    back after it. A signal that is ignored (SIG_IGN, e.g. SIGHUP under `nohup`) stays ignored. Outside the main
    thread (a worker thread of a launcher) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for s in HANDLED:
        if signal.getsignal(s) not in (signal.SIG_IGN, None):  # `nohup` ignores SIGHUP: keep it ignored
            previous[s] = signal.signal(s, _raise)
    interrupts.reset()
    hook = sys.unraisablehook
    sys.unraisablehook = interrupts.quiet_unraisable(hook)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = hook
        interrupts.reset()
