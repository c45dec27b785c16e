"""One replay pass: the stream's digest is computed along the recording replay, the fitted kernel's parity is
checked on a bounded slice (the rest of the stream is never read again), and a pipeline run reads its
stream once plus that slice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from mlflow.tracking import MlflowClient

import harness as hs
from harness import examples
from harness.cli import main
from harness.pipeline import build
from harness.replay.driver import chunks
from harness.replay.sampling import every_n
from harness.streams.content_digest import StreamDigest


class Counted:
    """A replayable stream that counts the events each pass reads."""

    def __init__(self, n: int, chunk: int) -> None:
        self.n, self.chunk = n, chunk
        self.passes: list[int] = []

    def __call__(self) -> Iterator[pa.RecordBatch]:
        self.passes.append(0)
        for batch in hs.streams.synthetic_batches(self.n, seed=4, chunk=self.chunk):
            self.passes[-1] += batch.num_rows
            yield batch


@pytest.mark.parametrize("chunk", [997, 20_000, 100_000])
def test_stream_digest_fed_batch_by_batch_equals_the_digest(chunk: int) -> None:
    table = hs.streams.synthetic(30_000, seed=2)
    d = StreamDigest()
    for batch in table.to_batches(max_chunksize=chunk):
        d.add(batch)
    assert d.hexdigest() == hs.streams.digest(table)


def test_events_digest_comes_from_the_first_complete_pass() -> None:
    stream = Counted(25_000, 4_000)
    events = build.Events(stream, 25_000, "counted", [])
    assert sum(b.num_rows for b in events.batches()) == 25_000
    assert stream.passes == [25_000]
    assert events.digest == hs.streams.digest(hs.streams.synthetic(25_000, seed=4))
    assert stream.passes == [25_000]  # no pass of its own


def test_events_digest_without_a_pass_makes_one() -> None:
    stream = Counted(5_000, 1_000)
    events = build.Events(stream, 5_000, "counted", [])
    for _ in zip(range(2), events.batches(), strict=False):  # a partial pass computes nothing
        pass
    assert events.digest == hs.streams.digest(hs.streams.synthetic(5_000, seed=4))
    assert stream.passes[-1] == 5_000


def test_driver_stops_after_max_events_without_reading_further() -> None:
    stream = Counted(50_000, 7_000)
    k = hs.compile(examples.market_pressure())
    got = list(chunks(k, stream(), max_events=10_000))
    assert sum(c.events for c in got) == 10_000
    assert stream.passes == [14_000]  # two batches of 7,000 read, the second cut
    assert got[-1].offset + got[-1].rows.num_rows == 10_000  # no timers: a row per event


def test_fit_replays_the_stream_once_and_a_bounded_parity_slice() -> None:
    stream = Counted(120_000, 10_000)
    res = hs.fit.fit(
        examples.fit_market(), stream, target="pred", label=("mid", 1.0), sampler=every_n(5, trigger="trade"),
        trainer={"epochs": 5, "lr": 0.05}, seed=0, parity_events=30_000,
    )  # fmt: skip
    assert stream.passes == [120_000, 30_000]
    assert res.kernel_predictions is not None
    n = len(res.kernel_predictions)
    assert 0 < n < res.data.n_rows
    assert res.data.domains[0].rows[n - 1] < 30_000 <= res.data.domains[0].rows[n]  # every row of the slice
    pred = res.predictions()
    np.testing.assert_allclose(pred[:n], res.kernel_predictions, rtol=1e-9, atol=1e-12)
    assert res.parity["rows"] == n and res.data.replay_s > 0


def test_fit_parity_over_the_whole_stream_when_asked() -> None:
    stream = Counted(40_000, 10_000)
    res = hs.fit.fit(
        examples.fit_market(), stream, target="pred", label=("mid", 1.0), sampler=every_n(5, trigger="trade"),
        trainer={"epochs": 2}, seed=0, parity_events=None,
    )  # fmt: skip
    assert res.kernel_predictions is not None and len(res.kernel_predictions) == res.data.n_rows
    assert stream.passes[0] == 40_000 and stream.passes[1] <= 40_000


def test_a_pipeline_run_reads_its_stream_once_plus_the_parity_slice(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[int] = []
    original = hs.streams.synthetic_batches

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        read.append(0)
        for batch in original(*args, **kwargs):
            read[-1] += batch.num_rows
            yield batch

    monkeypatch.setattr(hs.streams, "synthetic_batches", counting)  # what the synthetic stream loader calls
    assert main(["stream.events=300000", "trainer.epochs=3", "stream.chunk=50000"]) == 0
    assert read[0] == 300_000 and len(read) == 2 and read[1] <= 250_000  # record + the parity slice
    run = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").search_runs(["0", "1"])[0]
    assert run.data.tags["harness.data_digest"] == hs.streams.digest(original(300_000, seed=0))
    assert run.data.metrics["parity_rows"] > 0 and run.data.metrics["replay_events_per_s"] > 0
