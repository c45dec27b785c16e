"""Plausibility rules of the market-data readers, and the per-stream option that relaxes them.

Every reader (tardis, Binance, Parquet) checks each value against these rules, on by default; a value that
breaks one is a `DataError` naming the file, the row, the value and the rule (or, with on_bad_rows="skip", a
dropped and counted row). The defaults (`Rules()`):

    min_time        "2000-01-01"  timestamps at or after this UTC date or date-time (ISO 8601) ...
    max_time        "2100-01-01"  ... and before this one; both within int64 nanoseconds (1677..2262)
    min_price       0.0           prices finite and > min_price ...
    max_price       1e12          ... and < max_price
    max_amount      1e12          sizes finite, >= 0 (trades > 0) and < max_amount
    max_price_jump  10.0          a trade or quote price at most this factor away from the previous one of
                                  its column in the same file (swapped price/amount columns break it at once)
    header          "exact"       a header row must be the file kind's columns in the kind's order;
                                  "names": the kind's columns in any order, extra columns allowed
    max_ratio       100.0         a .gz/.zip may inflate to at most this many times its compressed size
                                  (checked once past 64 MiB of data; real files are 5-15x): a compression bomb
                                  stops with an error instead of filling memory

Relax a rule for one stream with `rules={...}` (`hs.streams.tardis(..., rules={"min_time": "1990-01-01"})`,
or `stream.rules.min_time=1990-01-01` in the pipeline); `inf` / `-inf` switch a numeric bound off. A relaxed
rule is never silent: the reader warns (`RulesRelaxed`) and records it in the read stats (`stats(table)["rules"]`),
and it is part of the Parquet cache key. Timestamps are range-checked in the file's own unit before any
conversion, so no value can overflow int64 nanoseconds.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import HarnessError

HEADER_MODES = ("exact", "names")


class RulesRelaxed(UserWarning):
    """A stream is read with some plausibility rules relaxed (the message names them and their defaults)."""


@dataclass(frozen=True)
class Rules:
    """The plausibility rules of one stream (see the module docstring for each field and its default)."""

    min_time: str = "2000-01-01"
    max_time: str = "2100-01-01"
    min_price: float = 0.0
    max_price: float = 1e12
    max_amount: float = 1e12
    max_price_jump: float = 10.0
    header: str = "exact"
    max_ratio: float = 100.0

    def __post_init__(self) -> None:
        for name in ("min_price", "max_price", "max_amount", "max_price_jump", "max_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise HarnessError(f"rules.{name}={value!r} must be a number (inf or -inf switch a bound off)")
            object.__setattr__(self, name, float(value))
        if self.min_price >= self.max_price:
            raise HarnessError(f"rules.min_price={self.min_price} must be below rules.max_price={self.max_price}")
        if self.max_amount <= 0 or self.max_price_jump <= 1 or self.max_ratio <= 1:
            raise HarnessError(
                f"rules: max_amount ({self.max_amount}) must be > 0, max_price_jump ({self.max_price_jump}) and "
                f"max_ratio ({self.max_ratio}) > 1"
            )
        if self.header not in HEADER_MODES:
            raise HarnessError(f"rules.header={self.header!r} must be one of {HEADER_MODES}")
        if self.min_ns >= self.max_ns:
            raise HarnessError(f"rules.min_time={self.min_time!r} must be before rules.max_time={self.max_time!r}")

    @classmethod
    def of(cls, value: Rules | Mapping[str, Any] | None) -> Rules:
        """`value` as Rules: None is the defaults; a mapping overrides the fields it names (unknown names raise)."""
        if value is None:
            return cls()
        if isinstance(value, Rules):
            return value
        if not isinstance(value, Mapping):
            raise HarnessError(f"rules must be a mapping of rule name to value, got {type(value).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in value if k not in known]
        if unknown:
            raise HarnessError(f"rules: unknown rule(s) {unknown}; the rules are {known}")
        return cls(**{k: _number(v) if k not in ("min_time", "max_time", "header") else v for k, v in value.items()})

    @property
    def min_ns(self) -> int:
        """min_time in int64 nanoseconds since the epoch."""
        return _ns(self.min_time, "min_time")

    @property
    def max_ns(self) -> int:
        """max_time in int64 nanoseconds since the epoch."""
        return _ns(self.max_time, "max_time")

    def relaxed(self) -> dict[str, Any]:
        """The rules that differ from the defaults, by name."""
        default = Rules()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }

    def to_dict(self) -> dict[str, Any]:
        """All rules by name (JSON-ready; part of cache keys)."""
        return dataclasses.asdict(self)

    def warn_relaxed(self, what: str) -> None:
        """Warn (`RulesRelaxed`) naming the relaxed rules when there are any: relaxing a rule is never silent."""
        relaxed = self.relaxed()
        if relaxed:
            default = Rules()
            parts = ", ".join(f"{k}={v!r} (default {getattr(default, k)!r})" for k, v in relaxed.items())
            warnings.warn(f"{what}: plausibility rules relaxed: {parts}", RulesRelaxed, stacklevel=3)

    def time_bounds(self, unit_ns: int) -> tuple[int, int]:
        """The inclusive range [lo, hi] of raw timestamps in units of `unit_ns` ns that lie in [min_time, max_time)."""
        lo = -((-self.min_ns) // unit_ns)  # ceil
        hi = (self.max_ns - 1) // unit_ns
        return lo, hi


def _number(value: Any) -> Any:
    """Numbers given as strings in configs ("1e15", "inf") as floats; anything else unchanged (checked later)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _ns(value: Any, name: str) -> int:
    """An ISO 8601 UTC date or date-time as int64 ns since the epoch (HarnessError naming the rule if it is not)."""
    if not isinstance(value, str):
        raise HarnessError(f"rules.{name}={value!r} must be an ISO 8601 date or date-time string, e.g. '2000-01-01'")
    text = value.strip().removesuffix("Z").removesuffix("+00:00")
    try:
        us = np.datetime64(text, "us")  # numpy wraps silently outside int64 ns: check in microseconds first
    except (ValueError, OverflowError) as e:
        raise HarnessError(
            f"rules.{name}={value!r} is not an ISO 8601 UTC date or date-time within int64 nanoseconds "
            f"(1677-09-21 .. 2262-04-11): {e}"
        ) from None
    lo, hi = (np.iinfo(np.int64).min + 1) // 1000 + 1, np.iinfo(np.int64).max // 1000
    if np.isnat(us) or not lo <= int(us.astype(np.int64)) <= hi:
        raise HarnessError(f"rules.{name}={value!r} is outside int64 nanoseconds (1677-09-21 .. 2262-04-11)")
    return int(np.datetime64(text, "ns").astype(np.int64))


def describe_time(raw: int, unit_ns: int) -> str:
    """A raw timestamp in `unit_ns` units as a UTC date-time, or the reason it has none."""
    ns = int(raw) * unit_ns
    if not np.iinfo(np.int64).min < ns <= np.iinfo(np.int64).max:
        return "beyond int64 nanoseconds (1677..2262)"
    return f"{np.datetime64(ns, 'ns').astype('datetime64[us]')}Z"
