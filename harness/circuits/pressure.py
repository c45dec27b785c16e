"""Pressure circuits of the demo and the kernel benchmarks: `l1_pressure` (L1 events) and `market_pressure`."""

from __future__ import annotations

from harness import lib, ops
from harness.circuit.builder import Circuit


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
    c = Circuit("market_pressure")
    md = lib.market(c)
    bid, ask = md.bid_depth(levels), md.ask_depth(levels)
    c.output("mid", md.mid)
    c.output("spread", md.spread)
    c.output("imbalance", (bid - ask) / (bid + ask))
    c.output("pressure", ops.tanh(ops.decay_sum(md.signed_amount, halflife=halflife_pressure)))
    return c
