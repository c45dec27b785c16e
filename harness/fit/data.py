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
from harness.replay.record import RowSink, record
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
    horizon_labels: dict[float, np.ndarray] = field(default_factory=dict)  # report horizons: label (NaN: missing)
    shards: list[Any] = field(default_factory=list)  # a sharded recording's shards (harness.replay.ShardInfo)
    points: Any = None  # what the model reads (harness.fit.store): set on the first model, or by spilling
    digest: str | None = None  # the record digest, kept when the arrays are spilled (harness.fit.store)

    def close(self) -> None:
        """Release what the model reads: a spilled recording's folder is removed."""
        if self.points is not None:
            self.points.close()

    @property
    def t(self) -> np.ndarray:
        """Times of the training rows."""
        return self.domains[ROWS].t

    @property
    def n_rows(self) -> int:
        """Number of training rows (points of the rows domain)."""
        return len(self.domains[ROWS])


class _Columns:
    """Growing lists of per-chunk arrays of one step domain's candidates (owned by numpy, not views of the
    chunk's Arrow buffers, so a finished chunk's memory is freed whole)."""

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
            self.values[name].append(np.array(_values(col), dtype=np.float64, copy=True))
            self.valid[name].append(col.is_valid().to_numpy(zero_copy_only=False))

    def extend(self, other: _Columns, offset: int, skip_first: bool) -> None:
        """Append a later shard's columns (row positions shifted by `offset`), without its first row if asked."""
        lists = [(self.rows, other.rows), (self.t, other.t)]
        lists += [(self.values[k], other.values[k]) for k in self.values]
        lists += [(self.valid[k], other.valid[k]) for k in self.valid]
        for mine, theirs in lists:
            drop = skip_first
            for part in theirs:
                if drop and len(part):
                    part, drop = part[1:], False
                mine.append(part + offset if mine is self.rows else part)

    def finish(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The concatenated columns; each list is emptied as it is joined, so memory peaks at one extra column."""
        return (
            _join(self.rows, np.int64),
            _join(self.t, np.int64),
            {k: _join(v, np.float64) for k, v in self.values.items()},
            {k: _join(v, bool) for k, v in self.valid.items()},
        )


def _join(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    out = np.concatenate(parts) if parts else np.empty(0, dtype)
    parts.clear()
    return out


def _values(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.fill_null(col, 0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


Candidates = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]  # rows, t, values, valid


def collect(
    trace: Trace,
    kernel: Kernel,
    events: object,
    *,
    label: Label,
    sampler: Sampler | None = None,
    progress: bool | None = None,
    total: int | None = None,
    horizons: tuple[float, ...] = (),
    shards: Any = None,
) -> FitData:
    """Replay `events` through `kernel` (the trace's recording circuit, freshly reset) and bind the data.
    `horizons`: more label horizons (seconds, the label's output and kind) kept for an evaluation report, NaN
    where the horizon runs past the data (they drop no row). `shards` (a hs.replay.Sharding) records it shard by
    shard on an engine (`events`: re-openable per shard)."""
    leaf_names = {n.id: trace.leaf_output(n) for n in trace.nodes if n.kind == "leaf"}
    step = {d.index: _StepDomain(trace, d.index, d.runs, leaf_names) for d in trace.domains if not d.is_rows}

    sink = _StepSink(step)
    rows_leaves = sorted({leaf_names[n.id] for n in trace.domain_nodes(ROWS) if n.kind == "leaf"})
    stat_outputs = sorted({out for out, _ in trace.statistics.values()})
    outputs = list(dict.fromkeys([trace.target_output, *rows_leaves, *stat_outputs]))
    kernel.reset()
    report = Label(label.output, horizons, label.kind) if horizons else None
    rec = record(
        kernel, events, sampler=sampler, labels=[label], outputs=outputs, row_index=True, on_rows=sink,
        progress=progress, total=total, optional=[report] if report else [], shards=shards,
    )  # fmt: skip
    step = sink.domains
    extra = {h: _values(rec.table.column(c)) for h, c in zip(horizons, report.columns(), strict=True)} if report else {}
    cand: dict[int, Candidates] = {index: dom.columns.finish() for index, dom in step.items()}
    cand[ROWS] = _row_candidates(rec, outputs)
    y_all = _values(rec.table.column(label.columns()[0]))
    recorded = {"rows": rec.rows, "replay_s": rec.replay_s, "sampled": rec.sampled, "dropped": dict(rec.dropped)}
    shard_info = list(rec.shards)
    del rec  # the recorded table is now in `cand`: free it before the domains are built

    edge = set(trace.circuit.plan().edge)
    masks: dict[int, np.ndarray] = {}  # domain -> which candidates are points
    for d in trace.domain_order():
        masks[d] = _domain_mask(trace, d, cand, masks, leaf_names, edge)
    _check_target_validity(trace, cand[ROWS], masks[ROWS])
    keep_rows = masks[ROWS]
    target = cand[ROWS][2][trace.target_output][keep_rows]
    stats = {o: (cand[ROWS][2][o][keep_rows], cand[ROWS][3][o][keep_rows]) for o in stat_outputs}
    domains = {d: _domain_data(trace, d, cand.pop(d), masks[d], leaf_names) for d in list(cand)}

    y = y_all[keep_rows]
    recorded["dropped"]["invalid_target"] = int((~keep_rows).sum())
    if not len(y):
        raise FitDataError(
            f"fit: no rows to fit on: {recorded['rows']} rows replayed, {recorded['sampled']} sampled, dropped "
            f"{recorded['dropped']} (target {trace.target_output!r}, label {label.columns()[0]!r})"
        )
    return FitData(
        trace=trace, domains=domains, imports=_imports(trace, domains), y=y, label_column=label.columns()[0],
        horizon_ns=horizon_ns(label.horizons[0]), kernel_target=target, stat_sources=stats,
        rows_replayed=recorded["rows"], replay_s=recorded["replay_s"], sampled=recorded["sampled"],
        dropped=recorded["dropped"], horizon_labels={h: v[keep_rows] for h, v in extra.items()}, shards=shard_info,
    )  # fmt: skip


def _row_candidates(rec: Any, outputs: list[str]) -> Candidates:
    """The sampled rows (with their labels) as candidates of the rows domain."""
    table = rec.table
    return (
        table.column("row").to_numpy(),
        table.column("t").to_numpy(),
        {name: _values(table.column(name)) for name in outputs},
        {name: table.column(name).is_valid().to_numpy(zero_copy_only=False) for name in outputs},
    )


def _check_target_validity(trace: Trace, rows: Candidates, mask: np.ndarray) -> None:
    """The traced validity of the target must be the kernel's (a cross-check of the trace's rules)."""
    kernel_valid = rows[3][trace.target_output]
    if not np.array_equal(kernel_valid, mask):
        first = int(np.flatnonzero(kernel_valid != mask)[0])
        raise FitDataError(
            f"fit: the traced validity of {trace.target_output!r} differs from the kernel's at replay row "
            f"{int(rows[0][first])} (kernel: {bool(kernel_valid[first])}); this is a bug in harness.fit"
        )


def _domain_data(trace: Trace, d: int, cand: Candidates, keep: np.ndarray, leaf_names: dict[int, str]) -> DomainData:
    """The points of domain `d`: its candidates where `keep`, with the values of its leaves."""
    rows_d, t_d, values, _ = cand
    data = DomainData(rows=rows_d[keep], t=t_d[keep])
    for n in trace.domain_nodes(d):
        if n.kind == "leaf":
            data.leaves[n.id] = np.ascontiguousarray(values[leaf_names[n.id]][keep])
    return data


def _imports(trace: Trace, domains: dict[int, DomainData]) -> dict[tuple[int, int], np.ndarray]:
    """(consumer domain, producer domain) -> the producer's last point at or before each consumer point."""
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
    return imports


def _sources(trace: Trace, d: int) -> dict[int, frozenset[int]]:
    """For each traced node of domain `d`, the leaves and imports whose validity its own validity needs: a traced
    value is valid where all of them are (stateless rules)."""
    sources: dict[int, frozenset[int]] = {}
    for n in trace.domain_nodes(d):
        if n.kind in ("leaf", "import"):
            sources[n.id] = frozenset((n.id,))
        else:
            sources[n.id] = frozenset().union(*(sources[i] for i in n.inputs if not trace.nodes[i].scalar))
    return sources


def _needed(trace: Trace, d: int) -> frozenset[int]:
    """The leaves and imports that must be valid at a point of domain `d`: the target's (rows domain), or the
    inputs of the domain's producers (a decay, or a node with an observed input, steps there)."""
    sources = _sources(trace, d)
    if d == ROWS:
        return sources[trace.target] if not trace.nodes[trace.target].scalar else frozenset()
    producers = [n for n in trace.domain_nodes(d) if n.kind == "decay" or (n.kind == "op" and any(n.node.observed))]
    return frozenset().union(*(sources[i] for p in producers for i in p.inputs if not trace.nodes[i].scalar))


class _StepSink(RowSink):
    """The step domains' candidates as a RowSink: a sharded recording fills one per shard and joins them."""

    def __init__(self, domains: dict[int, _StepDomain]) -> None:
        self.domains = domains

    def add(self, rows: pa.Table, offset: int) -> None:
        for dom in self.domains.values():
            dom.add(rows, offset)

    def fresh(self) -> _StepSink:
        return _StepSink({d: dom.fresh() for d, dom in self.domains.items()})

    def absorb(self, part: RowSink, offset: int) -> None:
        assert isinstance(part, _StepSink)
        for d, dom in self.domains.items():
            dom.absorb(part.domains[d], offset)

    def reuse_key(self) -> str:
        """What the candidates depend on besides the rows (for reusing a finished shard)."""
        return repr(
            sorted((d, dom.runs.to_pylist(), dom.need, list(dom.columns.values)) for d, dom in self.domains.items())
        )


class _StepDomain:
    """The candidates of one step domain (rows of the events it runs in), kept chunk by chunk: the rows where
    the leaves it needs are valid, plus the first row after each run of them (an import reads its producer's
    last candidate, so where validity ends must stay); the imports are checked at the end (`_domain_mask`)."""

    def __init__(self, trace: Trace, d: int, runs: Any, leaf_names: dict[int, str]) -> None:
        self.runs = pa.array(list(runs), pa.string())
        leaves = sorted({leaf_names[n.id] for n in trace.domain_nodes(d) if n.kind == "leaf"})
        self.columns = _Columns(leaves)
        self.need = sorted({leaf_names[i] for i in _needed(trace, d) if trace.nodes[i].kind == "leaf"})
        self.last = False  # whether the previous candidate's leaves were valid
        self.first_ok: bool | None = None  # whether the first candidate's own leaves were valid (None: none yet)

    def fresh(self) -> _StepDomain:
        """An empty copy for one shard: its first candidate is kept whatever the shard before it ended with
        (`absorb` drops it again where the serial replay would not keep it)."""
        out = object.__new__(_StepDomain)
        out.runs, out.need, out.columns = self.runs, self.need, _Columns(list(self.columns.values))
        out.last, out.first_ok = True, None
        return out

    def absorb(self, part: _StepDomain, offset: int) -> None:
        """Append a later shard's candidates; its first one stays only if it is valid itself or follows a valid
        candidate of the shards before (the rule of `add`)."""
        if part.first_ok is None:
            return
        self.columns.extend(part.columns, offset, skip_first=not part.first_ok and not self.last)
        if self.first_ok is None:
            self.first_ok = part.first_ok
        self.last = part.last

    def add(self, rows: pa.Table, offset: int) -> None:
        idx = np.flatnonzero(pc.is_in(rows.column("source"), value_set=self.runs).to_numpy(zero_copy_only=False))
        if not len(idx):
            return
        ok = np.ones(len(idx), dtype=bool)
        for name in self.need:
            ok &= rows.column(name).is_valid().to_numpy(zero_copy_only=False)[idx]
        after = np.empty_like(ok)
        after[0], after[1:] = self.last, ok[:-1]
        if self.first_ok is None:
            self.first_ok = bool(ok[0])
        self.last = bool(ok[-1])
        self.columns.add(rows, idx[ok | after], offset)


def _domain_mask(
    trace: Trace,
    d: int,
    cand: dict[int, Candidates],
    masks: dict[int, np.ndarray],
    leaf_names: dict[int, str],
    edge: set[Any],
) -> np.ndarray:
    """Which candidates of domain `d` are points: where every leaf and import it needs is valid (one array per
    leaf or import, never one per node)."""
    rows_d, _, _, leaf_valid = cand[d]
    need = []
    for i in sorted(_needed(trace, d)):
        n = trace.nodes[i]
        if n.kind == "leaf":
            need.append(leaf_valid[leaf_names[i]])
        else:
            prod = trace.nodes[n.source]  # type: ignore[index]
            need.append(_import_valid(prod, rows_d, cand[prod.domain][0], masks[prod.domain], prod.node in edge))
    return _all_valid(need, len(rows_d))


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
