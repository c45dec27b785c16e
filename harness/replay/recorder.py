"""What a recording keeps while replayed rows stream by (`Recorder`), and what it gives (`Recording`).

`hs.replay.record` and a sharded replay's workers (`harness.replay.shards`) both record through a `Recorder`:
rows of the recorded range are sampled and kept with, per labelled output, only the rows where its value
changes; `finish` attaches the labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.replay.labels import Label, LabelError, StepSeries, compute, horizon_ns, make_labels, value_at
from harness.replay.sampling import Sampler, SamplerError

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
    shards: list[Any] = field(default_factory=list)  # a sharded replay's shards (harness.replay.shards.ShardInfo)

    def __repr__(self) -> str:
        return (
            f"<Recording rows={self.rows} sampled={self.sampled} kept={self.table.num_rows} "
            f"dropped={self.dropped} labels={self.labels}>"
        )


class RowSink:
    """Sees every replayed chunk (t, source, outputs) before sampling, with the position of its first row in the
    whole replay. A sharded replay gives each shard an empty `fresh()` copy on its worker (so a sink must pickle)
    and `absorb`s the shards' sinks back in time order, each shifted by the rows of the shards before it."""

    def add(self, rows: pa.Table, offset: int) -> None:
        """Keep what this sink needs of one chunk of replayed rows starting at row `offset`."""
        raise NotImplementedError

    def fresh(self) -> RowSink:
        """An empty sink of the same kind, for one shard."""
        raise NotImplementedError

    def absorb(self, part: RowSink, offset: int) -> None:
        """Append a later shard's sink (its rows start at `offset` in the whole replay)."""
        raise NotImplementedError


class _CallbackSink(RowSink):
    def __init__(self, fn: Callable[[pa.Table, int], None]) -> None:
        self.fn = fn

    def add(self, rows: pa.Table, offset: int) -> None:
        self.fn(rows, offset)


def sink_of(on_rows: Callable[[pa.Table, int], None] | RowSink | None) -> RowSink | None:
    """A RowSink for `record`'s `on_rows` (a plain function is wrapped)."""
    if on_rows is None or isinstance(on_rows, RowSink):
        return on_rows
    return _CallbackSink(on_rows)


class Recorder:
    """What `record` keeps while rows stream by: the sampled rows and, per labelled output, its step series.

    `own(rows)` takes rows of the recorded range (sink, row index, sampling, label series); `ahead(rows)` rows
    replayed past it only for the labels (a shard's lookahead); `finish` attaches the labels."""

    def __init__(
        self,
        kernel: Kernel,
        sampler: Sampler,
        labels: Sequence[Label | tuple],
        outputs: Sequence[str] | None,
        *,
        row_index: bool = False,
        sink: RowSink | None = None,
        optional: Sequence[Label | tuple] = (),
    ) -> None:
        if not isinstance(sampler, Sampler):
            raise SamplerError(f"sampler must be made by hs.replay.every_event/every_n/when/time_grid, got {sampler!r}")
        sampler.check(kernel)
        self.sampler, self.labs, self.sink, self.row_index = sampler, make_labels(labels), sink, row_index
        self.optional = make_labels(optional)  # labels kept NaN where incomplete: they drop no row
        self.keep_outputs = list(kernel.outputs if outputs is None else outputs)
        for name in self.keep_outputs:
            if name not in kernel.outputs:
                raise SamplerError(f"record: unknown output {name!r}; the circuit's outputs are {kernel.outputs}")
        for lab in (*self.labs, *self.optional):
            if lab.output not in kernel.outputs:
                raise LabelError(f"label: unknown output {lab.output!r}; the circuit's outputs are {kernel.outputs}")
            clash = [c for c in lab.columns() if c in kernel.outputs]
            if clash:
                raise LabelError(f"label columns {clash} clash with outputs of the same name")
        self.labelled = sorted({lab.output for lab in (*self.labs, *self.optional)}, key=kernel.outputs.index)
        index_column = ["row"] if row_index else []
        extra = [o for o in self.labelled if o not in self.keep_outputs]
        self.columns = ["t", "source", *index_column, *self.keep_outputs, *extra]
        self.start(0)

    def start(self, seen: int) -> None:
        """Forget what was kept; the sampler starts after `seen` counted events (a shard starts mid-stream)."""
        self.state = self.sampler.state_after(seen) if seen else self.sampler.new_state()
        self.series = {o: StepSeries() for o in self.labelled}
        self.parts: list[pa.Table] = []
        self.n_rows = 0
        self.t_last: int | None = None

    def own(self, rows: pa.Table) -> None:
        """Rows of the recorded range, in order."""
        if self.sink is not None:
            self.sink.add(rows, self.n_rows)
        if self.row_index:
            rows = rows.append_column(
                "row", pa.array(np.arange(self.n_rows, self.n_rows + rows.num_rows, dtype=np.int64))
            )
        self.n_rows += rows.num_rows
        if not rows.num_rows:
            return
        self.ahead(rows)
        idx = self.sampler.select(rows, self.state)
        self.parts.append(rows.select(self.columns).take(pa.array(idx, pa.int64())))

    def ahead(self, rows: pa.Table) -> None:
        """Rows the labels may look at (the recorded range's, and a shard's lookahead past it)."""
        if not rows.num_rows:
            return
        t = rows.column("t").to_numpy()
        self.t_last = int(t[-1])
        for name, s in self.series.items():
            col = rows.column(name)
            s.append(t, col.to_numpy(zero_copy_only=False), col.is_valid().to_numpy(zero_copy_only=False))

    def finish(self, replay_s: float, t_end: int | None, encode: bool = True) -> Recording:
        """The Recording: sampled rows with their labels (rows whose `t + horizon` is after `t_end`, the last
        replayed time of the whole replay, have no full horizon)."""
        sampled = pa.concat_tables(self.parts) if self.parts else _empty(self.columns)
        series = {o: s.finish() for o, s in self.series.items()}
        table, names, dropped = _attach_labels(sampled, self.labs, series, t_end, self.optional)
        index_column = ["row"] if self.row_index else []
        table = table.select(["t", "source", *index_column, *self.keep_outputs, *names])
        if encode:
            table = table.set_column(1, "source", pc.dictionary_encode(table.column("source")))
        return Recording(
            table=table, labels=names, rows=self.n_rows, replay_s=replay_s, sampled=sampled.num_rows, dropped=dropped
        )


def _attach_labels(
    sampled: pa.Table,
    labs: list[Label],
    series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    t_end: int | None,
    optional: Sequence[Label] = (),
) -> tuple[pa.Table, list[str], dict[str, int]]:
    """Add the label columns and drop the rows where any is missing (counting why); `optional` label columns
    are NaN where missing and drop nothing."""
    n = sampled.num_rows
    t = sampled.column("t").to_numpy()
    no_horizon = np.zeros(n, dtype=bool)
    invalid = np.zeros(n, dtype=bool)
    names: list[str] = []
    values: list[np.ndarray] = []
    for lab in optional:
        for name, label in _optional_columns(sampled, lab, series, t, t_end):
            if name not in names:
                names.append(name)
                values.append(label)
    for lab in labs:
        col = sampled.column(lab.output)
        now = col.to_numpy(zero_copy_only=False).astype(np.float64)
        now_ok = col.is_valid().to_numpy(zero_copy_only=False)
        for h, name in zip(lab.horizons, lab.columns(), strict=True):
            if name in names:  # also an optional column: the required one replaces it
                del values[names.index(name)], names[names.index(name)]
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


def _optional_columns(
    sampled: pa.Table,
    lab: Label,
    series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    t: np.ndarray,
    t_end: int | None,
) -> list[tuple[str, np.ndarray]]:
    """The columns of an optional label: NaN where its horizon runs past the replay or its value is invalid."""
    col = sampled.column(lab.output)
    now = col.to_numpy(zero_copy_only=False).astype(np.float64)
    now_ok = col.is_valid().to_numpy(zero_copy_only=False)
    out = []
    for h, name in zip(lab.horizons, lab.columns(), strict=True):
        h_ns = horizon_ns(h)
        if h_ns == 0:
            future, future_ok = now, now_ok
        else:
            future, future_ok = value_at(series[lab.output], t + h_ns)
            future_ok = future_ok & (t + h_ns <= (t_end if t_end is not None else np.iinfo(np.int64).min))
        label, ok = compute(lab.kind, now, now_ok, future, future_ok)
        out.append((name, np.where(ok, label, np.nan)))
    return out


def _empty(columns: list[str]) -> pa.Table:
    types = {"t": pa.int64(), "source": pa.string(), "row": pa.int64()}
    return pa.table({c: pa.array([], types.get(c, pa.float64())) for c in columns})
