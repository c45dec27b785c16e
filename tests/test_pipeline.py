"""The Hydra/MLflow pipeline end to end: composition, a logged run, failures, sweeps and replays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA, real_data
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from mlflow.tracking import MlflowClient

import harness as hs
from harness import examples
from harness.cli import main
from harness.pipeline import build, schema, targets

QUICK = ["stream.events=40000", "trainer.epochs=5"]
GROUPS = {
    "circuit": sorted(p.stem for p in (schema.CONF_DIR / "circuit").glob("*.yaml")),
    "stream": sorted(p.stem for p in (schema.CONF_DIR / "stream").glob("*.yaml")),
    "trainer": sorted(p.stem for p in (schema.CONF_DIR / "trainer").glob("*.yaml")),
    "tracking": sorted(p.stem for p in (schema.CONF_DIR / "tracking").glob("*.yaml")),
    "execution": sorted(p.stem for p in (schema.CONF_DIR / "execution").glob("*.yaml")),
}
LAUNCHERS = sorted(p.stem for p in (schema.CONF_DIR / "hydra" / "launcher").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in schema.EXPERIMENTS_DIR.glob("*.yaml"))
PLUGINS = {"slurm": "hydra_plugins.hydra_submitit_launcher", "ray_cluster": "hydra_plugins.hydra_ray_launcher"}


@pytest.fixture(scope="module", autouse=True)
def _schemas() -> None:
    schema.register()


def composed(overrides: list[str], hydra: bool = False):  # type: ignore[no-untyped-def]
    with initialize_config_dir(config_dir=str(schema.CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes(group: str, option: str) -> None:
    cfg = composed([f"{group}={option}"])
    assert cfg[group] is not None
    if group in ("circuit", "stream") and option != "custom":  # each names its function, which exists
        assert callable(targets.locate(cfg[group].target, f"{group}.target"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment: str) -> None:
    cfg = composed([f"+experiment={experiment}"], hydra=True)
    assert isinstance(build.build_circuit(cfg), hs.Circuit)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_every_launcher_preset_composes(launcher: str) -> None:
    plugin = PLUGINS.get(launcher)
    if plugin is not None:
        pytest.importorskip(plugin, reason=f"the launcher plugin of hydra/launcher={launcher} is not installed")
    cfg = composed([f"hydra/launcher={launcher}"], hydra=True)
    assert cfg.hydra.launcher._target_


def test_typos_and_wrong_types_fail_at_compose_time() -> None:
    with pytest.raises(ConfigCompositionException, match="trainer.lrr"):
        composed(["trainer.lrr=0.1"])
    with pytest.raises(ConfigCompositionException, match="circuit.halflife_mid"):
        composed(["circuit.halflife_mid=abc"])
    with pytest.raises(ConfigCompositionException):
        composed(["stream.events=many"])


TRADES_HEAD = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
T0 = 1_723_161_255_000_000  # 2024-08-08 in tardis microseconds


def tardis_trades(folder: Path, days: int) -> list[Path]:
    """`days` tiny tardis trades files (20 trades each, in time order across the files)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in range(days):
        t = T0 + d * 86_400_000_000
        rows = [f"x,Y,{t + 1000 + i},{t + 2000 + i},{i},{'buy' if i % 2 else 'sell'},{100 + i},0.5" for i in range(20)]
        paths.append(folder / f"trades_{d}.csv")
        paths[-1].write_text("\n".join([TRADES_HEAD, *rows]) + "\n")
    return paths


def test_a_file_key_takes_one_path_a_glob_or_a_list(tmp_path: Path) -> None:
    first, second = tardis_trades(tmp_path / "days", 2)
    for value, files in (
        (str(first), [first]),  # a single path (was "str is not a ListConfig")
        (f"{tmp_path}/days/trades_*.csv", [first, second]),  # a glob, sorted
        (f"[{first},{tmp_path}/days/trades_1*]", [first, second]),  # a list whose items may be globs
    ):
        events = build.load_stream(composed(["stream=tardis", f"stream.trades={value}"]))
        assert events.files == [str(f) for f in files] and events.rows == 20 * len(files)
    for value, message in (
        (f"{tmp_path}/days/nothing_*.csv", "stream.trades: no file matches"),
        (str(tmp_path / "missing.csv"), "stream.trades: data file .* does not exist"),
        ("[]", r"stream.trades=\[\] names no file"),
        ("3", "stream.trades=3 must be a file path, a glob or a list of them"),
    ):
        with pytest.raises(build.ConfigError, match=message):
            build.load_stream(composed(["stream=tardis", f"stream.trades={value}"]))


def test_an_older_logged_config_naming_builder_and_kind_still_builds() -> None:
    """Runs logged before `target` named their built-in circuit and stream by `circuit.builder`, `stream.kind`."""
    from omegaconf import OmegaConf

    old = OmegaConf.create(
        {
            "circuit": {"builder": "fit_market", "halflife_pressure": 0.5, "signals": ["pressure", "imbalance"]},
            "stream": {"kind": "synthetic", "events": 3000, "seed": 1, "chunk": 1000, "params": {}},
        }
    )
    new = composed(["circuit.signals=[pressure,imbalance]"])
    assert build.build_circuit(old).structure_hash() == build.build_circuit(new).structure_hash()
    assert (build.circuit_name(old), build.stream_name(old)) == ("fit_market", "synthetic")
    assert build.load_stream(old).digest == hs.streams.digest(hs.streams.synthetic(3000, seed=1))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory: the default store is sqlite:///<it>/mlflow.db."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HARNESS_PARENT_RUN_ID", raising=False)
    return tmp_path


def client_for(path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{path / 'mlflow.db'}")


def runs_of(path: Path) -> list:  # type: ignore[type-arg]
    client = client_for(path)
    exp = client.get_experiment_by_name("harness")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def artifacts(client: MlflowClient, run_id: str, path: str = "") -> list[str]:
    out = []
    for a in client.list_artifacts(run_id, path):
        out.extend(artifacts(client, run_id, a.path) if a.is_dir else [a.path])
    return out


def test_default_run_logs_everything(workdir: Path) -> None:
    assert main(QUICK) == 0
    (run,) = runs_of(workdir)
    client = client_for(workdir)
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    for key in ("test_mse", "test_r2", "test_ic", "replay_events_per_s", "compile_s", "fit_train_loss", "fit_val_loss"):
        assert key in m, key
    assert {"stage/build_s", "stage/stream_s", "stage/record_s", "stage/train_s", "stage/log_s"} <= set(m)
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 5  # one per epoch, with steps
    p = run.data.params
    assert p["trainer.epochs"] == "5" and p["stream.events"] == "40000"
    assert p["circuit.target"] == "harness.circuits:fit_market"
    tags = run.data.tags
    for key in ("harness.config_hash", "harness.kernel_hash", "harness.data_digest", "harness.git_commit"):
        assert len(tags[key]) >= 7, key
    assert tags["harness.git_dirty"] in ("true", "false")
    assert tags["harness.data_digest"] == hs.streams.digest(hs.streams.synthetic(40000, seed=0))
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == tags["harness.data_digest"][:36]
    assert dataset.dataset.name == "synthetic"  # the stream's function
    names = artifacts(client, run.info.run_id)
    for expected in (
        "config/resolved.yaml", "hydra/config.yaml", "hydra/overrides.yaml", "kernel/fit_market.cpp",
        "circuit/circuit.dot", "fit/params.json", "plots/loss.png", "plots/prediction_vs_label.png",
        "data/sample.parquet",
    ):  # fmt: skip
        assert expected in names, expected
    params = json.loads(Path(client.download_artifacts(run.info.run_id, "fit/params.json", str(workdir))).read_text())
    hs.compile(examples.fit_market()).set_params(params)  # the logged parameters load into the kernel


def test_a_failing_run_is_failed_with_its_reason_and_loses_nothing(workdir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(QUICK) == 0
    with pytest.raises(SystemExit) as exit_:
        main(["stream=parquet", "stream.path=missing.parquet"])
    assert exit_.value.code == 2
    assert "missing.parquet" in capsys.readouterr().err
    first, failed = runs_of(workdir)
    assert first.info.status == "FINISHED" and "test_mse" in first.data.metrics
    assert failed.info.status == "FAILED"
    assert "stream.path: data file 'missing.parquet' does not exist" in failed.data.tags["harness.error"]
    assert failed.data.params["stream.path"] == "missing.parquet"  # what was logged before the failure stays


def test_ctrl_c_ends_the_run_killed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.pipeline import build

    def interrupted(cfg):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "load_stream", interrupted)
    assert main(QUICK) == 130  # one line, no traceback, the shell's status for SIGINT
    (run,) = runs_of(workdir)
    assert run.info.status == "KILLED"
    assert "interrupted" in run.data.tags["harness.error"]


def test_tiny_tardis_run_on_the_real_btcusdt_sample(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_data("derived", "binance-futures_2024-08-08")
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(SHARED_DATA))
    assert main(["+experiment=btc_sample", "stream.limit=8000", "trainer.epochs=5"]) == 0
    (run,) = runs_of(workdir)
    assert run.info.status == "FINISHED"
    assert run.data.params["stream.target"] == "harness.pipeline.loaders:tardis"
    assert run.data.metrics["rows_train"] > 100
    assert run.data.metrics["parity_max_abs_error"] <= 1e-12
    assert "test_ic" in run.data.metrics


def test_replay_reproduces_a_run_and_refuses_changed_data(workdir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    data = workdir / "events.parquet"
    hs.streams.write_parquet(hs.streams.synthetic(30000, seed=4), data)
    assert main(["stream=parquet", f"stream.path={data}", "trainer.epochs=4"]) == 0
    (original,) = runs_of(workdir)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    assert main(["runs", "replay", original.info.run_id[:10], "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "identical" in out and "NO" not in out
    replay = runs_of(workdir)[-1]
    assert replay.data.tags["harness.replay_of"] == original.info.run_id
    assert replay.data.tags["harness.prediction_digest"] == original.data.tags["harness.prediction_digest"]
    hs.streams.write_parquet(hs.streams.synthetic(30000, seed=5), data)  # the data file changes
    assert main(["runs", "replay", original.info.run_id, "--tracking-uri", uri]) == 3
    assert "the data differs" in capsys.readouterr().out
    assert len(runs_of(workdir)) == 2  # refused before starting a run
    hs.streams.write_parquet(hs.streams.synthetic(30000, seed=4), data)  # the data is back as it was
    client_for(workdir).set_tag(original.info.run_id, "harness.kernel_hash", "0" * 64)  # as if the code had changed
    assert main(["runs", "replay", original.info.run_id, "--tracking-uri", uri]) == 3
    assert "the code differs" in capsys.readouterr().out


def sweep(workdir: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    """`harness -m OVERRIDES` in a fresh process (a multirun), with the default store of `workdir`."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID")}
    cmd = [sys.executable, "-m", "harness", "-m", *overrides]
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.mark.heavy
def test_multirun_with_joblib_makes_one_parent_and_four_children(workdir: Path) -> None:
    sweep(
        workdir, "hydra/launcher=joblib_local", "trainer.lr=0.01,0.1", "circuit.halflife_pressure=0.5,1.0",
        "stream.events=30000", "trainer.epochs=3",
    )  # fmt: skip
    runs = runs_of(workdir)
    parents = [r for r in runs if r.data.tags.get("harness.sweep") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and len(runs) == 5
    combos = {(r.data.params["trainer.lr"], r.data.params["circuit.halflife_pressure"]) for r in children}
    assert combos == {("0.01", "0.5"), ("0.01", "1.0"), ("0.1", "0.5"), ("0.1", "1.0")}
    assert all(r.info.status == "FINISHED" for r in children)
    assert parent.info.status == "FINISHED" and parent.data.metrics["children"] == 4
    assert parent.data.metrics["best_fit_val_loss"] == min(r.data.metrics["fit_val_loss"] for r in children)


@pytest.mark.heavy
def test_optuna_sweeper_minimises_the_returned_objective(workdir: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed")
    res = sweep(
        workdir, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.direction=minimize",
        "trainer.lr=interval(0.001,0.3)", "stream.events=20000", "trainer.epochs=2",
    )  # fmt: skip
    runs = runs_of(workdir)
    (parent,) = [r for r in runs if r.data.tags.get("harness.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3 and len({r.data.params["trainer.lr"] for r in children}) == 3
    assert "could not compile" not in res.stderr + res.stdout
    best = sorted((multirun := next((workdir / "multirun").glob("*/*"))).glob("optimization_results.yaml"))
    assert best, f"no optimization_results.yaml in {multirun}"
    assert "best_value" in best[0].read_text()
