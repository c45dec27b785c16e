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
from harness.pipeline import loaders
from harness.pipeline.events import Events

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


T0_US = 1_723_161_255_000_000  # 2024-08-08 in microseconds (times before 2000 are implausible)
T0_MS = T0_US // 1000


def tardis_files(folder: Path, market: str, offset_us: int, latency_us: int) -> tuple[Path, Path]:
    """Tiny tardis.dev trades and quotes files of one market: exchange times `offset_us` apart from the other
    market's, captured `latency_us` later (so the local and the exchange clock order the markets differently)."""
    trades = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
    quotes = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
    for i in range(6):
        te = T0_US + offset_us + 1000 * i
        trades += f"x,Y,{te},{te + latency_us},{i},{'buy' if i % 2 else 'sell'},{100 + i},1\n"
        quotes += f"x,Y,{te + 300},{te + 300 + latency_us},1,{101 + i},{100 + i},2\n"
    paths = folder / f"{market}_trades.csv", folder / f"{market}_quotes.csv"
    paths[0].write_text(trades)
    paths[1].write_text(quotes)
    return paths


def binance_files(folder: Path, market: str, offset_ms: int) -> tuple[Path, Path]:
    """Tiny Binance vision trades and bookTicker files (with headers) of one market, times in milliseconds."""
    trades = "id,price,qty,quote_qty,time,is_buyer_maker\n"
    ticker = "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time\n"
    for i in range(5):
        t = T0_MS + offset_ms + 10 * i
        trades += f"{i},{100 + i},0.5,{50 + i / 2},{t},{'true' if i % 2 else 'false'}\n"
        ticker += f"{i},{99.5 + i},2,{100.5 + i},3,{t + 4},{t + 5}\n"
    paths = folder / f"{market}_trades.csv", folder / f"{market}_ticker.csv"
    paths[0].write_text(trades)
    paths[1].write_text(ticker)
    return paths


def loaded(events: Events) -> pa.Table:
    """All the events of a loaded stream as one table."""
    return pa.Table.from_batches(list(events.batches()))


def test_tardis_markets_each_on_its_own_clock_are_the_merge_of_their_reads(tmp_path: Path) -> None:
    perp, spot = tardis_files(tmp_path, "perp", 0, 900), tardis_files(tmp_path, "spot", 100, 200)
    specs = {"perp": {"kind": "tardis", "trades": str(perp[0]), "quotes": str(perp[1]), "clock": "exchange"},
             "spot": {"kind": "tardis", "trades": str(spot[0]), "quotes": str(spot[1])}}  # fmt: skip
    events = loaders.markets(specs, chunk=7)
    assert events.markets == ["perp", "spot"] and events.files == [str(p) for p in (*perp, *spot)]
    spot_local = hs.streams.tardis(trades=spot[0], quotes=spot[1], market="spot")
    want = hs.streams.merge(hs.streams.tardis(trades=perp[0], quotes=perp[1], clock="exchange", market="perp"),
                            spot_local)  # fmt: skip
    got = loaded(events)
    assert got.num_rows == 24 and got.equals(want)
    both_local = hs.streams.merge(hs.streams.tardis(trades=perp[0], quotes=perp[1], market="perp"), spot_local)
    assert not got.column("t").equals(both_local.column("t"))  # perp's clock is its own


def test_parquet_markets_are_the_merge_of_their_reads(tmp_path: Path) -> None:
    paths = {m: tmp_path / f"{m}.parquet" for m in ("perp", "spot")}
    hs.streams.write_parquet(hs.streams.synthetic(800, seed=1), paths["perp"])
    hs.streams.write_parquet(hs.streams.synthetic(600, seed=2, message_gap_ms=80.0), paths["spot"])
    events = loaders.markets({m: {"kind": "parquet", "path": str(p)} for m, p in paths.items()}, chunk=500)
    want = hs.streams.merge(*[hs.streams.read_parquet(p, market=m) for m, p in paths.items()])
    got = loaded(events)
    assert events.markets == ["perp", "spot"] and got.num_rows == 1400
    assert got.equals(want) and hs.streams.digest(got) == hs.streams.digest(want)


def test_binance_markets_are_the_merge_of_their_reads(tmp_path: Path) -> None:
    perp, spot = binance_files(tmp_path, "perp", 0), binance_files(tmp_path, "spot", 3)
    specs = {"perp": {"kind": "binance", "trades": str(perp[0]), "book_ticker": str(perp[1])},
             "spot": {"kind": "binance", "trades": str(spot[0])}}  # fmt: skip
    got = loaded(loaders.markets(specs))
    want = hs.streams.merge(hs.streams.binance(trades=perp[0], book_ticker=perp[1], market="perp"),
                            hs.streams.binance(trades=spot[0], market="spot"))  # fmt: skip
    assert got.num_rows == 15 and got.equals(want)
    counts = dict(zip(*np.unique(got.column("trigger").cast(pa.string()).to_numpy(zero_copy_only=False),
                                 return_counts=True), strict=True))  # fmt: skip
    assert counts == {"perp.quote": 5, "perp.trade": 5, "spot.trade": 5}


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


# the synthetic pair's markets turned into tardis markets of the files `tardis_files` writes
PERP_FROM_FILES = ["stream.markets.perp.kind=tardis", "+stream.markets.perp.trades=perp_trades.csv"]
SPOT_FROM_FILES = ["stream.markets.spot.kind=tardis", "~stream.markets.spot.follows",
                   "+stream.markets.spot.trades=spot_trades.csv"]  # fmt: skip
BOGUS_CLOCK = [*PERP_FROM_FILES, "+stream.markets.perp.clock=bogus", *SPOT_FROM_FILES]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["task.label.market=fut"], r"task.label.market='fut': the circuit 'trade_pressure' has no market 'fut'"),
        (["circuit.markets=[spot,perp,fut]"], r"are of market\(s\) 'fut', which have no stream"),
        (["circuit.markets=[spot,spot]"], r"markets \['spot'\] are named twice"),
        (["stream.markets.spot.kind=bogus"], r"stream.markets.spot.kind='bogus' must be one of"),
        (["+stream.markets.spot.book=x.csv"], r"stream.markets.spot: keys \['book'\] are not keys of a synthetic"),
        (["stream.markets.spot.follows=fut"], r"market 'spot' follows 'fut', which is not another of the markets"),
        (SPOT_FROM_FILES, r"stream.markets: synthetic markets cannot be merged with markets read from files"),
        (BOGUS_CLOCK, r"stream.markets.perp.clock='bogus' must be 'local' or 'exchange'"),
    ],
)
def test_bad_market_configs_name_the_market(here: Path, overrides: list[str], match: str, capsys) -> None:  # type: ignore[no-untyped-def]
    tardis_files(here, "perp", 0, 900)
    tardis_files(here, "spot", 100, 200)
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
