"""Differentiable first-order linear recurrences in pure torch, for fitting decay half-lives.

`linear_scan` evaluates s[k] = a[k] * s[k-1] + b[k] (s[-1] = 0) along the last axis of a batch of sequences with a
blocked, multi-level scheme: a Python loop over the positions of a block, each step vectorised over all blocks and
rows; the cumulative product of a within each block weighs the state carried in; the block ends form a recurrence
`block` times shorter, solved the same way. Every factor is a decay in [0, 1], so nothing is rescaled and nothing can
overflow, whatever the length or the half-life.

Autograd goes through a custom `torch.autograd.Function`: the gradient of a linear recurrence is the same recurrence
run backwards (lam[k] = g[k] + a[k+1] * lam[k+1]; db = lam, da[k] = lam[k] * s[k-1]), evaluated by the same scheme.
Both passes write in place into their own fresh outputs, in cache-sized tiles. Recording every step for autograd
instead took ~9 s and 7 GiB for forward + backward at N = 1M, F = 64 on 2 cores; this takes ~1.4 s. On the CPU in
float64 both passes run as one sequential C++ loop per row (`harness._native.scan_forward/scan_reverse`, one pass
over the data instead of a dozen); the blocked scheme serves other devices and dtypes.

`decay_weights` builds the factors a = 2^(-dt/halflife) with the C++ kernel's operations (torch's exp2 is within an
ulp of libm's).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import FunctionCtx, once_differentiable

__all__ = ["decay_scan", "decay_weights", "decay_weights_from_gaps", "gap_seconds", "linear_scan"]

# Elements per piece of work on the CPU (8 MiB of float64 per tensor): the block steps go over one piece at a time.
_TILE = 1 << 20


def _not_compiled(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`torch.compiler.disable(fn)`, applied at the first call made while torch._dynamo is loaded: the decorator
    itself imports dynamo (1.2 s of every run's start), and without dynamo loaded nothing is being compiled."""
    disabled: list[Callable[..., torch.Tensor]] = []

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> torch.Tensor:
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        if not disabled:
            disabled.append(torch.compiler.disable(fn))
        return disabled[0](*args, **kwargs)

    return call


@_not_compiled  # a hand-scheduled loop of in-place steps: tracing it would only unroll it
def linear_scan(a: torch.Tensor, b: torch.Tensor, *, block: int = 8) -> torch.Tensor:
    """Return s of shape [F, N] with s[:, k] = a[:, k] * s[:, k-1] + b[:, k] and s[:, -1] = 0.

    `b` is [F, N]; `a` broadcasts to it (usually [F, N] or [1, N]) and should lie in [0, 1] (a = 0 resets the state),
    which keeps every intermediate product bounded: the result is stable for any N and any half-life. The sequence is
    cut into blocks of `block` positions: `block` vectorised steps per level, log_block(N) levels. The default 8 (one
    64-byte cache line of float64 per block) was fastest on the CPU at every size measured; 32 and more are 2x slower.
    Differentiable once in both `a` and `b` (no double backward).
    """
    _check_scan_inputs(a, b, block)
    f, n = b.shape
    rows = f if a.ndim == 2 and a.shape[0] == f else 1
    if a.shape != (rows, n):
        a = a.broadcast_to((f, n))[:rows]  # a [1, N] stays shared; autograd sums its gradient over the broadcast
    if n == 0:
        return a * b  # empty [F, 0], still attached to the graph
    return _LinearScan.apply(a, b, block)


def decay_weights(t: torch.Tensor, halflife: torch.Tensor) -> torch.Tensor:
    """Return the decay factors a[F, N] for event times `t` (int64 ns, [N]) and half-lives in seconds ([F] or [F, 1]).

    a[:, 0] = 0 (the first sample initialises the state) and a[:, k] = 2^(-((t[k] - t[k-1]) / 1e9) / halflife): the
    gap is taken in int64 and converted to seconds by one division, the same operations in the same order as
    `harness.ops.numeric.decay_weight` and the C++ kernel. Differentiable in `halflife`.
    """
    return decay_weights_from_gaps(gap_seconds(t), halflife, t.shape[0] if t.ndim == 1 else None)


def gap_seconds(t: torch.Tensor) -> torch.Tensor:
    """The gaps (t[k] - t[k-1]) / 1e9 in seconds, [N-1] float64, of non-decreasing int64 nanoseconds `t` [N]: what
    `decay_weights_from_gaps` takes; computed once per time axis, not per evaluation."""
    if t.dtype != torch.int64 or t.ndim != 1:
        raise ValueError(f"t must be a 1-D int64 tensor of nanoseconds, got {t.dtype} of shape {tuple(t.shape)}")
    dt_ns = torch.diff(t)
    if bool((dt_ns < 0).any()):
        raise ValueError("t must be non-decreasing")
    return dt_ns.to(torch.float64) / 1e9


def decay_weights_from_gaps(gaps: torch.Tensor, halflife: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """`decay_weights` of the first `n` times (all: n = len(gaps) + 1) of a time axis whose `gap_seconds` are `gaps`.

    One fused autograd step: the backward is one product and one matrix-vector sum (d/dh 2^(-g/h) = 2^(-g/h) ln2 g/h^2)
    instead of autograd's chain of [F, N] temporaries through the division, the negation, the power and the concat.
    """
    if not halflife.is_floating_point():
        raise ValueError(f"halflife must be floating point, got {halflife.dtype}")
    if halflife.ndim == 2 and halflife.shape[1] == 1:
        halflife = halflife[:, 0]
    if halflife.ndim != 1:
        raise ValueError(f"halflife must have shape [F] or [F, 1], got {tuple(halflife.shape)}")
    n = gaps.shape[0] + 1 if n is None else n
    if not 0 <= n <= gaps.shape[0] + 1:
        raise ValueError(f"n={n} points need n - 1 of the {gaps.shape[0]} gaps")
    return _DecayWeights.apply(gaps[: max(n - 1, 0)], halflife, n)


class _DecayWeights(torch.autograd.Function):
    """w[:, 0] = 0, w[:, k] = 2^(-gaps[k-1] / h) for gaps [N-1] and h [F]; differentiable in h."""

    @staticmethod
    def forward(ctx: FunctionCtx, gaps: torch.Tensor, halflife: torch.Tensor, n: int) -> torch.Tensor:
        w = gaps.new_empty((halflife.shape[0], n), dtype=torch.promote_types(gaps.dtype, halflife.dtype))
        w[:, :1] = 0.0  # nothing when n = 0
        rest = w[:, 1:]
        torch.div(-gaps, halflife[:, None], out=rest)  # -(dt / 1e9) / h: the kernel's order (negation is exact)
        torch.exp2(rest, out=rest)
        ctx.save_for_backward(gaps, halflife, w)
        return w

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_w: torch.Tensor) -> tuple[None, torch.Tensor | None, None]:
        gaps, halflife, w = ctx.saved_tensors  # type: ignore[attr-defined]
        if not ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            return None, None, None
        gw = (grad_w[:, 1:] * w[:, 1:]) @ gaps.to(w.dtype)  # sum_k grad * w * g
        return None, (gw * (_LN2 / (halflife * halflife))).to(halflife.dtype), None


_LN2 = 0.6931471805599453

SCAN_FORMS = ("ewma", "sum")  # the decayed recurrences with a fused native pass (an operator's `scan_form`)


@_not_compiled  # native passes and the blocked loop: nothing for a compiler to trace
def decay_scan(
    gaps: torch.Tensor,
    halflife: torch.Tensor,
    x: torch.Tensor,
    n: int,
    form: str | None,
    coeffs: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    carry: torch.Tensor | None = None,
) -> torch.Tensor:
    """The decayed recurrence of a stateful operator over the first `n` points of a time axis with gap seconds
    `gaps`: s[k] = a[k] * s[k-1] + b[k] with (a, b) = coeffs(w, x) and w = `decay_weights_from_gaps`.

    On the CPU in float64 an operator of a known `form` ("ewma": b = (1 - w) x, "sum": b = x) runs as one fused
    C++ pass per row that keeps only its output for the backward (it recomputes the weights): ~3x less memory and
    time than weights, coefficients and scan as separate tensors. Everything else takes that general path.
    `carry` ([F, 1]): the state at point 0, carried from an earlier piece of the axis (s[0] = carry; the
    recurrence continues from it exactly as over the whole axis, and gradients reach it).
    """
    h = halflife[:, 0] if halflife.ndim == 2 and halflife.shape[1] == 1 else halflife
    f = h.shape[0] if h.ndim == 1 else -1
    x = x.expand(f, n) if x.ndim == 2 and x.shape[0] == 1 and f >= 0 else x
    if x.shape != (f, n):
        raise ValueError(
            f"x must be [F, n] = [{f}, {n}] for half-lives of shape {tuple(halflife.shape)}, got {tuple(x.shape)}"
        )
    fused = form in SCAN_FORMS and NATIVE_SCAN
    fused = fused and all(v.device.type == "cpu" and v.dtype == torch.float64 for v in (gaps, h, x))
    if not fused:
        a, b = coeffs(decay_weights_from_gaps(gaps, halflife, n), x)
        if carry is not None and n:
            b = torch.cat([carry.expand(b.shape[0], 1), b[:, 1:]], dim=1)  # s[0] = b[0] = carry
        return linear_scan(a, b)
    if carry is not None and n:  # both fused forms set s[0] = x[0] (w[0] = 0)
        x = torch.cat([carry.expand(f, 1), x[:, 1:]], dim=1)
    return _DecayScan.apply(gaps[: max(n - 1, 0)], h, x, form == "ewma")


class _DecayScan(torch.autograd.Function):
    """The fused EWMA / decayed-sum recurrence (harness._native.decay_scan_forward/backward)."""

    @staticmethod
    def forward(ctx: FunctionCtx, gaps: torch.Tensor, h: torch.Tensor, x: torch.Tensor, ewma: bool) -> torch.Tensor:
        from harness import _native

        gaps, h, x = gaps.detach().contiguous(), h.detach().contiguous(), x.detach().contiguous()
        s = torch.empty_like(x)
        _native.decay_scan_forward(gaps.numpy(), h.numpy(), x.numpy(), ewma, s.numpy())
        ctx.save_for_backward(gaps, h, x, s)
        ctx.ewma = ewma  # type: ignore[attr-defined]
        return s

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_s: torch.Tensor) -> tuple[None, torch.Tensor | None, torch.Tensor | None, None]:
        from harness import _native

        gaps, h, x, s = ctx.saved_tensors  # type: ignore[attr-defined]
        need_h, need_x = ctx.needs_input_grad[1], ctx.needs_input_grad[2]  # type: ignore[attr-defined]
        if not (need_h or need_x):
            return None, None, None, None
        g = grad_s.detach().contiguous()
        dx = torch.empty_like(x) if need_x else None
        dh = torch.empty_like(h)
        dx_np = dx.numpy() if dx is not None else None
        _native.decay_scan_backward(
            gaps.numpy(), h.numpy(), x.numpy(), s.numpy(), g.numpy(), ctx.ewma, dx_np, dh.numpy()
        )  # type: ignore[attr-defined]
        return None, dh if need_h else None, dx, None


def _check_scan_inputs(a: torch.Tensor, b: torch.Tensor, block: int) -> None:
    if not (a.is_floating_point() and b.is_floating_point()):
        raise ValueError(f"a and b must be floating point, got {a.dtype} and {b.dtype}")
    if a.dtype != b.dtype:
        raise ValueError(f"a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"a and b must be on the same device, got {a.device} and {b.device}")
    if b.ndim != 2:
        raise ValueError(f"b must have shape [F, N], got {tuple(b.shape)}")
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        shape = None
    if shape != b.shape:
        raise ValueError(f"a must broadcast to the shape of b {tuple(b.shape)}, got {tuple(a.shape)}")
    if isinstance(block, bool) or not isinstance(block, int) or block < 2:
        raise ValueError(f"block must be an integer >= 2, got {block!r}")


class _LinearScan(torch.autograd.Function):
    """s = scan(a, b) for a [1 or F, N], b [F, N]; backward by the reverse scan."""

    @staticmethod
    def forward(ctx: FunctionCtx, a: torch.Tensor, b: torch.Tensor, block: int) -> torch.Tensor:
        s = _native_scan("scan_forward", a, b)
        if s is None:
            s = _forward(a, b, block)
        ctx.save_for_backward(a, s)
        ctx.block = block  # type: ignore[attr-defined]
        return s

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_s: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        a, s = ctx.saved_tensors  # type: ignore[attr-defined]
        lam = _native_scan("scan_reverse", a, grad_s)
        if lam is None:
            lam = _reverse(a, grad_s, ctx.block)  # type: ignore[attr-defined]
        grad_a = None
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            grad_a = a.new_empty(a.shape)
            grad_a[:, 0] = 0.0  # s[-1] = 0: a[:, 0] never matters
            if a.shape[0] == s.shape[0]:
                torch.mul(lam[:, 1:], s[:, :-1], out=grad_a[:, 1:])
            else:
                torch.sum(lam[:, 1:] * s[:, :-1], dim=0, keepdim=True, out=grad_a[:, 1:])
        grad_b = lam if ctx.needs_input_grad[1] else None  # type: ignore[attr-defined]
        return grad_a, grad_b, None


def _native_scan(which: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """The scan by harness._native (one sequential C++ pass per row) for float64 CPU tensors; None elsewhere
    (other devices or dtypes take the blocked torch scheme)."""
    if a.device.type != "cpu" or a.dtype != torch.float64 or b.dtype != torch.float64 or not NATIVE_SCAN:
        return None
    from harness import _native

    a, b = a.detach().contiguous(), b.detach().contiguous()
    out = torch.empty_like(b)
    getattr(_native, which)(a.numpy(), b.numpy(), out.numpy())
    return out


NATIVE_SCAN = True  # False: the blocked torch scheme on the CPU too (tests compare both)


def _forward(a: torch.Tensor, b: torch.Tensor, block: int) -> torch.Tensor:
    """s[:, k] = a[:, k] * s[:, k-1] + b[:, k] without autograd; a is [1, N] or [F, N], b is [F, N], N >= 1."""
    f, n = b.shape
    s = b.new_empty((f, n))
    if n <= block:
        _forward_direct(a, b, s, 0, n)
        return s
    nb = n // block
    m = nb * block  # whole blocks; the tail m..n-1 continues from s[:, m-1]
    a3, b3, s3 = (x[:, :m].unflatten(1, (nb, block)) for x in (a, b, s))  # [rows, block index, position in block]
    tiles = _tiles(f, nb, block, b.device)
    for rows, cols in tiles:  # the state within each block, starting from 0
        a_g, b_g, s_g = a3[_a_rows(a, rows), cols], b3[rows, cols], s3[rows, cols]
        s_g[..., 0] = b_g[..., 0]
        for j in range(1, block):
            torch.addcmul(b_g[..., j], a_g[..., j], s_g[..., j - 1], out=s_g[..., j])
    ends = _forward(torch.prod(a3, dim=2), s3[..., -1], block)  # the true state at the end of each block
    carry = torch.nn.functional.pad(ends[:, :-1], (1, 0))  # the state entering each block
    for rows, cols in tiles:  # add the carry-in, weighted by the cumulative product of a within the block
        weight = torch.cumprod(a3[_a_rows(a, rows), cols], dim=2)
        s3[rows, cols].addcmul_(weight, carry[rows, cols, None])
    _forward_direct(a, b, s, m, n)
    return s


def _reverse(a: torch.Tensor, g: torch.Tensor, block: int) -> torch.Tensor:
    """lam[:, k] = g[:, k] + a[:, k+1] * lam[:, k+1] with lam[:, N-1] = g[:, N-1], without autograd."""
    f, n = g.shape
    lam = g.new_empty((f, n))
    if n <= block:
        _reverse_direct(a, g, lam, 0, n)
        return lam
    nb = n // block
    m = nb * block
    a3, g3, l3 = (x[:, :m].unflatten(1, (nb, block)) for x in (a, g, lam))
    tiles = _tiles(f, nb, block, g.device)
    for rows, cols in tiles:  # lam within each block, with nothing carried in from the right
        a_g, g_g, l_g = a3[_a_rows(a, rows), cols], g3[rows, cols], l3[rows, cols]
        l_g[..., -1] = g_g[..., -1]
        for j in range(block - 2, -1, -1):
            torch.addcmul(g_g[..., j], a_g[..., j + 1], l_g[..., j + 1], out=l_g[..., j])
    if m < n:  # the tail, then the last whole block again, now with the tail's carry
        _reverse_direct(a, g, lam, m, n)
        _reverse_direct(a, g, lam, m - block, m)
    # lam at the start of block i = local + link[i+1] * lam at the start of block i+1
    link = torch.zeros_like(a3[..., 0])
    torch.mul(a3[:, 1:, 0], torch.prod(a3[:, :-1, 1:], dim=2), out=link[:, 1:])
    starts = _reverse(link, l3[..., 0], block)
    carry = torch.nn.functional.pad(a3[:, 1:, 0] * starts[:, 1:], (0, 1))  # what each block receives from the next
    for rows, cols in tiles:  # add the carry-in, weighted by the product of a over the later positions of the block
        a_g, l_g, c_g = a3[_a_rows(a, rows), cols], l3[rows, cols], carry[rows, cols, None]
        weight = a_g[..., 1:].flip(-1).cumprod(-1).flip(-1)  # weight[..., j] = a[..., j+1] * ... * a[..., -1]
        l_g[..., :-1].addcmul_(weight, c_g)
        l_g[..., -1] += c_g[..., 0]
    return lam


def _forward_direct(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor, start: int, stop: int) -> None:
    """Fill s[:, start:stop] one position at a time, continuing from s[:, start-1] (or 0)."""
    for k in range(start, stop):
        if k == 0:
            s[:, 0] = b[:, 0]
        else:
            torch.addcmul(b[:, k], a[:, k], s[:, k - 1], out=s[:, k])


def _reverse_direct(a: torch.Tensor, g: torch.Tensor, lam: torch.Tensor, start: int, stop: int) -> None:
    """Fill lam[:, start:stop] one position at a time from the right, continuing from lam[:, stop] (or 0)."""
    n = g.shape[1]
    for k in range(stop - 1, start - 1, -1):
        if k == n - 1:
            lam[:, k] = g[:, k]
        else:
            torch.addcmul(g[:, k], a[:, k + 1], lam[:, k + 1], out=lam[:, k])


def _tiles(rows: int, nb: int, block: int, device: torch.device) -> list[tuple[slice, slice]]:
    """Row and block ranges cutting [rows, nb, block] into pieces of about _TILE elements, so that the steps over a
    piece stay in cache (on the CPU; elsewhere one piece)."""
    if device.type != "cpu":
        return [(slice(0, rows), slice(0, nb))]
    if nb * block >= _TILE:
        step = max(1, _TILE // block)
        return [(slice(r, r + 1), slice(i, min(nb, i + step))) for r in range(rows) for i in range(0, nb, step)]
    step = max(1, _TILE // (nb * block))
    return [(slice(r, min(rows, r + step)), slice(0, nb)) for r in range(0, rows, step)]


def _a_rows(a: torch.Tensor, rows: slice) -> slice:
    """The rows of a that go with `rows` of b: all of them (one) when a is shared."""
    return slice(0, 1) if a.shape[0] == 1 else rows
