"""The kernel interface every backend shares (call, advance, value, params, set_params, replay, reset).

The base class owns everything that is the same across backends: argument checks, parameter validation,
the events-table contract (checked through `harness.events`) and the result table; a backend (reference,
native) implements how events actually run. `hs.compile` (harness.backends) picks the backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from harness.circuit.leaves import is_list_input
from harness.errors import CircuitError, EventsError, ParamError
from harness.events import EventBatch, EventSchema, iter_batches, prepare_batch

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.circuit.plan import CircuitPlan


class Kernel:
    """A compiled circuit: feed it events one at a time (`call`) or as a table (`replay`)."""

    backend: str = ""
    # what a run logs as the kernel's identity: its cache key and generated source (a backend without a compiled
    # artifact, the reference interpreter, is "python" with no source)
    kernel_hash: str = "python"
    source: str | None = None

    def __init__(self, circuit: Circuit) -> None:
        plan = circuit.plan()
        self.name = circuit.name
        self.circuit = circuit  # what a sharded replay ships to its workers (with the kernel's cache key)
        self.plan: CircuitPlan = plan
        self.outputs: list[str] = list(plan.outputs)
        self.inputs: list[str] = [n.name for n in plan.order if n.kind == "input"]
        self.triggers: list[str] = list(plan.triggers)
        self.trigger_inputs: dict[str, tuple[str, ...]] = {
            name: tuple(n.name for n in tp.inputs if n.kind == "input") for name, tp in plan.triggers.items()
        }
        self.list_inputs = frozenset(n.name for n in plan.order if is_list_input(n))
        self.events_schema = EventSchema(self.triggers, self.trigger_inputs, self.inputs, self.list_inputs)
        self._params: dict[str, float] = {name: node.op.params["init"] for name, node in plan.parameters.items()}
        self._last_t: int | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} backend={self.backend} outputs={self.outputs}>"

    # ----- parameters --------------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, float]:
        """Current values of the learnable parameters (a copy)."""
        return dict(self._params)

    def set_params(self, values: Mapping[str, float]) -> None:
        """Set learnable parameters by name, without recompiling. All values are checked before any is set.

        Nodes that already hold values keep them until their next update; call `reset()` to start over.
        """
        if not isinstance(values, Mapping):
            raise ParamError(f"set_params takes a mapping of parameter name -> value, got {type(values).__name__}")
        new = dict(self._params)
        for name, value in values.items():
            if name not in self._params:
                known = ", ".join(self._params) or "none"
                raise ParamError(f"kernel {self.name!r} has no parameter {name!r} (parameters: {known})")
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise ParamError(f"parameter {name!r}: value must be a number, got {value!r}")
            value = float(value)
            node = self.plan.parameters[name]
            lo, hi = node.op.params["lower"], node.op.params["upper"]
            if not math.isfinite(value):
                raise ParamError(f"parameter {name!r}: value {value!r} must be finite")
            if not lo <= value <= hi:
                raise ParamError(f"parameter {name!r}: value {value!r} is outside [lower={lo!r}, upper={hi!r}]")
            new[name] = value
        for name in values:
            for node, pname in self.plan.param_users[name]:
                try:
                    node.op.check_value(pname, new[name], via=name)
                    node.op.check_params(self._resolve(node.op.params, new))
                except CircuitError as e:
                    raise ParamError(f"set_params: {e} (node {node.name})") from None
        self._params = new
        self._apply_params()

    @staticmethod
    def _resolve(params: Mapping[str, Any], values: Mapping[str, float]) -> dict[str, float]:
        from harness.circuit.node import Node

        return {k: (values[v.name] if isinstance(v, Node) else v) for k, v in params.items()}

    # ----- single events -----------------------------------------------------------------------------
    def call(self, trigger: str, t: int, **inputs: float) -> None:
        """Process one event of `trigger` at time `t` (int64 ns) that sets exactly the trigger's inputs."""
        if trigger not in self.trigger_inputs:
            raise EventsError(
                f"kernel {self.name!r}: unknown trigger {trigger!r} (triggers: {', '.join(self.triggers)})"
            )
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise EventsError(f"event {trigger!r}: t must be an integer time in nanoseconds, got {t!r}")
        t = int(t)
        expected = self.trigger_inputs[trigger]
        extra = sorted(set(inputs) - set(expected))
        if extra:
            raise EventsError(
                f"event {trigger!r}: {extra[0]!r} is not an input of this trigger "
                f"(it sets: {', '.join(expected) or 'nothing'})"
            )
        values = []
        for name in expected:
            if name not in inputs:
                raise EventsError(
                    f"event {trigger!r} at t={t}: missing input {name!r} (it sets: {', '.join(expected)})"
                )
            v = inputs[name]
            if name in self.list_inputs:
                values.append(_number_list(v, f"event {trigger!r} at t={t}: input {name!r}"))
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise EventsError(f"event {trigger!r} at t={t}: input {name!r} must be a number, got {v!r}")
            values.append(float(v))
        self._check_time(t, f"event {trigger!r}")
        self._call(self.triggers.index(trigger), t, values)
        self._last_t = t

    def advance(self, t: int) -> None:
        """Move the clock to `t` without an event: timers due at or before `t` fire."""
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise EventsError(f"advance: t must be an integer time in nanoseconds, got {t!r}")
        self._check_time(int(t), "advance")
        self._advance(int(t))
        self._last_t = int(t)

    def _check_time(self, t: int, what: str) -> None:
        if self._last_t is not None and t < self._last_t:
            raise EventsError(f"{what}: t={t} is before the previous event's t={self._last_t}; time must not decrease")

    def value(self, name: str) -> float | None:
        """Current value of output `name`, or None while it is invalid."""
        if name not in self.outputs:
            raise CircuitError(f"kernel {self.name!r} has no output {name!r} (outputs: {', '.join(self.outputs)})")
        return self._value(self.outputs.index(name))

    def values(self) -> dict[str, float | None]:
        """Current values of all outputs."""
        return {name: self._value(i) for i, name in enumerate(self.outputs)}

    # ----- tables ------------------------------------------------------------------------------------
    def replay(self, events: object, *, timer_rows: bool = False) -> pa.Table:
        """Run an events table (or record batches) through the kernel, continuing from its current state.

        Returns `t` plus one float64 column per output, one row per event, null where the output is invalid.
        With `timer_rows=True` a row is also recorded after every timer firing (at the firing time), and a
        `source` column says what produced each row: a trigger name, or `timer:<node name>`.
        """
        times: list[np.ndarray] = []
        sources: list[np.ndarray] = []
        cols: list[list[pa.Array]] = [[] for _ in self.outputs]
        offset = 0
        for batch in iter_batches(events):
            eb = prepare_batch(batch, self.events_schema, offset)
            if len(eb):
                if timer_rows:
                    t, source, arrays = self._run_batch_rows(eb, self._last_t)
                    sources.append(source)
                else:
                    t, arrays = eb.t, self._run_batch(eb, self._last_t)
                self._last_t = int(eb.t[-1])
                times.append(t)
                for j, arr in enumerate(arrays):
                    cols[j].append(arr)
            offset += len(eb)
        t = pa.chunked_array([pa.array(x, type=pa.int64()) for x in times], type=pa.int64())
        arrays = [pa.chunked_array(c, type=pa.float64()) for c in cols]
        if not timer_rows:
            return pa.Table.from_arrays([t, *arrays], names=["t", *self.outputs])
        return pa.Table.from_arrays([t, self._source_column(sources), *arrays], names=["t", "source", *self.outputs])

    def row_sources(self) -> list[str]:
        """The values of the `source` column of `replay(..., timer_rows=True)`: triggers, then timers."""
        return [*self.triggers, *(f"timer:{tp.node.name}" for tp in self.plan.timers)]

    def _source_column(self, sources: list[np.ndarray]) -> pa.ChunkedArray:
        """Row sources (trigger code, or -(k+1) for timer k) as a dictionary column of names."""
        names = pa.array(self.row_sources(), pa.string())
        n_triggers = len(self.triggers)
        chunks = [
            pa.DictionaryArray.from_arrays(pa.array(np.where(s >= 0, s, n_triggers - 1 - s).astype(np.int32)), names)
            for s in sources
        ]
        return pa.chunked_array(chunks, type=pa.dictionary(pa.int32(), pa.string()))

    def reset(self) -> None:
        """Forget all state and time (parameters keep their current values)."""
        self._last_t = None
        self._reset()

    def _operator_failure(self, position: int, code: int, a: float, b: float) -> str:
        """The words for an operator error raised by the node at plan `position` (same in every backend)."""
        node = self.plan.order[position]
        return f"{node.kind} node {node.name}: {node.op.error_message(code, a, b)}"

    # ----- backend hooks -----------------------------------------------------------------------------
    def _call(self, trigger: int, t: int, values: list[float]) -> None:
        raise NotImplementedError

    def _advance(self, t: int) -> None:
        raise NotImplementedError

    def _value(self, output: int) -> float | None:
        raise NotImplementedError

    def _run_batch(self, eb: EventBatch, last_t: int | None) -> list[pa.Array]:
        """Check the per-row rules and run the events (a failing batch changes no state); return one
        float64 array per output, null where invalid."""
        raise NotImplementedError

    def _run_batch_rows(self, eb: EventBatch, last_t: int | None) -> tuple[np.ndarray, np.ndarray, list[pa.Array]]:
        """As `_run_batch`, but also a row after every timer firing: (row times, row sources, outputs)."""
        raise NotImplementedError

    def _apply_params(self) -> None:
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError


def _number_list(value: object, what: str) -> list[float]:
    """A list input's value for `call`: a sequence of numbers, as floats."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise EventsError(f"{what} must be a list of numbers, got {value!r}")
    out = []
    for x in value:  # type: ignore[attr-defined]
        if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
            raise EventsError(f"{what} must be a list of numbers, got an element {x!r}")
        out.append(float(x))
    return out
