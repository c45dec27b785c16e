"""The Parquet cache: round trips keep schema and metadata, a hit skips CSV parsing, bad files are named."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import DataError
from harness.streams import binance_dump as binance
from harness.streams import cache, csvread, schema
from harness.streams import tardis_csv as tardis
from harness.streams.content_digest import digest

TRADES_HEAD = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
BOOK_HEAD = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
T = 1_723_161_255_000_000  # 2024-08-08 in tardis microseconds


def files(tmp_path: Path) -> tuple[Path, Path]:
    trades = tmp_path / "trades.csv"
    rows = [f"x,Y,{T + 1000 + i},{T + 2000 + i},{i},{'buy' if i % 2 else 'sell'},{100 + i},0.5" for i in range(20)]
    trades.write_text("\n".join([TRADES_HEAD, *rows]) + "\n")
    book = tmp_path / "book.csv"
    rows = [
        f"x,Y,{T + 1000 + i // 3},{T + 2000 + i // 3},{'true' if i < 3 else 'false'},bid,{99 + i},1" for i in range(12)
    ]
    book.write_text("\n".join([BOOK_HEAD, *rows]) + "\n")
    return trades, book


class Forbidden(AssertionError):
    pass


def forbid_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise Forbidden("the CSV reader ran on a cache hit")

    monkeypatch.setattr(csvread, "read_csv", fail)


def test_round_trip_keeps_schema_and_metadata(tmp_path: Path) -> None:
    trades, book = files(tmp_path)
    table = tardis.tardis(book=book, trades=trades)
    path = cache.write_parquet(table, tmp_path / "out" / "events.parquet")
    back = cache.read_parquet(path)
    assert back.schema.equals(table.schema, check_metadata=True)
    assert back.equals(table)
    assert csvread.stats(back) == csvread.stats(table) and csvread.stats(back)["rows_read"] == 32
    assert digest(back) == digest(table)
    assert [p.name for p in path.parent.iterdir()] == ["events.parquet"]  # no temporary files left


def test_a_cache_hit_skips_csv_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trades, book = files(tmp_path)
    store = tmp_path / "cache"
    first = tardis.tardis(book=book, trades=trades, cache_dir=store)
    assert len(list(store.glob("tardis-*.parquet"))) == 1
    with monkeypatch.context() as m:
        forbid_csv(m)
        second = tardis.tardis(book=book, trades=trades, cache_dir=store)
        assert second.equals(first) and csvread.stats(second) == csvread.stats(first)
        with pytest.raises(Forbidden):  # other options are another key
            tardis.tardis(book=book, trades=trades, clock="exchange", cache_dir=store)
        with pytest.raises(Forbidden):  # so are other roles for the same files
            tardis.tardis(book=book, cache_dir=store)
        # a changed file is another key
        os.utime(trades, ns=(trades.stat().st_atime_ns, trades.stat().st_mtime_ns + 10**9))
        with pytest.raises(Forbidden):
            tardis.tardis(book=book, trades=trades, cache_dir=store)
    assert tardis.tardis(book=book, trades=trades, cache_dir=store).equals(first)
    assert len(list(store.glob("tardis-*.parquet"))) == 2


def test_binance_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "BTCUSDT-trades.csv"
    path.write_text("1,100.5,0.1,10.05,1700000000000,false\n2,100.4,0.2,20.08,1700000000001,true\n")
    first = binance.binance(trades=path, cache_dir=tmp_path / "c")
    forbid_csv(monkeypatch)
    assert binance.binance(trades=path, cache_dir=tmp_path / "c").equals(first)


def test_key_covers_reader_version_options_and_files(tmp_path: Path) -> None:
    trades, book = files(tmp_path)
    key = cache.cache_key("tardis", 1, {"clock": "local"}, {"trades": [trades]})
    assert key == cache.cache_key("tardis", 1, {"clock": "local"}, {"trades": [str(trades)]})
    assert key != cache.cache_key("tardis", 2, {"clock": "local"}, {"trades": [trades]})
    assert key != cache.cache_key("binance", 1, {"clock": "local"}, {"trades": [trades]})
    assert key != cache.cache_key("tardis", 1, {"clock": "exchange"}, {"trades": [trades]})
    assert key != cache.cache_key("tardis", 1, {"clock": "local"}, {"trades": [trades, trades]})
    with pytest.raises(DataError, match="absent.csv: whole file: unreadable file"):
        cache.cache_key("tardis", 1, {}, {"trades": [tmp_path / "absent.csv"]})


def test_a_non_harness_parquet_file_is_a_clear_error(tmp_path: Path) -> None:
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"t": [1, 2], "price": [1.0, 2.0]}), other)
    with pytest.raises(DataError, match=r"other\.parquet: whole file: not a harness market table: columns \['trigger"):
        cache.read_parquet(other)
    wrong_type = tmp_path / "wrong_type.parquet"
    pq.write_table(schema.empty().set_column(0, "t", pa.array([], pa.float64())), wrong_type)
    with pytest.raises(
        DataError, match=r"wrong_type\.parquet: .*not a harness market table: columns \['t \(double\)'\]"
    ):
        cache.read_parquet(wrong_type)
    text = tmp_path / "text.parquet"
    text.write_text("not parquet at all")
    with pytest.raises(DataError, match=r"text\.parquet: whole file: unreadable file: not a readable Parquet file"):
        cache.read_parquet(text)
