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


def trade_pressure(
    name: str = "trade_pressure",
    *,
    pressure_halflives: Sequence[float] = (0.5, 2.0, 8.0),
    return_halflives: Sequence[float] = (1.0, 5.0, 30.0),
    impulse_distances: Sequence[float] = (1.0, 5.0),
    imbalance_levels: int = 5,
    burst_gap: float = 0.02,
    burst_timeout: float = 0.05,
    pressure: bool = True,
    penetration: bool = True,
    returns: bool = True,
    fairs: bool = True,
    learn_halflives: bool = True,
    output_scale: float = 1e-4,
) -> Circuit:
    """The flagship circuit: trade pressure from aggressor bursts, book fairs and returns, fitted end to end.

    Per signal family, each member is normalised with frozen train statistics and the family is combined by a
    learnable softmax-weighted average (`soft_bounded_sum`): decayed signed burst sizes (`pressure`) and decayed
    signed burst penetrations in bps (`penetration`), each squashed by tanh with a learnable scale; returns of
    the mid against its EWMAs (`returns`); impulse fairs relative to the mid (`fairs`, one head weight each) and
    the book imbalance over `imbalance_levels` levels (0: off). A learnable linear head turns them into the
    predicted mid return (`pred`, times `output_scale`). Half-lives of the decays are learnable unless
    `learn_halflives=False`. `mid` is recorded for the label.
    """
    from harness import lib
    from harness.circuit.node import observe
    from harness.errors import CircuitError

    c = Circuit(name)
    md = lib.market(c, exchange_time=True)
    mid = md.mid

    def halflife(pname: str, init: float) -> float | object:
        return c.parameter(pname, init=init, lower=0.01) if learn_halflives else init

    def family(prefix: str, signals: list, squash: bool) -> object:
        normed = [lib.normalize(x, f"{prefix}{i}") for i, x in enumerate(signals)]
        combined = lib.soft_bounded_sum(normed, f"{prefix}_mix") if len(normed) > 1 else normed[0]
        if squash:
            return ops.tanh(combined * c.parameter(f"{prefix}_scale", init=0.5, lower=0.01, upper=100.0))
        return combined

    terms: list = []
    if pressure or penetration:
        bursts = lib.bursts(md, gap=burst_gap, timeout=burst_timeout)
        if pressure:
            sums = lib.pressure(
                bursts.signed_amount, [halflife(f"hl_press{i}", h) for i, h in enumerate(pressure_halflives)]
            )
            terms.append(family("press", sums, squash=True))
        if penetration:
            bps = bursts.side * bursts.penetration / observe(mid) * 1e4
            sums = lib.pressure(bps, [halflife(f"hl_pen{i}", h) for i, h in enumerate(pressure_halflives)])
            terms.append(family("pen", sums, squash=True))
    if returns:
        rets = [lib.ret_vs_ewma(mid, halflife(f"hl_ret{i}", h)) for i, h in enumerate(return_halflives)]
        terms.append(family("ret", rets, squash=False))
    if fairs:
        for i, d in enumerate(impulse_distances):
            terms.append(lib.normalize((lib.impulse(md, d) - mid) / mid, f"fair{i}"))
    if imbalance_levels:
        terms.append(lib.imbalance(md, imbalance_levels))
    if not terms:
        raise CircuitError("trade_pressure: every signal family is switched off; keep at least one")
    c.output("pred", lib.linear(terms, "head") * output_scale)
    c.output("mid", mid)
    return c
