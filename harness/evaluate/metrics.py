"""The numbers of an evaluation report, from predictions and forward labels on the test rows (plain numpy).

Every statistic skips rows whose label at that horizon is missing (NaN: the horizon runs past the data).
- `ic`: Pearson correlation of prediction and label; `r2`: 1 - SSE / SST about the label's mean.
- `rolling_ic`: the IC in `windows` consecutive blocks of test rows (equal row counts, time order).
- `quantile_returns`: the mean label per prediction quantile (`np.quantile` edges over the test predictions,
  bin i holds edges[i] <= pred < edges[i+1], the last bin closed).
- `hit_rate`: share of rows with sign(pred) == sign(label), over rows where both are non-zero.
- `autocorrelation`: Pearson correlation of the predictions with themselves `lag` rows later.
- `trades`: a row is a trade when |pred| > threshold, its side sign(pred); its markout at a horizon is
  side * label (for return labels, in bps: times 1e4) minus the fee (bps, a round trip) per trade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BPS = 1e4
RETURN_KINDS = ("return", "log_return")  # labels that are relative moves: markouts in bps, fees apply


def _pair(pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(pred) & np.isfinite(y)
    return pred[ok], y[ok]


def ic(pred: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over rows where both are finite (NaN when either side is constant or empty)."""
    p, a = _pair(pred, y)
    if len(p) < 2:
        return math.nan
    dp, da = p - p.mean(), a - a.mean()
    sp, sa = float(dp @ dp), float(da @ da)
    return float(dp @ da) / math.sqrt(sp * sa) if sp > 0 and sa > 0 else math.nan


def r2(pred: np.ndarray, y: np.ndarray) -> float:
    """1 - SSE / SST over rows where both are finite (NaN when the label is constant or empty)."""
    p, a = _pair(pred, y)
    if not len(p):
        return math.nan
    sst = float(((a - a.mean()) ** 2).sum())
    return 1.0 - float(((p - a) ** 2).sum()) / sst if sst > 0 else math.nan


def rolling_ic(t: np.ndarray, pred: np.ndarray, y: np.ndarray, windows: int) -> tuple[np.ndarray, np.ndarray]:
    """The IC of each of `windows` consecutive blocks of rows: (block end time ns, IC)."""
    blocks = [b for b in np.array_split(np.arange(len(pred)), max(1, min(windows, len(pred)))) if len(b)]
    ends = np.array([t[b[-1]] for b in blocks], dtype=np.int64)
    return ends, np.array([ic(pred[b], y[b]) for b in blocks])


def quantile_returns(pred: np.ndarray, y: np.ndarray, quantiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean label per prediction quantile bin: (bin, mean label); NaN for an empty bin."""
    p, a = _pair(pred, y)
    out = np.full(quantiles, math.nan)
    if len(p):
        edges = np.quantile(p, np.linspace(0.0, 1.0, quantiles + 1))
        which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, quantiles - 1)
        for q in range(quantiles):
            if np.any(which == q):
                out[q] = float(a[which == q].mean())
    return np.arange(quantiles), out


def hit_rate(pred: np.ndarray, y: np.ndarray) -> float:
    """Share of rows where the prediction has the label's sign, over rows where both are non-zero."""
    p, a = _pair(pred, y)
    both = (p != 0) & (a != 0)
    return float(np.mean(np.sign(p[both]) == np.sign(a[both]))) if both.any() else math.nan


def autocorrelation(pred: np.ndarray, lag: int) -> float:
    """Correlation of the predictions with themselves `lag` rows later."""
    if lag >= len(pred):
        return math.nan
    return ic(pred[:-lag], pred[lag:])


@dataclass
class Trades:
    """The trading view at one horizon: the trade rows, their markouts (net of fee) and the cumulative curve."""

    horizon: float
    rows: np.ndarray  # positions into the test rows
    markout: np.ndarray  # per trade, net of fee (bps for return labels, else label units)
    threshold: float
    fee: float

    @property
    def cumulative(self) -> np.ndarray:
        """The cumulative markout over the trades in time order."""
        return np.cumsum(self.markout)

    def summary(self) -> dict[str, float]:
        """Number of trades, mean markout per trade, share of winning trades, total."""
        n = len(self.markout)
        mean = float(self.markout.mean()) if n else math.nan
        win = float(np.mean(self.markout > 0)) if n else math.nan
        return {"trades": float(n), "markout_mean": mean, "win_rate": win, "markout_total": float(self.markout.sum())}


def trades(pred: np.ndarray, y: np.ndarray, horizon: float, threshold: float, fee_bps: float, kind: str) -> Trades:
    """Enter on every row with |pred| > threshold (side sign(pred)), mark out at the label's horizon, pay the fee."""
    take = np.flatnonzero((np.abs(pred) > threshold) & np.isfinite(y) & np.isfinite(pred))
    scale, fee = (BPS, fee_bps) if kind in RETURN_KINDS else (1.0, 0.0)
    markout = np.sign(pred[take]) * y[take] * scale - fee
    return Trades(horizon=horizon, rows=take, markout=markout, threshold=threshold, fee=fee)


def default_threshold(train_pred: np.ndarray, quantile: float) -> float:
    """The `quantile` of |prediction| on the train rows: a threshold fixed before the test rows are seen."""
    p = np.abs(train_pred[np.isfinite(train_pred)])
    return float(np.quantile(p, quantile)) if len(p) else 0.0
