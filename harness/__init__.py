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
    "fit",
    "lib",
    "observe",
    "ops",
    "replay",
    "streams",
]


def __getattr__(name: str) -> Any:
    """`hs.fit` is imported on first use: it brings in torch, which the rest of harness does not need."""
    if name == "fit":
        return importlib.import_module("harness.fit")
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
