"""Leaf node kinds made by the Circuit builder: inputs, constants, parameters, trigger events, forwards."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from harness.circuit.operator import Operator, Param
from harness.errors import CircuitError


def _any_number(x: float) -> bool:
    return True


def _not_nan(x: float) -> bool:
    return not math.isnan(x)


class InputOp(Operator):
    """An external float64 value set by the triggers that list it (list=1: a list of float64 per event,
    read only by operators that take lists, such as the order book)."""

    kind = "input"
    arity = 0
    leaf = True
    params_spec = {"list": Param(rule="0 or 1", check=lambda v: v in (0, 1), default=0, integer=True)}


def is_list_input(node: object) -> bool:
    """True for an input declared with `c.input(name, list=True)`."""
    op = getattr(node, "op", None)
    return isinstance(op, InputOp) and op.params["list"] == 1


class ConstOp(Operator):
    """A constant; always valid."""

    kind = "const"
    arity = 0
    leaf = True
    params_spec = {"value": Param(rule="a number", check=_any_number)}


class ParamOp(Operator):
    """A learnable scalar: a runtime value of the kernel, changed by set_params without recompiling."""

    kind = "param"
    arity = 0
    leaf = True
    params_spec = {
        "init": Param(rule="finite"),
        "lower": Param(rule="not nan", check=_not_nan, default=-math.inf),
        "upper": Param(rule="not nan", check=_not_nan, default=math.inf),
    }

    def check_params(self, p: Mapping[str, float]) -> None:
        lo, hi, init = p["lower"], p["upper"], p["init"]
        if not lo < hi:
            raise CircuitError(f"param: lower={lo!r} must be below upper={hi!r}")
        if not lo <= init <= hi:
            raise CircuitError(f"param: init={init!r} is outside [lower={lo!r}, upper={hi!r}]")


class EventOp(Operator):
    """1.0 in each event of one trigger and invalid otherwise (edge-triggered); see `Trigger.event`."""

    kind = "event"
    arity = 0
    leaf = True
    edge = True


class ForwardOp(Operator):
    """A forward declaration: stands for a node bound later with `Circuit.bind` (identity)."""

    kind = "forward"
    arity = 1
    leaf = True
    differentiable = True

    def f(self, p: Mapping[str, float], x: float) -> float:
        return x

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return xs[0]

    def torch_f(self, p: Mapping[str, object], *xs: object) -> object:
        return xs[0]
