"""The evaluation report of a fitted circuit on its test rows: IC and R² per label horizon, rolling IC, mean
label by prediction quantile, hit rate, prediction autocorrelation, a trading view with a fee, and per-signal
attribution; flat metrics for the tracking store and one HTML page with a PNG figure (matplotlib)."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import figures
from harness.evaluate import metrics as m
from harness.evaluate.metrics import Trades


@dataclass(frozen=True)
class ReportConfig:
    """What the report computes: the horizons (seconds; the first is the main one), the trading view's fee
    (bps, round trip) and threshold (None: the `threshold_quantile` of |pred| on the train rows), quantile bins,
    rolling windows and autocorrelation lags."""

    horizons: tuple[float, ...]
    fee_bps: float = 1.0
    threshold: float | None = None
    threshold_quantile: float = 0.9
    quantiles: int = 5
    windows: int = 20
    lags: tuple[int, ...] = (1, 10, 100)


@dataclass
class Report:
    """The report's numbers (see `harness.evaluate.metrics` for each definition)."""

    horizons: tuple[float, ...]
    kind: str  # the label kind (return labels: markouts in bps)
    by_horizon: dict[float, dict[str, float]]  # ic, r2, hit_rate, rows
    rolling: tuple[np.ndarray, np.ndarray]  # (block end t ns, IC) at the main horizon
    quantiles: dict[float, np.ndarray]  # horizon -> mean label per prediction quantile
    autocorrelation: dict[int, float]
    trades: dict[float, Trades]
    attribution: list[dict[str, float | str]] = field(default_factory=list)
    folds: list[dict[str, float]] = field(default_factory=list)  # walk-forward: each fold's test window and scores

    def metrics(self) -> dict[str, float]:
        """Flat metrics, e.g. `report/ic_1s`, `report/markout_mean_1s`, `report/autocorr_lag1`."""
        out: dict[str, float] = {}
        for h, row in self.by_horizon.items():
            out.update({f"report/{k}_{h:g}s": v for k, v in row.items() if k != "rows"})
            out.update({f"report/{k}_{h:g}s": v for k, v in self.trades[h].summary().items()})
        out.update({f"report/autocorr_lag{lag}": v for lag, v in self.autocorrelation.items()})
        out["report/rolling_ic_mean"] = _nanmean(self.rolling[1])
        out["report/threshold"] = self.trades[self.horizons[0]].threshold
        for a in self.attribution:
            out[f"report/attr_d_ic/{a['signal']}"] = float(a["d_ic"])
        if self.folds:
            ics = np.array([f["ic"] for f in self.folds], dtype=float)
            out["report/fold_ic_mean"], out["report/fold_ic_std"] = _nanmean(ics), float(np.nanstd(ics))
            out["report/fold_ic_positive"] = (
                float(np.mean(ics[np.isfinite(ics)] > 0)) if np.isfinite(ics).any() else math.nan
            )
        return out

    def to_dict(self) -> dict:
        """Everything as plain JSON-able values."""
        return {
            "horizons": list(self.horizons), "kind": self.kind,
            "by_horizon": {f"{h:g}": v for h, v in self.by_horizon.items()},
            "rolling_ic": {"t_ns": self.rolling[0].tolist(), "ic": _list(self.rolling[1])},
            "quantile_mean_label": {f"{h:g}": _list(v) for h, v in self.quantiles.items()},
            "autocorrelation": {str(k): v for k, v in self.autocorrelation.items()},
            "trades": {f"{h:g}": {**t.summary(), "threshold": t.threshold, "fee": t.fee}
                       for h, t in self.trades.items()},
            "attribution": self.attribution, "folds": self.folds,
        }  # fmt: skip


def build(
    t: np.ndarray,
    pred: np.ndarray,
    labels: dict[float, np.ndarray],
    train_pred: np.ndarray,
    kind: str,
    config: ReportConfig,
    attribution: list[dict[str, float | str]] | None = None,
    folds: list[dict[str, float]] | None = None,
) -> Report:
    """The report over test rows at times `t` with predictions `pred` and a label array per horizon (aligned to
    `t`); `train_pred` (the train rows' predictions) fixes the trading threshold when none is configured."""
    threshold = (
        config.threshold if config.threshold is not None else m.default_threshold(train_pred, config.threshold_quantile)
    )
    by_h, quant, trades = {}, {}, {}
    for h in config.horizons:
        y = labels[h]
        ok = int(np.sum(np.isfinite(y) & np.isfinite(pred)))
        by_h[h] = {"ic": m.ic(pred, y), "r2": m.r2(pred, y), "hit_rate": m.hit_rate(pred, y), "rows": float(ok)}
        quant[h] = m.quantile_returns(pred, y, config.quantiles)[1]
        trades[h] = m.trades(pred, y, h, threshold, config.fee_bps, kind)
    main = config.horizons[0]
    return Report(
        horizons=tuple(config.horizons), kind=kind, by_horizon=by_h,
        rolling=m.rolling_ic(t, pred, labels[main], config.windows), quantiles=quant,
        autocorrelation={lag: m.autocorrelation(pred, lag) for lag in config.lags}, trades=trades,
        attribution=list(attribution or []), folds=list(folds or []),
    )  # fmt: skip


def write(report: Report, folder: Path, title: str) -> list[Path]:
    """`report.json`, `report.png` (a panel per view) and `report.html` (tables and the figure) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "report.json", folder / "report.png", folder / "report.html"]
    paths[0].write_text(json.dumps(_clean(report.to_dict()), indent=2) + "\n")
    _figure(report, paths[1])
    paths[2].write_text(_html(report, title, paths[1].name))
    return paths


def _figure(r: Report, path: Path) -> None:
    """Six panels: IC by horizon, rolling IC, mean label by quantile, cumulative markout, autocorrelation,
    attribution."""
    plt = figures.pyplot()
    fig, ax = plt.subplots(2, 3, figsize=(14, 7.5))
    hs = sorted(r.horizons)
    _bars(ax[0, 0], [f"{h:g}s" for h in hs], [r.by_horizon[h]["ic"] for h in hs])
    ax[0, 0].set_title("IC by horizon")
    t, ic = r.rolling
    ax[0, 1].plot((t - t[0]) / 1e9 if len(t) else t, ic, marker="o")
    ax[0, 1].axhline(0.0, color="grey", lw=0.5)
    ax[0, 1].set_title(f"rolling IC ({hs[0]:g}s), by test time (s)")
    for h in hs:
        ax[0, 2].plot(np.arange(1, len(r.quantiles[h]) + 1), r.quantiles[h], marker="o", label=f"{h:g}s")
    ax[0, 2].set_title("mean label by prediction quantile")
    ax[0, 2].legend(fontsize=7)
    for h in hs:
        ax[1, 0].plot(r.trades[h].cumulative, label=f"{h:g}s")
    ax[1, 0].set_title(f"cumulative markout ({'bps' if r.kind in m.RETURN_KINDS else 'label units'}, net of fee)")
    ax[1, 0].legend(fontsize=7)
    lags = list(r.autocorrelation)
    _bars(ax[1, 1], [str(lag) for lag in lags], [r.autocorrelation[lag] for lag in lags])
    ax[1, 1].set_title("prediction autocorrelation by lag (rows)")
    names = [str(a["signal"])[:24] for a in r.attribution]
    ax[1, 2].barh(np.arange(len(names)), [float(a["d_ic"]) for a in r.attribution])
    ax[1, 2].set_yticks(np.arange(len(names)), names)
    ax[1, 2].set_title("IC change when the signal is dropped")
    figures.save(fig, path, dpi=90)


def _bars(ax: object, names: list[str], values: list[float]) -> None:
    """A bar per name at numeric positions (names as tick labels: matplotlib would parse '10' as a number)."""
    ax.bar(np.arange(len(names)), values)  # type: ignore[attr-defined]
    ax.set_xticks(np.arange(len(names)), names)  # type: ignore[attr-defined]


def _html(r: Report, title: str, png: str) -> str:
    """A self-contained page: the tables of the report and the figure beside it."""
    unit = "bps" if r.kind in m.RETURN_KINDS else "label units"
    rows = [
        [f"{h:g}s", _f(v["ic"]), _f(v["r2"]), _f(v["hit_rate"]), *(_f(x) for x in r.trades[h].summary().values())]
        for h, v in r.by_horizon.items()
    ]
    head = ["horizon", "IC", "R²", "hit rate", "trades", f"markout/trade ({unit})", "win rate", f"total ({unit})"]
    attr = [[html.escape(str(a["signal"])), _f(a["weight"]), _f(a["d_ic"]), _f(a["d_r2"])] for a in r.attribution]
    auto = [[str(k), _f(v)] for k, v in r.autocorrelation.items()]
    t0 = r.trades[r.horizons[0]]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Test rows; trades where |prediction| &gt; {_f(t0.threshold)}, fee "
        f"{_f(t0.fee)} {unit} per trade.</p>{_table(head, rows)}"
        f"<h2>Prediction autocorrelation</h2>{_table(['lag (rows)', 'autocorrelation'], auto)}"
        f"<h2>Per-signal attribution (drop one)</h2>{_table(['signal', 'weight', 'ΔIC', 'ΔR²'], attr)}"
        f"{_folds_html(r.folds)}"
        f"<img src='{png}' alt='report figure' style='max-width:100%'></body></html>\n"
    )


def _folds_html(folds: list[dict[str, float]]) -> str:
    """The walk-forward folds' table (nothing without folds)."""
    if not folds:
        return ""
    head = ["fold", "test start (s)", "test end (s)", "test rows", "IC", "R²"]
    rows = [[str(int(f["fold"])), _f(f["test_start_s"]), _f(f["test_end_s"]), str(int(f["rows"])), _f(f["ic"]),
             _f(f["r2"])] for f in folds]  # fmt: skip
    return f"<h2>Walk-forward folds</h2>{_table(head, rows)}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _f(x: object) -> str:
    v = float(x)  # type: ignore[arg-type]
    return "nan" if not math.isfinite(v) else f"{v:.4g}"


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else math.nan


def _list(x: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in x]


def _clean(x: object) -> object:
    """JSON-able: NaN and inf as null, numpy scalars as numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
