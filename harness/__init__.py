"""harness: an experiment harness for event-driven signal circuits (see README.md and DESIGN notes)."""

from harness import lib, ops, replay, streams
from harness.circuit import Circuit, Node, Trigger, observe
from harness.errors import CircuitError, DataError, EventsError, HarnessError, ParamError
from harness.kernel import Kernel, compile

__version__ = "0.1.0"

__all__ = [
    "Circuit",
    "CircuitError",
    "DataError",
    "EventsError",
    "HarnessError",
    "Kernel",
    "Node",
    "ParamError",
    "Trigger",
    "compile",
    "lib",
    "observe",
    "ops",
    "replay",
    "streams",
]
