"""Edges: NaN constants of any sign and payload are emitted and computed with the same bits on both backends;
a split with an empty part is a config error; circuits thousands of nodes deep trace and fit (no recursion)."""

from __future__ import annotations

import math
import struct
import sys

import numpy as np
import pyarrow as pa
import pytest
from hydra import compose, initialize_config_dir
from hypothesis import given
from hypothesis import strategies as st

import harness as hs
from harness import ops
from harness.codegen.literals import cpp_double
from harness.pipeline import schema
from harness.pipeline.build import ConfigError, split_fractions

# ------------------------------------------------------------------------------------------------ NaN constants


def from_bits(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def to_bits(x: float | None) -> str:
    return "invalid" if x is None else f"{struct.unpack('<Q', struct.pack('<d', x))[0]:016x}"


NANS = [
    0x7FF8000000000000,  # the default quiet NaN (float("nan"))
    0xFFF8000000000000,  # its negative: what x86 makes for 0/0
    0x7FF8000000000001,  # quiet, payload 1
    0xFFF8000000000123,  # negative quiet, payload
    0x7FF0000000000005,  # signalling, payload 5
    0xFFF4000000000000,  # negative signalling
    0x7FFFFFFFFFFFFFFF,  # largest payload
]
UNARY = {"neg": ops.neg, "abs": ops.abs, "exp": ops.exp, "log": ops.log, "sqrt": ops.sqrt, "tanh": ops.tanh}
UNARY |= {"sigmoid": ops.sigmoid, "relu": ops.relu}
COMMUTATIVE = ("add", "mul")  # both operands NaN: IEEE-754 leaves which payload wins to the compiler


def nan_circuit() -> hs.Circuit:
    c = hs.Circuit("nan_constants")
    x = c.input("x")
    c.trigger("x", x)
    for j, bits in enumerate(NANS):
        k = c.constant(from_bits(bits))
        outs = {"const": k, "add": x + k, "mul": k * x, "sub": x - k, "rsub": k - x, "div": k / x, "rdiv": x / k}
        outs |= {"min": ops.min(x, k), "max": ops.max(k, x), "ewma": ops.ewma(x - k, halflife=1.0)}
        outs |= {name: f(k) for name, f in UNARY.items()}
        for name, node in outs.items():
            c.output(f"{name}_{j}", node)
    return c


@pytest.fixture(scope="module")
def nan_kernels() -> tuple[hs.Kernel, hs.Kernel]:
    return hs.compile(nan_circuit(), backend="python"), hs.compile(nan_circuit())


def test_nan_constants_keep_their_bits_in_the_circuit_and_the_source() -> None:
    c = hs.Circuit("nan_keys")
    nodes = [c.constant(from_bits(b)) for b in NANS]
    assert len({id(n) for n in nodes}) == len(NANS)  # float.hex() is 'nan' for all: they used to be one node
    assert [to_bits(n.op.params["value"]) for n in nodes] == [f"{b:016x}" for b in NANS]
    assert cpp_double(math.nan) == "HS_NAN"
    assert cpp_double(from_bits(0xFFF8000000000123)) == "hs::f64_from_bits(UINT64_C(0xfff8000000000123))"


def replay_both(kernels: tuple[hs.Kernel, hs.Kernel], xs: list[float]) -> tuple[pa.Table, pa.Table]:
    events = pa.table(
        {"t": pa.array(range(len(xs)), pa.int64()), "trigger": ["x"] * len(xs), "x": pa.array(xs, pa.float64())}
    )
    for k in kernels:
        k.reset()
    return kernels[0].replay(events), kernels[1].replay(events)


def assert_same_bits(ref: pa.Table, cpp: pa.Table, xs: list[float]) -> None:
    """Equal bits wherever at most one NaN meets a commutative operation ('+', '*'): there IEEE-754 leaves which
    payload wins to the compiler's choice of operand order, and both backends must only give a NaN."""
    for name in ref.column_names[1:]:
        kind = name.split("_")[0]
        for r, (want, got) in enumerate(zip(ref.column(name).to_pylist(), cpp.column(name).to_pylist(), strict=True)):
            two_nans = (kind in COMMUTATIVE and math.isnan(xs[r])) or (kind == "ewma" and r > 0)  # w*v + (1-w)*x
            if two_nans:
                assert math.isnan(want) and math.isnan(got), (name, r)
            else:
                assert to_bits(got) == to_bits(want), f"{name} row {r} x={to_bits(xs[r])}"


def test_nan_constants_are_computed_with_the_same_bits(nan_kernels: tuple[hs.Kernel, hs.Kernel]) -> None:
    xs = [1.0, 0.0, -0.0, -2.5, math.inf, -math.inf, 1e-310]
    ref, cpp = replay_both(nan_kernels, xs)
    assert_same_bits(ref, cpp, xs)
    for j, bits in enumerate(NANS):  # the constant itself, and its sign through neg
        assert to_bits(cpp.column(f"const_{j}")[0].as_py()) == f"{bits:016x}"
        assert to_bits(cpp.column(f"neg_{j}")[0].as_py()) == f"{bits ^ (1 << 63):016x}"
        assert to_bits(cpp.column(f"sub_{j}")[0].as_py()) == f"{bits | (1 << 51):016x}"  # 1 - nan: nan, quieted


nan_bits = st.builds(
    lambda sign, quiet, payload: (sign << 63) | (0x7FF << 52) | (quiet << 51) | payload,
    st.integers(0, 1),
    st.integers(0, 1),
    st.integers(1, 2**51 - 1),
)


@given(st.lists(st.one_of(st.floats(allow_nan=False), nan_bits.map(from_bits)), min_size=1, max_size=8))
def test_nan_inputs_and_constants_agree_bit_for_bit(nan_kernels: tuple[hs.Kernel, hs.Kernel], xs: list) -> None:
    ref, cpp = replay_both(nan_kernels, xs)
    assert_same_bits(ref, cpp, xs)


# ------------------------------------------------------------------------------------------------ split


def composed(overrides: list[str]):  # type: ignore[no-untyped-def]
    schema.register()
    with initialize_config_dir(config_dir=str(schema.CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize(
    "split,message",
    [
        ("[1,0,0]", "the validation and test part(s) would be empty"),
        ("[0,0.5,0.5]", "the train part(s) would be empty"),
        ("[0.8,0.2,0]", "the test part(s) would be empty"),
        ("[0.5,0.3,0.3]", "sums to 1.1"),
        ("[0.5,0.5]", "must be three fractions"),
    ],
)
def test_a_split_with_an_empty_part_is_a_config_error(split: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"task\.split=.*" + message.replace("(", r"\(").replace(")", r"\)")):
        split_fractions(composed([f"task.split={split}"]))
    assert split_fractions(composed(["task.split=[0.6,0.2,0.2]"])) == (0.6, 0.2, 0.2)


def test_the_pipeline_refuses_an_empty_split_part_before_it_runs(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HARNESS_PARENT_RUN_ID", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["task.split=[1,0,0]", "stream.events=2000", "trainer.epochs=1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "task.split=[1.0, 0.0, 0.0]" in err and "would be empty" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ deep circuits


def deep_circuit(depth: int) -> hs.Circuit:
    """A chain `depth` nodes deep over one input, with learnable weight and half-life (decays every 50 nodes)."""
    c = hs.Circuit(f"deep_{depth}")
    x = c.input("x")
    c.trigger("a", x)
    w, hl = c.parameter("w", init=0.5), c.parameter("hl", init=1.0, lower=0.01)
    v = x * w
    for i in range(depth):
        if i % 50 == 7:
            v = ops.ewma(v, halflife=hl)
        elif i % 2:
            v = ops.tanh(v) + x * 0.001
        else:
            v = v + 0.0001
    c.output("pred", v)
    c.output("truth", x * 0.3)
    return c


def test_tracing_twenty_thousand_nodes_deep_needs_no_recursion() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)  # far below the depth: any recursion over the graph fails
    try:
        tr = hs.fit.trace(deep_circuit(20_000), "pred")
    finally:
        sys.setrecursionlimit(limit)
    assert tr.params == ["w", "hl"] and len(tr.domains) == 1 + 20_000 // 50
    assert sum(n.kind in ("op", "decay") for n in tr.nodes) > 19_000  # one chain: inputs before their users
    assert all(i < n.id for n in tr.nodes for i in n.inputs)


@pytest.mark.slow
def test_a_circuit_two_thousand_nodes_deep_fits() -> None:
    rng = np.random.default_rng(0)
    n = 600
    t = np.cumsum(rng.integers(1_000_000, 200_000_000, n)).astype(np.int64)
    events = pa.table({"t": t, "trigger": ["a"] * n, "x": rng.normal(size=n)})
    res = hs.fit.fit(deep_circuit(2000), events, target="pred", label=("truth", 0.0), trainer={"epochs": 3}, seed=0)
    assert set(res.params) == {"w", "hl"} and res.params["w"] != 0.5
    assert res.parity["max_abs_error"] <= 1e-9
