"""`fit_market`: a learnable market circuit (decayed flow, mid against its EWMA, imbalance, a linear head)."""

from __future__ import annotations

from collections.abc import Sequence

from harness import lib, ops
from harness.circuit.builder import Circuit
from harness.errors import CircuitError

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
