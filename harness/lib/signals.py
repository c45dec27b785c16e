"""Market signals composed from operators: book, trade, return and combination signals (`hs.lib.*`).

Each function builds nodes on the circuit of its inputs; operators with state of their own (the impulse fair,
bursts) are classes in `impulse.py` and `bursts.py`, everything else is a composition of `hs.ops`, so its
reference, C++ and torch forms are those of the operators it is made of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness import ops
from harness.circuit.node import Node, Observed, observe
from harness.circuit.operator import find_circuit
from harness.errors import CircuitError
from harness.lib.bursts import BurstField, Bursts
from harness.lib.impulse import Impulse
from harness.lib.market import BookView, Market

Value = Node | Observed | float
Tunable = float | Node


# ----- book -------------------------------------------------------------------------------------------------
def imbalance(book: BookView, levels: int = 1) -> Node:
    """(bid depth - ask depth) / (bid depth + ask depth) over the best `levels` levels, in [-1, 1]."""
    bid, ask = book.bid_depth(levels), book.ask_depth(levels)
    return (bid - ask) / (bid + ask)


def band_depth(book: BookView, width: float) -> tuple[Node, Node]:
    """(bid, ask) sizes of the levels within `width` (price units) of each side's best price."""
    return book.field("bid_band", width=width), book.field("ask_band", width=width)


def impulse(md: BookView, distance: float, *, recompute_every: int = 256, reanchor: float = 30.0) -> Node:
    """The impulse fair price of the book (see `harness.lib.impulse`): ref + d*ln(B/A)/2 with sizes weighted
    by exp(-|price - ref| / distance). It reads the levels of the book of `md` (`hs.lib.market(c)` or
    `hs.lib.book(...)`): several impulses share one set of levels."""
    if not isinstance(md, BookView):
        raise CircuitError("impulse: pass the book, e.g. the Market returned by hs.lib.market(c)")
    return Impulse(distance=distance, recompute_every=recompute_every, reanchor=reanchor)(md.node)


# ----- trades -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BurstView:
    """A burst detector node and the fields of the burst that completed in an event (edge-triggered)."""

    node: Node

    def field(self, name: str) -> Node:
        """One field of `harness.lib.bursts.BURST_FIELDS`."""
        return BurstField(field=name)(self.node)

    @property
    def side(self) -> Node:
        """+1 for a buyer-initiated burst, -1 for a seller-initiated one."""
        return self.field("side")

    @property
    def amount(self) -> Node:
        """Total traded amount of the burst."""
        return self.field("amount")

    @property
    def signed_amount(self) -> Node:
        """side * amount: the burst's size score."""
        return self.field("signed_amount")

    @property
    def trades(self) -> Node:
        """Number of fills."""
        return self.field("trades")

    @property
    def vwap(self) -> Node:
        """Volume-weighted average price of the fills."""
        return self.field("vwap")

    @property
    def extreme_price(self) -> Node:
        """The farthest price the burst traded at (highest for buys, lowest for sells)."""
        return self.field("extreme_price")

    @property
    def penetration(self) -> Node:
        """side * (extreme price - fair at the first fill): how far through the book it traded."""
        return self.field("penetration")

    @property
    def duration(self) -> Node:
        """Exchange-time span of the burst in seconds."""
        return self.field("duration")


def bursts(md: Market, *, gap: float = 0.05, timeout: float | None = None, fair: Value | None = None) -> BurstView:
    """Aggressor bursts of the market's trades (see `harness.lib.bursts`): a burst ends on a side flip, an
    exchange-time gap over `gap` seconds, or `timeout` seconds (default `gap`) after its last fill. `fair` (an
    observed price, default the mid) scores how far each burst traded through the book."""
    if md.trade_exchange_time is None:
        raise CircuitError("bursts: declare the market with hs.lib.market(c, exchange_time=True)")
    ref = observe(md.mid) if fair is None else (fair if isinstance(fair, Observed) else observe(fair))  # type: ignore[arg-type]
    op = Bursts(gap=gap, timeout=gap if timeout is None else timeout)
    return BurstView(op(md.trade_price, md.trade_amount, md.trade_side, md.trade_exchange_time, ref))


def pressure(x: Value, halflives: Sequence[Tunable]) -> list[Node]:
    """Decayed sums of `x` (e.g. a burst's signed amount), one per half-life (numbers or parameters)."""
    return [ops.decay_sum(x, halflife=h) for h in halflives]


# ----- across markets ---------------------------------------------------------------------------------------
BPS = 1e4  # basis points per unit of a relative difference


def basis(a: BookView, b: BookView) -> Node:
    """(mid of `a` - mid of `b`) / mid of `b`, in bps: updates on either market's book (valid while both mids
    are); e.g. perpetual against spot, `hs.lib.basis(perp, spot)`."""
    if not isinstance(a, BookView) or not isinstance(b, BookView):
        raise CircuitError("basis: pass two books, e.g. the Markets returned by hs.lib.market(c, market=...)")
    return (a.mid - b.mid) / b.mid * BPS


def past_return(x: Node, horizon: float) -> Node:
    """x / (x as of `horizon` seconds ago) - 1, in bps: the return over the last `horizon` seconds, exact at
    every event (`hs.ops.lag`); `hs.observe(hs.lib.past_return(spot.mid, 1.0))` reads the other market's return
    on this market's events."""
    return (x / ops.lag(x, seconds=horizon) - 1.0) * BPS


def market_return(md: BookView, horizon: float) -> Node:
    """The mid return of market `md` over the last `horizon` seconds, in bps (`past_return` of its mid)."""
    return past_return(md.mid, horizon)


def lead_pressure(b: Market, halflives: Sequence[Tunable]) -> list[Observed]:
    """Market `b`'s decayed signed trade flow, one decayed sum per half-life (numbers or parameters), observed:
    to be read on another market's events (lead-lag pressure: b's flow as of its last trade, not triggering)."""
    if not isinstance(b, Market):
        raise CircuitError("lead_pressure: pass the leading market, e.g. hs.lib.market(c, market='perp')")
    return [observe(s) for s in pressure(b.signed_amount, halflives)]


def consume(pred: Node) -> Observed:
    """Another market's prediction (a node computed on its events), observed: read on this market's events as
    a feature of its own head, e.g. `hs.lib.linear([..., hs.lib.consume(spot_pred)], "head")`."""
    if not isinstance(pred, Node):
        raise CircuitError(f"consume: pass a prediction node, got {type(pred).__name__}")
    return observe(pred)


# ----- returns and transforms -------------------------------------------------------------------------------
def ret_vs_ewma(x: Value, halflife: Tunable) -> Node:
    """x / ewma(x, halflife) - 1: the return of a signal against its own average."""
    return x / ops.ewma(x, halflife=halflife) - 1.0


def diff_to_ewma(x: Value, halflife: Tunable) -> Node:
    """x - ewma(x, halflife)."""
    return x - ops.ewma(x, halflife=halflife)


def bbo_returns(book: BookView, halflife: Tunable) -> tuple[Node, Node]:
    """(bid, ask) returns against their own EWMAs: the two sides of the book move separately."""
    return ret_vs_ewma(book.bid_price, halflife), ret_vs_ewma(book.ask_price, halflife)


def normalize(x: Node, name: str) -> Node:
    """(x - mean) / std with mean and std frozen from the training rows (statistics `<name>_mean`, `<name>_std`
    set by the fit before training, not by gradient; 0 and 1 until then)."""
    c = x.circuit
    return (x - c.statistic(f"{name}_mean", x, "mean")) / c.statistic(f"{name}_std", x, "std")


def discount_by(x: Value, by: Value, rate: Tunable = 1.0) -> Node:
    """x * exp(-rate * by): shrink a signal by a quantity such as its age or the spread (rate may be learnable)."""
    return x * ops.exp(-(rate * by))  # type: ignore[operator]


def soft_bounded_sum(xs: Sequence[Value], name: str, init: Sequence[float] | None = None) -> Node:
    """sum_i softmax(w)_i * x_i with learnable w (`<name>_w<i>`): a weighted average of the inputs that stays
    within their range."""
    xs = list(xs)
    if not xs:
        raise CircuitError("soft_bounded_sum: needs at least one input")
    c = find_circuit("soft_bounded_sum", xs)
    init = list(init) if init is not None else [0.0] * len(xs)
    if len(init) != len(xs):
        raise CircuitError(f"soft_bounded_sum: {len(xs)} inputs but {len(init)} initial weights")
    e = [ops.exp(c.parameter(f"{name}_w{i}", init=w)) for i, w in enumerate(init)]
    return ops.linear(xs, e) / ops.tree_sum(e)


LINEAR_INIT_SCALE = 0.1  # linear's weights start within this fraction of Glorot's bound: small, but not 0


def linear(xs: Sequence[Value], name: str, *, bias: bool = True, init: float | None = None, seed: int = 0) -> Node:
    """sum_i w_i * x_i (+ b) with learnable weights `<name>_w<i>` (and bias `<name>_b`, starting at 0).

    The weights start at small seeded draws, uniform within +-0.1 * sqrt(6 / (n + 1)) (a tenth of Glorot's
    bound): the head predicts about 0 at the start, yet every learnable parameter upstream gets a gradient from
    the first step (with every weight at 0 none does). `init` starts every weight at that number instead."""
    xs = list(xs)
    c = find_circuit("linear", xs)
    if init is None:
        bound = LINEAR_INIT_SCALE * float(np.sqrt(6.0 / (len(xs) + 1)))
        starts = [float(v) for v in np.random.default_rng(seed).uniform(-bound, bound, len(xs))]
    else:
        starts = [float(init)] * len(xs)
    w = [c.parameter(f"{name}_w{i}", init=v) for i, v in enumerate(starts)]
    return ops.linear(xs, w, bias=c.parameter(f"{name}_b", init=0.0) if bias else 0.0)


def mlp(xs: Sequence[Value], name: str, hidden: Sequence[int] = (4,), *, seed: int = 0) -> Node:
    """A small perceptron: tanh hidden layers of the given widths, then a linear output; weights are parameters
    `<name>_l<k>_w<j>_<i>`, biases `<name>_l<k>_b<j>`, initialised from a seeded Glorot-uniform draw."""
    xs = list(xs)
    c = find_circuit("mlp", xs)
    rng = np.random.default_rng(seed)
    layer: list[Value] = xs
    widths = [*hidden, 1]
    for k, width in enumerate(widths):
        bound = float(np.sqrt(6.0 / (len(layer) + width)))
        outs = []
        for j in range(width):
            w = [
                c.parameter(f"{name}_l{k}_w{j}_{i}", init=float(rng.uniform(-bound, bound))) for i in range(len(layer))
            ]
            z = ops.linear(layer, w, bias=c.parameter(f"{name}_l{k}_b{j}", init=0.0))
            outs.append(ops.tanh(z) if k < len(widths) - 1 else z)
        layer = outs
    return layer[0]  # type: ignore[return-value]


def tree_min(xs: Sequence[Value]) -> Node:
    """The minimum of the inputs (a balanced tree of pairwise minima; nan if any is nan)."""
    xs = list(xs)
    return ops.min(*xs) if len(xs) > 1 else _single("tree_min", xs)


def tree_max(xs: Sequence[Value]) -> Node:
    """The maximum of the inputs (a balanced tree of pairwise maxima; nan if any is nan)."""
    xs = list(xs)
    return ops.max(*xs) if len(xs) > 1 else _single("tree_max", xs)


def _single(what: str, xs: list[Value]) -> Node:
    if not xs or not isinstance(xs[0], Node):
        raise CircuitError(f"{what}: needs at least one node")
    return xs[0]


tanh = ops.tanh  # the true hyperbolic tangent (libm), differentiable
