"""The market-data catalog (issue 17, item 1): import real and synthetic days, exact round trips, stable digests,
idempotent re-imports, interrupted imports that leave nothing visible, bounded streaming reads, stream=catalog."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, SHARED_DATA, real_data_missing
from filelock import FileLock
from mlflow.tracking import MlflowClient

import harness.data as data
from harness import streams
from harness.cli import main as harness_main
from harness.data_cli import main as data_main
from harness.errors import DataError, HarnessError
from harness.pipeline import loaders
from harness.pipeline.targets import ConfigError
from harness.streams import catalog

SAMPLE = SHARED_DATA / "derived" / "binance-futures_2024-08-08"
BOOK = SAMPLE / "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz"
TRADES = SAMPLE / "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz"
VISION = sorted((SAMPLE / "binance_vision_format").glob("*.zip"))
DAYS = ["2024-08-08", "2024-08-09", "2024-08-10"]


def real_sample() -> None:
    if not BOOK.exists() or not TRADES.exists():
        pytest.skip(real_data_missing(SAMPLE))


def synthetic_days(events: int = 30_000, seed: int = 1) -> pa.Table:
    """Synthetic events (from 23:54 on 2024-08-08) stretched in time to 1.6 days: three UTC days, as in `DAYS`."""
    table = streams.synthetic(events, seed=seed)
    t0 = table.column("t")[0].as_py()
    stretch = int(1.6 * catalog.DAY_NS) // (table.column("t")[-1].as_py() - t0)
    for name in ("t", "t_local", "t_exchange"):
        values = table.column(name).to_numpy()
        stretched = t0 + (values - t0) * stretch
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(stretched, pa.int64()))
    return table


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under the catalog (the lock file aside) with its modification time and bytes."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != catalog.LOCK
    }


def visible_rows(root: Path) -> int:
    """The rows a plain `pyarrow.dataset` directory scan sees (hidden `.tmp/` and dot files excluded)."""
    return ds.dataset(root, format="parquet", partitioning="hive", exclude_invalid_files=True).count_rows()


def manifest_rows(root: Path) -> int:
    return sum(p.rows for p in data.partitions(root))


# ----- names ----------------------------------------------------------------------------------------------------
def test_file_names_say_reader_role_and_market() -> None:
    assert catalog.detect(BOOK) == catalog.Kind("tardis", "book", "binance_futures_BTCUSDT")
    assert catalog.detect("deribit_quotes_2024-01-01_BTC-PERPETUAL.csv.gz").market == "deribit_BTC_PERPETUAL"
    assert catalog.detect("x_book_snapshot_25_2024-01-01_ETHUSDT.csv").role == "snapshots"
    assert catalog.detect("BTCUSDT-bookTicker-2024-08-08.zip") == catalog.Kind(
        "binance", "book_ticker", "binance_BTCUSDT"
    )
    assert catalog.detect("mine.csv", "binance", "agg_trades") == catalog.Kind("binance", "agg_trades", "default")
    with pytest.raises(HarnessError, match="cannot tell the reader and role"):
        catalog.detect("mine.csv")
    with pytest.raises(HarnessError, match="not a tardis role"):
        catalog.detect("mine.csv", "tardis", "agg_trades")
    with pytest.raises(HarnessError, match="plain identifier"):
        catalog.check_market("btc/usdt")


# ----- the real sample ------------------------------------------------------------------------------------------
def test_real_sample_round_trips_exactly_and_reimport_is_a_no_op(tmp_path: Path) -> None:
    real_sample()
    root = tmp_path / "catalog"
    done = data.import_files(root, [BOOK, TRADES])
    market = "binance_futures_BTCUSDT"
    assert [m for _, m, _ in done.imported] == [market, market] and done.dates == [(market, "2024-08-08")]
    expected = streams.tardis(book=BOOK, trades=TRADES)  # the readers' table of the same files
    back = data.read_table(root)
    assert streams.digest(back) == streams.digest(expected)  # the book's list columns included
    assert back.column("book_price").equals(expected.column("book_price"))
    assert back.schema.equals(streams.schema.SCHEMA)
    (part,) = data.partitions(root)
    assert (part.rows, part.t_first, part.t_last) == (
        expected.num_rows, expected.column("t")[0].as_py(), expected.column("t")[-1].as_py()
    )  # fmt: skip
    assert part.digest == streams.digest(expected)
    entry = json.loads((root / catalog.MANIFEST).read_text())["markets"][market]["partitions"]["2024-08-08"]
    assert [(s["role"], s["sha256"]) for s in entry["sources"]] == [
        ("book", streams.content_digest.file_sha256(BOOK)), ("trades", streams.content_digest.file_sha256(TRADES))
    ]  # fmt: skip
    assert entry["sources"][0]["options"]["clock"] == "local" and "rules" in entry["sources"][0]["options"]
    meta = pq.ParquetFile(root / part.file).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    before = snapshot(root)
    again = data.import_files(root, [TRADES, BOOK])
    assert again.imported == [] and len(again.skipped) == 2
    assert snapshot(root) == before  # not a byte or a modification time changed


def test_a_file_imported_with_other_options_is_refused(tmp_path: Path) -> None:
    real_sample()
    data.import_files(tmp_path, [TRADES])
    with pytest.raises(DataError, match="already holds this content"):
        data.import_files(tmp_path, [TRADES], clock="exchange")


def test_binance_dumps_and_two_markets_merge_like_streams_merge(tmp_path: Path) -> None:
    real_sample()
    if not VISION:
        pytest.skip(real_data_missing(SAMPLE / "binance_vision_format"))
    data.import_files(tmp_path, [TRADES, *VISION])
    assert data.markets(tmp_path) == ["binance_BTCUSDT", "binance_futures_BTCUSDT"]
    vision = streams.binance(**{catalog.detect(p).role: p for p in VISION})
    assert streams.digest(data.read_table(tmp_path, "binance_BTCUSDT")) == streams.digest(vision)
    futures = streams.tardis(trades=TRADES)
    tables = [
        t.append_column("market", pa.array([m] * t.num_rows))
        for t, m in ((futures, "binance_futures_BTCUSDT"), (vision, "binance_BTCUSDT"))
    ]
    expected = streams.digest(streams.merge(*tables))
    batches = list(data.read(tmp_path, ["binance_futures_BTCUSDT", "binance_BTCUSDT"], batch_size=777))
    assert max(b.num_rows for b in batches) <= 777
    assert streams.digest(batches) == expected


# ----- synthetic days -------------------------------------------------------------------------------------------
def test_synthetic_days_are_split_by_utc_date_with_stable_digests(tmp_path: Path) -> None:
    table = synthetic_days()
    merged = streams.merge(table)
    data.import_table(tmp_path / "a", table, market="synth")
    parts = data.partitions(tmp_path / "a")
    assert [p.date for p in parts] == DAYS
    days = merged.column("t").to_numpy() // catalog.DAY_NS
    for p in parts:
        rows = merged.filter(pa.array(days == np.datetime64(p.date, "D").astype(np.int64)))
        assert p.rows == rows.num_rows and p.digest == streams.digest(rows)
        assert catalog.day_of(p.t_first) == catalog.day_of(p.t_last) == p.date
    assert streams.digest(data.read_table(tmp_path / "a")) == streams.digest(merged)
    half = table.num_rows // 2  # imported in two pieces, the middle day's partition merged from both
    data.import_table(tmp_path / "b", table.slice(0, half), market="synth")
    data.import_table(tmp_path / "b", table.slice(half), market="synth")
    pieces = data.partitions(tmp_path / "b")
    assert [dataclasses.replace(p, sources=()) for p in pieces] == [dataclasses.replace(p, sources=()) for p in parts]
    assert [len(p.sources) for p in pieces] == [1, 2, 1]  # same files, digests, rows and spans
    assert data.import_table(tmp_path / "a", table, market="synth").skipped == [("<table>", "synth")]


def strip(parts: list[catalog.Partition]) -> list[catalog.Partition]:
    """Partitions without their sources' names (the same content imported from another source)."""
    return [dataclasses.replace(p, sources=()) for p in parts]


def batches_of(table: pa.Table, size: int) -> list[pa.RecordBatch]:
    return pa.Table.from_batches(table.to_batches(max_chunksize=size)).to_batches(max_chunksize=size)


def test_a_stream_imported_batch_by_batch_equals_the_table_imported_whole(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    table = streams.merge(synthetic_days())
    t = table.column("t").to_numpy()
    ties = np.flatnonzero(t[1:] == t[:-1])
    assert len(ties) > 10  # same-time events (a trade and its book update): some fall on a batch boundary below
    monkeypatch.setattr(catalog, "ROW_GROUP", 4_000)  # several row groups a day, written as the batches arrive
    data.import_table(tmp_path / "whole", table, market="synth")
    for size in (997, int(ties[3]) + 1):  # the second cuts through a tie
        got = data.import_batches(tmp_path / f"b{size}", batches_of(table, size), market="synth")
        assert got.dates == [("synth", d) for d in DAYS]
        assert strip(data.partitions(tmp_path / f"b{size}")) == strip(data.partitions(tmp_path / "whole"))
        assert streams.digest(data.read_table(tmp_path / f"b{size}")) == streams.digest(table)
        file = tmp_path / f"b{size}" / data.partitions(tmp_path / f"b{size}")[1].file
        assert pq.ParquetFile(file).metadata.num_row_groups > 1
        assert not (tmp_path / f"b{size}" / catalog.TMP).exists() or not any(
            (tmp_path / f"b{size}" / catalog.TMP).iterdir()
        )
    first_day = data.partitions(tmp_path / "whole")[0].rows
    assert first_day == 112
    monkeypatch.setattr(catalog, "ROW_GROUP", 56)  # the first day's rows all written before it closes
    data.import_batches(tmp_path / "each", batches_of(table, 5000), market="synth")
    assert strip(data.partitions(tmp_path / "each")) == strip(data.partitions(tmp_path / "whole"))
    before = snapshot(tmp_path / "b997")
    assert data.import_batches(tmp_path / "b997", batches_of(table, 5000), market="synth").skipped == [
        ("<batches>", "synth")
    ]
    assert data.import_table(tmp_path / "b997", table, market="synth").skipped == [("<table>", "synth")]
    assert snapshot(tmp_path / "b997") == before  # re-imports are no-ops


def test_batches_into_days_the_catalog_holds_are_merged(tmp_path: Path) -> None:
    table = synthetic_days()
    half = table.num_rows // 2
    data.import_table(tmp_path / "a", table, market="synth")
    data.import_table(tmp_path / "b", table.slice(0, half), market="synth")
    data.import_batches(tmp_path / "b", table.slice(half).to_batches(max_chunksize=3000), market="synth")
    assert strip(data.partitions(tmp_path / "b")) == strip(data.partitions(tmp_path / "a"))
    assert [len(p.sources) for p in data.partitions(tmp_path / "b")] == [1, 2, 1]


def test_batches_out_of_time_order_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    table = streams.merge(synthetic_days())
    late, early = table.slice(20_000, 1000), table.slice(0, 1000)
    with pytest.raises(HarnessError, match=r"<batches>: batch 1 starts at t=\d+, before the batch before it ended"):
        data.import_batches(tmp_path, [late, early], market="synth")
    assert not catalog.manifest_path(tmp_path).exists() and visible_rows(tmp_path) == 0
    assert not (tmp_path / catalog.TMP).exists()  # the day written so far went with the failed import
    with pytest.raises(HarnessError, match="an empty stream has nothing to import"):
        data.import_batches(tmp_path, [table.slice(0, 0)], market="synth")


def test_date_ranges_and_markets_select_partitions(tmp_path: Path) -> None:
    table = synthetic_days()
    data.import_table(tmp_path, table, market="synth")
    data.import_table(tmp_path, synthetic_days(seed=2), market="other")
    assert [p.date for p in data.partitions(tmp_path, "synth", start=DAYS[1])] == DAYS[1:]
    only = data.read_table(tmp_path, "synth", DAYS[1], DAYS[1])
    (part,) = data.partitions(tmp_path, "synth", DAYS[1], DAYS[1])
    assert streams.digest(only) == part.digest
    with pytest.raises(HarnessError, match="holds no market"):
        data.partitions(tmp_path, "nope")
    with pytest.raises(HarnessError, match="is not a date"):
        data.partitions(tmp_path, "synth", start="yesterday")


def test_reading_is_batch_by_batch_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "ROW_GROUP", 500)  # small row groups, as a long range has many
    table = synthetic_days(events=60_000)
    data.import_table(tmp_path, table, market="synth")
    one_shot = data.read_table(tmp_path)
    whole = one_shot.nbytes
    del one_shot
    base = pa.total_allocated_bytes()
    peak, sizes = 0, []
    for batch in data.read(tmp_path, batch_size=250, verify=False):  # verify holds one digest window (64k rows)
        sizes.append(batch.num_rows)
        peak = max(peak, pa.total_allocated_bytes() - base)
    assert max(sizes) <= 250 and sum(sizes) == table.num_rows
    assert streams.digest(data.read(tmp_path, batch_size=500)) == streams.digest(streams.merge(table))
    assert peak < whole / 4, (peak, whole)  # a few row groups at a time, not the range


def test_markets_with_equal_times_merge_in_the_order_given(tmp_path: Path) -> None:
    a = streams.merge(synthetic_days(events=20_000))
    b = a.slice(4_000, 9_000)  # the same times: every row of b ties with one of a
    data.import_table(tmp_path, a, market="a")
    data.import_table(tmp_path, b, market="b")
    for order in (["a", "b"], ["b", "a"]):
        tables = {"a": a, "b": b}
        labelled = [tables[m].append_column("market", pa.array([m] * tables[m].num_rows)) for m in order]
        batches = list(data.read(tmp_path, order, batch_size=333))
        assert max(x.num_rows for x in batches) <= 333
        assert streams.digest(batches) == streams.digest(streams.merge(*labelled))
    one_day = data.read_table(tmp_path, ["a", "b"], DAYS[0], DAYS[0])  # b has no rows that day: still labelled
    assert set(one_day.column("market").to_pylist()) == {"a"}


def test_the_catalog_stream_function(tmp_path: Path) -> None:
    data.import_table(tmp_path, synthetic_days(events=5_000), market="a")
    events = loaders.catalog(str(tmp_path), start=DAYS[1], chunk=400, limit=1_000)
    batches = list(events.batches())
    assert events.rows == sum(x.num_rows for x in batches) == 1_000 and max(x.num_rows for x in batches) <= 400
    assert events.digest == streams.digest(data.read_table(tmp_path, "a", DAYS[1]).slice(0, 1_000))
    data.import_table(tmp_path, synthetic_days(events=5_000, seed=3), market="b")
    with pytest.raises(ConfigError, match="holds markets"):
        loaders.catalog(str(tmp_path))
    with pytest.raises(ConfigError, match="no events"):
        loaders.catalog(str(tmp_path), "a", start="2030-01-01")
    with pytest.raises(ConfigError, match="not a market-data catalog"):
        loaders.catalog(str(tmp_path / "nothing"))


# ----- failures -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["_publish", "_write_manifest"])
def test_an_interrupted_import_leaves_nothing_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    table = synthetic_days()
    days = table.column("t").to_numpy() // catalog.DAY_NS
    first = table.filter(pa.array(days == days[0]))
    data.import_table(tmp_path, first, market="synth")
    before = snapshot(tmp_path)
    real = getattr(catalog, stage)
    published = []

    def interrupted(*args):  # type: ignore[no-untyped-def]
        if stage == "_publish":  # the first partition moves into place, the second is written but not moved
            assert any((tmp_path / catalog.TMP).rglob("*.parquet"))
            if not published:
                published.append(args)
                return real(*args)
        raise RuntimeError("interrupted")

    monkeypatch.setattr(catalog, stage, interrupted)
    with pytest.raises(RuntimeError, match="interrupted"):
        data.import_table(tmp_path, table, market="synth")  # day 1 merged into, days 2 and 3 new
    assert snapshot(tmp_path) == before  # nothing left: not a partition, not a temporary file
    assert visible_rows(tmp_path) == manifest_rows(tmp_path) == first.num_rows
    monkeypatch.setattr(catalog, stage, real)
    data.import_table(tmp_path, table, market="synth")
    assert [p.date for p in data.partitions(tmp_path)] == DAYS
    assert streams.digest(data.read_table(tmp_path)) == streams.digest(streams.merge(first, table))


def test_a_killed_import_leaves_no_visible_partial_partition(tmp_path: Path) -> None:
    table = synthetic_days()
    events = tmp_path / "events.parquet"
    streams.write_parquet(table, events)
    root = tmp_path / "catalog"
    data.import_table(root, table.slice(0, 1000), market="synth")
    before = data.partitions(root)
    script = textwrap.dedent(f"""
        import os
        import pyarrow.parquet as pq
        from harness.streams import catalog

        def killed(*args):
            os._exit(9)  # dies like a killed process: no cleanup, the lock released by the OS

        catalog._publish = killed
        catalog.import_table({str(root)!r}, pq.read_table({str(events)!r}), market="synth")
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 9, res.stderr[-2000:]
    assert any((root / catalog.TMP).rglob("*.parquet"))  # what it was writing lies in .tmp/, unseen
    assert data.partitions(root) == before
    assert visible_rows(root) == manifest_rows(root) == 1000
    data.import_table(root, table, market="synth")
    assert not (root / catalog.TMP).exists()
    assert streams.digest(data.read_table(root)) == streams.digest(streams.merge(table.slice(0, 1000), table))


def test_a_second_importer_waits_then_gives_up_with_one_line(tmp_path: Path) -> None:
    with (
        FileLock(str(tmp_path / catalog.LOCK)),
        pytest.raises(HarnessError, match="another import holds the catalog lock"),
    ):
        data.import_table(tmp_path, synthetic_days(events=2000), market="synth", lock_timeout=0.2)


def test_an_edited_partition_fails_its_read_naming_the_file(tmp_path: Path) -> None:
    table = synthetic_days(events=5000)
    data.import_table(tmp_path, table, market="synth")
    part = data.partitions(tmp_path)[1]
    pq.write_table(pq.read_table(tmp_path / part.file).slice(1), tmp_path / part.file)
    with pytest.raises(DataError, match=f"{part.file}.*differs from the manifest"):
        data.read_table(tmp_path)
    with pytest.raises(DataError, match=f"{part.file}.*differs from the manifest"):  # nor is it merged into
        data.import_table(tmp_path, synthetic_days(events=5000, seed=9), market="synth")


def test_a_verified_partition_is_not_hashed_again_until_its_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.import_table(tmp_path, synthetic_days(events=5000), market="synth")
    hashed: list[int] = []
    original = catalog.StreamDigest.add
    monkeypatch.setattr(catalog.StreamDigest, "add", lambda self, b: (hashed.append(b.num_rows), original(self, b)))
    first = data.read_table(tmp_path)
    assert sum(hashed) == first.num_rows
    hashed.clear()
    assert data.read_table(tmp_path).equals(first) and hashed == []  # stamped: read without hashing
    part = data.partitions(tmp_path)[1]
    pq.write_table(pq.read_table(tmp_path / part.file).slice(1), tmp_path / part.file)
    with pytest.raises(DataError, match=f"{part.file}.*differs from the manifest"):
        data.read_table(tmp_path)  # the stamp no longer matches the file: hashed again, and caught
    assert 0 < sum(hashed) < 2 * first.num_rows


# ----- command line and pipeline --------------------------------------------------------------------------------
def test_data_command_imports_and_lists(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    real_sample()
    root = tmp_path / "catalog"
    assert data_main(["import", "--root", str(root), str(TRADES)]) == 0
    assert "imported 1 file(s), skipped 0" in capsys.readouterr().out
    assert data_main(["import", "--root", str(root), str(TRADES)]) == 0
    assert "imported 0 file(s), skipped 1" in capsys.readouterr().out
    assert data_main(["list", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "2024-08-08" in out and "21,313" in out
    odd = tmp_path / "odd.csv"
    odd.write_text("x\n")
    assert data_main(["import", "--root", str(root), str(odd)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "cannot tell the reader" in err
    assert data_main(["list", "--root", str(tmp_path / "none")]) == 2
    assert "not a market-data catalog" in capsys.readouterr().err


def test_pipeline_runs_on_a_catalog_range(workdir: Path) -> None:
    root = workdir / "catalog"
    table = synthetic_days(events=40_000)
    data.import_table(root, table, market="synth")
    overrides = [f"stream.root={root}", f"stream.start={DAYS[0]}", f"stream.end={DAYS[1]}", "trainer.epochs=2"]
    assert harness_main(["stream=catalog", *overrides]) == 0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["stream.target"] == "harness.pipeline.loaders:catalog"
    expected = data.read_table(root, "synth", DAYS[0], DAYS[1])
    assert run.data.tags["harness.data_digest"] == streams.digest(expected)
    assert run.data.metrics["rows_train"] > 100


TRADES_HEAD = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"


def tiny_trades_days(folder: Path, days: int) -> list[Path]:
    """`days` tiny tardis trades files, one per UTC day from 2024-08-08 (20 trades each), written last day first."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in reversed(range(days)):
        t = 1_723_161_255_000_000 + d * 86_400_000_000  # 2024-08-08 23:54 UTC in microseconds, then a day later
        rows = [f"x,Y,{t + 1000 + i},{t + 2000 + i},{i},{'buy' if i % 2 else 'sell'},{100 + i},0.5" for i in range(20)]
        paths.insert(0, folder / f"binance-futures_trades_2024-08-{8 + d:02d}_BTCUSDT.csv")
        paths[0].write_text("\n".join([TRADES_HEAD, *rows]) + "\n")
    return paths


def test_import_files_takes_a_glob_in_sorted_order(tmp_path: Path) -> None:
    files = tiny_trades_days(tmp_path / "days", 3)
    seen: list[Path] = []
    pattern = str(tmp_path / "days" / "*_trades_*.csv")
    done = data.import_files(tmp_path / "cat", pattern, progress=lambda path, _: seen.append(path))
    assert seen == files and [p for p, _, _ in done.imported] == [str(f) for f in files]
    assert done.dates == [("binance_futures_BTCUSDT", d) for d in ("2024-08-08", "2024-08-09", "2024-08-10")]
    with pytest.raises(DataError, match=r"no file matches '.*/days/\*_quotes_\*\.csv'"):
        data.import_files(tmp_path / "cat", str(tmp_path / "days" / "*_quotes_*.csv"))


def test_data_import_expands_a_quoted_glob(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    tiny_trades_days(tmp_path / "days", 2)
    root = str(tmp_path / "cat")
    assert data_main(["import", "--root", root, str(tmp_path / "days" / "*_trades_*.csv")]) == 0
    assert "imported 2 file(s), skipped 0" in capsys.readouterr().out
    assert data_main(["import", "--root", root, str(tmp_path / "days" / "*.csv.gz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no file matches ") and "*.csv.gz" in err and err.count("\n") == 1
