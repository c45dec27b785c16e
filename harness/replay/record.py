"""`hs.replay.record`: replay events through a kernel, keep the sampled rows, attach labels.

Runs chunk by chunk (the kernel carries its state), so memory holds the sampled rows and, per labelled
output, only the rows where its value changes: not the whole replay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.replay.driver import chunks
from harness.replay.labels import Label, LabelError, StepSeries, compute, horizon_ns, make_labels, value_at
from harness.replay.sampling import Sampler, SamplerError, every_event

if TYPE_CHECKING:
    from harness.kernel import Kernel


@dataclass
class Recording:
    """The sampled rows with their labels, and what happened to the others."""

    table: pa.Table  # t, source, the recorded outputs, one column per label; rows with every label present
    labels: list[str]  # the label column names
    rows: int  # rows replayed (one per event, plus one per timer firing when the circuit has timers)
    replay_s: float  # seconds in the kernel's replay (the rest is reading the events, sampling, labels)
    sampled: int  # rows the sampler chose
    dropped: dict[str, int] = field(default_factory=dict)  # no_horizon / invalid_label -> rows dropped

    def __repr__(self) -> str:
        return (
            f"<Recording rows={self.rows} sampled={self.sampled} kept={self.table.num_rows} "
            f"dropped={self.dropped} labels={self.labels}>"
        )


def record(
    kernel: Kernel,
    events: object,
    *,
    sampler: Sampler | None = None,
    labels: Sequence[Label | tuple] = (),
    outputs: Sequence[str] | None = None,
    progress: bool | None = None,
    row_index: bool = False,
    on_rows: Callable[[pa.Table, int], None] | None = None,
    total: int | None = None,
) -> Recording:
    """Replay `events` through `kernel` (continuing from its state), sample rows and attach labels.

    `sampler` defaults to every event. `labels` are `Label`s or tuples `(output, horizons[, kind])`.
    `outputs` chooses the recorded output columns (default: all). `progress` shows a bar per chunk
    (default: when stderr is a terminal; `total`: the number of events, when known). Rows whose labels are
    incomplete are dropped and counted.
    `row_index=True` adds a `row` column: the row's position in the whole replay (events and timer rows).
    `on_rows(rows, offset)` sees every replayed chunk (t, source, outputs) before sampling, with the
    position of its first row: fitting uses it to keep the rows where decays step.
    """
    sampler = sampler if sampler is not None else every_event()
    if not isinstance(sampler, Sampler):
        raise SamplerError(f"sampler must be made by hs.replay.every_event/every_n/when/time_grid, got {sampler!r}")
    sampler.check(kernel)
    labs = make_labels(labels)
    keep_outputs = list(kernel.outputs if outputs is None else outputs)
    for name in keep_outputs:
        if name not in kernel.outputs:
            raise SamplerError(f"record: unknown output {name!r}; the circuit's outputs are {kernel.outputs}")
    for lab in labs:
        if lab.output not in kernel.outputs:
            raise LabelError(f"label: unknown output {lab.output!r}; the circuit's outputs are {kernel.outputs}")
        clash = [c for c in lab.columns() if c in kernel.outputs]
        if clash:
            raise LabelError(f"label columns {clash} clash with outputs of the same name")
    labelled = sorted({lab.output for lab in labs}, key=kernel.outputs.index)
    index_column = ["row"] if row_index else []
    columns = ["t", "source", *index_column, *keep_outputs, *[o for o in labelled if o not in keep_outputs]]

    state = sampler.new_state()
    series = {o: StepSeries() for o in labelled}
    parts: list[pa.Table] = []
    n_rows = 0
    replay_s = 0.0
    t_end: int | None = None
    for chunk in chunks(kernel, events, progress=progress, total=total):
        rows = chunk.rows
        replay_s += chunk.seconds
        if on_rows is not None:
            on_rows(rows, chunk.offset)
        if row_index:
            rows = rows.append_column("row", pa.array(np.arange(n_rows, n_rows + rows.num_rows, dtype=np.int64)))
        n_rows += rows.num_rows
        if not rows.num_rows:
            continue
        t = rows.column("t").to_numpy()
        t_end = int(t[-1])
        for name, s in series.items():
            col = rows.column(name)
            s.append(t, col.to_numpy(zero_copy_only=False), col.is_valid().to_numpy(zero_copy_only=False))
        idx = sampler.select(rows, state)
        parts.append(rows.select(columns).take(pa.array(idx, pa.int64())))

    sampled = pa.concat_tables(parts) if parts else _empty(columns)
    table, names, dropped = _attach_labels(sampled, labs, {o: s.finish() for o, s in series.items()}, t_end)
    table = table.select(["t", "source", *index_column, *keep_outputs, *names])
    table = table.set_column(1, "source", pc.dictionary_encode(table.column("source")))
    return Recording(
        table=table, labels=names, rows=n_rows, replay_s=replay_s, sampled=sampled.num_rows, dropped=dropped
    )


def _attach_labels(
    sampled: pa.Table,
    labs: list[Label],
    series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    t_end: int | None,
) -> tuple[pa.Table, list[str], dict[str, int]]:
    """Add the label columns and drop the rows where any is missing (counting why)."""
    n = sampled.num_rows
    t = sampled.column("t").to_numpy()
    no_horizon = np.zeros(n, dtype=bool)
    invalid = np.zeros(n, dtype=bool)
    names: list[str] = []
    values: list[np.ndarray] = []
    for lab in labs:
        col = sampled.column(lab.output)
        now = col.to_numpy(zero_copy_only=False).astype(np.float64)
        now_ok = col.is_valid().to_numpy(zero_copy_only=False)
        for h, name in zip(lab.horizons, lab.columns(), strict=True):
            h_ns = horizon_ns(h)
            if h_ns == 0:
                future, future_ok = now, now_ok
            else:
                at = t + h_ns
                no_horizon |= at > (t_end if t_end is not None else np.iinfo(np.int64).min)
                future, future_ok = value_at(series[lab.output], at)
            label, ok = compute(lab.kind, now, now_ok, future, future_ok)
            invalid |= ~ok
            names.append(name)
            values.append(label)
    keep = ~(no_horizon | invalid)
    dropped = {"no_horizon": int(no_horizon.sum()), "invalid_label": int((invalid & ~no_horizon).sum())}
    table = sampled
    for name, v in zip(names, values, strict=True):
        table = table.append_column(name, pa.array(v, type=pa.float64()))
    if not keep.all():
        table = table.filter(pa.array(keep))
    return table, names, dropped


def _empty(columns: list[str]) -> pa.Table:
    types = {"t": pa.int64(), "source": pa.string(), "row": pa.int64()}
    return pa.table({c: pa.array([], types.get(c, pa.float64())) for c in columns})
