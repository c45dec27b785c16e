"""What a circuit's state remembers of the past, and so how long a shard must warm up before its own range.

Each operator declares its memory (`Operator.memory_kind`, kinds in `harness.circuit.operator.MEMORY_KINDS`):
decays forget geometrically (the weight of the state before a warm-up of W seconds is at most 2^(-W/h) for
the slowest half-life h), timers remember at most their window, the order book is rebuilt whole by a snapshot
message, inputs and `delta` keep their last values (refreshed by the next events), and counts or tick
ordinals remember everything (a shard cannot reproduce them: sharding is refused unless overridden).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.circuit.node import Node

if TYPE_CHECKING:
    from harness.backends.interface import Kernel

DEFAULT_HALFLIVES = 96  # warm-up of the slowest decay: its past weighs < 2^-96 (far below a double's rounding step)
MIN_WARMUP_S = 60.0  # at least this much, so inputs and last values are refreshed before a shard's own range


@dataclass(frozen=True)
class Memory:
    """The memories of one circuit's stateful nodes (by node name), as a sharded replay needs them."""

    decays: dict[str, float] = field(default_factory=dict)  # half-life in seconds (current parameter values)
    windows: dict[str, float] = field(default_factory=dict)  # seconds
    snapshots: tuple[tuple[str, str], ...] = ()  # (trigger, snapshot input) of each order book
    last: tuple[str, ...] = ()  # nodes that keep their last values
    unbounded: tuple[str, ...] = ()  # nodes that remember everything (`count`, tick ordinals, crossed counts)

    @property
    def bounded(self) -> bool:
        """True when a long enough warm-up reproduces the state exactly (no decay, nothing unbounded)."""
        return not self.decays and not self.unbounded

    def warmup_s(self, halflives: int = DEFAULT_HALFLIVES, minimum: float = MIN_WARMUP_S) -> float:
        """The default warm-up: `halflives` half-lives of the slowest decay, the longest window, at least
        `minimum` seconds (a book's warm-up also reaches back to its last snapshot: `harness.replay.shards`)."""
        slowest = max(self.decays.values(), default=0.0)
        return max(minimum, halflives * slowest, max(self.windows.values(), default=0.0))

    def residual(self, warmup_s: float) -> float:
        """The largest weight the state before the warm-up keeps in a decay at the shard's start: 2^(-W/h) for
        the slowest half-life h (0 without decays). A decayed value differs from the serial one by at most this
        times the difference of their starting points."""
        if not self.decays:
            return 0.0
        return math.pow(2.0, -warmup_s / max(self.decays.values()))

    def describe(self) -> str:
        """The memories in words (for errors and the run's notes)."""
        parts = [f"decay {n} (half-life {h:g} s)" for n, h in sorted(self.decays.items())]
        parts += [f"window {n} ({s:g} s)" for n, s in sorted(self.windows.items())]
        parts += [f"order book (snapshot input {col!r} of trigger {trig!r})" for trig, col in self.snapshots]
        parts += [f"unbounded {n}" for n in self.unbounded]
        return ", ".join(parts) or "no state beyond the last values"


def memory(kernel: Kernel) -> Memory:
    """The memory of every stateful node of `kernel`'s circuit (half-lives at the kernel's current parameters)."""
    decays: dict[str, float] = {}
    windows: dict[str, float] = {}
    snapshots: list[tuple[str, str]] = []
    last: list[str] = []
    unbounded: list[str] = []
    params = kernel.params
    shown = {node: name for name, node in kernel.plan.outputs.items()}  # an output is named by its output name
    for node in kernel.plan.order:
        kind = node.op.memory_kind()
        if kind == "decay" or kind == "window":
            value = node.op.params[node.op.memory_param]
            seconds = float(params[value.name]) if isinstance(value, Node) else float(value)
            (decays if kind == "decay" else windows)[node.name] = seconds
        elif kind == "snapshot" and node.kind == "book":
            snapshots.append(_snapshot_input(kernel, node))
        elif kind == "last":
            last.append(node.name)
        elif kind == "unbounded":
            unbounded.append(f"{shown.get(node, node.name)} ({node.op.describe()})")
    return Memory(decays, windows, tuple(snapshots), tuple(last), tuple(unbounded))


def _snapshot_input(kernel: Kernel, book: Node) -> tuple[str, str]:
    """(trigger, input name) of a book's snapshot flag: the events where a snapshot message can arrive."""
    flag = book.inputs[3]
    for trigger, names in kernel.trigger_inputs.items():
        if flag.name in names:
            return trigger, flag.name
    return "", flag.name
