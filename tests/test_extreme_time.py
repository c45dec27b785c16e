"""Extreme time gaps: events up to 2^64 - 1 ns apart (~584 years, beyond int64) must decay and fire timers the
same way in the C++ kernel and the reference, bit for bit. `now - t` used to overflow int64 in the C++ decays
(undefined behaviour: inf/nan where the reference gives 1.0), `now + period` in the timers, and an event at
INT64_MAX fired timers that were never scheduled."""

from __future__ import annotations

import math
import struct

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import same
from tables import one_input_events

import harness as hs
from harness import ops
from harness.codegen.toolchain import vector_math_available

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EXTREMES = [INT64_MIN, INT64_MIN + 1, -(2**62), -1_000_000_007, -1, 0, 1, 2**53 + 1, 2**62, INT64_MAX - 1, INT64_MAX]
X = ("x",)  # the one input of decays(), set by trigger "x"
HALFLIVES = [1e-9, 1.0, 3600.0, 1e9, 1e11, 1.2345e12, 1e300]


def decays() -> hs.Circuit:
    c = hs.Circuit("extreme_decays")
    x = c.input("x")
    hl = c.parameter("hl", 1.0)
    c.trigger("x", x)
    c.output("ewma", ops.ewma(x, hl))
    c.output("dsum", ops.decay_sum(x, hl))
    c.output("ewma_1y", ops.ewma(x, 365.25 * 86400.0))
    c.output("dsum_1e11", ops.decay_sum(x, 1e11))
    return c


@pytest.fixture(scope="module")
def kernels() -> tuple[hs.Kernel, hs.Kernel]:
    return hs.compile(decays(), backend="python"), hs.compile(decays())


def bits(x: float | None) -> str:
    return "invalid" if x is None else struct.pack("<d", x).hex()


def assert_same_replays(ref: hs.Kernel, cpp: hs.Kernel, table: pa.Table, label: str) -> None:
    ref.reset()
    cpp.reset()
    a, b = ref.replay(table), cpp.replay(table)
    for name in ref.outputs:
        for r, (x, y) in enumerate(zip(a.column(name).to_pylist(), b.column(name).to_pylist(), strict=True)):
            assert same(x, y), f"{label}: {name} row {r}: reference {x!r} ({bits(x)}), C++ {y!r} ({bits(y)})"


def test_events_at_the_int64_extremes_decay_to_the_reference_value(kernels: tuple[hs.Kernel, hs.Kernel]) -> None:
    ref, cpp = kernels
    table = one_input_events([(INT64_MIN, "x", 2.0), (INT64_MAX, "x", 1.0)], X)  # 2^64 - 1 ns apart: overflows int64
    for k in (ref, cpp):
        k.set_params({"hl": 1.0})
        k.reset()
        out = k.replay(table)
        assert out.column("ewma").to_pylist() == [2.0, 1.0], k.backend  # C++ gave nan here
        assert out.column("dsum").to_pylist() == [2.0, 1.0], k.backend
    for hl in HALFLIVES:
        ref.set_params({"hl": hl})
        cpp.set_params({"hl": hl})
        assert_same_replays(ref, cpp, table, f"halflife {hl}")
    cpp.reset()
    assert 1.0 <= cpp.replay(table).column("ewma_1y").to_pylist()[-1] < 2.0


def test_292_years_apart_by_calls(kernels: tuple[hs.Kernel, hs.Kernel]) -> None:
    ref, cpp = kernels
    gap = 2**63 + 123_456_789  # ~292.3 years: just past INT64_MAX
    t0 = -(2**62) - 10**17
    for k in (ref, cpp):
        k.set_params({"hl": 1e10})
        k.reset()
        k.call("x", t=t0, x=3.0)
        k.call("x", t=t0 + gap, x=-1.0)
    for name in ref.outputs:
        assert bits(ref.value(name)) == bits(cpp.value(name)), name
    assert math.isfinite(cpp.value("ewma") or math.nan)


times = st.lists(st.one_of(st.sampled_from(EXTREMES), st.integers(INT64_MIN, INT64_MAX)), min_size=1, max_size=12).map(
    sorted
)


@given(
    times,
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=12, max_size=12),
    st.one_of(st.sampled_from(HALFLIVES), st.floats(1e-9, 1e15, allow_nan=False)),
)
def test_random_extreme_gaps_agree_bit_for_bit(
    kernels: tuple[hs.Kernel, hs.Kernel], t: list[int], xs: list[float], hl: float
) -> None:
    ref, cpp = kernels
    ref.set_params({"hl": hl})
    cpp.set_params({"hl": hl})
    table = one_input_events([(ti, "x", x) for ti, x in zip(t, xs[: len(t)], strict=True)], X)
    assert_same_replays(ref, cpp, table, f"t={t} hl={hl}")


@pytest.mark.skipif(vector_math_available() is not None, reason=str(vector_math_available()))
def test_vector_math_weights_at_extreme_gaps_stay_finite_and_close() -> None:
    c = decays()
    ref, vec = hs.compile(c, backend="python"), hs.compile(c, vector_math="all")
    table = one_input_events(
        [(INT64_MIN, "x", 2.0), (-1, "x", 1.0), (INT64_MAX - 5, "x", 4.0), (INT64_MAX, "x", 8.0)], X
    )
    for hl in (1.0, 1e10, 1e11):
        ref.set_params({"hl": hl})
        vec.set_params({"hl": hl})
        ref.reset()
        vec.reset()
        a, b = ref.replay(table), vec.replay(table)
        for name in ref.outputs:
            want = np.array(a.column(name).to_pylist(), dtype=float)
            got = np.array(b.column(name).to_pylist(), dtype=float)
            assert np.isfinite(got).all(), (name, got)
            np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"{name} hl={hl}")


def timers() -> hs.Circuit:
    c = hs.Circuit("extreme_timers")
    x, z, y = c.input("x"), c.input("z"), c.input("y")
    for name, node in (("x", x), ("z", z), ("y", y)):
        c.trigger(name, node)
    c.output("timeout", ops.timeout(x, 1.0))
    c.output("every", ops.every(z, 3.0))
    c.output("y", y)
    return c


@pytest.mark.parametrize(
    "rows",
    [
        [(INT64_MAX, "y")],  # no timer scheduled: nothing may fire at the last int64 time
        [(INT64_MAX - 10, "x"), (INT64_MAX - 9, "z"), (INT64_MAX - 5, "y"), (INT64_MAX, "y")],  # due past the end
        [(INT64_MAX - 2_000_000_000, "x"), (INT64_MAX - 2_000_000_000, "z"), (INT64_MAX - 1, "y"), (INT64_MAX, "z")],
        [(INT64_MIN, "x"), (INT64_MIN + 1, "y"), (0, "x"), (INT64_MAX, "y"), (INT64_MAX, "x")],
    ],
    ids=["idle", "past-the-end", "just-before-the-end", "whole-range"],
)
def test_timers_near_the_end_of_time_agree(rows: list[tuple[int, str]]) -> None:
    c = timers()
    ref, cpp = hs.compile(c, backend="python"), hs.compile(c)
    table = pa.table(
        {
            "t": pa.array([t for t, _ in rows], pa.int64()),
            "trigger": pa.array([g for _, g in rows], pa.string()),
            **{n: pa.array([1.0 if g == n else None for _, g in rows], pa.float64()) for n in ("x", "z", "y")},
        }
    )
    assert_same_replays(ref, cpp, table, str(rows))
    ref.reset()
    cpp.reset()
    fired = 0
    for t, g in rows:
        ref.call(g, t=t, **{g: 1.0})
        cpp.call(g, t=t, **{g: 1.0})
        for name in ref.outputs:
            assert bits(ref.value(name)) == bits(cpp.value(name)), (t, g, name)
        fired += cpp.value("timeout") is not None or cpp.value("every") is not None
    if rows[0][0] == INT64_MAX:
        assert fired == 0  # the C++ kernel used to fire every never-scheduled timer at t = INT64_MAX
