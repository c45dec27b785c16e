"""Replay trusts content, not cache keys: a source file edited in place (same size, modification time restored)
is neither a stream-cache hit nor "identical data" for `harness runs replay`; a damaged cache entry is rebuilt."""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA, real_data_missing
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.streams import tardis_csv as tardis
from harness.streams.cache import CacheRebuilt

DAY = SHARED_DATA / "derived" / "binance-futures_2024-08-08"
L2 = DAY / "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz"
TRADES = DAY / "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz"


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Path, Path]:
    """The first minutes of the real BTCUSDT day as plain CSV files in tmp_path (book, trades)."""
    if not (L2.exists() and TRADES.exists()):
        pytest.skip(real_data_missing(DAY))
    out = []
    for src, lines in ((L2, 60_000), (TRADES, 6_000)):
        with gzip.open(src, "rt") as f:
            head = [next(f) for _ in range(lines)]
        path = tmp_path / src.name.removesuffix(".gz")
        path.write_text("".join(head))
        out.append(path)
    return out[0], out[1]


def edit_in_place(path: Path) -> None:
    """Change one amount digit in the middle of `path`, keeping its size and restoring its modification time."""
    stat = path.stat()
    lines = path.read_text().splitlines(keepends=True)
    i = len(lines) // 2
    fields = lines[i].split(",")
    amount = fields[-1]
    digit = next(k for k, ch in enumerate(amount) if ch.isdigit() and ch not in "09")
    fields[-1] = amount[:digit] + str(int(amount[digit]) + 1) + amount[digit + 1 :]
    lines[i] = ",".join(fields)
    path.write_text("".join(lines))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_a_same_size_edit_with_the_mtime_restored_is_not_a_cache_hit(sample: tuple[Path, Path], tmp_path: Path) -> None:
    book, trades = sample
    store = tmp_path / "cache"
    first = tardis.tardis(book=book, trades=trades, cache_dir=store)
    edit_in_place(trades)
    with pytest.warns(CacheRebuilt, match=r"stale cache entry.*changed since it was cached"):
        second = tardis.tardis(book=book, trades=trades, cache_dir=store)
    assert not second.equals(first)
    assert second.equals(tardis.tardis(book=book, trades=trades))  # what the files hold now
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheRebuilt)  # the rebuilt entry is a clean hit now
        assert tardis.tardis(book=book, trades=trades, cache_dir=store).equals(second)


def test_an_edited_cache_entry_is_rebuilt(sample: tuple[Path, Path], tmp_path: Path) -> None:
    book, trades = sample
    store = tmp_path / "cache"
    first = tardis.tardis(book=book, trades=trades, cache_dir=store)
    (entry,) = store.glob("tardis-*.parquet")
    table = pq.read_table(entry)
    t = table.column("t").to_pylist()
    t[-1] += 1  # one value changed, metadata (sources' sha256, stored digest) kept
    pq.write_table(table.set_column(table.schema.get_field_index("t"), "t", [t]), entry)
    with pytest.warns(CacheRebuilt, match="corrupt cache entry"):
        assert tardis.tardis(book=book, trades=trades, cache_dir=store).equals(first)


def test_runs_replay_refuses_data_edited_in_place_behind_a_stream_cache(
    sample: tuple[Path, Path], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book, trades = sample
    stream = [
        "stream=tardis",
        f"stream.book=[{book}]",
        f"stream.trades=[{trades}]",
        f"stream.cache_dir={workdir / 'c'}",
    ]
    assert main([*stream, "trainer.epochs=3", "tracking.plots=false"]) == 0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    edit_in_place(trades)
    with pytest.warns(CacheRebuilt):
        assert main(["runs", "replay", run.info.run_id, "--tracking-uri", uri]) == 3
    assert "the data differs" in capsys.readouterr().out
