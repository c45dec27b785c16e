"""Stateless elementwise operators. Each class is the numeric spec of one operator (reference form `f`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from harness.circuit.operator import Operator, Param
from harness.errors import CircuitError
from harness.ops import numeric as nm


class Stateless(Operator):
    """Base for pure functions of the current input values: invalid when any input is invalid."""

    differentiable = True


class Add(Stateless):
    """a + b"""

    kind, arity, symmetric = "add", 2, True

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return a + b


class Sub(Stateless):
    """a - b"""

    kind, arity = "sub", 2

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return a - b


class Mul(Stateless):
    """a * b"""

    kind, arity, symmetric = "mul", 2, True

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return a * b


class Div(Stateless):
    """a / b with IEEE results for b = 0 (±inf, nan for 0/0): a valid output, not an error."""

    kind, arity = "div", 2

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return nm.div(a, b)


class Neg(Stateless):
    """-x"""

    kind = "neg"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return -x


class Abs(Stateless):
    """|x|"""

    kind = "abs"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return math.fabs(x)


class Exp(Stateless):
    """e**x (inf on overflow)"""

    kind = "exp"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.exp(x)


class Log(Stateless):
    """Natural log: -inf at 0, nan below 0."""

    kind = "log"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.log(x)


class Sqrt(Stateless):
    """Square root: nan below 0."""

    kind = "sqrt"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.sqrt(x)


class Tanh(Stateless):
    """Hyperbolic tangent."""

    kind = "tanh"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.tanh(x)


class Sigmoid(Stateless):
    """1 / (1 + e^-x), computed without overflow."""

    kind = "sigmoid"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.sigmoid(x)


class Relu(Stateless):
    """max(x, 0); nan stays nan."""

    kind = "relu"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.relu(x)


class Min(Stateless):
    """Minimum of two values; nan if either is nan; for equal values (0.0 and -0.0) the second."""

    kind, arity = "min", 2

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return nm.fmin(a, b)


class Max(Stateless):
    """Maximum of two values; nan if either is nan; for equal values (0.0 and -0.0) the second."""

    kind, arity = "max", 2

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return nm.fmax(a, b)


class Clamp(Stateless):
    """x limited to [lo, hi] (lo, hi tunable); nan stays nan."""

    kind = "clamp"
    params_spec = {
        "lo": Param(rule="not nan", check=lambda v: not math.isnan(v), tunable=True),
        "hi": Param(rule="not nan", check=lambda v: not math.isnan(v), tunable=True),
    }

    def check_params(self, p: Mapping[str, float]) -> None:
        if not p["lo"] <= p["hi"]:
            raise CircuitError(f"clamp: parameter lo={p['lo']!r} must be <= hi={p['hi']!r}")

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.clamp(x, p["lo"], p["hi"])


class Select(Stateless):
    """`a` where cond != 0, else `b`. Valid when cond and the chosen branch are valid."""

    kind, arity = "select", 3
    differentiable = False

    def ref(self, p: Mapping[str, float], xs: Sequence[float | None]) -> float | None:
        cond, a, b = xs
        if cond is None:
            return None
        return a if cond != 0.0 else b


class Compare(Stateless):
    """Base of comparisons: 1.0 when the relation holds, else 0.0 (false for any nan)."""

    arity = 2
    differentiable = False


class Lt(Compare):
    """a < b"""

    kind = "lt"

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a < b else 0.0


class Le(Compare):
    """a <= b"""

    kind = "le"

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a <= b else 0.0


class Gt(Compare):
    """a > b"""

    kind = "gt"

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a > b else 0.0


class Ge(Compare):
    """a >= b"""

    kind = "ge"

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a >= b else 0.0


class Eq(Compare):
    """a == b"""

    kind, symmetric = "eq", True

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a == b else 0.0


class Ne(Compare):
    """a != b (1.0 when either is nan)"""

    kind, symmetric = "ne", True

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a != b else 0.0


BINARY: dict[str, type[Operator]] = {op.kind: op for op in (Add, Sub, Mul, Div, Min, Max, Lt, Le, Gt, Ge, Eq, Ne)}
UNARY: dict[str, type[Operator]] = {op.kind: op for op in (Neg, Abs, Exp, Log, Sqrt, Tanh, Sigmoid, Relu)}
