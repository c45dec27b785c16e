"""vector_math kernels: output functions (and with "all", decay weights) evaluated a block of rows at a
time with glibc's libmvec. Not bit-exact, so they are checked against the exact kernel and the reference
within tolerances, with validity identical."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from conftest import PROFILE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import circuits, events_for

import harness as hs
from harness import examples, ops
from harness.codegen import compile_many
from harness.codegen.toolchain import vector_math_available

pytestmark = pytest.mark.skipif(vector_math_available() is not None, reason=str(vector_math_available()))


def close(a: float | None, b: float | None, rel: float, abs_: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rel * abs(a) + abs_


def assert_close_tables(exact: pa.Table, got: pa.Table, rel: float, abs_: float) -> None:
    assert exact.column_names == got.column_names
    for name in exact.column_names[1:]:
        for r, (a, b) in enumerate(zip(exact.column(name).to_pylist(), got.column(name).to_pylist(), strict=True)):
            assert close(a, b, rel, abs_), f"{name} row {r}: exact {a!r}, vector math {b!r}"


@pytest.fixture(scope="module")
def events() -> pa.Table:
    return hs.streams.l1_events(20_000, seed=5)


def test_outputs_mode_on_the_benchmark_circuit(events: pa.Table) -> None:
    exact = hs.compile(examples.l1_pressure()).replay(events)
    k = hs.compile(examples.l1_pressure(), vector_math=True)
    assert k.vector_math == "outputs" and "hs::vec::tanh(out0 + b, m)" in k.source
    got = k.replay(events)
    assert_close_tables(exact, got, 1e-12, 1e-12)
    x = exact.column("out").to_numpy(zero_copy_only=False)
    y = got.column("out").to_numpy(zero_copy_only=False)
    mask = exact.column("out").is_valid().to_numpy(zero_copy_only=False)
    assert np.max(np.abs(x[mask] - y[mask]) / np.abs(x[mask])) < 1e-14  # a few ulp
    ref = hs.compile(examples.l1_pressure(), backend="python")
    ref.replay(events)
    assert close(ref.value("out"), k.value("out"), 1e-15, 0.0)  # value() uses the scalar function


def test_all_mode_precomputes_decay_weights(events: pa.Table) -> None:
    k = hs.compile(examples.l1_pressure(), vector_math="all")
    assert "hs::vec::exp2" in k.source and "step_w" in k.source
    # l1_pressure subtracts the ewma of mid from mid: a few-ulp weight difference shows at ~1e-12
    assert_close_tables(hs.compile(examples.l1_pressure()).replay(events), k.replay(events), 1e-9, 1e-9)
    c = hs.Circuit("decays")
    x, y = c.input("x"), c.input("y")
    c.trigger("x", x)
    c.trigger("y", y)
    hl = c.parameter("hl", init=0.3, lower=0.01)
    c.output("e", ops.ewma(x, halflife=hl))
    c.output("s", ops.decay_sum(y * 2.0, 0.7))
    t = np.cumsum(np.random.default_rng(2).integers(1, 400_000_000, 5000))
    trig = np.where(np.random.default_rng(3).random(5000) < 0.5, "x", "y")
    vals = np.random.default_rng(4).normal(size=5000)
    table = pa.table(
        {"t": t, "trigger": trig, "x": np.where(trig == "x", vals, np.nan), "y": np.where(trig == "y", vals, np.nan)}
    )
    exact = hs.compile(c).replay(table)
    kv = hs.compile(c, vector_math="all")
    assert_close_tables(exact, kv.replay(table), 1e-12, 1e-12)  # well conditioned: few ulp
    kv.set_params({"hl": 2.0})
    ke = hs.compile(c)
    ke.set_params({"hl": 2.0})
    kv.reset()
    assert_close_tables(ke.replay(table), kv.replay(table), 1e-12, 1e-12)


# 5 circuits compiled per example: 3 examples by default, more under HYPOTHESIS_PROFILE=thorough
@settings(max_examples=12 if PROFILE == "thorough" else 3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(st.data())
def test_outputs_mode_matches_the_reference_on_random_circuits(data: st.DataObject) -> None:
    batch = [data.draw(circuits(), label=f"circuit {i}") for i in range(5)]
    for i, (circuit, kernel) in enumerate(zip(batch, compile_many(batch, vector_math=True), strict=True)):
        events = data.draw(events_for(circuit), label=f"events {i}")
        assert_close_tables(hs.compile(circuit, backend="python").replay(events), kernel.replay(events), 1e-12, 1e-12)


def test_bad_level_and_unavailable_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(hs.CircuitError, match="vector_math='fast' is not one of"):
        hs.compile(examples.wide_add(), vector_math="fast")
    from harness.codegen import toolchain as tc

    monkeypatch.setattr(tc, "vector_math_available", lambda: "vector_math needs an x86-64 CPU (this is riscv)")
    tc.toolchain.cache_clear()
    try:
        with pytest.raises(hs.HarnessError, match="vector_math needs an x86-64 CPU"):
            hs.compile(examples.wide_add(), vector_math=True)
    finally:
        tc.toolchain.cache_clear()
