"""Shared CSV reading for the market-data readers: typed pyarrow.csv reads, bad-input rules, read statistics.

`read_csv` reads one CSV file (plain, gzip, or a zip archive holding one CSV member; the kind is found from
the file's first bytes, not its name) with explicit column types, with a header row or with column names
given by the caller. Every problem raises `DataError` naming the file, the row and the rule::

    /data/x.csv.gz: row 17 (line 18): non-numeric value: column 'price' holds 'abc', not a float64

`row` is the 1-based data row (the header does not count), `line` the 1-based line in the (decompressed) file.
File-level rules (`EMPTY_FILE`, `TRUNCATED`, `MISSING_COLUMNS`, `UNREADABLE`) always raise. Row-level rules
raise under ``on_bad_rows="error"`` and drop the row under ``on_bad_rows="skip"``, counted per rule in a
`ReadStats`. Checks run in stages (malformed rows, value conversion, empty values, then the readers' value
rules, then timestamp order); within the first failing stage the first bad row is reported.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from harness.errors import DataError, HarnessError

STATS_KEY = b"harness.stats"
ROW = "__row"  # column added by read_csv: the 1-based data row of each row in its file

ON_BAD_ROWS = ("error", "skip")

# row-level rules: raise under on_bad_rows="error", drop and count under "skip"
MALFORMED = "malformed row"
NON_NUMERIC = "non-numeric value"
NOT_BOOLEAN = "not a boolean"
EMPTY_VALUE = "empty value"
BAD_SIZE = "negative or NaN size"
ZERO_SIZE = "zero trade size"
BAD_PRICE = "non-finite price"
BAD_SIDE = "unknown side"
DECREASING = "decreasing timestamp"
# file-level rules: always raise
EMPTY_FILE = "empty file"
TRUNCATED = "truncated file"
MISSING_COLUMNS = "missing columns"
UNREADABLE = "unreadable file"

TRUE_VALUES = ["true", "True", "TRUE"]
FALSE_VALUES = ["false", "False", "FALSE"]
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_FIRST_LINE_LIMIT = 1 << 20

Path_ = str | PathLike[str]


@dataclass
class ReadStats:
    """What a read saw: the files, the data rows read, and the rows skipped in total and per rule."""

    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_skipped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, rule: str, n: int) -> None:
        """Count `n` rows skipped under `rule`."""
        if n:
            self.rows_skipped += int(n)
            self.skipped[rule] = self.skipped.get(rule, 0) + int(n)

    def add(self, other: ReadStats) -> ReadStats:
        """Add `other`'s counts to these (in place); returns self."""
        self.files.extend(other.files)
        self.rows_read += other.rows_read
        for rule, n in other.skipped.items():
            self.skip(rule, n)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The stats as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReadStats:
        """Stats from `to_dict`'s output."""
        return cls(
            files=list(d.get("files", [])),
            rows_read=int(d.get("rows_read", 0)),
            rows_skipped=int(d.get("rows_skipped", 0)),
            skipped={str(k): int(v) for k, v in d.get("skipped", {}).items()},
        )


def attach_stats(table: pa.Table, read_stats: ReadStats) -> pa.Table:
    """`table` with `read_stats` stored as JSON in its schema metadata under b"harness.stats"."""
    meta = dict(table.schema.metadata or {})
    meta[STATS_KEY] = json.dumps(read_stats.to_dict(), sort_keys=True).encode()
    return table.replace_schema_metadata(meta)


def stats(table: pa.Table | pa.Schema) -> dict[str, Any]:
    """The read stats attached to `table` (or a schema) by `attach_stats`; {} when there are none."""
    schema = table if isinstance(table, pa.Schema) else table.schema
    raw = (schema.metadata or {}).get(STATS_KEY)
    return json.loads(raw) if raw else {}


def check_on_bad_rows(on_bad_rows: str) -> None:
    """Raise HarnessError unless `on_bad_rows` is "error" or "skip"."""
    if on_bad_rows not in ON_BAD_ROWS:
        raise HarnessError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")


@dataclass(frozen=True)
class Source:
    """One file being read: its path, what kind of file it should be, and whether it has a header row."""

    path: Path
    kind: str
    header: bool

    def line(self, row: int) -> int:
        """The file line of 1-based data row `row` (files here have no quoted newlines)."""
        return row + int(self.header)

    def error(self, rule: str, detail: str, *, row: int | None = None, line: int | None = None) -> DataError:
        """A DataError naming this file, the row (or line) and the rule."""
        if row is not None:
            where = f"row {row} (line {self.line(row)})"
        elif line is not None:
            where = f"line {line}" + (" (the header)" if rule == MISSING_COLUMNS and self.header else "")
        else:
            where = "whole file"
        return DataError(f"{self.path}: {where}: {rule}: {detail}")


def as_paths(paths: Path_ | Sequence[Path_]) -> list[Path]:
    """One path or a list of paths as a list of Paths (a list must not be empty)."""
    if isinstance(paths, str | PathLike):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise HarnessError("an empty list of files was given")
    return out


# --- opening files ---------------------------------------------------------------------------------------


def _magic(path: Path, src: Source) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError as e:
        raise src.error(UNREADABLE, f"cannot open: {e}") from None


@contextlib.contextmanager
def _open(path: Path, src: Source) -> Iterator[BinaryIO | pa.NativeFile]:
    """The decompressed byte stream of `path` (gzip, one-CSV zip or plain, by magic bytes)."""
    magic = _magic(path, src)
    if magic.startswith(_ZIP_MAGIC):
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise src.error(UNREADABLE, f"not a readable zip archive ({e})") from None
        with zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) != 1:
                names = [m.filename for m in members]
                raise src.error(UNREADABLE, f"expected a zip archive with one CSV member, it holds {names}")
            with zf.open(members[0]) as stream:
                yield stream
    elif magic.startswith(_GZIP_MAGIC):
        with pa.input_stream(str(path), compression="gzip") as stream:
            yield stream
    else:
        with pa.input_stream(str(path)) as stream:
            yield stream


def _truncation(path: Path, src: Source, exc: BaseException) -> DataError:
    """The error for a compressed file that ends early or is corrupt, naming the line where it breaks."""
    lines, broken = 0, str(exc)
    magic = _magic(path, src)
    try:
        if magic.startswith(_GZIP_MAGIC):
            d = zlib.decompressobj(31)
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    while chunk:
                        lines += d.decompress(chunk).count(b"\n")
                        chunk = b""
                        if d.eof and d.unused_data:  # a multi-member gzip
                            chunk, d = d.unused_data, zlib.decompressobj(31)
            broken = "the gzip stream ends early" if not d.eof else broken
        elif magic.startswith(_ZIP_MAGIC):
            with zipfile.ZipFile(path) as zf, zf.open(zf.infolist()[0]) as stream:
                while chunk := stream.read(1 << 20):
                    lines += chunk.count(b"\n")
    except (zlib.error, zipfile.BadZipFile, OSError, EOFError) as e:
        broken = f"corrupt compressed data ({e})"
    row = lines + 1 - int(src.header)
    inside = "the header" if row == 0 else f"data row {row}"
    return src.error(TRUNCATED, f"{broken}: the data stops inside line {lines + 1} ({inside}) [{exc}]", line=lines + 1)


def first_line(path: Path_, src: Source | None = None) -> bytes:
    """The first line of `path`'s decompressed content, without its line end (DataError if there is none)."""
    path = Path(path)
    src = src or Source(path, "CSV", True)
    buf = b""
    try:
        with _open(path, src) as stream:
            while b"\n" not in buf and len(buf) < _FIRST_LINE_LIMIT:
                chunk = stream.read(65536)
                if not chunk:
                    break
                buf += chunk
    except (OSError, zlib.error, zipfile.BadZipFile, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise src.error(UNREADABLE, f"cannot open: {e}") from None
        raise _truncation(path, src, e) from None
    line = buf.split(b"\n", 1)[0].rstrip(b"\r")
    if not line.strip():
        raise src.error(
            EMPTY_FILE, "the file has no header and no rows" if buf == b"" else "the first line is empty", line=1
        )
    return line


def first_record(path: Path_, src: Source | None = None) -> list[str]:
    """The fields of the first line of `path` as strings, parsed by pyarrow.csv (the header, if it has one)."""
    line = first_line(path, src)
    ropts = pacsv.ReadOptions(autogenerate_column_names=True)
    n = pacsv.read_csv(io.BytesIO(line + b"\n"), read_options=ropts).num_columns
    types = {f"f{i}": pa.string() for i in range(n)}
    copts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False, null_values=[])
    row = pacsv.read_csv(io.BytesIO(line + b"\n"), read_options=ropts, convert_options=copts)
    return [row.column(i)[0].as_py() for i in range(n)]


def has_header(path: Path_, src: Source | None = None) -> bool:
    """Whether `path` starts with a header row: its first line starts with something other than a digit."""
    return not first_line(path, src)[:1].isdigit()


# --- reading ---------------------------------------------------------------------------------------------


@dataclass
class _Malformed:
    rows: list[tuple[int | None, int, int, str]] = field(default_factory=list)

    def __call__(self, row: Any) -> str:
        self.rows.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"


def _read(path: Path, src: Source, ropts: Any, copts: Any, handler: _Malformed) -> pa.Table:
    popts = pacsv.ParseOptions(invalid_row_handler=handler)
    try:
        with _open(path, src) as stream:
            return pacsv.read_csv(stream, read_options=ropts, parse_options=popts, convert_options=copts)
    except pa.ArrowInvalid as e:
        if "Empty CSV file" in str(e):
            raise src.error(EMPTY_FILE, "the file has no header and no rows", line=1) from None
        raise
    except (OSError, zlib.error, zipfile.BadZipFile, EOFError) as e:
        raise _truncation(path, src, e) from None


def _bad_casts(arr: pa.Array, typ: pa.DataType, first_only: bool) -> list[int]:
    """Indices of the entries of string array `arr` that do not cast to `typ` (found by halving)."""
    out: list[int] = []
    stack = [(0, len(arr))]
    while stack:
        lo, hi = stack.pop()
        try:
            arr.slice(lo, hi - lo).cast(typ)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        if hi - lo == 1:
            out.append(lo)
            if first_only:
                break
            continue
        mid = (lo + hi) // 2
        stack.append((mid, hi))
        stack.append((lo, mid))
    return out


def _conversion_rule(typ: pa.DataType) -> str:
    return NOT_BOOLEAN if pa.types.is_boolean(typ) else NON_NUMERIC


def _bad_values(arr: pa.Array, typ: pa.DataType, first_only: bool) -> list[int]:
    """Indices of the non-null entries of string array `arr` that the CSV reader does not convert to `typ`."""
    if pa.types.is_boolean(typ):
        ok = pc.or_(pc.is_null(arr), pc.is_in(arr, pa.array(TRUE_VALUES + FALSE_VALUES)))
        bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
        return [int(i) for i in bad[:1]] if first_only else [int(i) for i in bad]
    if typ == pa.string():
        return []
    return _bad_casts(arr, typ, first_only)


def _cast(arr: pa.ChunkedArray, typ: pa.DataType) -> pa.ChunkedArray:
    if pa.types.is_boolean(typ):
        return pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), pc.is_in(arr, pa.array(TRUE_VALUES)))
    return arr.cast(typ)


def _convert_strings(
    table: pa.Table, src: Source, columns: Mapping[str, pa.DataType], on_bad_rows: str, st: ReadStats
) -> pa.Table:
    """Convert a table read as strings to `columns`' types, finding the rows that do not convert."""
    bad_at = {
        name: _bad_values(table.column(name).combine_chunks(), typ, on_bad_rows == "error")
        for name, typ in columns.items()
    }
    if not any(bad_at.values()):
        raise src.error(UNREADABLE, "pyarrow.csv failed to convert a value that converts on its own")
    if on_bad_rows == "error":
        name, i = min(((c, b[0]) for c, b in bad_at.items() if b), key=lambda x: x[1])
        value = table.column(name)[i].as_py()
        detail = f"column {name!r} holds {value!r}, not a {columns[name]}"
        raise src.error(_conversion_rule(columns[name]), detail, row=int(table.column(ROW)[i].as_py()))
    bad = np.zeros(table.num_rows, dtype=bool)
    for name, idx in bad_at.items():
        st.skip(_conversion_rule(columns[name]), int(np.count_nonzero(~bad[idx])))
        bad[idx] = True
    table = table.filter(pa.array(~bad))
    cols = {c: _cast(table.column(c), t) for c, t in columns.items()}
    cols[ROW] = table.column(ROW)
    return pa.table(cols)


def read_csv(
    path: Path_,
    *,
    kind: str,
    columns: Mapping[str, pa.DataType],
    required: Sequence[str] = (),
    nullable: Collection[str] = (),
    names: Sequence[str] | None = None,
    on_bad_rows: str = "error",
    stats: ReadStats | None = None,
) -> tuple[pa.Table, ReadStats, Source]:
    """Read the `columns` (name -> type) of one CSV file; returns (table, stats, source).

    With `names` None the file's first line is its header and must hold `required` and `columns` (else
    "does not look like a <kind> file"); otherwise the file has no header and `names` are its columns.
    Empty fields are nulls; a null in a column not in `nullable` breaks the "empty value" rule. The
    table holds the requested columns plus `ROW` (int64, the 1-based data row of each row in the file).
    `stats` (a new ReadStats if None) gets the file, its data rows and the skipped rows.
    """
    check_on_bad_rows(on_bad_rows)
    path = Path(path)
    src = Source(path, kind, names is None)
    st = stats if stats is not None else ReadStats()
    if names is None:
        have = first_record(path, src)
        wanted = list(dict.fromkeys([*required, *columns]))
        missing = [c for c in wanted if c not in have]
        if missing:
            detail = f"does not look like a {kind} file: missing columns {missing}; it has {have}"
            raise src.error(MISSING_COLUMNS, detail, line=1)
    else:
        first_line(path, src)  # raises on empty / truncated / unreadable files
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise HarnessError(f"read_csv: columns {unknown} are not among the names {list(names)}")
    st.files.append(str(path))

    handler = _Malformed()
    ropts = pacsv.ReadOptions(use_threads=True, column_names=list(names) if names is not None else None)

    def convert(types: Mapping[str, pa.DataType]) -> pacsv.ConvertOptions:
        return pacsv.ConvertOptions(
            column_types=dict(types),
            include_columns=list(columns),
            null_values=[""],
            strings_can_be_null=True,
            true_values=TRUE_VALUES,
            false_values=FALSE_VALUES,
        )

    strings = {c: pa.string() for c in columns}
    try:
        table, converted = _read(path, src, ropts, convert(columns), handler), True
    except pa.ArrowInvalid as e:
        if "conversion error" not in str(e):
            raise src.error(UNREADABLE, str(e)) from None
        handler = _Malformed()
        table, converted = _read(path, src, ropts, convert(strings), handler), False
    if handler.rows and any(r[0] is None for r in handler.rows):
        # the threaded reader does not number invalid rows: read again serially to learn the lines
        handler = _Malformed()
        ropts.use_threads = False
        table = _read(path, src, ropts, convert(columns if converted else strings), handler)

    # malformed rows (wrong number of fields)
    bad_lines = np.array(sorted(r[0] for r in handler.rows), dtype=np.int64)
    n_data = table.num_rows + len(bad_lines)
    st.rows_read += n_data
    if len(bad_lines):
        if on_bad_rows == "error":
            number, expected, actual, text = min(handler.rows, key=lambda r: r[0])
            row = number - int(src.header)
            raise src.error(MALFORMED, f"expected {expected} fields, found {actual}: {text!r}", row=row)
        st.skip(MALFORMED, len(bad_lines))
    keep_rows = np.ones(n_data, dtype=bool)
    keep_rows[bad_lines - 1 - int(src.header)] = False
    rows = np.flatnonzero(keep_rows).astype(np.int64) + 1
    table = table.append_column(ROW, pa.array(rows, pa.int64()))

    # values that do not convert to their column's type
    if not converted:
        table = _convert_strings(table, src, columns, on_bad_rows, st)

    # empty values
    checks = []
    for name in columns:
        if name not in nullable and table.column(name).null_count:
            mask = table.column(name).is_null().to_numpy(zero_copy_only=False)
            checks.append((EMPTY_VALUE, mask, lambda i, name=name: f"column {name!r} is empty"))
    table = apply_rules(table, src, checks, on_bad_rows, st)
    return table, st, src


# --- row rules -------------------------------------------------------------------------------------------

Check = tuple[str, np.ndarray, Callable[[int], str]]


def rule_mask(
    table: pa.Table, src: Source, checks: Sequence[Check], on_bad_rows: str, stats: ReadStats
) -> np.ndarray | None:
    """Apply row rules `(rule, bad_mask, describe(i))` to the rows of a `read_csv` table.

    "error": raise for the first flagged row (of any rule; ties go to the earlier rule). "skip": count each
    flagged row under the first rule that flags it and return the mask of rows to keep (None: keep all).
    """
    checks = [(rule, np.asarray(mask, dtype=bool), describe) for rule, mask, describe in checks]
    checks = [c for c in checks if c[1].any()]
    if not checks:
        return None
    if on_bad_rows == "error":
        i, k = min((int(np.argmax(mask)), k) for k, (_, mask, _) in enumerate(checks))
        rule, _, describe = checks[k]
        raise src.error(rule, describe(i), row=int(table.column(ROW)[i].as_py()))
    bad = np.zeros(table.num_rows, dtype=bool)
    for rule, mask, _ in checks:
        stats.skip(rule, int(np.count_nonzero(mask & ~bad)))
        bad |= mask
    return ~bad


def apply_rules(table: pa.Table, src: Source, checks: Sequence[Check], on_bad_rows: str, stats: ReadStats) -> pa.Table:
    """`rule_mask` applied: `table` without the rows dropped under "skip" (raises under "error")."""
    keep = rule_mask(table, src, checks, on_bad_rows, stats)
    return table if keep is None else table.filter(pa.array(keep))


def decreasing(ts: np.ndarray, previous: int | None = None) -> np.ndarray:
    """Mask of the entries of `ts` below the running maximum before them (and below `previous`, if given)."""
    ts = np.asarray(ts)
    if len(ts) == 0:
        return np.zeros(0, dtype=bool)
    prior = np.empty_like(ts)
    prior[0] = ts[0] if previous is None else previous
    np.maximum.accumulate(ts[:-1], out=prior[1:])
    if previous is not None:
        np.maximum(prior, previous, out=prior)
    return ts < prior


def order_check(ts: np.ndarray, previous: int | None, column: str) -> Check:
    """The "decreasing timestamp" rule for column `column` holding `ts`, after a previous file's `previous`."""
    mask = decreasing(ts, previous)

    def describe(i: int) -> str:
        before = ts[:i].max() if i else previous
        if i == 0 or (previous is not None and previous > ts[:i].max()):
            return f"{column} {int(ts[i])} is before the previous file's last {column} {int(previous)}"
        return f"{column} {int(ts[i])} is before an earlier row's {int(before)}"

    return DECREASING, mask, describe


def numeric(table: pa.Table, name: str) -> np.ndarray:
    """Column `name` of `table` as a numpy array (nulls as NaN for floats)."""
    col = table.column(name)
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return arr.to_numpy(zero_copy_only=False)


def size_check(
    values: np.ndarray, column: str, *, valid: np.ndarray | None = None, positive: bool = False
) -> list[Check]:
    """Rules for a size column: negative, NaN or infinite sizes; with `positive`, zero sizes too.

    `valid` (for nullable columns, whose nulls read as NaN) limits the rules to the non-null rows.
    """
    ok = np.isfinite(values) & (values >= 0)
    bad = ~ok if valid is None else ~ok & valid
    checks: list[Check] = [(BAD_SIZE, bad, lambda i: f"column {column!r} holds {float(values[i])!r}")]
    if positive:
        checks.append((ZERO_SIZE, values == 0, lambda i: f"column {column!r} holds 0: a trade size is positive"))
    return checks


def price_check(values: np.ndarray, column: str, *, valid: np.ndarray | None = None) -> Check:
    """The rule for a price column: NaN or infinite prices (`valid` as in `size_check`)."""
    bad = ~np.isfinite(values) if valid is None else ~np.isfinite(values) & valid
    return BAD_PRICE, bad, lambda i: f"column {column!r} holds {float(values[i])!r}"
