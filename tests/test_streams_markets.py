"""Market-tagged streams: readers' `market=`, `schema.tag`, and `hs.streams.merge` of several named markets
(the merge tie-break across markets, the columns and triggers of each market, errors naming the market)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import SHARED_DATA, real_data_missing
from hypothesis import given, settings
from hypothesis import strategies as st

import harness as hs
from harness.errors import EventsError, HarnessError
from harness.streams import csvread, schema

REAL = SHARED_DATA
NAUTILUS = REAL / "nautilus_trader" / "tardis"
TRADES_2020 = NAUTILUS / "binance-futures_trades_2020-02-22_BTCUSDT.csv"
QUOTES_2020 = NAUTILUS / "binance-futures_quotes_2020-02-22_BTCUSDT.csv"
VISION = REAL / "derived" / "binance-futures_2024-08-08" / "binance_vision_format"
VISION_TRADES = VISION / "BTCUSDT-trades-2024-08-08.zip"


def assert_tagged_like(tagged: pa.Table, plain: pa.Table, market: str) -> None:
    """`tagged` holds exactly `plain`'s rows under `market.` names."""
    assert tagged.num_rows == plain.num_rows
    assert tagged.column_names == ["t", "trigger", *(f"{market}.{n}" for n in plain.column_names[2:])]
    assert tagged.column("t").equals(plain.column("t"))
    want = [f"{market}.{k}" for k in plain.column("trigger").cast(pa.string()).to_pylist()]
    assert tagged.column("trigger").cast(pa.string()).to_pylist() == want
    for name in plain.column_names[2:]:
        assert tagged.column(f"{market}.{name}").equals(plain.column(name)), name


def test_synthetic_with_a_market_name_renames_triggers_and_columns_only() -> None:
    plain = hs.streams.synthetic(3000, seed=3)
    perp = hs.streams.synthetic(3000, seed=3, market="perp")
    assert_tagged_like(perp, plain, "perp")
    assert perp.schema.remove_metadata().equals(schema.market_schema(["perp"]))
    assert perp.column("trigger").chunk(0).dictionary.to_pylist() == ["perp.book", "perp.trade", "perp.quote"]
    batches = list(hs.streams.synthetic_batches(3000, seed=3, chunk=700, market="perp"))
    assert len(batches) == 5
    assert pa.Table.from_batches(batches).equals(perp)


def test_without_a_market_name_streams_are_unchanged() -> None:
    plain = hs.streams.synthetic(2000, seed=4)
    assert plain.schema.equals(schema.SCHEMA)
    assert hs.streams.merge(plain).equals(plain)
    assert hs.streams.synthetic(2000, seed=4, market=None).equals(plain)


@pytest.mark.skipif(not NAUTILUS.is_dir(), reason=real_data_missing(NAUTILUS))
def test_tardis_with_a_market_name_keeps_rows_and_read_stats() -> None:
    plain = hs.streams.tardis(trades=TRADES_2020, quotes=QUOTES_2020)
    spot = hs.streams.tardis(trades=TRADES_2020, quotes=QUOTES_2020, market="spot")
    assert_tagged_like(spot, plain, "spot")
    assert csvread.stats(spot) == csvread.stats(plain) and csvread.stats(spot)


@pytest.mark.skipif(not VISION_TRADES.exists(), reason=real_data_missing(VISION_TRADES))
def test_binance_and_parquet_with_a_market_name(tmp_path: Path) -> None:
    plain = hs.streams.binance(trades=VISION_TRADES)
    assert_tagged_like(hs.streams.binance(trades=VISION_TRADES, market="perp"), plain, "perp")
    path = hs.streams.write_parquet(plain, tmp_path / "perp.parquet")
    assert_tagged_like(hs.streams.read_parquet(path, market="fut"), hs.streams.read_parquet(path), "fut")


def test_merge_of_two_markets_interleaves_by_time_then_kind_then_argument() -> None:
    perp = hs.streams.synthetic(4000, seed=1, market="perp")
    spot = hs.streams.synthetic(3000, seed=2, market="spot", message_gap_ms=100.0)
    both = hs.streams.merge(perp, spot)
    assert both.num_rows == perp.num_rows + spot.num_rows
    assert both.column_names == schema.market_schema(["perp", "spot"]).names
    trig = both.column("trigger").combine_chunks()
    assert trig.dictionary.to_pylist() == [f"{m}.{k}" for m in ("perp", "spot") for k in ("book", "trade", "quote")]
    names = trig.cast(pa.string()).to_numpy(zero_copy_only=False)
    t = both.column("t").to_numpy()
    assert (np.diff(t) >= 0).all()
    for market, table in (("perp", perp), ("spot", spot)):
        mine = np.char.startswith(names.astype(str), f"{market}.")
        sub = both.filter(pa.array(mine))
        # each market's rows keep their order and values; the other market's columns are null there
        for name in table.column_names[2:]:
            assert sub.column(name).combine_chunks().equals(table.column(name).combine_chunks()), name
        other = "spot" if market == "perp" else "perp"
        assert sub.column(f"{other}.trade_price").null_count == sub.num_rows


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 5), st.sampled_from(schema.KINDS)), max_size=20), min_size=1, max_size=4
    ),
    st.booleans(),
)
def test_merge_of_named_markets_orders_rows_as_the_merge_of_unnamed_ones(
    spec: list[list[tuple[int, str]]], strings: bool
) -> None:
    """The tie-break is the one of unnamed streams: (t, book < quote < trade, argument, row)."""
    plain, named = [], []
    for k, rows in enumerate(spec):
        rows = sorted(rows, key=lambda r: r[0])
        t = pa.array([r[0] for r in rows], pa.int64())
        price = pa.array([k * 100.0 + i for i in range(len(rows))], pa.float64())
        trig = pa.array([r[1] for r in rows], pa.string())
        table = schema.conform(pa.table({"t": t, "trigger": trig, "trade_price": price}))
        plain.append(table)
        tagged = schema.tag(table, f"m{k}")
        if strings:
            tagged = tagged.set_column(1, "trigger", tagged.column("trigger").cast(pa.string()))
        named.append(tagged)
    a, b = hs.streams.merge(*plain), hs.streams.merge(*named)
    assert a.column("t").equals(b.column("t"))
    kinds = [schema.split(n)[1] for n in b.column("trigger").cast(pa.string()).to_pylist()]
    assert kinds == a.column("trigger").cast(pa.string()).to_pylist()
    got = np.nansum([b.column(f"m{k}.trade_price").to_numpy(zero_copy_only=False) for k in range(len(spec))], axis=0)
    np.testing.assert_array_equal(got, a.column("trade_price").to_numpy(zero_copy_only=False))


def test_merge_keeps_a_stream_without_a_name_beside_named_ones() -> None:
    plain = hs.streams.synthetic(500, seed=1)
    spot = hs.streams.synthetic(500, seed=2, market="spot")
    both = hs.streams.merge(plain, spot)
    assert both.column_names == schema.market_schema([None, "spot"]).names
    assert set(both.column("trigger").cast(pa.string()).to_pylist()) <= {
        "book", "trade", "quote", "spot.book", "spot.trade", "spot.quote"
    }  # fmt: skip


def test_two_streams_with_the_same_market_name_are_an_error() -> None:
    a = hs.streams.synthetic(100, seed=1, market="perp")
    b = hs.streams.synthetic(100, seed=2, market="perp")
    with pytest.raises(EventsError, match=r"market 'perp' is in argument 0 and in argument 1"):
        hs.streams.merge(a, b)
    c = hs.streams.merge(a, hs.streams.synthetic(100, seed=3, market="spot"))
    with pytest.raises(EventsError, match=r"market 'spot' is in argument 0 and in argument 1"):
        hs.streams.merge(c, hs.streams.synthetic(100, seed=3, market="spot"))


@pytest.mark.parametrize("bad", ["perp.x", "1perp", "", "a b", 3])
def test_a_market_name_must_be_an_identifier(bad: object) -> None:
    with pytest.raises(HarnessError, match="market name"):
        hs.streams.synthetic(10, market=bad)


def test_a_stream_is_tagged_once_and_unknown_triggers_of_a_market_are_named() -> None:
    perp = hs.streams.synthetic(50, seed=1, market="perp")
    with pytest.raises(EventsError, match="already tagged with market"):
        schema.tag(perp, "spot")
    bad = perp.set_column(1, "trigger", pa.array(["perp.book"] * 49 + ["perp.fill"]))
    with pytest.raises(EventsError, match=r"argument 1: trigger: row 49 has trigger 'perp.fill'"):
        hs.streams.merge(hs.streams.synthetic(50, seed=1, market="spot"), bad)


def test_a_catalog_read_of_several_markets_under_their_names_is_their_merge(tmp_path: Path) -> None:
    a = hs.streams.synthetic(5_000, seed=1)
    b = hs.streams.synthetic(4_000, seed=2, message_gap_ms=80.0)
    hs.data.import_table(tmp_path, a, market="perp")
    hs.data.import_table(tmp_path, b, market="spot")
    batches = list(hs.data.read(tmp_path, ["perp", "spot"], named=True, batch_size=1_000))
    assert max(x.num_rows for x in batches) <= 1_000
    got = pa.Table.from_batches(batches)
    want = hs.streams.merge(schema.tag(a, "perp"), schema.tag(b, "spot"))
    assert got.column_names == want.column_names == schema.market_schema(["perp", "spot"]).names
    assert hs.streams.digest(got) == hs.streams.digest(want)
    one = pa.Table.from_batches(list(hs.data.read(tmp_path, "spot", named=True)))
    assert hs.streams.digest(one) == hs.streams.digest(schema.tag(b, "spot"))
