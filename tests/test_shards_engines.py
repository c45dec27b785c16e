"""Sharded recording on the engines (serial, local processes, a real local Ray instance), on the real sample split
in two, through the pipeline (execution=local), a failing shard, and finished shards reused (harness/replay)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import SHARED_DATA, real_data
from mlflow.tracking import MlflowClient
from test_shards import LABELS, bounded_circuit, days, decay_circuit

import harness as hs
from harness.circuits import fit_market
from harness.fit.store import record_digest
from harness.fit.trainer import FitWarning
from harness.replay import shards as sh

REAL = ("derived", "binance-futures_2024-08-08")


@pytest.fixture(scope="module")
def three_days() -> pa.Table:
    return days(3, 30_000)


def _both(kernel, events, how: hs.replay.Sharding, **kw):  # type: ignore[no-untyped-def]
    kernel.reset()
    serial = hs.replay.record(kernel, events, labels=LABELS, row_index=True, **kw)
    sharded = hs.replay.record(kernel, events, labels=LABELS, row_index=True, shards=how, **kw)
    return serial, sharded


@pytest.mark.parametrize("count", [2, 3])
def test_local_engine_is_bit_identical(three_days: pa.Table, count: int) -> None:
    for circuit in (bounded_circuit(), decay_circuit()):
        k = hs.compile(circuit)
        how = hs.replay.Sharding(count=count, engine="local", workers=2)
        serial, rec = _both(k, three_days, how, sampler=hs.replay.every_n(7, "trade"))
        assert rec.table.equals(serial.table) and rec.rows == serial.rows
        assert all(i.differing == 0 for i in rec.shards)
        assert len({i.worker for i in rec.shards}) >= 1


def test_catalog_source_reads_the_ranges_a_table_does(three_days: pa.Table, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A catalog's shard reads (row groups skipped by their statistics) give the events a table gives, and a day
    catalog shards to the serial rows on the local engine (stream=catalog's source)."""
    from harness.streams import catalog

    monkeypatch.setattr(catalog, "ROW_GROUP", 4_000)  # several row groups per day, so some are skipped
    catalog.import_table(tmp_path / "cat", three_days, market="btc")
    cat, table = hs.replay.CatalogSource(str(tmp_path / "cat"), ("btc",)), hs.replay.TableSource(three_days)
    assert cat.span() == table.span()
    t = three_days.column("t").to_numpy()
    for lo, hi in [
        (None, None),
        (int(t[100]), int(t[40_000])),
        (int(t[35_123]) + 1, None),
        (int(t[59_999]), int(t[60_001])),
        (None, int(t[12_345])),
    ]:
        got = pa.Table.from_batches(list(cat.read(lo, hi)))
        assert got.equals(pa.Table.from_batches(list(table.read(lo, hi))))
    assert cat.key(1, 2) != cat.key(1, 3) and cat.key(1, 2) == cat.key(1, 2)
    k = hs.compile(bounded_circuit())
    serial = hs.replay.record(k, three_days, labels=LABELS, row_index=True)
    rec = hs.replay.record(
        k, cat, labels=LABELS, row_index=True, shards=hs.replay.Sharding(every_s=86_400.0, engine="local")
    )
    assert rec.table.equals(serial.table)


def test_whatever_the_number_of_workers(three_days: pa.Table) -> None:
    k = hs.compile(bounded_circuit())
    tables = [
        hs.replay.record(k, three_days, labels=LABELS, row_index=True,
                         shards=hs.replay.Sharding(count=3, engine="local", workers=w)).table
        for w in (1, 2, 3)
    ]  # fmt: skip
    assert tables[0].equals(tables[1]) and tables[1].equals(tables[2])


def test_real_sample_split_in_two() -> None:
    """The real BTCUSDT sample (one snapshot at its start): the second shard's book is rebuilt from it."""
    book = real_data(*REAL, "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz")
    trades = real_data(*REAL, "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz")
    events = hs.streams.tardis(book=book, trades=trades)
    for circuit in (bounded_circuit(), decay_circuit()):
        k = hs.compile(circuit)
        serial, rec = _both(k, events, hs.replay.Sharding(count=2, engine="local", workers=2))
        assert rec.table.equals(serial.table) and len(rec.shards) == 2
        assert rec.shards[1].compared > 0 and rec.shards[1].differing == 0


def test_fit_on_shards_is_the_serial_fit(three_days: pa.Table) -> None:
    """hs.fit.fit(..., execution=Sharding): the same recorded data (rows, step domains, labels) and parameters."""
    kw = {"label": ("mid", 1.0), "trainer": {"epochs": 3}, "sampler": hs.replay.every_n(5), "parity_events": 20_000}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        serial = hs.fit.fit(fit_market(), three_days, **kw)
        sharded = hs.fit.fit(fit_market(), three_days, execution=hs.replay.Sharding(count=3, engine="local"), **kw)
    assert record_digest(sharded.data) == record_digest(serial.data)
    assert sharded.params == serial.params and len(sharded.data.shards) == 3


def negative_amount(table: pa.Table, after: int) -> pa.Table:
    """`table` with a negative level amount in the first book message after row `after` (a Book error)."""
    amounts = table.column("book_amount").to_pylist()
    row = next(i for i in range(after, len(amounts)) if amounts[i])
    amounts[row] = [-1.0, *amounts[row][1:]]
    column = pa.array(amounts, table.schema.field("book_amount").type)
    return table.set_column(table.schema.get_field_index("book_amount"), "book_amount", column)


def test_a_failing_shard_names_its_range_and_worker(three_days: pa.Table) -> None:
    """A bad event in the third day fails the sharded replay with that shard's range, its worker and the error."""
    broken = negative_amount(three_days, 60_500)
    k = hs.compile(bounded_circuit())
    for engine in ("serial", "local"):
        with pytest.raises(sh.ShardError, match=r"shard 3 \(2024-08-10T00:00:00.001 \.\. end\) failed on worker "
                                                r"[^:]+:\d+: EventsError: .*amounts must be >= 0"):  # fmt: skip
            hs.replay.record(k, broken, shards=hs.replay.Sharding(every_s=86_400.0, engine=engine, workers=2))


def test_finished_shards_are_reused_when_unchanged(three_days: pa.Table, tmp_path: Path) -> None:
    k = hs.compile(bounded_circuit())
    how = hs.replay.Sharding(every_s=86_400.0, reuse_dir=str(tmp_path / "reuse"))
    first = hs.replay.record(k, three_days, labels=LABELS, row_index=True, shards=how)
    again = hs.replay.record(k, three_days, labels=LABELS, row_index=True, shards=how)
    assert [i.reused for i in first.shards] == [False] * 3 and [i.reused for i in again.shards] == [True] * 3
    assert again.table.equals(first.table)
    changed = pa.concat_tables([three_days.slice(0, 60_000), days(3, 30_000).slice(60_000).slice(0, 29_000)])
    third = hs.replay.record(k, changed, labels=LABELS, row_index=True, shards=how)
    assert [i.reused for i in third.shards] == [True, True, False]  # only the changed day is replayed again
    k.reset()
    assert third.table.equals(hs.replay.record(k, changed, labels=LABELS, row_index=True).table)
    other = hs.replay.record(k, three_days, labels=[("mid", 2.0, "return")], shards=how)
    assert not any(i.reused for i in other.shards)  # another label: nothing reused
    assert not list((tmp_path / "reuse" / ".tmp").iterdir())  # written aside, then renamed


def test_pipeline_execution_local_logs_the_serial_run(workdir: Path) -> None:
    from harness.cli import main

    common = ["stream.events=40000", "trainer.epochs=3", "tracking.plots=false"]
    assert main([*common, "tracking.run_name=serial"]) == 0
    assert main([*common, "execution=local", "execution.shards=2", "tracking.run_name=sharded"]) == 0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = {r.info.run_name: r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}
    a, b = runs["serial"].data, runs["sharded"].data
    for tag in ("harness.record_digest", "harness.data_digest", "harness.prediction_digest"):
        assert a.tags[tag] == b.tags[tag]
    assert b.metrics["shards"] == 2 and b.metrics["shard_boundary_differing"] == 0
    assert a.metrics["test_r2"] == b.metrics["test_r2"]
    assert b.params["execution.kind"] == "local"


def test_pipeline_catalog_stream_on_local_shards(workdir: Path) -> None:
    """stream=catalog execution=local: each worker reads its days from the catalog; the run is the serial run."""
    from harness.cli import main
    from harness.streams import catalog

    catalog.import_table(workdir / "cat", days(2, 20_000), market="btc")
    common = ["stream=catalog", f"stream.root={workdir / 'cat'}", "trainer.epochs=2", "tracking.plots=false"]
    assert main([*common, "tracking.run_name=serial"]) == 0
    assert main([*common, "execution=local", "tracking.run_name=days"]) == 0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = {r.info.run_name: r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}
    for tag in ("harness.record_digest", "harness.data_digest", "harness.prediction_digest"):
        assert runs["serial"].data.tags[tag] == runs["days"].data.tags[tag]
    assert runs["days"].data.metrics["shards"] == 2


def broken_stream() -> pa.Table:
    """Two synthetic days, a negative level amount in the second (stream=custom for the failing-shard test)."""
    return negative_amount(days(2, 20_000), 30_000)


def test_pipeline_failed_shard_fails_the_run(workdir: Path) -> None:
    from harness.cli import main

    args = ["stream=custom", "stream.target=test_shards_engines:broken_stream", "execution=local", "trainer.epochs=2"]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2  # one clear message
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    assert run.info.status == "FAILED"
    error = run.data.tags["harness.error"]
    assert "shard 2 (2024-08-09T00:00:00.001 .. end) failed on worker" in error and "amounts must be >= 0" in error
    assert not list(workdir.glob("**/*.parquet"))  # nothing half-written


@pytest.mark.slow
def test_ray_engine_with_a_real_local_instance(three_days: pa.Table) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray>=2.9': the dev extras have it)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for count in (2, 3):
            k = hs.compile(decay_circuit())
            how = hs.replay.Sharding(count=count, engine="ray")
            serial, rec = _both(k, three_days, how, sampler=hs.replay.every_n(7, "trade"))
            assert rec.table.equals(serial.table) and all(i.differing == 0 for i in rec.shards)
        book = SHARED_DATA.joinpath(*REAL, "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz")
        trades = SHARED_DATA.joinpath(*REAL, "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz")
        if book.exists() and trades.exists():  # the real sample split in two, on Ray too
            k = hs.compile(bounded_circuit())
            serial, rec = _both(
                k, hs.streams.tardis(book=book, trades=trades), hs.replay.Sharding(count=2, engine="ray")
            )
            assert rec.table.equals(serial.table) and rec.shards[1].differing == 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            kw = {"label": ("mid", 1.0), "trainer": {"epochs": 2}, "parity_events": 10_000}
            a = hs.fit.fit(fit_market(), three_days, **kw)
            b = hs.fit.fit(fit_market(), three_days, execution=hs.replay.Sharding(count=2, engine="ray"), **kw)
        assert record_digest(a.data) == record_digest(b.data)
    finally:
        ray.shutdown()


@pytest.mark.heavy
def test_a_sweep_of_sharded_runs_on_ray(workdir: Path) -> None:
    """harness -m execution=ray ...: each job's recording runs as Ray tasks (a local instance, started by the first
    job and shut down here)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray>=2.9': the dev extras have it)")
    from harness.cli import main

    try:
        args = ["-m", "execution=ray", "execution.shards=2", "execution.workers=2", "trainer.lr=0.01,0.1"]
        assert main([*args, "stream.events=30000", "trainer.epochs=2", "tracking.plots=false"]) == 0
    finally:
        ray.shutdown()
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert all(r.data.metrics["shards"] == 2 and r.data.params["execution.kind"] == "ray" for r in children)
