"""Circuit IR: nodes, the operator-definition API, the Circuit builder, call plans and drawing."""

from harness.circuit.builder import Circuit, Trigger
from harness.circuit.node import Node, Observed, observe
from harness.circuit.operator import Operator, Param, StepContext
from harness.circuit.plan import CircuitPlan, TimerPlan, TriggerPlan

__all__ = [
    "Circuit",
    "CircuitPlan",
    "Node",
    "Observed",
    "Operator",
    "Param",
    "StepContext",
    "TimerPlan",
    "Trigger",
    "TriggerPlan",
    "observe",
]
