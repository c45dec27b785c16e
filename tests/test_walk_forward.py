"""Walk-forward splits: fold windows in time, no label crossing into the next window or fold, each fold fitted
afresh, and the pipeline's `task.split: {kind: walk_forward, ...}` logging folds as steps."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

import harness as hs
from harness.cli import main
from harness.fit.trainer import TrainerError
from harness.fit.walk_forward import WalkForward, seconds

S = 1_000_000_000


def rows_at(n: int, seed: int = 0) -> np.ndarray:
    """Row times (ns) with gaps and repeated timestamps, over about n / 10 seconds."""
    gaps = np.random.default_rng(seed).choice([0, 0, 50, 100, 200], size=n) * 1_000_000
    return 1_700_000_000 * S + np.cumsum(gaps).astype(np.int64)


@pytest.mark.parametrize("window", ["rolling", "expanding"])
@pytest.mark.parametrize("horizon_s", [0.0, 0.5, 2.0])
def test_fold_windows_and_no_label_crosses_a_boundary(window: str, horizon_s: float) -> None:
    t = rows_at(4000)
    h = round(horizon_s * S)
    wf = WalkForward(train=60, val=20, test=15, window=window)
    folds = wf.folds(t, h)
    assert len(folds) >= 10
    for k, f in enumerate(folds):
        s = f.split
        tr, va, te = (t[getattr(s, p).numpy()] for p in ("train", "val", "test"))
        assert f.test_start == t[0] + 80 * S + k * 15 * S and f.test_end == f.test_start + 15 * S
        assert f.val_start == f.test_start - 20 * S
        assert f.train_start == (f.val_start - 60 * S if window == "rolling" else t[0])
        assert tr.min() >= f.train_start and tr.max() + h < f.val_start  # train labels end before validation
        assert va.min() >= f.val_start and va.max() + h < f.test_start  # validation labels end before test
        assert te.min() >= f.test_start and te.max() + h < f.test_end  # test labels end inside the fold
        # every row of a window whose label fits is kept: the purge drops only rows whose label crosses
        inside = (t >= f.test_start) & (t < f.test_end) & (t + h < f.test_end)
        assert np.array_equal(np.flatnonzero(inside), s.test.numpy())
        assert s.purged["test"] == int(np.sum((t >= f.test_start) & (t < f.test_end))) - len(s.test)
    ends = [f.test_end for f in folds]
    assert [f.test_start for f in folds[1:]] == ends[:-1]  # test windows tile time: the next fold starts here
    assert folds[-1].test_start <= t[-1] < folds[-1].test_end or folds[-1].test_end > t[-1] - 15 * S


def test_expanding_windows_grow_and_rolling_windows_keep_their_length() -> None:
    t = rows_at(3000)
    rolling = WalkForward(train=40, val=10, test=10).folds(t)
    expanding = WalkForward(train=40, val=10, test=10, window="expanding").folds(t)
    assert len(rolling) == len(expanding)
    sizes = [len(f.split.train) for f in expanding]
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]
    assert all(f.train_start == expanding[0].train_start for f in expanding)
    assert [f.val_start - f.train_start for f in rolling] == [40 * S] * len(rolling)


def test_a_step_shorter_than_the_test_window_overlaps_folds() -> None:
    folds = WalkForward(train=30, val=10, test=20, step="5s").folds(rows_at(2000))
    assert folds[1].test_start - folds[0].test_start == 5 * S


@pytest.mark.parametrize(
    "value,expected",
    [(90, 90.0), ("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("1d", 86400.0), ("250ms", 0.25), ("1.5h", 5400.0)],
)
def test_lengths_in_time(value: object, expected: float) -> None:
    assert seconds(value, "x") == pytest.approx(expected)


@pytest.mark.parametrize("value", ["2 weeks", "abc", -1, "1y", True, math.inf])
def test_a_bad_length_names_the_key(value: object) -> None:
    with pytest.raises(TrainerError, match=r"task\.split\.train="):
        seconds(value, "task.split.train")


def test_bad_walk_forward_specs_are_clear() -> None:
    with pytest.raises(TrainerError, match="needs val"):
        WalkForward.from_dict({"kind": "walk_forward", "train": "1h", "test": "10m"})
    with pytest.raises(TrainerError, match="unknown key"):
        WalkForward.from_dict({"kind": "walk_forward", "train": 1, "val": 1, "test": 1, "tests": 2})
    with pytest.raises(TrainerError, match="window='sliding'"):
        WalkForward(train=1, val=1, test=1, window="sliding")
    with pytest.raises(TrainerError, match="no fold fits: the rows span"):
        WalkForward(train=3600, val=600, test=600).folds(rows_at(100))


# ------------------------------------------------------------------------------------------------ fitting


def linear_circuit() -> hs.Circuit:
    """pred = w * x + b over an input x; the label is a value of y (horizon 0)."""
    c = hs.Circuit("wf_linear")
    x, y = c.input("x"), c.input("y")
    c.trigger("tick", x, y)
    w, b = c.parameter("w", init=0.0), c.parameter("b", init=0.0)
    c.output("pred", w * x + b)
    c.output("y", y)
    return c


def drifting_events(n: int = 6000) -> object:
    """x ~ N(0, 1); y = beta(t) * x + noise with a slope that drifts over time (so folds fit different slopes)."""
    import pyarrow as pa

    rng = np.random.default_rng(3)
    t = rows_at(n, seed=1)
    x = rng.normal(size=n)
    beta = np.linspace(0.5, 2.0, n)
    y = beta * x + 0.1 * rng.normal(size=n)
    trig = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array(["tick"]))
    return pa.table({"t": t, "trigger": trig, "x": x, "y": y})


def test_each_fold_is_fitted_afresh_on_its_own_windows() -> None:
    events = drifting_events()
    wf = WalkForward(train=120, val=30, test=60)
    res = hs.fit.fit(
        linear_circuit(), events, target="pred", label=("y", 0.0), split=wf, backend="python",
        trainer={"optimizer": "lbfgs", "epochs": 20, "progress": False},
    )  # fmt: skip
    assert len(res.folds) >= 4 and res.metrics["folds"] == len(res.folds)
    slopes = [f.params["w"] for f in res.folds]
    assert slopes == sorted(slopes) and slopes[-1] - slopes[0] > 0.5  # each fold found its own window's slope
    rows, pred = res.out_of_sample()
    assert np.array_equal(rows, np.concatenate([f.fold.split.test.numpy() for f in res.folds]))
    for f in res.folds:  # a fold equals a fit from the initial parameters on that fold alone: nothing carried over
        alone = hs.fit.CircuitModel(res.data, init={"w": 0.0, "b": 0.0})
        hs.fit.train(alone, torch.from_numpy(res.data.y), f.fold.split, hs.fit.TrainerConfig(
            optimizer="lbfgs", epochs=20, progress=False))  # fmt: skip
        assert alone.param_values() == pytest.approx(f.params, rel=0, abs=0)
        with torch.no_grad():
            np.testing.assert_array_equal(alone(f.fold.split.test).numpy(), f.predictions)
    y = res.data.y[rows]
    ic = np.corrcoef(pred, y)[0, 1]
    assert res.metrics["test_ic"] == pytest.approx(ic, rel=1e-12)
    assert res.params["w"] == res.folds[-1].params["w"]  # the kernel keeps the last fold's fit


# ------------------------------------------------------------------------------------------------ pipeline


def test_the_pipeline_fits_walk_forward_folds_and_logs_them_as_steps(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    split = "task.split={kind:walk_forward,train:20s,val:5s,test:5s}"
    main([split, "stream.events=30000", "trainer.epochs=3", f"tracking.uri={uri}", "tracking.plots=false"])
    capsys.readouterr()
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    assert run.info.status == "FINISHED"
    folds = int(run.data.metrics["folds"])
    assert folds >= 2
    ics = client.get_metric_history(run.info.run_id, "fold/test_ic")
    assert sorted(m.step for m in ics) == list(range(folds))
    starts = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "fold/test_start_s"))
    assert all(b[1] - a[1] == pytest.approx(5.0) for a, b in itertools.pairwise(starts))
    rows_test = sum(m.value for m in client.get_metric_history(run.info.run_id, "fold/rows_test"))
    assert run.data.metrics["rows_test"] == rows_test
    epochs = client.get_metric_history(run.info.run_id, "train_loss")
    assert len({m.step for m in epochs}) == len(epochs) >= folds  # all folds' epochs, numbered on
    ics = [m.value for m in sorted(ics, key=lambda m: m.step)]
    assert run.data.metrics["report/fold_ic_mean"] == pytest.approx(np.nanmean(ics))  # the report aggregates folds
    assert run.data.metrics["report/ic_1s"] == pytest.approx(run.data.metrics["test_ic"])  # over all folds' rows
    page = Path(client.download_artifacts(run.info.run_id, "report/report.html", str(tmp_path))).read_text()
    assert "Walk-forward folds" in page and page.count("<tr>") >= folds + 1


def test_a_bad_split_mapping_is_a_config_error(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["task.split={kind:rolling,train:1h}", "stream.events=2000", f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert "task.split.kind='rolling'" in err and "walk_forward" in err and "Traceback" not in err
