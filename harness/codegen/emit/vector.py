"""vector_math: what a kernel evaluates a block of rows at a time instead of bit for bit like the reference.

- "outputs" (and "all"): an output `y = f(x)` (f with a vector form: tanh, exp, log) that nothing else reads
  is not computed per event: replay records x, then applies f to the block of recorded values. Since y
  changes exactly when x does, that is the same value; `value()` applies the scalar f to the stored x.
  Outputs differ from the exact kernel by a few ulp (~1e-15 relative).
- "all" also: a decay (ewma, decay_sum) that runs only in trigger events, and whose input is valid whenever
  it runs, samples at exactly the rows of those triggers. A pre-pass computes its weights 2^(-dt/halflife)
  for the block with vector exp2; the row loop then runs the recurrence. The weights differ by a few ulp,
  which circuits that subtract an average from its own input (an ill-conditioned difference) amplify:
  ~1e-11 relative on the l1_pressure benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.circuit.builder import Circuit
from harness.circuit.node import Node
from harness.circuit.plan import CircuitPlan
from harness.errors import CircuitError

LEVELS = ("outputs", "all")


def vector_math_level(value: bool | str | None) -> str | None:
    """Normalise the `vector_math` option: False/None -> None, True -> "outputs", or "outputs"/"all"."""
    if value is None or value is False:
        return None
    if value is True:
        return "outputs"
    if value in LEVELS:
        return str(value)
    raise CircuitError(f"vector_math={value!r} is not one of False, True, {', '.join(map(repr, LEVELS))}")


@dataclass(frozen=True)
class VectorPlan:
    """The block-wise parts of a kernel: deferred outputs and decays with precomputed weights."""

    level: str | None = None
    deferred: dict[Node, Node] = field(default_factory=dict)  # output node -> its input; f runs per block
    pre: dict[Node, list[int]] = field(default_factory=dict)  # decay node -> trigger codes it runs in


def plan_vector_math(circuit: Circuit, plan: CircuitPlan, level: str | None) -> VectorPlan:
    """Choose what vector_math evaluates a block at a time (see the module docstring)."""
    if level is None:
        return VectorPlan()
    return VectorPlan(level, _deferred_outputs(circuit, plan), _decays(plan) if level == "all" else {})


def _deferred_outputs(circuit: Circuit, plan: CircuitPlan) -> dict[Node, Node]:
    """Outputs y = f(x) with a vector f that nothing else reads: output node -> x."""
    readers: dict[Node, int] = dict.fromkeys(plan.order, 0)
    for node in plan.order:
        for m in node.inputs:
            readers[m] += 1
    deferred = {}
    for y in plan.outputs.values():
        if (
            y.op.vector_cpp
            and readers[y] == 0
            and y not in circuit.stored
            and y not in plan.static
            and len(y.inputs) == 1
            and not y.observed[0]
            and y.inputs[0].kind not in ("const", "param")
        ):
            deferred[y] = y.inputs[0]
    return deferred


def _decays(plan: CircuitPlan) -> dict[Node, list[int]]:
    """Decays outside timers that run only in trigger events where their input is surely valid -> codes."""
    triggers = list(plan.triggers)
    in_timers = {n for tp in plan.timers for n in (tp.node, *tp.steps)}
    pre = {}
    for node in plan.order:
        if not node.op.vector_weight or node in in_timers or node.observed[0]:
            continue
        codes = [j for j, name in enumerate(triggers) if node in plan.triggers[name].steps]
        if codes and all(always_valid(plan, node.inputs[0], triggers[j]) for j in codes):
            pre[node] = codes
    return pre


def always_valid(plan: CircuitPlan, node: Node, trigger: str) -> bool:
    """Whether `node` is surely valid when it runs in events of `trigger` (a static, safe answer)."""
    tp = plan.triggers[trigger]
    if node.kind in ("const", "param"):
        return True
    if node.kind in ("input", "event"):
        return node in tp.inputs
    if node.kind == "count":
        return True
    if node.op.stateful or node.op.timer or node.kind == "select" or any(node.observed):
        return False
    return all(always_valid(plan, m, trigger) for m in node.inputs)
