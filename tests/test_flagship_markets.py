"""Several markets in the pipeline and the flagship: `stream.markets`, `task.label.market`, `circuit.markets`; the
two-market experiments end to end on small slices with per-market metrics; a fit that recovers the synthetic
lead-lag (the cross weight matters, the pair beats the single market out of sample, kernel == torch after fitting);
bad input naming the market."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import SHARED_DATA, real_data
from mlflow.tracking import MlflowClient

import harness as hs
from harness.circuits import trade_pressure
from harness.cli import main

PAIR = {"perp": {}, "spot": {"follows": "perp"}}


def run_metrics(tmp_path: Path) -> dict[str, float]:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    assert run.info.status == "FINISHED"
    return run.data.metrics


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_the_synthetic_pair_experiment_runs_with_per_market_metrics(here: Path) -> None:
    assert main(["+experiment=trade_pressure_pair_synthetic", "stream.events=60000", "trainer.epochs=3"]) == 0
    metrics = run_metrics(here)
    for m in ("perp", "spot"):
        assert metrics[f"market/{m}/events"] == metrics[f"market/{m}/book_events"] + metrics[f"market/{m}/trade_events"]
    assert metrics["market/perp/events"] + metrics["market/spot/events"] == 60_000
    assert metrics["parity_max_abs_error"] <= 1e-12
    assert metrics["rows_train"] > 500


def test_the_real_pair_experiment_runs_on_a_slice(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_data("derived", "binance_2024-08-08")
    real_data("derived", "binance-futures_2024-08-08")
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(SHARED_DATA))
    assert main(["+experiment=trade_pressure_pair_btc", "stream.limit=60000", "trainer.epochs=3"]) == 0
    metrics = run_metrics(here)
    assert metrics["market/perp/trade_events"] > 100 and metrics["market/spot/trade_events"] > 100
    assert metrics["parity_max_abs_error"] <= 1e-12


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["task.label.market=fut"], r"task.label.market='fut': the circuit 'trade_pressure' has no market 'fut'"),
        (["circuit.markets=[spot,perp,fut]"], r"are of market\(s\) 'fut', which have no stream"),
        (["circuit.markets=[spot,spot]"], r"markets \['spot'\] are named twice"),
        (["stream.markets.spot.kind=bogus"], r"stream.markets.spot.kind='bogus' must be one of"),
        (["+stream.markets.spot.book=x.csv"], r"stream.markets.spot: keys \['book'\] are not keys of a synthetic"),
        (["stream.markets.spot.follows=fut"], r"market 'spot' follows 'fut', which is not another of the markets"),
    ],
)
def test_bad_market_configs_name_the_market(here: Path, overrides: list[str], match: str, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        main(["+experiment=trade_pressure_pair_synthetic", "stream.events=20000", "trainer.epochs=1", *overrides])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err


def test_a_single_market_config_is_unchanged_by_label_market_none() -> None:
    from omegaconf import OmegaConf

    from harness.pipeline import build

    label = {"output": "mid", "horizon": 1.0, "kind": "return", "market": None}
    sampler = {"kind": "every_n", "n": 10, "trigger": "trade", "output": None}
    cfg = OmegaConf.create({"task": {"label": label, "sampler": sampler}})
    assert build.make_label(cfg).output == "mid"
    assert build.make_sampler(cfg).trigger == "trade"
    cfg.task.label.market = "spot"
    assert build.make_label(cfg).output == "spot.mid"
    assert build.make_sampler(cfg).trigger == "spot.trade"


# ----- the fit finds the lead-lag ---------------------------------------------------------------------------------
def lead_lag_circuit(pair: bool) -> hs.Circuit:
    """Spot's own signals, and with `pair` the cross-market family on perp (basis, perp's return) through `x`."""
    c = hs.Circuit("lead_lag_pair" if pair else "lead_lag_single")
    spot = hs.lib.market(c, market="spot")
    hl_ret, hl_flow = c.parameter("hl_ret", init=2.0, lower=0.01), c.parameter("hl_flow", init=1.0, lower=0.01)
    own = [
        hs.lib.normalize(hs.lib.ret_vs_ewma(spot.mid, hl_ret), "ret"),
        hs.lib.normalize(hs.ops.decay_sum(spot.signed_amount, halflife=hl_flow), "flow"),
    ]
    pred = hs.lib.linear(own, "own")
    if pair:
        perp = hs.lib.market(c, market="perp")
        cross = [hs.lib.normalize(hs.lib.basis(spot, perp), "basis"),
                 hs.lib.normalize(hs.lib.market_return(perp, 0.5), "perp_ret")]  # fmt: skip
        pred = pred + hs.lib.consume(hs.lib.linear(cross, "x", bias=False))
    c.output("pred", pred * 1e-4)
    c.output("spot.mid", spot.mid)
    return c


@pytest.fixture(scope="module")
def lead_lag_fits() -> dict[str, hs.fit.FitResult]:
    events = hs.streams.synthetic_markets(200_000, PAIR, seed=0)
    names = events.column("trigger").cast(pa.string()).to_numpy(zero_copy_only=False).astype(str)
    spot_only = events.filter(pa.array(np.char.startswith(names, "spot.")))
    spot_only = spot_only.select([c for c in spot_only.column_names if not c.startswith("perp.")])
    kw = {"target": "pred", "label": ("spot.mid", 1.0), "sampler": hs.replay.every_n(5, trigger="spot.trade"),
          "trainer": {"lr": 0.03, "epochs": 60, "patience": 20}, "seed": 0}  # fmt: skip
    return {
        "pair": hs.fit.fit(lead_lag_circuit(True), events, **kw),
        "single": hs.fit.fit(lead_lag_circuit(False), spot_only, **kw),
    }


def test_the_fit_recovers_the_synthetic_lead_lag(lead_lag_fits: dict[str, hs.fit.FitResult]) -> None:
    pair, single = lead_lag_fits["pair"], lead_lag_fits["single"]
    # the same spot rows in both (the single fit replays spot's events alone)
    assert pair.metrics["rows_test"] == single.metrics["rows_test"] > 1000
    # measured: pair test R² 0.273, IC 0.547; spot alone 0.099, 0.417 (seed 1: 0.186 / 0.498 vs 0.092 / 0.338; a
    # test period where the basis keeps an offset the train period did not see can undo it: seed 3, -0.17 / 0.29)
    assert pair.metrics["test_ic"] > single.metrics["test_ic"] + 0.08, (pair.metrics, single.metrics)
    assert pair.metrics["test_r2"] > single.metrics["test_r2"] + 0.1, (pair.metrics, single.metrics)
    # the cross weight on the basis: spot above perp -> spot falls (basis = (spot - perp) / perp); it outweighs
    # spot's own signals
    w = pair.params
    assert w["x_w0"] < 0 and abs(w["x_w0"]) > max(abs(w["own_w0"]), abs(w["own_w1"])), w


def test_kernel_and_torch_agree_after_fitting_across_markets(lead_lag_fits: dict[str, hs.fit.FitResult]) -> None:
    for res in lead_lag_fits.values():
        assert res.parity["max_abs_error"] <= 1e-12 and res.parity["rows"] > 100


def test_the_flagship_on_markets_builds_families_per_market_plus_the_cross_family() -> None:
    c = trade_pressure(markets=["spot", "perp"], penetration=False, fairs=False)
    assert set(c.triggers) == {"spot.book", "spot.trade", "perp.book", "perp.trade"}
    assert set(c.outputs) == {"pred", "spot.mid", "perp.mid"}
    params = set(c.parameters)
    assert {"spot_hl_press0", "perp_hl_press0", "x_perp_hl_lead0", "x_perp_basis_mean", "x_perp_head_w0"} <= params
    assert "head_w0" in params and "perp_head_w0" in params
    one = trade_pressure(markets=["spot"], penetration=False, fairs=False)
    assert set(one.triggers) == {"spot.book", "spot.trade"} and not any(p.startswith("x_") for p in one.parameters)
    no_cross = trade_pressure(markets=["spot", "perp"], penetration=False, fairs=False, cross=False)
    assert not any(p.startswith("x_") for p in no_cross.parameters)
