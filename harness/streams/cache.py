"""A Parquet cache of normalised market tables: atomic writes, validated reads, entries verified against content.

`read_parquet` checks a market table as the CSV readers check their files: the market schema, every value
against the plausibility rules (`harness.streams.rules`), and a bounded inflation (its uncompressed size at most
`rules.max_ratio` times the file's). `cached` finds an entry by a fast key (reader, version, options, each
file's path, size and mtime) and stores with it the sha256 of every source file and the content digest of the
table; a hit is used only when both still match (a file edited in place with its size and mtime kept, or an
edited cache file, is rebuilt from the sources, with a `CacheRebuilt` warning naming the reason).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.errors import DataError, HarnessError
from harness.streams import csvread, schema
from harness.streams.content_digest import digest, file_sha256
from harness.streams.csvread import Check, Path_, Source
from harness.streams.rules import Rules

SOURCES_KEY = b"harness.sources"  # schema metadata of a cache entry: {role: [[path, sha256], ...]}
DIGEST_KEY = b"harness.digest"  # schema metadata of a cache entry: the content digest of its table
MARKET_TABLE = "harness market table"


class CacheRebuilt(UserWarning):
    """A cache entry was not used (its sources' content or its own content changed, or it is unreadable)."""


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


def read_parquet(path: Path_, *, rules: Rules | Mapping[str, Any] | None = None, market: str | None = None) -> pa.Table:
    """Read a market table written by `write_parquet`, checked like a CSV source (`rules` relaxes plausibility
    rules); DataError naming the file (and the row) when it is not one or breaks a rule. `market` names its
    market (`schema.tag`)."""
    if market is not None:
        schema.check_market(market)
    return schema.tagged(_read_parquet(Path(path), rules), market)


def _read_parquet(path: Path, rules: Rules | Mapping[str, Any] | None) -> pa.Table:
    """`read_parquet` of one market without a name."""
    checked = Rules.of(rules)
    checked.warn_relaxed(f"{MARKET_TABLE} {path}")
    src = Source(path, MARKET_TABLE, header=False, lines=False)
    try:
        _check_inflation(pq.ParquetFile(path).metadata, src, checked)
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise src.error(csvread.UNREADABLE, f"not a readable Parquet file ({csvread.shown(str(e))})") from None
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
    try:
        table = schema.conform(table.cast(target))
    except (HarnessError, pa.ArrowException) as e:
        raise src.error(csvread.UNREADABLE, f"not a harness market table ({csvread.shown(str(e))})") from None
    check_market(table, src, checked)
    return table


def _check_inflation(meta: pq.FileMetaData, src: Source, rules: Rules) -> None:
    """The compression-ratio rule for a Parquet file: its uncompressed row groups against its size on disk."""
    size = max(src.path.stat().st_size, 1)
    inflated = sum(max(meta.row_group(i).total_byte_size, 0) for i in range(meta.num_row_groups))
    if inflated > max(csvread.RATIO_FLOOR, rules.max_ratio * size):
        detail = (
            f"its row groups hold {inflated} uncompressed bytes in a {size}-byte file, more than "
            f"max_ratio={rules.max_ratio:g} times: a compression bomb? (stream rule max_ratio)"
        )
        raise src.error(csvread.RATIO, detail)


def _valid(table: pa.Table, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    valid = table.column(name).is_valid().to_numpy(zero_copy_only=False)
    return valid if rows is None else valid & rows


def check_market(table: pa.Table, src: Source, rules: Rules | None = None) -> None:
    """Raise DataError for the first row of a market table that breaks a plausibility rule (times, prices,
    sizes, sides, snapshot codes; the rows of each trigger in its own columns), naming the row and value."""
    rules = rules or Rules()
    n = table.num_rows
    if table.column("t").null_count:
        i = int(np.argmax(~_valid(table, "t")))
        raise src.error(csvread.EMPTY_VALUE, "column 't' is empty", row=i + 1)
    trigger = table.column("trigger").combine_chunks().indices.to_numpy(zero_copy_only=False)
    trades, quotes = trigger == schema.CODES[schema.TRADE], trigger == schema.CODES[schema.QUOTE]
    checks: list[Check] = []
    for name in ("t", "t_local", "t_exchange"):
        values = table.column(name).combine_chunks().fill_null(0).to_numpy(zero_copy_only=False)
        rule, mask, describe = csvread.time_check(values, name, "ns", 1, rules)
        checks.append((rule, mask & _valid(table, name), describe))
    checks += csvread.price_check(
        csvread.numeric(table, "trade_price"), "trade_price", rules, valid=_valid(table, "trade_price", trades)
    )
    checks += csvread.size_check(
        csvread.numeric(table, "trade_amount"),
        "trade_amount",
        rules,
        valid=_valid(table, "trade_amount", trades),
        positive=True,
    )
    side = csvread.numeric(table, "trade_side")
    checks.append(
        _set_check(side, "trade_side", (schema.BUY, schema.SELL, schema.UNKNOWN_SIDE), _valid(table, "trade_side"))
    )
    for name in schema.QUOTE_COLUMNS:
        values, valid = csvread.numeric(table, name), _valid(table, name, quotes)
        if name.endswith("price"):
            checks += csvread.price_check(values, name, rules, valid=valid)
        else:
            checks += csvread.size_check(values, name, rules, valid=valid)
    snap = csvread.numeric(table, "book_snapshot")
    codes = (schema.SNAPSHOT_NONE, schema.SNAPSHOT_START, schema.SNAPSHOT_CONTINUE)
    checks.append(_set_check(snap, "book_snapshot", codes, _valid(table, "book_snapshot")))
    checks += _list_checks(table, n, rules)
    table = table.append_column(csvread.ROW, pa.array(np.arange(1, n + 1), pa.int64()))
    csvread.rule_mask(table, src, checks, "error", csvread.ReadStats())


def _set_check(values: np.ndarray, column: str, allowed: Sequence[float], valid: np.ndarray) -> Check:
    bad = valid & ~np.isin(values, np.asarray(allowed))
    rule = csvread.BAD_SIDE if column.endswith("side") else csvread.NON_NUMERIC
    return rule, bad, lambda i: f"column {column!r} holds {float(values[i])!r}, not one of {list(allowed)}"


def _list_checks(table: pa.Table, n: int, rules: Rules) -> list[Check]:
    """The book message rules on the flattened level lists, as row rules naming the first bad level of a row."""
    lists = {c: table.column(c).combine_chunks() for c in ("book_side", "book_price", "book_amount")}
    lengths = {c: pc.list_value_length(a).fill_null(0).to_numpy(zero_copy_only=False) for c, a in lists.items()}
    if not (
        np.array_equal(lengths["book_side"], lengths["book_price"])
        and np.array_equal(lengths["book_side"], lengths["book_amount"])
    ):
        i = int(
            np.argmax(
                (lengths["book_side"] != lengths["book_price"]) | (lengths["book_side"] != lengths["book_amount"])
            )
        )
        return [
            (csvread.MALFORMED, np.arange(n) == i, lambda i: "book_side, book_price and book_amount differ in length")
        ]
    row_of = np.repeat(np.arange(n), lengths["book_side"])
    flat = {c: a.flatten().to_numpy(zero_copy_only=False) for c, a in lists.items()}
    element: list[Check] = [
        _set_check(flat["book_side"], "book_side", (schema.BID, schema.ASK), np.ones(len(row_of), dtype=bool)),
        *csvread.price_check(flat["book_price"], "book_price", rules, jump=False),
        *csvread.size_check(flat["book_amount"], "book_amount", rules),
    ]
    out: list[Check] = []
    for rule, mask, describe in element:
        rows = np.zeros(n, dtype=bool)
        rows[row_of[mask]] = True
        first = np.full(n, -1)
        hit = np.flatnonzero(mask)
        first[row_of[hit[::-1]]] = hit[::-1]  # the first bad element of each row

        def row_describe(i: int, describe: Any = describe, first: np.ndarray = first) -> str:
            return f"level {int(first[i] - np.searchsorted(row_of, i))} of the message: {describe(int(first[i]))}"

        out.append((rule, rows, row_describe))
    return out


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


def source_digests(files: Mapping[str, Sequence[Path_]]) -> dict[str, list[list[str]]]:
    """Each role's files as [absolute path, sha256 of the content]: what a cache entry was built from."""
    out: dict[str, list[list[str]]] = {}
    for role, paths in files.items():
        rows = []
        for p in paths:
            p = Path(p).resolve()
            try:
                rows.append([str(p), file_sha256(p)])
            except OSError as e:
                raise DataError(f"{p}: whole file: unreadable file: cannot read ({e})") from None
        out[role] = rows
    return out


def cached(
    reader: str,
    version: int,
    options: Mapping[str, object],
    files: Mapping[str, Sequence[Path_]],
    build: Callable[[], pa.Table],
    cache_dir: Path_,
    *,
    rules: Rules | None = None,
) -> pa.Table:
    """`build()`'s table, kept as `<cache_dir>/<reader>-<key>.parquet` with its sources' sha256 and its own content
    digest, and read from there on a later call when both still match (else rebuilt, with a warning)."""
    key = cache_key(reader, version, options, files)
    path = Path(cache_dir) / f"{reader}-{key}.parquet"
    sources = source_digests(files)
    if path.exists():
        table = _verified(path, sources, rules)
        if table is not None:
            return table
    table = build()
    meta = dict(table.schema.metadata or {})
    meta[SOURCES_KEY] = json.dumps(sources, sort_keys=True).encode()
    meta[DIGEST_KEY] = digest(table).encode()
    write_parquet(table.replace_schema_metadata(meta), path)
    return table


def _verified(path: Path, sources: dict[str, list[list[str]]], rules: Rules | None) -> pa.Table | None:
    """The table of cache entry `path` when it was built from files with exactly these contents and is intact;
    None, with a `CacheRebuilt` warning naming the reason, otherwise."""
    try:
        table = read_parquet(path, rules=rules)
    except DataError as e:
        warnings.warn(f"{path}: unusable cache entry, rebuilt from the source files: {e}", CacheRebuilt, stacklevel=3)
        return None
    meta = dict(table.schema.metadata or {})
    stored = json.loads(meta.pop(SOURCES_KEY, b"{}"))
    if stored != sources:
        before = {p: h for rows in stored.values() for p, h in rows}
        changed = [p for rows in sources.values() for p, h in rows if before.get(p) != h]
        reason = f"the content of {changed} changed since it was cached (same path, size and modification time)"
        warnings.warn(f"{path}: stale cache entry, rebuilt from the source files: {reason}", CacheRebuilt, stacklevel=3)
        return None
    table = table.replace_schema_metadata({k: v for k, v in meta.items() if k != DIGEST_KEY})
    if meta.get(DIGEST_KEY, b"").decode() != digest(table):
        reason = "its table no longer matches the content digest stored with it (the cache file was edited or damaged)"
        warnings.warn(
            f"{path}: corrupt cache entry, rebuilt from the source files: {reason}", CacheRebuilt, stacklevel=3
        )
        return None
    return table
