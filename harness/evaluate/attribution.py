"""Per-signal attribution by dropping one signal: a signal is a value multiplied by a learnable weight (the
terms of `hs.lib.linear` heads: `w_i * x_i`); dropping it sets its weight to 0 in the fitted model, and the
change of the test IC and R² says how much the prediction owes it. No refit: what is measured is the fitted
circuit with that term removed (the bias keeps its fitted value)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from harness.evaluate.metrics import ic, r2
from harness.fit.model import CircuitModel
from harness.fit.trace import Trace


@dataclass(frozen=True)
class Signal:
    """A weighted term of the traced target: the weight's parameter name and the signal's node name."""

    weight: str
    name: str


def weighted_signals(trace: Trace) -> list[Signal]:
    """The products `parameter * value` of the trace whose parameter is learnable and used in no other product,
    in the order the parameters were declared (a head's terms)."""
    nodes = trace.nodes
    found: list[Signal] = []
    uses: dict[str, int] = {}
    for n in nodes:
        if n.kind != "op" or n.op.kind != "mul" or len(n.inputs) != 2:
            continue
        a, b = (nodes[i] for i in n.inputs)
        param, other = (a, b) if a.kind == "param" else (b, a) if b.kind == "param" else (None, None)
        if param is None or other is None or other.scalar:
            continue
        name = param.node.name
        uses[name] = uses.get(name, 0) + 1
        source = nodes[other.source] if other.kind == "import" and other.source is not None else other
        found.append(Signal(weight=name, name=source.node.name))
    order = {name: i for i, name in enumerate(trace.params)}
    return sorted((s for s in found if uses[s.weight] == 1 and s.weight in order), key=lambda s: order[s.weight])


def drop_one(model: CircuitModel, y: np.ndarray, rows: np.ndarray) -> list[dict[str, float | str]]:
    """For each weighted signal: its weight, and the test IC and R² with it dropped and their change (drop -
    full, so a useful signal has a negative change), over the rows `rows` (positions into `y`)."""
    sel = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))
    with torch.no_grad():
        full = model(sel).numpy()
    base_ic, base_r2 = ic(full, y[rows]), r2(full, y[rows])
    weights = model.param_values()
    out: list[dict[str, float | str]] = []
    for s in weighted_signals(model.trace):
        with model.parameters_set({s.weight: 0.0}), torch.no_grad():
            dropped = model(sel).numpy()
        d_ic, d_r2 = ic(dropped, y[rows]), r2(dropped, y[rows])
        out.append(
            {
                "signal": s.name, "weight_name": s.weight, "weight": float(weights[s.weight]),
                "ic_dropped": d_ic, "r2_dropped": d_r2,
                "d_ic": d_ic - base_ic if math.isfinite(d_ic) else math.nan, "d_r2": d_r2 - base_r2,
            }
        )  # fmt: skip
    return out
