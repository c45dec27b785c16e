"""The Python reference interpreter: runs a circuit's call plans event by event. It is the oracle.

Clarity beats speed here: every node's value lives in one list (None = invalid), stateful operators
keep their state in plain dicts, and timers sit in a dict scanned for the earliest (time, plan order).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from harness.backends.interface import Kernel
from harness.circuit.node import Node
from harness.circuit.operator import OperatorError, StepContext
from harness.errors import EventsError
from harness.events import check_rows

INT64_MAX = 2**63 - 1  # the last event time; a timer due at or after it never fires (as in the C++ kernel)

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.events import EventBatch


class ReferenceKernel(Kernel):
    """A kernel that interprets the call plans in Python (`hs.compile(c, backend="python")`)."""

    backend = "python"

    def __init__(self, circuit: Circuit) -> None:
        super().__init__(circuit)
        plan = self.plan
        self._pos: dict[Node, int] = {n: i for i, n in enumerate(plan.order)}
        self._trigger_plans = [plan.triggers[name] for name in self.triggers]
        self._timer_plans = {self._pos[tp.node]: tp for tp in plan.timers}
        self._timer_index = {self._pos[tp.node]: k for k, tp in enumerate(plan.timers)}
        self._edge = [self._pos[n] for n in plan.edge]
        self._out_pos = [self._pos[plan.outputs[name]] for name in self.outputs]
        self._reset()

    # ----- state -------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._vals: list[float | None] = [None] * len(self.plan.order)
        self._states: dict[int, Any] = {}
        self._timers: dict[int, int] = {}  # plan position -> due time
        self._p = {}
        for i, node in enumerate(self.plan.order):
            if node.kind == "const":
                self._vals[i] = node.op.params["value"]
            elif node.op.stateful:
                self._states[i], self._vals[i] = node.op.ref_init(self._node_params(node))
        self._apply_params()

    def _apply_params(self) -> None:
        self._p = {}
        for i, node in enumerate(self.plan.order):
            if node.kind == "param":
                self._vals[i] = self._params[node.name]
        for node in self.plan.static:
            self._step(node, self._last_t or 0)

    def _node_params(self, node: Node) -> dict[str, float]:
        cached = self._p.get(node)
        if cached is None:
            cached = self._resolve(node.op.params, self._params)
            self._p[node] = cached
        return cached

    # ----- running -----------------------------------------------------------------------------------
    def _step(self, node: Node, t: int) -> None:
        i = self._pos[node]
        if node.op.reads_state:
            xs = [self._states[self._pos[m]] for m in node.inputs]
        else:
            xs = [self._vals[self._pos[m]] for m in node.inputs]
        p = self._node_params(node)
        try:
            if node.op.stateful:
                self._vals[i] = node.op.ref_step(self._states[i], self._context(i, t), p, xs)
            else:
                self._vals[i] = node.op.ref(p, xs)
        except OperatorError as e:
            raise _NodeFailed(self._operator_failure(i, e.code, e.a, e.b)) from None

    def _context(self, i: int, t: int) -> StepContext:
        def schedule(at: int | None) -> None:
            if at is None or at >= INT64_MAX:  # no int64 event time comes after: the timer can never fire
                self._timers.pop(i, None)
            else:
                self._timers[i] = at

        return StepContext(t, schedule)

    def _begin_event(self) -> None:
        for i in self._edge:
            self._vals[i] = None

    def _advance(self, t: int) -> None:
        saved = self._snapshot()
        try:
            self._fire_due(t)
        except _NodeFailed as failed:
            self._restore(saved)
            raise EventsError(f"advance to t={t}: {failed.describe()}") from None

    def _fire_due(self, t: int, record: Callable[[int, int], None] | None = None) -> None:
        """Fire every timer due at or before `t`, earliest first (ties: plan order); `record(at, source)`
        is called after each firing (source -(k+1) for timer k of the plan)."""
        while self._timers:
            i, at = min(self._timers.items(), key=lambda kv: (kv[1], kv[0]))
            if at > t:
                return
            del self._timers[i]
            self._begin_event()
            tp = self._timer_plans[i]
            node = tp.node
            self._vals[i] = node.op.ref_timer(self._states[i], self._context(i, at), self._node_params(node))
            for step in tp.steps:
                self._step(step, at)
            if record is not None:
                record(at, -(self._timer_index[i] + 1))

    def _call(self, trigger: int, t: int, values: list[Any]) -> None:
        saved = self._snapshot()
        try:
            self._event(trigger, t, values)
        except _NodeFailed as failed:
            self._restore(saved)
            raise EventsError(f"event {self.triggers[trigger]!r} at t={t}: {failed.describe()}") from None

    def _snapshot(self) -> Any:
        return copy.deepcopy((self._vals, self._states, self._timers))

    def _restore(self, saved: Any) -> None:
        self._vals, self._states, self._timers = saved

    def _event(self, trigger: int, t: int, values: list[Any], record: Callable[[int, int], None] | None = None) -> None:
        self._fire_due(t, record)
        self._begin_event()
        tp = self._trigger_plans[trigger]
        it = iter(values)
        for node in tp.inputs:
            self._vals[self._pos[node]] = 1.0 if node.kind == "event" else next(it)
        for node in tp.steps:
            self._step(node, t)

    def _value(self, output: int) -> float | None:
        return self._vals[self._out_pos[output]]

    def _run_batch(self, eb: EventBatch, last_t: int | None) -> list[pa.Array]:
        _, _, arrays = self._run(eb, last_t, timer_rows=False)
        return arrays

    def _run_batch_rows(self, eb: EventBatch, last_t: int | None) -> tuple[np.ndarray, np.ndarray, list[pa.Array]]:
        return self._run(eb, last_t, timer_rows=True)

    def _run(
        self, eb: EventBatch, last_t: int | None, timer_rows: bool
    ) -> tuple[np.ndarray, np.ndarray, list[pa.Array]]:
        """Run a batch; rows after every event (and, with `timer_rows`, after every timer firing)."""
        codes_arr = check_rows(eb, self.events_schema, last_t)
        n = len(eb)
        columns = {
            name: _column_values(col, offsets)
            for name, col, offsets in zip(self.inputs, eb.values, eb.offsets, strict=True)
            if col is not None
        }
        times = eb.t.tolist()
        codes = codes_arr.tolist()
        row_t: list[int] = []
        row_source: list[int] = []
        row_values: list[list[float | None]] = []

        def record(at: int, source: int) -> None:
            row_t.append(at)
            row_source.append(source)
            row_values.append([self._vals[i] for i in self._out_pos])

        on_timer = record if timer_rows else None
        saved = self._snapshot()
        for r in range(n):
            code = codes[r]
            values = [columns[name][r] for name in self.trigger_inputs[self.triggers[code]]]
            try:
                self._event(code, times[r], values, on_timer)
            except _NodeFailed as failed:
                self._restore(saved)
                raise EventsError(
                    f"events: row {eb.offset + r} (t={times[r]}, trigger {self.triggers[code]!r}): {failed.describe()}"
                ) from None
            record(times[r], code)
        arrays = [
            pa.array([row[j] for row in row_values], type=pa.float64(), from_pandas=False)
            for j in range(len(self.outputs))
        ]
        return np.array(row_t, dtype=np.int64), np.array(row_source, dtype=np.int32), arrays


def _column_values(values: np.ndarray, offsets: np.ndarray | None) -> list[Any]:
    """Python values of an input column: floats, or lists of floats for a list column."""
    if offsets is None:
        return values.tolist()
    flat = values.tolist()
    bounds = offsets.tolist()
    return [flat[bounds[r] : bounds[r + 1]] for r in range(len(bounds) - 1)]


class _NodeFailed(Exception):
    """An OperatorError raised while running a node (turned into an EventsError with the row)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def describe(self) -> str:
        return self.text
