"""Example circuits: the seed scenarios; the production circuits (`fit_market`, `trade_pressure`, the demo's and
benchmarks' pressure circuits) live in `harness.circuits` and are re-exported here under their old names."""

from __future__ import annotations

from harness.circuit.builder import Circuit
from harness.circuits import FIT_MARKET_SIGNALS, fit_market, l1_pressure, linear_xy, market_pressure, trade_pressure

__all__ = [
    "FIT_MARKET_SIGNALS",
    "add_two",
    "fit_market",
    "l1_pressure",
    "linear_xy",
    "market_pressure",
    "trade_pressure",
    "wide_add",
]


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
