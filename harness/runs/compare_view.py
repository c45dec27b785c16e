"""`harness runs compare` beyond the terminal table: runs split into tables that fit the width, the rows as
JSON or CSV records, and the comparison plot (final metrics per run, the report's IC by horizon overlaid)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.text import Text

from harness import figures

KEY_COLUMN_MAX = 28  # the key column of a side-by-side table is cut to this many characters (ellipsis)
BORDER = 3  # characters a column adds to a boxed rich table (a divider and a space either side)
PLOT_METRICS = ("test_ic", "test_r2", "fit_val_loss")  # the bars of the plot's first panel, when logged
IC_BY_HORIZON = re.compile(r"^report/ic_([0-9.eE+-]+)s$")


def run_chunks(key_width: int, run_widths: Sequence[int], width: int) -> list[range]:
    """Consecutive groups of run columns such that the key column and each group fit `width` characters (a
    group holds at least one run)."""
    key = min(key_width, KEY_COLUMN_MAX) + BORDER + 1
    groups: list[range] = []
    start, used = 0, key
    for i, w in enumerate(run_widths):
        if i > start and used + w + BORDER > width:
            groups.append(range(start, i))
            start, used = i, key
        used += w + BORDER
    groups.append(range(start, len(run_widths)))
    return groups


def cell_width(cells: Sequence[str | Text]) -> int:
    """The widest line of the cells (headers span two lines: id over name)."""
    lines = [ln for c in cells for ln in str(c.plain if isinstance(c, Text) else c).split("\n")]
    return max((len(ln) for ln in lines), default=1)


def records(runs: Sequence[Any], identity: dict[str, str], keys: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """One record per compared value: section (identity, param, metric), key, then one field per run id."""
    out: list[dict] = []
    for label, tag in identity.items():
        out.append({"section": "identity", "key": label, **{r.info.run_id: r.data.tags.get(tag) for r in runs}})
    for key in keys:
        out.append({"section": "param", "key": key, **{r.info.run_id: r.data.params.get(key) for r in runs}})
    for key in metrics:
        out.append({"section": "metric", "key": key, **{r.info.run_id: r.data.metrics.get(key) for r in runs}})
    return out


def ic_by_horizon(metrics: dict[str, float]) -> list[tuple[float, float]]:
    """The report's IC per label horizon of one run, by horizon."""
    found = [(float(m.group(1)), v) for k, v in metrics.items() if (m := IC_BY_HORIZON.match(k))]
    return sorted(found)


def default_plot_path(run_ids: Sequence[str]) -> Path:
    """outputs/compare/compare-<id8>-<id8>....png in the working directory (beside Hydra's run folders)."""
    return Path("outputs") / "compare" / ("compare-" + "-".join(r[:8] for r in run_ids[:6]) + ".png")


def plot(runs: Sequence[Any], labels: Sequence[str], path: Path) -> Path:
    """Two panels: the key final metrics per run (grouped bars), and each run's IC by horizon (lines)."""
    plt = figures.pyplot()
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    shown = [k for k in PLOT_METRICS if any(k in r.data.metrics for r in runs)]
    width = 0.8 / max(1, len(runs))
    curved = False
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        values = [run.data.metrics.get(k, math.nan) for k in shown]
        bars.bar([j + i * width for j in range(len(shown))], values, width, label=label)
        points = ic_by_horizon(run.data.metrics)
        if points:
            curves.plot([h for h, _ in points], [v for _, v in points], marker="o", label=label)
            curved = True
    bars.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(shown))], shown)
    bars.axhline(0.0, color="grey", lw=0.5)
    bars.set_title("final metrics")
    bars.legend(fontsize=7)
    curves.set_xlabel("label horizon (s)")
    curves.set_title("test IC by horizon (evaluation report)")
    curves.axhline(0.0, color="grey", lw=0.5)
    if curved:
        curves.set_xscale("log")
        curves.legend(fontsize=7)
    return figures.save(fig, path)
