"""The torch model of a trace: the traced graph evaluated vectorised over every point of every domain.

Folding (`fold=True`): traced values of the same kind and static configuration at the same depth of the
same domain are evaluated as one batched operation with a leading fold dimension; each operation's inputs
are gathered from the values below with index tensors built once, here. A fold holds at most
`FOLD_ELEMENTS` values (members x points), so that on a CPU its tensors stay in cache and in memory the
allocator reuses: beyond that, page faults on fresh memory cost more than the per-operation overhead that
folding saves. `fold=False` makes a group of each value (the 1:1 module, for debugging). Both run the same
code, so they give the same numbers.

A decay group evaluates its recurrence over all its points at once (`harness.fit.scan`), so gradients
reach the half-lives. Parameters are fitted through constraint transforms: `lower + softplus(u)`,
`upper - softplus(u)`, `lower + (upper - lower) * sigmoid(u)`, or `u` when unbounded; a parameter used
where the operator requires a positive value (a half-life) has a lower bound of at least 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.fit.data import FitData
from harness.fit.scan import decay_scan
from harness.fit.store import MemoryPoints, SpilledPoints, leaf_ids
from harness.fit.trace import ROWS, TNode, Trace

FOLD_ELEMENTS = 1 << 21  # the most values (16 MiB of float64) one folded operation produces
Ref = tuple  # ("leaf", domain, row) | ("param", i) | ("const", i) | ("group", g, row) | ("imp", domain, g, row)


@dataclass
class Group:
    """One batched operation: `members` (TNode ids) of one kind in one domain, with their gather specs."""

    index: int
    domain: int
    kind: str  # "op" or "decay"
    op: object  # the representative operator (its torch form serves every member)
    members: list[int]
    inputs: list[list[Ref]] = field(default_factory=list)  # per input position: one ref per member
    params: dict[str, list[Ref]] = field(default_factory=dict)  # per operator parameter: one ref per member
    scalar: bool = False


@dataclass
class _Segment:
    key: tuple  # which source tensor
    rows: torch.Tensor  # rows of that source, in member order within the segment
    identity: bool  # rows == arange(len(source)) and the segment covers the members in order
    step: slice | None = None  # rows as a slice (an arithmetic progression): a view, cheap to differentiate
    repeat: int = 0  # the same row for every member: a broadcast view


@dataclass
class _Gather:
    segments: list[_Segment]
    inverse: torch.Tensor | None  # reorders the concatenated segments back to member order
    scalar: bool  # every source is a scalar (parameters, constants, scalar groups)


@dataclass
class _Window:
    """What one evaluation covers: the selected rows (None: all), a span [start, stop) of the points of each step
    domain, and the values carried in at a span's first point (group index -> [members, 1])."""

    sel: torch.Tensor | None
    spans: dict[int, tuple[int, int]]
    carries: dict[int, torch.Tensor]
    carried: frozenset[int] = frozenset()  # the step domains whose span starts at the last point of the piece before


def _computed(trace: Trace) -> list[TNode]:
    """The operator and decay nodes of `trace`, by depth then id (the order groups are made in)."""
    return sorted((n for n in trace.nodes if n.kind in ("op", "decay")), key=lambda n: (n.depth, n.id))


def _group_key(n: TNode) -> tuple:
    static = tuple((k, v) for k, v in sorted(n.op.params.items()) if isinstance(v, str))
    return (n.domain, n.depth, n.kind, type(n.op), static, n.scalar)


class CircuitModel(torch.nn.Module):
    """`forward(rows)` gives the target at the training rows `rows` (positions into `data.y`, sorted)."""

    def __init__(self, data: FitData, *, fold: bool = True, init: dict[str, float] | None = None) -> None:
        super().__init__()
        trace = data.trace
        self.trace, self.fold = trace, fold
        self._init_parameters(dict(init or {}))
        consts = self._init_constants(init or {})
        self._init_domains(data)
        refs = self._leaf_refs(data, consts)
        self.groups = self._make_groups(computed=_computed(trace), fold=fold, refs=refs)
        for n in trace.nodes:
            if n.kind == "import":
                _, g, row = refs[n.source]  # type: ignore[index]
                refs[n.id] = ("imp", n.domain, g, row)
        self._refs = refs
        self._wire_groups(refs)
        self._plan_gathers()
        self._plan_imports(data, refs)
        self.n_rows = self._width[ROWS]
        # the most points of one domain an evaluation holds at once (None: no limit); beyond it forward() without
        # grad and `backward_in_pieces` go through chronological pieces, carrying every value across (exact)
        self.piece_rows: int | None = None

    # ----- construction ---------------------------------------------------------------------------------
    def _init_parameters(self, values: dict[str, float]) -> None:
        """The learnable parameters: raw values (start from `values`, else the circuit's init) and constraints."""
        trace = self.trace
        self.param_names = list(trace.params)
        self._constraints = [_constraint(trace, name) for name in self.param_names]
        start = [values.get(n, trace.circuit.parameters[n].op.params["init"]) for n in self.param_names]
        self.raw = torch.nn.Parameter(
            torch.tensor([_to_raw(v, c) for v, c in zip(start, self._constraints, strict=True)], dtype=torch.float64)
        )
        self._cat = {
            kind: torch.tensor([i for i, c in enumerate(self._constraints) if c[0] == kind]) for kind in _KINDS
        }
        self._bounds = {
            kind: (
                torch.tensor([c[1] for c in self._constraints if c[0] == kind], dtype=torch.float64),
                torch.tensor([c[2] for c in self._constraints if c[0] == kind], dtype=torch.float64),
            )
            for kind in _KINDS
        }
        order = torch.cat([self._cat[k] for k in _KINDS]) if self.param_names else torch.empty(0, dtype=torch.long)
        self._param_order = torch.argsort(order)

    def _init_constants(self, init: dict[str, float]) -> list[TNode]:
        """Constants, then train statistics (Circuit.statistic): fixed values, set by set_statistics before a fit."""
        trace = self.trace
        consts = [n for n in trace.nodes if n.kind == "const"] + [n for n in trace.nodes if n.kind == "stat"]
        values = {k: v for k, v in init.items() if k in trace.statistics}
        self._const_values = torch.tensor(
            [
                n.node.op.params["value"] if n.kind == "const" else values.get(n.node.name, n.node.op.params["init"])
                for n in consts
            ],
            dtype=torch.float64,
        )
        self._stat_pos = {n.node.name: i for i, n in enumerate(consts) if n.kind == "stat"}
        return consts

    def _init_domains(self, data: FitData) -> None:
        """Per domain: times, gaps, width; the import index maps between domains."""
        self._domain_order = self.trace.domain_order()
        if data.points is None:
            data.points = MemoryPoints(data)
        self._points: MemoryPoints | SpilledPoints = data.points
        self._width = dict(self._points.widths)
        # imports whose consumer points are the producer's points: no gather needed
        self._identity = self._points.identity

    def _leaf_refs(self, data: FitData, consts: list[TNode]) -> dict[int, Ref]:
        """Refs of the constants, parameters and leaves; each domain's leaves stacked into one bank tensor."""
        trace = self.trace
        refs: dict[int, Ref] = {}
        param_pos = {name: i for i, name in enumerate(self.param_names)}
        for i, n in enumerate(consts):
            refs[n.id] = ("const", i)
        for n in trace.nodes:
            if n.kind == "param":
                refs[n.id] = ("param", param_pos[n.node.name])
        for d in self._width:
            for row, i in enumerate(leaf_ids(trace, d)):
                refs[i] = ("leaf", d, row)
        return refs

    def _make_groups(self, computed: list[TNode], fold: bool, refs: dict[int, Ref]) -> list[Group]:
        """The computed nodes in groups (folded by `_group_key`, or one each), adding their refs to `refs`."""
        groups: list[Group] = []
        keyed: dict[tuple, list[TNode]] = {}
        for n in computed:
            keyed.setdefault(_group_key(n) if fold else (n.id,), []).append(n)
        for members in keyed.values():
            first = members[0]
            # a fold as wide as fits FOLD_ELEMENTS: beyond that one batched tensor no longer stays in cache or in
            # the allocator's reused memory, and the fold costs more in page faults than it saves in overhead
            cap = len(members) if first.scalar else max(1, FOLD_ELEMENTS // max(self._width[first.domain], 1))
            for lo in range(0, len(members), cap):
                g = Group(len(groups), first.domain, first.kind, first.op, [], scalar=first.scalar)
                groups.append(g)
                for n in members[lo : lo + cap]:
                    refs[n.id] = ("group", g.index, len(g.members))
                    g.members.append(n.id)
        return groups

    def _wire_groups(self, refs: dict[int, Ref]) -> None:
        """Each group's input and parameter refs, one per member, by position."""
        for g in self.groups:
            nodes = [self.trace.nodes[i] for i in g.members]
            per_member = [[refs[i] for i in m.inputs] for m in nodes]
            if g.op.symmetric:  # type: ignore[attr-defined]
                # a + b == b + a exactly: put like sources in like positions, so each input gathers from one
                # tensor (no concatenation, no broadcasting a parameter up to a full row)
                per_member = [sorted(r, key=lambda ref: (self._ref_scalar(ref), _source_key(ref))) for r in per_member]
            g.inputs = [[r[j] for r in per_member] for j in range(len(nodes[0].inputs))]
            g.params = {p: [refs[dict(m.params)[p]] for m in nodes] for p, _ in nodes[0].params}

    def _plan_gathers(self) -> None:
        """The gather plans of every group input and parameter, and each domain's groups in order."""
        self._gathers = {
            (g.index, j): self._plan_gather(spec) for g in self.groups for j, spec in enumerate([*g.inputs])
        }
        self._param_gathers = {
            (g.index, p): self._plan_gather(spec) for g in self.groups for p, spec in g.params.items()
        }
        self._domain_groups = {d: [g for g in self.groups if g.domain == d] for d in self._domain_order}
        self._decays = {d: any(g.kind == "decay" for g in gs) for d, gs in self._domain_groups.items()}

    def _plan_imports(self, data: FitData, refs: dict[int, Ref]) -> None:
        """Per producer domain its consumers; per import (x, y) the groups of y that domain x imports."""
        self._consumers: dict[int, list[int]] = {d: [] for d in self._domain_order}
        for x, y in self._points.import_keys:
            self._consumers[y].append(x)
        self._imported_groups = {
            (x, y): sorted({r[2] for n in self.trace.domain_nodes(x) if n.kind == "import" for r in [refs[n.id]]
                            if self.groups[r[2]].domain == y})
            for x, y in self._points.import_keys
        }  # fmt: skip

    # ----- parameters -----------------------------------------------------------------------------------
    def values(self) -> torch.Tensor:
        """The learnable parameters in circuit order, through their constraint transforms."""
        parts = []
        for kind in _KINDS:
            idx = self._cat[kind]
            if not len(idx):
                continue
            u = self.raw.index_select(0, idx)
            lo, hi = self._bounds[kind]
            if kind == "free":
                parts.append(u)
            elif kind == "lower":
                parts.append(lo + torch.nn.functional.softplus(u))
            elif kind == "upper":
                parts.append(hi - torch.nn.functional.softplus(u))
            else:
                parts.append(lo + (hi - lo) * torch.sigmoid(u))
        if not parts:
            return self.raw
        return torch.cat(parts).index_select(0, self._param_order)

    def param_values(self) -> dict[str, float]:
        """Current values of the fitted parameters (ready for `kernel.set_params`)."""
        with torch.no_grad():
            v = self.values().tolist()
        return dict(zip(self.param_names, v, strict=True))

    def set_statistics(self, values: dict[str, float]) -> None:
        """Set train statistics by name (they are constants of the model, not fitted)."""
        for name, value in values.items():
            self._const_values[self._stat_pos[name]] = float(value)

    @contextmanager
    def parameters_set(self, values: dict[str, float]) -> Iterator[None]:
        """Within the block the fitted parameters named in `values` take those values (e.g. a head weight at 0
        to drop one signal); they are restored after."""
        with torch.no_grad():
            saved = self.raw.detach().clone()
            for name, v in values.items():
                i = self.param_names.index(name)
                self.raw[i] = _to_raw(float(v), self._constraints[i])
        try:
            yield
        finally:
            with torch.no_grad():
                self.raw.copy_(saved)

    # ----- evaluation -----------------------------------------------------------------------------------
    def forward(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The target at training rows `rows` (all rows when None); without grad in pieces of at most `piece_rows`
        points per domain (the same values: pieces carry every value across)."""
        pieces = None if torch.is_grad_enabled() else self._pieces(rows)
        if pieces is None:
            out, _ = self._evaluate(rows, capture=False)
            return out
        parts = [value for _, value in self._forward_pieces(pieces)]
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)

    def backward_in_pieces(
        self,
        rows: torch.Tensor,
        loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        ahead: torch.Tensor | None = None,
    ) -> tuple[float, torch.Tensor | None] | None:
        """Backpropagate sum(loss_of(pred, rows piece)) over the pieces of `rows` without one graph over all of
        them: a forward without grad keeps the values each piece carries in, then the pieces in reverse, each
        evaluated again with grad, take the gradient of what they carry out from the piece after. The gradients
        are those of one evaluation (summed in another order). `ahead`: rows after all of `rows` (e.g. the
        validation rows) whose predictions at the current parameters come out of the same forward, instead of a
        second evaluation of the whole prefix. Returns (the summed loss, the predictions at `ahead` or None);
        None (nothing done) when the rows fit in one piece."""
        sel = rows if ahead is None or not len(ahead) else torch.cat([rows, ahead])
        pieces = self._pieces(sel)
        if pieces is None:
            return None
        windows, predicted = self._carry_pass(pieces, len(rows), ahead is not None)
        total, adjoint = 0.0, {}
        for window in reversed(windows):
            leaves = {g: c.detach().requires_grad_(True) for g, c in window.carries.items()}
            pred, outs, _, _ = self._run(_Window(window.sel, window.spans, leaves, window.carried))
            tensors, grads = [], []
            if window.sel is not None and len(window.sel):
                loss = loss_of(pred, window.sel)
                tensors.append(loss)
                grads.append(torch.ones_like(loss))
                total += float(loss.detach())
            for g, adj in adjoint.items():
                if outs[g].requires_grad:
                    tensors.append(outs[g][:, -1:])
                    grads.append(adj)
            if tensors:
                torch.autograd.backward(tensors, grads)
            adjoint = {g: leaf.grad for g, leaf in leaves.items() if leaf.grad is not None}
        return total, predicted

    def in_pieces(self, rows: torch.Tensor | None) -> bool:
        """Whether an evaluation of `rows` goes in more than one piece (more points of a domain than `piece_rows`)."""
        return self._pieces(rows) is not None

    def _carry_pass(self, pieces: list[_Window], n_rows: int, ahead: bool) -> tuple[list[_Window], torch.Tensor | None]:
        """The forward without grad of `backward_in_pieces`: the windows holding the first `n_rows` selected rows
        (each with what it carries in, its selection cut to those rows) and, with `ahead`, the predictions at the
        selected rows after them (only the pieces holding such rows evaluate the target)."""
        starts = np.cumsum([0] + [len(p.sel) for p in pieces])  # type: ignore[arg-type]
        first_ahead = int(np.searchsorted(starts[1:], n_rows, side="right")) if ahead else len(pieces)
        windows, parts = [], []
        with torch.no_grad():
            for k, (window, value) in enumerate(self._forward_pieces(pieces, targets_from=first_ahead)):
                cut = n_rows - int(starts[k])
                if cut > 0:
                    windows.append(_Window(window.sel[:cut], window.spans, window.carries, window.carried))
                if k >= first_ahead:
                    parts.append(value[max(cut, 0) :])
        if not ahead:
            return windows, None
        return windows, torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)

    def _forward_pieces(self, pieces: list[_Window], targets_from: int = 0) -> Iterator[tuple[_Window, torch.Tensor]]:
        """Each piece in order with what it carries in (each step group's value at the last point of its span in
        the piece before), and its target values (empty for the pieces before `targets_from`: only the step
        domains are evaluated there)."""
        last: dict[int, torch.Tensor] = {}
        for k, piece in enumerate(pieces):
            carries = {g.index: last[g.index] for d in piece.carried for g in self._domain_groups[d]
                       if not g.scalar and g.index in last}  # fmt: skip
            window = _Window(piece.sel, piece.spans, carries, piece.carried)
            value, outs, _, _ = self._run(window, k >= targets_from)
            yield window, value
            for d, (start, stop) in window.spans.items():
                if stop > start:
                    groups = [g for g in self._domain_groups[d] if not g.scalar]
                    last.update({g.index: outs[g.index][:, -1:].clone() for g in groups})  # a view would keep it all

    def _pieces(self, rows: torch.Tensor | None) -> list[_Window] | None:
        """The evaluation of `rows` cut into chronological pieces (by replay position) holding at most `piece_rows`
        points of each domain, each step span starting at the last point of the one before; None for one piece."""
        need = self._needed(rows)
        sel = np.arange(self.n_rows) if rows is None else rows.numpy()
        if self._points.spilled:
            return self._planned_pieces(sel, need)
        replay_rows = self._points.replay_rows
        points = {d: replay_rows[d][sel] if d == ROWS else replay_rows[d][: int(need[d])]  # type: ignore[call-overload]
                  for d in self._domain_order}  # fmt: skip
        cap = self.piece_rows
        if cap is None or max(len(p) for p in points.values()) <= cap:
            return None
        pieces, done = [], {d: 0 for d in points}
        while any(done[d] < len(p) for d, p in points.items()):
            ahead = [int(p[done[d] + cap]) for d, p in points.items() if done[d] + cap < len(p)]
            bound = min(ahead) if ahead else None  # the first replay position left to the next piece
            upto = {d: len(p) if bound is None else int(np.searchsorted(p, bound)) for d, p in points.items()}
            spans = {d: (max(done[d] - 1, 0), upto[d]) for d in points if d != ROWS}
            carried = frozenset(d for d in spans if done[d] > 0)  # the span's first point ended the piece before
            pieces.append(_Window(torch.from_numpy(sel[done[ROWS] : upto[ROWS]]), spans, {}, carried))
            done = upto
        return pieces

    def _planned_pieces(self, sel: np.ndarray, need: dict[int, object]) -> list[_Window] | None:
        """The pieces of a spilled recording (planned when it was written, `store.plan_pieces`) that hold the
        selected rows and the needed points of each step domain; None for one piece."""
        counts = self._points.counts  # type: ignore[union-attr]
        at_rows = np.searchsorted(sel, counts[ROWS])  # selected rows before each boundary
        ends = {d: int(need[d]) for d in counts if d != ROWS}  # type: ignore[call-overload]
        ends[ROWS] = len(sel)
        pieces, done = [], {d: 0 for d in counts}
        for k in range(1, len(at_rows)):
            upto = {d: min(int(c[k]), ends[d]) for d, c in counts.items() if d != ROWS}
            upto[ROWS] = int(at_rows[k])
            if upto == done:
                continue
            spans = {d: (max(done[d] - 1, 0), upto[d]) for d in upto if d != ROWS}
            carried = frozenset(d for d in spans if done[d] > 0)
            pieces.append(_Window(torch.from_numpy(sel[done[ROWS] : upto[ROWS]]), spans, {}, carried))
            done = upto
            if done == ends:
                break
        return pieces if len(pieces) > 1 else None

    def _needed(self, rows: torch.Tensor | None) -> dict[int, object]:
        """Per domain: the rows domain's selection, or how many leading points each step domain needs."""
        need: dict[int, object] = {ROWS: rows}
        last: dict[int, int] = {ROWS: (self.n_rows if rows is None else (int(rows[-1]) + 1 if len(rows) else 0))}
        for d in reversed(self._domain_order):
            if d == ROWS:
                continue
            n = 0
            for x in self._consumers[d]:
                if last.get(x, 0) > 0:
                    n = max(n, self._points.import_point((x, d), last[x] - 1) + 1)
            last[d] = n
            need[d] = n
        return need

    def _evaluate(self, rows: torch.Tensor | None, capture: bool) -> tuple[torch.Tensor, dict]:
        need = self._needed(rows)
        window = _Window(rows, {d: (0, int(w)) for d, w in need.items() if d != ROWS}, {})  # type: ignore[arg-type]
        value, outs, imported, params = self._run(window)
        cap = {"outs": outs, "imported": imported, "params": params, "need": need} if capture else {}
        return value, cap

    def _run(
        self, window: _Window, target: bool = True
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor], dict, torch.Tensor]:
        """The target over one window (the selected rows; a span of points of each step domain, each group's value
        at a span's first point carried in when given); also the group outputs, imports and parameter values.
        `target=False`: the step domains only (what a piece carries on), the target empty."""
        params = self.values()
        sel = window.sel
        outs: dict[int, torch.Tensor] = {}
        imported: dict[tuple[int, int], torch.Tensor] = {}
        for d in self._domain_order:
            if d == ROWS and not target:
                return torch.empty(0, dtype=torch.float64), outs, imported, params
            if d == ROWS:
                start, width = 0, self.n_rows if sel is None else len(sel)
                bank = self._points.bank_at(d, sel)
            else:
                start, stop = window.spans[d]
                width, bank = stop - start, self._points.bank(d, start, stop)
            self._import_into(d, window, start, width, outs, imported)
            sources = _Sources(bank, params, self._const_values, outs, imported, d, width)
            if d == ROWS:
                rows_sources = sources
            gaps = self._points.gaps(d, start, start + width) if self._decays[d] else None
            for g in self._domain_groups[d]:
                outs[g.index] = self._group_output(g, sources, gaps, width, window.carries.get(g.index))
        target = self._refs[self.trace.target]
        final_width = self.n_rows if sel is None else len(sel)
        value = rows_sources.one(target)
        if value.shape[-1] != final_width:
            value = value.expand(final_width)
        return value, outs, imported, params

    def _import_into(
        self, d: int, window: _Window, start: int, width: int, outs: dict, imported: dict[tuple[int, int], torch.Tensor]
    ) -> None:
        """The values domain `d` imports, at its points in the window (forward filled from the producers' points)."""
        sel = window.sel
        for (x, y), groups in self._imported_groups.items():
            if x != d:
                continue
            if d != ROWS:  # a step domain's points in the window (whatever the rows selection)
                idx = self._points.imports((x, y), start, start + width)
            else:
                idx = self._points.imports_at((x, y), sel)
            y_start = window.spans[y][0]
            if y_start:  # a span's first point may import from before the producer's span: its values are carried
                idx = (idx - y_start).clamp_(min=0)
            same = (x, y) in self._identity and (sel is None or d != ROWS) and y_start == start
            for g in groups:
                same_g = same and outs[g].shape[1] == width
                imported[(d, g)] = outs[g] if same_g else outs[g].index_select(1, idx)

    def _group_output(
        self, g: Group, sources: _Sources, gaps: torch.Tensor | None, width: int, carry: torch.Tensor | None
    ) -> torch.Tensor:
        """One group's values over its domain's points in the window; with `carry`, the value at the first point
        is the carried one (and a decay continues from it)."""
        xs = [sources.gather(self._gathers[(g.index, j)]) for j in range(len(g.inputs))]
        ps = {p: sources.gather(self._param_gathers[(g.index, p)]) for p in g.params}
        if g.kind == "decay":
            form = getattr(g.op, "scan_form", None)
            coeffs = g.op.torch_coeffs  # type: ignore[attr-defined]
            return decay_scan(gaps, ps["halflife"], xs[0], width, form, coeffs, carry)  # type: ignore[arg-type]
        out = g.op.torch_f(ps, *xs)  # type: ignore[attr-defined]
        if carry is not None and out.shape[-1] == width and width:
            out = torch.cat([carry, out[:, 1:]], dim=1)
        return out

    def _plan_gather(self, spec: list[Ref]) -> _Gather:
        order = sorted(range(len(spec)), key=lambda i: (_source_key(spec[i]), i))
        segments: list[_Segment] = []
        for key, members in itertools.groupby(order, key=lambda i: _source_key(spec[i])):
            rows = [spec[i][-1] for i in members]
            segment = _Segment(key, torch.tensor(rows, dtype=torch.long), False)
            segment.identity = rows == list(range(self._source_len(key)))  # the whole source, in order
            stride = rows[1] - rows[0] if len(rows) > 1 else 1
            if stride > 0 and rows == list(range(rows[0], rows[-1] + 1, stride)):
                segment.step = slice(rows[0], rows[-1] + 1, stride)
            elif stride == 0 and len(set(rows)) == 1:
                segment.repeat = len(rows)  # one row for every member: a broadcast view, not a copy
            segments.append(segment)
        inverse = None
        if order != list(range(len(spec))):
            inverse = torch.argsort(torch.tensor(order, dtype=torch.long))
        scalar = all(self._source_scalar(s.key) for s in segments)
        return _Gather(segments, inverse, scalar)

    def _source_len(self, key: tuple) -> int:
        kind = key[0]
        if kind == "param":
            return len(self.param_names)
        if kind == "const":
            return len(self._const_values)
        if kind == "leaf":
            return self._points.n_leaves[key[1]]
        return len(self.groups[key[-1]].members)

    def _ref_scalar(self, ref: Ref) -> bool:
        return self._source_scalar(_source_key(ref))

    def _source_scalar(self, key: tuple) -> bool:
        return key[0] in ("param", "const") or (key[0] == "group" and self.groups[key[1]].scalar)

    # ----- diagnosis ------------------------------------------------------------------------------------
    def explain(self, row: int) -> str:
        """Where a non-finite prediction at training row `row` comes from: the first operator that produced
        a nan or inf from finite inputs, with those inputs (or the label, when the prediction is finite)."""
        with torch.no_grad():
            sel = torch.tensor([row], dtype=torch.long)
            _, cap = self._evaluate(sel, capture=True)
            walker = _Walker(self, cap, sel)
            return walker.explain(self.trace.target, ROWS, 0)


_KINDS = ("free", "lower", "upper", "both")


def _source_key(ref: Ref) -> tuple:
    return tuple(ref[:-1])


class _Sources:
    """The tensors a domain's groups gather from, at the points being evaluated."""

    def __init__(self, bank, params, consts, outs, imported, domain, width) -> None:  # type: ignore[no-untyped-def]
        self.bank, self.params, self.consts = bank, params, consts
        self.outs, self.imported, self.domain, self.width = outs, imported, domain, width

    def tensor(self, key: tuple) -> torch.Tensor:
        kind = key[0]
        if kind == "param":
            return self.params.unsqueeze(1)
        if kind == "const":
            return self.consts.unsqueeze(1)
        if kind == "leaf":
            return self.bank
        if kind == "group":
            return self.outs[key[1]]
        return self.imported[(key[1], key[2])]

    def gather(self, g: _Gather) -> torch.Tensor:
        parts = []
        for s in g.segments:
            src = self.tensor(s.key)
            if s.identity:
                parts.append(src)
            elif s.step is not None:
                parts.append(src[s.step])
            elif s.repeat:
                row = int(s.rows[0])
                parts.append(src[row : row + 1].expand(s.repeat, -1))
            else:
                parts.append(src.index_select(0, s.rows))
        if not g.scalar and len(parts) > 1:
            parts = [p.expand(-1, self.width) if p.shape[1] != self.width else p for p in parts]
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        return out if g.inverse is None else out.index_select(0, g.inverse)

    def one(self, ref: Ref) -> torch.Tensor:
        return self.tensor(_source_key(ref))[ref[-1]]


class _Walker:
    """Follows a non-finite value down the traced graph to the operator that produced it."""

    def __init__(self, model: CircuitModel, cap: dict, sel: torch.Tensor) -> None:
        self.m, self.cap, self.sel = model, cap, sel

    def value(self, tid: int, domain: int, point: int) -> float:
        m, n = self.m, self.m.trace.nodes[tid]
        ref = m._refs[tid]
        kind = ref[0]
        if kind == "param":
            return float(self.cap["params"][ref[1]])
        if kind == "const":
            return float(m._const_values[ref[1]])
        if kind == "leaf":
            col = int(self.sel[point]) if domain == ROWS else point
            return m._points.leaf(ref[1], ref[2], col)
        if kind == "imp":
            prod = m.trace.nodes[n.source]  # type: ignore[index]
            return self.value(prod.id, prod.domain, self.producer_point(domain, prod.domain, point))
        g = m.groups[ref[1]]
        out = self.cap["outs"][ref[1]]
        return float(out[ref[2], 0 if g.scalar else point])

    def producer_point(self, domain: int, prod_domain: int, point: int) -> int:
        return self.m._points.import_point((domain, prod_domain), int(self.sel[point]) if domain == ROWS else point)

    def explain(self, tid: int, domain: int, point: int) -> str:
        m, n = self.m, self.m.trace.nodes[tid]
        if n.kind == "import":
            prod = m.trace.nodes[n.source]  # type: ignore[index]
            return self.explain(prod.id, prod.domain, self.producer_point(domain, prod.domain, point))
        if n.kind == "decay":
            out = self.cap["outs"][m._refs[tid][1]][m._refs[tid][2]]
            bad = torch.nonzero(~torch.isfinite(out[: point + 1])).flatten()
            first = int(bad[0]) if len(bad) else point
            x = self.value(n.inputs[0], domain, first)
            if not math.isfinite(x):
                return self.explain(n.inputs[0], domain, first)
            hl = self.value(dict(n.params)["halflife"], domain, first)
            return self.describe(n, domain, first, [x], extra=f" (halflife={hl!r})")
        inputs = [self.value(i, domain, point) for i in n.inputs]
        for i, v in zip(n.inputs, inputs, strict=True):
            if not math.isfinite(v):
                return self.explain(i, domain, point)
        return self.describe(n, domain, point, inputs)

    def describe(self, n: TNode, domain: int, point: int, inputs: list[float], extra: str = "") -> str:
        value = self.value(n.id, domain, point)
        where = self.where(domain, point)
        if n.kind in ("leaf", "param", "const"):
            return f"{n.kind} {n.node.name} is {value!r} {where}"
        return f"{n.op.kind} node {n.node.name} produced {value!r} from inputs {inputs!r}{extra} {where}"

    def where(self, domain: int, point: int) -> str:
        m = self.m
        if domain == ROWS:
            point = int(self.sel[point])
        t = m._points.time(domain, point)
        return f"at t={t} ({'training row ' + str(point) if domain == ROWS else 'step ' + str(point)})"


def _constraint(trace: Trace, name: str) -> tuple[str, float, float]:
    """(kind, lower, upper) of a learnable parameter's transform."""
    p = trace.circuit.parameters[name].op.params
    lo, hi = p["lower"], p["upper"]
    if name in trace.positive_params and not lo >= 0.0:
        lo = 0.0
    if math.isfinite(lo) and math.isfinite(hi):
        return ("both", lo, hi)
    if math.isfinite(lo):
        return ("lower", lo, math.inf)
    if math.isfinite(hi):
        return ("upper", -math.inf, hi)
    return ("free", -math.inf, math.inf)


def _softplus_inv(x: float) -> float:
    x = max(x, 1e-12)
    return x + math.log(-math.expm1(-x))


def _to_raw(value: float, c: tuple[str, float, float]) -> float:
    kind, lo, hi = c
    if kind == "free":
        return value
    if kind == "lower":
        return _softplus_inv(value - lo)
    if kind == "upper":
        return _softplus_inv(hi - value)
    q = min(max((value - lo) / (hi - lo), 1e-12), 1.0 - 1e-12)
    return math.log(q) - math.log1p(-q)
