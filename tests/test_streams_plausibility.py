"""Data that cannot lie: every reader checks each value against the plausibility rules (harness.streams.rules)
and every decode problem is a DataError naming the file, the row or line, the value and the rule; a rule is
relaxed per stream only on request, never silently; no input makes the reader's memory grow without bound."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest

import harness as hs
from harness.errors import DataError, HarnessError
from harness.streams import binance_dump as binance
from harness.streams import cache, csvread
from harness.streams import tardis_csv as tardis
from harness.streams.rules import Rules, RulesRelaxed

BOOK_HEAD = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
TRADES_HEAD = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
QUOTES_HEAD = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount"
T = 1_723_161_255_000_000  # 2024-08-08 in tardis microseconds
MS = T // 1000  # the same in Binance milliseconds


def trades_file(path: Path, rows: list[str] | None = None, head: str = TRADES_HEAD) -> Path:
    rows = rows if rows is not None else trade_rows()
    text = "\n".join([head, *rows]) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())
    return path


def trade_rows(n: int = 10, price: str = "{p}", amount: str = "0.5", side: str = "{s}", t: str = "{t}") -> list[str]:
    out = []
    for i in range(n):
        p, s, ti = f"{60000 + i}.5", "buy" if i % 2 else "sell", str(T + i)
        row = f"binance-futures,BTCUSDT,{t},{t},{i},{side},{price},{amount}"
        out.append(row.format(p=p, s=s, t=ti))
    return out


def with_field(rows: list[str], i: int, field: int, value: str) -> list[str]:
    out = list(rows)
    fields = out[i].split(",")
    fields[field] = value
    out[i] = ",".join(fields)
    return out


def fails(call, path: Path, where: str, rule: str, *details: str) -> str:  # type: ignore[no-untyped-def]
    """`call` raises a DataError naming the file, the row/line, the rule and each detail (the value)."""
    with pytest.raises(DataError) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(f"{path}: {where}" + (f": {rule}: " if rule else "")), msg
    for detail in details:
        assert detail in msg, msg
    assert len(msg) < 1200, msg  # readable, whatever the garbage was
    return msg


# --- timestamps: range-checked before any unit conversion --------------------------------------------------


def test_a_tardis_timestamp_beyond_2262_is_an_error_not_a_wrap(tmp_path: Path) -> None:
    far = 9_300_000_000_000_000  # microseconds: year 2264, beyond int64 nanoseconds (the old reader wrapped to 1702)
    rows = with_field(trade_rows(), 4, 3, str(far))
    path = trades_file(tmp_path / "trades.csv.gz", rows)
    fails(
        lambda: hs.streams.tardis(trades=path),
        path,
        "row 5 (line 6)",
        "implausible timestamp",
        f"'local_timestamp' holds {far} (microseconds: beyond int64 nanoseconds",
        "min_time, max_time",
    )
    # no relaxation can make it fit: the widest max_time is the int64 limit
    with pytest.warns(RulesRelaxed, match="max_time"):
        widest = {"max_time": "2262-04-11"}
        fails(lambda: tardis.read_trades(path, rules=widest), path, "row 5 (line 6)", "implausible timestamp")
    with pytest.raises(HarnessError, match="outside int64 nanoseconds|within int64"):
        Rules(max_time="2300-01-01")
    # the exchange timestamp too, on either clock
    rows = with_field(trade_rows(), 2, 2, str(far))
    path = trades_file(tmp_path / "exchange.csv", rows)
    fails(
        lambda: tardis.read_trades(path, clock="local"), path, "row 3 (line 4)", "implausible timestamp", "'timestamp'"
    )


def test_a_binance_time_that_would_overflow_in_ns_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    ms = 9_300_000_000_000  # milliseconds: * 1e6 overflows int64
    path.write_text(f"1,100.5,0.1,10.05,{MS},false\n2,100.5,0.1,10.05,{ms},true\n")
    fails(
        lambda: binance.read_trades(path), path, "row 2 (line 2)", "implausible timestamp", f"holds {ms} (milliseconds"
    )
    spot = tmp_path / "spot.csv"  # microsecond files are checked in microseconds
    spot.write_text(f"1,100.5,0.25,25.125,{T},true,true\n2,100.5,0.25,25.125,-{T},true,true\n")
    fails(lambda: binance.read_trades(spot), spot, "row 2 (line 2)", "implausible timestamp", "(microseconds")


@pytest.mark.parametrize("value", ["-5", "0", str(631_152_000_000_000)])  # negative, 1970, 1990
def test_timestamps_before_2000_need_a_relaxed_rule(tmp_path: Path, value: str) -> None:
    path = trades_file(tmp_path / "trades.csv", with_field(trade_rows(), 0, 2, value))
    fails(lambda: tardis.read_trades(path), path, "row 1 (line 2)", "implausible timestamp", f"holds {value} ")
    assert tardis.read_trades(path, on_bad_rows="skip").num_rows == 9
    if value.startswith("6"):  # 1990 is fine once min_time allows it: loudly
        with pytest.warns(RulesRelaxed, match=r"min_time='1980-01-01' \(default '2000-01-01'\)"):
            table = tardis.read_trades(path, rules={"min_time": "1980-01-01"})
        assert table.num_rows == 10
        assert csvread.stats(table)["relaxed"] == {"min_time": "1980-01-01"}


# --- prices, sizes, sides ----------------------------------------------------------------------------------


@pytest.mark.parametrize("price", ["0", "-3.5", "1e308", "1e12"])
def test_implausible_prices(tmp_path: Path, price: str) -> None:
    path = trades_file(tmp_path / "trades.csv", with_field(trade_rows(), 3, 6, price))
    value = repr(float(price))
    fails(lambda: tardis.read_trades(path), path, "row 4 (line 5)", "implausible price", f"'price' holds {value}")
    quotes = tmp_path / "quotes.csv"
    rows = [f"x,Y,{T + i},{T + i},1.5,{60001 + i},{60000 + i},2.5" for i in range(5)]
    trades_file(quotes, with_field(rows, 2, 6, price), head=QUOTES_HEAD)
    fails(lambda: tardis.read_quotes(quotes), quotes, "row 3 (line 4)", "implausible price", "'bid_price'")
    book = tmp_path / "book.csv"
    rows = [f"x,Y,{T + i},{T + i},false,bid,{60000 + i},1" for i in range(5)]
    trades_file(book, with_field(rows, 1, 6, price), head=BOOK_HEAD)
    fails(lambda: tardis.read_book(book), book, "row 2 (line 3)", "implausible price", value)
    bn = tmp_path / "bn.csv"
    bn.write_text(f"1,100.5,0.1,10.05,{MS},false\n2,{price},0.1,10.05,{MS + 1},true\n")
    fails(lambda: binance.read_trades(bn), bn, "row 2 (line 2)", "implausible price", value)
    # relaxed per stream: negative prices (spreads) or no upper bound
    relaxed = {"min_price": -float("inf"), "max_price": float("inf"), "max_price_jump": float("inf")}
    with pytest.warns(RulesRelaxed):
        assert tardis.read_trades(path, rules=relaxed).num_rows == 10


@pytest.mark.parametrize("amount", ["1e308", "1e12", "2.5e13"])
def test_implausible_amounts(tmp_path: Path, amount: str) -> None:
    path = trades_file(tmp_path / "trades.csv", with_field(trade_rows(), 5, 7, amount))
    value = repr(float(amount))
    fails(lambda: tardis.read_trades(path), path, "row 6 (line 7)", "implausible size", value, "max_amount")
    assert csvread.stats(tardis.read_trades(path, on_bad_rows="skip"))["skipped"] == {"implausible size": 1}
    book = tmp_path / "book.csv"
    rows = [f"x,Y,{T + i},{T + i},false,ask,{60000 + i},1" for i in range(5)]
    trades_file(book, with_field(rows, 4, 7, amount), head=BOOK_HEAD)
    fails(lambda: tardis.read_book(book), book, "row 5 (line 6)", "implausible size", value)
    agg = tmp_path / "agg.csv"
    agg.write_text(f"1,100.5,{amount},1,1,{MS},false\n")
    fails(lambda: binance.read_agg_trades(agg), agg, "row 1 (line 1)", "implausible size", value)
    with pytest.warns(RulesRelaxed, match="max_amount"):
        assert tardis.read_trades(path, rules={"max_amount": float("inf")}).num_rows == 10


def test_a_garbage_trade_side_is_an_error_not_zero(tmp_path: Path) -> None:
    path = trades_file(tmp_path / "trades.csv", with_field(trade_rows(), 6, 5, "bought"))
    fails(lambda: tardis.read_trades(path), path, "row 7 (line 8)", "unknown side", "side 'bought' is not one of")
    skipped = tardis.read_trades(path, on_bad_rows="skip")
    assert csvread.stats(skipped)["skipped"] == {"unknown side": 1} and skipped.num_rows == 9
    fine = trades_file(tmp_path / "fine.csv", with_field(with_field(trade_rows(), 1, 5, "unknown"), 2, 5, ""))
    assert tardis.read_trades(fine).column("trade_side").to_pylist()[:3] == [-1.0, 0.0, 0.0]


# --- swapped columns: the header names the columns, and prices do not jump -----------------------------------


def test_swapped_price_and_amount_columns(tmp_path: Path) -> None:
    swapped_head = TRADES_HEAD.replace("price,amount", "amount,price")
    path = trades_file(tmp_path / "trades.csv", head=swapped_head)
    fails(
        lambda: tardis.read_trades(path),
        path,
        "line 1 (the header)",
        "unexpected header",
        "'amount', 'price']",
        "header='names'",
    )
    # read by name when asked to: the columns are then what the header says
    with pytest.warns(RulesRelaxed, match="header='names'"):
        by_name = tardis.read_trades(path, rules={"header": "names", "max_price_jump": float("inf")})
    assert by_name.column("trade_price").to_pylist()[0] == 0.5
    book = trades_file(tmp_path / "book.csv", [], head=BOOK_HEAD.replace("price,amount", "amount,price"))
    fails(lambda: tardis.read_book(book), book, "line 1 (the header)", "unexpected header")
    # values swapped under a correct header: the "prices" jump by orders of magnitude at once
    rows = [f"x,Y,{T + i},{T + i},{i},buy,{size},{60000 + i}" for i, size in enumerate([0.002, 0.5, 0.016, 1.2, 0.04])]
    swapped = trades_file(tmp_path / "swapped.csv", rows)
    fails(
        lambda: tardis.read_trades(swapped),
        swapped,
        "row 2 (line 3)",
        "implausible price jump",
        "holds 0.5 after 0.002",
        "swapped price and amount columns?",
    )
    bn = tmp_path / "bn.csv"
    bn.write_text("".join(f"{i},{size},60000.5,1.0,{MS + i},false\n" for i, size in enumerate([0.01, 0.4, 0.002])))
    fails(lambda: binance.read_trades(bn), bn, "row 2 (line 2)", "implausible price jump", "'price' holds 0.4")


def test_a_binance_header_must_be_the_dump_types_columns(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(f"id,qty,price,quote_qty,time,is_buyer_maker\n1,0.1,100.5,10.05,{MS},false\n")
    fails(lambda: binance.read_trades(path), path, "line 1 (the header)", "unexpected header", "'qty', 'price'")
    with pytest.warns(RulesRelaxed):
        trades = binance.read_trades(path, rules={"header": "names"})
    assert trades.column("trade_price").to_pylist() == [100.5]


# --- decode errors are DataErrors naming the file --------------------------------------------------------


def test_invalid_utf8(tmp_path: Path) -> None:
    rows = [r.encode() for r in trade_rows()]
    rows[4] = rows[4].replace(b",sell,", b",s\xffell,")
    path = tmp_path / "trades.csv"
    path.write_bytes(b"\n".join([TRADES_HEAD.encode(), *rows]) + b"\n")
    fails(lambda: tardis.read_trades(path), path, "row 5 (line 6)", "not UTF-8 text", r"'side' holds b's\xffell'")
    skipped = tardis.read_trades(path, on_bad_rows="skip")
    assert csvread.stats(skipped)["skipped"] == {"not UTF-8 text": 1} and skipped.num_rows == 9
    head = tmp_path / "head.csv"
    head.write_bytes(b"exch\xe9nge,symbol\n1,2\n")
    fails(lambda: tardis.read_trades(head), head, "line 1", "not UTF-8 text", "first line")
    # a malformed row that is not text either
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\n".join([TRADES_HEAD.encode(), *rows[:2], b"\xff\xfe,1"]) + b"\n")
    for mode in ("error", "skip"):
        fails(lambda mode=mode: tardis.read_trades(bad, on_bad_rows=mode), bad, "row 3 (line 4)", "malformed row")


def test_random_bytes_in_a_gz_and_a_nul_filled_file(tmp_path: Path) -> None:
    rng = __import__("random").Random(7)
    noise = bytes(rng.getrandbits(8) for _ in range(200_000))
    corrupt = tmp_path / "corrupt.csv.gz"
    corrupt.write_bytes(gzip.compress(TRADES_HEAD.encode() + b"\n")[:10] + noise)
    fails(lambda: tardis.read_trades(corrupt), corrupt, "line 1", "truncated file", "corrupt compressed data")
    random_text = tmp_path / "random.csv.gz"  # a valid gzip of random bytes
    random_text.write_bytes(gzip.compress(noise))
    fails(lambda: tardis.read_trades(random_text), random_text, "line 1", "not UTF-8 text")
    after_head = tmp_path / "after_head.csv.gz"  # a good header, then random bytes
    after_head.write_bytes(gzip.compress(TRADES_HEAD.encode() + b"\n" + noise))
    fails(lambda: tardis.read_trades(after_head), after_head, "row 1 (line 2)", "malformed row")
    for name, data in [("nul.csv", b"\0" * 3_000_000), ("nul_lines.csv", b"\0\0\0\n" * 100_000)]:
        path = tmp_path / name
        path.write_bytes(data)
        fails(lambda path=path: tardis.read_trades(path), path, "line 1", "")
        fails(lambda path=path: binance.read_trades(path), path, "line 1", "")
    header_then_nul = tmp_path / "head_nul.csv"
    header_then_nul.write_bytes(TRADES_HEAD.encode() + b"\n" + b"\0" * 3_000_000)
    fails(lambda: tardis.read_trades(header_then_nul), header_then_nul, "line 2", "line too long", "no line end")
    zipped = tmp_path / "random.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.csv", noise)
    fails(lambda: binance.read_trades(zipped), zipped, "line 1", "not UTF-8 text")


def test_a_file_of_malformed_lines_is_refused_even_when_skipping(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(TRADES_HEAD.encode() + b"\n" + b"x,y\n" * 50_000)
    fails(lambda: tardis.read_trades(path, on_bad_rows="skip"), path, "line 10002", "malformed row", "not a tardis")


def test_parquet_decode_errors_and_implausible_values(tmp_path: Path) -> None:
    events = hs.streams.synthetic(2000, seed=3)
    good = cache.write_parquet(events, tmp_path / "events.parquet")
    assert cache.read_parquet(good).num_rows == 2000
    damaged = tmp_path / "damaged.parquet"
    data = bytearray(good.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 200] = os.urandom(200)
    damaged.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"damaged\.parquet: "):
        cache.read_parquet(damaged)
    trades = pa.compute.equal(events.column("trigger").cast(pa.string()), "trade").to_numpy(zero_copy_only=False)
    i = int(trades.nonzero()[0][5])
    for column, value, rule in [
        ("trade_price", 1e308, "implausible price"),
        ("trade_amount", -1.0, "negative or NaN size"),
        ("t", 9_000_000_000_000_000_000, "implausible timestamp"),
    ]:
        col = events.column(column).to_numpy(zero_copy_only=False).copy()
        col[i] = value
        if column == "t":
            col[i:] = value  # still in time order
        nulls = events.column(column).is_null().to_numpy(zero_copy_only=False)
        bad = events.set_column(events.schema.get_field_index(column), column, pa.array(col, mask=nulls))
        path = cache.write_parquet(bad, tmp_path / f"{column}.parquet")
        fails(lambda path=path: cache.read_parquet(path), path, f"row {i + 1}", rule, repr(value))
    book = events.column("book_amount").to_pylist()
    j = next(k for k, levels in enumerate(book) if levels and len(levels) > 2)
    book[j][2] = float("inf")
    bad = events.set_column(events.schema.get_field_index("book_amount"), "book_amount", pa.array(book))
    path = cache.write_parquet(bad, tmp_path / "book.parquet")
    fails(lambda: cache.read_parquet(path), path, f"row {j + 1}", "negative or NaN size", "level 2 of the message")


def test_bad_rules_are_config_errors() -> None:
    with pytest.raises(HarnessError, match=r"unknown rule\(s\) \['max_amont'\]"):
        Rules.of({"max_amont": 1})
    with pytest.raises(HarnessError, match="rules.max_amount='lots' must be a number"):
        Rules.of({"max_amount": "lots"})
    with pytest.raises(HarnessError, match="rules.min_time='yesterday' is not an ISO 8601"):
        Rules.of({"min_time": "yesterday"})
    with pytest.raises(HarnessError, match="rules.header='loose' must be one of"):
        Rules.of({"header": "loose"})
    with pytest.raises(HarnessError, match="must be before"):
        Rules.of({"min_time": "2100-01-01", "max_time": "2000-01-01"})
    assert Rules.of({"max_amount": "1e15"}).max_amount == 1e15 and Rules.of(None) == Rules()


def test_the_real_samples_pass_every_rule_by_default() -> None:
    from conftest import SHARED_DATA, real_data_missing

    day = SHARED_DATA / "derived" / "binance-futures_2024-08-08"
    if not day.exists():
        pytest.skip(real_data_missing(day))
    files = sorted(day.glob("*.csv.gz"))
    readers = {"incremental_book_L2": tardis.read_book, "trades": tardis.read_trades, "snapshot": tardis.read_snapshots}
    for path in files:
        read = next((r for k, r in readers.items() if k in path.name), tardis.read_quotes)
        assert read(path).num_rows > 0, path
        assert csvread.stats(read(path, on_bad_rows="skip"))["rows_skipped"] == 0, path
    for path in sorted((day / "binance_vision_format").glob("*.zip")):
        read = binance.read_trades if "trades" in path.name else binance.read_book_ticker
        assert read(path).num_rows > 0


# --- read in pieces: rows located across blocks, no pyarrow thread calls Python -----------------------------


def big_trades(path: Path, rows: list[bytes], end: bytes = b"\n") -> Path:
    """A trades file (plain, gzip or a one-member zip, by name) of `rows` as bytes, lines ended by `end`."""
    text = end.join([TRADES_HEAD.encode(), *rows]) + end
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("trades.csv", text)
    else:
        path.write_bytes(gzip.compress(text, 1) if path.suffix == ".gz" else text)
    return path


@pytest.mark.parametrize("name", ["trades.csv", "trades.csv.gz", "trades.zip"])
def test_rows_are_located_across_blocks_on_the_reading_thread(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()  # where the invalid_row_handler ran: the reading thread only, never a pyarrow one
    handler = csvread._Lines.__call__

    def recorded(self, row):  # type: ignore[no-untyped-def]
        threads.add(threading.get_ident())
        return handler(self, row)

    monkeypatch.setattr(csvread._Lines, "__call__", recorded)
    n = 60_000  # ~4.5 MB of text: five blocks
    rows = [r.encode() for r in trade_rows(n)]
    bad = {7, 20_000, 33_333, n - 1}  # 0-based: malformed rows in the first, middle and last blocks
    for i in bad:
        rows[i] = b"x,y"
    rows[40_000] = b""  # a blank line is a malformed row too
    columns = {"timestamp": pa.int64(), "side": pa.string()}
    for end in (b"\n", b"\r\n"):
        path = big_trades(tmp_path / name, rows, end)
        table, st, _ = csvread.read_csv(path, kind="tardis trades", columns=columns, on_bad_rows="skip")
        kept = [i for i in range(n) if i not in bad and i != 40_000]
        assert table.column(csvread.ROW).to_pylist() == [i + 1 for i in kept]
        assert table.column("timestamp").to_pylist() == [T + i for i in kept]
        assert st.skipped == {"malformed row": 5} and st.rows_read == n
        fails(
            lambda path=path: csvread.read_csv(path, kind="tardis trades", columns=columns),
            path,
            "row 8 (line 9)",
            "malformed row",
            "expected 8 fields, found 2: 'x,y'",
        )
    assert threads == {threading.get_ident()}
    # value errors, undecodable malformed rows and long lines in a later block name their row and line
    good = [r.encode() for r in trade_rows(n)]
    for i, row, where, rule in [
        (50_001, good[50_001].replace(b",buy,", b",b\xffy,"), "row 50002 (line 50003)", "not UTF-8 text"),
        (50_002, with_field(trade_rows(3), 2, 2, "12x")[2].encode(), "row 50003 (line 50004)", "non-numeric value"),
        (50_003, b"\xff\xfe,1", "row 50004 (line 50005)", "malformed row"),
        (50_004, b"1" * (csvread.BLOCK_SIZE + 10), "line 50006", "line too long"),
    ]:
        path = big_trades(tmp_path / name, [*good[:i], row, *good[i + 1 :]])
        fails(lambda path=path: csvread.read_csv(path, kind="tardis trades", columns=columns), path, where, rule)


@pytest.mark.parametrize("end", [b"\r", b"\r\n", b""])
def test_line_ends_as_pyarrow_reads_them(tmp_path: Path, end: bytes) -> None:
    rows = trade_rows(5)
    text = end.join(r.encode() for r in [TRADES_HEAD, *rows]) if end else "\n".join([TRADES_HEAD, *rows]).encode()
    path = tmp_path / "trades.csv"  # lone CRs, CRLFs, or no line end after the last row
    path.write_bytes(text)
    table, _, _ = csvread.read_csv(path, kind="tardis trades", columns={"timestamp": pa.int64()})
    assert table.column("timestamp").to_pylist() == [T + i for i in range(5)]
    assert table.column(csvread.ROW).to_pylist() == [1, 2, 3, 4, 5]
    path.write_bytes(TRADES_HEAD.encode() + end)  # a header alone
    assert csvread.read_csv(path, kind="tardis trades", columns={"timestamp": pa.int64()})[0].num_rows == 0


# --- compression bombs: bounded memory under an address-space limit ----------------------------------------

BOMB_CHILD = textwrap.dedent(
    """
    import resource, sys, warnings
    from harness.errors import DataError
    from harness.streams import tardis_csv
    size = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize")) * 1024
    limit = size + (1 << 30)  # what the process holds now + 1 GiB: far less than the 4 GiB the bomb inflates to
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    rules = {"max_ratio": float(sys.argv[2])} if len(sys.argv) > 2 else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tardis_csv.read_trades(sys.argv[1], rules=rules)
    except DataError as e:
        print(e)
        sys.exit(0)
    print("no error")
    sys.exit(1)
    """
)


def bomb(path: Path, unit: bytes, gib: int = 4) -> Path:
    """A valid multi-member gzip that inflates to `gib` GiB of `unit` repeated, after a tardis trades header."""
    member = gzip.compress(unit * ((1 << 20) // len(unit)), 9)
    with open(path, "wb") as f:
        f.write(gzip.compress(TRADES_HEAD.encode() + b"\n"))
        for _ in range(gib << 10):
            f.write(member)
    return path


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the address-space limit is read and set through /proc (Linux)")
@pytest.mark.parametrize(
    "unit,ratio,expected",
    [
        (b"binance-futures,BTCUSDT,1723161255000000,1723161255000000,1,buy,60000.5,0.5\n", None, "compression ratio"),
        (b"\0", None, "line too long"),  # no line end: the parser holds one block, not the line
        (b"\0", "inf", "line too long"),  # with the ratio rule off, the block bound still holds
        (b"\0\n", "inf", "malformed row"),
        (b"\n", "inf", "malformed row"),  # blank lines are rows too (without fields)
    ],
)
def test_a_gzip_bomb_stops_within_bounded_memory(tmp_path: Path, unit: bytes, ratio: str | None, expected: str) -> None:
    path = bomb(tmp_path / "bomb.csv.gz", unit)
    assert path.stat().st_size < 40 << 20
    args = [sys.executable, "-c", BOMB_CHILD, str(path), *([ratio] if ratio else [])]
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert res.stdout.startswith(f"{path}: ") and f": {expected}: " in res.stdout, res.stdout
