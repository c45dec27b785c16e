"""The fit trainer: config validation, chronological split with purge, deterministic fits, schedules, guards."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.fit.trainer import (
    NonFiniteLoss,
    Split,
    TrainerConfig,
    TrainerError,
    chronological_split,
    evaluate,
    train,
)

W_TRUE = (1.5, -0.7)


class Linear2(torch.nn.Module):
    """pred = w1*x1 + w2*x2 on stored features; records the row batches it is called with."""

    def __init__(self, x: torch.Tensor, w0: tuple[float, float] = (0.0, 0.0), record: bool = True) -> None:
        super().__init__()
        self.x = x
        self.record = record
        self.w1 = torch.nn.Parameter(torch.tensor(w0[0], dtype=torch.float64))
        self.w2 = torch.nn.Parameter(torch.tensor(w0[1], dtype=torch.float64))
        self.calls: list[torch.Tensor] = []

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if self.record:
            self.calls.append(rows.clone())
        x = self.x[rows]
        return self.w1 * x[:, 0] + self.w2 * x[:, 1]


def make_data(n: int = 200, noise: float = 0.0, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of y = 1.5*x1 - 0.7*x2 (+ noise)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = W_TRUE[0] * x[:, 0] + W_TRUE[1] * x[:, 1] + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def split_of(n: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Split:
    return chronological_split(np.arange(n, dtype=np.int64), fractions)


def weights(model: Linear2) -> tuple[float, float]:
    return float(model.w1.detach()), float(model.w2.detach())


# ------------------------------------------------------------------------------------------------ recovery


@pytest.mark.parametrize(
    "cfg",
    [
        {"optimizer": "adam", "lr": 0.05, "epochs": 400, "schedule": "cosine"},
        {"optimizer": "sgd", "lr": 0.3, "epochs": 200},
        {"optimizer": "sgd", "lr": 0.1, "momentum": 0.8, "epochs": 200},
        {"optimizer": "lbfgs", "lr": 1.0, "epochs": 3},
    ],
    ids=["adam", "sgd", "sgd-momentum", "lbfgs"],
)
def test_linear_regression_is_recovered(cfg: dict) -> None:
    x, y = make_data()
    model = Linear2(x)
    res = train(model, y, split_of(len(y)), TrainerConfig.from_dict({**cfg, "progress": False}))
    assert weights(model) == pytest.approx(W_TRUE, abs=1e-4)
    assert res.metrics["test_mse"] < 1e-8
    assert res.metrics["test_r2"] == pytest.approx(1.0, abs=1e-6)
    assert res.metrics["test_ic"] == pytest.approx(1.0, abs=1e-6)
    assert res.epochs_run == cfg["epochs"] and not res.stopped_early and not res.compiled
    assert [h["epoch"] for h in res.history] == list(range(1, cfg["epochs"] + 1))
    assert set(res.history[0]) == {"epoch", "train_loss", "val_loss", "lr"}
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.seconds > 0


def test_same_seed_is_bit_identical_and_global_rng_untouched() -> None:
    x, y = make_data(noise=0.3)
    cfg = TrainerConfig(optimizer="adam", lr=0.05, epochs=20, batch_size=16, progress=False)
    state = torch.get_rng_state()
    before = torch.rand(1)
    torch.set_rng_state(state)
    runs = []
    for seed in (7, 7, 8):
        m = Linear2(x)
        r = train(m, y, split_of(len(y)), cfg, seed=seed)
        runs.append((m, r))
    assert torch.equal(torch.rand(1), before), "train() must not advance the global RNG"
    (a, ra), (b, rb), (c, _) = runs
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert ra.history == rb.history
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


def test_mini_batches_are_shuffled_sorted_and_cover_train() -> None:
    x, y = make_data(n=200)
    split = split_of(200, (0.5, 0.25, 0.25))  # 100 train rows
    model = Linear2(x)
    train(model, y, split, TrainerConfig(lr=0.05, epochs=2, batch_size=32, progress=False), seed=3)
    start, calls = model.calls[0], model.calls[1:]
    assert torch.equal(start, split.val)  # the validation loss at the start (what divergence is measured by)
    # per epoch: 4 train batches (32, 32, 32, 4) then one validation call; then 3 final calls (train, val, test)
    epoch1, epoch2 = calls[0:4], calls[5:9]
    assert [len(r) for r in epoch1] == [32, 32, 32, 4]
    for rows in epoch1 + epoch2:
        assert torch.equal(rows, torch.sort(rows).values)
    assert torch.equal(torch.sort(torch.cat(epoch1)).values, split.train)
    assert torch.equal(torch.sort(torch.cat(epoch2)).values, split.train)
    assert not torch.equal(epoch1[0], epoch2[0]), "batches are reshuffled each epoch"
    assert not torch.equal(epoch1[0], split.train[:32]), "batches are shuffled, not contiguous"
    assert torch.equal(calls[4], split.val)
    assert len(calls) == 13


def test_mini_batch_fit_recovers_and_train_loss_is_batch_weighted() -> None:
    x, y = make_data()
    split = split_of(len(y), (0.5, 0.25, 0.25))
    model = Linear2(x)
    res = train(model, y, split, TrainerConfig(optimizer="sgd", lr=0.1, epochs=60, batch_size=30, progress=False))
    assert weights(model) == pytest.approx(W_TRUE, abs=1e-4)
    assert res.history[-1]["train_loss"] < 1e-8


# ------------------------------------------------------------------------------------------------ schedules


def test_step_schedule_lr_in_history() -> None:
    x, y = make_data(n=50)
    cfg = TrainerConfig(optimizer="sgd", lr=0.1, epochs=7, schedule="step", step_every=2, step_factor=0.5)
    res = train(Linear2(x), y, split_of(50), cfg)
    assert [h["lr"] for h in res.history] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125], rel=1e-12)


def test_cosine_schedule_lr_in_history() -> None:
    x, y = make_data(n=50)
    epochs = 8
    res = train(Linear2(x), y, split_of(50), TrainerConfig(lr=0.2, epochs=epochs, schedule="cosine"))
    expected = [0.1 * (1 + math.cos(math.pi * (e - 1) / epochs)) for e in range(1, epochs + 1)]
    assert [h["lr"] for h in res.history] == pytest.approx(expected, rel=1e-9)
    assert res.history[0]["lr"] == 0.2 and res.history[-1]["lr"] < 0.01


def test_no_schedule_keeps_lr() -> None:
    x, y = make_data(n=50)
    res = train(Linear2(x), y, split_of(50), TrainerConfig(lr=0.02, epochs=5))
    assert [h["lr"] for h in res.history] == [0.02] * 5


# ------------------------------------------------------------------------------------------------ loss, normalisation


def test_loss_values_are_normalised_by_train_std() -> None:
    x, y = make_data()
    y = 10.0 * y
    split = split_of(len(y))
    std = float(y[split.train].std(correction=0))
    pred0 = 0.5 * x[:, 0] - 0.5 * x[:, 1]
    r = pred0 - y
    raw = float((r[split.train] ** 2).mean())
    for normalize, scale in ((True, std), (False, 1.0)):
        cfg = TrainerConfig(optimizer="sgd", lr=1e-6, epochs=1, normalize_target=normalize)
        res = train(Linear2(x, (0.5, -0.5)), y, split, cfg)
        # epoch 1's full-batch train loss is the loss before the first step, i.e. at the initial weights
        assert res.history[0]["train_loss"] == pytest.approx(raw / scale**2, rel=1e-12)
    assert res.metrics["test_mse"] == pytest.approx(float((r[split.test] ** 2).mean()), rel=1e-3)  # label units


def test_huber_loss_value_and_robustness_to_outliers() -> None:
    x, y = make_data(n=300)
    split = split_of(300)
    y_out = y.clone()
    y_out[split.train[::15]] += 40.0  # gross outliers in 1 of 15 train rows
    std = float(y_out[split.train].std(correction=0))
    cfg = TrainerConfig(optimizer="sgd", lr=1e-9, epochs=1, loss="huber", huber_delta=0.3)
    res = train(Linear2(x), y_out, split, cfg)
    r = (0.0 - y_out[split.train]) / std
    expected = float(torch.nn.functional.huber_loss(r, torch.zeros_like(r), delta=0.3))
    assert res.history[0]["train_loss"] == pytest.approx(expected, rel=1e-12)

    fits = {}
    for loss in ("mse", "huber"):
        m = Linear2(x)
        cfg = TrainerConfig(optimizer="adam", lr=0.05, epochs=300, loss=loss, huber_delta=0.05, schedule="cosine")
        train(m, y_out, split, cfg)
        fits[loss] = max(abs(a - b) for a, b in zip(weights(m), W_TRUE, strict=True))
    assert fits["huber"] < 0.05 < fits["mse"]


def test_target_stats_come_from_train_rows_only() -> None:
    x, y = make_data()
    split = split_of(len(y))
    cfg = TrainerConfig(optimizer="sgd", lr=0.1, epochs=5)
    r1 = train(Linear2(x), y, split, cfg)
    y2 = y.clone()
    y2[split.val] = 1e3
    y2[split.test] = -5e3
    r2 = train(Linear2(x), y2, split, cfg)
    assert (r1.target_mean, r1.target_std) == (r2.target_mean, r2.target_std)
    assert r1.target_mean == pytest.approx(float(y[split.train].mean()), rel=1e-12)
    assert r1.target_std == pytest.approx(float(y[split.train].std(correction=0)), rel=1e-12)
    assert [h["train_loss"] for h in r1.history] == [h["train_loss"] for h in r2.history]


def test_constant_train_labels_use_unit_std() -> None:
    x, _ = make_data(n=40)
    y = torch.full((40,), 3.0, dtype=torch.float64)
    res = train(Linear2(x), y, split_of(40), TrainerConfig(epochs=2))
    assert res.target_std == 1.0 and res.target_mean == 3.0
    assert math.isnan(res.metrics["test_r2"]) and math.isnan(res.metrics["test_ic"])  # constant test labels


# ------------------------------------------------------------------------------------------------ early stopping


class Slope(torch.nn.Module):
    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.x = x
        self.w = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.w * self.x[rows]


def slope_data() -> tuple[torch.Tensor, torch.Tensor, Split]:
    """Train labels have slope 2, val labels slope 1: val loss falls while w < 1, then rises as w -> 2."""
    x = torch.linspace(-1, 1, 100, dtype=torch.float64)
    split = split_of(100)
    y = 2.0 * x
    y[split.val] = x[split.val]
    return x, y, split


def test_early_stopping_stops_and_restores_best_epoch() -> None:
    x, y, split = slope_data()
    cfg = TrainerConfig(optimizer="sgd", lr=0.05, epochs=500, patience=5)
    model = Slope(x)
    res = train(model, y, split, cfg)
    val = [h["val_loss"] for h in res.history]
    assert res.stopped_early and res.epochs_run == res.best_epoch + 5 < 500
    assert res.best_epoch == 1 + int(np.argmin(val)) and res.best_epoch > 1
    assert res.metrics["best_epoch"] == res.best_epoch and res.metrics["epochs_run"] == res.epochs_run
    assert res.metrics["val_loss"] == val[res.best_epoch - 1]  # the restored parameters' val loss, exactly
    # the same fit run for exactly best_epoch epochs (no validation part) ends at the restored parameters
    ref = Slope(x)
    no_val = Split(train=split.train, val=split.val[:0], test=split.test)
    train(ref, y, no_val, TrainerConfig(optimizer="sgd", lr=0.05, epochs=res.best_epoch, patience=5))
    assert torch.equal(model.w, ref.w)
    assert 0.9 < float(model.w.detach()) < 1.1


def test_best_epoch_restored_without_early_stopping_and_min_delta() -> None:
    x, y, split = slope_data()
    model = Slope(x)
    res = train(model, y, split, TrainerConfig(optimizer="sgd", lr=0.05, epochs=80))
    assert not res.stopped_early and res.epochs_run == 80 and res.best_epoch < 80
    assert res.metrics["val_loss"] == min(h["val_loss"] for h in res.history)
    lax = train(Slope(x), y, split, TrainerConfig(optimizer="sgd", lr=0.05, epochs=80, patience=3, min_delta=10.0))
    assert lax.stopped_early and lax.best_epoch == 1 and lax.epochs_run == 4  # nothing improves by > 10


def test_empty_validation_keeps_last_parameters() -> None:
    x, y, split = slope_data()
    model = Slope(x)
    res = train(model, y, Split(split.train, split.val[:0], split.test), TrainerConfig(optimizer="sgd", epochs=30))
    assert res.best_epoch == res.epochs_run == 30 and not res.stopped_early
    assert math.isnan(res.metrics["val_loss"]) and all(math.isnan(h["val_loss"]) for h in res.history)


# ------------------------------------------------------------------------------------------------ split


def test_split_sizes_by_row_count() -> None:
    s = chronological_split(np.arange(10, dtype=np.int64) * 100)
    assert s.train.tolist() == list(range(6)) and s.val.tolist() == [6, 7] and s.test.tolist() == [8, 9]
    assert s.train.dtype == torch.int64 and s.purged == {"train": 0, "val": 0}
    s = chronological_split(np.arange(1000, dtype=np.int64), (0.7, 0.0, 0.3))
    assert (len(s.train), len(s.val), len(s.test)) == (700, 0, 300)


def test_split_keeps_equal_timestamps_together() -> None:
    t = np.array([0, 1, 2, 3, 4, 5, 5, 5, 6, 7, 7, 8], dtype=np.int64)  # cuts at 7 and 9 (0.6, 0.2 of 12 rows)
    s = chronological_split(t)
    assert s.train.tolist() == list(range(8))  # rows 5..7 share t=5: cut moves from 7 to 8
    assert s.val.tolist() == [8, 9, 10]  # rows 9, 10 share t=7: cut moves from 9 to 11
    assert s.test.tolist() == [11]
    for a, b in ((s.train, s.val), (s.val, s.test)):
        assert t[a.numpy()].max() < t[b.numpy()].min()


def test_split_purges_labels_that_reach_the_next_part() -> None:
    t = np.arange(20, dtype=np.int64) * 10  # train rows 0..11 (t<=110), val 12..15 (120..150), test 16..19 (160..)
    s = chronological_split(t, horizon_ns=25)
    # train: t + 25 >= 120 -> t >= 95 -> rows 10, 11; val: t + 25 >= 160 -> t >= 135 -> rows 14, 15
    assert s.train.tolist() == list(range(10)) and s.val.tolist() == [12, 13] and s.test.tolist() == [16, 17, 18, 19]
    assert s.purged == {"train": 2, "val": 2}
    s = chronological_split(t, horizon_ns=10)  # t + 10 >= 120 -> row 11 only
    assert s.purged == {"train": 1, "val": 1}
    s = chronological_split(t, (0.5, 0.0, 0.5), horizon_ns=10)  # empty val: train purged against the first test row
    assert s.purged == {"train": 1, "val": 0} and s.train.tolist() == list(range(9))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fractions": (0.6, 0.2, 0.1)}, r"sum to 0\.9.*must sum to 1"),
        ({"fractions": (0.0, 0.5, 0.5)}, "train fraction must be > 0"),
        ({"fractions": (0.8, -0.1, 0.3)}, "must all be finite and >= 0"),
        ({"fractions": (0.5, 0.5)}, "must be three numbers"),
        ({"horizon_ns": -1}, r"horizon_ns=-1 must be an int >= 0"),
        ({"horizon_ns": 10_000}, "purges all 6 train rows"),
    ],
)
def test_split_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(TrainerError, match=match):
        chronological_split(np.arange(10, dtype=np.int64), **kwargs)


def test_split_rejects_bad_times() -> None:
    with pytest.raises(TrainerError, match=r"non-decreasing, but row 3 \(t=1\) < row 2"):
        chronological_split(np.array([0, 1, 2, 1], dtype=np.int64))
    with pytest.raises(TrainerError, match="1-D integer array"):
        chronological_split(np.zeros(5))
    with pytest.raises(TrainerError, match="empty"):
        chronological_split(np.array([], dtype=np.int64))


# ------------------------------------------------------------------------------------------------ NaN guard


@pytest.mark.parametrize("bad", ["feature", "label"])
def test_nan_in_a_train_batch_raises_before_the_step(bad: str) -> None:
    x, y = make_data(n=100)
    split = split_of(100)
    if bad == "feature":
        x[[41, 17], 0] = math.nan
    else:
        y[[41, 17]] = math.inf
    model = Linear2(x, (0.3, 0.4))
    with pytest.raises(
        NonFiniteLoss, match=r"epoch 1: train loss is (nan|inf) on 60 train rows; first non-finite row 17 \(pred="
    ) as ei:
        train(model, y, split, TrainerConfig(epochs=5))
    err = ei.value
    assert isinstance(err, TrainerError) and isinstance(err, HarnessError)
    assert err.epoch == 1 and torch.equal(err.rows, split.train)
    assert err.pred.shape == err.y.shape == (60,) and not err.pred.requires_grad
    assert torch.equal(err.y, y[split.train])
    assert weights(model) == (0.3, 0.4), "no optimizer step may be taken on a non-finite loss"


def test_nan_in_a_minibatch_names_its_epoch_and_rows() -> None:
    x, y = make_data(n=100)
    x[5, 1] = math.nan
    with pytest.raises(
        NonFiniteLoss, match="epoch 1: train loss is nan on 20 train rows; first non-finite row 5"
    ) as ei:
        train(Linear2(x), y, split_of(100), TrainerConfig(epochs=3, batch_size=20))
    assert 5 in ei.value.rows.tolist() and len(ei.value.rows) == 20


def test_nan_in_validation_raises() -> None:
    x, y = make_data(n=100)
    y[70] = math.nan  # a val row (val is 60..79)
    with pytest.raises(
        NonFiniteLoss, match="epoch 1: validation loss is nan on 20 validation rows; first non-finite row 70"
    ):
        train(Linear2(x), y, split_of(100), TrainerConfig(epochs=3))


def test_nan_guard_with_lbfgs() -> None:
    x, y = make_data(n=100)
    x[3, 0] = math.nan
    model = Linear2(x, (0.1, 0.2))
    with pytest.raises(NonFiniteLoss, match="first non-finite row 3"):
        train(model, y, split_of(100), TrainerConfig(optimizer="lbfgs", lr=1.0, epochs=2))
    assert weights(model) == (0.1, 0.2)


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "rmsprop"}, r"TrainerConfig.optimizer='rmsprop': must be one of 'adam', 'sgd', 'lbfgs'"),
        ({"lr": 0}, r"TrainerConfig.lr=0: must be a finite number > 0"),
        ({"lr": math.nan}, r"TrainerConfig.lr=nan: must be a finite number > 0"),
        ({"lr": "0.1"}, r"TrainerConfig.lr='0.1': must be a finite number > 0"),
        ({"optimizer": "sgd", "momentum": -0.1}, r"TrainerConfig.momentum=-0.1: must be a finite number >= 0"),
        ({"momentum": 0.9}, r"TrainerConfig.momentum=0.9: applies to optimizer 'sgd' only, not 'adam'"),
        ({"weight_decay": -1.0}, r"TrainerConfig.weight_decay=-1.0: must be a finite number >= 0"),
        ({"optimizer": "lbfgs", "weight_decay": 0.1}, r"weight_decay=0.1: is not supported by optimizer 'lbfgs'"),
        ({"epochs": 0}, r"TrainerConfig.epochs=0: must be an int >= 1"),
        ({"epochs": 2.0}, r"TrainerConfig.epochs=2.0: must be an int >= 1"),
        ({"epochs": True}, r"TrainerConfig.epochs=True: must be an int >= 1"),
        ({"batch_size": 0}, r"TrainerConfig.batch_size=0: must be an int >= 1 or None"),
        ({"optimizer": "lbfgs", "batch_size": 8}, r"batch_size=8: optimizer 'lbfgs' runs full batch only"),
        ({"schedule": "linear"}, r"TrainerConfig.schedule='linear': must be one of 'step', 'cosine' or None"),
        ({"step_every": 0}, r"TrainerConfig.step_every=0: must be an int >= 1"),
        ({"step_factor": 1.0}, r"TrainerConfig.step_factor=1.0: must be a number with 0 < step_factor < 1"),
        ({"step_factor": 0}, r"TrainerConfig.step_factor=0: must be a number with 0 < step_factor < 1"),
        ({"loss": "mae"}, r"TrainerConfig.loss='mae': must be one of 'mse', 'huber'"),
        ({"huber_delta": 0.0}, r"TrainerConfig.huber_delta=0.0: must be a finite number > 0"),
        ({"normalize_target": 1}, r"TrainerConfig.normalize_target=1: must be True or False"),
        ({"patience": 0}, r"TrainerConfig.patience=0: must be an int >= 1 or None"),
        ({"min_delta": -1e-3}, r"TrainerConfig.min_delta=-0.001: must be a finite number >= 0"),
        ({"lbfgs_max_iter": 0}, r"TrainerConfig.lbfgs_max_iter=0: must be an int >= 1"),
        ({"compile": "yes"}, r"TrainerConfig.compile='yes': must be True or False"),
        ({"progress": "auto"}, r"TrainerConfig.progress='auto': must be True or False or None"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(TrainerError, match=match):
        TrainerConfig(**kwargs)
    with pytest.raises(TrainerError, match=match):
        TrainerConfig.from_dict(kwargs)


def test_config_from_dict() -> None:
    cfg = TrainerConfig.from_dict({"optimizer": "sgd", "lr": 0.1, "epochs": 30, "schedule": None})
    assert cfg == TrainerConfig(optimizer="sgd", lr=0.1, epochs=30)
    assert TrainerConfig.from_dict({}) == TrainerConfig()
    with pytest.raises(TrainerError, match=r"unknown key 'learning_rate' \(known keys: optimizer, lr, momentum, "):
        TrainerConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(TrainerError, match="expected a mapping, got list"):
        TrainerConfig.from_dict([("lr", 0.1)])  # type: ignore[arg-type]
    with pytest.raises(dataclasses_frozen_error()):
        cfg.lr = 1.0  # type: ignore[misc]


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_train_input_errors() -> None:
    x, y = make_data(n=20)
    split = split_of(20)
    with pytest.raises(TrainerError, match=r"split.val has row indices outside \[0, 20\)"):
        train(Linear2(x), y, Split(split.train, torch.tensor([5, 20]), split.test), TrainerConfig(epochs=1))
    with pytest.raises(TrainerError, match="split.test must be a 1-D int64 tensor"):
        train(Linear2(x), y, Split(split.train, split.val, split.test.to(torch.int32)), TrainerConfig(epochs=1))
    with pytest.raises(TrainerError, match="split.train is empty"):
        train(Linear2(x), y, Split(split.train[:0], split.val, split.test), TrainerConfig(epochs=1))
    with pytest.raises(TrainerError, match="y must be a 1-D floating-point tensor"):
        train(Linear2(x), y.to(torch.int64), split, TrainerConfig(epochs=1))
    frozen = Linear2(x)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(TrainerError, match="Linear2 has no parameters with requires_grad=True"):
        train(frozen, y, split, TrainerConfig(epochs=1))


def test_evaluate() -> None:
    y = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert evaluate(y, y) == {"mse": 0.0, "r2": 1.0, "ic": pytest.approx(1.0)}
    m = evaluate(torch.full((4,), 2.5, dtype=torch.float64), y)
    assert m["mse"] == 1.25 and m["r2"] == 0.0 and math.isnan(m["ic"])
    m = evaluate(-y, y)
    assert m["ic"] == pytest.approx(-1.0) and m["mse"] == pytest.approx(30.0)
    assert all(math.isnan(v) for v in evaluate(y[:0], y[:0]).values())


def test_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = make_data(n=50)
    shown = train(Linear2(x), y, split_of(50), TrainerConfig(epochs=3, progress=True))
    hidden = train(Linear2(x), y, split_of(50), TrainerConfig(epochs=3, progress=False))
    assert shown.history == hidden.history  # the bar does not change the fit
    assert capsys.readouterr().out == ""  # the bar goes to stderr, never stdout


# ------------------------------------------------------------------------------------------------ compile


def test_compile_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = make_data(n=60)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no inductor here")

    monkeypatch.setattr(torch, "compile", broken)
    cfg = TrainerConfig(optimizer="lbfgs", lr=1.0, epochs=3, compile=True)
    model = Linear2(x)
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed .*no inductor here.*falling back to eager"):
        res = train(model, y, split_of(60), cfg)
    assert res.compiled is False
    assert weights(model) == pytest.approx(W_TRUE, abs=1e-4)


def test_compiled_forward_failing_on_first_call_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = make_data(n=60)

    def fake_compile(model: torch.nn.Module) -> object:
        def call(rows: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("backend exploded")

        return call

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = Linear2(x)
    with pytest.warns(RuntimeWarning, match="compiled forward raised RuntimeError: backend exploded.*eager") as rec:
        res = train(model, y, split_of(60), TrainerConfig(optimizer="lbfgs", lr=1.0, epochs=3, compile=True))
    assert len([w for w in rec if issubclass(w.category, RuntimeWarning)]) == 1  # warned once, then eager
    assert res.compiled is False
    assert weights(model) == pytest.approx(W_TRUE, abs=1e-4)


@pytest.mark.heavy
def test_real_torch_compile_works_or_falls_back_cleanly() -> None:
    x, y = make_data(n=40)
    model = Linear2(x, record=False)  # no Python side effects, so dynamo need not recompile per call
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = train(model, y, split_of(40), TrainerConfig(optimizer="sgd", lr=0.3, epochs=3, compile=True))
    fallback = [w for w in rec if issubclass(w.category, RuntimeWarning) and "torch.compile failed" in str(w.message)]
    assert res.compiled is (not fallback)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert time.perf_counter() - t0 < 120
