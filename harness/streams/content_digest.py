"""Content digests of event tables: sha256 over normalised values, independent of chunking and of the process.

What is hashed: the column names and logical types (a dictionary column counts as `dictionary<T>`, whatever
its index type), then the rows in windows of `WINDOW` rows taken by row index over the whole stream (so the
digest does not depend on how the input is split into chunks or batches), column by column: the validity
(only whether each slot is null; values under nulls are ignored), fixed-width values as little-endian bytes
(NaNs canonical), strings and binaries as lengths + bytes, dictionary columns as their decoded values, list
columns as their lengths (offsets rebased at 0) + their flattened values, structs field by field. Schema
metadata (read stats, ...) is not hashed. `file_sha256` is the digest of a source file's raw bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from os import PathLike

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import HarnessError

WINDOW = 65536
_VERSION = b"harness.digest/1"


def _type_name(typ: pa.DataType) -> str:
    if pa.types.is_dictionary(typ):
        return f"dictionary<{_type_name(typ.value_type)}>"
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        return f"{type(typ).__name__}<{_type_name(typ.value_type)}>"
    if pa.types.is_struct(typ):
        return "struct<" + ",".join(f"{f.name}:{_type_name(f.type)}" for f in typ) + ">"
    return str(typ)


_STRINGS = (pa.string(), pa.binary(), pa.large_string(), pa.large_binary())


def _byte_width(typ: pa.DataType) -> int:
    """Bytes per value of a fixed-width type (0 for other types)."""
    try:
        bits = typ.bit_width
    except ValueError:
        return 0
    return bits // 8 if bits % 8 == 0 else 0


class _Hasher:
    def __init__(self) -> None:
        self.h = hashlib.sha256(_VERSION)

    def put(self, tag: bytes, data: bytes | np.ndarray = b"") -> None:
        """The tag, the byte length, the bytes (a contiguous array is hashed in place, not copied)."""
        size = data.nbytes if isinstance(data, np.ndarray) else len(data)
        self.h.update(tag + size.to_bytes(8, "little"))
        self.h.update(np.ascontiguousarray(data).data if isinstance(data, np.ndarray) else data)

    def array(self, arr: pa.Array) -> None:
        typ = arr.type
        if pa.types.is_dictionary(typ):
            self.array(arr.dictionary_decode())
            return
        n = len(arr)
        valid = None
        if arr.null_count:
            valid = arr.is_valid().to_numpy(zero_copy_only=False)
            self.put(b"V", np.packbits(valid, bitorder="little").tobytes())
        else:
            self.put(b"v")
        if pa.types.is_boolean(typ):
            self.put(
                b"b", np.packbits(arr.fill_null(False).to_numpy(zero_copy_only=False), bitorder="little").tobytes()
            )
        elif pa.types.is_null(typ):
            self.put(b"0")
        elif pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
            lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            self.put(b"L", lengths)
            self.array(arr.flatten())
        elif pa.types.is_struct(typ):
            for child in arr.flatten():  # children with the struct's nulls applied
                self.array(child)
        elif typ in _STRINGS:
            wide = typ in (pa.large_string(), pa.large_binary())
            buffers = arr.buffers()
            if n == 0 or buffers[1] is None:
                self.put(b"S")
                self.put(b"s")
                return
            offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)[arr.offset : arr.offset + n + 1]
            lengths = np.diff(offsets).astype(np.int64)
            data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
            values = data[offsets[0] : offsets[-1]]
            if valid is not None:  # drop the bytes under nulls
                values = values[np.repeat(valid, lengths)]
                lengths[~valid] = 0
            self.put(b"S", lengths)
            self.put(b"s", values)
        elif _byte_width(typ) and len(arr.buffers()) == 2:
            width = _byte_width(typ)
            raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[arr.offset * width : (arr.offset + n) * width]
            values = raw.reshape(n, width)
            nans = np.isnan(values.view(f"<f{width}").reshape(n)) if pa.types.is_floating(typ) else None
            if valid is not None or (nans is not None and nans.any()):  # rewrite a copy, never the column
                values = values.copy()
                if nans is not None:
                    values.view(f"<f{width}").reshape(n)[nans] = np.nan
                if valid is not None:
                    values[~valid] = 0
            self.put(b"F", values)
        else:
            raise HarnessError(f"digest: cannot hash a column of type {typ}")


def _batches(events: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch | pa.Table]) -> Iterator[pa.RecordBatch]:
    if isinstance(events, pa.Table):
        yield from events.to_batches()
    elif isinstance(events, pa.RecordBatch):
        yield events
    else:
        for item in events:
            yield from _batches(item)


def digest(events: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch | pa.Table]) -> str:
    """sha256 hex digest of the normalised content of `events` (see the module docstring)."""
    d = StreamDigest()
    for batch in _batches(events):
        d.add(batch)
    if d.schema is None:
        if isinstance(events, pa.Table | pa.RecordBatch):
            d.start(events.schema)
        else:
            raise HarnessError("digest: an empty iterable of batches has no schema")
    return d.hexdigest()


class StreamDigest:
    """The digest of a stream fed batch by batch (`add`), e.g. while it is being replayed: one pass serves both.
    `hexdigest()` after the last batch equals `digest()` of the whole stream."""

    def __init__(self) -> None:
        self.h = _Hasher()
        self.schema: pa.Schema | None = None
        self.pending: list[pa.RecordBatch] = []
        self.held = 0
        self.rows = 0

    def start(self, schema: pa.Schema) -> None:
        self.schema = schema
        for f in schema:
            self.h.put(b"N", f.name.encode())
            self.h.put(b"T", _type_name(f.type).encode())

    def add(self, batch: pa.RecordBatch) -> None:
        """Hash one more batch (its schema must be the first batch's)."""
        if self.schema is None:
            self.start(batch.schema)
        schema = self.schema
        assert schema is not None
        if batch.schema.names != schema.names or batch.schema.types != schema.types:
            raise HarnessError(f"digest: a batch's schema differs from the first one's: {batch.schema}")
        self.pending.append(batch)
        self.held += batch.num_rows
        while self.held >= WINDOW:
            table = pa.Table.from_batches(self.pending, schema=schema)
            _window(self.h, table.slice(0, WINDOW))
            rest = table.slice(WINDOW)
            self.pending, self.held = rest.to_batches(), rest.num_rows
            self.rows += WINDOW

    def hexdigest(self) -> str:
        """The digest of everything added (call once, after the last batch)."""
        if self.held:
            _window(self.h, pa.Table.from_batches(self.pending, schema=self.schema))
            self.rows += self.held
            self.pending, self.held = [], 0
        self.h.put(b"R", self.rows.to_bytes(8, "little"))
        return self.h.h.hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 of arrays' bytes (dtype, shape and values): equal digests, bit-identical results."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def file_sha256(path: str | PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes, read in bounded chunks: what a source file holds, whatever its name,
    size or modification time say (the Parquet cache and replay check sources by it)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _window(h: _Hasher, table: pa.Table) -> None:
    h.put(b"W", table.num_rows.to_bytes(8, "little"))
    for col in table.columns:
        h.array(col.combine_chunks() if col.num_chunks != 1 else col.chunk(0))
