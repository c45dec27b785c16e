"""The evaluation report: its numbers against brute-force loops on a small table, optional label horizons in the
recording, drop-one attribution, and the pipeline's report artifacts and metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from mlflow.tracking import MlflowClient

import harness as hs
from harness.cli import main
from harness.evaluate import metrics as m
from harness.evaluate import report
from harness.evaluate.attribution import drop_one, weighted_signals


def pearson(a: list[float], b: list[float]) -> float:
    """Correlation by the textbook formula, one value at a time."""
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return cov / math.sqrt(va * vb)


@pytest.fixture
def table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 203
    pred = rng.normal(size=n) * 1e-4
    y = 0.6 * pred + rng.normal(size=n) * 1e-4
    y[[5, 50, 140]] = np.nan  # horizons past the data
    y[[7, 8]] = 0.0
    t = np.cumsum(rng.integers(1, 1000, size=n)).astype(np.int64) * 1_000_000
    return t, pred, y


def test_ic_r2_and_hit_rate_match_brute_force(table) -> None:  # type: ignore[no-untyped-def]
    _, pred, y = table
    pairs = [(p, a) for p, a in zip(pred, y, strict=True) if not math.isnan(a)]
    ps, ys = [p for p, _ in pairs], [a for _, a in pairs]
    assert m.ic(pred, y) == pytest.approx(pearson(ps, ys), rel=1e-12)
    mean = sum(ys) / len(ys)
    sse = sum((p - a) ** 2 for p, a in pairs)
    sst = sum((a - mean) ** 2 for a in ys)
    assert m.r2(pred, y) == pytest.approx(1 - sse / sst, rel=1e-12)
    hits = [(p > 0) == (a > 0) for p, a in pairs if p != 0 and a != 0]
    assert m.hit_rate(pred, y) == pytest.approx(sum(hits) / len(hits), rel=1e-12)


def test_rolling_ic_quantile_means_and_autocorrelation_match_brute_force(table) -> None:  # type: ignore[no-untyped-def]
    t, pred, y = table
    ends, ics = m.rolling_ic(t, pred, y, windows=4)
    size = [51, 51, 51, 50]  # np.array_split of 203 rows into 4 blocks
    start = 0
    for k, s in enumerate(size):
        rows = zip(pred[start : start + s], y[start : start + s], strict=True)
        block = [(p, a) for p, a in rows if not math.isnan(a)]
        assert ends[k] == t[start + s - 1]
        assert ics[k] == pytest.approx(pearson([p for p, _ in block], [a for _, a in block]), rel=1e-12)
        start += s
    _, means = m.quantile_returns(pred, y, quantiles=4)
    pairs = sorted((p, a) for p, a in zip(pred, y, strict=True) if not math.isnan(a))
    edges = np.quantile([p for p, _ in pairs], [0.25, 0.5, 0.75])
    for q in range(4):
        lo = -math.inf if q == 0 else edges[q - 1]
        hi = math.inf if q == 3 else edges[q]
        inside = [a for p, a in pairs if lo <= p < hi or (q == 3 and p == hi)]
        assert means[q] == pytest.approx(sum(inside) / len(inside), rel=1e-12)
    for lag in (1, 5):
        assert m.autocorrelation(pred, lag) == pytest.approx(pearson(list(pred[:-lag]), list(pred[lag:])), rel=1e-12)
    assert math.isnan(m.autocorrelation(pred, 500))


def test_trades_markouts_with_a_fee_match_brute_force(table) -> None:  # type: ignore[no-untyped-def]
    _, pred, y = table
    threshold, fee = 1e-4, 0.5
    tr = m.trades(pred, y, 1.0, threshold, fee, "return")
    expected = [
        (i, (1 if p > 0 else -1) * a * 1e4 - fee)
        for i, (p, a) in enumerate(zip(pred, y, strict=True))
        if abs(p) > threshold and not math.isnan(a)
    ]
    assert list(tr.rows) == [i for i, _ in expected]
    np.testing.assert_allclose(tr.markout, [x for _, x in expected], rtol=1e-12)
    s = tr.summary()
    assert s["trades"] == len(expected)
    assert s["markout_mean"] == pytest.approx(sum(x for _, x in expected) / len(expected), rel=1e-12)
    assert s["win_rate"] == pytest.approx(sum(x > 0 for _, x in expected) / len(expected))
    assert tr.cumulative[-1] == pytest.approx(s["markout_total"])
    diff = m.trades(pred, y, 1.0, threshold, fee, "difference")  # label units: no bps, no fee
    assert diff.fee == 0.0 and diff.markout[0] == pytest.approx(expected[0][1] / 1e4 + fee / 1e4, rel=1e-9)
    assert m.default_threshold(np.array([-3.0, 1.0, 2.0, np.nan]), 0.5) == 2.0


def test_the_report_writes_its_page_figure_and_numbers(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t, pred, y = table
    cfg = report.ReportConfig(horizons=(1.0, 2.0), fee_bps=0.5, quantiles=4, windows=5, lags=(1, 3))
    r = report.build(t, pred, {1.0: y, 2.0: y * 1.5}, train_pred=pred, kind="return", config=cfg)
    flat = r.metrics()
    assert flat["report/ic_1s"] == pytest.approx(m.ic(pred, y))
    assert flat["report/ic_2s"] == pytest.approx(m.ic(pred, y))  # a scaled label: the same correlation
    assert flat["report/threshold"] == pytest.approx(np.quantile(np.abs(pred), 0.9))
    assert flat["report/autocorr_lag3"] == pytest.approx(m.autocorrelation(pred, 3))
    paths = report.write(r, tmp_path / "report", "a title")
    assert [p.name for p in paths] == ["report.json", "report.png", "report.html"]
    data = json.loads(paths[0].read_text())
    assert data["by_horizon"]["1"]["ic"] == pytest.approx(flat["report/ic_1s"])
    assert len(data["rolling_ic"]["ic"]) == 5
    assert paths[1].stat().st_size > 10_000 and paths[1].read_bytes()[:4] == b"\x89PNG"
    page = paths[2].read_text()
    assert "a title" in page and "report.png" in page and "hit rate" in page


# ------------------------------------------------------------------------------------- recording, attribution


def two_signal_circuit() -> hs.Circuit:
    c = hs.Circuit("two_signals")
    x1, x2, y = c.input("x1"), c.input("x2"), c.input("y")
    c.trigger("tick", x1, x2, y)
    s1, s2 = hs.ops.tanh(x1), hs.ops.tanh(x2)
    c.output("pred", hs.lib.linear([s1, s2], "head"))
    c.output("y", y)
    return c


def events(n: int = 3000) -> pa.Table:
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = np.tanh(x1) + 0.05 * rng.normal(size=n)  # only x1 matters
    t = np.arange(n, dtype=np.int64) * 100_000_000  # 10 rows a second
    trig = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array(["tick"]))
    return pa.table({"t": t, "trigger": trig, "x1": x1, "x2": x2, "y": y})


def test_optional_horizons_are_nan_past_the_data_and_drop_no_row() -> None:
    c = two_signal_circuit()
    k = hs.compile(c, backend="python")
    lab = hs.replay.Label("y", (1.0,), "difference")
    plain = hs.replay.record(k, events(), labels=[lab])
    k.reset()
    more = hs.replay.record(k, events(), labels=[lab], optional=[hs.replay.Label("y", (0.5, 1.0, 30.0), "difference")])
    assert more.table.num_rows == plain.table.num_rows  # the optional horizons drop nothing
    same = more.table.column("label_y_difference_1s").to_numpy()
    np.testing.assert_array_equal(same, plain.table.column("label_y_difference_1s").to_numpy())
    far = more.table.column("label_y_difference_30s").to_numpy()
    t, end = more.table.column("t").to_numpy(), events().column("t")[-1].as_py()
    assert np.all(np.isnan(far[t + 30 * 10**9 > end])) and np.all(np.isfinite(far[t + 30 * 10**9 <= end]))
    y = events().column("y").to_numpy()
    half = more.table.column("label_y_difference_0.5s").to_numpy()
    assert half[0] == pytest.approx(y[5] - y[0])  # 0.5 s = 5 rows later


def test_drop_one_attribution_finds_the_signal_that_matters() -> None:
    res = hs.fit.fit(
        two_signal_circuit(), events(), target="pred", label=("y", 0.0), backend="python",
        trainer={"optimizer": "lbfgs", "epochs": 30, "progress": False}, report_horizons=(0.5, 1.0),
    )  # fmt: skip
    assert [s.weight for s in weighted_signals(res.trace)] == ["head_w0", "head_w1"]
    rows = res.split.test.numpy()
    attr = {a["weight_name"]: a for a in drop_one(res.model, res.data.y, rows)}
    assert attr["head_w0"]["d_ic"] < -0.5  # dropping x1 loses nearly all of the IC
    assert abs(attr["head_w1"]["d_ic"]) < 0.01  # dropping x2 changes nothing
    assert attr["head_w0"]["weight"] == pytest.approx(res.params["head_w0"])
    assert res.model.param_values() == {k: res.params[k] for k in res.model.param_names}  # restored after each drop
    assert set(res.data.horizon_labels) == {0.5, 1.0} and len(res.data.horizon_labels[1.0]) == len(res.data.y)


# ------------------------------------------------------------------------------------------------ pipeline


def test_a_pipeline_run_logs_its_report(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    main(["stream.events=30000", "trainer.epochs=3", f"tracking.uri={uri}", "report.horizons=[1,2,5]"])
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    metrics = run.data.metrics
    assert metrics["report/ic_1s"] == pytest.approx(metrics["test_ic"], rel=1e-9)  # the label horizon's IC
    assert {"report/ic_2s", "report/ic_5s", "report/hit_rate_1s", "report/trades_5s", "report/autocorr_lag1"} <= set(
        metrics
    )
    assert any(k.startswith("report/attr_d_ic/") for k in metrics)
    files = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert files == {"report/report.html", "report/report.png", "report/report.json"}


def test_the_report_can_be_switched_off_and_bad_settings_are_clear(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    main(["stream.events=20000", "trainer.epochs=2", f"tracking.uri={uri}", "report.enabled=false"])
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    assert not any(k.startswith("report/") for k in run.data.metrics)
    with pytest.raises(SystemExit):
        main(["stream.events=2000", f"tracking.uri={uri}", "report.quantiles=0"])
    assert "report.quantiles=0 must be >= 1" in capsys.readouterr().err
