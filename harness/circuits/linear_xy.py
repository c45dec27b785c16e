"""A two-input linear circuit on plain events, for small examples and tests."""

from __future__ import annotations

from harness.circuit.builder import Circuit


def linear_xy(init: float = 0.0) -> Circuit:
    """pred = w1*x + w2*y on events with inputs x, y (trigger "tick"); both weights start at `init`."""
    c = Circuit("linear_xy")
    x, y = c.input("x"), c.input("y")
    c.trigger("tick", x, y)
    c.output("pred", c.parameter("w1", init=init) * x + c.parameter("w2", init=init) * y)
    c.output("x_out", x)
    return c
