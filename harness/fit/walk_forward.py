"""Walk-forward splits: folds of train / validation / test windows in time, rolling or expanding.

Fold k's test window starts at `t0 + train + val + k * step` (step: the test length unless given) and lasts
`test`; its validation window is the `val` before it and its train window the `train` before that (rolling) or
everything from the first row (expanding). Windows are half-open in time, `[start, end)`, so rows that share a
timestamp stay together. No label crosses a boundary: a row whose label horizon reaches the start of the next
window is purged, and a test row whose label reaches the end of its fold (the next fold's test window) too.
A fold needs rows in all three windows; the folds are cut until a test window would start after the last row.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.fit.trainer import Split, TrainerError, _rows_tensor

WINDOWS = ("rolling", "expanding")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


def seconds(value: Any, what: str) -> float:
    """A length in time as seconds: a number (seconds) or a string with a unit (`90s`, `15m`, `2h`, `1d`, `250ms`)."""
    if isinstance(value, bool):
        raise TrainerError(f"{what}={value!r} must be a length in time (seconds, or e.g. '15m', '2h', '1d')")
    if isinstance(value, int | float):
        out = float(value)
    else:
        m = _LENGTH.match(str(value))
        if not m or m.group(2) not in ("", *_UNITS):
            raise TrainerError(
                f"{what}={value!r} is not a length in time: give seconds or a number with a unit "
                f"({', '.join(_UNITS)}), e.g. '15m'"
            )
        out = float(m.group(1)) * _UNITS.get(m.group(2), 1.0)
    if not math.isfinite(out) or out < 0:
        raise TrainerError(f"{what}={value!r} must be a finite length >= 0")
    return out


@dataclass(frozen=True)
class Fold:
    """One fold: its index, the time windows (ns, half-open) and its rows (a `Split`)."""

    index: int
    train_start: int
    val_start: int
    test_start: int
    test_end: int
    split: Split


@dataclass(frozen=True)
class WalkForward:
    """Walk-forward folds: window lengths in seconds; `window` rolling (fixed train length) or expanding."""

    train: float | str  # seconds, or a string with a unit ('1h'): stored as seconds
    val: float | str
    test: float | str
    window: str = "rolling"
    step: float | str | None = None  # between fold starts (default: the test length)

    def __post_init__(self) -> None:
        for name in ("train", "val", "test", "step"):  # lengths given as strings ('15m') become seconds
            if name != "step" or self.step is not None:
                object.__setattr__(self, name, seconds(getattr(self, name), f"walk_forward: {name}"))
        for name in ("train", "val", "test"):
            if not getattr(self, name) > 0:
                raise TrainerError(f"walk_forward: {name}={getattr(self, name)!r} must be a length > 0")
        if self.window not in WINDOWS:
            raise TrainerError(f"walk_forward: window={self.window!r} must be one of {', '.join(WINDOWS)}")
        if self.step is not None and not self.step > 0:
            raise TrainerError(f"walk_forward: step={self.step!r} must be a length > 0 (or null: the test length)")

    @classmethod
    def from_dict(cls, spec: dict[str, Any], where: str = "task.split") -> WalkForward:
        """From a config mapping `{kind: walk_forward, train, val, test[, window, step]}` (lengths as `seconds`)."""
        known = {"kind", "train", "val", "test", "window", "step"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise TrainerError(f"{where}: unknown key(s) {unknown}; a walk-forward split takes {sorted(known)}")
        missing = [k for k in ("train", "val", "test") if spec.get(k) is None]
        if missing:
            raise TrainerError(f"{where}: kind walk_forward needs {', '.join(missing)} (lengths in time, e.g. '1h')")
        try:
            return cls(**{k: v for k, v in spec.items() if k != "kind"})
        except TrainerError as e:
            raise TrainerError(str(e).replace("walk_forward: ", f"{where}.")) from None

    def folds(self, t: np.ndarray, horizon_ns: int = 0) -> list[Fold]:
        """The folds over rows at times `t` (ns, non-decreasing); a TrainerError when there is none."""
        t = np.asarray(t, dtype=np.int64)
        if len(t) == 0:
            raise TrainerError("walk_forward: there are no rows to split")
        ns = {k: round(getattr(self, k) * 1e9) for k in ("train", "val", "test")}
        step = round((self.step if self.step is not None else self.test) * 1e9)
        t0, last = int(t[0]), int(t[-1])
        out: list[Fold] = []
        skipped = 0
        k = 0
        while (test_start := t0 + ns["train"] + ns["val"] + k * step) <= last:
            val_start = test_start - ns["val"]
            train_start = val_start - ns["train"] if self.window == "rolling" else t0
            fold = _fold(len(out), t, (train_start, val_start, test_start, test_start + ns["test"]), horizon_ns)
            if fold is None:
                skipped += 1
            else:
                out.append(fold)
            k += 1
        if not out:
            span = (last - t0) / 1e9
            raise TrainerError(
                f"walk_forward: no fold fits: the rows span {span:.6g} s but one fold needs train {self.train:g} s + "
                f"val {self.val:g} s + test > 0 s with rows in each (and {skipped} candidate folds had an empty "
                "part after purging label overlap); use shorter windows or more data"
            )
        return out


def _fold(index: int, t: np.ndarray, bounds: tuple[int, int, int, int], horizon_ns: int) -> Fold | None:
    """The fold with windows `bounds` = (train start, val start, test start, test end), or None if a part is empty."""
    a, b, c, d = bounds

    def rows(lo: int, hi: int) -> np.ndarray:
        """Rows with lo <= t < hi whose label (t + horizon) stays before hi."""
        i, j = np.searchsorted(t, lo, side="left"), np.searchsorted(t, hi, side="left")
        r = np.arange(i, j, dtype=np.int64)
        return r[t[r] + horizon_ns < hi]

    train, val, test = rows(a, b), rows(b, c), rows(c, d)
    if not (len(train) and len(val) and len(test)):
        return None
    n = {name: int(np.sum((t >= lo) & (t < hi))) for name, lo, hi in (("train", a, b), ("val", b, c), ("test", c, d))}
    purged = {"train": n["train"] - len(train), "val": n["val"] - len(val), "test": n["test"] - len(test)}
    split = Split(train=_rows_tensor(train), val=_rows_tensor(val), test=_rows_tensor(test), purged=purged)
    return Fold(index=index, train_start=a, val_start=b, test_start=c, test_end=d, split=split)
