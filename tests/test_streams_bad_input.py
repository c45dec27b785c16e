"""Bad input: every case raises a DataError naming the file, the row and the rule (or, with on_bad_rows="skip",
drops the bad rows and counts them per rule); file-level problems always raise."""

from __future__ import annotations

import gzip
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from harness.errors import DataError, HarnessError
from harness.streams import binance_dump as binance
from harness.streams import csvread
from harness.streams import tardis_csv as tardis

BOOK_HEAD = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
TRADES_HEAD = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
QUOTES_HEAD = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount"
T = 1_723_161_255_000_000  # 2024-08-08 in tardis microseconds: fixture times are T + a few


def ts(us: int) -> str:
    """A fixture timestamp: T + `us` microseconds."""
    return str(T + us)


def book_rows(n: int = 10) -> list[str]:
    """Rows of a valid book file: a 2-row snapshot message, then one-row incremental messages."""
    rows = [f"x,Y,{ts(1000)},{ts(2000)},true,{side},{price},1.5" for side, price in (("bid", 99.5), ("ask", 100.5))]
    rows += [
        f"x,Y,{ts(1001 + i)},{ts(2001 + i)},false,{'bid' if i % 2 else 'ask'},{100 + i}.25,{i}" for i in range(n - 2)
    ]
    return rows


def trade_rows(n: int = 10) -> list[str]:
    return [
        f"x,Y,{ts(1000 + i)},{ts(2000 + i)},id{i},{'buy' if i % 2 else 'sell'},{100 + i}.5,0.{i + 1}" for i in range(n)
    ]


def quote_rows(n: int = 10) -> list[str]:
    return [f"x,Y,{ts(1000 + i)},{ts(2000 + i)},1.{i},{101 + i},{100 + i},2.{i}" for i in range(n)]


def write(path: Path, head: str | None, rows: list[str]) -> Path:
    text = "\n".join(([head] if head else []) + rows) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def replaced(rows: list[str], i: int, field: int, value: str) -> list[str]:
    out = list(rows)
    fields = out[i].split(",")
    fields[field] = value
    out[i] = ",".join(fields)
    return out


def expect(call: Callable[[], object], path: Path, where: str, rule: str, detail: str = "") -> DataError:
    """`call` raises a DataError whose message names the file, the row/line and the rule."""
    with pytest.raises(DataError) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    assert f": {where}: {rule}: " in msg, msg
    assert re.search(detail, msg), msg
    return info.value


def skipped(table: pa.Table) -> dict[str, int]:
    return csvread.stats(table)["skipped"]


# --- row-level problems: error and skip ------------------------------------------------------------------


def test_malformed_row(tmp_path: Path) -> None:
    rows = book_rows()
    rows[4] = "x,Y,1003,2003,false,bid"  # 6 fields instead of 8
    path = write(tmp_path / "book.csv", BOOK_HEAD, rows)
    expect(lambda: tardis.read_book(path), path, "row 5 (line 6)", "malformed row", "expected 8 fields, found 6")
    book = tardis.read_book(path, on_bad_rows="skip")
    assert skipped(book) == {"malformed row": 1}
    assert csvread.stats(book)["rows_read"] == 10 and csvread.stats(book)["rows_skipped"] == 1
    assert sum(len(p) for p in book.column("book_price").to_pylist()) == 9


def test_malformed_row_in_a_large_gzip_file_is_located(tmp_path: Path) -> None:
    rows = book_rows(300_000)
    rows[250_000] += ",extra"
    path = write(tmp_path / "book.csv.gz", BOOK_HEAD, rows)
    expect(lambda: tardis.read_book(path), path, "row 250001 (line 250002)", "malformed row", "found 9")
    assert skipped(tardis.read_book(path, on_bad_rows="skip")) == {"malformed row": 1}


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_non_numeric_price(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"book{suffix}", BOOK_HEAD, replaced(book_rows(), 6, 6, "12x.5"))
    expect(lambda: tardis.read_book(path), path, "row 7 (line 8)", "non-numeric value", "'price' holds '12x.5'")
    book = tardis.read_book(path, on_bad_rows="skip")
    assert skipped(book) == {"non-numeric value": 1} and book.num_rows == 8


def test_non_numeric_values_in_trades_quotes_and_binance(tmp_path: Path) -> None:
    trades = write(tmp_path / "trades.csv", TRADES_HEAD, replaced(trade_rows(), 2, 7, "lots"))
    expect(lambda: tardis.read_trades(trades), trades, "row 3 (line 4)", "non-numeric value", "'amount' holds 'lots'")
    assert skipped(tardis.read_trades(trades, on_bad_rows="skip")) == {"non-numeric value": 1}
    quotes = write(tmp_path / "quotes.csv", QUOTES_HEAD, replaced(quote_rows(), 9, 2, "soon"))
    expect(lambda: tardis.read_quotes(quotes), quotes, "row 10 (line 11)", "non-numeric value", "'timestamp'")
    bn = write(
        tmp_path / "bn.csv", None, ["1,100.5,0.1,10.05,1700000000000,false", "2,1OO.5,0.1,10.05,1700000000001,true"]
    )
    expect(lambda: binance.read_trades(bn), bn, "row 2 (line 2)", "non-numeric value", "'price' holds '1OO.5'")
    assert binance.read_trades(bn, on_bad_rows="skip").num_rows == 1


def test_not_a_boolean_and_unknown_side_and_empty_value(tmp_path: Path) -> None:
    flag = write(tmp_path / "flag.csv", BOOK_HEAD, replaced(book_rows(), 3, 4, "yes"))
    expect(lambda: tardis.read_book(flag), flag, "row 4 (line 5)", "not a boolean", "'is_snapshot' holds 'yes'")
    assert skipped(tardis.read_book(flag, on_bad_rows="skip")) == {"not a boolean": 1}
    side = write(tmp_path / "side.csv", BOOK_HEAD, replaced(book_rows(), 5, 5, "buy"))
    expect(lambda: tardis.read_book(side), side, "row 6 (line 7)", "unknown side", "'buy'")
    assert skipped(tardis.read_book(side, on_bad_rows="skip")) == {"unknown side": 1}
    empty = write(tmp_path / "empty_price.csv", BOOK_HEAD, replaced(book_rows(), 8, 6, ""))
    expect(lambda: tardis.read_book(empty), empty, "row 9 (line 10)", "empty value", "'price' is empty")
    assert skipped(tardis.read_book(empty, on_bad_rows="skip")) == {"empty value": 1}


@pytest.mark.parametrize("value", ["-1.5", "nan", "inf"])
def test_negative_or_nan_size(tmp_path: Path, value: str) -> None:
    book = write(tmp_path / "book.csv", BOOK_HEAD, replaced(book_rows(), 7, 7, value))
    expect(lambda: tardis.read_book(book), book, "row 8 (line 9)", "negative or NaN size", "'amount' holds")
    assert skipped(tardis.read_book(book, on_bad_rows="skip")) == {"negative or NaN size": 1}
    trades = write(tmp_path / "trades.csv", TRADES_HEAD, replaced(trade_rows(), 0, 7, value))
    expect(lambda: tardis.read_trades(trades), trades, "row 1 (line 2)", "negative or NaN size")
    quotes = write(tmp_path / "quotes.csv", QUOTES_HEAD, replaced(quote_rows(), 4, 7, value))
    expect(lambda: tardis.read_quotes(quotes), quotes, "row 5 (line 6)", "negative or NaN size", "'bid_amount'")
    assert skipped(tardis.read_quotes(quotes, on_bad_rows="skip")) == {"negative or NaN size": 1}
    bn = write(tmp_path / "agg.csv", None, [f"1,100.5,{value},1,1,1700000000000,false"])
    expect(lambda: binance.read_agg_trades(bn), bn, "row 1 (line 1)", "negative or NaN size", "'quantity'")


def test_zero_trade_size_and_non_finite_price(tmp_path: Path) -> None:
    trades = write(tmp_path / "trades.csv", TRADES_HEAD, replaced(trade_rows(), 3, 7, "0"))
    expect(lambda: tardis.read_trades(trades), trades, "row 4 (line 5)", "zero trade size")
    prices = write(tmp_path / "prices.csv", TRADES_HEAD, replaced(trade_rows(), 3, 6, "nan"))
    expect(lambda: tardis.read_trades(prices), prices, "row 4 (line 5)", "non-finite price", "'price' holds nan")
    # a zero book amount deletes a level: it is fine
    assert tardis.read_book(write(tmp_path / "book.csv", BOOK_HEAD, replaced(book_rows(), 3, 7, "0"))).num_rows == 9


def test_decreasing_timestamps_for_the_chosen_clock(tmp_path: Path) -> None:
    rows = replaced(trade_rows(), 6, 2, ts(999))  # exchange time goes back, local time does not
    path = write(tmp_path / "trades.csv", TRADES_HEAD, rows)
    assert tardis.read_trades(path).num_rows == 10
    expect(
        lambda: tardis.read_trades(path, clock="exchange"),
        path,
        "row 7 (line 8)",
        "decreasing timestamp",
        f"timestamp {ts(999)} is before an earlier row's {ts(1005)}",
    )
    trades = tardis.read_trades(path, clock="exchange", on_bad_rows="skip")
    assert skipped(trades) == {"decreasing timestamp": 1} and trades.num_rows == 9
    back = write(tmp_path / "back.csv", TRADES_HEAD, replaced(trade_rows(), 6, 3, ts(1)))
    expect(lambda: tardis.read_trades(back), back, "row 7 (line 8)", "decreasing timestamp", f"local_timestamp {ts(1)}")


def test_decreasing_local_timestamp_in_a_book_file(tmp_path: Path) -> None:
    path = write(tmp_path / "book.csv", BOOK_HEAD, replaced(book_rows(), 5, 3, ts(2001)))
    expect(
        lambda: tardis.read_book(path), path, "row 6 (line 7)", "decreasing timestamp", f"local_timestamp {ts(2001)}"
    )
    book = tardis.read_book(path, on_bad_rows="skip")
    assert skipped(book) == {"decreasing timestamp": 1} and book.num_rows == 8


def test_book_messages_going_back_in_exchange_time(tmp_path: Path) -> None:
    rows = replaced(book_rows(), 6, 2, ts(1001))  # message 6 (a one-row message) goes back in exchange time
    path = write(tmp_path / "book.csv", BOOK_HEAD, rows)
    assert tardis.read_book(path).num_rows == 9  # fine on the local clock
    expect(lambda: tardis.read_book(path, clock="exchange"), path, "row 7 (line 8)", "decreasing timestamp", "message")
    book = tardis.read_book(path, clock="exchange", on_bad_rows="skip")
    assert skipped(book) == {"decreasing timestamp": 1} and book.num_rows == 8


def test_files_going_back_in_time_across_a_list(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", QUOTES_HEAD, quote_rows())
    b = write(tmp_path / "b.csv", QUOTES_HEAD, quote_rows(12))
    expect(lambda: tardis.read_quotes([a, b]), b, "row 1 (line 2)", "decreasing timestamp", "previous file's last")
    both = tardis.read_quotes([a, b], on_bad_rows="skip")
    assert both.num_rows == 10 + 3 and skipped(both) == {"decreasing timestamp": 9}


def test_skip_counts_each_rule(tmp_path: Path) -> None:
    rows = book_rows(20)
    rows = replaced(rows, 3, 6, "abc")
    rows = replaced(rows, 5, 7, "-2")
    rows = replaced(rows, 7, 5, "middle")
    rows = replaced(rows, 9, 3, ts(5))
    rows[11] = "x,Y"
    path = write(tmp_path / "book.csv.gz", BOOK_HEAD, rows)
    book = tardis.read_book(path, on_bad_rows="skip")
    stats = csvread.stats(book)
    assert stats["skipped"] == {
        "malformed row": 1,
        "non-numeric value": 1,
        "negative or NaN size": 1,
        "unknown side": 1,
        "decreasing timestamp": 1,
    }
    assert stats["rows_read"] == 20 and stats["rows_skipped"] == 5
    assert sum(len(p) for p in book.column("book_price").to_pylist()) == 15
    # the first problem in error mode is the first stage's first row: the malformed row
    expect(lambda: tardis.read_book(path), path, "row 12 (line 13)", "malformed row")


# --- file-level problems: always raise -------------------------------------------------------------------

MODES = pytest.mark.parametrize("mode", ["error", "skip"])


@MODES
def test_truncated_gzip(tmp_path: Path, mode: str) -> None:
    full = gzip.compress(("\n".join([BOOK_HEAD, *book_rows(50_000)]) + "\n").encode())
    path = tmp_path / "book.csv.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError) as info:
        tardis.read_book(path, on_bad_rows=mode)
    found = re.fullmatch(
        rf"{re.escape(str(path))}: line (\d+): truncated file: .*\(data row (\d+)\).*", str(info.value)
    )
    assert found, str(info.value)
    line, row = int(found.group(1)), int(found.group(2))
    assert 1000 < line < 50_000 and row == line - 1
    head = tmp_path / "head.csv.gz"
    head.write_bytes(full[:20])
    expect(lambda: tardis.read_book(head, on_bad_rows=mode), head, "line 1", "truncated file", "the header")


@MODES
def test_missing_column_and_wrong_file_type(tmp_path: Path, mode: str) -> None:
    missing = write(tmp_path / "book.csv", BOOK_HEAD.replace(",amount", ""), [r.rsplit(",", 1)[0] for r in book_rows()])
    expect(
        lambda: tardis.read_book(missing, on_bad_rows=mode),
        missing,
        "line 1 (the header)",
        "missing columns",
        r"does not look like a tardis incremental_book_L2 file: missing columns \['amount'\]; it has \['exchange'",
    )
    trades = write(tmp_path / "trades.csv", TRADES_HEAD, trade_rows())
    expect(
        lambda: tardis.read_book(trades, on_bad_rows=mode),
        trades,
        "line 1 (the header)",
        "missing columns",
        r"does not look like a tardis incremental_book_L2 file: missing columns \['is_snapshot'\]; it has .*'id'",
    )
    book = write(tmp_path / "book2.csv", BOOK_HEAD, book_rows())
    expect(lambda: tardis.read_quotes(book, on_bad_rows=mode), book, "line 1 (the header)", "missing columns")
    expect(lambda: tardis.read_trades(book, on_bad_rows=mode), book, "line 1 (the header)", "missing columns", "'id'")
    expect(lambda: tardis.read_snapshots(book, on_bad_rows=mode), book, "line 1 (the header)", "missing columns")
    expect(lambda: binance.read_trades(trades, on_bad_rows=mode), trades, "line 1 (the header)", "missing columns")


@MODES
def test_empty_file(tmp_path: Path, mode: str) -> None:
    for name in ("empty.csv", "empty.csv.gz"):
        path = write(tmp_path / name, None, []) if name.endswith("gz") else tmp_path / name
        if not name.endswith("gz"):
            path.write_bytes(b"")
        expect(lambda path=path: tardis.read_trades(path, on_bad_rows=mode), path, "line 1", "empty file")
        expect(lambda path=path: binance.read_trades(path, on_bad_rows=mode), path, "line 1", "empty file")
    # a header without rows is a valid file with no events
    assert tardis.read_trades(write(tmp_path / "head.csv", TRADES_HEAD, []), on_bad_rows=mode).num_rows == 0


@MODES
def test_unreadable_archives(tmp_path: Path, mode: str) -> None:
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.csv", "1,2\n")
        zf.writestr("b.csv", "1,2\n")
    expect(lambda: binance.read_trades(two, on_bad_rows=mode), two, "whole file", "unreadable file", "one CSV member")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    expect(lambda: binance.read_trades(broken, on_bad_rows=mode), broken, "whole file", "unreadable file")
    absent = tmp_path / "absent.csv"
    expect(lambda: tardis.read_trades(absent, on_bad_rows=mode), absent, "whole file", "unreadable file")


def test_bad_options() -> None:
    with pytest.raises(HarnessError, match="on_bad_rows must be 'error' or 'skip', got 'ignore'"):
        tardis.read_trades("nowhere.csv", on_bad_rows="ignore")
    with pytest.raises(HarnessError, match="on_bad_rows must be"):
        binance.binance(trades="nowhere.csv", on_bad_rows="warn")
    with pytest.raises(HarnessError, match="on_bad_rows must be"):
        tardis.tardis(trades="nowhere.csv", on_bad_rows=None)  # type: ignore[arg-type]
    with pytest.raises(HarnessError, match="empty list"):
        tardis.read_trades([])
