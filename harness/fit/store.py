"""Where the torch model reads the recorded points: in memory (`MemoryPoints`, the FitData arrays as tensors), or
spilled to one Parquet file per domain (`SpilledPoints`) and read back row group by row group.

A recording larger than `TrainerConfig.memory_rows` points is spilled: every evaluation of the model then goes
through chronological pieces planned once here (at most `piece_rows` points of each domain per piece), and a
piece reads only the row groups holding its points. The values read back are the values written, so a spilled
fit computes what the in-memory fit computes (predictions bit for bit; gradients summed in another order).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from harness.errors import FitError
from harness.fit.scan import gap_seconds
from harness.fit.trace import ROWS, Trace
from harness.streams.content_digest import array_digest

if TYPE_CHECKING:
    from harness.fit.data import FitData

CACHED_GROUPS = 4  # decoded row groups kept per domain: a piece's window starts in the group before its own


class SpillError(FitError):
    """The recording cannot be spilled (the folder cannot be written)."""


def leaf_ids(trace: Trace, d: int) -> list[int]:
    """The leaf node ids of domain `d`, in the order of the rows of its value bank."""
    return [n.id for n in trace.domain_nodes(d) if n.kind == "leaf"]


def record_digest(data: FitData) -> str:
    """sha256 of what the fit was given (labels, each domain's replay rows and leaf values): equal digests, the
    same recording. A spilled recording keeps the digest taken before its arrays left memory."""
    if data.digest is not None:
        return data.digest
    arrays = [data.y, *[d.rows for d in data.domains.values()]]
    arrays += [v for d in data.domains.values() for _, v in sorted(d.leaves.items())]
    return array_digest(*arrays)


def point_count(data: FitData) -> int:
    """The recorded points of every domain together (what `memory_rows` bounds)."""
    return sum(len(d) for d in data.domains.values())


def _describe(points: MemoryPoints | SpilledPoints, data: FitData) -> None:
    """What both kinds of points know of the recording: points per domain, leaves per domain, the imports, and
    which imports map each consumer point to the same producer point (no gather needed)."""
    points.widths = {d: len(dd) for d, dd in data.domains.items()}
    points.n_leaves = {d: len(leaf_ids(data.trace, d)) for d in data.domains}
    points.import_keys = list(data.imports)
    points.identity = {k for k, v in data.imports.items() if np.array_equal(v, np.arange(len(v)))}


class MemoryPoints:
    """The recorded points as tensors over the FitData arrays (no copies beyond each domain's leaf bank)."""

    spilled = False

    def __init__(self, data: FitData) -> None:
        trace = data.trace
        _describe(self, data)
        self.replay_rows = {d: data.domains[d].rows for d in data.domains}  # positions in the replay: the time axis
        self._t = {d: torch.from_numpy(data.domains[d].t) for d in data.domains}
        self._gaps = {d: gap_seconds(t) for d, t in self._t.items()}  # once, not per evaluation
        self._imports = {k: torch.from_numpy(v) for k, v in data.imports.items()}
        self._import_np = data.imports
        self._banks = {}
        for d, dd in data.domains.items():
            ids = leaf_ids(trace, d)
            bank = np.stack([dd.leaves[i] for i in ids]) if ids else np.empty((0, len(dd)))
            self._banks[d] = torch.from_numpy(np.ascontiguousarray(bank))

    def bank(self, d: int, start: int, stop: int) -> torch.Tensor:
        """The leaf values [leaves, stop - start] of domain `d` at points start..stop-1."""
        return self._banks[d][:, start:stop]

    def bank_at(self, d: int, sel: torch.Tensor | None) -> torch.Tensor:
        """The leaf values of domain `d` at the selected points (all when None)."""
        return self._banks[d] if sel is None else self._banks[d].index_select(1, sel)

    def gaps(self, d: int, start: int, stop: int) -> torch.Tensor:
        """The gap seconds between the consecutive points start..stop-1 of domain `d` ([stop - start - 1])."""
        return self._gaps[d][start : max(stop - 1, start)]

    def imports(self, key: tuple[int, int], start: int, stop: int) -> torch.Tensor:
        """Per consumer point start..stop-1 of import `key` (consumer, producer): the producer's point."""
        return self._imports[key][start:stop]

    def imports_at(self, key: tuple[int, int], sel: torch.Tensor | None) -> torch.Tensor:
        """The producer's point at each selected consumer point (all when None)."""
        return self._imports[key] if sel is None else self._imports[key].index_select(0, sel)

    def import_point(self, key: tuple[int, int], i: int) -> int:
        """The producer's point at consumer point `i`."""
        return int(self._import_np[key][i])

    def leaf(self, d: int, row: int, point: int) -> float:
        """One leaf value (bank row `row`) of domain `d` at `point`."""
        return float(self._banks[d][row, point])

    def time(self, d: int, point: int) -> int:
        """The time (ns) of one point of domain `d`."""
        return int(self._t[d][point])

    def close(self) -> None:
        """Nothing to release."""


class SpilledPoints:
    """The recorded points of each domain in a Parquet file (leaf values, gaps, times, import indices), read back a
    window at a time, with the pieces every evaluation goes through (`counts`)."""

    spilled = True

    def __init__(self, data: FitData, folder: Path, piece_rows: int) -> None:
        self.folder = folder
        self.remove: weakref.finalize | None = None  # set by `spill`: removes the folder
        _describe(self, data)
        self.counts = plan_pieces({d: dd.rows for d, dd in data.domains.items()}, piece_rows)
        self._files: dict[int, pq.ParquetFile] = {}
        self._starts: dict[int, np.ndarray] = {}
        self._cache: dict[int, OrderedDict[int, dict[str, np.ndarray]]] = {}
        for d in data.domains:
            path = folder / f"domain-{d}.parquet"
            _write_domain(path, _domain_table(data, d), piece_rows)
            self._open(d, path)

    def _open(self, d: int, path: Path) -> None:
        file = pq.ParquetFile(path)
        sizes = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
        self._files[d], self._cache[d] = file, OrderedDict()
        self._starts[d] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def _group(self, d: int, g: int) -> dict[str, np.ndarray]:
        cache = self._cache[d]
        if g in cache:
            cache.move_to_end(g)
            return cache[g]
        table = self._files[d].read_row_group(g)
        cols = {name: table.column(name).to_numpy().copy() for name in table.column_names}  # writable
        cache[g] = cols
        if len(cache) > CACHED_GROUPS:
            cache.popitem(last=False)
        return cols

    def _read(self, d: int, start: int, stop: int, names: list[str]) -> list[np.ndarray]:
        """Columns `names` of domain `d` at points start..stop-1."""
        if stop <= start:
            return [self._empty(name) for name in names]
        starts = self._starts[d]
        first = int(np.searchsorted(starts, start, side="right")) - 1
        last = int(np.searchsorted(starts, stop - 1, side="right")) - 1
        groups = [self._group(d, g) for g in range(first, last + 1)]
        lo, hi = start - int(starts[first]), stop - int(starts[first])
        out = []
        for name in names:
            parts = [g[name] for g in groups]
            whole = parts[0] if len(parts) == 1 else np.concatenate(parts)
            out.append(whole[lo:hi])
        return out

    @staticmethod
    def _empty(name: str) -> np.ndarray:
        return np.empty(0, np.float64 if name.startswith(("leaf", "gap")) else np.int64)

    def _leaf_names(self, d: int) -> list[str]:
        return [f"leaf{i}" for i in range(self.n_leaves[d])]

    def _stack(self, d: int, cols: list[np.ndarray], width: int) -> torch.Tensor:
        bank = np.stack(cols) if cols else np.empty((0, width))
        return torch.from_numpy(np.ascontiguousarray(bank))

    def bank(self, d: int, start: int, stop: int) -> torch.Tensor:
        """The leaf values [leaves, stop - start] of domain `d` at points start..stop-1."""
        return self._stack(d, self._read(d, start, stop, self._leaf_names(d)), max(stop - start, 0))

    def _span(self, d: int, sel: torch.Tensor | None) -> tuple[int, int, np.ndarray | None]:
        if sel is None:
            return 0, self.widths[d], None
        s = sel.numpy()
        return (int(s[0]), int(s[-1]) + 1, s - int(s[0])) if len(s) else (0, 0, s)

    def bank_at(self, d: int, sel: torch.Tensor | None) -> torch.Tensor:
        """The leaf values of domain `d` at the selected points (sorted; all when None)."""
        start, stop, pick = self._span(d, sel)
        cols = self._read(d, start, stop, self._leaf_names(d))
        cols = cols if pick is None else [c[pick] for c in cols]
        return self._stack(d, cols, stop - start if pick is None else len(pick))

    def gaps(self, d: int, start: int, stop: int) -> torch.Tensor:
        """The gap seconds between the consecutive points start..stop-1 of domain `d` ([stop - start - 1])."""
        (gap,) = self._read(d, start, max(stop - 1, start), ["gap"])
        return torch.from_numpy(np.ascontiguousarray(gap))

    def imports(self, key: tuple[int, int], start: int, stop: int) -> torch.Tensor:
        """Per consumer point start..stop-1 of import `key` (consumer, producer): the producer's point."""
        (idx,) = self._read(key[0], start, stop, [f"imp{key[1]}"])
        return torch.from_numpy(np.ascontiguousarray(idx))

    def imports_at(self, key: tuple[int, int], sel: torch.Tensor | None) -> torch.Tensor:
        """The producer's point at each selected consumer point (sorted; all when None)."""
        start, stop, pick = self._span(key[0], sel)
        (idx,) = self._read(key[0], start, stop, [f"imp{key[1]}"])
        return torch.from_numpy(np.ascontiguousarray(idx if pick is None else idx[pick]))

    def import_point(self, key: tuple[int, int], i: int) -> int:
        """The producer's point at consumer point `i`."""
        return int(self._read(key[0], i, i + 1, [f"imp{key[1]}"])[0][0])

    def leaf(self, d: int, row: int, point: int) -> float:
        """One leaf value (bank row `row`) of domain `d` at `point`."""
        return float(self._read(d, point, point + 1, [f"leaf{row}"])[0][0])

    def time(self, d: int, point: int) -> int:
        """The time (ns) of one point of domain `d`."""
        return int(self._read(d, point, point + 1, ["t"])[0][0])

    def close(self) -> None:
        """Remove the folder (the model cannot be evaluated after this)."""
        self._files.clear()
        self._cache.clear()
        if self.remove is not None:
            self.remove()


def _domain_table(data: FitData, d: int) -> pa.Table:
    """One domain's spilled columns: leaf0.. (bank order), t, gap (to the next point; 0 at the last), imp<y>."""
    dd = data.domains[d]
    cols: dict[str, np.ndarray] = {f"leaf{i}": dd.leaves[n] for i, n in enumerate(leaf_ids(data.trace, d))}
    cols["t"] = dd.t
    gap = np.zeros(len(dd), np.float64)
    if len(dd) > 1:
        gap[:-1] = gap_seconds(torch.from_numpy(dd.t)).numpy()
    cols["gap"] = gap
    for (x, y), idx in data.imports.items():
        if x == d:
            cols[f"imp{y}"] = idx
    return pa.table(cols)


def _write_domain(path: Path, table: pa.Table, group_rows: int) -> None:
    """Write then rename: a file that is there is whole."""
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=group_rows, compression="none", use_dictionary=False)
    tmp.replace(path)


def plan_pieces(rows: dict[int, np.ndarray], cap: int) -> dict[int, np.ndarray]:
    """Chronological pieces over every point of every domain, each with at most `cap` new points of each: per
    domain the number of its points before each piece boundary (a replay position), from 0 to all."""
    counts = {d: [0] for d in rows}
    done = {d: 0 for d in rows}
    while any(done[d] < len(r) for d, r in rows.items()):
        ahead = [int(r[done[d] + cap]) for d, r in rows.items() if done[d] + cap < len(r)]
        bound = min(ahead) if ahead else None
        for d, r in rows.items():
            done[d] = len(r) if bound is None else int(np.searchsorted(r, bound))
            counts[d].append(done[d])
    return {d: np.asarray(c, np.int64) for d, c in counts.items()}


def spill(data: FitData, spill_dir: str | None, piece_rows: int) -> SpilledPoints:
    """Write `data`'s points to Parquet under a fresh folder in `spill_dir` (the system's temporary folder when
    None) and drop them from memory; the folder is removed when the points are garbage (or at exit)."""
    data.digest = record_digest(data)
    parent = Path(spill_dir) if spill_dir is not None else Path(tempfile.gettempdir())
    try:
        parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="harness-spill-", dir=parent))
    except OSError as e:
        where = f"cannot create a folder for the spilled recording in {parent}: {e}"
        raise SpillError(f"trainer.spill_dir: {where}") from None
    try:
        points = SpilledPoints(data, folder, piece_rows)
    except OSError as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise SpillError(f"trainer.spill_dir: cannot write the spilled recording to {folder}: {e}") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    points.remove = weakref.finalize(points, shutil.rmtree, str(folder), True)
    _drop_arrays(data)
    return points


def _drop_arrays(data: FitData) -> None:
    """Keep in memory what is per training row outside the model (rows domain's replay rows and times)."""
    from harness.fit.data import DomainData

    rows = data.domains[ROWS]
    data.domains = {ROWS: DomainData(rows=rows.rows, t=rows.t)}
    data.imports = {}
