"""Shared CSV reading for the market-data readers: streamed pyarrow.csv reads, bad-input rules, read statistics.

`read_csv` reads one CSV file (plain, gzip, or a zip archive holding one CSV member; the kind is found from
the file's first bytes, not its name) with explicit column types, with a header row or with column names
given by the caller. Every problem raises `DataError` naming the file, the row and the rule::

    /data/x.csv.gz: row 17 (line 18): non-numeric value: column 'price' holds 'abc', not a float64

`row` is the 1-based data row (the header does not count), `line` the 1-based line in the (decompressed) file.
File-level rules (`EMPTY_FILE`, `TRUNCATED`, `MISSING_COLUMNS`, `HEADER`, `LONG_LINE`, `RATIO`, `UNREADABLE`)
always raise. Row-level rules raise under ``on_bad_rows="error"`` and drop the row under ``on_bad_rows="skip"``,
counted per rule in a `ReadStats`. Checks run in stages (malformed rows, UTF-8 text, value conversion, empty
values, then the readers' plausibility rules (`harness.streams.rules`), then timestamp order); within the first
failing stage the first bad row is reported.

Reading is streamed: the file is decompressed and parsed about `BLOCK_SIZE` bytes at a time, in pieces of whole
lines (a line must be shorter than `BLOCK_SIZE` bytes), all on the calling thread (no pyarrow thread ever calls
Python code), and a compressed file that inflates more than `rules.max_ratio` times its size stops with an error,
so no input can make the reader hold more than a few blocks of raw text at once. Every Arrow decode or
decompression error becomes a `DataError` naming the file (and the row or line where known).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from harness.errors import DataError, HarnessError
from harness.streams.paths import Path_, expand
from harness.streams.rules import Rules, describe_time

STATS_KEY = b"harness.stats"
ROW = "__row"  # column added by read_csv: the 1-based data row of each row in its file

ON_BAD_ROWS = ("error", "skip")

# row-level rules: raise under on_bad_rows="error", drop and count under "skip"
MALFORMED = "malformed row"
NOT_TEXT = "not UTF-8 text"
NON_NUMERIC = "non-numeric value"
NOT_BOOLEAN = "not a boolean"
EMPTY_VALUE = "empty value"
BAD_SIZE = "negative or NaN size"
ZERO_SIZE = "zero trade size"
SIZE_RANGE = "implausible size"
BAD_PRICE = "non-finite price"
PRICE_RANGE = "implausible price"
PRICE_JUMP = "implausible price jump"
BAD_SIDE = "unknown side"
BAD_TIME = "implausible timestamp"
DECREASING = "decreasing timestamp"
# file-level rules: always raise
EMPTY_FILE = "empty file"
TRUNCATED = "truncated file"
MISSING_COLUMNS = "missing columns"
HEADER = "unexpected header"
LONG_LINE = "line too long"
RATIO = "compression ratio"
UNREADABLE = "unreadable file"

TRUE_VALUES = ["true", "True", "TRUE"]
FALSE_VALUES = ["false", "False", "FALSE"]
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
BLOCK_SIZE = 1 << 20  # bytes of decompressed text parsed at a time; the longest line a file may hold
RATIO_FLOOR = 64 << 20  # decompressed bytes allowed before the compression-ratio rule applies
GARBAGE_ROWS = 10_000  # malformed rows skipped before a file where they outnumber the good ones is refused
_SHOWN = 120  # characters of a bad value or line shown in a message


@dataclass
class ReadStats:
    """What a read saw: the files, the data rows read, the rows skipped in total and per rule, relaxed rules."""

    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_skipped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    relaxed: dict[str, Any] = field(default_factory=dict)  # plausibility rules relaxed for these files

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
        self.relaxed.update(other.relaxed)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The stats as a JSON-ready dict (`relaxed` only when some rule was relaxed)."""
        out = asdict(self)
        if not self.relaxed:
            del out["relaxed"]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReadStats:
        """Stats from `to_dict`'s output."""
        return cls(
            files=list(d.get("files", [])),
            rows_read=int(d.get("rows_read", 0)),
            rows_skipped=int(d.get("rows_skipped", 0)),
            skipped={str(k): int(v) for k, v in d.get("skipped", {}).items()},
            relaxed=dict(d.get("relaxed", {})),
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


def shown(value: object) -> str:
    """`repr(value)`, cut to a readable length (bad input can be a megabyte of garbage)."""
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"


def shown_names(names: Sequence[str], limit: int = 24) -> str:
    """A header's column names for a message: each cut to a readable length, at most `limit` of them."""
    items = [n if len(n) <= 40 else f"{n[:40]}..." for n in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{items}{more}"


@dataclass(frozen=True)
class Source:
    """One file being read: its path, what kind of file it should be, whether it has a header row, and whether
    its rows are text lines (a Parquet file's are not)."""

    path: Path
    kind: str
    header: bool
    lines: bool = True

    def line(self, row: int) -> int:
        """The file line of 1-based data row `row` (files here have no quoted newlines)."""
        return row + int(self.header)

    def error(self, rule: str, detail: str, *, row: int | None = None, line: int | None = None) -> DataError:
        """A DataError naming this file, the row (or line) and the rule."""
        if row is not None:
            where = f"row {row} (line {self.line(row)})" if self.lines else f"row {row}"
        elif line is not None:
            where = f"line {line}" + (" (the header)" if rule in (MISSING_COLUMNS, HEADER) and self.header else "")
        else:
            where = "whole file"
        return DataError(f"{self.path}: {where}: {rule}: {detail}")


def as_paths(paths: Path_ | Sequence[Path_]) -> list[Path]:
    """One path, a glob or a list of them as a list of Paths, globs expanded and sorted (`paths.expand`)."""
    return expand(paths)


# --- opening files ---------------------------------------------------------------------------------------


def _magic(path: Path, src: Source) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError as e:
        raise src.error(UNREADABLE, f"cannot open: {e}") from None


class _Inflated(io.RawIOBase):
    """A decompressed stream that ends, remembering why, once it holds more than `max_ratio` times the compressed
    bytes it came from (past `RATIO_FLOOR` bytes): a compression bomb stops instead of filling memory. Only the
    reading thread calls it (no pyarrow thread ever calls into Python code of ours: see `_read`)."""

    def __init__(self, stream: Any, consumed: Callable[[], int], src: Source, max_ratio: float) -> None:
        super().__init__()
        self.stream, self.consumed, self.src, self.max_ratio = stream, consumed, src, max_ratio
        self.out = 0
        self.error: DataError | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        """Up to `size` bytes (at most BLOCK_SIZE at a time); b"" at the end or once the ratio rule broke."""
        if self.error is not None:
            return b""
        data = self.stream.read(BLOCK_SIZE if size is None or size < 0 else min(size, BLOCK_SIZE))
        self.out += len(data)
        if self.out > RATIO_FLOOR:
            used = max(int(self.consumed()), 1)
            if self.out > self.max_ratio * used:
                detail = (
                    f"{self.out} bytes of text from {used} compressed bytes, more than max_ratio={self.max_ratio:g} "
                    f"times (real market data inflates 5-15x): a compression bomb? (stream rule max_ratio)"
                )
                self.error = self.src.error(RATIO, detail)
                return b""
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def _open(path: Path, src: Source, max_ratio: float = Rules.max_ratio) -> Iterator[BinaryIO | pa.NativeFile]:
    """The decompressed byte stream of `path` (gzip, one-CSV zip or plain, by magic bytes), bounded as above."""
    magic = _magic(path, src)
    if magic.startswith(_ZIP_MAGIC):
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise src.error(UNREADABLE, f"not a readable zip archive ({e})") from None
        with zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) != 1:
                names = [m.filename for m in members]
                raise src.error(UNREADABLE, f"expected a zip archive with one CSV member, it holds {shown(names)}")
            try:
                stream = zf.open(members[0])
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
                raise src.error(UNREADABLE, f"cannot open the zip member {members[0].filename!r} ({e})") from None
            with stream:
                size = members[0].compress_size
                with _guarded(_Inflated(stream, lambda: size, src, max_ratio)) as guarded:
                    yield guarded
    elif magic.startswith(_GZIP_MAGIC):
        with (
            pa.OSFile(str(path)) as raw,
            pa.CompressedInputStream(raw, "gzip") as stream,
            _guarded(_Inflated(stream, raw.tell, src, max_ratio)) as guarded,
        ):
            yield guarded
    else:
        with pa.OSFile(str(path)) as stream:
            yield stream


@contextlib.contextmanager
def _guarded(stream: _Inflated) -> Iterator[_Inflated]:
    """`stream`, raising its ratio error (in place of whatever the reader made of the early end) when it broke."""
    try:
        yield stream
    except Exception:
        if stream.error is not None:
            raise stream.error from None
        raise
    if stream.error is not None:
        raise stream.error


def _count_lines(path: Path, magic: bytes, max_ratio: float) -> tuple[int, bool]:
    """Lines in the decompressed content of `path` up to where it breaks, and whether the gzip stream ended
    properly; decompressed in bounded pieces, stopping at the ratio rule (raises what the data raises)."""
    lines = out = 0
    if magic.startswith(_ZIP_MAGIC):
        with zipfile.ZipFile(path) as zf, zf.open(zf.infolist()[0]) as stream:
            limit = max(RATIO_FLOOR, max_ratio * zf.infolist()[0].compress_size)
            while (chunk := stream.read(BLOCK_SIZE)) and out <= limit:
                lines += chunk.count(b"\n")
                out += len(chunk)
        return lines, True
    d, data, consumed = zlib.decompressobj(31), b"", 0
    with open(path, "rb") as f:
        while out <= max(RATIO_FLOOR, max_ratio * consumed):
            if not data:
                data = f.read(1 << 16)
                consumed += len(data)
                if not data:
                    break
            if d.eof:  # a multi-member gzip: the next member starts here
                d = zlib.decompressobj(31)
            chunk = d.decompress(data, BLOCK_SIZE)
            lines += chunk.count(b"\n")
            out += len(chunk)
            data = d.unused_data if d.eof else d.unconsumed_tail
    return lines, d.eof


def _truncation(path: Path, src: Source, exc: BaseException, max_ratio: float = Rules.max_ratio) -> DataError:
    """The error for a compressed file that ends early or is corrupt, naming the line where it breaks."""
    magic = _magic(path, src)
    if not (magic.startswith(_GZIP_MAGIC) or magic.startswith(_ZIP_MAGIC)):
        return src.error(UNREADABLE, f"cannot read: {shown(str(exc))}")
    lines, broken = 0, str(exc)
    try:
        lines, ended = _count_lines(path, magic, max_ratio)
        broken = "the gzip stream ends early" if not ended else broken
    except (zlib.error, zipfile.BadZipFile, OSError, EOFError) as e:
        broken = f"corrupt compressed data ({e})"
    row = lines + 1 - int(src.header)
    inside = "the header" if row == 0 else f"data row {row}"
    detail = f"{broken}: the data stops inside line {lines + 1} ({inside}) [{shown(str(exc))}]"
    return src.error(TRUNCATED, detail, line=lines + 1)


_DECODE_ERRORS = (OSError, zlib.error, zipfile.BadZipFile, EOFError)


def first_line(path: Path_, src: Source | None = None, max_ratio: float = Rules.max_ratio) -> bytes:
    """The first line of `path`'s decompressed content, without its line end (DataError if there is none)."""
    path = Path(path)
    src = src or Source(path, "CSV", True)
    buf, ended = b"", False
    try:
        with _open(path, src, max_ratio) as stream:
            while b"\n" not in buf and len(buf) < BLOCK_SIZE:
                chunk = stream.read(65536)
                if not chunk:
                    ended = True
                    break
                buf += chunk
    except _DECODE_ERRORS as e:
        if isinstance(e, FileNotFoundError):
            raise src.error(UNREADABLE, f"cannot open: {e}") from None
        raise _truncation(path, src, e, max_ratio) from None
    if b"\n" not in buf and not ended:
        raise src.error(LONG_LINE, f"no line end in the first {BLOCK_SIZE} bytes: not a {src.kind} file", line=1)
    line = buf.split(b"\n", 1)[0].rstrip(b"\r")
    if not line.strip():
        raise src.error(
            EMPTY_FILE, "the file has no header and no rows" if buf == b"" else "the first line is empty", line=1
        )
    return line


def first_record(path: Path_, src: Source | None = None) -> list[str]:
    """The fields of the first line of `path` as strings, parsed by pyarrow.csv (the header, if it has one)."""
    src = src or Source(Path(path), "CSV", True)
    line = first_line(path, src)
    ropts = pacsv.ReadOptions(autogenerate_column_names=True)
    try:
        text = _native(line + b"\n")  # not a Python file: the parser's read-ahead thread must not call Python
        n = pacsv.read_csv(pa.BufferReader(text), read_options=ropts).num_columns
        types = {f"f{i}": pa.string() for i in range(n)}
        copts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False, null_values=[])
        row = pacsv.read_csv(pa.BufferReader(text), read_options=ropts, convert_options=copts)
    except pa.ArrowException as e:
        if "UTF8" in str(e):
            raise src.error(NOT_TEXT, f"the first line is not UTF-8 text: {shown(line)}", line=1) from None
        raise src.error(UNREADABLE, f"the first line does not parse as CSV ({shown(str(e))})", line=1) from None
    return [row.column(i)[0].as_py() for i in range(n)]


def has_header(path: Path_, src: Source | None = None) -> bool:
    """Whether `path` starts with a header row: its first line starts with something other than a digit."""
    return not first_line(path, src)[:1].isdigit()


# --- reading ---------------------------------------------------------------------------------------------
#
# No pyarrow thread may ever call Python code of ours: pyarrow's CSV readers read their input on a background
# I/O thread (read-ahead), and a Python object read from there can still be running when the interpreter shuts
# down, which aborts the process ("PyGILState_Release: thread state must be current"). So the reading thread
# decompresses the file itself, cuts the text into pieces that end at a line end (`_pieces`), copies each piece
# into Arrow-owned memory and parses it with the serial `pyarrow.csv.read_csv` (use_threads=False), whose
# read-ahead thread then only ever touches that native buffer, and which calls the invalid_row_handler
# (`_Lines`) on the calling thread.


def _native(*parts: bytes | memoryview) -> pa.Buffer:
    """`parts` joined in one Arrow-owned buffer (a pyarrow thread may release it without taking the GIL)."""
    buf = pa.allocate_buffer(sum(len(p) for p in parts))
    view, at = memoryview(buf).cast("B"), 0
    for part in parts:
        view[at : at + len(part)] = part
        at += len(part)
    return buf


class _LongLine(Exception):
    """A line of BLOCK_SIZE bytes or more (`_read` names it: the line after the pieces parsed so far)."""


def _pieces(stream: Any) -> Iterator[pa.Buffer]:
    """The decompressed text of `stream` in pieces of whole lines, each under 2 * BLOCK_SIZE bytes; raises
    `_LongLine` for a line of BLOCK_SIZE bytes or more (before its LF) and the ratio error of a stream that
    stopped early."""
    carry = b""  # the start of a line that ends in a later block
    while chunk := stream.read(BLOCK_SIZE):
        cut = chunk.rfind(b"\n")
        if cut < 0:
            carry += chunk
            if len(carry) >= BLOCK_SIZE:
                raise _LongLine
            continue
        if len(carry) + chunk.find(b"\n") >= BLOCK_SIZE:  # the line carried over ends here, too late
            raise _LongLine
        yield _native(carry, memoryview(chunk)[: cut + 1])
        carry = chunk[cut + 1 :]
    error = getattr(stream, "error", None)
    if error is not None:
        raise error
    if carry:
        yield _native(carry, b"\n")  # the last line, given the line end it lacks (a header alone then parses)


class _Lines:
    """The line bookkeeping of one read: malformed rows reported by the parser (it runs ahead of the batches it
    delivers) and the data row of every delivered row. `stop` makes the first malformed row end the read
    (on_bad_rows="error"); otherwise they are skipped and only the ones not yet passed are kept, until more than
    `GARBAGE_ROWS` of them outnumber the good rows before them: then the file is garbage and the read stops (a
    file of millions of bad lines would otherwise cost a Python call per line). The parser numbers the lines of
    each piece from 1 (the first piece from the header line, which it skips): `offset` is the file line before
    the piece being parsed."""

    def __init__(self, header: bool, stop: bool) -> None:
        self.header, self.stop = header, stop
        self.line = 1 + int(header)  # the line of the next delivered row
        self.offset = 0  # the file line before the piece being parsed
        self.handled = 0  # lines of the piece being parsed handed to __call__ (each is a line, not a row)
        self.pending: list[int] = []  # malformed lines not yet passed
        self.first: tuple[int, int, int, str] | None = None  # (line, expected, actual, text) of the first one
        self.malformed = 0
        self.garbage = 0  # the line where malformed rows outnumbered good ones (under "skip"): the read stopped

    def __call__(self, row: Any) -> str:
        if row.number is None:  # only a threaded reader leaves rows unnumbered; this one is serial
            return "error"
        line = self.offset + int(row.number)
        self.handled += 1
        self.malformed += 1
        if self.first is None:
            self.first = (line, row.expected_columns, row.actual_columns, row.text[: 4 * _SHOWN])
        if self.stop:
            return "error"
        good = line - int(self.header) - self.malformed
        if self.malformed > GARBAGE_ROWS and self.malformed > good:
            self.garbage = line
            return "error"
        self.pending.append(line)
        return "skip"

    def parsed(self, rows: int, skipped: int) -> None:
        """The piece being parsed gave `rows` rows after `skipped` lines: the next piece starts after its lines."""
        self.offset += skipped + rows + self.handled
        self.handled = 0

    def rows(self, n: int) -> np.ndarray:
        """The 1-based data rows of the next `n` delivered rows (the lines in order, minus malformed ones)."""
        start = end = self.line
        end += n
        k = 0
        while k < len(self.pending) and self.pending[k] < end:
            end += 1
            k += 1
        lines = np.arange(start, end, dtype=np.int64)
        if k:
            lines = lines[~np.isin(lines, np.asarray(self.pending[:k], dtype=np.int64))]
            del self.pending[:k]
        self.line = end
        return lines - int(self.header)


class _ConversionFailed(Exception):
    """A value did not convert to its column's type: read again as bytes to find the rows."""


@contextlib.contextmanager
def _quiet_undecodable_rows() -> Iterator[None]:
    """Keep pyarrow's "Exception ignored" notice off stderr when a malformed row is not UTF-8 (the read then
    fails with a parse error naming the row, which becomes a DataError)."""
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        if not isinstance(info.exc_value, UnicodeDecodeError):
            previous(info)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


_ROW_PARSE = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+)")


def _read(
    path: Path, src: Source, names: Sequence[str], types: Mapping[str, pa.DataType], lines: _Lines, max_ratio: float
) -> pa.Table:
    """Read columns `types` (name -> type) of `path`, whose columns are `names`, piece by piece (see above); the
    table with `ROW`. Every failure is a DataError, except a value that does not convert (`_ConversionFailed`)."""
    popts = pacsv.ParseOptions(invalid_row_handler=lines, ignore_empty_lines=False)
    copts = pacsv.ConvertOptions(
        column_types=dict(types),
        include_columns=list(types),
        null_values=[""],
        strings_can_be_null=True,
        true_values=TRUE_VALUES,
        false_values=FALSE_VALUES,
    )
    schema = pa.schema([*types.items(), (ROW, pa.int64())])
    batches: list[pa.RecordBatch] = []
    try:
        with _open(path, src, max_ratio) as stream, _quiet_undecodable_rows():
            for k, piece in enumerate(_pieces(stream)):
                skip = int(src.header and k == 0)  # the header line: pyarrow ends lines as the data does
                ropts = pacsv.ReadOptions(
                    use_threads=False, block_size=piece.size + 1, column_names=list(names), skip_rows=skip
                )
                table = pacsv.read_csv(
                    pa.BufferReader(piece), read_options=ropts, parse_options=popts, convert_options=copts
                )
                lines.parsed(table.num_rows, skip)
                for batch in table.to_batches():
                    rows = lines.rows(batch.num_rows)
                    batch, rows = _drop_blank(batch, rows, lines, src)
                    batches.append(pa.RecordBatch.from_arrays([*batch.columns, pa.array(rows)], schema=schema))
    except _LongLine:
        detail = f"no line end within {BLOCK_SIZE} bytes from the start of the line (a line must fit in one block)"
        raise src.error(LONG_LINE, detail, line=lines.offset + 1) from None
    except pa.ArrowInvalid as e:
        raise _invalid(src, lines, str(e)) from None
    except _DECODE_ERRORS as e:
        raise _truncation(path, src, e, max_ratio) from None
    except pa.ArrowException as e:
        raise src.error(UNREADABLE, shown(str(e))) from None
    return pa.Table.from_batches(batches, schema=schema)


def _drop_blank(
    batch: pa.RecordBatch, rows: np.ndarray, lines: _Lines, src: Source
) -> tuple[pa.RecordBatch, np.ndarray]:
    """`batch` without its blank lines (pyarrow reads one as a row of nulls), which are malformed rows: the first
    ends the read under on_bad_rows="error"; skipped ones count toward the garbage rule, so a file of blank lines
    stops early instead of growing a table of empty rows."""
    if batch.num_rows == 0 or any(c.null_count == 0 for c in batch.columns):
        return batch, rows
    blank = np.ones(batch.num_rows, dtype=bool)
    for column in batch.columns:
        blank &= column.is_null().to_numpy(zero_copy_only=False)
    if not blank.any():
        return batch, rows
    if lines.stop:
        detail = f"a blank line (no fields, expected {batch.num_columns} or more)"
        raise src.error(MALFORMED, detail, row=int(rows[np.argmax(blank)]))
    lines.malformed += int(blank.sum())
    good = int(rows[-1]) - lines.malformed
    if lines.malformed > GARBAGE_ROWS and lines.malformed > good:
        lines.garbage = int(rows[-1]) + int(src.header)
        raise pa.ArrowInvalid("garbage")  # reported by _invalid, like malformed rows outnumbering good ones
    keep = ~blank
    return batch.filter(pa.array(keep)), rows[keep]


def _invalid(src: Source, lines: _Lines, msg: str) -> Exception:
    """The error for an ArrowInvalid raised while reading (a `_ConversionFailed` for a value that does not convert)."""
    if lines.garbage:
        detail = (
            f"{lines.malformed} malformed rows by this line, more than the good ones: not a {src.kind} file "
            "(on_bad_rows='skip' drops a few bad rows, not a file of them)"
        )
        return src.error(MALFORMED, detail, line=lines.garbage)
    if lines.first is not None and lines.stop:
        number, expected, actual, text = lines.first
        detail = f"expected {expected} fields, found {actual}: {shown(text)}"
        return src.error(MALFORMED, detail, row=number - int(src.header))
    if found := _ROW_PARSE.search(msg):  # a malformed row whose text is not UTF-8 (numbered within its piece)
        number, expected, actual = (int(g) for g in found.groups())
        detail = f"expected {expected} fields, found {actual} (and the line is not UTF-8 text)"
        return src.error(MALFORMED, detail, row=lines.offset + number - int(src.header))
    if "conversion error" in msg:
        return _ConversionFailed(msg)
    return src.error(UNREADABLE, shown(msg))


def _bad_casts(arr: pa.Array, typ: pa.DataType, first_only: bool) -> list[int]:
    """Indices of the entries of array `arr` that do not cast to `typ` (found by halving)."""
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


def _drop_bad(
    table: pa.Table,
    src: Source,
    bad_at: Mapping[str, list[int]],
    rule_of: Callable[[str], str],
    describe: Any,
    on_bad_rows: str,
    st: ReadStats,
) -> pa.Table:
    """Raise for the first row in `bad_at` (column -> bad indices) under "error"; drop and count them under "skip"."""
    if not any(bad_at.values()):
        return table
    if on_bad_rows == "error":
        name, i = min(((c, b[0]) for c, b in bad_at.items() if b), key=lambda x: x[1])
        raise src.error(rule_of(name), describe(name, i), row=int(table.column(ROW)[i].as_py()))
    bad = np.zeros(table.num_rows, dtype=bool)
    for name, idx in bad_at.items():
        st.skip(rule_of(name), int(np.count_nonzero(~bad[idx])))
        bad[idx] = True
    return table.filter(pa.array(~bad))


def _text_columns(table: pa.Table, src: Source, names: Sequence[str], on_bad_rows: str, st: ReadStats) -> pa.Table:
    """Columns `names` (read as bytes) as UTF-8 strings; rows whose bytes are not UTF-8 break the NOT_TEXT rule."""
    first = on_bad_rows == "error"
    bad_at = {name: _bad_casts(table.column(name).combine_chunks(), pa.string(), first) for name in names}

    def describe(name: str, i: int) -> str:
        return f"column {name!r} holds {shown(table.column(name)[i].as_py())}, which is not UTF-8 text"

    table = _drop_bad(table, src, bad_at, lambda _: NOT_TEXT, describe, on_bad_rows, st)
    for name in names:
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(pa.string()))
    return table


def _convert_strings(
    table: pa.Table, src: Source, columns: Mapping[str, pa.DataType], on_bad_rows: str, st: ReadStats
) -> pa.Table:
    """Convert a table read as strings to `columns`' types, finding the rows that do not convert."""
    first = on_bad_rows == "error"
    bad_at = {name: _bad_values(table.column(name).combine_chunks(), typ, first) for name, typ in columns.items()}
    if not any(bad_at.values()):
        raise src.error(UNREADABLE, "pyarrow.csv failed to convert a value that converts on its own")

    def describe(name: str, i: int) -> str:
        return f"column {name!r} holds {shown(table.column(name)[i].as_py())}, not a {columns[name]}"

    table = _drop_bad(table, src, bad_at, lambda name: _conversion_rule(columns[name]), describe, on_bad_rows, st)
    cols = {c: _cast(table.column(c), t) for c, t in columns.items()}
    cols[ROW] = table.column(ROW)
    return pa.table(cols)


def _check_header(
    have: list[str], src: Source, wanted: list[str], headers: Sequence[Sequence[str]], rules: Rules
) -> None:
    """The header rules: the wanted columns present (MISSING_COLUMNS), each once, and with rules.header="exact"
    the header is one of `headers` (the file kind's columns in the kind's order)."""
    missing = [c for c in wanted if c not in have]
    if missing:
        detail = f"does not look like a {src.kind} file: missing columns {missing}; it has {shown_names(have)}"
        raise src.error(MISSING_COLUMNS, detail, line=1)
    twice = [c for c in wanted if have.count(c) > 1]
    if twice:
        raise src.error(HEADER, f"columns {twice} appear more than once in the header {shown_names(have)}", line=1)
    if rules.header == "exact" and headers and not any(list(h) == have for h in headers):
        expected = " or ".join(str(list(h)) for h in headers)
        detail = (
            f"the header is {shown_names(have)}, a {src.kind} file's is {expected} (columns in another order or "
            "extra columns; stream rule header='names' reads them by name)"
        )
        raise src.error(HEADER, detail, line=1)


def read_csv(
    path: Path_,
    *,
    kind: str,
    columns: Mapping[str, pa.DataType],
    required: Sequence[str] = (),
    nullable: Collection[str] = (),
    names: Sequence[str] | None = None,
    headers: Sequence[Sequence[str]] = (),
    on_bad_rows: str = "error",
    stats: ReadStats | None = None,
    rules: Rules | None = None,
) -> tuple[pa.Table, ReadStats, Source]:
    """Read the `columns` (name -> type) of one CSV file; returns (table, stats, source).

    With `names` None the file's first line is its header and must hold `required` and `columns` (else
    "does not look like a <kind> file") and, under rules.header="exact", be one of `headers` when given;
    otherwise the file has no header and `names` are its columns. Empty fields are nulls; a null in a column
    not in `nullable` breaks the "empty value" rule. The table holds the requested columns plus `ROW` (int64,
    the 1-based data row of each row in the file). `stats` (a new ReadStats if None) gets the file, its data
    rows and the skipped rows.
    """
    check_on_bad_rows(on_bad_rows)
    rules = rules or Rules()
    path = Path(path)
    src = Source(path, kind, names is None)
    st = stats if stats is not None else ReadStats()
    if names is None:
        names = first_record(path, src)
        _check_header(names, src, list(dict.fromkeys([*required, *columns])), headers, rules)
    else:
        first_line(path, src, rules.max_ratio)  # raises on empty / truncated / unreadable files
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise HarnessError(f"read_csv: columns {unknown} are not among the names {list(names)}")
    st.files.append(str(path))

    # strings are read as bytes (checked for UTF-8 below); a value that does not convert: all as bytes, again
    as_read = {c: pa.binary() if t == pa.string() else t for c, t in columns.items()}
    lines = _Lines(src.header, stop=on_bad_rows == "error")
    try:
        table = _read(path, src, names, as_read, lines, rules.max_ratio)
        converted = True
    except _ConversionFailed:
        lines = _Lines(src.header, stop=on_bad_rows == "error")
        table = _read(path, src, names, dict.fromkeys(columns, pa.binary()), lines, rules.max_ratio)
        converted = False
    st.rows_read += table.num_rows + lines.malformed
    st.skip(MALFORMED, lines.malformed)

    binary = [c for c in columns if table.schema.field(c).type == pa.binary()]
    table = _text_columns(table, src, binary, on_bad_rows, st)
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
    values: np.ndarray,
    column: str,
    rules: Rules | None = None,
    *,
    valid: np.ndarray | None = None,
    positive: bool = False,
) -> list[Check]:
    """Rules for a size column: negative, NaN or infinite sizes; sizes at or above rules.max_amount; with
    `positive`, zero sizes too. `valid` (for nullable columns, whose nulls read as NaN) limits them to those rows."""
    rules = rules or Rules()
    ok = np.isfinite(values) & (values >= 0)
    bad = ~ok if valid is None else ~ok & valid
    big = ok & (values >= rules.max_amount)
    checks: list[Check] = [
        (BAD_SIZE, bad, lambda i: f"column {column!r} holds {float(values[i])!r}"),
        (
            SIZE_RANGE,
            big,
            lambda i: (
                f"column {column!r} holds {float(values[i])!r}: sizes must be < {rules.max_amount:g} "
                "(stream rule max_amount)"
            ),
        ),
    ]
    if positive:
        checks.append((ZERO_SIZE, values == 0, lambda i: f"column {column!r} holds 0: a trade size is positive"))
    return checks


def price_check(
    values: np.ndarray, column: str, rules: Rules | None = None, *, valid: np.ndarray | None = None, jump: bool = True
) -> list[Check]:
    """Rules for a price column: NaN or infinite prices, prices outside (min_price, max_price), and jumps of more
    than max_price_jump times between consecutive prices unless `jump` is False (`valid` as in `size_check`)."""
    rules = rules or Rules()
    finite = np.isfinite(values)
    bad = ~finite if valid is None else ~finite & valid
    out = finite & ((values <= rules.min_price) | (values >= rules.max_price))
    checks: list[Check] = [
        (BAD_PRICE, bad, lambda i: f"column {column!r} holds {float(values[i])!r}"),
        (
            PRICE_RANGE,
            out,
            lambda i: (
                f"column {column!r} holds {float(values[i])!r}: prices must be > {rules.min_price:g} and < "
                f"{rules.max_price:g} (stream rules min_price, max_price)"
            ),
        ),
    ]
    if jump and np.isfinite(rules.max_price_jump):
        checks.append(_jump_check(values, column, rules, finite & ~out & (values > 0)))
    return checks


def _jump_check(values: np.ndarray, column: str, rules: Rules, usable: np.ndarray) -> Check:
    """Rows whose price is more than max_price_jump times above or below the previous usable price of the column."""
    idx = np.flatnonzero(usable)
    mask = np.zeros(len(values), dtype=bool)
    if len(idx) > 1:
        p = values[idx]
        ratio = np.maximum(p[1:] / p[:-1], p[:-1] / p[1:])
        mask[idx[1:][ratio > rules.max_price_jump]] = True

    def describe(i: int) -> str:
        before = idx[np.searchsorted(idx, i) - 1]
        return (
            f"column {column!r} holds {float(values[i])!r} after {float(values[before])!r} in the previous row "
            f"with a price: more than {rules.max_price_jump:g} times apart (swapped price and amount columns?) "
            "(stream rule max_price_jump)"
        )

    return PRICE_JUMP, mask, describe


def time_check(values: np.ndarray, column: str, unit: str, unit_ns: int, rules: Rules | None = None) -> Check:
    """The timestamp rule for raw times `values` in `unit` (`unit_ns` ns each), checked before any conversion:
    each must lie in [rules.min_time, rules.max_time), so converting it to int64 ns cannot overflow."""
    rules = rules or Rules()
    lo, hi = rules.time_bounds(unit_ns)
    mask = (values < lo) | (values > hi)

    def describe(i: int) -> str:
        raw = int(values[i])
        return (
            f"column {column!r} holds {raw} ({unit}: {describe_time(raw, unit_ns)}), outside [{rules.min_time}, "
            f"{rules.max_time}) (stream rules min_time, max_time)"
        )

    return BAD_TIME, mask, describe
