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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.fit.data import FitData
from harness.fit.scan import decay_scan, gap_seconds
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
        self._t = {d: torch.from_numpy(data.domains[d].t) for d in data.domains}
        self._gaps = {d: gap_seconds(t) for d, t in self._t.items()}  # once, not per evaluation
        self._width = {d: len(data.domains[d]) for d in data.domains}
        self._imports = {k: torch.from_numpy(v) for k, v in data.imports.items()}
        # imports whose consumer points are the producer's points: no gather needed
        self._identity = {k for k, v in data.imports.items() if np.array_equal(v, np.arange(len(v)))}
        self._import_np = data.imports

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
        self._banks: dict[int, torch.Tensor] = {}
        for d, dd in data.domains.items():
            leaves = [n for n in trace.domain_nodes(d) if n.kind == "leaf"]
            for row, n in enumerate(leaves):
                refs[n.id] = ("leaf", d, row)
            bank = np.stack([dd.leaves[n.id] for n in leaves]) if leaves else np.empty((0, len(dd)))
            self._banks[d] = torch.from_numpy(np.ascontiguousarray(bank))
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

    def _plan_imports(self, data: FitData, refs: dict[int, Ref]) -> None:
        """Per producer domain its consumers; per import (x, y) the groups of y that domain x imports."""
        self._consumers: dict[int, list[int]] = {d: [] for d in self._domain_order}
        for x, y in data.imports:
            self._consumers[y].append(x)
        self._imported_groups = {
            (x, y): sorted({r[2] for n in self.trace.domain_nodes(x) if n.kind == "import" for r in [refs[n.id]]
                            if self.groups[r[2]].domain == y})
            for x, y in data.imports
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
        """The target at training rows `rows` (all rows when None)."""
        out, _ = self._evaluate(rows, capture=False)
        return out

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
                    n = max(n, int(self._import_np[(x, d)][last[x] - 1]) + 1)
            last[d] = n
            need[d] = n
        return need

    def _evaluate(self, rows: torch.Tensor | None, capture: bool) -> tuple[torch.Tensor, dict]:
        params = self.values()
        need = self._needed(rows)
        outs: dict[int, torch.Tensor] = {}
        imported: dict[tuple[int, int], torch.Tensor] = {}
        for d in self._domain_order:
            sel = need[d]
            if d == ROWS:
                width = self.n_rows if sel is None else len(sel)  # type: ignore[arg-type]
                bank = self._banks[d] if sel is None else self._banks[d].index_select(1, sel)  # type: ignore[arg-type]
            else:
                width = int(sel)  # type: ignore[arg-type]
                bank = self._banks[d][:, :width]
            for (x, y), groups in self._imported_groups.items():
                if x != d:
                    continue
                idx = self._imports[(x, y)]
                idx = idx if sel is None else (idx.index_select(0, sel) if d == ROWS else idx[:width])  # type: ignore[arg-type]
                same = (x, y) in self._identity and (sel is None or d != ROWS) and outs[groups[0]].shape[1] == width
                for g in groups:
                    imported[(d, g)] = outs[g] if same else outs[g].index_select(1, idx)
            sources = _Sources(bank, params, self._const_values, outs, imported, d, width)
            if d == ROWS:
                rows_sources = sources
            for g in self._domain_groups[d]:
                xs = [sources.gather(self._gathers[(g.index, j)]) for j in range(len(g.inputs))]
                ps = {p: sources.gather(self._param_gathers[(g.index, p)]) for p in g.params}
                if g.kind == "decay":
                    form = getattr(g.op, "scan_form", None)
                    coeffs = g.op.torch_coeffs  # type: ignore[attr-defined]
                    outs[g.index] = decay_scan(self._gaps[d], ps["halflife"], xs[0], width, form, coeffs)
                else:
                    outs[g.index] = g.op.torch_f(ps, *xs)  # type: ignore[attr-defined]
        target = self._refs[self.trace.target]
        final_width = self.n_rows if rows is None else len(rows)
        value = rows_sources.one(target)
        if value.shape[-1] != final_width:
            value = value.expand(final_width)
        cap = {"outs": outs, "imported": imported, "params": params, "need": need} if capture else {}
        return value, cap

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
            return self._banks[key[1]].shape[0]
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
            return float(m._banks[ref[1]][ref[2], col])
        if kind == "imp":
            prod = m.trace.nodes[n.source]  # type: ignore[index]
            return self.value(prod.id, prod.domain, self.producer_point(domain, prod.domain, point))
        g = m.groups[ref[1]]
        out = self.cap["outs"][ref[1]]
        return float(out[ref[2], 0 if g.scalar else point])

    def producer_point(self, domain: int, prod_domain: int, point: int) -> int:
        idx = self.m._import_np[(domain, prod_domain)]
        return int(idx[int(self.sel[point])] if domain == ROWS else idx[point])

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
        t = int(m._t[domain][point])
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
