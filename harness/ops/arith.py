"""Stateless elementwise operators. Each class is the numeric spec of one operator: its reference form `f`, its
C++ form (`cpp`, or `twin`: the function of cpp/harness/numeric.hpp that computes `f` bit for bit) and, where
differentiable, its torch form `torch_f` (tensors in, tensor out; parameters arrive as tensors that broadcast
against the inputs, so one form serves single and folded evaluation). Defining a class here registers it and
makes the `hs.ops` function of its kind; its docstring is that function's."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.circuit.operator import Operator, Param
from harness.errors import CircuitError
from harness.ops import numeric as nm


class Stateless(Operator):
    """Base for pure functions of the current input values: invalid when any input is invalid."""

    differentiable = True


class Add(Stateless):
    """a + b"""

    kind, arity, symmetric, symbol = "add", 2, True, "+"

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return a + b

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} + {xs[1]})"

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        return xs[0] + xs[1]


class Sub(Stateless):
    """a - b"""

    kind, arity, symbol = "sub", 2, "-"

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return a - b

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} - {xs[1]})"

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        return xs[0] - xs[1]


class Mul(Stateless):
    """a * b"""

    kind, arity, symmetric, symbol = "mul", 2, True, "*"

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return a * b

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} * {xs[1]})"

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        return xs[0] * xs[1]


class Div(Stateless):
    """a / b with IEEE results for b = 0 (±inf, nan for 0/0): a valid output, not an error."""

    kind, arity, symbol = "div", 2, "/"

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return nm.div(a, b)

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} / {xs[1]})"

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        return xs[0] / xs[1]


class Neg(Stateless):
    """-x"""

    kind, symbol = "neg", "-"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return -x

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"(-{xs[0]})"

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        return -xs[0]


class Abs(Stateless):
    """|x|"""

    kind, symbol = "abs", "abs"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return math.fabs(x)

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"std::fabs({xs[0]})"

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.abs(xs[0])


class Exp(Stateless):
    """e**x (inf on overflow)"""

    kind = twin = "exp"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.exp(x)

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.exp(xs[0])

    vector_cpp = "hs::vec::exp"  # in-place over an array: vector_math kernels apply it to output blocks


class Log(Stateless):
    """Natural log: -inf at 0, nan below 0."""

    kind = twin = "log"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.log(x)

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.log(xs[0])

    vector_cpp = "hs::vec::log"  # in-place over an array: vector_math kernels apply it to output blocks


class Sqrt(Stateless):
    """Square root: nan below 0."""

    kind = twin = "sqrt"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.sqrt(x)

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.sqrt(xs[0])


class Tanh(Stateless):
    """Hyperbolic tangent."""

    kind = twin = "tanh"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.tanh(x)

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.tanh(xs[0])

    vector_cpp = "hs::vec::tanh"  # in-place over an array: vector_math kernels apply it to output blocks


class Sigmoid(Stateless):
    """Logistic function 1 / (1 + e^-x), computed without overflow."""

    kind = twin = "sigmoid"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.sigmoid(x)

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.sigmoid(xs[0])


class Relu(Stateless):
    """max(x, 0); nan stays nan."""

    kind = twin = "relu"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.relu(x)

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.relu(xs[0])


class Softplus(Stateless):
    """log(1 + e^x), a smooth relu, computed without overflow as max(x, 0) + log1p(e^-|x|); nan stays nan."""

    kind = twin = "softplus"

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.relu(x) + math.log1p(nm.exp(-math.fabs(x)))

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.logaddexp(xs[0], torch.zeros_like(xs[0]))  # the same stable form; its gradient is sigmoid(x)


class Min(Stateless):
    """Minimum; nan if any value is nan; of equal values (0.0 and -0.0) the second."""

    kind, arity, twin, tree = "min", 2, "fmin", True

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return nm.fmin(a, b)

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.minimum(xs[0], xs[1])


class Max(Stateless):
    """Maximum; nan if any value is nan; of equal values (0.0 and -0.0) the second."""

    kind, arity, twin, tree = "max", 2, "fmax", True

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return nm.fmax(a, b)

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.maximum(xs[0], xs[1])


class Clamp(Stateless):
    """x limited to [lo, hi] (lo, hi tunable); nan stays nan."""

    kind = twin = "clamp"
    params_spec = {
        "lo": Param(rule="not nan", check=lambda v: not math.isnan(v), tunable=True, typical=(-5.0, 5.0)),
        "hi": Param(rule="not nan", check=lambda v: not math.isnan(v), tunable=True, typical=(-5.0, 5.0)),
    }

    def check_params(self, p: Mapping[str, float]) -> None:
        if not p["lo"] <= p["hi"]:
            raise CircuitError(f"clamp: parameter lo={p['lo']!r} must be <= hi={p['hi']!r}")

    def f(self, p: Mapping[str, float], x: float) -> float:
        return nm.clamp(x, p["lo"], p["hi"])

    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        import torch

        return torch.minimum(torch.maximum(xs[0], p["lo"]), p["hi"])


class Select(Stateless):
    """`a` where cond != 0, else `b`. Valid when cond and the chosen branch are valid."""

    kind, arity, input_names = "select", 3, ("cond", "a", "b")
    differentiable = False

    def ref(self, p: Mapping[str, float], xs: Sequence[float | None]) -> float | None:
        cond, a, b = xs
        if cond is None:
            return None
        return a if cond != 0.0 else b

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} != 0.0 ? {xs[1]} : {xs[2]})"

    def cpp_valid(self, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({oks[0]} && ({xs[0]} != 0.0 ? {oks[1]} : {oks[2]}))"


class Compare(Stateless):
    """Base of comparisons: 1.0 where the relation holds, else 0.0 (false for any nan)."""

    arity = 2
    differentiable = False


class Lt(Compare):
    """1.0 where a < b, else 0.0 (0.0 for nan)."""

    kind, symbol = "lt", "<"

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a < b else 0.0

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} < {xs[1]} ? 1.0 : 0.0)"


class Le(Compare):
    """1.0 where a <= b, else 0.0 (0.0 for nan)."""

    kind, symbol = "le", "<="

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a <= b else 0.0

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} <= {xs[1]} ? 1.0 : 0.0)"


class Gt(Compare):
    """1.0 where a > b, else 0.0 (0.0 for nan)."""

    kind, symbol = "gt", ">"

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a > b else 0.0

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} > {xs[1]} ? 1.0 : 0.0)"


class Ge(Compare):
    """1.0 where a >= b, else 0.0 (0.0 for nan)."""

    kind, symbol = "ge", ">="

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a >= b else 0.0

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} >= {xs[1]} ? 1.0 : 0.0)"


class Eq(Compare):
    """1.0 where a == b, else 0.0 (`==` on nodes keeps Python's identity meaning)."""

    kind, symmetric = "eq", True

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a == b else 0.0

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} == {xs[1]} ? 1.0 : 0.0)"


class Ne(Compare):
    """1.0 where a != b (also when either is nan), else 0.0."""

    kind, symmetric = "ne", True

    def f(self, p: Mapping[str, float], a: float, b: float) -> float:
        return 1.0 if a != b else 0.0

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"({xs[0]} != {xs[1]} ? 1.0 : 0.0)"
