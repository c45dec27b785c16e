"""Fit guards: per-epoch metrics reach the tracking store as the fit makes them (a killed run keeps its curve),
a diverged fit or a test R² far below 0 ends FINISHED with a warning tag and a visible warning, and learnable
parameters that get no gradient at the start are named (hs.lib.linear's head starts away from 0 so they do)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

import harness as hs
from harness.cli import main
from harness.fit.trainer import FitWarning, Split, TrainerConfig, chronological_split, train, zero_gradients
from harness.pipeline import run as run_module
from harness.track.mlflow_logger import MlflowRunLogger

QUICK = ["stream.events=40000", "trainer.epochs=5", "tracking.plots=false"]


class Head(torch.nn.Module):
    """pred = w * tanh(a * x): with w = 0 the upstream `a` gets an exactly-zero gradient."""

    def __init__(self, x: torch.Tensor, w: float, a: float = 1.0) -> None:
        super().__init__()
        self.x = x
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=torch.float64))
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.w * torch.tanh(self.a * self.x[rows])


def data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor, Split]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    y = 0.8 * torch.tanh(1.7 * x) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y, chronological_split(np.arange(n, dtype=np.int64), (0.6, 0.2, 0.2))


# ----- per-epoch callback -------------------------------------------------------------------------------------
def test_on_epoch_gets_each_entry_as_it_is_made_and_can_stop_the_fit() -> None:
    x, y, split = data()
    seen: list[dict[str, float]] = []
    res = train(Head(x, 0.5), y, split, TrainerConfig(epochs=6, progress=False), on_epoch=seen.append)
    assert seen == res.history and [e["epoch"] for e in seen] == [1, 2, 3, 4, 5, 6]

    def stop_at_3(entry: dict[str, float]) -> None:
        seen.append(entry)
        if entry["epoch"] == 3:
            raise KeyboardInterrupt

    seen.clear()
    model = Head(x, 0.5).eval()
    with pytest.raises(KeyboardInterrupt):
        train(model, y, split, TrainerConfig(epochs=6, progress=False), on_epoch=stop_at_3)
    assert [e["epoch"] for e in seen] == [1, 2, 3]
    assert not model.training  # the model's mode is restored however the fit ends


# ----- zero gradients at the start ------------------------------------------------------------------------------
def test_a_parameter_without_gradient_after_the_first_backward_is_named() -> None:
    x, y, split = data()
    with pytest.warns(FitWarning, match=r"no gradient at the start for a: exactly 0"):
        res = train(Head(x, 0.0), y, split, TrainerConfig(epochs=3, progress=False))
    assert res.zero_grad == ["a"] and "a" in res.warnings[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        res = train(Head(x, 0.1), y, split, TrainerConfig(epochs=3, progress=False, optimizer="lbfgs"))
    assert res.zero_grad == [] and res.warnings == []


def test_zero_gradients_names_vector_elements() -> None:
    class Vec(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.raw = torch.nn.Parameter(torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64))
            self.frozen = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64), requires_grad=False)

    m = Vec()
    (m.raw * torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)).sum().backward()
    assert zero_gradients(m) == ["raw[2]"]
    m.param_names = ["x", "y", "z"]  # a CircuitModel names its one parameter vector's elements
    assert zero_gradients(m) == ["z"]
    m.raw.grad = None
    assert zero_gradients(m) == ["x", "y", "z"]


def head_circuit(**linear: object) -> hs.Circuit:
    """A learnable half-life under a hs.lib.linear head: the half-life gets a gradient only if the head's weight
    on its signal is not 0."""
    c = hs.Circuit("head")
    md = hs.lib.market(c)
    hl = c.parameter("hl", init=0.5, lower=0.01)
    press = hs.ops.tanh(hs.ops.decay_sum(md.signed_amount, halflife=hl))
    c.output("pred", hs.lib.linear([press, hs.lib.imbalance(md)], "head", **linear) * 1e-4)  # type: ignore[arg-type]
    c.output("mid", md.mid)
    return c


@pytest.fixture(scope="module")
def stream():  # type: ignore[no-untyped-def]
    return hs.streams.synthetic(20_000, seed=3)


def test_the_linear_head_starts_so_that_every_upstream_parameter_gets_a_gradient(stream) -> None:  # type: ignore[no-untyped-def]
    how = {"label": ("mid", 1.0), "sampler": hs.replay.every_n(5, "trade"), "trainer": {"epochs": 2}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        res = hs.fit.fit(head_circuit(), stream, **how)  # type: ignore[arg-type]
    assert res.training.zero_grad == [] and res.warnings == []
    with pytest.warns(FitWarning, match=r"no gradient at the start for hl: exactly 0"):
        res = hs.fit.fit(head_circuit(init=0.0), stream, **how)  # type: ignore[arg-type]
    assert res.training.zero_grad == ["hl"]  # named as the circuit's parameter
    assert res.parity["max_abs_error"] <= 1e-12


# ----- divergence -------------------------------------------------------------------------------------------------
def test_a_diverged_fit_warns_with_a_hint() -> None:
    x, y, split = data()
    with pytest.warns(FitWarning, match=r"the fit diverged: the validation loss went from .* lower learning rate"):
        res = train(Head(x, 0.5), y, split, TrainerConfig(optimizer="sgd", lr=40.0, epochs=4, progress=False))
    assert res.history[-1]["val_loss"] > 10 * res.start_loss and math.isfinite(res.history[-1]["val_loss"])
    assert any("diverged" in w and "'sgd'" in w for w in res.warnings)


# ----- the pipeline ---------------------------------------------------------------------------------------------
@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HARNESS_PARENT_RUN_ID", raising=False)
    return tmp_path


def only_run(path: Path):  # type: ignore[no-untyped-def]
    client = MlflowClient(tracking_uri=f"sqlite:///{path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    return client, run


def test_epochs_are_logged_as_they_happen_and_a_killed_run_keeps_its_curve(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_series = MlflowRunLogger.log_series
    sent: list[list[int]] = []

    def killed_after_epoch_3(self, points):  # type: ignore[no-untyped-def]
        points = list(points)
        log_series(self, points)
        sent.append(sorted({step for _, _, step in points}))
        if sent[-1][-1] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "EPOCH_FLUSH_S", 0.0)  # every epoch sent as soon as it ends
    monkeypatch.setattr(MlflowRunLogger, "log_series", killed_after_epoch_3)
    assert main([*QUICK, "trainer.epochs=10"]) == 130
    client, run = only_run(workdir)
    assert run.info.status == "KILLED"
    assert sent == [[1], [2], [3]]
    for key in ("train_loss", "val_loss", "lr"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3], key


def test_epochs_are_sent_in_batches_and_what_is_buffered_survives_a_kill(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_series, call = MlflowRunLogger.log_series, run_module.EpochLog.__call__
    requests: list[int] = []

    def counted(self, points):  # type: ignore[no-untyped-def]
        points = list(points)
        requests.append(len(points))
        log_series(self, points)

    def killed_after_epoch_3(self, entry):  # type: ignore[no-untyped-def]
        call(self, entry)
        if entry["epoch"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "EPOCH_FLUSH_S", 3600.0)  # nothing sent until the fit ends
    monkeypatch.setattr(MlflowRunLogger, "log_series", counted)
    monkeypatch.setattr(run_module.EpochLog, "__call__", killed_after_epoch_3)
    assert main([*QUICK, "trainer.epochs=10"]) == 130
    client, run = only_run(workdir)
    assert run.info.status == "KILLED"
    assert requests == [9]  # three epochs of train_loss, val_loss and lr: one request, sent when the fit stopped
    for key in ("train_loss", "val_loss", "lr"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3], key


def test_a_diverged_run_finishes_with_a_warning_tag_and_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*QUICK, "trainer=sgd", "trainer.lr=0.1"]) == 0  # the case: test R² about -245
    client, run = only_run(workdir)
    assert run.info.status == "FINISHED"
    warning = run.data.tags["harness.warning"]
    assert "the fit diverged" in warning and "test R² is" in warning and "far below 0" in warning
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert any("diverged" in line and "lower learning rate" in line for line in lines), err
    assert any("test R²" in line and "trainer=adam" in line for line in lines), err
    assert f"run {run.info.run_id}" in out and "objective" in out  # the summary is a result: stdout
    assert "warning" not in out
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5]
