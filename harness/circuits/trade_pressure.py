"""`trade_pressure`: the flagship circuit (aggressor bursts, returns, impulse fairs, imbalance, learnable mixes)."""

from __future__ import annotations

from collections.abc import Sequence

from harness import lib, ops
from harness.circuit.builder import Circuit
from harness.circuit.node import observe
from harness.errors import CircuitError


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
