"""harness.fit.scan: the blocked linear scan and the decay weights, against plain sequential references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import harness.fit.scan as scan_module
from harness.fit.scan import decay_weights, linear_scan
from harness.ops.numeric import decay_weight

RTOL, ATOL = 1e-12, 1e-13
F64 = torch.float64


@pytest.fixture(autouse=True, params=["native", "blocked"])
def scan_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both CPU schemes: the sequential C++ pass (float64) and the blocked torch scan."""
    monkeypatch.setattr(scan_module, "NATIVE_SCAN", request.param == "native")
    return str(request.param)


def sequential(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s[:, k] = a[:, k] * s[:, k-1] + b[:, k], s[:, -1] = 0, one position at a time in float64."""
    a_t = np.ascontiguousarray(np.broadcast_to(a, b.shape).T)
    b_t = np.ascontiguousarray(b.T)
    s_t = np.empty_like(b_t)
    state = np.zeros(b.shape[0])
    for k in range(b.shape[1]):
        state = a_t[k] * state + b_t[k]
        s_t[k] = state
    return s_t.T


def sequential_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same recurrence recorded step by step by autograd, for reference gradients."""
    a = a.expand(b.shape)
    state = torch.zeros_like(b[:, 0])
    states = []
    for k in range(b.shape[1]):
        state = a[:, k] * state + b[:, k]
        states.append(state)
    return torch.stack(states, dim=1)


def decays(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform in [0, 1] with exact zeros (resets) and exact ones (no decay) mixed in."""
    a = rng.random(shape)
    u = rng.random(shape)
    a[u < 0.05] = 0.0
    a[u > 0.95] = 1.0
    return a


def inputs(seed: int, f: int, n: int, shared: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return decays(rng, (1 if shared else f, n)), rng.uniform(-1.0, 1.0, (f, n))


def scan_np(a: np.ndarray, b: np.ndarray, **kw: int) -> np.ndarray:
    return linear_scan(torch.from_numpy(a), torch.from_numpy(b), **kw).numpy()


@pytest.mark.parametrize("block", [2, 3, 8, 64])
@pytest.mark.parametrize("f", [1, 3, 8])
def test_matches_sequential_around_block_boundaries(block: int, f: int) -> None:
    sizes = sorted({1, 2, block - 1, block, block + 1, 2 * block + 1, block**2 - 1, block**2, block**2 + 1, 1000})
    for i, n in enumerate(x for x in sizes if x >= 1):
        a, b = inputs(i, f, n)
        np.testing.assert_allclose(scan_np(a, b, block=block), sequential(a, b), rtol=RTOL, atol=ATOL, err_msg=f"{n=}")


def test_long_sequence_and_block_sizes_agree() -> None:
    a, b = inputs(7, 8, 100_000)
    ref = sequential(a, b)
    results = {block: scan_np(a, b, block=block) for block in (2, 5, 8, 16, 64, 257)}
    for block, s in results.items():
        np.testing.assert_allclose(s, ref, rtol=RTOL, atol=ATOL, err_msg=f"{block=}")
        np.testing.assert_allclose(s, results[8], rtol=RTOL, atol=ATOL, err_msg=f"{block=} vs 8")
    np.testing.assert_array_equal(scan_np(a, b), results[8])  # the default block


def test_the_native_pass_is_the_sequential_recurrence_bit_for_bit(scan_impl: str) -> None:
    if scan_impl != "native":
        pytest.skip("the blocked scheme rounds differently (within RTOL)")
    for shared in (False, True):
        a, b = inputs(9, 4, 5000, shared=shared)
        np.testing.assert_array_equal(scan_np(a, b), sequential(a, b))
        g = np.random.default_rng(1).uniform(-1, 1, b.shape)
        at, bt = torch.from_numpy(a).requires_grad_(), torch.from_numpy(b).requires_grad_()
        torch.autograd.backward(linear_scan(at, bt), torch.from_numpy(g))
        lam = sequential(np.roll(np.broadcast_to(a, b.shape), -1, axis=1)[:, ::-1], g[:, ::-1])[:, ::-1]
        np.testing.assert_array_equal(bt.grad.numpy(), lam)  # db = the reverse recurrence of the gradient


def test_empty_sequence() -> None:
    a = torch.rand(3, 0, dtype=F64, requires_grad=True)
    b = torch.rand(3, 0, dtype=F64, requires_grad=True)
    s = linear_scan(a, b)
    assert s.shape == (3, 0)
    s.sum().backward()
    assert a.grad is not None and a.grad.shape == (3, 0)
    assert b.grad is not None and b.grad.shape == (3, 0)


def test_small_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut the work into many tiles, within rows and across them, as long sequences are on the CPU."""
    a, b = inputs(3, 5, 3001)
    at, bt = torch.from_numpy(a).requires_grad_(), torch.from_numpy(b).requires_grad_()
    g = torch.randn(5, 3001, dtype=F64)
    torch.autograd.backward(linear_scan(at, bt), g)
    for tile in (50, 1000, 20_000):
        monkeypatch.setattr(scan_module, "_TILE", tile)
        a2, b2 = torch.from_numpy(a).requires_grad_(), torch.from_numpy(b).requires_grad_()
        s = linear_scan(a2, b2)
        np.testing.assert_allclose(s.detach().numpy(), sequential(a, b), rtol=RTOL, atol=ATOL)
        torch.autograd.backward(s, g)
        torch.testing.assert_close(a2.grad, at.grad, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(b2.grad, bt.grad, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape", [(1, 700), (700,), (4, 1), (1, 1), ()])
def test_broadcast_a(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(11)
    a = decays(rng, shape)
    b = rng.uniform(-1.0, 1.0, (4, 700))
    np.testing.assert_allclose(scan_np(a, b), sequential(a, b), rtol=RTOL, atol=ATOL)


def test_non_contiguous_inputs() -> None:
    a, b = inputs(5, 6, 500)
    a_t = torch.from_numpy(np.ascontiguousarray(a.T)).t()  # column-major views
    b_t = torch.from_numpy(np.ascontiguousarray(b.T)).t()
    np.testing.assert_allclose(linear_scan(a_t, b_t).numpy(), sequential(a, b), rtol=RTOL, atol=ATOL)


def test_gradcheck() -> None:
    a, b = inputs(1, 2, 150)  # block 8: 150 -> 18 -> 2, with tails at each level
    at, bt = torch.from_numpy(a).requires_grad_(), torch.from_numpy(b).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: linear_scan(x, y, block=8), (at, bt))
    shared = torch.from_numpy(a[:1]).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: linear_scan(x, y, block=3), (shared, bt))


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("block", [2, 8, 64])
def test_gradients_match_autograd_of_sequential(shared: bool, block: int) -> None:
    a, b = inputs(2, 3, 1500, shared=shared)
    g = torch.randn(3, 1500, dtype=F64, generator=torch.Generator().manual_seed(0))
    grads = []
    for fn in (lambda x, y: linear_scan(x, y, block=block), sequential_torch):
        at, bt = torch.from_numpy(a).requires_grad_(), torch.from_numpy(b).requires_grad_()
        torch.autograd.backward(fn(at, bt), g)
        grads.append((at.grad, bt.grad))
    (ga, gb), (ra, rb) = grads
    torch.testing.assert_close(ga, ra, rtol=RTOL, atol=1e-12)
    torch.testing.assert_close(gb, rb, rtol=RTOL, atol=1e-12)


def test_gradient_of_a_broadcast_loss() -> None:
    """grad_s arrives expanded (stride 0) for s.sum() and strided for a sliced loss."""
    a, b = inputs(4, 3, 333)
    for loss in (lambda s: s.sum(), lambda s: s[:, ::3].sum()):
        grads = []
        for fn in (linear_scan, sequential_torch):
            at = torch.from_numpy(a).requires_grad_()
            loss(fn(at, torch.from_numpy(b))).backward()
            grads.append(at.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize(("halflife_steps", "rtol"), [(1.0, RTOL), (1e3, RTOL), (1e6, 5e-11)])
def test_long_memory_is_stable(halflife_steps: float, rtol: float) -> None:
    """2M steps of constant input and decay against the closed form (1 - a^k) / (1 - a); a = 1 sums exactly.

    With every a equal, the rounding errors of the block products repeat coherently from block to block, so the
    weight of a carry over m steps is off by about m/block ulp, not sqrt(m): ~1e-11 relative for a half-life of 1M
    steps (a plain sequential loop stays at ~4e-14). Varying a, as in event time, does not line the errors up.
    """
    n = 2_000_000
    k = np.arange(1, n + 1, dtype=np.float64)
    ones = torch.ones(1, n, dtype=F64)
    if halflife_steps == 1.0:
        np.testing.assert_array_equal(linear_scan(ones, ones)[0].numpy(), k)
    c = 2.0 ** (-1.0 / halflife_steps)
    s = linear_scan(torch.full((1, n), c, dtype=F64), ones)[0].numpy()
    expected = -np.expm1(k * np.log1p(c - 1.0)) / (1.0 - c)
    np.testing.assert_allclose(s, expected, rtol=rtol, atol=0.0)


@pytest.mark.parametrize(
    ("a", "b", "block", "match"),
    [
        (torch.ones(2, 5, dtype=torch.int64), torch.ones(2, 5, dtype=F64), 8, "floating point"),
        (torch.ones(2, 5, dtype=F64), torch.ones(2, 5, dtype=torch.int32), 8, "floating point"),
        (torch.ones(2, 5, dtype=torch.float32), torch.ones(2, 5, dtype=F64), 8, "same dtype"),
        (torch.ones(5, dtype=F64), torch.ones(5, dtype=F64), 8, r"shape \[F, N\]"),
        (torch.ones(2, 6, dtype=F64), torch.ones(2, 5, dtype=F64), 8, "broadcast"),
        (torch.ones(3, 5, dtype=F64), torch.ones(2, 5, dtype=F64), 8, "broadcast"),
        (torch.ones(4, 2, 5, dtype=F64), torch.ones(2, 5, dtype=F64), 8, "broadcast"),
        (torch.ones(2, 5, dtype=F64), torch.ones(2, 5, dtype=F64), 1, "block"),
        (torch.ones(2, 5, dtype=F64), torch.ones(2, 5, dtype=F64), 2.0, "block"),
    ],
)
def test_invalid_inputs(a: torch.Tensor, b: torch.Tensor, block: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        linear_scan(a, b, block=block)


def event_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sorted int64 nanoseconds: repeated stamps, sub-microsecond gaps, gaps of hours."""
    gaps = np.where(rng.random(n) < 0.1, 0, rng.integers(1, 10 ** rng.integers(1, 14, n), dtype=np.int64))
    return 1_700_000_000_000_000_000 + np.cumsum(gaps)


def test_decay_weights_match_the_reference() -> None:
    rng = np.random.default_rng(5)
    t = event_times(rng, 3000)
    halflife = 10.0 ** rng.uniform(-6, 5, 7)
    w = decay_weights(torch.from_numpy(t), torch.from_numpy(halflife)).numpy()
    dt = np.diff(t)
    ref = np.array([[0.0] + [decay_weight(int(d), float(h)) for d in dt] for h in halflife])
    assert w.shape == (7, 3000)
    assert np.all(w[:, 0] == 0.0)
    np.testing.assert_array_equal(w == 0.0, ref == 0.0)
    np.testing.assert_array_equal(w[:, 1:][:, dt == 0], 1.0)
    # torch's exp2 (SLEEF) and libm's differ by at most an ulp; everything before it is the same operations
    np.testing.assert_allclose(
        w, ref, rtol=2 * np.finfo(np.float64).eps, atol=4 * np.finfo(np.float64).smallest_subnormal
    )
    column = decay_weights(torch.from_numpy(t), torch.from_numpy(halflife)[:, None]).numpy()
    np.testing.assert_array_equal(column, w)


def test_decay_weights_edge_lengths() -> None:
    hl = torch.tensor([1.0, 2.0], dtype=F64)
    assert decay_weights(torch.zeros(0, dtype=torch.int64), hl).shape == (2, 0)
    np.testing.assert_array_equal(decay_weights(torch.tensor([5], dtype=torch.int64), hl).numpy(), np.zeros((2, 1)))


def test_decay_weights_gradcheck() -> None:
    t = torch.from_numpy(event_times(np.random.default_rng(6), 40))
    hl = torch.tensor([0.5, 30.0, 4000.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: decay_weights(t, h), (hl,))


def test_ewma_through_the_scan() -> None:
    """The use it is for: a time-decayed EWMA (first sample initialises) as linear_scan(w, (1 - w) x), against the
    kernel's step v = w v + (1 - w) x, with a gradient for the half-life."""
    rng = np.random.default_rng(8)
    t = event_times(rng, 2000)
    x = rng.normal(size=2000)
    halflife = torch.tensor([1e-3, 1.0, 100.0], dtype=F64, requires_grad=True)
    w = decay_weights(torch.from_numpy(t), halflife)
    v = linear_scan(w, (1.0 - w) * torch.from_numpy(x))
    for row, h in zip(v.detach().numpy(), halflife.tolist(), strict=True):
        state, expected = x[0], [x[0]]
        for k in range(1, len(t)):
            wk = decay_weight(int(t[k] - t[k - 1]), h)
            state = wk * state + (1.0 - wk) * x[k]
            expected.append(state)
        np.testing.assert_allclose(row, expected, rtol=1e-12, atol=1e-13)
    v.pow(2).mean().backward()
    assert halflife.grad is not None and bool(torch.isfinite(halflife.grad).all())


@pytest.mark.parametrize(
    ("t", "halflife", "match"),
    [
        (torch.zeros(3, dtype=F64), torch.ones(2, dtype=F64), "int64"),
        (torch.zeros(2, 3, dtype=torch.int64), torch.ones(2, dtype=F64), "int64"),
        (torch.zeros(3, dtype=torch.int64), torch.ones(2, dtype=torch.int64), "floating point"),
        (torch.zeros(3, dtype=torch.int64), torch.ones(2, 2, dtype=F64), r"\[F\] or \[F, 1\]"),
        (torch.tensor([3, 2], dtype=torch.int64), torch.ones(2, dtype=F64), "non-decreasing"),
    ],
)
def test_decay_weights_invalid(t: torch.Tensor, halflife: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decay_weights(t, halflife)


# --- the fused EWMA / decayed-sum pass ----------------------------------------------------------------------


def general(form: str):  # type: ignore[no-untyped-def]
    """The operator's coefficients, as the general path builds them (a, b) from the weights and the input."""
    return (lambda w, x: (w, (1.0 - w) * x)) if form == "ewma" else (lambda w, x: (w, x))


def reference_scan(t: np.ndarray, halflife: np.ndarray, x: np.ndarray, form: str) -> np.ndarray:
    """The reference interpreter's EWMA / decayed sum (harness.ops.stateful), one sample at a time."""
    out = np.empty_like(x)
    for r, h in enumerate(halflife):
        v = x[r, 0]
        out[r, 0] = v
        for k in range(1, x.shape[1]):
            w = decay_weight(int(t[k] - t[k - 1]), float(h))
            v = w * v + (1.0 - w) * x[r, k] if form == "ewma" else v * w + x[r, k]
            out[r, k] = v
    return out


@pytest.mark.parametrize("form", ["ewma", "sum"])
def test_the_fused_pass_is_the_reference_operator_bit_for_bit(form: str, scan_impl: str) -> None:
    rng = np.random.default_rng(3)
    t = event_times(rng, 2000)
    halflife, x = 10.0 ** rng.uniform(-3, 4, 3), rng.normal(size=(3, 2000))
    gaps = scan_module.gap_seconds(torch.from_numpy(t))
    s = scan_module.decay_scan(gaps, torch.from_numpy(halflife), torch.from_numpy(x), 2000, form, general(form))
    ref = reference_scan(t, halflife, x, form)
    if scan_impl == "native":  # libm's exp2, as the kernel and the reference: the same bits
        np.testing.assert_array_equal(s.numpy(), ref)
    else:  # torch's exp2 is within an ulp of libm's
        np.testing.assert_allclose(s.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", ["ewma", "sum"])
@pytest.mark.parametrize("n", [0, 1, 2, 700])
def test_the_fused_pass_matches_the_general_path_with_gradients(form: str, n: int) -> None:
    rng = np.random.default_rng(n)
    t = event_times(rng, n)
    gaps = scan_module.gap_seconds(torch.from_numpy(t))
    g = torch.from_numpy(rng.normal(size=(4, n)))
    results = []
    for fused in (form, None):  # None: the general path (weights, coefficients, linear scan)
        h = torch.from_numpy(10.0 ** rng.uniform(-2, 3, 4)) if not results else results[0][3].detach()
        h = h.clone().requires_grad_()
        x = torch.from_numpy(rng.normal(size=(4, n))) if not results else results[0][4].detach()
        x = x.clone().requires_grad_()
        s = scan_module.decay_scan(gaps, h, x, n, fused, general(form))
        torch.autograd.backward(s, g)
        results.append((s.detach(), h.grad, x.grad, h, x))
    (s1, dh1, dx1, *_), (s2, dh2, dx2, *_) = results
    torch.testing.assert_close(s1, s2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dh1, dh2, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(dx1, dx2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", ["ewma", "sum"])
def test_the_fused_pass_gradcheck_and_a_shared_input(form: str) -> None:
    rng = np.random.default_rng(2)
    t = event_times(rng, 60)
    gaps = scan_module.gap_seconds(torch.from_numpy(t)) * 1e-9 + 0.05  # gaps of a size that moves the weights
    h = torch.tensor([0.3, 2.0], dtype=F64, requires_grad=True)
    x = torch.from_numpy(rng.normal(size=(2, 60))).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda hh, xx: scan_module.decay_scan(gaps, hh, xx, 60, form, general(form)), (h, x)
    )
    shared = torch.from_numpy(rng.normal(size=(1, 60))).requires_grad_()  # one input for both half-lives
    assert torch.autograd.gradcheck(lambda xx: scan_module.decay_scan(gaps, h, xx, 60, form, general(form)), (shared,))
    h2 = h.detach()[:, None]  # half-lives as [F, 1]
    torch.testing.assert_close(
        scan_module.decay_scan(gaps, h2, x, 60, form, general(form)),
        scan_module.decay_scan(gaps, h.detach(), x, 60, form, general(form)),
    )


def test_the_fused_pass_rejects_a_mismatched_input() -> None:
    gaps = torch.zeros(9, dtype=F64)
    with pytest.raises(ValueError, match=r"x must be \[F, n\] = \[2, 10\]"):
        scan_module.decay_scan(
            gaps, torch.ones(2, dtype=F64), torch.ones(3, 10, dtype=F64), 10, "ewma", general("ewma")
        )


def reference_scan_backward(
    gaps: np.ndarray, halflife: np.ndarray, x: np.ndarray, s: np.ndarray, g: np.ndarray, ewma: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The fused pass's gradients (dx, dh) row by row in Python, in the operation order of hs::decay_scan_backward."""
    dx, dh = np.empty_like(x), np.empty_like(halflife)
    for r, h in enumerate(halflife):
        lam = w_next = total = 0.0
        for k in range(x.shape[1] - 1, -1, -1):
            lam = g[r, k] + w_next * lam
            w = math.exp2(-gaps[k - 1] / h) if k > 0 else 0.0
            dx[r, k] = lam * (1.0 - w) if ewma else lam
            if k > 0:
                dw = lam * (s[r, k - 1] - x[r, k]) if ewma else lam * s[r, k - 1]
                total += dw * w * gaps[k - 1]
            w_next = w
        dh[r] = total * 0.69314718055994530942 / (h * h) if x.shape[1] > 1 else 0.0
    return dx, dh


@pytest.mark.parametrize("ewma", [True, False])
@pytest.mark.parametrize("rows", [1, 4, 6])
def test_the_native_fused_pass_is_bit_for_bit_over_bursts_and_lanes(ewma: bool, rows: int) -> None:
    """Rows go through the native pass four at a time and zero gaps skip exp2: the values and gradients are still
    those of each row alone in the reference's operations (bursts of equal timestamps, an infinite half-life)."""
    from harness import _native

    rng = np.random.default_rng(11)
    n = 500
    t = np.cumsum(np.where(rng.random(n) < 0.7, 0, rng.integers(1, 10**9, n)))  # 70% zero gaps, in runs
    gaps = np.diff(t) / 1e9
    halflife = np.array([0.5, np.inf, 3.0, 1e-4, 40.0, 2.0])[:rows]
    x = rng.normal(size=(rows, n))
    s = np.empty_like(x)
    _native.decay_scan_forward(gaps, halflife, x, ewma, s)
    np.testing.assert_array_equal(s, reference_scan(t, halflife, x, "ewma" if ewma else "sum"))
    g = rng.normal(size=(rows, n))
    dx, dh = np.empty_like(x), np.empty_like(halflife)
    _native.decay_scan_backward(gaps, halflife, x, s, g, ewma, dx, dh)
    ref_dx, ref_dh = reference_scan_backward(gaps, halflife, x, s, g, ewma)
    np.testing.assert_array_equal(dx, ref_dx)
    np.testing.assert_array_equal(dh, ref_dh)
