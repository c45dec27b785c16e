"""Samplers: which replayed rows become training rows.

A sampler looks at one chunk of replayed rows (`t`, `source` = the trigger name or `timer:<node>` that
produced the row, and the outputs) and returns the positions to keep. Samplers that count (`every_n`) carry
their count from chunk to chunk through a state object made fresh for each recording, so the result does not
depend on how the events are chunked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.kernel import Kernel


class SamplerError(HarnessError, ValueError):
    """A sampler names an unknown trigger or output, or has a bad setting."""


class Sampler:
    """Base class: `check(kernel)` validates the sampler once, `select(rows, state)` picks rows of a chunk."""

    def check(self, kernel: Kernel) -> None:
        """Raise SamplerError when the sampler does not fit the kernel (unknown trigger or output)."""

    def new_state(self) -> dict[str, Any]:
        """Fresh per-recording state (counters carried across chunks)."""
        return {}

    def counted(self) -> str | None:
        """The trigger whose events this sampler counts from the start of the replay (None: it picks each row on
        its own, so a shard of the replay picks exactly what the whole replay picks there)."""
        return None

    def state_after(self, seen: int) -> dict[str, Any]:
        """The state after `seen` events of the `counted` trigger: where a shard that starts mid-stream begins."""
        state = self.new_state()
        if state:
            raise SamplerError(
                f"{type(self).__name__} carries state across chunks but does not say how to start mid-stream "
                "(define counted() and state_after()); a sharded replay cannot use it"
            )
        return state

    def select(self, rows: pa.Table, state: dict[str, Any]) -> np.ndarray:
        """Positions (int64, increasing) of the rows of this chunk to keep."""
        raise NotImplementedError


def _event_rows(rows: pa.Table, trigger: str | None) -> np.ndarray:
    """Mask of the rows produced by events (of `trigger`, when given), not by timers."""
    source = rows.column("source").cast(pa.string())
    if trigger is not None:
        return pc.equal(source, trigger).to_numpy(zero_copy_only=False)
    return pc.invert(pc.starts_with(source, "timer:")).to_numpy(zero_copy_only=False)


def _check_trigger(kernel: Kernel, trigger: str | None, who: str) -> None:
    if trigger is not None and trigger not in kernel.triggers:
        raise SamplerError(f"{who}: unknown trigger {trigger!r}; the circuit's triggers are {kernel.triggers}")


def _check_output(kernel: Kernel, output: str, who: str) -> None:
    if output not in kernel.outputs:
        raise SamplerError(f"{who}: unknown output {output!r}; the circuit's outputs are {kernel.outputs}")


@dataclass(frozen=True)
class EveryEvent(Sampler):
    """Every row produced by an event (of one trigger, when given)."""

    trigger: str | None = None

    def check(self, kernel: Kernel) -> None:
        _check_trigger(kernel, self.trigger, "every_event")

    def select(self, rows: pa.Table, state: dict[str, Any]) -> np.ndarray:
        return np.flatnonzero(_event_rows(rows, self.trigger))


@dataclass(frozen=True)
class EveryN(Sampler):
    """The n-th, 2n-th, ... event of `trigger` (counted over the whole replay, across chunks)."""

    n: int
    trigger: str = "trade"

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise SamplerError(f"every_n: n must be an integer >= 1, got {self.n!r}")

    def check(self, kernel: Kernel) -> None:
        _check_trigger(kernel, self.trigger, "every_n")

    def new_state(self) -> dict[str, Any]:
        return {"seen": 0}

    def counted(self) -> str | None:
        return self.trigger

    def state_after(self, seen: int) -> dict[str, Any]:
        return {"seen": int(seen)}

    def select(self, rows: pa.Table, state: dict[str, Any]) -> np.ndarray:
        hits = np.flatnonzero(_event_rows(rows, self.trigger))
        ordinal = state["seen"] + np.arange(1, len(hits) + 1)
        state["seen"] += len(hits)
        return hits[ordinal % self.n == 0]


@dataclass(frozen=True)
class When(Sampler):
    """Rows where `output` is valid and non-zero (a boolean output: comparisons give 0/1)."""

    output: str

    def check(self, kernel: Kernel) -> None:
        _check_output(kernel, self.output, "when")

    def select(self, rows: pa.Table, state: dict[str, Any]) -> np.ndarray:
        col = rows.column(self.output)
        keep = pc.fill_null(pc.not_equal(col, 0.0), False)
        return np.flatnonzero(keep.to_numpy(zero_copy_only=False))


@dataclass(frozen=True)
class TimeGrid(Sampler):
    """Rows at the ticks of an `hs.ops.every` output (a timer: one row per grid time, not per event)."""

    output: str

    def check(self, kernel: Kernel) -> None:
        _check_output(kernel, self.output, "time_grid")
        node = kernel.plan.outputs[self.output]
        if node.kind != "every":
            raise SamplerError(
                f"time_grid: output {self.output!r} is a {node.kind!r} node; record an hs.ops.every(x, period) "
                "node under that name"
            )

    def select(self, rows: pa.Table, state: dict[str, Any]) -> np.ndarray:
        source = rows.column("source").cast(pa.string())
        ticked = pc.and_(pc.starts_with(source, "timer:"), pc.is_valid(rows.column(self.output)))
        return np.flatnonzero(ticked.to_numpy(zero_copy_only=False))


def every_event(trigger: str | None = None) -> Sampler:
    """Sample every event (or every event of one trigger)."""
    return EveryEvent(trigger)


def every_n(n: int, trigger: str = "trade") -> Sampler:
    """Sample every n-th event of `trigger` (default: every n trades)."""
    return EveryN(n, trigger)


def when(output: str) -> Sampler:
    """Sample the rows where a boolean output is true (valid and non-zero)."""
    return When(output)


def time_grid(output: str) -> Sampler:
    """Sample on a time grid: the rows where the `hs.ops.every` node recorded as `output` ticks."""
    return TimeGrid(output)
