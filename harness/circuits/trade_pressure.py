"""`trade_pressure`: the flagship circuit (aggressor bursts, returns, impulse fairs, imbalance, learnable mixes),
on one market or several (`markets=[...]`: per-market families plus a cross-market family)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness import lib, ops
from harness.circuit.builder import Circuit
from harness.circuit.node import Node, observe
from harness.errors import CircuitError


@dataclass(frozen=True)
class _Families:
    """Which signal families are on and their settings (the keyword arguments of `trade_pressure`)."""

    pressure_halflives: Sequence[float]
    return_halflives: Sequence[float]
    impulse_distances: Sequence[float]
    imbalance_levels: int
    burst_gap: float
    burst_timeout: float
    pressure: bool
    penetration: bool
    returns: bool
    fairs: bool
    learn_halflives: bool


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
    markets: Sequence[str] | None = None,
    cross: bool = True,
    cross_horizons: Sequence[float] = (0.5, 2.0),
) -> Circuit:
    """The flagship circuit: trade pressure from aggressor bursts, book fairs and returns, fitted end to end.

    Per signal family, each member is normalised with frozen train statistics and the family is combined by a
    learnable softmax-weighted average (`soft_bounded_sum`): decayed signed burst sizes (`pressure`) and decayed
    signed burst penetrations in bps (`penetration`), each squashed by tanh with a learnable scale; returns of
    the mid against its EWMAs (`returns`); impulse fairs relative to the mid (`fairs`, one head weight each) and
    the book imbalance over `imbalance_levels` levels (0: off). A learnable linear head turns them into the
    predicted mid return (`pred`, times `output_scale`). Half-lives of the decays are learnable unless
    `learn_halflives=False`. `mid` is recorded for the label.

    `markets=[a, b, ...]`: one circuit over several markets (streams read with `market=`). The families are
    built per market on its own events (parameters prefixed `<market>_`); `pred` predicts market `a` (the first).
    Each other market b adds, read on a's events (observed), its own families through a linear head of its own
    (`<b>_head`: b's prediction, consumed) and with `cross` a cross-market family through `x_<b>_head`: the
    basis of a against b (bps), b's mid return over each of `cross_horizons` seconds (bps) and b's decayed signed
    trade flow (lead-lag pressure, at the pressure half-lives), each normalised with frozen train statistics.
    Each market's mid is recorded as `<market>.mid` (label it with `task.label.market`).
    """
    fam = _Families(
        pressure_halflives, return_halflives, impulse_distances, imbalance_levels, burst_gap, burst_timeout,
        pressure, penetration, returns, fairs, learn_halflives,
    )  # fmt: skip
    c = Circuit(name)
    if markets is None:
        md = lib.market(c, exchange_time=True)
        terms = _market_terms(c, md, "", fam)
        if not terms:
            raise CircuitError("trade_pressure: every signal family is switched off; keep at least one")
        c.output("pred", lib.linear(terms, "head") * output_scale)
        c.output("mid", md.mid)
        return c
    names = _check_markets(markets)
    mds = {m: lib.market(c, exchange_time=True, market=m) for m in names}
    first = mds[names[0]]
    terms = _market_terms(c, first, f"{names[0]}_", fam)
    if not terms:
        raise CircuitError("trade_pressure: every signal family is switched off; keep at least one")
    pred = lib.linear(terms, "head")
    for m in names[1:]:
        pred = pred + observe(lib.linear(_market_terms(c, mds[m], f"{m}_", fam), f"{m}_head", bias=False))
        if cross:
            xs = _cross_terms(c, first, mds[m], f"x_{m}_", fam, cross_horizons)
            pred = pred + observe(lib.linear(xs, f"x_{m}_head", bias=False))
    c.output("pred", pred * output_scale)
    for m, md in mds.items():
        c.output(f"{m}.mid", md.mid)
    return c


def _check_markets(markets: Sequence[str]) -> list[str]:
    """`markets` as a list of distinct names (at least one); CircuitError naming a repeated one."""
    names = [markets] if isinstance(markets, str) else list(markets)
    if not names:
        raise CircuitError("trade_pressure: markets=[] names no market; leave it unset for one market without a name")
    twice = sorted({m for m in names if names.count(m) > 1})
    if twice:
        raise CircuitError(f"trade_pressure: markets {twice} are named twice in markets={names}")
    return names


def _halflife(c: Circuit, fam: _Families, pname: str, init: float) -> float | Node:
    return c.parameter(pname, init=init, lower=0.01) if fam.learn_halflives else init


def _family(c: Circuit, prefix: str, signals: list, squash: bool) -> Node:
    normed = [lib.normalize(x, f"{prefix}{i}") for i, x in enumerate(signals)]
    combined = lib.soft_bounded_sum(normed, f"{prefix}_mix") if len(normed) > 1 else normed[0]
    if squash:
        return ops.tanh(combined * c.parameter(f"{prefix}_scale", init=0.5, lower=0.01, upper=100.0))
    return combined


def _market_terms(c: Circuit, md: lib.Market, p: str, fam: _Families) -> list[Node]:
    """The signal families of one market, computed on its own events (parameter names prefixed `p`)."""
    mid = md.mid
    terms: list[Node] = []
    if fam.pressure or fam.penetration:
        bursts = lib.bursts(md, gap=fam.burst_gap, timeout=fam.burst_timeout)
        hls = [(i, h) for i, h in enumerate(fam.pressure_halflives)]
        if fam.pressure:
            sums = lib.pressure(bursts.signed_amount, [_halflife(c, fam, f"{p}hl_press{i}", h) for i, h in hls])
            terms.append(_family(c, f"{p}press", sums, squash=True))
        if fam.penetration:
            bps = bursts.side * bursts.penetration / observe(mid) * 1e4
            sums = lib.pressure(bps, [_halflife(c, fam, f"{p}hl_pen{i}", h) for i, h in hls])
            terms.append(_family(c, f"{p}pen", sums, squash=True))
    if fam.returns:
        rets = [lib.ret_vs_ewma(mid, _halflife(c, fam, f"{p}hl_ret{i}", h)) for i, h in enumerate(fam.return_halflives)]
        terms.append(_family(c, f"{p}ret", rets, squash=False))
    if fam.fairs:
        for i, d in enumerate(fam.impulse_distances):
            terms.append(lib.normalize((lib.impulse(md, d) - mid) / mid, f"{p}fair{i}"))
    if fam.imbalance_levels:
        terms.append(lib.imbalance(md, fam.imbalance_levels))
    return terms


def _cross_terms(
    c: Circuit, a: lib.Market, b: lib.Market, p: str, fam: _Families, horizons: Sequence[float]
) -> list[Node]:
    """The cross-market family of market b for predicting market a: the basis of a against b, b's returns over
    `horizons` and b's lead-lag pressure, each normalised with frozen train statistics."""
    terms = [lib.normalize(lib.basis(a, b), f"{p}basis")]
    for i, h in enumerate(horizons):
        terms.append(lib.normalize(lib.market_return(b, h), f"{p}ret{i}"))
    hls = [_halflife(c, fam, f"{p}hl_lead{i}", h) for i, h in enumerate(fam.pressure_halflives)]
    for i, s in enumerate(lib.pressure(b.signed_amount, hls)):
        terms.append(lib.normalize(s, f"{p}lead{i}"))
    return terms
