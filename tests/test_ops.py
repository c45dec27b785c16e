"""Numeric specs of hs.ops: closed forms on irregular timestamps and IEEE special values."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import harness as hs
from harness import ops
from harness.ops import numeric as nm

S = 1_000_000_000
TIMES = [0, 300_000_000, 1_000_000_000, 1_050_000_017, 3_000_000_000, 3_000_000_000, 7_123_456_789]
XS = [1.0, 3.0, -2.0, 5.0, 0.5, 4.0, -1.25]
HL = 0.7


def run(build, times=TIMES, xs=XS, backend: str = "python") -> list[float | None]:  # type: ignore[no-untyped-def]
    c = hs.Circuit("one")
    x = c.input("x")
    c.trigger("x", x)
    c.output("y", build(x))
    k = hs.compile(c, backend=backend)
    out = []
    for t, v in zip(times, xs, strict=True):
        k.call("x", t=t, x=v)
        out.append(k.value("y"))
    return out


def test_ewma_closed_form_on_irregular_timestamps(backend: str) -> None:
    got = run(lambda x: ops.ewma(x, HL), backend=backend)
    t = np.array(TIMES) / 1e9
    for n in range(len(TIMES)):
        # v_n = x_0 2^-(t_n-t_0)/h + sum_{i>=1} x_i (2^-(t_n-t_i)/h - 2^-(t_n-t_{i-1})/h)
        expected = XS[0] * 2 ** (-(t[n] - t[0]) / HL)
        for i in range(1, n + 1):
            expected += XS[i] * (2 ** (-(t[n] - t[i]) / HL) - 2 ** (-(t[n] - t[i - 1]) / HL))
        assert got[n] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert got[0] == 1.0  # the first sample initialises
    assert got[5] == got[4]  # same timestamp: dt = 0, weight 1, no move


def test_decay_sum_closed_form_on_irregular_timestamps(backend: str) -> None:
    got = run(lambda x: ops.decay_sum(x, HL), backend=backend)
    t = np.array(TIMES) / 1e9
    for n in range(len(TIMES)):
        expected = sum(XS[i] * 2 ** (-(t[n] - t[i]) / HL) for i in range(n + 1))
        assert got[n] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert got[5] == got[4] + 4.0  # equal timestamps simply add


def test_delta_and_count(backend: str) -> None:
    assert run(ops.delta, backend=backend) == [None, 2.0, -5.0, 7.0, -4.5, 3.5, -5.25]
    assert run(ops.count, backend=backend) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


def test_stateful_ops_skip_invalid_samples(backend: str) -> None:
    c = hs.Circuit("skip")
    x, g = c.input("x"), c.input("g")
    c.trigger("x", x)
    c.trigger("g", g)
    gated = ops.select(g, x, x / 0.0 * 0.0)  # nan branch when g == 0 ...
    picked = x * (ops.timeout(g, 100.0) + 1.0)  # ... and an edge input: invalid except at the timer
    c.output("e", ops.ewma(picked, 1.0))
    c.output("n", ops.count(picked))
    c.output("d", ops.delta(gated))
    k = hs.compile(c, backend=backend)
    k.call("g", t=0, g=1.0)
    k.call("x", t=S, x=2.0)
    assert (k.value("e"), k.value("n")) == (None, 0.0)  # picked is invalid (timeout not fired)
    assert k.value("d") is None


@pytest.mark.parametrize(
    ("build", "x", "expected"),
    [
        (ops.exp, 1000.0, math.inf),
        (ops.exp, -1000.0, 0.0),
        (ops.log, 0.0, -math.inf),
        (ops.log, -1.0, math.nan),
        (ops.sqrt, -4.0, math.nan),
        (ops.sqrt, 9.0, 3.0),
        (ops.tanh, 50.0, 1.0),
        (ops.sigmoid, -1000.0, 0.0),
        (ops.sigmoid, 1000.0, 1.0),
        (ops.sigmoid, 0.0, 0.5),
        (ops.relu, -2.0, 0.0),
        (ops.relu, math.nan, math.nan),
        (lambda x: 1.0 / x, 0.0, math.inf),
        (lambda x: 1.0 / x, -0.0, -math.inf),
        (lambda x: x / x, 0.0, math.nan),
        (lambda x: ops.clamp(x, -1.0, 1.0), 5.0, 1.0),
        (lambda x: ops.clamp(x, -1.0, 1.0), math.nan, math.nan),
        (lambda x: ops.min(x, 1.0), math.nan, math.nan),
        (lambda x: ops.max(1.0, x), math.nan, math.nan),
        (abs, -0.0, 0.0),
        (ops.softplus, 0.0, math.log(2.0)),
        (ops.softplus, 1000.0, 1000.0),
        (ops.softplus, -1000.0, 0.0),
        (ops.softplus, math.inf, math.inf),
        (ops.softplus, -math.inf, 0.0),
        (ops.softplus, math.nan, math.nan),
    ],
)
def test_ieee_special_values_are_values_not_errors(build, x: float, expected: float, backend: str) -> None:  # type: ignore[no-untyped-def]
    (got,) = run(build, times=[0], xs=[x], backend=backend)
    assert got is not None
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def agree(got: float, want: float) -> bool:
    """Same class of IEEE value (nan, ±inf, ±0) and equal to 1 ulp-ish otherwise."""
    if math.isnan(want) or math.isinf(want) or want == 0.0:
        return (math.isnan(got) and math.isnan(want)) or (
            got == want and math.copysign(1, got) == math.copysign(1, want)
        )
    return got == pytest.approx(want, rel=1e-15)


def test_numeric_helpers_follow_ieee_like_numpy() -> None:
    """numpy's own math kernels may differ in the last bit, so ordinary values agree to 1e-15."""
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.normal(0, 30, 300), [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-310, 709.8, 710.0]])
    with np.errstate(all="ignore"):
        for a in xs:
            for fn, ref in ((nm.exp, np.exp), (nm.log, np.log), (nm.sqrt, np.sqrt), (nm.tanh, np.tanh)):
                assert agree(fn(float(a)), float(ref(a))), (fn.__name__, a)
            for b in xs[-12:]:
                assert agree(nm.div(float(a), float(b)), float(np.divide(a, b))), (a, b)


def test_replay_result_records_nulls_for_invalid(backend: str) -> None:
    c = hs.Circuit("nulls")
    x = c.input("x")
    c.trigger("x", x)
    c.output("d", ops.delta(x))
    r = hs.compile(c, backend=backend).replay(
        pa.table({"t": pa.array([0, 1], pa.int64()), "trigger": ["x", "x"], "x": [1.0, 4.0]})
    )
    assert r.column("d").to_pylist() == [None, 3.0]
    assert r.schema.field("d").type == pa.float64()


def test_softplus_is_log1p_exp_without_overflow(backend: str) -> None:
    xs = [-800.0, -40.0, -3.5, -1e-20, 0.25, 2.0, 30.0, 40.0, 750.0]
    got = run(ops.softplus, times=list(range(len(xs))), xs=xs, backend=backend)
    for x, y in zip(xs, got, strict=True):
        naive = math.log1p(math.exp(x)) if x < 700.0 else x  # the plain formula, where exp does not overflow
        assert y == pytest.approx(naive, rel=1e-15, abs=0.0), x
    assert got[0] == 0.0 and got[-1] == 750.0


def test_softplus_torch_form_and_its_gradient() -> None:
    torch = pytest.importorskip("torch")
    xs = torch.tensor([-800.0, -3.0, -1e-8, 0.0, 1e-8, 2.5, 40.0, 800.0], dtype=torch.float64, requires_grad=True)
    y = ops.Softplus().torch_f({}, xs)
    y.sum().backward()
    want = [ops.Softplus().f({}, float(x)) for x in xs.detach()]
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-15, atol=0.0)
    np.testing.assert_allclose(xs.grad.numpy(), [nm.sigmoid(float(x)) for x in xs.detach()], rtol=1e-15)


def test_softplus_fits_its_weight() -> None:
    n = 2000
    xs = np.random.default_rng(0).normal(size=n) * 3
    events = pa.table({"t": np.arange(n, dtype=np.int64) * 1_000_000, "trigger": ["x"] * n, "x": xs})
    c = hs.Circuit("softplus_fit")
    x = c.input("x")
    c.trigger("x", x)
    c.output("pred", ops.softplus(x * c.parameter("w", init=0.2)))
    c.output("truth", ops.softplus(0.8 * x))
    res = hs.fit.fit(c, events, target="pred", label=("truth", 0.0), trainer={"lr": 0.05, "epochs": 200}, seed=0)
    assert res.params["w"] == pytest.approx(0.8, abs=1e-3)
    assert res.parity["max_abs_error"] <= 1e-12
