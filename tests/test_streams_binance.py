"""Binance data.binance.vision readers: the real zips, the same content as plain CSV with and without header,
aggTrades with 7 and 8 fields, millisecond and microsecond times."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from conftest import SHARED_DATA, real_data_missing

from harness.errors import DataError, HarnessError
from harness.streams import binance_dump as binance
from harness.streams import csvread, schema
from harness.streams import tardis_csv as tardis

REAL = SHARED_DATA
DAY = REAL / "derived" / "binance-futures_2024-08-08"
VISION = DAY / "binance_vision_format"
TRADES_ZIP = VISION / "BTCUSDT-trades-2024-08-08.zip"
TICKER_ZIP = VISION / "BTCUSDT-bookTicker-2024-08-08.zip"


@pytest.fixture()
def real() -> None:
    if not VISION.is_dir():
        pytest.skip(real_data_missing(VISION))


def member(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        (name,) = zf.namelist()
        return zf.read(name)


def without_header(data: bytes) -> bytes:
    return data.split(b"\n", 1)[1]


def plain(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata(None)


def test_real_trades_zip(real: None) -> None:
    trades = binance.read_trades(TRADES_ZIP)
    assert trades.schema.remove_metadata().equals(schema.SCHEMA)
    assert trades.num_rows == 21_313
    first = trades.slice(0, 1).to_pylist()[0]
    assert first["t"] == first["t_local"] == first["t_exchange"] == 1_723_161_256_322_000_000
    assert (first["trade_price"], first["trade_amount"], first["trade_side"]) == (61800.3, 0.006, 1.0)
    # the same trades as the tardis file of the day: prices, sizes, sides, exchange times
    ref = tardis.read_trades(DAY / "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz", clock="exchange")
    for name in ("t", "trade_price", "trade_amount", "trade_side"):
        assert trades.column(name).equals(ref.column(name)), name
    assert csvread.stats(trades)["files"] == [str(TRADES_ZIP)]


def test_real_book_ticker_zip(real: None) -> None:
    ticker = binance.read_book_ticker(TICKER_ZIP)
    assert ticker.num_rows == 66_088
    assert set(pc.unique(ticker.column("trigger").cast(pa.string())).to_pylist()) == {"quote"}
    q = ticker.slice(0, 1).to_pylist()[0]
    assert (q["quote_bid_price"], q["quote_bid_amount"], q["quote_ask_price"], q["quote_ask_amount"]) == (
        61800.2,
        2.507,
        61800.3,
        2.51,
    )
    assert q["t"] == 1_723_161_256_313_000_000
    assert (np.diff(ticker.column("t").to_numpy()) >= 0).all()


@pytest.mark.parametrize("zip_path", [TRADES_ZIP, TICKER_ZIP], ids=["trades", "bookTicker"])
def test_plain_csv_with_and_without_header_reads_the_same(real: None, tmp_path: Path, zip_path: Path) -> None:
    read = binance.read_trades if "trades" in zip_path.name else binance.read_book_ticker
    expected = plain(read(zip_path))
    data = member(zip_path)
    with_header = tmp_path / "with_header.csv"
    with_header.write_bytes(data)
    headerless = tmp_path / "headerless.csv"
    headerless.write_bytes(without_header(data))
    gz = tmp_path / "headerless.csv.gz"
    gz.write_bytes(gzip.compress(without_header(data)))
    headerless_zip = tmp_path / "headerless.zip"
    with zipfile.ZipFile(headerless_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.csv", without_header(data))
    for path in (with_header, headerless, gz, headerless_zip):
        assert plain(read(path)).equals(expected), path


def test_binance_merges_trades_and_book_ticker(real: None) -> None:
    merged = binance.binance(trades=TRADES_ZIP, book_ticker=TICKER_ZIP)
    assert merged.num_rows == 21_313 + 66_088
    t = merged.column("t").to_numpy()
    assert (np.diff(t) >= 0).all()
    trig = merged.column("trigger").cast(pa.string()).to_numpy(zero_copy_only=False)
    same_t = np.flatnonzero((t[1:] == t[:-1]) & (trig[1:] != trig[:-1]))
    assert len(same_t) and all(trig[i] == "quote" and trig[i + 1] == "trade" for i in same_t)
    with pytest.raises(HarnessError, match="give at least one"):
        binance.binance()


def test_binance_takes_a_glob_of_dumps(real: None) -> None:
    """A glob names the dumps it matches, sorted; one that matches nothing is a DataError naming it."""
    globbed = binance.binance(trades=str(VISION / "*-trades-*.zip"), book_ticker=str(VISION / "*-bookTicker-*"))
    assert globbed.equals(binance.binance(trades=TRADES_ZIP, book_ticker=TICKER_ZIP))
    with pytest.raises(DataError, match="no file matches .*-aggTrades-"):
        binance.read_agg_trades(str(VISION / "*-aggTrades-*.zip"))


AGG_ROWS = [
    (26129, "0.01633102", "4.70443515", 27781, 27781, 1498793709153, "true", "true"),
    (26130, "0.01633103", "0.50000000", 27782, 27783, 1498793709160, "false", "true"),
    (26131, "0.01633200", "1.25000000", 27784, 27784, 1498793709160, "True", "false"),
]


def agg_lines(fields: int) -> list[str]:
    return [",".join(str(v) for v in row[:fields]) for row in AGG_ROWS]


@pytest.mark.parametrize("fields", [7, 8])
@pytest.mark.parametrize("header", [False, True])
def test_agg_trades_with_7_and_8_fields(tmp_path: Path, fields: int, header: bool) -> None:
    lines = agg_lines(fields)
    if header:
        lines.insert(0, ",".join(binance.AGG_TRADES.names[:fields]))
    path = tmp_path / f"agg{fields}.csv"
    path.write_text("\n".join(lines) + "\n")
    agg = binance.read_agg_trades(path)
    assert agg.column("trade_price").to_pylist() == [0.01633102, 0.01633103, 0.016332]
    assert agg.column("trade_amount").to_pylist() == [4.70443515, 0.5, 1.25]
    assert agg.column("trade_side").to_pylist() == [-1.0, 1.0, -1.0]
    ms = [1_498_793_709_153, 1_498_793_709_160, 1_498_793_709_160]
    assert agg.column("t").to_pylist() == [v * 1_000_000 for v in ms]
    assert agg.column("t_local").equals(agg.column("t")) and agg.column("t_exchange").equals(agg.column("t"))


def test_agg_trades_in_a_zip_with_the_wrong_number_of_fields(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2017-06-30.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("BTCUSDT-aggTrades-2017-06-30.csv", "\n".join(agg_lines(6)) + "\n")
    with pytest.raises(DataError, match=r"aggTrades-2017-06-30\.zip: line 1: missing columns: does not look like a "):
        binance.read_agg_trades(path)


def test_trades_spot_layout_and_microsecond_times(tmp_path: Path) -> None:
    path = tmp_path / "spot.csv"
    path.write_text("1,100.5,0.25,25.125,1735689600000123,true,true\n2,100.6,0.5,50.3,1735689600000456,false,true\n")
    spot = binance.read_trades(path)
    assert spot.column("t").to_pylist() == [1_735_689_600_000_123_000, 1_735_689_600_000_456_000]
    assert spot.column("trade_side").to_pylist() == [-1.0, 1.0]


def test_header_with_wrong_columns_names_the_dump_type(tmp_path: Path) -> None:
    path = tmp_path / "ticker.csv"
    pacsv.write_csv(pa.table({"id": [1], "price": [1.0], "qty": [1.0], "time": [5]}), path)
    with pytest.raises(DataError, match=r"ticker\.csv: line 1 \(the header\): missing columns: does not look like a"):
        binance.read_book_ticker(path)
