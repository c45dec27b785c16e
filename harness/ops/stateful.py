"""Stateful operators: time-decayed averages and sums, differences, counters.

Times are int64 nanoseconds; durations (half-lives) are float seconds. An invalid sample (input invalid
in the event) is skipped: the state and the output stay as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.circuit.builder import Trigger
from harness.circuit.node import Node
from harness.circuit.operator import Operator, Param, StepContext, positive
from harness.ops import numeric as nm

HALFLIFE = Param(rule="> 0 and finite (seconds)", check=positive, tunable=True, typical=(0.05, 5.0))


class Ewma(Operator):
    """Time-decayed EWMA: v = w*v + (1-w)*x with w = 2^(-dt/halflife), dt = seconds since the last sample;
    the first valid sample initialises v (invalid until then).

    A sample at the same timestamp as the previous one has dt = 0, so w = 1 and it does not move the average.
    """

    kind, arity, stateful = "ewma", 1, True
    params_spec = {"halflife": HALFLIFE}
    memory, memory_param = "decay", "halflife"
    differentiable = True

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        return {"v": None, "t": 0}, None

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        x = xs[0]
        if x is not None:
            if state["v"] is None:
                state["v"] = x
            else:
                w = nm.decay_weight(ctx.t - state["t"], p["halflife"])
                state["v"] = w * state["v"] + (1.0 - w) * x
            state["t"] = ctx.t
        return state["v"]

    def torch_coeffs(self, w: Any, x: Any) -> tuple[Any, Any]:
        return w, (1.0 - w) * x  # v = w*v + (1-w)*x, in the kernel's operation order

    scan_form = "ewma"  # fitting runs this recurrence as one fused native pass (harness.fit.scan.decay_scan)

    cpp_state = "hs::Ewma"
    vector_weight = "halflife"  # vector_math kernels precompute the decay weight 2^(-dt/halflife) per block

    def cpp_step_weighted(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], w: str) -> str:
        return f"{s}.step_w({t}, {xs[0]}, {oks[0]}, {w});"

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        return f"{s}.step({t}, {xs[0]}, {oks[0]}, {p['halflife']});"


class DecaySum(Operator):
    """Decayed running sum: s = s*2^(-dt/halflife) + x at each valid sample of x; the first sample sets s = x.

    Between samples the stored value is not decayed further (it is the sum as of the last sample).
    """

    kind, arity, stateful = "decay_sum", 1, True
    params_spec = {"halflife": HALFLIFE}
    memory, memory_param = "decay", "halflife"
    differentiable = True

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        return {"v": None, "t": 0}, None

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        x = xs[0]
        if x is not None:
            if state["v"] is None:
                state["v"] = x
            else:
                state["v"] = state["v"] * nm.decay_weight(ctx.t - state["t"], p["halflife"]) + x
            state["t"] = ctx.t
        return state["v"]

    def torch_coeffs(self, w: Any, x: Any) -> tuple[Any, Any]:
        return w, x  # s = s*w + x

    scan_form = "sum"  # fitting runs this recurrence as one fused native pass (harness.fit.scan.decay_scan)

    cpp_state = "hs::DecaySum"
    vector_weight = "halflife"  # vector_math kernels precompute the decay weight 2^(-dt/halflife) per block

    def cpp_step_weighted(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], w: str) -> str:
        return f"{s}.step_w({t}, {xs[0]}, {oks[0]}, {w});"

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        return f"{s}.step({t}, {xs[0]}, {oks[0]}, {p['halflife']});"


class Delta(Operator):
    """x minus its previous valid value; invalid until x has had two valid samples."""

    kind, arity, stateful = "delta", 1, True
    memory = "last"  # its input's previous valid value

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        return {"prev": None, "v": None}, None

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        x = xs[0]
        if x is not None:
            if state["prev"] is not None:
                state["v"] = x - state["prev"]
            state["prev"] = x
        return state["v"]

    cpp_state = "hs::Delta"

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        return f"{s}.step({xs[0]}, {oks[0]});"


class Count(Operator):
    """Number of events in which x was valid (0.0 before the first; always valid); of a Trigger: its events."""

    kind, arity, stateful = "count", 1, True
    memory = "unbounded"  # counts from the start

    @classmethod
    def build(cls, inputs: Sequence[Any], params: Mapping[str, Any]) -> Node:
        """`hs.ops.count(trigger)` counts the trigger's events (its event node), `hs.ops.count(x)` x's updates."""
        return super().build([x.event if isinstance(x, Trigger) else x for x in inputs], params)

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        return {"n": 0.0}, 0.0

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        if xs[0] is not None:
            state["n"] += 1.0
        return state["n"]

    cpp_state = "hs::Count"

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        return f"{s}.step({oks[0]});"
