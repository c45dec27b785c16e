"""digest: the same content hashes the same however it is chunked, in any process; any change changes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from harness.errors import HarnessError
from harness.streams import content_digest as digest
from harness.streams import schema
from harness.streams.content_digest import digest as hash_of

ROOT = Path(__file__).resolve().parents[1]


def events(n: int = 150_000, seed: int = 0) -> pa.Table:
    """A market table over more than two digest windows, with nulls, lists and a dictionary column."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, n).astype(np.int8)
    is_book = codes == 0
    sizes = np.where(is_book, rng.integers(0, 4, n), 0)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    values = pa.array(np.round(rng.normal(100, 1, offsets[-1]), 2))
    book = pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(~is_book))
    trade = codes == 1
    table = pa.table(
        {
            "t": pa.array(np.cumsum(rng.integers(0, 3, n)), pa.int64()),
            "trigger": schema.trigger_array(codes),
            "book_price": book,
            "trade_price": pa.array(rng.normal(100, 1, n), pa.float64(), mask=~trade),
            "name": pa.array(np.where(trade, "t", "other").astype(object), pa.string(), mask=codes == 2),
            "flag": pa.array(rng.random(n) < 0.5, pa.bool_(), mask=rng.random(n) < 0.1),
        }
    )
    return schema.conform(table)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return events()


@pytest.fixture(scope="module")
def reference(table: pa.Table) -> str:
    return hash_of(table)


def test_chunking_does_not_matter(table: pa.Table, reference: str) -> None:
    assert len(reference) == 64 and int(reference, 16) >= 0
    assert hash_of(table.combine_chunks()) == reference
    for k in (1_000, 7_919, 65_536, 65_537, 100_000, 1_000_000):
        batches = table.to_batches(max_chunksize=k)
        assert hash_of(batches) == reference, k
        assert hash_of(iter(batches)) == reference, k
        assert hash_of(pa.Table.from_batches(batches)) == reference, k
    # uneven re-chunking: slices of random sizes concatenated
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(table.num_rows, 40, replace=False))
    pieces = [table.slice(a, b - a) for a, b in zip(np.r_[0, cuts], np.r_[cuts, table.num_rows], strict=True)]
    assert hash_of(pa.concat_tables(pieces)) == reference
    assert hash_of(pieces) == reference
    small = table.slice(0, 10)
    assert hash_of(small.to_batches()[0]) == hash_of(small) == hash_of(small.combine_chunks())


def test_sliced_arrays_and_values_under_nulls_are_normalised() -> None:
    lists = pa.array([[1.0], [9.0, 9.0], [2.0, 3.0], None, []], schema.LIST)
    sliced = pa.table({"x": lists.slice(2)})
    fresh = pa.table({"x": pa.array([[2.0, 3.0], None, []], schema.LIST)})
    assert hash_of(sliced) == hash_of(fresh)
    # a null list slot that still spans values in the child array hashes like an empty one
    offsets = pa.array([0, 1, 3, 3], pa.int32())
    with_garbage = pa.ListArray.from_arrays(offsets, pa.array([1.0, 7.0, 8.0]), mask=pa.array([False, True, False]))
    clean = pa.array([[1.0], None, []], schema.LIST)
    assert hash_of(pa.table({"x": with_garbage})) == hash_of(pa.table({"x": clean}))
    # values under a null float / string do not matter
    a = pa.Array.from_buffers(pa.float64(), 2, [pa.py_buffer(b"\x01"), pa.py_buffer(np.array([1.0, 5.0]).tobytes())])
    b = pa.Array.from_buffers(pa.float64(), 2, [pa.py_buffer(b"\x01"), pa.py_buffer(np.array([1.0, 6.0]).tobytes())])
    assert hash_of(pa.table({"x": a})) == hash_of(pa.table({"x": b}))
    s1 = pa.array(["ab", "zz", "c"]).slice(1)
    assert hash_of(pa.table({"s": s1})) == hash_of(pa.table({"s": pa.array(["zz", "c"])}))
    # dictionary columns hash as their values, whatever the dictionary's order or index width
    d1 = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int8()), pa.array(["book", "trade"]))
    d2 = pa.DictionaryArray.from_arrays(pa.array([1, 0, 1], pa.int32()), pa.array(["trade", "book", "quote"]))
    assert hash_of(pa.table({"d": d1})) == hash_of(pa.table({"d": d2}))


def test_any_change_changes_the_digest(table: pa.Table, reference: str) -> None:
    small = table.slice(70_000, 500)
    base = hash_of(small)
    seen = {base}

    def changed(t: pa.Table) -> None:
        h = hash_of(t)
        assert h not in seen
        seen.add(h)

    t = small.column("t").to_numpy().copy()
    t[123] += 1
    changed(small.set_column(0, "t", pa.array(t)))
    price = small.column("trade_price").to_pylist()
    where = small.schema.get_field_index("trade_price")
    i = next(k for k, v in enumerate(price) if v is not None)
    changed(small.set_column(where, "trade_price", pa.array([*price[:i], None, *price[i + 1 :]])))
    j = next(k for k, v in enumerate(price) if v is None)
    changed(small.set_column(where, "trade_price", pa.array([*price[:j], 0.0, *price[j + 1 :]])))
    books = small.column("book_price").to_pylist()
    k = next(k for k, v in enumerate(books) if v)
    books[k] = [*books[k], 1.0]
    changed(small.set_column(small.schema.get_field_index("book_price"), "book_price", pa.array(books, schema.LIST)))
    changed(small.rename_columns(["T", *small.column_names[1:]]))
    changed(small.set_column(0, "t", small.column("t").cast(pa.uint64())))
    changed(small.set_column(1, "trigger", small.column("trigger").cast(pa.string())))
    changed(small.slice(0, 499))
    changed(small.select(small.column_names[::-1]))
    # the empty string, a null string and no string differ
    changed(pa.table({"s": pa.array([""])}))
    changed(pa.table({"s": pa.array([None], pa.string())}))
    changed(pa.table({"s": pa.array([], pa.string())}))
    # the metadata (read stats) is not content
    assert hash_of(small.replace_schema_metadata({b"harness.stats": b"{}"})) == base


def test_stable_across_processes(table: pa.Table, reference: str) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + '/tests');"
        "from test_streams_digest import events; from harness.streams import digest;"
        "print(digest(events()))"
    )
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, env=env, check=True, timeout=120
        )
        assert out.stdout.strip() == reference


def test_unsupported_and_empty_inputs() -> None:
    with pytest.raises(HarnessError, match="empty iterable"):
        hash_of([])
    with pytest.raises(HarnessError, match="cannot hash"):
        hash_of(pa.table({"m": pa.array([{1: 2}], pa.map_(pa.int64(), pa.int64()))}))
    assert hash_of(schema.empty()) != hash_of(schema.empty().drop_columns(["t"]))
    assert digest.WINDOW == 65536
