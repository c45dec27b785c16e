"""The one name sanitiser: every user-chosen name passes here before it can reach generated code."""

from __future__ import annotations

import re

from harness.errors import CircuitError

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NAME_LENGTH = 128
# Column names of an events table and of a replay result; an input or output may not take them.
RESERVED = frozenset({"t", "trigger"})


def check_name(name: object, what: str, *, reserved: frozenset[str] = frozenset()) -> str:
    """Return `name` if it is a safe identifier, else raise CircuitError naming `what` and the rule."""
    if not isinstance(name, str):
        raise CircuitError(f"{what} name must be a string, got {type(name).__name__} {name!r}")
    if not IDENTIFIER.fullmatch(name):
        raise CircuitError(
            f"invalid {what} name {name!r}: names must match [A-Za-z_][A-Za-z0-9_]* "
            "(a letter or underscore, then letters, digits or underscores)"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise CircuitError(f"invalid {what} name {name[:20]!r}...: longer than {MAX_NAME_LENGTH} characters")
    if name in reserved:
        raise CircuitError(
            f"invalid {what} name {name!r}: it is reserved (the names {sorted(reserved)} are event/result columns)"
        )
    return name
