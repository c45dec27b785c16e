"""The C++ numeric twins (cpp/harness/numeric.hpp, built into harness._native) return the same bits as their
Python twins (harness/ops/numeric.py, and the `f` of each operator class that names a `twin`): the base of
C++/Python agreement on every event. The twins on both sides are listed once: HS_NUMERIC_TWINS in C++,
`numeric.TWINS` and the operator classes in Python; the lists must match."""

from __future__ import annotations

import inspect
import math
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import ops
from harness.circuit.operator import REGISTRY
from harness.ops import numeric as nm

native = pytest.importorskip("harness._native", reason="harness._native is built by `pip install -e .`")

doubles = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 709.78, 709.79, -745.2, 1e-320, 20.0, -20.0, 0.5, 37.0, -37.0]),
)
# twins defined only on part of the doubles: their argument strategies (every other argument is any double)
DOMAINS: dict[str, tuple[st.SearchStrategy, ...]] = {
    "decay_weight": (st.integers(0, 10**15), st.floats(1e-6, 1e6)),
    "seconds_to_ns": (st.floats(1e-9, 1e6),),
}


def python_twins() -> dict[str, list[tuple[Callable[..., float], int]]]:
    """Every Python twin by name, with its number of arguments: numeric.TWINS, then the operators whose C++ form
    is a twin (their `f` on the inputs, then the parameters)."""
    out = {name: [(fn, len(inspect.signature(fn).parameters))] for name, fn in nm.TWINS.items()}
    for op in REGISTRY.values():
        if op.twin is not None:
            out.setdefault(op.twin, []).append((op.twin_ref, len(op.arg_names()) + len(op.params_spec)))
    return out


def bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or bits(a) == bits(b)


def test_the_python_and_cpp_twin_lists_match() -> None:
    assert sorted(python_twins()) == sorted(native.NUMERIC_TWINS)


def test_each_twin_takes_the_same_number_of_arguments_on_both_sides() -> None:
    for name, fns in python_twins().items():
        assert [arity for _, arity in fns] == [native.NUMERIC_TWINS[name]] * len(fns), name


@pytest.mark.parametrize("name", sorted(native.NUMERIC_TWINS))
@given(data=st.data())
def test_each_twin_agrees_bit_for_bit(name: str, data: st.DataObject) -> None:
    strategies = DOMAINS.get(name, (doubles,) * native.NUMERIC_TWINS[name])
    args = [data.draw(s) for s in strategies]
    want = getattr(native, name)(*args)
    for fn, _ in python_twins()[name]:
        got = fn(*args)
        assert same(float(got), float(want)) and type(got) is type(want), (name, args, got, want)


def test_vector_functions_exist_for_each_operator_that_names_one() -> None:
    for op in REGISTRY.values():
        if op.vector_cpp is not None:
            assert op.vector_cpp.removeprefix("hs::vec::") in native.VECTOR_FUNCTIONS, op.kind
    assert {op.vector_cpp for op in ops.OPERATORS.values() if op.vector_cpp}  # some operators use them
