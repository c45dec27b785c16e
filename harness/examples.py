"""Example circuits: the seed scenarios and the L1 pressure circuit used by the demo and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

from harness import ops
from harness.circuit.builder import Circuit


def add_two() -> Circuit:
    """Seed scenario "add two numbers": inputs a, b; trigger ab sets both; output sum = a + b."""
    c = Circuit("add_two")
    a, b = c.input("a"), c.input("b")
    c.trigger("ab", a, b)
    c.output("sum", a + b)
    return c


def wide_add() -> Circuit:
    """Seed scenario "wide trigger add": ab = a + b (trigger ab), out = ab + c (trigger c)."""
    c = Circuit("wide_add")
    a, b, x = c.input("a"), c.input("b"), c.input("c")
    c.trigger("ab", a, b)
    c.trigger("c", x)
    c.output("out", (a + b) + x)
    return c


def l1_pressure(halflife_mid: float = 1.0, halflife_pressure: float = 0.5) -> Circuit:
    """The benchmark circuit: book imbalance, mid against its EWMA and decayed trade pressure, squashed.

    out = tanh(0.5*imb + 1000*(mid - ewma(mid))/mid + 0.002*decay_sum(signed_size)), recorded every event.
    Inputs match `hs.streams.l1_events`: trigger book (bid, ask, bid_size, ask_size), trade (signed_size).
    """
    c = Circuit("l1_pressure")
    bid, ask, bsz, asz = c.input("bid"), c.input("ask"), c.input("bid_size"), c.input("ask_size")
    signed = c.input("signed_size")
    c.trigger("book", bid, ask, bsz, asz)
    c.trigger("trade", signed)
    mid = (bid + ask) / 2.0
    imb = (bsz - asz) / (bsz + asz)
    e = ops.ewma(mid, halflife=halflife_mid)
    tp = ops.decay_sum(signed, halflife=halflife_pressure)
    c.output("out", ops.tanh(0.5 * imb + 1000.0 * (mid - e) / mid + 0.002 * tp))
    return c


def market_pressure(halflife_pressure: float = 1.0, levels: int = 5) -> Circuit:
    """The main job's circuit on market events (`hs.lib.market`): L2 book fields and decayed trade pressure.

    Outputs: mid, spread, imbalance of the best `levels` levels, and tanh of the decayed signed trade flow
    (the synthetic generator moves the mid in the direction of recent flow, so pressure predicts returns).
    """
    from harness import lib  # deferred: harness.lib imports the circuit package like this module does

    c = Circuit("market_pressure")
    md = lib.market(c)
    bid, ask = md.bid_depth(levels), md.ask_depth(levels)
    c.output("mid", md.mid)
    c.output("spread", md.spread)
    c.output("imbalance", (bid - ask) / (bid + ask))
    c.output("pressure", ops.tanh(ops.decay_sum(md.signed_amount, halflife=halflife_pressure)))
    return c


FIT_MARKET_SIGNALS = ("pressure", "mid_dev", "imbalance")


def fit_market(
    name: str = "fit_market",
    *,
    halflife_pressure: float = 0.5,
    halflife_mid: float = 2.0,
    learn_halflives: bool = True,
    signals: Sequence[str] = FIT_MARKET_SIGNALS,
    output_scale: float = 1e-4,
) -> Circuit:
    """A learnable market circuit: decayed signed flow and mid-vs-EWMA with learnable half-lives, imbalance.

    pred = output_scale * (w0*tanh(scale*decay_sum(signed_amount, hl_press)) + w1*(mid - ewma(mid, hl_mid))/mid
    + w2*imbalance) over the chosen `signals`, a predicted mid return; `mid` is recorded for the label.
    With `learn_halflives=False` the half-lives are constants. Used by the main job, the fit tests and benchmarks.
    """
    from harness import lib
    from harness.errors import CircuitError

    unknown = sorted(set(signals) - set(FIT_MARKET_SIGNALS))
    if unknown or not signals:
        raise CircuitError(
            f"fit_market: signals {list(signals)} must be a non-empty subset of {list(FIT_MARKET_SIGNALS)}"
        )
    c = Circuit(name)
    md = lib.market(c)

    def halflife(pname: str, init: float) -> float | object:
        return c.parameter(pname, init=init, lower=0.01) if learn_halflives else init

    terms = []
    if "pressure" in signals:
        scale = c.parameter("scale", init=1.0, lower=0.01, upper=100.0)
        press = ops.decay_sum(md.signed_amount, halflife=halflife("hl_press", halflife_pressure))
        terms.append(ops.tanh(press * scale))
    if "mid_dev" in signals:
        terms.append((md.mid - ops.ewma(md.mid, halflife=halflife("hl_mid", halflife_mid))) / md.mid)
    if "imbalance" in signals:
        terms.append((md.bid_size - md.ask_size) / (md.bid_size + md.ask_size))
    w = [c.parameter(f"w{i}", init=0.0) for i in range(len(terms))]
    c.output("pred", ops.linear(terms, w) * output_scale)
    c.output("mid", md.mid)
    return c
