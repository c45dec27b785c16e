"""hs.fit.fit acceptance: known parameters are recovered, folding changes nothing, kernel and torch agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import SHARED_DATA, real_data_missing

import harness as hs
from harness import examples
from harness.fit.data import collect
from harness.fit.model import CircuitModel

DAY = SHARED_DATA / "derived" / "binance-futures_2024-08-08"
L2 = DAY / "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz"
TRADES = DAY / "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz"


def ticks(n: int, seed: int = 0, *, two: bool = False) -> pa.Table:
    """Irregular events: trigger "a" sets x (and the truth column z), "b" sets y (when `two`)."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.integers(1_000_000, 200_000_000, n)).astype(np.int64)
    trig = rng.choice(["a", "b"], n) if two else np.array(["a"] * n)
    x = np.cumsum(rng.normal(size=n)) * 0.05 + rng.normal(size=n)
    y = rng.normal(size=n)
    if not two:
        return pa.table({"t": t, "trigger": trig, "x": x, "y": y})
    is_a = trig == "a"
    return pa.table(
        {
            "t": t,
            "trigger": trig,
            "x": pa.array(np.where(is_a, x, 0.0), mask=~is_a),
            "y": pa.array(np.where(~is_a, y, 0.0), mask=is_a),
        }
    )


def xy_circuit(name: str, *, two: bool = False) -> tuple[hs.Circuit, hs.Node, hs.Node]:
    c = hs.Circuit(name)
    x, y = c.input("x"), c.input("y")
    if two:
        c.trigger("a", x)
        c.trigger("b", y)
    else:
        c.trigger("a", x, y)
    return c, x, y


def test_linear_circuit_recovers_its_weights() -> None:
    c, x, y = xy_circuit("lin")
    w1, w2 = c.parameter("w1", init=0.0), c.parameter("w2", init=0.0)
    c.output("pred", w1 * x + w2 * y)
    c.output("truth", 0.7 * x - 0.3 * y)
    res = hs.fit.fit(c, ticks(4000), target="pred", label=("truth", 0.0), trainer={"epochs": 300}, seed=0)
    assert res.params["w1"] == pytest.approx(0.7, abs=1e-4)
    assert res.params["w2"] == pytest.approx(-0.3, abs=1e-4)
    assert set(res.metrics) >= {"train_loss", "val_loss", "test_mse", "test_r2", "test_ic"}
    assert res.metrics["test_r2"] > 0.999999 and res.metrics["test_ic"] > 0.999999
    assert res.parity["max_abs_error"] <= 1e-12
    assert len(res.history) == 300 and res.history[0]["train_loss"] > res.history[-1]["train_loss"]


def test_ewma_half_life_that_made_the_label_is_recovered() -> None:
    c, x, _ = xy_circuit("ew")
    hl = c.parameter("hl", init=0.5, lower=0.01)
    c.output("pred", hs.ops.ewma(x, halflife=hl))
    c.output("truth", hs.ops.ewma(x, halflife=2.0))
    res = hs.fit.fit(c, ticks(6000), target="pred", label=("truth", 0.0), trainer={"lr": 0.1, "epochs": 150})
    assert res.params["hl"] == pytest.approx(2.0, rel=0.02)
    assert res.parity["max_abs_error"] <= 1e-9


def test_tanh_combination_of_three_signals_recovers_its_weights() -> None:
    c, x, y = xy_circuit("tanh3", two=True)
    signals = [x, hs.ops.ewma(x, halflife=1.0), y]
    w = [c.parameter(f"w{i}", init=0.1) for i in range(3)]
    c.output("pred", hs.ops.tanh(hs.ops.linear(signals, w)))
    c.output("truth", hs.ops.tanh(hs.ops.linear(signals, [0.5, -0.2, 0.8])))
    res = hs.fit.fit(
        c, ticks(4000, seed=1, two=True), target="pred", label=("truth", 0.0),
        trainer={"optimizer": "lbfgs", "lr": 1.0, "epochs": 30},
    )  # fmt: skip
    for i, want in enumerate([0.5, -0.2, 0.8]):
        assert res.params[f"w{i}"] == pytest.approx(want, abs=1e-4)


def wide_circuit() -> hs.Circuit:
    """Eight learnable EWMAs on two triggers, a nested decay, an observed read and a linear head."""
    c, x, y = xy_circuit("wide", two=True)
    hls = [c.parameter(f"hl{i}", init=0.2 * (i + 1), lower=0.01) for i in range(8)]
    ws = [c.parameter(f"w{i}", init=0.1 * i - 0.3) for i in range(8)]
    es = [hs.ops.ewma(x if i % 2 else y, halflife=h) for i, h in enumerate(hls)]
    nested = hs.ops.decay_sum(hs.ops.tanh(es[0] * ws[1]) + y, halflife=hls[2])
    observed = y * hs.observe(es[1])
    c.output("pred", hs.ops.linear([*es, nested, observed], [*ws, 0.5, ws[3]], bias=c.parameter("b", init=0.1)))
    c.output("truth", hs.ops.ewma(x, 1.0) - hs.ops.ewma(y, 0.3))
    return c


@pytest.fixture(scope="module")
def wide_data() -> hs.fit.FitData:
    c = wide_circuit()
    tr = hs.fit.trace(c, "pred")
    kernel = hs.compile(tr.recording_circuit())
    return collect(tr, kernel, ticks(3000, seed=2, two=True), label=hs.fit.make_label(("truth", 0.0)))


def test_folded_and_unfolded_models_agree_in_values_and_gradients(wide_data: hs.fit.FitData) -> None:
    results = []
    for fold in (True, False):
        model = CircuitModel(wide_data, fold=fold)
        pred = model()
        (pred**2).sum().backward()
        results.append((pred.detach(), model.raw.grad.clone(), len(model.groups)))
    (p_fold, g_fold, n_fold), (p_flat, g_flat, n_flat) = results
    assert n_fold < n_flat  # something was folded
    # identical up to the last bits (torch's vector exp2 differs from its scalar tail by an ulp at most)
    torch.testing.assert_close(p_fold, p_flat, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(g_fold, g_flat, rtol=1e-12, atol=1e-13)


def test_model_at_the_initial_parameters_equals_the_kernel(wide_data: hs.fit.FitData) -> None:
    model = CircuitModel(wide_data)
    with torch.no_grad():
        pred = model().numpy()
    np.testing.assert_allclose(pred, wide_data.kernel_target, rtol=1e-12, atol=1e-12)
    assert wide_data.n_rows == len(wide_data.y) > 2900


def test_mini_batches_give_the_full_batch_values(wide_data: hs.fit.FitData) -> None:
    model = CircuitModel(wide_data)
    with torch.no_grad():
        full = model()
        rows = torch.tensor([3, 17, 400, 1500, 2100])
        torch.testing.assert_close(model(rows), full[rows], rtol=1e-14, atol=1e-15)


def test_two_fits_with_one_seed_are_bit_identical() -> None:
    c = wide_circuit()
    events = ticks(1500, seed=3, two=True)
    trainer = {"lr": 0.05, "epochs": 15, "batch_size": 256}
    a = hs.fit.fit(c, events, target="pred", label=("truth", 0.0), trainer=trainer, seed=7)
    b = hs.fit.fit(c, events, target="pred", label=("truth", 0.0), trainer=trainer, seed=7)
    assert a.params == b.params
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    other = hs.fit.fit(c, events, target="pred", label=("truth", 0.0), trainer=trainer, seed=8)
    assert other.params != a.params  # the seed orders the mini-batches


def test_saved_parameters_load_into_a_fresh_kernel(tmp_path: Path) -> None:
    c = wide_circuit()
    res = hs.fit.fit(c, ticks(1500, seed=4, two=True), target="pred", label=("truth", 0.0), trainer={"epochs": 5})
    path = res.save_params(tmp_path / "out" / "params.json")
    kernel = hs.compile(c)
    kernel.set_params(json.loads(path.read_text()))
    assert kernel.params == res.params
    assert set(res.params) == set(c.parameters)


def fit_market(events: pa.Table, epochs: int) -> hs.fit.FitResult:
    return hs.fit.fit(
        examples.fit_market(), events, target="pred", label=("mid", 1.0),
        sampler=hs.replay.every_n(5, trigger="trade"), trainer={"lr": 0.05, "epochs": epochs},
    )  # fmt: skip


def test_parity_after_fitting_on_the_synthetic_stream() -> None:
    res = fit_market(hs.streams.synthetic(60_000, seed=5), epochs=40)
    assert res.parity["rows"] > 5000
    assert res.parity["max_abs_error"] <= 1e-12
    assert res.params["hl_press"] != 0.5 and res.params["hl_mid"] != 2.0  # the half-lives moved
    assert res.metrics["test_ic"] > 0.2  # the generator's flow signal is there to find
    assert res.data.dropped["no_horizon"] > 0


def test_parity_after_fitting_on_the_real_btcusdt_sample() -> None:
    if not (L2.exists() and TRADES.exists()):
        pytest.skip(real_data_missing(DAY))
    res = fit_market(hs.streams.tardis(book=L2, trades=TRADES), epochs=20)
    assert res.parity["rows"] > 3000
    assert res.parity["max_abs_error"] <= 1e-12
    assert np.isfinite(res.metrics["test_mse"])


def test_reference_backend_fits_the_same() -> None:
    c, x, y = xy_circuit("lin_ref")
    w1, w2 = c.parameter("w1", init=0.0), c.parameter("w2", init=0.0)
    c.output("pred", w1 * x + w2 * y)
    c.output("truth", 0.7 * x - 0.3 * y)
    kw = {"target": "pred", "label": ("truth", 0.0), "trainer": {"epochs": 20}, "seed": 0}
    cpp = hs.fit.fit(c, ticks(800), **kw)
    ref = hs.fit.fit(c, ticks(800), backend="python", **kw)
    assert cpp.params == ref.params


def test_nan_guard_names_the_operator_row_and_inputs() -> None:
    c, x, y = xy_circuit("nanny")
    w = c.parameter("w", init=1.0)
    c.output("pred", hs.ops.log(w * hs.ops.abs(x)) + y)
    c.output("truth", y)
    t = np.arange(1, 101, dtype=np.int64) * 1_000_000
    x = np.linspace(1.0, 2.0, 100)
    x[37] = 0.0  # log(0) = -inf in the 38th row
    events = pa.table({"t": t, "trigger": ["a"] * 100, "x": x, "y": np.ones(100)})
    with pytest.raises(hs.fit.FitError, match="NaN guard") as err:
        hs.fit.fit(c, events, target="pred", label=("truth", 0.0), trainer={"epochs": 3})
    message = str(err.value)
    assert "log node log_" in message and "produced -inf from inputs [0.0]" in message
    assert "training row 37" in message and f"t={t[37]}" in message


def test_nan_guard_names_a_bad_label() -> None:
    c, x, y = xy_circuit("nanlabel")
    w = c.parameter("w", init=1.0)
    c.output("pred", w * x)
    c.output("truth", y)
    y = np.ones(50)
    y[10] = np.inf
    events = pa.table({"t": np.arange(1, 51, dtype=np.int64), "trigger": ["a"] * 50, "x": np.ones(50), "y": y})
    with pytest.raises(hs.fit.FitError, match=r"the label 'label_truth_value_0s' is inf at training row 10"):
        hs.fit.fit(c, events, target="pred", label=("truth", 0.0), trainer={"epochs": 2})


def test_fit_errors_name_the_problem() -> None:
    c, x, y = xy_circuit("errs")
    w = c.parameter("w", init=1.0)
    c.output("pred", w * x)
    c.output("plain", x + y)
    events = ticks(100)
    with pytest.raises(hs.fit.FitError, match="depends on no learnable parameter"):
        hs.fit.fit(c, events, target="plain", label=("plain", 0.0))
    with pytest.raises(hs.fit.FitError, match="label output 'mid' is not an output"):
        hs.fit.fit(c, events, target="pred", label=("mid", 1.0))
    with pytest.raises(hs.fit.FitError, match="one horizon"):
        hs.fit.fit(c, events, target="pred", label=("plain", (1.0, 2.0)))
    with pytest.raises(hs.fit.FitError, match="kind 'nope'"):
        hs.fit.fit(c, events, target="pred", label=("plain", 1.0, "nope"))
    with pytest.raises(hs.fit.FitError, match="replayed twice"):
        hs.fit.fit(c, iter(events.to_batches()), target="pred", label=("plain", 0.0))
    with pytest.raises(hs.fit.TrainerError, match="unknown key 'epoch'"):
        hs.fit.fit(c, events, target="pred", label=("plain", 0.0), trainer={"epoch": 3})
    with pytest.raises(hs.fit.FitError, match="no rows to fit on"):
        hs.fit.fit(c, events.slice(0, 3), target="pred", label=("plain", 100.0))


def test_events_can_be_a_function_returning_batches() -> None:
    c, x, y = xy_circuit("lazy")
    w = c.parameter("w", init=0.0)
    c.output("pred", w * x)
    c.output("truth", 2.0 * x)
    events = ticks(500)
    res = hs.fit.fit(
        c, lambda: iter(events.to_batches(max_chunksize=64)), target="pred", label=("truth", 0.0),
        trainer={"optimizer": "lbfgs", "lr": 1.0, "epochs": 5},
    )  # fmt: skip
    assert res.params["w"] == pytest.approx(2.0, abs=1e-9)
    assert res.parity["rows"] == 500


def test_folds_wider_than_the_cap_are_split_and_agree(wide_data: hs.fit.FitData, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import harness.fit.model as model_module

    whole = CircuitModel(wide_data)
    monkeypatch.setattr(model_module, "FOLD_ELEMENTS", 2 * wide_data.n_rows)  # two members per fold at most
    split = CircuitModel(wide_data)
    assert len(split.groups) > len(whole.groups)
    cap = model_module.FOLD_ELEMENTS
    assert all(len(g.members) * split._width[g.domain] <= cap for g in split.groups if not g.scalar)
    with torch.no_grad():
        torch.testing.assert_close(split(), whole(), rtol=1e-13, atol=1e-15)
