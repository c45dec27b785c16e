"""tardis.dev readers on the real samples: counts, types, values checked against the raw CSV, clocks, merging."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from conftest import SHARED_DATA, real_data_missing

from harness.errors import DataError, HarnessError
from harness.streams import csvread, schema
from harness.streams import tardis_csv as tardis

REAL = SHARED_DATA
DAY = REAL / "derived" / "binance-futures_2024-08-08"
NAUTILUS = REAL / "nautilus_trader" / "tardis"
L2 = DAY / "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz"
TRADES = DAY / "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz"
QUOTES = DAY / "binance-futures_quotes_2024-08-08_BTCUSDT.csv.gz"


@pytest.fixture(autouse=True)
def _real_data() -> None:
    if not REAL.is_dir():
        pytest.skip(real_data_missing(REAL))


@pytest.fixture(scope="module")
def book() -> pa.Table:
    if not L2.exists():
        pytest.skip(real_data_missing(L2))
    return tardis.read_book(L2)


def raw(path: Path) -> pa.Table:
    """The file as pyarrow.csv reads it by itself (type inference), for comparisons."""
    return pacsv.read_csv(path)


def lengths(col: pa.ChunkedArray) -> np.ndarray:
    return pc.list_value_length(col).to_numpy()


def assert_market_schema(table: pa.Table) -> None:
    assert table.schema.remove_metadata().equals(schema.SCHEMA), table.schema
    t = table.column("t").to_numpy()
    assert (np.diff(t) >= 0).all()


def test_l2_day_loads_fast_into_one_event_per_message(book: pa.Table) -> None:
    start = time.perf_counter()
    again = tardis.read_book(L2)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"reading the 445,206-row L2 file took {elapsed:.2f} s"
    assert again.equals(book)
    assert_market_schema(book)
    assert book.num_rows == 6546
    n = lengths(book.column("book_price"))
    assert n.sum() == 445_206
    assert (lengths(book.column("book_side")) == n).all() and (lengths(book.column("book_amount")) == n).all()
    snap = book.column("book_snapshot").to_numpy()
    assert snap[0] == schema.SNAPSHOT_START and n[0] == 2013
    assert (snap[1:] == schema.SNAPSHOT_NONE).all()
    assert set(pc.unique(book.column("trigger").cast(pa.string())).to_pylist()) == {"book"}
    assert csvread.stats(book)["rows_read"] == 445_206 and csvread.stats(book)["rows_skipped"] == 0


def test_l2_lists_hold_the_raw_rows_in_order(book: pa.Table) -> None:
    r = raw(L2)
    assert pc.list_flatten(book.column("book_price")).to_numpy().tolist() == r["price"].to_pylist()
    assert pc.list_flatten(book.column("book_amount")).to_numpy().tolist() == r["amount"].to_pylist()
    side = np.where(np.asarray(r["side"].to_pylist()) == "bid", 1.0, -1.0)
    assert (pc.list_flatten(book.column("book_side")).to_numpy() == side).all()
    # messages start where local_timestamp changes; times are the message's first row, in ns
    local = r["local_timestamp"].to_numpy()
    starts = np.flatnonzero(np.r_[True, local[1:] != local[:-1]])
    assert len(starts) == book.num_rows
    assert (book.column("t_local").to_numpy() == local[starts] * 1000).all()
    assert (book.column("t_exchange").to_numpy() == r["timestamp"].to_numpy()[starts] * 1000).all()
    first = book.slice(0, 1).to_pylist()[0]
    assert first["t"] == 1_723_161_255_319_702_000 and first["t_exchange"] == 1_723_161_256_493_000_000
    assert (first["book_side"][0], first["book_price"][0], first["book_amount"][0]) == (-1.0, 61800.3, 1.088)


def test_clocks(book: pa.Table) -> None:
    assert (book.column("t").to_numpy() == book.column("t_local").to_numpy()).all()
    exch = tardis.read_book(L2, clock="exchange")
    assert_market_schema(exch)
    assert (exch.column("t").to_numpy() == exch.column("t_exchange").to_numpy()).all()
    assert exch.drop_columns(["t"]).equals(book.drop_columns(["t"]))
    trades = tardis.read_trades(TRADES, clock="exchange")
    assert (trades.column("t").to_numpy() == raw(TRADES)["timestamp"].to_numpy() * 1000).all()
    with pytest.raises(HarnessError, match="clock must be 'local' or 'exchange'"):
        tardis.read_trades(TRADES, clock="wall")


def test_trades_and_quotes_of_the_day() -> None:
    trades = tardis.read_trades(TRADES)
    assert_market_schema(trades)
    assert trades.num_rows == 21_313
    r = raw(TRADES)
    assert trades.column("trade_price").to_pylist() == r["price"].to_pylist()
    assert trades.column("trade_amount").to_pylist() == r["amount"].to_pylist()
    side = np.where(np.asarray(r["side"].to_pylist()) == "buy", 1.0, -1.0)
    assert (trades.column("trade_side").to_numpy() == side).all()
    assert (trades.column("t").to_numpy() == r["local_timestamp"].to_numpy() * 1000).all()
    assert trades.column("book_price").null_count == trades.num_rows
    quotes = tardis.read_quotes(QUOTES)
    assert_market_schema(quotes)
    assert quotes.num_rows == 5671
    rq = raw(QUOTES)
    for side_ in ("bid", "ask"):
        for what in ("price", "amount"):
            assert quotes.column(f"quote_{side_}_{what}").to_pylist() == rq[f"{side_}_{what}"].to_pylist()
    assert set(pc.unique(quotes.column("trigger").cast(pa.string())).to_pylist()) == {"quote"}


def test_book_ticker_reads_as_quotes() -> None:
    ticker = tardis.read_quotes(DAY / "binance-futures_book_ticker_2024-08-08_BTCUSDT.csv.gz")
    assert ticker.num_rows == 66_089
    assert ticker.slice(0, 1).to_pylist()[0]["quote_ask_amount"] == 2.51


@pytest.mark.parametrize(
    ("path", "rows", "levels"),
    [
        (DAY / "binance-futures_book_snapshot_5_2024-08-08_BTCUSDT.csv.gz", 5890, 5),
        (DAY / "binance-futures_book_snapshot_25_2024-08-08_BTCUSDT.csv.gz", 6222, 25),
        (NAUTILUS / "binance-futures_book_snapshot_5_BTCUSDT.csv", 10, 5),
        (NAUTILUS / "binance-futures_book_snapshot_25_BTCUSDT.csv", 10, 25),
    ],
)
def test_snapshot_files(path: Path, rows: int, levels: int) -> None:
    snaps = tardis.read_snapshots(path)
    assert_market_schema(snaps)
    assert snaps.num_rows == rows
    assert (snaps.column("book_snapshot").to_numpy() == schema.SNAPSHOT_START).all()
    assert (lengths(snaps.column("book_price")) == 2 * levels).all()
    r = raw(path)
    first = snaps.slice(0, 1).to_pylist()[0]
    assert first["book_price"][:2] == [r["asks[0].price"][0].as_py(), r["bids[0].price"][0].as_py()]
    assert first["book_amount"][:2] == [r["asks[0].amount"][0].as_py(), r["bids[0].amount"][0].as_py()]
    assert first["book_side"][:4] == [-1.0, 1.0, -1.0, 1.0]
    last = levels - 1
    assert first["book_price"][-1] == r[f"bids[{last}].price"][0].as_py()
    assert first["t"] == r["local_timestamp"][0].as_py() * 1000


def test_snapshot_levels_with_empty_fields_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "snap.csv"
    head = "exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,bids[0].price,bids[0].amount,"
    head += "asks[1].price,asks[1].amount,bids[1].price,bids[1].amount\n"
    t = 1_723_161_255_000_000  # 2024-08-08, in microseconds (times before 2000 are implausible)
    path.write_text(head + f"x,Y,{t + 10},{t + 20},101,1,100,2,102,3,,\nx,Y,{t + 11},{t + 21},,,,,,,,\n")
    snaps = tardis.read_snapshots(path)
    assert snaps.column("book_price").to_pylist() == [[101.0, 100.0, 102.0], []]
    assert snaps.column("book_side").to_pylist() == [[-1.0, 1.0, -1.0], []]


def test_nautilus_2020_trades_and_quotes() -> None:
    trades = tardis.read_trades(NAUTILUS / "binance-futures_trades_2020-02-22_BTCUSDT.csv")
    assert trades.num_rows == 9999
    first = trades.slice(0, 1).to_pylist()[0]
    assert (first["trade_price"], first["trade_amount"], first["trade_side"]) == (9682.0, 0.132, 1.0)
    assert (first["t"], first["t_exchange"]) == (1_582_329_602_418_379_000, 1_582_329_602_111_000_000)
    quotes = tardis.read_quotes(NAUTILUS / "binance-futures_quotes_2020-02-22_BTCUSDT.csv")
    assert quotes.num_rows == 9999
    q = quotes.slice(0, 1).to_pylist()[0]
    assert (q["quote_ask_amount"], q["quote_ask_price"], q["quote_bid_price"], q["quote_bid_amount"]) == (
        0.84,
        9682.0,
        9681.92,
        0.67,
    )


def test_tiny_deribit_bitmex_huobi_files() -> None:
    deribit = tardis.read_book(NAUTILUS / "deribit_incremental_book_L2_BTC-PERPETUAL.csv")
    assert deribit.num_rows == 1  # 15 snapshot rows sharing one local_timestamp: one message
    ev = deribit.to_pylist()[0]
    assert ev["book_snapshot"] == 1.0 and len(ev["book_price"]) == 15
    assert ev["book_side"] == [-1.0] * 15
    assert ev["book_price"][:2] == [6421.5, 6422.0] and ev["book_amount"][:2] == [18640.0, 1190.0]
    assert ev["t"] == 1_585_699_200_355_684_000 and ev["t_exchange"] == 1_585_699_200_245_000_000
    bitmex = tardis.read_trades(NAUTILUS / "bitmex_trades_XBTUSD.csv")  # string ids
    assert bitmex.num_rows == 10 and bitmex.schema.field("trade_amount").type == pa.float64()
    assert bitmex.column("trade_amount").to_pylist()[:2] == [2152.0, 1.0]
    assert bitmex.column("trade_side").to_pylist() == [-1.0] * 10
    assert bitmex.column("trade_price").to_pylist()[0] == 8531.5
    huobi = tardis.read_quotes(NAUTILUS / "huobi-dm-swap_quotes_BTC-USD.csv")
    assert huobi.num_rows == 10
    h = huobi.to_pylist()[0]
    assert (h["quote_ask_amount"], h["quote_ask_price"], h["quote_bid_price"], h["quote_bid_amount"]) == (
        5494.0,
        8629.3,
        8629.2,
        806.0,
    )


def test_unknown_trade_side_is_zero(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    head = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
    t = 1_723_161_255_000_000  # 2024-08-08, in microseconds (times before 2000 are implausible)
    sides = ("buy", "unknown", "sell", "")
    path.write_text(head + "".join(f"x,Y,{t + 1},{t + 2 + i},{i},{side},10,1\n" for i, side in enumerate(sides)))
    assert tardis.read_trades(path).column("trade_side").to_pylist() == [1.0, 0.0, -1.0, 0.0]


def test_tardis_merges_book_trades_and_quotes(book: pa.Table) -> None:
    merged = tardis.tardis(book=L2, trades=TRADES, quotes=QUOTES)
    assert_market_schema(merged)
    assert merged.num_rows == 6546 + 21_313 + 5671
    counts = pc.value_counts(merged.column("trigger").cast(pa.string())).to_pylist()
    assert {c["values"]: c["counts"] for c in counts} == {"book": 6546, "trade": 21_313, "quote": 5671}
    books = merged.filter(pc.equal(merged.column("trigger").cast(pa.string()), "book"))
    assert books.column("book_price").equals(book.column("book_price"))
    stats = csvread.stats(merged)
    assert stats["rows_read"] == 445_206 + 21_313 + 5671 and len(stats["files"]) == 3
    with pytest.raises(HarnessError, match="give at least one"):
        tardis.tardis()


def write_csv(table: pa.Table, path: Path) -> Path:
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="none"))
    return path


def test_a_list_of_files_is_their_concatenation(tmp_path: Path, book: pa.Table) -> None:
    r = raw(TRADES)
    a, b = write_csv(r.slice(0, 10_000), tmp_path / "a.csv"), write_csv(r.slice(10_000), tmp_path / "b.csv")
    both = tardis.read_trades([a, b])
    assert both.replace_schema_metadata(None).equals(tardis.read_trades(TRADES).replace_schema_metadata(None))
    assert csvread.stats(both)["files"] == [str(a), str(b)]
    # a book day split at a message boundary reads as the same messages
    rb = raw(L2)
    local = rb["local_timestamp"].to_numpy()
    cut = int(np.flatnonzero(local[1:] != local[:-1])[3000]) + 1
    first, second = write_csv(rb.slice(0, cut), tmp_path / "l2a.csv"), write_csv(rb.slice(cut), tmp_path / "l2b.csv")
    assert tardis.read_book([first, second]).replace_schema_metadata(None).equals(book.replace_schema_metadata(None))
    # the same file twice goes back in time at the start of the second copy
    with pytest.raises(DataError, match=r"a\.csv: row 1 \(line 2\): decreasing timestamp: .*previous file"):
        tardis.read_trades([a, a])
    skipped = tardis.read_trades([a, a], on_bad_rows="skip")
    assert csvread.stats(skipped)["skipped"]["decreasing timestamp"] >= 9_990


def test_a_glob_reads_the_files_it_matches_in_sorted_order(tmp_path: Path) -> None:
    """A glob is accepted wherever a list of files is: the files it matches, sorted (here, in time order)."""
    pattern = str(DAY / "*_trades_*.csv.gz")
    assert tardis.tardis(trades=pattern).equals(tardis.tardis(trades=TRADES))
    r = raw(TRADES)
    second = write_csv(r.slice(10_000), tmp_path / "part_2.csv")  # written first: the order is the names'
    first = write_csv(r.slice(0, 10_000), tmp_path / "part_1.csv")
    both = tardis.read_trades(str(tmp_path / "part_?.csv"))
    assert csvread.stats(both)["files"] == [str(first), str(second)]
    assert both.replace_schema_metadata(None).equals(tardis.read_trades(TRADES).replace_schema_metadata(None))
    assert csvread.as_paths([first, str(tmp_path / "part_[2]*")]) == [first, second]  # list items may be globs
    with pytest.raises(DataError, match=f"no file matches '{tmp_path}/nothing_\\*.csv' \\(working directory "):
        tardis.tardis(trades=str(tmp_path / "nothing_*.csv"))
