"""A partitioned Parquet catalog of market events: import tardis / Binance files once, read any range in batches.

Layout under the catalog root (`hs.data.import_files(root, files)`, `harness data import --root ROOT FILES`):

    manifest.json                                   what is in the catalog (the only truth readers trust)
    market=<name>/date=<YYYY-MM-DD>/part-<digest16>.parquet
                                                    one file per partition: the events of one market whose `t`
                                                    falls on that UTC day, in the market schema, zstd, row
                                                    groups of `ROW_GROUP` rows, in `hs.streams.merge` order
    .lock, .tmp/                                    the importers' lock and their temporary files
    .verified/                                      stamps of partition files whose content a read verified

The manifest holds, per market, every imported source (keyed by its sha256: path, reader, role, options, the
dates it touched) and, per partition, its file, content digest (`hs.streams.digest`), row count, time span
(first/last `t`, ns) and sources. Importing is incremental and idempotent: a source whose sha256 the market
already holds with the same options is skipped (with other options: DataError); a new source's rows are merged
into the partitions of their days (`merge(existing rows, new rows)`). Files are imported one at a time, each
committed on its own: its partitions are written under `.tmp/`, renamed into place (a new partition's directory,
or a new file beside the old one), then the manifest is replaced atomically (temporary file + `os.replace`), then
superseded files are deleted. A partly written partition is never visible, and an interrupted import leaves at
most files the manifest does not list; the next import (under the lock) deletes them and redoes that source.

Reading (`read`, `stream=catalog`) lists partitions from the manifest and scans their files with
`pyarrow.dataset`, batch by batch in time order (days in order; several markets merged on the fly with the
`hs.streams.merge` tie-break, market order as argument order, and a `market` column), so memory holds about
one batch per market whatever the range. Each partition's content is checked against its manifest digest as
it is read (`verify`); a read that verified a whole file stamps it (`.verified/`: its size, change times
and inode), and later reads of a file whose stamp still matches skip the hashing (most of a read's cost).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from harness.errors import DataError, HarnessError
from harness.names import IDENTIFIER
from harness.streams import binance_dump, schema, tardis_csv
from harness.streams.content_digest import StreamDigest, digest, file_sha256
from harness.streams.csvread import Path_
from harness.streams.merge_by_time import merge, merge_streams
from harness.streams.paths import expand
from harness.streams.rules import Rules

FORMAT = "harness.catalog/1"
MANIFEST = "manifest.json"
LOCK = ".lock"
TMP = ".tmp"
ROW_GROUP = 100_000  # rows per Parquet row group (and the default batch of a read): streaming-sized
DAY_NS = 86_400 * 10**9
MARKET_COLUMN = "market"  # added to the events of a read of several markets
READAHEAD = 2  # batches a scan decodes ahead, one thread: pyarrow's defaults hold many row groups at once (as
# fast here: decoding is not what limits a replay)
LOCK_TIMEOUT = 60.0  # seconds an importer waits for another one to finish

READERS: dict[str, tuple[str, ...]] = {
    "tardis": ("book", "trades", "quotes", "snapshots"),
    "binance": ("trades", "agg_trades", "book_ticker"),
}
_TARDIS_KINDS = {"incremental_book_L2": "book", "trades": "trades", "quotes": "quotes"}
_TARDIS_NAME = re.compile(
    r"(?P<exchange>[A-Za-z0-9-]+)_(?P<kind>incremental_book_L2|trades|quotes|book_snapshot_\d+)_"
    r"\d{4}-\d{2}-\d{2}_(?P<symbol>[A-Za-z0-9-]+)\.csv(\.gz)?"
)
_BINANCE_KINDS = {"trades": "trades", "aggTrades": "agg_trades", "bookTicker": "book_ticker"}
_BINANCE_NAME = re.compile(r"(?P<symbol>[A-Za-z0-9]+)-(?P<kind>trades|aggTrades|bookTicker)-[0-9-]+\.(zip|csv|csv\.gz)")


# ----- what a file is -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """How a source file is read: the reader (`tardis` or `binance`), its role there, and the market its name
    suggests (`<exchange>_<symbol>`, `binance_<symbol>`, or "default")."""

    reader: str
    role: str
    market: str = "default"


def _identifier(text: str) -> str:
    """`text` as a plain identifier (other characters become `_`)."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return out if IDENTIFIER.fullmatch(out) else f"m_{out}"


def detect(path: Path_, reader: str | None = None, role: str | None = None) -> Kind:
    """The reader and role of a file from its name (tardis.dev `<exchange>_<type>_<date>_<symbol>.csv.gz`,
    data.binance.vision `<SYMBOL>-<type>-<date>.zip`), unless both are given; HarnessError when it cannot tell."""
    name = Path(path).name
    market = "default"
    if m := _TARDIS_NAME.fullmatch(name):
        kind = m["kind"]
        found = ("tardis", "snapshots" if kind.startswith("book_snapshot") else _TARDIS_KINDS[kind])
        market = _identifier(f"{m['exchange']}_{m['symbol']}")
    elif m := _BINANCE_NAME.fullmatch(name):
        found, market = ("binance", _BINANCE_KINDS[m["kind"]]), _identifier(f"binance_{m['symbol']}")
    elif reader is None or role is None:
        raise HarnessError(
            f"{path}: cannot tell the reader and role from the file name (tardis.dev "
            "'<exchange>_<incremental_book_L2|trades|quotes|book_snapshot_N>_<date>_<symbol>.csv.gz' or Binance "
            "'<SYMBOL>-<trades|aggTrades|bookTicker>-<date>.zip'); give reader= and role= (--reader, --role)"
        )
    else:
        found = (reader, role)
    kind = Kind(reader or found[0], role or found[1], market)
    if kind.reader not in READERS:
        raise HarnessError(f"{path}: reader={kind.reader!r} is not one of {sorted(READERS)}")
    if kind.role not in READERS[kind.reader]:
        raise HarnessError(f"{path}: role={kind.role!r} is not a {kind.reader} role, one of {READERS[kind.reader]}")
    return kind


def check_market(market: object) -> str:
    """`market` if it is a plain identifier (it names a directory and, later, a stream), else HarnessError."""
    if not isinstance(market, str) or not IDENTIFIER.fullmatch(market) or len(market) > 128:
        raise HarnessError(f"market name {market!r} must be a plain identifier [A-Za-z_][A-Za-z0-9_]*")
    return market


def reader_options(reader: str, clock: str, on_bad_rows: str, rules: Rules | Mapping[str, Any] | None) -> dict:
    """The options a source is read with (recorded in the manifest; a re-import must give the same)."""
    options: dict[str, Any] = {"on_bad_rows": on_bad_rows, "rules": Rules.of(rules).to_dict()}
    return {"clock": clock, **options} if reader == "tardis" else options


def read_source(path: Path, kind: Kind, options: Mapping[str, Any]) -> pa.Table:
    """One source file read by its reader into the market schema (merged, checked by the reader's rules)."""
    kwargs = {**options, "rules": Rules.of(options["rules"])}
    if kind.reader == "tardis":
        return tardis_csv.tardis(**{kind.role: [path]}, **kwargs)
    return binance_dump.binance(**{kind.role: [path]}, **kwargs)


# ----- the manifest ---------------------------------------------------------------------------------------------
def manifest_path(root: Path_) -> Path:
    return Path(root) / MANIFEST


def load_manifest(root: Path_) -> dict[str, Any]:
    """The catalog's manifest (an empty one when the catalog has none yet); DataError when unreadable."""
    path = manifest_path(root)
    if not path.exists():
        return {"format": FORMAT, "markets": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: whole file: unreadable catalog manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataError(f"{path}: whole file: not a harness catalog manifest (format {found!r}, expected {FORMAT!r})")
    return manifest


def _write_manifest(root: Path, manifest: Mapping[str, Any]) -> None:
    """Replace the manifest atomically: a temporary file in the root, flushed, then `os.replace`."""
    tmp = root / f".{MANIFEST}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, manifest_path(root))
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _locked(root: Path, timeout: float) -> Iterator[dict[str, Any]]:
    """Hold the catalog's lock (one importer at a time), tidy what an interrupted import left, yield the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / LOCK), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        holder = f"another import holds the catalog lock {root / LOCK} (waited {timeout:g} s)"
        raise HarnessError(f"{root}: {holder}") from None
    try:
        manifest = load_manifest(root)
        _tidy(root, manifest)
        try:
            yield manifest
        except BaseException:
            _tidy(root, load_manifest(root))  # what the failed import wrote and did not commit
            raise
        shutil.rmtree(root / TMP, ignore_errors=True)
    finally:
        lock.release()


def _listed(manifest: Mapping[str, Any]) -> set[str]:
    """The partition files the manifest lists (paths relative to the root)."""
    return {p["file"] for m in manifest["markets"].values() for p in m["partitions"].values()}


def _tidy(root: Path, manifest: Mapping[str, Any]) -> None:
    """Delete what an interrupted import left: `.tmp/`, partition files and directories the manifest does not list."""
    shutil.rmtree(root / TMP, ignore_errors=True)
    for stale in root.glob(f".{MANIFEST}.*.tmp"):
        stale.unlink(missing_ok=True)
    listed = _listed(manifest)
    for part in root.glob("market=*/date=*"):
        for f in part.glob("*.parquet"):
            if f.relative_to(root).as_posix() not in listed:
                f.unlink()
        if part.is_dir() and not any(part.iterdir()):
            part.rmdir()
    for market in root.glob("market=*"):
        if market.is_dir() and not any(market.iterdir()):
            market.rmdir()


# ----- writing partitions ---------------------------------------------------------------------------------------
def day_of(t: int) -> str:
    """The UTC date (YYYY-MM-DD) of a time in ns since the epoch."""
    return str(np.datetime64(int(t) // DAY_NS, "D"))


def _market_table(table: pa.Table, what: str) -> pa.Table:
    """`table` as stored: the market schema's columns in `hs.streams.merge` order, no schema metadata."""
    extra = [c for c in table.column_names if c not in schema.SCHEMA.names]
    if extra:
        raise HarnessError(f"{what}: columns {extra} are not in the market schema; a catalog stores that schema only")
    return merge(table).select(schema.SCHEMA.names).replace_schema_metadata(None)


def _days(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """The rows of a time-ordered table split by the UTC day of `t`: (date, rows of that day)."""
    days = table.column("t").to_numpy() // DAY_NS
    if not len(days):
        return
    cuts = np.flatnonzero(np.diff(days)) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(days)], strict=True):
        yield day_of(int(days[lo]) * DAY_NS), table.slice(int(lo), int(hi - lo))


def _normal(table: pa.Table) -> pa.Table:
    """A table read back from Parquet with the exact market schema (types, trigger codes), no metadata."""
    return schema.conform(table.select(schema.SCHEMA.names)).replace_schema_metadata(None)


def normal_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A non-empty batch read from a partition file, with the exact market schema (what `read` yields)."""
    return _normal(pa.Table.from_batches([batch])).combine_chunks().to_batches()[0]


def _write_temp(root: Path, table: pa.Table, name: str) -> Path:
    """Write a partition's table under `.tmp/<unique>/` (flushed to disk); the temporary directory."""
    tmp = root / TMP / uuid.uuid4().hex
    tmp.mkdir(parents=True)
    pq.write_table(table, tmp / name, row_group_size=ROW_GROUP, compression="zstd", use_compliant_nested_type=False)
    with open(tmp / name, "rb") as f:
        os.fsync(f.fileno())
    return tmp


def _publish(tmp: Path, dest: Path, name: str) -> None:
    """Move a written partition into place: a new partition's whole directory, else its file beside the old one
    (invisible to readers, which go by the manifest, until the manifest names it)."""
    if dest.exists():
        os.replace(tmp / name, dest / name)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, dest)


def _partition_entry(table: pa.Table, file: str, d: str, sources: list[dict[str, Any]]) -> dict[str, Any]:
    """A partition's manifest entry: its file, content digest, rows, time span (ns) and sources."""
    t = table.column("t")
    return {
        "file": file,
        "digest": d,
        "rows": table.num_rows,
        "t_first": int(t[0].as_py()),
        "t_last": int(t[-1].as_py()),
        "sources": sources,
    }


def _update_partition(root: Path, market: str, day: str, rows: pa.Table, entry: dict | None, source: dict) -> dict:
    """Merge `rows` into the partition (market, day), write it and move it into place; its new manifest entry."""
    if entry is not None:
        held = _normal(pq.read_table(root / entry["file"]))
        if (found := digest(held)) != entry["digest"]:
            raise DataError(
                f"{root / entry['file']}: whole file: content digest {found[:16]} differs from the manifest's "
                f"{entry['digest'][:16]}: the partition was edited or damaged; not merging new rows into it"
            )
        rows = merge(held, rows).select(schema.SCHEMA.names).replace_schema_metadata(None)
    d = digest(rows)
    name = f"part-{d[:16]}.parquet"
    rel = f"market={market}/date={day}"
    tmp = _write_temp(root, rows, name)
    _publish(tmp, root / rel, name)
    shutil.rmtree(tmp, ignore_errors=True)
    return _partition_entry(rows, f"{rel}/{name}", d, [*(entry["sources"] if entry else []), source])


def _add(root: Path, manifest: dict[str, Any], market: str, table: pa.Table, source: dict[str, Any]) -> list[str]:
    """Merge one source's table into its market's partitions and commit the manifest; the dates it touched."""
    m = manifest["markets"].setdefault(market, {"sources": {}, "partitions": {}})
    parts, old = m["partitions"], set()
    dates = []
    brief = _brief(source)
    for day, rows in _days(table):
        entry = parts.get(day)
        if entry is not None:
            old.add(entry["file"])
        parts[day] = _update_partition(root, market, day, rows, entry, brief)
        dates.append(day)
    _commit(root, manifest, m, brief, table.num_rows, dates, old)
    return dates


def _brief(source: Mapping[str, Any]) -> dict[str, Any]:
    """What the manifest keeps of a source (JSON values)."""
    return {k: source[k] for k in ("path", "sha256", "reader", "role", "options")}


def _commit(
    root: Path, manifest: dict[str, Any], m: dict[str, Any], brief: dict[str, Any], rows: int, dates: list, old: set
) -> None:
    """Record the source in its market, replace the manifest, then delete the partition files it superseded."""
    m["sources"][brief["sha256"]] = {**brief, "rows": rows, "dates": dates}
    _write_manifest(root, manifest)
    for f in old - _listed(manifest):
        (root / f).unlink(missing_ok=True)


def _known(manifest: Mapping[str, Any], market: str, source: Mapping[str, Any]) -> bool:
    """Whether the market already holds a source with this content read the same way (reader, role, options);
    DataError when it holds the content read another way (importing it again would duplicate its events)."""
    found = manifest["markets"].get(market, {}).get("sources", {}).get(source["sha256"])
    if found is None:
        return False
    how = {k: json.loads(json.dumps(source[k])) for k in ("reader", "role", "options")}
    if {k: found[k] for k in how} != how:
        raise DataError(
            f"{source['path']}: whole file: market {market!r} already holds this content (sha256 "
            f"{source['sha256'][:12]}, imported from {found['path']} as {found['reader']} {found['role']} with "
            f"options {found['options']}), not as {how['reader']} {how['role']} with {how['options']}; import it "
            "into another market or catalog"
        )
    return True


# ----- importing ------------------------------------------------------------------------------------------------
@dataclass
class Imported:
    """What an import did: per source file, the market and dates it went to, or that it was already there."""

    imported: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (path, market, dates)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, market): same sha256 and options

    @property
    def dates(self) -> list[tuple[str, str]]:
        """The (market, date) partitions written."""
        return sorted({(m, d) for _, m, dates in self.imported for d in dates})


def import_files(
    root: Path_,
    files: Path_ | Sequence[Path_],
    *,
    market: str | None = None,
    reader: str | None = None,
    role: str | None = None,
    clock: str = "local",
    on_bad_rows: str = "error",
    rules: Rules | Mapping[str, Any] | None = None,
    progress: Callable[[Path, str], None] | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
) -> Imported:
    """Import tardis / Binance files into the catalog at `root`, one file at a time, each committed on its own.

    `files` is one path, a glob (sorted) or a list of them (`harness.streams.paths`). A file's reader and role
    come from its name (`detect`) unless `reader` and `role` are given; its market is `market` or the one its
    name suggests. A file whose content (sha256) its market already holds, read with the same options, is
    skipped. `progress(path, "imported" | "skipped")` is called after each file.
    """
    root = Path(root)
    paths = expand(files)  # one path, a glob (sorted) or a list of them
    kinds = [detect(p, reader, role) for p in paths]  # every name checked before anything is written
    names = [check_market(market if market is not None else k.market) for k in kinds]
    out = Imported()
    with _locked(root, lock_timeout) as manifest:
        for path, kind, name in zip(paths, kinds, names, strict=True):
            options = reader_options(kind.reader, clock, on_bad_rows, rules)
            dates = _import_file(root, manifest, name, path, kind, options)
            if dates is None:
                out.skipped.append((str(path), name))
            else:
                out.imported.append((str(path), name, dates))
            if progress is not None:
                progress(path, "skipped" if dates is None else "imported")
    return out


def _import_file(
    root: Path, manifest: dict[str, Any], market: str, path: Path, kind: Kind, options: dict[str, Any]
) -> list[str] | None:
    """Import one file into `market` (committed); the dates it touched, None when the market already holds it."""
    try:
        sha = file_sha256(path)
    except OSError as e:
        raise DataError(f"{path}: whole file: unreadable file: cannot read ({e})") from None
    how = {"reader": kind.reader, "role": kind.role, "options": json.loads(json.dumps(options))}
    source = {"path": str(path.resolve()), "sha256": sha, **how}
    if _known(manifest, market, source):
        return None
    table = _market_table(read_source(path, kind, options), str(path))
    return _add(root, manifest, market, table, source)


def import_table(
    root: Path_,
    table: pa.Table,
    *,
    market: str = "default",
    source: str = "<table>",
    lock_timeout: float = LOCK_TIMEOUT,
) -> Imported:
    """Import an events table in the market schema (e.g. generated data) into the catalog; skipped when the market
    already holds a table with the same content digest. `source` names it in the manifest."""
    root = Path(root)
    name = check_market(market)
    out = Imported()
    with _locked(root, lock_timeout) as manifest:
        table = _market_table(table, source)
        if table.num_rows == 0:
            raise HarnessError(f"{source}: an empty table has nothing to import")
        info = {"path": source, "sha256": digest(table), "reader": "table", "role": "table", "options": {}}
        if _known(manifest, name, info):
            out.skipped.append((source, name))
        else:
            out.imported.append((source, name, _add(root, manifest, name, table, info)))
    return out


def import_batches(
    root: Path_,
    batches: Iterable[pa.RecordBatch | pa.Table],
    *,
    market: str = "default",
    source: str = "<batches>",
    lock_timeout: float = LOCK_TIMEOUT,
) -> Imported:
    """Import an events stream given batch by batch in time order (e.g. `hs.streams.synthetic_batches`): each day's
    partition is written while the batches arrive, so memory holds a batch, never the stream or a whole day.
    The result is what `import_table` of the whole stream gives (same digests, same skip of known content); days
    the market already holds are merged as `import_table` merges them (read into memory)."""
    root = Path(root)
    name = check_market(market)
    out = Imported()
    with _locked(root, lock_timeout) as manifest:
        held = manifest["markets"].get(name, {}).get("partitions", {})
        days = _DayWriters(root, set(held))
        whole, rows = StreamDigest(), 0
        for table in _in_order(batches, source):
            for batch in table.to_batches():
                whole.add(batch)
            for day, part in _days(table):
                days.add(day, part)
            rows += table.num_rows
        if not rows:
            raise HarnessError(f"{source}: an empty stream has nothing to import")
        info = {"path": source, "sha256": whole.hexdigest(), "reader": "table", "role": "table", "options": {}}
        if _known(manifest, name, info):
            days.discard()
            out.skipped.append((source, name))
        else:
            out.imported.append((source, name, _add_written(root, manifest, name, days, info, rows)))
    return out


def _in_order(batches: Iterable[pa.RecordBatch | pa.Table], source: str) -> Iterator[pa.Table]:
    """The stream as market tables in `merge` order: the rows of each batch's last timestamp wait for the next
    batch, so ties across a boundary are broken as one merge of the whole stream breaks them."""
    carry: pa.Table | None = None
    for k, piece in _pieces(batches):
        table = _market_table(piece, source)
        if carry is not None:
            first, ended = table.column("t")[0].as_py(), carry.column("t")[0].as_py()
            if first < ended:
                raise HarnessError(
                    f"{source}: batch {k} starts at t={first}, before the batch before it ended (t={ended}); "
                    "import_batches takes a stream in time order (import_table sorts unordered rows)"
                )
            both = pa.concat_tables([carry, table])
            table = _market_table(both, source) if first == ended else both.combine_chunks()  # a tie: merge breaks it
        t = table.column("t").to_numpy()
        last = int(np.searchsorted(t, t[-1]))
        carry = table.slice(last)
        if last:
            yield table.slice(0, last)
    if carry is not None:
        yield carry


def _pieces(batches: Iterable[pa.RecordBatch | pa.Table]) -> Iterator[tuple[int, pa.Table]]:
    """The batches (numbered) in pieces of at most ROW_GROUP rows: merging a piece copies a piece, not a batch."""
    for k, batch in enumerate(batches):
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        for lo in range(0, table.num_rows, ROW_GROUP):
            yield k, table.slice(lo, ROW_GROUP)


class _DayWriters:
    """Each new day's partition written as its rows arrive (a Parquet file under `.tmp/`, its content digest
    taken on the way); rows of days the market already holds are kept to be merged at the end."""

    def __init__(self, root: Path, held: set[str]) -> None:
        self.root, self.held = root, held
        self.open: dict[str, tuple[Path, pq.ParquetWriter, StreamDigest, list[pa.Table]]] = {}
        self.done: dict[str, tuple[Path, str, dict[str, Any]]] = {}  # day -> (tmp folder, file name, entry)
        self.merge: dict[str, list[pa.Table]] = {}
        self.span: dict[str, list[int]] = {}

    def add(self, day: str, rows: pa.Table) -> None:
        if day in self.held:
            self.merge.setdefault(day, []).append(rows)
            return
        for other in [d for d in self.open if d != day]:
            self._close(other)  # the stream is in time order: an earlier day is complete
        if day in self.done:
            raise HarnessError(f"day {day} came back after a later day: the stream is not in time order")
        if day not in self.open:
            tmp = self.root / TMP / uuid.uuid4().hex
            tmp.mkdir(parents=True)
            file = tmp / "part.parquet"
            writer = pq.ParquetWriter(file, rows.schema, compression="zstd", use_compliant_nested_type=False)
            self.open[day] = (tmp, writer, StreamDigest(), [])
            self.span[day] = [int(rows.column("t")[0].as_py()), 0, 0]
        tmp, writer, dig, pending = self.open[day]
        for batch in rows.to_batches():
            dig.add(batch)
        pending.append(rows)
        self.span[day][1] = int(rows.column("t")[-1].as_py())
        self.span[day][2] += rows.num_rows
        if sum(p.num_rows for p in pending) >= ROW_GROUP:
            self._flush(day, final=False)

    def _flush(self, day: str, final: bool) -> None:
        """Write whole row groups of ROW_GROUP rows (the rest too when `final`)."""
        _, writer, _, pending = self.open[day]
        if not pending:
            return
        table = pa.concat_tables(pending)
        whole = table.num_rows if final else table.num_rows // ROW_GROUP * ROW_GROUP
        if whole:
            writer.write_table(table.slice(0, whole), row_group_size=ROW_GROUP)
        pending[:] = [table.slice(whole)] if whole < table.num_rows else []

    def _close(self, day: str) -> None:
        self._flush(day, final=True)
        tmp, writer, dig, _ = self.open.pop(day)
        writer.close()
        d = dig.hexdigest()
        name = f"part-{d[:16]}.parquet"
        os.replace(tmp / "part.parquet", tmp / name)
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
        first, last, rows = self.span.pop(day)
        self.done[day] = (tmp, name, {"digest": d, "rows": rows, "t_first": first, "t_last": last})

    def finish(self) -> dict[str, tuple[Path, str, dict[str, Any]]]:
        """The written days (every open one closed)."""
        for day in list(self.open):
            self._close(day)
        return self.done

    def discard(self) -> None:
        """Drop what was written (the content was already imported)."""
        for tmp, writer, *_ in self.open.values():
            writer.close()
            shutil.rmtree(tmp, ignore_errors=True)
        for tmp, _, _ in self.done.values():
            shutil.rmtree(tmp, ignore_errors=True)
        self.open.clear()
        self.done.clear()


def _add_written(
    root: Path, manifest: dict[str, Any], market: str, days: _DayWriters, source: dict[str, Any], rows: int
) -> list[str]:
    """Publish the days `days` wrote (and merge the held days' rows) and commit the manifest; the dates touched."""
    m = manifest["markets"].setdefault(market, {"sources": {}, "partitions": {}})
    parts, old = m["partitions"], set()
    brief = _brief(source)
    for day, (tmp, name, entry) in days.finish().items():
        rel = f"market={market}/date={day}"
        _publish(tmp, root / rel, name)
        shutil.rmtree(tmp, ignore_errors=True)
        parts[day] = {"file": f"{rel}/{name}", **entry, "sources": [brief]}
    for day, pieces in days.merge.items():
        old.add(parts[day]["file"])
        parts[day] = _update_partition(root, market, day, pa.concat_tables(pieces), parts[day], brief)
    dates = sorted([*days.done, *days.merge])
    _commit(root, manifest, m, brief, rows, dates, old)
    return dates


# ----- reading --------------------------------------------------------------------------------------------------
def as_date(value: object, what: str) -> date | None:
    """A date bound (YYYY-MM-DD string, date or datetime; None: open) as a date; HarnessError otherwise."""
    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise HarnessError(f"{what}={value!r} is not a date (YYYY-MM-DD, UTC)") from None


@dataclass(frozen=True)
class Partition:
    """One partition of the catalog as the manifest lists it."""

    market: str
    date: str
    file: str
    digest: str
    rows: int
    t_first: int
    t_last: int
    sources: tuple[str, ...]

    @property
    def span(self) -> str:
        """The partition's time span as UTC ISO times."""
        return f"{_iso(self.t_first)}-{_iso(self.t_last)}"


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t // 10**9, tz=UTC).strftime("%H:%M:%S")


def markets(root: Path_) -> list[str]:
    """The markets of the catalog at `root`, sorted."""
    return sorted(load_manifest(_existing(root))["markets"])


def _existing(root: Path_) -> Path:
    root = Path(root)
    if not manifest_path(root).exists():
        raise HarnessError(f"{root}: not a market-data catalog (no {MANIFEST}; create one with `harness data import`)")
    return root


def _market_names(root: Path_, markets: str | Sequence[str] | None, held: Mapping[str, Any] | None = None) -> list[str]:
    """The markets asked for (None: all the catalog holds), each once, in order; HarnessError naming unknown ones."""
    held = load_manifest(_existing(root))["markets"] if held is None else held
    names = sorted(held) if markets is None else [markets] if isinstance(markets, str) else list(dict.fromkeys(markets))
    unknown = [m for m in names if m not in held]
    if unknown:
        raise HarnessError(f"{root}: the catalog holds no market {unknown}; it holds {sorted(held)}")
    return names


def partitions(
    root: Path_, markets: str | Sequence[str] | None = None, start: object = None, end: object = None
) -> list[Partition]:
    """The partitions of `markets` (None: all) whose date is within [start, end] (inclusive, UTC), by market then
    date; HarnessError naming a market the catalog does not hold."""
    held = load_manifest(_existing(root))["markets"]
    names = _market_names(root, markets, held)
    lo, hi = as_date(start, "start"), as_date(end, "end")
    out = []
    for m in names:
        for day, p in sorted(held[m]["partitions"].items()):
            if (lo is None or day >= lo.isoformat()) and (hi is None or day <= hi.isoformat()):
                srcs = tuple(s["path"] for s in p["sources"])
                out.append(Partition(m, day, p["file"], p["digest"], p["rows"], p["t_first"], p["t_last"], srcs))
    return out


def _market_batches(root: Path, parts: Sequence[Partition], batch_size: int, verify: bool) -> Iterator[pa.RecordBatch]:
    """The events of one market's partitions (in date order) through `pyarrow.dataset`, batch by batch."""
    import pyarrow.dataset as ds  # here: it loads pandas (half a second), which importing harness does not need

    if not parts:
        return
    files = [str(root / p.file) for p in parts]
    # no pre-buffering: pyarrow's default reads a file's whole (compressed) column chunks ahead, a day at a time
    file_format = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False))
    partitioning = ds.partitioning(pa.schema([("market", pa.string()), ("date", pa.string())]), flavor="hive")
    dataset = ds.dataset(files, format=file_format, partitioning=partitioning, partition_base_dir=str(root))
    for part, fragment in zip(parts, dataset.get_fragments(), strict=True):
        stat = _file_stat(root / part.file)
        check = StreamDigest() if verify and not _stamped(root, part, stat) else None
        scan = {"batch_size": batch_size, "batch_readahead": READAHEAD, "fragment_readahead": 1, "use_threads": False}
        for batch in fragment.to_batches(columns=schema.SCHEMA.names, **scan):
            if batch.num_rows == 0:
                continue
            out = normal_batch(batch)
            if check is not None:
                check.add(out)
            yield out
        if check is not None and (found := check.hexdigest()) != part.digest:
            raise DataError(
                f"{root / part.file}: whole file: content digest {found[:16]} differs from the manifest's "
                f"{part.digest[:16]} (market {part.market}, {part.date}): the file was edited or damaged; re-import it"
            )
        if check is not None:
            _stamp(root, part, stat)


VERIFIED = ".verified"


def _file_stat(path: Path) -> dict[str, int]:
    """What a stamp compares: a file rewritten in any ordinary way changes at least one of these."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _stamp_path(root: Path, part: Partition) -> Path:
    return root / VERIFIED / (part.file.replace("/", "__") + ".json")


def _stamped(root: Path, part: Partition, stat: dict[str, int]) -> bool:
    """Whether a read already verified this partition's file as it is now (same digest, size, times, inode)."""
    try:
        stamp = json.loads(_stamp_path(root, part).read_text())
    except (OSError, ValueError):
        return False
    return stamp == {"digest": part.digest, **stat}


def _stamp(root: Path, part: Partition, stat: dict[str, int]) -> None:
    """Record that the file (as `stat` saw it before the read) holds the manifest's content; written whole
    (temporary file + rename); a catalog this process cannot write to is simply verified on every read."""
    path = _stamp_path(root, part)
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps({"digest": part.digest, **stat}))
        os.replace(tmp, path)
    except OSError:
        pass


def read(
    root: Path_,
    markets: str | Sequence[str] | None = None,
    start: object = None,
    end: object = None,
    *,
    batch_size: int = ROW_GROUP,
    verify: bool = True,
    named: bool = False,
) -> Iterator[pa.RecordBatch]:
    """The events of `markets` between the UTC dates `start` and `end` (inclusive; None: open), record batches of
    at most `batch_size` rows in time order. Several markets are merged as `hs.streams.merge(*markets)` would
    (market order as argument order) with a `market` column; one market's events are exactly what was imported.
    `named`: each market's events under its name instead (`schema.tag`: triggers `<market>.book`, columns
    `<market>.<column>`, no `market` column), for a circuit of several markets (`hs.lib.market(c, market=...)`)."""
    if int(batch_size) <= 0:
        raise HarnessError(f"batch_size={batch_size} must be > 0")
    root = Path(root)
    parts = partitions(root, markets, start, end)
    names = _market_names(root, markets)
    streams = [_market_batches(root, [p for p in parts if p.market == m], int(batch_size), verify) for m in names]
    if named:
        tagged = [_tagging(s, m) for s, m in zip(streams, names, strict=True)]
        yield from merge_streams(tagged, [schema.tag(schema.empty(), m) for m in names], int(batch_size))
    elif len(streams) == 1:
        yield from streams[0]
    elif streams:
        empty = schema.empty().append_column(MARKET_COLUMN, pa.array([], pa.string()))
        labelled = [_labelling(s, m) for s, m in zip(streams, names, strict=True)]
        yield from merge_streams(labelled, [empty] * len(streams), int(batch_size))


def read_table(
    root: Path_, markets: str | Sequence[str] | None = None, start: object = None, end: object = None
) -> pa.Table:
    """`read` as one table (the whole range in memory: for small ranges and tests)."""
    batches = list(read(root, markets, start, end))
    if not batches:
        return schema.empty()
    return pa.Table.from_batches(batches)


def _labelled(batch: pa.RecordBatch, market: str) -> pa.Table:
    return pa.Table.from_batches([batch]).append_column(MARKET_COLUMN, pa.array([market] * batch.num_rows))


def _tagging(batches: Iterator[pa.RecordBatch], market: str) -> Iterator[pa.Table]:
    """A market's batches under its name (`schema.tag`)."""
    for batch in batches:
        yield schema.tag(pa.Table.from_batches([batch]), market)


def _labelling(batches: Iterator[pa.RecordBatch], market: str) -> Iterator[pa.Table]:
    """A market's batches with its `market` column."""
    for batch in batches:
        yield _labelled(batch, market)
