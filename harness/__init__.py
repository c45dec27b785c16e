"""harness: an experiment harness for event-driven signal circuits (see README.md and ARCHITECTURE.md)."""

import importlib
import importlib.util
from typing import Any

from harness import ops  # eager: cheap (no numpy), and defining the operators binds their syntax (a + b)
from harness.circuit import Circuit, Node, Trigger, observe
from harness.errors import CircuitError, DataError, EventsError, FitError, HarnessError, ParamError

__version__ = "0.1.0"

__all__ = [
    "Circuit",
    "CircuitError",
    "DataError",
    "EventsError",
    "FitError",
    "HarnessError",
    "Kernel",
    "Node",
    "ParamError",
    "Trigger",
    "compile",
    "data",
    "fit",
    "lib",
    "observe",
    "ops",
    "replay",
    "streams",
]


_LAZY = {"Kernel": "harness.backends", "compile": "harness.backends"}  # names imported on first use


def __getattr__(name: str) -> Any:
    """`hs.compile`, `hs.Kernel` and the sub-packages (`hs.streams`, `hs.replay`, `hs.lib`, `hs.ops`, `hs.data`,
    `hs.fit`, ...) are imported on first use, so that `import harness` (`harness --help`, `harness runs ...`)
    loads neither numpy, pyarrow, pandas nor torch."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"harness.{name}") is not None:
        return importlib.import_module(f"harness.{name}")
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, those imported on first use included (for completion and `dir(hs)`)."""
    return sorted(set(globals()) | set(__all__))
