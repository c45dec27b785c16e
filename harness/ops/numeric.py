"""IEEE-754 double arithmetic as C++ computes it, for the Python reference.

Python's `math` raises where C returns inf/nan (log(0), 1/0, exp(1000)); these helpers return what
`cpp/harness/numeric.hpp` returns, bit for bit, so the reference and the kernel agree on every event.
Each `@twin` function has a C++ function of the same name listed in numeric.hpp's HS_NUMERIC_TWINS (the
list `harness._native` binds); tests/test_native.py checks that the two lists match and agree bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., float])
TWINS: dict[str, Callable[..., float]] = {}  # name -> the Python twin of the C++ function of that name


def twin(fn: F) -> F:
    """Register `fn` as the Python twin of the C++ function `hs::<fn.__name__>`."""
    TWINS[fn.__name__] = fn
    return fn


INF = math.inf
NAN = math.nan
DEFAULT_NAN = float("inf") - float("inf")  # the NaN this CPU makes for an invalid operation (x86: sign bit set)


@twin
def div(a: float, b: float) -> float:
    """a / b with IEEE results for a zero divisor (±inf; the default nan for 0/0; nan/0 keeps a's nan)."""
    if b == 0.0:
        if a == 0.0:
            return DEFAULT_NAN
        if math.isnan(a):
            return a + b  # a, quieted: what the division returns
        return math.copysign(INF, a) * math.copysign(1.0, b)
    return a / b


@twin
def exp(x: float) -> float:
    """e**x; overflow gives inf."""
    try:
        return math.exp(x)
    except OverflowError:
        return INF


@twin
def exp2(x: float) -> float:
    """2**x; overflow gives inf."""
    try:
        return math.exp2(x)
    except OverflowError:
        return INF


@twin
def log(x: float) -> float:
    """Natural log; log(0) = -inf, log(<0) = the default nan, log(nan) = that nan (quieted), as libm."""
    if x > 0.0:
        return math.log(x)
    if x == 0.0:
        return -INF
    if math.isnan(x):
        return x + 0.0
    return DEFAULT_NAN


@twin
def sqrt(x: float) -> float:
    """Square root; sqrt(<0) = the default nan, sqrt(-0.0) = -0.0, sqrt(nan) = that nan."""
    if x >= 0.0 or math.isnan(x):
        return math.sqrt(x)
    return DEFAULT_NAN


@twin
def tanh(x: float) -> float:
    """Hyperbolic tangent (libm)."""
    return math.tanh(x)


@twin
def sigmoid(x: float) -> float:
    """Logistic function in the overflow-free form: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) otherwise."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    if math.isnan(x):
        return x  # the same nan, as the C++ helper returns it
    e = math.exp(x)
    return e / (1.0 + e)


@twin
def relu(x: float) -> float:
    """max(x, 0) that propagates nan."""
    return x if (x > 0.0 or math.isnan(x)) else 0.0


@twin
def fmin(a: float, b: float) -> float:
    """Minimum that propagates nan from either side; for equal values it returns b."""
    return a if (a < b or math.isnan(a)) else b


@twin
def fmax(a: float, b: float) -> float:
    """Maximum that propagates nan from either side; for equal values it returns b."""
    return a if (a > b or math.isnan(a)) else b


@twin
def clamp(x: float, lo: float, hi: float) -> float:
    """fmin(fmax(x, lo), hi): nan stays nan."""
    return fmin(fmax(x, lo), hi)


@twin
def decay_weight(dt_ns: int, halflife_s: float) -> float:
    """2^(-dt/halflife) with dt converted from integer nanoseconds to seconds by one division."""
    return exp2(-(dt_ns / 1e9) / halflife_s)
