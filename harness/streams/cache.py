"""A Parquet cache of normalised market tables: atomic writes, validated reads, keys from the source files."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import DataError
from harness.streams import schema
from harness.streams.csvread import Path_


def write_parquet(table: pa.Table, path: Path_) -> Path:
    """Write `table` (schema metadata included) to `path` atomically: a temporary file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, use_compliant_nested_type=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_parquet(path: Path_) -> pa.Table:
    """Read a market table written by `write_parquet`; DataError naming the file if it is not one."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"{path}: whole file: unreadable file: not a readable Parquet file ({e})") from None
    wrong = [
        f"{f.name} ({table.schema.field(f.name).type if f.name in table.column_names else 'missing'})"
        for f in schema.SCHEMA
        if f.name not in table.column_names or not _compatible(table.schema.field(f.name).type, f.type)
    ]
    if wrong:
        raise DataError(
            f"{path}: whole file: not a harness market table: columns {wrong} differ from the market schema "
            f"({', '.join(f'{f.name}: {f.type}' for f in schema.SCHEMA)})"
        )
    # exact schema types (Parquet renames list items "element", may widen dictionary indices)
    target = pa.schema(
        [schema.SCHEMA.field(f.name) if f.name in schema.SCHEMA.names else f for f in table.schema],
        metadata=table.schema.metadata,
    )
    return schema.conform(table.cast(target))


def _compatible(have: pa.DataType, want: pa.DataType) -> bool:
    if pa.types.is_dictionary(want):
        return pa.types.is_dictionary(have) and have.value_type == want.value_type
    return have == want


def cache_key(reader: str, version: int, options: Mapping[str, object], files: Mapping[str, Sequence[Path_]]) -> str:
    """sha256 of the reader, its version, its options and each file's absolute path, size and mtime."""
    described: dict[str, list[list[object]]] = {}
    for role, paths in files.items():
        rows = []
        for p in paths:
            p = Path(p).resolve()
            try:
                st = p.stat()
            except OSError as e:
                raise DataError(f"{p}: whole file: unreadable file: cannot stat ({e})") from None
            rows.append([str(p), st.st_size, st.st_mtime_ns])
        described[role] = rows
    blob = json.dumps(
        {"reader": reader, "version": version, "options": dict(options), "files": described}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def cached(
    reader: str,
    version: int,
    options: Mapping[str, object],
    files: Mapping[str, Sequence[Path_]],
    build: Callable[[], pa.Table],
    cache_dir: Path_,
) -> pa.Table:
    """`build()`'s table, kept as `<cache_dir>/<reader>-<key>.parquet` and read from there on a later call."""
    key = cache_key(reader, version, options, files)
    path = Path(cache_dir) / f"{reader}-{key}.parquet"
    if path.exists():
        return read_parquet(path)
    table = build()
    write_parquet(table, path)
    return table
