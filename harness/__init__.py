"""harness: an experiment harness for event-driven signal circuits (see README.md and ARCHITECTURE.md)."""

import importlib
from typing import Any

from harness import lib, ops, replay, streams
from harness.backends import Kernel, compile
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


def __getattr__(name: str) -> Any:
    """`hs.fit` (it brings in torch, which the rest of harness does not need) and `hs.data` (the market-data
    catalog) are imported on first use."""
    if name in ("fit", "data"):
        return importlib.import_module(f"harness.{name}")
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
