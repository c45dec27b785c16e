"""The one sanitiser: every user-chosen name passes here when it is chosen, and again, with every number, before
it reaches generated C++.

Names must match the builder's rule; doubles are emitted in their shortest round-trip form (`repr`), which the
compiler parses back to the same bits; inf and the default quiet nan as named constants, any other nan by its
bits (sign and payload kept). Nothing a user typed is pasted into C++ unchecked. It sits in the base layer so that
operators (their C++ forms) and the code generator share it.
"""

from __future__ import annotations

import math
import re
import struct

from harness.errors import CircuitError

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A qualified name: `market.name`, for the inputs and triggers of one market of several (`hs.lib.market(c,
# market=...)`); it reaches generated C++ only inside comments, never as an identifier (which are positional).
QUALIFIED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
MAX_NAME_LENGTH = 128
# Column names of an events table and of a replay result; an input or output may not take them.
RESERVED = frozenset({"t", "trigger"})

_FLOAT = re.compile(r"-?(\d+\.\d*|\d+)(e[+-]?\d+)?")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
QUIET_NAN_BITS = 0x7FF8000000000000  # std::numeric_limits<double>::quiet_NaN(), Python's float("nan")


SEP = "."  # between a market's name and an input, trigger or column name


def qualify(name: str, market: str | None) -> str:
    """`market.name`, the name of an input, trigger or events column of that market; `name` without a market."""
    return name if market is None else f"{market}{SEP}{name}"


def check_name(name: object, what: str, *, reserved: frozenset[str] = frozenset(), qualified: bool = False) -> str:
    """Return `name` if it is a safe identifier (with `qualified`, also `market.name` of two identifiers), else
    raise CircuitError naming `what` and the rule."""
    if not isinstance(name, str):
        raise CircuitError(f"{what} name must be a string, got {type(name).__name__} {name!r}")
    if not (QUALIFIED if qualified else IDENTIFIER).fullmatch(name):
        rule = " or market.name, two such names" if qualified else ""
        raise CircuitError(
            f"invalid {what} name {name!r}: names must match [A-Za-z_][A-Za-z0-9_]*{rule} "
            "(a letter or underscore, then letters, digits or underscores)"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise CircuitError(f"invalid {what} name {name[:20]!r}...: longer than {MAX_NAME_LENGTH} characters")
    if name in reserved:
        raise CircuitError(
            f"invalid {what} name {name!r}: it is reserved (the names {sorted(reserved)} are event/result columns)"
        )
    return name


# ----- literals of generated C++ -------------------------------------------------------------------------------


def cpp_name(name: object, what: str = "name") -> str:
    """`name` if it is a plain identifier (safe in comments, strings and identifiers), else CircuitError."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name) or len(name) > 256:
        raise CircuitError(f"code generation refused {what} {name!r}: not an identifier [A-Za-z_][A-Za-z0-9_]*")
    return name


def cpp_label(name: object, what: str = "name") -> str:
    """`name` if it is an identifier or a qualified name `market.name` (safe in comments and strings, never used as
    an identifier), else CircuitError."""
    if not isinstance(name, str) or not QUALIFIED.fullmatch(name) or len(name) > 256:
        raise CircuitError(f"code generation refused {what} {name!r}: not an identifier or market.name")
    return name


def cpp_double(x: float) -> str:
    """A C++ double expression that evaluates to exactly `x`, NaNs included (same sign, payload, quiet bit)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise CircuitError(f"code generation refused the value {x!r}: not a number")
    x = float(x)
    if math.isnan(x):
        bits = struct.unpack("<Q", struct.pack("<d", x))[0]
        return "HS_NAN" if bits == QUIET_NAN_BITS else f"hs::f64_from_bits(UINT64_C(0x{bits:016x}))"
    if math.isinf(x):
        return "HS_INF" if x > 0 else "(-HS_INF)"
    text = repr(x)
    if not _FLOAT.fullmatch(text):
        raise CircuitError(f"code generation refused the value {x!r}: unexpected literal {text!r}")
    return f"({text})" if text.startswith("-") else text


def cpp_int(n: int) -> str:
    """An int64_t literal for `n`."""
    if isinstance(n, bool) or not isinstance(n, int) or not INT64_MIN <= n <= INT64_MAX:
        raise CircuitError(f"code generation refused the integer {n!r}: not an int64")
    if n == INT64_MIN:
        return "INT64_MIN"
    return f"INT64_C({n})"
