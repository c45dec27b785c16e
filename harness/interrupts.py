"""Interrupts that wait for a write to finish: SIGTERM and SIGHUP become `Interrupted` (a KeyboardInterrupt) in the
main thread (harness.pipeline.signals installs the handler), but never in the middle of a tracking-store write: a
signal that arrives inside `deferred()` is raised when the outermost such block ends. An interrupt raised inside an
sqlite transaction left it open, holding the store's write lock, and the run could then never be ended.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_depth = 0
_pending: int | None = None
_received: int | None = None  # the last signal turned into an interrupt (see `check`)


class Interrupted(KeyboardInterrupt):
    """The process received SIGINT, SIGTERM or SIGHUP: runs in progress end KILLED."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    def __reduce__(self) -> tuple[type, tuple[int]]:  # pickled by process-pool launchers
        return (Interrupted, (self.signum,))


def interrupt(signum: int) -> None:
    """What the signal handler does: raise `Interrupted` now, or after the write in progress."""
    global _pending, _received
    _received = signum
    if _depth > 0:
        _pending = signum
        return
    raise Interrupted(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """A block no SIGTERM/SIGHUP interrupts (a store write); one that arrived meanwhile is raised at its end."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            raise Interrupted(signum)


def check() -> None:
    """Raise `Interrupted` again at a safe point (a stage, an epoch) when a signal was received: an exception raised
    while Python runs a garbage-collection callback is printed and swallowed, so the first raise can be lost."""
    if _received is not None:
        raise Interrupted(_received)


def reset() -> None:
    """Forget received signals (a new run starts, or the interrupt was handled)."""
    global _pending, _received
    _pending = _received = None


def quiet_unraisable(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    """An unraisable hook that drops `Interrupted` (raised inside a garbage-collection callback, where Python
    prints and swallows it; `check` raises it again) and hands everything else to `previous`."""

    def hook(info: Any) -> None:
        if not isinstance(info.exc_value, Interrupted):
            previous(info)

    return hook
