"""Operators driven by timers: callbacks that fire at a future time, before the next event at or after it.

Due timers fire in time order; timers due at the same time fire in the circuit's plan order. Each timer
node has one slot: scheduling again replaces the pending time. Durations are float seconds, converted to
integer nanoseconds as floor(seconds * 1e9 + 0.5).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from harness.circuit.operator import Operator, Param, StepContext
from harness.names import cpp_int
from harness.ops.numeric import twin

DURATION = Param(
    rule=">= 1 ns and finite (seconds)", check=lambda s: math.isfinite(s) and s * 1e9 >= 0.5, typical=(0.001, 3.0)
)


@twin
def seconds_to_ns(seconds: float) -> int:
    """Duration in seconds -> integer nanoseconds, rounded half up (the same formula as the C++ runtime)."""
    return math.floor(seconds * 1e9 + 0.5)


class Timeout(Operator):
    """Edge output 1.0 when `seconds` have passed since x's last valid update with no newer update.

    Each valid update of x restarts the countdown; the output is invalid in every other event.
    """

    kind, arity, stateful, timer, edge = "timeout", 1, True, True, True
    params_spec = {"seconds": DURATION}
    memory, memory_param = "window", "seconds"  # a pending timer at most `seconds` ahead

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        return {}, None

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        if xs[0] is not None:
            ctx.schedule(ctx.t + seconds_to_ns(p["seconds"]))
        return None

    def ref_timer(self, state: Any, ctx: StepContext, p: Mapping[str, float]) -> float | None:
        return 1.0

    cpp_state = "hs::Timeout"

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        return f"{s}.step({t}, {oks[0]}, {cpp_int(seconds_to_ns(self.params['seconds']))}, {due});"

    def cpp_timer(self, s: str, t: str, p: Mapping[str, str], due: str) -> str:
        return f"{s}.fire();"


class Every(Operator):
    """Edge output on a time grid: ticks at every multiple of `period` after x's first valid update.

    The value at a tick is the tick's ordinal (1.0, 2.0, ...); invalid in every other event.
    """

    kind, arity, stateful, timer, edge = "every", 1, True, True, True
    memory = "unbounded"  # its value is the tick's ordinal since the first update
    params_spec = {"period": dataclasses.replace(DURATION, typical=(0.25, 3.0))}  # a tick per period: not too many

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        return {"started": False, "n": 0.0}, None

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        if xs[0] is not None and not state["started"]:
            state["started"] = True
            period = seconds_to_ns(p["period"])
            ctx.schedule((ctx.t // period + 1) * period)
        return None

    def ref_timer(self, state: Any, ctx: StepContext, p: Mapping[str, float]) -> float | None:
        ctx.schedule(ctx.t + seconds_to_ns(p["period"]))
        state["n"] += 1.0
        return state["n"]

    cpp_state = "hs::Every"

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        return f"{s}.step({t}, {oks[0]}, {cpp_int(seconds_to_ns(self.params['period']))}, {due});"

    def cpp_timer(self, s: str, t: str, p: Mapping[str, str], due: str) -> str:
        return f"{s}.fire({t}, {cpp_int(seconds_to_ns(self.params['period']))}, {due});"


class Lag(Operator):
    """x as of `seconds` ago: the last valid sample of x at or before t - seconds (invalid until one is that old).

    Each sample waits in a queue until it is `seconds` old; a timer then makes it the value, so the value is
    exact at every event whatever triggers it (the other market's return over a horizon reads it).
    """

    kind, arity, stateful, timer = "lag", 1, True, True
    params_spec = {"seconds": DURATION}
    memory, memory_param = "window", "seconds"  # the samples of the last `seconds`, then the value they leave
    cpp_state = "hs::Lag"
    cpp_includes = ("harness/lag.hpp",)

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        return {"queue": deque(), "v": None}, None

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        if xs[0] is not None:
            if not state["queue"]:
                ctx.schedule(ctx.t + seconds_to_ns(p["seconds"]))
            state["queue"].append((ctx.t, xs[0]))
        return state["v"]

    def ref_timer(self, state: Any, ctx: StepContext, p: Mapping[str, float]) -> float | None:
        dur, queue = seconds_to_ns(p["seconds"]), state["queue"]
        while queue and queue[0][0] + dur <= ctx.t:
            state["v"] = queue.popleft()[1]
        if queue:
            ctx.schedule(queue[0][0] + dur)
        return state["v"]

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        return f"{s}.step({t}, {xs[0]}, {oks[0]}, {cpp_int(seconds_to_ns(self.params['seconds']))}, {due});"

    def cpp_timer(self, s: str, t: str, p: Mapping[str, str], due: str) -> str:
        return f"{s}.fire({t}, {cpp_int(seconds_to_ns(self.params['seconds']))}, {due});"
