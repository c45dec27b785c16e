"""Fitting at scale (issue 17): a recording of more than `trainer.memory_rows` points is spilled to Parquet and read
back piece by piece; the fit is the in-memory fit (predictions bit for bit, gradients and parameters within the
float tolerance of sums taken in another order), and the spill folder goes with the fit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_fit import ticks, wide_circuit
from test_fit_pieces import assert_same_fit

import harness as hs
from harness import examples
from harness.fit.data import collect
from harness.fit.model import CircuitModel
from harness.fit.store import SpilledPoints, SpillError, point_count, record_digest, spill
from harness.fit.trainer import TrainerConfig, TrainerError


def wide_data() -> hs.fit.FitData:
    tr = hs.fit.trace(wide_circuit(), "pred")
    kernel = hs.compile(tr.recording_circuit())
    return collect(tr, kernel, ticks(3000, seed=2, two=True), label=hs.fit.make_label(("truth", 0.0)))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[CircuitModel, CircuitModel, str, hs.fit.FitData]:
    """The same recording in memory and spilled (row groups and pieces of 97 points), and the in-memory digest."""
    memory = CircuitModel(wide_data())
    data = wide_data()
    digest = record_digest(data)
    data.points = spill(data, str(tmp_path_factory.mktemp("spill")), 97)
    return memory, CircuitModel(data), digest, data


def test_a_spilled_recording_leaves_memory_and_keeps_its_digest(pair) -> None:  # type: ignore[no-untyped-def]
    memory, spilled, digest, data = pair
    assert isinstance(data.points, SpilledPoints) and not data.imports and not data.domains[0].leaves
    assert set(data.domains) == {0} and len(data.domains[0].rows) == memory.n_rows  # the rows' times stay
    assert record_digest(data) == digest
    files = sorted(p.name for p in data.points.folder.iterdir())
    assert files == [f"domain-{d}.parquet" for d in sorted(memory._width)]
    assert len(spilled._domain_order) > 2 and len(spilled._pieces(None)) > 10


def test_spilled_points_give_the_predictions_bit_for_bit(pair) -> None:  # type: ignore[no-untyped-def]
    memory, spilled, _, _ = pair
    rows = torch.arange(5, memory.n_rows, 3)
    with torch.no_grad():
        assert torch.equal(spilled(), memory())
        assert torch.equal(spilled(rows), memory(rows))
        assert torch.equal(spilled(rows[-1:]), memory(rows[-1:]))  # one piece: the whole evaluation, read at once
        assert torch.equal(spilled(rows[:0]), memory(rows[:0]))


def test_spilled_points_give_the_gradients(pair) -> None:  # type: ignore[no-untyped-def]
    memory, spilled, _, _ = pair
    target = torch.linspace(-1, 1, memory.n_rows, dtype=torch.float64)
    rows = torch.arange(0, memory.n_rows, 2)

    def loss_of(pred: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        return ((pred - target[part]) ** 2).sum() / len(rows)

    memory.raw.grad = None
    whole = loss_of(memory(rows), rows)
    whole.backward()
    spilled.raw.grad = None
    assert spilled.backward_in_pieces(rows, loss_of)[0] == pytest.approx(float(whole.detach()), rel=1e-13)
    assert bool((memory.raw.grad != 0).all())
    torch.testing.assert_close(spilled.raw.grad, memory.raw.grad, rtol=1e-12, atol=1e-15)


def test_explaining_a_row_reads_the_spilled_points(pair) -> None:  # type: ignore[no-untyped-def]
    memory, spilled, _, _ = pair
    for row in (0, memory.n_rows // 2, memory.n_rows - 1):
        assert spilled.explain(row) == memory.explain(row)


def fit_pair(trainer: dict, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The flagship fitted in memory and spilled (every recording point over the limit of 1000)."""
    events = hs.streams.synthetic(30_000, seed=3)
    sampler = hs.replay.every_n(2, trigger="trade")
    fits = []
    for extra in ({}, {"memory_rows": 1000, "spill_dir": str(tmp_path / "spill")}):
        config = {**trainer, "piece_rows": 700, **extra}
        fits.append(hs.fit.fit(examples.trade_pressure(), events, label=("mid", 1.0), sampler=sampler, trainer=config))
    return fits


@pytest.mark.parametrize(
    "trainer",
    [
        {"optimizer": "adam", "lr": 0.05, "epochs": 12},
        pytest.param({"optimizer": "adam", "lr": 0.05, "epochs": 6, "batch_size": 900}, marks=pytest.mark.heavy),
        pytest.param({"optimizer": "lbfgs", "epochs": 2}, marks=pytest.mark.heavy),
    ],
)
def test_a_spilled_fit_equals_the_fit_in_memory(trainer: dict, tmp_path: Path) -> None:
    one, spilled = fit_pair(trainer, tmp_path)
    assert isinstance(spilled.data.points, SpilledPoints) and not one.data.points.spilled
    assert point_count(one.data) > 1000
    assert_same_fit(one, spilled)
    assert record_digest(spilled.data) == record_digest(one.data)
    folder = spilled.data.points.folder
    assert folder.parent == tmp_path / "spill" and folder.is_dir()
    spilled.close()
    assert not folder.exists() and list((tmp_path / "spill").iterdir()) == []


def test_a_failed_spilled_fit_removes_its_folder(tmp_path: Path) -> None:
    events = hs.streams.synthetic(20_000, seed=4)
    seen: list[Path] = []

    def on_epoch(entry: dict[str, float]) -> None:
        seen.extend((tmp_path / "spill").iterdir())
        raise KeyboardInterrupt  # a user's Ctrl-C between epochs

    with pytest.raises(KeyboardInterrupt):
        hs.fit.fit(
            examples.trade_pressure(), events, target="pred", label=("mid", 1.0), on_epoch=on_epoch,
            trainer={"epochs": 5, "piece_rows": 500, "memory_rows": 100, "spill_dir": str(tmp_path / "spill")},
        )  # fmt: skip
    assert len(seen) == 1 and seen[0].name.startswith("harness-spill-")
    assert list((tmp_path / "spill").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_spill_dir_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(SpillError, match=r"trainer.spill_dir: cannot create a folder .*locked"):
            spill(wide_data(), str(locked), 100)
    finally:
        locked.chmod(0o700)


def test_a_spill_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpillError, match=r"trainer.spill_dir: cannot create a folder .*file"):
        spill(wide_data(), str(tmp_path / "file"), 100)


def test_memory_rows_and_spill_dir_are_checked() -> None:
    for bad in (0, -1, 2.5, True):
        with pytest.raises(TrainerError, match="memory_rows"):
            TrainerConfig(memory_rows=bad)  # type: ignore[arg-type]
    for bad in ("", 3):
        with pytest.raises(TrainerError, match="spill_dir"):
            TrainerConfig(spill_dir=bad)  # type: ignore[arg-type]
    assert TrainerConfig().memory_rows == 20_000_000  # a default limit: large recordings spill unless told not to
    assert TrainerConfig(memory_rows=None, spill_dir=None).memory_rows is None


def test_a_recording_to_spill_without_pieces_is_a_clear_error() -> None:
    events = hs.streams.synthetic(5_000, seed=4)
    with pytest.raises(TrainerError, match=r"memory_rows=10: the recording holds \d+ points.*needs trainer.piece_rows"):
        trainer = {"memory_rows": 10, "piece_rows": None}
        hs.fit.fit(examples.trade_pressure(), events, label=("mid", 1.0), trainer=trainer)


def test_a_pipeline_run_spills_when_told_and_logs_the_same_recording(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HARNESS_PARENT_RUN_ID", raising=False)
    quick = ["stream.events=20000", "trainer.epochs=3", "trainer.piece_rows=2000"]
    assert main(quick) == 0
    assert main([*quick, "trainer.memory_rows=5000", f"trainer.spill_dir={tmp_path / 'spill'}"]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("harness")
    memory, spilled = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert spilled.info.status == "FINISHED" and spilled.data.params["trainer.memory_rows"] == "5000"
    assert spilled.data.tags["harness.record_digest"] == memory.data.tags["harness.record_digest"]
    for key in ("fit_val_loss", "test_mse", "test_ic"):
        assert spilled.data.metrics[key] == pytest.approx(memory.data.metrics[key], rel=1e-7), key
    assert list((tmp_path / "spill").iterdir()) == []  # the run removed its spilled recording
