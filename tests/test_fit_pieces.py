"""Fitting at scale: the model evaluated in chronological pieces (`TrainerConfig.piece_rows`) gives the values of one
evaluation bit for bit, and its gradients and fits within float tolerance (only the order of the sums differs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fit import ticks, wide_circuit

import harness as hs
from harness import examples
from harness.fit.data import collect
from harness.fit.model import CircuitModel
from harness.fit.trainer import TrainerConfig, TrainerError


@pytest.fixture(scope="module")
def wide_data() -> hs.fit.FitData:
    tr = hs.fit.trace(wide_circuit(), "pred")
    kernel = hs.compile(tr.recording_circuit())
    return collect(tr, kernel, ticks(3000, seed=2, two=True), label=hs.fit.make_label(("truth", 0.0)))


def test_pieces_give_the_values_of_one_evaluation(wide_data: hs.fit.FitData) -> None:
    model = CircuitModel(wide_data)
    assert len(model._domain_order) > 2  # several step domains, decays feeding decays, an observed input
    rows = torch.arange(5, model.n_rows, 3)
    with torch.no_grad():
        whole, some = model(), model(rows)
        for cap in (1, 2, 7, 333, 2000):
            model.piece_rows = cap
            assert len(model._pieces(None)) > 1
            assert torch.equal(model(), whole)  # carried states and imports: the same operations on the same values
            assert torch.equal(model(rows), some)
        model.piece_rows = model.n_rows  # one piece: the evaluation as before
        assert model._pieces(None) is None


def test_pieces_give_the_gradients_of_one_evaluation(wide_data: hs.fit.FitData) -> None:
    model = CircuitModel(wide_data)
    y = torch.from_numpy(wide_data.y)
    rows = torch.arange(0, model.n_rows, 2)

    def loss_of(pred: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        return ((pred - y[part]) ** 2).sum() / len(rows)

    whole = loss_of(model(rows), rows)
    whole.backward()
    expected = model.raw.grad.clone()
    assert bool((expected != 0).all())
    for cap in (1, 50, 700):
        model.raw.grad = None
        model.piece_rows = cap
        total, ahead = model.backward_in_pieces(rows, loss_of)
        assert ahead is None
        assert total == pytest.approx(float(whole.detach()), rel=1e-13)
        torch.testing.assert_close(model.raw.grad, expected, rtol=1e-12, atol=1e-15)
    model.piece_rows = None
    assert model.backward_in_pieces(rows, loss_of) is None  # nothing to cut: the caller backpropagates itself


def test_rows_ahead_are_predicted_by_the_same_forward(wide_data: hs.fit.FitData) -> None:
    """`ahead` (e.g. validation rows after the train rows) comes out of the backward's forward without grad: the
    values of a separate evaluation, bit for bit, and the gradient of the train rows alone."""
    model = CircuitModel(wide_data)
    y = torch.from_numpy(wide_data.y)
    n = model.n_rows
    rows, later = torch.arange(0, int(n * 0.6)), torch.arange(int(n * 0.6) + 5, n)

    def loss_of(pred: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        return ((pred - y[part]) ** 2).sum() / len(rows)

    whole = loss_of(model(rows), rows)
    whole.backward()
    expected = model.raw.grad.clone()
    with torch.no_grad():
        separate = model(later)
    for cap in (1, 50, 700):
        model.raw.grad = None
        model.piece_rows = cap
        total, ahead = model.backward_in_pieces(rows, loss_of, ahead=later)
        assert torch.equal(ahead, separate)
        assert total == pytest.approx(float(whole.detach()), rel=1e-13)
        torch.testing.assert_close(model.raw.grad, expected, rtol=1e-12, atol=1e-15)
        _, none_ahead = model.backward_in_pieces(rows, loss_of, ahead=later[:0])
        assert none_ahead is not None and len(none_ahead) == 0


@pytest.mark.parametrize(
    "trainer",
    [
        {"optimizer": "adam", "lr": 0.05, "epochs": 25},
        pytest.param({"optimizer": "lbfgs", "epochs": 3}, marks=pytest.mark.heavy),
    ],
)
def test_a_fit_in_pieces_equals_the_fit_in_one(trainer: dict) -> None:
    events = hs.streams.synthetic(40_000, seed=3)
    fits = {}
    for piece_rows in (None, 900):
        fits[piece_rows] = hs.fit.fit(
            examples.trade_pressure(), events, target="pred", label=("mid", 1.0),
            sampler=hs.replay.every_n(2, trigger="trade"), trainer={**trainer, "piece_rows": piece_rows},
        )  # fmt: skip
    one, pieces = fits[None], fits[900]
    assert len(pieces.model._pieces(None)) > 5 and one.model._pieces(None) is None
    assert_same_fit(one, pieces)


def assert_same_fit(one: hs.fit.FitResult, other: hs.fit.FitResult) -> None:
    """Two fits of the same data that differ only in the order of float sums: parameters, losses per epoch and
    predictions within 1e-9, the same best epoch, and kernel/torch parity."""
    assert one.params.keys() == other.params.keys()
    for name, value in one.params.items():
        assert other.params[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert other.training.best_epoch == one.training.best_epoch
    for a, b in zip(one.history, other.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-9)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-9)
    np.testing.assert_allclose(other.predictions(), one.predictions(), rtol=1e-9, atol=1e-15)
    assert other.parity["max_abs_error"] <= 1e-12


def test_piece_rows_is_checked() -> None:
    for bad in (0, -5, 2.5, True):
        with pytest.raises(TrainerError, match="piece_rows"):
            TrainerConfig(piece_rows=bad)  # type: ignore[arg-type]
    assert TrainerConfig(piece_rows=None).piece_rows is None


@pytest.mark.parametrize("patience", [None, 2])
def test_validation_from_the_next_epochs_forward_gives_the_same_fit(
    wide_data: hs.fit.FitData, monkeypatch: pytest.MonkeyPatch, patience: int | None
) -> None:
    """Epochs in pieces take their validation loss from the next epoch's forward (`_Run.epoch_ahead`): the same
    history, best epoch, early stop and restored parameters as scoring each epoch on its own."""
    from harness.fit import trainer as trainer_module

    y = torch.from_numpy(wide_data.y)
    split = trainer_module.chronological_split(wide_data.t, (0.6, 0.2, 0.2))
    config = TrainerConfig(epochs=12, lr=0.3, patience=patience, progress=False, piece_rows=200)
    used: list[bool] = []
    ahead = trainer_module._Run.ahead

    def spy(self: trainer_module._Run) -> bool:
        used.append(ahead(self))
        return used[-1]

    fits = {}
    for mode in ("ahead", "each"):
        if mode == "each":
            monkeypatch.setattr(trainer_module._Run, "ahead", lambda self: False)
        else:
            monkeypatch.setattr(trainer_module._Run, "ahead", spy)
        model = CircuitModel(wide_data)
        model.piece_rows = 200
        fits[mode] = (trainer_module.train(model, y, split, config), model.param_values())
    assert used == [True]
    (a, a_params), (e, e_params) = fits["ahead"], fits["each"]
    assert (a.epochs_run, a.best_epoch, a.stopped_early) == (e.epochs_run, e.best_epoch, e.stopped_early)
    if patience is not None:
        assert a.stopped_early  # the case where the step after the stopping epoch is discarded
    for x, z in zip(a.history, e.history, strict=True):
        assert x["epoch"] == z["epoch"] and x["lr"] == z["lr"]
        assert x["train_loss"] == pytest.approx(z["train_loss"], rel=1e-9)
        assert x["val_loss"] == pytest.approx(z["val_loss"], rel=1e-9)
    for name, value in e_params.items():
        assert a_params[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert a.metrics["val_loss"] == pytest.approx(e.metrics["val_loss"], rel=1e-9)
