"""Differential test of the trace semantics: on random circuits and streams, the torch model at the initial
parameters gives the kernel's target at every training row (same validity, same values), folded or not."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from hypothesis import given
from hypothesis import strategies as st

import harness as hs
from harness.fit.data import collect
from harness.fit.model import CircuitModel

# the differentiable stateless operators without parameters, from the registry (a new one is tested by itself)
SMOOTH = [op for op in hs.ops.OPERATORS.values() if op.differentiable and not op.stateful and not op.params_spec]
UNARY = [op.kind for op in SMOOTH if op.arity == 1]
BINARY = [op.kind for op in SMOOTH if op.arity == 2]


@st.composite
def circuits(draw: st.DrawFn) -> hs.Circuit:
    c = hs.Circuit("prop_fit")
    x, y, z = c.input("x"), c.input("y"), c.input("z")
    c.trigger("a", x)
    c.trigger("b", y, z)
    params = [c.parameter(f"p{i}", init=draw(st.floats(0.2, 2.0)), lower=0.05) for i in range(3)]
    pool: list[hs.Node] = [x, y, z, hs.ops.delta(x), hs.ops.ewma(y, halflife=0.5)]  # leaves without parameters
    for _ in range(draw(st.integers(2, 9))):
        kind = draw(st.sampled_from(["binary", "unary", "param", "decay", "observe", "clamp"]))
        a = draw(st.sampled_from(pool))
        if kind == "binary":
            b = draw(st.sampled_from(pool + params))
            node = getattr(hs.ops, draw(st.sampled_from(BINARY)))(a, b)
        elif kind == "unary":
            node = getattr(hs.ops, draw(st.sampled_from(UNARY)))(a)
        elif kind == "param":
            node = a * draw(st.sampled_from(params))
        elif kind == "decay":
            op = draw(st.sampled_from([hs.ops.ewma, hs.ops.decay_sum]))
            halflife = draw(st.sampled_from([*params, 0.3]))
            node = op(a, halflife=halflife)
        elif kind == "clamp":
            node = hs.ops.clamp(a, -1.0, params[0])
        else:  # a node that reads another one without being triggered by it
            b = draw(st.sampled_from(pool))
            if b is a:
                continue
            node = a * hs.observe(b)
        pool.append(node)
    target = pool[-1] * params[1] + params[2]  # always depends on parameters
    c.output("pred", target)
    c.output("lab", hs.ops.ewma(x, halflife=1.0))
    return c


@st.composite
def streams(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(5, 60))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    dt = rng.choice([0, 1_000_000, 50_000_000, 700_000_000], n)
    t = np.cumsum(dt).astype(np.int64)
    trig = rng.choice(["a", "b"], n)
    is_a = trig == "a"
    cols = {"t": t, "trigger": trig}
    for name, on in (("x", is_a), ("y", ~is_a), ("z", ~is_a)):
        cols[name] = pa.array(np.where(on, rng.normal(size=n) * 2, 0.0), mask=~on)
    return pa.table(cols)


@given(circuits(), streams(), st.sampled_from([None, 2]))
def test_torch_model_equals_the_reference_kernel_at_every_row(
    c: hs.Circuit, events: pa.Table, every: int | None
) -> None:
    tr = hs.fit.trace(c, "pred")
    kernel = hs.compile(tr.recording_circuit(), backend="python")
    sampler = hs.replay.every_n(every, trigger="b") if every else None
    try:
        data = collect(tr, kernel, events, label=hs.fit.make_label(("lab", 0.0)), sampler=sampler)
    except hs.fit.FitDataError as e:
        assert "no rows to fit on" in str(e)
        return
    # the rows kept are exactly those where the kernel's target is valid
    replayed = hs.compile(c, backend="python").replay(events)
    valid = replayed.column("pred").is_valid().to_numpy(zero_copy_only=False)
    lab_ok = replayed.column("lab").is_valid().to_numpy(zero_copy_only=False)
    rows = data.domains[0].rows
    assert valid[rows].all()
    if sampler is None:
        assert len(rows) == int((valid & lab_ok).sum())
    for fold in (True, False):
        with torch.no_grad():
            pred = CircuitModel(data, fold=fold)().numpy()
        np.testing.assert_allclose(pred, data.kernel_target, rtol=1e-12, atol=1e-12, equal_nan=True)
