"""Recording a trace's leaves: one replay gives every domain its points, leaf values and import indices.

The replay runs the recording circuit (the circuit plus its leaves as outputs). The sampled rows (with their
labels, via `hs.replay.record`) are the candidates of the `rows` domain; the rows whose source is one of a
step domain's events are that domain's candidates. A candidate becomes a point where the values evaluated
there are valid: the target for `rows`, the producers' inputs for a step domain. Validity follows the
circuit's rules (a stateless value is valid when its inputs are; a decay once it has had a valid sample; a
node with an observed input keeps the validity of its last run), so at every point all traced values are
valid and torch never sees a null.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import FitError
from harness.fit.trace import ROWS, Trace
from harness.replay.labels import Label, horizon_ns
from harness.replay.record import record
from harness.replay.sampling import Sampler

if TYPE_CHECKING:
    from harness.kernel import Kernel


class FitDataError(FitError):
    """The replay gives nothing to fit on (no rows left), or the recorded rows contradict the trace."""


@dataclass
class DomainData:
    """The points of one domain: replay row positions, times, and each leaf's values there."""

    rows: np.ndarray  # int64 positions in the whole replay, increasing
    t: np.ndarray  # int64 ns
    leaves: dict[int, np.ndarray] = field(default_factory=dict)  # leaf TNode id -> float64 values

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class FitData:
    """Everything the torch model needs, and the bookkeeping of what was dropped."""

    trace: Trace
    domains: dict[int, DomainData]
    imports: dict[tuple[int, int], np.ndarray]  # (consumer, producer domain) -> producer point per consumer point
    y: np.ndarray  # the label at each point of the rows domain
    label_column: str
    horizon_ns: int
    kernel_target: np.ndarray  # the kernel's target output at each row point (as recorded, before fitting)
    stat_sources: dict[str, tuple[np.ndarray, np.ndarray]]  # recorded output -> (values, valid) at the row points
    rows_replayed: int
    replay_s: float  # seconds in the kernel's replay while recording
    sampled: int
    dropped: dict[str, int]

    @property
    def t(self) -> np.ndarray:
        """Times of the training rows."""
        return self.domains[ROWS].t

    @property
    def n_rows(self) -> int:
        """Number of training rows (points of the rows domain)."""
        return len(self.domains[ROWS])


class _Columns:
    """Growing lists of per-chunk arrays of one step domain's candidates."""

    def __init__(self, names: list[str]) -> None:
        self.rows: list[np.ndarray] = []
        self.t: list[np.ndarray] = []
        self.values: dict[str, list[np.ndarray]] = {n: [] for n in names}
        self.valid: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def add(self, rows: pa.Table, idx: np.ndarray, offset: int) -> None:
        self.rows.append(idx.astype(np.int64) + offset)
        self.t.append(rows.column("t").to_numpy()[idx])
        take = pa.array(idx, pa.int64())
        for name in self.values:
            col = rows.column(name).take(take)
            self.values[name].append(_values(col))
            self.valid[name].append(col.is_valid().to_numpy(zero_copy_only=False))

    def finish(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        def cat(xs: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(xs) if xs else np.empty(0, dtype)

        return (
            cat(self.rows, np.int64),
            cat(self.t, np.int64),
            {k: cat(v, np.float64) for k, v in self.values.items()},
            {k: cat(v, bool) for k, v in self.valid.items()},
        )


def _values(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.fill_null(col, 0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def collect(
    trace: Trace,
    kernel: Kernel,
    events: object,
    *,
    label: Label,
    sampler: Sampler | None = None,
    progress: bool | None = None,
    total: int | None = None,
) -> FitData:
    """Replay `events` through `kernel` (the trace's recording circuit, freshly reset) and bind the data."""
    leaf_names = {n.id: trace.leaf_output(n) for n in trace.nodes if n.kind == "leaf"}
    step = [d for d in trace.domains if not d.is_rows]
    per_domain = {
        d.index: sorted({leaf_names[n.id] for n in trace.domain_nodes(d.index) if n.kind == "leaf"}) for d in step
    }
    buffers = {d.index: _Columns(per_domain[d.index]) for d in step}
    run_sets = {d.index: pa.array(list(d.runs), pa.string()) for d in step}

    def on_rows(rows: pa.Table, offset: int) -> None:
        source = rows.column("source")
        for d in step:
            idx = np.flatnonzero(pc.is_in(source, value_set=run_sets[d.index]).to_numpy(zero_copy_only=False))
            if len(idx):
                buffers[d.index].add(rows, idx, offset)

    rows_leaves = sorted({leaf_names[n.id] for n in trace.domain_nodes(ROWS) if n.kind == "leaf"})
    stat_outputs = sorted({out for out, _ in trace.statistics.values()})
    outputs = list(dict.fromkeys([trace.target_output, *rows_leaves, *stat_outputs]))
    kernel.reset()
    rec = record(
        kernel, events, sampler=sampler, labels=[label], outputs=outputs, row_index=True, on_rows=on_rows,
        progress=progress, total=total,
    )  # fmt: skip
    table = rec.table

    cand: dict[int, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    for d in step:
        cand[d.index] = buffers[d.index].finish()
    cand[ROWS] = (
        table.column("row").to_numpy(),
        table.column("t").to_numpy(),
        {name: _values(table.column(name)) for name in outputs},
        {name: table.column(name).is_valid().to_numpy(zero_copy_only=False) for name in outputs},
    )

    edge = set(trace.circuit.plan().edge)
    valid: dict[int, dict[int, np.ndarray]] = {}  # domain -> TNode id -> validity at the candidates
    masks: dict[int, np.ndarray] = {}  # domain -> which candidates are points
    for d in trace.domain_order():
        rows_d, _, _, leaf_valid = cand[d]
        vd: dict[int, np.ndarray] = {}
        for n in trace.domain_nodes(d):
            if n.kind == "leaf":
                vd[n.id] = leaf_valid[leaf_names[n.id]]
            elif n.kind == "import":
                prod = trace.nodes[n.source]  # type: ignore[index]
                vd[n.id] = _import_valid(prod, rows_d, cand[prod.domain][0], masks[prod.domain], prod.node in edge)
            else:
                vd[n.id] = _all_valid([vd[i] for i in n.inputs if not trace.nodes[i].scalar], len(rows_d))
        valid[d] = vd
        if d == ROWS:
            masks[d] = vd[trace.target] if not trace.nodes[trace.target].scalar else np.ones(len(rows_d), bool)
        else:
            producers = [
                n for n in trace.domain_nodes(d) if n.kind == "decay" or (n.kind == "op" and any(n.node.observed))
            ]
            masks[d] = _all_valid(
                [vd[i] for p in producers for i in p.inputs if not trace.nodes[i].scalar], len(rows_d)
            )

    kernel_valid = cand[ROWS][3][trace.target_output]
    if not np.array_equal(kernel_valid, masks[ROWS]):
        first = int(np.flatnonzero(kernel_valid != masks[ROWS])[0])
        raise FitDataError(
            f"fit: the traced validity of {trace.target_output!r} differs from the kernel's at replay row "
            f"{int(cand[ROWS][0][first])} (kernel: {bool(kernel_valid[first])}); this is a bug in harness.fit"
        )

    domains: dict[int, DomainData] = {}
    for d, (rows_d, t_d, values, _) in cand.items():
        keep = masks[d]
        data = DomainData(rows=rows_d[keep], t=t_d[keep])
        for n in trace.domain_nodes(d):
            if n.kind == "leaf":
                data.leaves[n.id] = np.ascontiguousarray(values[leaf_names[n.id]][keep])
        domains[d] = data

    imports: dict[tuple[int, int], np.ndarray] = {}
    for n in trace.nodes:
        if n.kind == "import":
            prod_dom = trace.nodes[n.source].domain  # type: ignore[index]
            key = (n.domain, prod_dom)
            if key not in imports:
                idx = np.searchsorted(domains[prod_dom].rows, domains[n.domain].rows, side="right") - 1
                if len(idx) and idx.min() < 0:
                    raise FitDataError("fit: an imported value has no step before a point that needs it (bug)")
                imports[key] = idx.astype(np.int64)

    keep_rows = masks[ROWS]
    label_column = label.columns()[0]
    y = _values(table.column(label_column))[keep_rows]
    dropped = dict(rec.dropped)
    dropped["invalid_target"] = int((~keep_rows).sum())
    if not len(y):
        raise FitDataError(
            f"fit: no rows to fit on: {rec.rows} rows replayed, {rec.sampled} sampled, dropped {dropped} "
            f"(target {trace.target_output!r}, label {label_column!r})"
        )
    return FitData(
        trace=trace,
        domains=domains,
        imports=imports,
        y=y,
        label_column=label_column,
        horizon_ns=horizon_ns(label.horizons[0]),
        kernel_target=cand[ROWS][2][trace.target_output][keep_rows],
        stat_sources={o: (cand[ROWS][2][o][keep_rows], cand[ROWS][3][o][keep_rows]) for o in stat_outputs},
        rows_replayed=rec.rows,
        replay_s=rec.replay_s,
        sampled=rec.sampled,
        dropped=dropped,
    )


def _all_valid(masks: list[np.ndarray], n: int) -> np.ndarray:
    out = np.ones(n, dtype=bool)
    for m in masks:
        out &= m
    return out


def _import_valid(prod: Any, rows: np.ndarray, prod_rows: np.ndarray, prod_mask: np.ndarray, edge: bool) -> np.ndarray:
    """Validity at `rows` of a producer evaluated at its candidates `prod_rows` (points where `prod_mask`).

    A decay is valid once it has had a valid sample; a node with an observed input keeps the validity of
    its last run (and an edge node is valid only at the row of that run).
    """
    if prod.kind == "decay":
        j = np.searchsorted(prod_rows[prod_mask], rows, side="right") - 1
        return j >= 0
    j = np.searchsorted(prod_rows, rows, side="right") - 1
    ok = j >= 0
    jj = np.where(ok, j, 0)
    ok &= prod_mask[jj] if len(prod_mask) else False
    if edge:
        ok &= prod_rows[jj] == rows if len(prod_rows) else False
    return ok
