"""The C++ numeric helpers (cpp/harness/numeric.hpp, built into harness._native) return the same bits as
the Python reference helpers (harness/ops/numeric.py): the base of C++/Python agreement on every event."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.ops import numeric as nm
from harness.ops.timers import seconds_to_ns

native = pytest.importorskip("harness._native", reason="harness._native is built by `pip install -e .`")

doubles = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 709.78, 709.79, -745.2, 1e-320, 20.0, -20.0, 0.5]),
)


def bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or bits(a) == bits(b)


@given(doubles)
def test_unary_helpers_agree_bit_for_bit(x: float) -> None:
    for name in ("exp", "exp2", "log", "sqrt", "tanh", "sigmoid", "relu"):
        assert same(getattr(nm, name)(x), getattr(native, name)(x)), (name, x)


@given(doubles, doubles)
def test_binary_helpers_agree_bit_for_bit(a: float, b: float) -> None:
    for name in ("div", "fmin", "fmax"):
        assert same(getattr(nm, name)(a, b), getattr(native, name)(a, b)), (name, a, b)


@given(doubles, st.floats(-10, 10), st.floats(0, 10))
def test_clamp_agrees(x: float, lo: float, width: float) -> None:
    assert same(nm.clamp(x, lo, lo + width), native.clamp(x, lo, lo + width))


@given(st.integers(0, 10**15), st.floats(1e-6, 1e6))
def test_decay_weight_agrees(dt_ns: int, halflife: float) -> None:
    assert same(nm.decay_weight(dt_ns, halflife), native.decay_weight(dt_ns, halflife))


@given(st.floats(1e-9, 1e6))
def test_seconds_to_ns_agrees(seconds: float) -> None:
    assert seconds_to_ns(seconds) == native.seconds_to_ns(seconds)
