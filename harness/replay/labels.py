"""Labels: the future value of an output at exactly `t + horizon`, as a value, difference or return.

The value of an output "at time x" is its value after the last replayed row with `t <= x` (all rows at the
same time applied). Horizons are float seconds; `t + horizon` is computed in int64 ns. A horizon of 0 means
the sampled row's own value. A row whose `t + horizon` lies after the last replayed event has no full
horizon; it is dropped and counted, never filled in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.errors import HarnessError

KINDS = ("value", "difference", "return", "log_return")


class LabelError(HarnessError, ValueError):
    """A label names an unknown output or kind, or has a bad horizon."""


@dataclass(frozen=True)
class Label:
    """Labels of `output` at one or several `horizons` (seconds), of one `kind` (see KINDS)."""

    output: str
    horizons: tuple[float, ...] = (1.0,)
    kind: str = "return"

    def __post_init__(self) -> None:
        horizons = (self.horizons,) if isinstance(self.horizons, (int, float)) else tuple(self.horizons)
        object.__setattr__(self, "horizons", horizons)
        if not horizons:
            raise LabelError(f"label {self.output!r}: give at least one horizon")
        for h in horizons:
            if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h) or h < 0:
                raise LabelError(f"label {self.output!r}: horizon {h!r} must be a finite number of seconds >= 0")
        if self.kind not in KINDS:
            raise LabelError(f"label {self.output!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def columns(self) -> list[str]:
        """Names of the label columns, one per horizon: `label_<output>_<kind>_<h>s`."""
        return [label_name(self.output, self.kind, h) for h in self.horizons]


def label_name(output: str, kind: str, horizon: float) -> str:
    """The column name of one label, e.g. `label_mid_return_1s` or `label_mid_value_0.5s`."""
    return f"label_{output}_{kind}_{horizon:g}s"


def horizon_ns(horizon: float) -> int:
    """A horizon in seconds as int64 nanoseconds."""
    return round(horizon * 1e9)


class StepSeries:
    """An output over time as a step function: the rows where its value or validity changes.

    Appended chunk by chunk while replaying; memory grows with the number of changes, not of rows.
    """

    def __init__(self) -> None:
        self._t: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self._ok: list[np.ndarray] = []
        self._last: tuple[float, bool] | None = None

    def append(self, t: np.ndarray, values: np.ndarray, valid: np.ndarray) -> None:
        if not len(t):
            return
        values = np.where(valid, values, 0.0)
        changed = np.empty(len(t), dtype=bool)
        same_value = (values[1:] == values[:-1]) | (np.isnan(values[1:]) & np.isnan(values[:-1]))
        changed[1:] = ~same_value | (valid[1:] != valid[:-1])
        if self._last is None:
            changed[0] = True
        else:
            v0, ok0 = self._last
            changed[0] = bool(valid[0]) != ok0 or not (values[0] == v0 or (math.isnan(values[0]) and math.isnan(v0)))
        self._last = (float(values[-1]), bool(valid[-1]))
        self._t.append(t[changed])
        self._v.append(values[changed])
        self._ok.append(valid[changed])

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times, values, valid) of the change points."""
        if not self._t:
            return np.empty(0, np.int64), np.empty(0), np.empty(0, bool)
        return np.concatenate(self._t), np.concatenate(self._v), np.concatenate(self._ok)


def value_at(series: tuple[np.ndarray, np.ndarray, np.ndarray], at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) of a step series at times `at`: the last change at or before each time."""
    t, v, ok = series
    if not len(t):
        return np.zeros(len(at)), np.zeros(len(at), bool)
    j = np.searchsorted(t, at, side="right") - 1
    inside = j >= 0
    jj = np.where(inside, j, 0)
    return np.where(inside, v[jj], 0.0), inside & ok[jj]


def compute(
    kind: str,
    now: np.ndarray,
    now_ok: np.ndarray,
    future: np.ndarray,
    future_ok: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(label, valid) from the value at the sampled row and the value at the horizon."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "value":
            return future, future_ok
        if kind == "difference":
            return future - now, future_ok & now_ok
        if kind == "return":
            return future / now - 1.0, future_ok & now_ok & (now != 0.0)
        ratio = future / now  # log_return
        ok = future_ok & now_ok & (ratio > 0.0)
        return np.log(np.where(ok, ratio, 1.0)), ok


def make_labels(labels: Sequence[Label | tuple]) -> list[Label]:
    """Labels from Label objects or tuples (output, horizons[, kind])."""
    out = []
    for lab in labels:
        if isinstance(lab, Label):
            out.append(lab)
        elif isinstance(lab, tuple) and 2 <= len(lab) <= 3:
            out.append(Label(*lab))
        else:
            raise LabelError(f"a label is a Label or a tuple (output, horizons[, kind]), got {lab!r}")
    names = [c for lab in out for c in lab.columns()]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise LabelError(f"labels repeat the columns {dup}")
    return out
