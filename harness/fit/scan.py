"""Differentiable first-order linear recurrences in pure torch, for fitting decay half-lives.

`linear_scan` evaluates s[k] = a[k] * s[k-1] + b[k] (s[-1] = 0) along the last axis of a batch of sequences with a
blocked, multi-level scheme: a Python loop over the positions of a block (vectorised over all blocks and the batch),
then the same recurrence over the block ends, recursively. Every factor is a decay in [0, 1], so nothing is rescaled
and nothing can overflow, whatever the length or the half-life; autograd gives gradients for both a and b.
`decay_weights` builds the factors a = 2^(-dt/halflife) exactly as the C++ kernel computes them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as fn

__all__ = ["decay_weights", "linear_scan"]


def linear_scan(a: torch.Tensor, b: torch.Tensor, *, block: int = 64) -> torch.Tensor:
    """Return s of shape [F, N] with s[:, k] = a[:, k] * s[:, k-1] + b[:, k] and s[:, -1] = 0.

    `b` is [F, N]; `a` broadcasts to it ([F, N] or [1, N]) and should lie in [0, 1] (a = 0 resets the state), which
    keeps every intermediate product bounded: the result is stable for any N and any half-life. The sequence is cut
    into blocks of `block` positions; the cost is about N/block vectorised steps per level, with log_block(N) levels.
    Differentiable in both `a` and `b`.
    """
    _check_scan_inputs(a, b, block)
    f, n = b.shape
    a = a.expand(f, n)
    if n == 0:
        return a * b  # empty [F, 0], still attached to the graph
    return _scan(a, b, block)


def decay_weights(t: torch.Tensor, halflife: torch.Tensor) -> torch.Tensor:
    """Return the decay factors a[F, N] for event times `t` (int64 ns, [N]) and half-lives in seconds ([F] or [F, 1]).

    a[:, 0] = 0 (the first sample initialises the state) and a[:, k] = 2^(-((t[k] - t[k-1]) / 1e9) / halflife): the
    gap is taken in int64 and converted to seconds by one division, the same operations in the same order as
    `harness.ops.numeric.decay_weight` and the C++ kernel. Differentiable in `halflife`.
    """
    if t.dtype != torch.int64 or t.ndim != 1:
        raise ValueError(f"t must be a 1-D int64 tensor of nanoseconds, got {t.dtype} of shape {tuple(t.shape)}")
    if not halflife.is_floating_point():
        raise ValueError(f"halflife must be floating point, got {halflife.dtype}")
    if halflife.ndim == 2 and halflife.shape[1] == 1:
        halflife = halflife[:, 0]
    if halflife.ndim != 1:
        raise ValueError(f"halflife must have shape [F] or [F, 1], got {tuple(halflife.shape)}")
    dt_ns = torch.diff(t)
    if bool((dt_ns < 0).any()):
        raise ValueError("t must be non-decreasing")
    dt_s = dt_ns.to(torch.float64) / 1e9
    weights = torch.exp2(-dt_s / halflife[:, None])  # [F, N-1]
    first = weights.new_zeros((halflife.shape[0], min(t.shape[0], 1)))
    return torch.cat([first, weights], dim=1)


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
        raise ValueError(f"a must broadcast to b's shape {tuple(b.shape)}, got {tuple(a.shape)}")
    if isinstance(block, bool) or not isinstance(block, int) or block < 2:
        raise ValueError(f"block must be an integer >= 2, got {block!r}")


def _scan(a: torch.Tensor, b: torch.Tensor, block: int) -> torch.Tensor:
    """The recurrence along dim 1 of [F, N] tensors, N >= 1."""
    f, n = b.shape
    if n <= block:
        return _sequential(a.t(), b.t()).t()
    n_blocks = -(-n // block)
    pad = n_blocks * block - n
    if pad:  # padding after the end changes nothing before it
        a = fn.pad(a, (0, pad), value=1.0)
        b = fn.pad(b, (0, pad), value=0.0)
    # [F, n_blocks, block] -> [block, F, n_blocks]: each step of the loop reads one contiguous slice.
    a_t = a.reshape(f, n_blocks, block).permute(2, 0, 1).contiguous()
    b_t = b.reshape(f, n_blocks, block).permute(2, 0, 1).contiguous()
    local = _sequential(a_t, b_t)  # the state within each block, starting from 0
    carry_weight = torch.cumprod(a_t, dim=0)  # the weight of the carry-in at each position, in [0, 1]
    ends = _scan(carry_weight[-1], local[-1], block)  # the true state at the end of each block
    carry_in = fn.pad(ends[:, :-1], (1, 0))  # [F, n_blocks]: the state before each block
    s = torch.addcmul(local, carry_weight, carry_in)
    return s.permute(1, 2, 0).reshape(f, n_blocks * block)[:, :n]


def _sequential(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The recurrence along dim 0, one vectorised step per position (the state before position 0 is 0)."""
    state = b[0]
    states = [state]
    for k in range(1, b.shape[0]):
        state = torch.addcmul(b[k], a[k], state)
        states.append(state)
    return torch.stack(states)
