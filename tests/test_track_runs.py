"""`harness runs` (harness.runs.cli) on a small sqlite store written the way the pipeline writes runs:
list (limit, status filter, sweep children), show (prefix lookup and its errors, params by section, artifacts,
the error of a failed run), compare (differing params, metrics side by side, identity tags), the replay hook."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.runs.cli import main
from harness.track.query import RunsError, resolve_run

T0 = 1_767_000_000_000  # ms; runs start one minute apart in the order they are made
RESOLVED_YAML = "circuit:\n  halflife_mid: 1.0\ntrainer:\n  lr: 0.05\n"
PARAMS_JSON = json.dumps({"hl_mid": 1.25, "w0": 0.5}, indent=2)


@dataclass
class Store:
    uri: str
    ids: dict[str, str]  # run name -> run id
    ambiguous: str  # a one-character prefix shared by two runs of the experiment "crowded"


def _params(halflife: str = "1.0", lr: str = "0.05") -> dict[str, str]:
    return {
        "circuit.halflife_mid": halflife,
        "circuit.builder": "fit_market",
        "stream.events": "100000",
        "trainer.lr": lr,
        "task.seed": "0",
        "tracking.experiment": "harness",
    }


def _metrics(mse: float, fit: bool = True) -> dict[str, float]:
    """Final metrics; `fit=False`: an older run with the final losses as train_loss/val_loss, not fit_*."""
    losses = (
        {"fit_train_loss": 2 * mse, "fit_val_loss": 1.5 * mse}
        if fit
        else {"train_loss": 2 * mse, "val_loss": 1.5 * mse}
    )
    return {
        **losses, "test_mse": mse, "test_r2": 0.1, "test_ic": 0.3,
        "best_epoch": 7, "epochs_run": 10, "rows_train": 600, "rows_val": 200, "rows_test": 200,
        "parity_max_abs_error": 1e-12, "compile_s": 0.5, "replay_events_per_s": 2.5e6, "stage/build_s": 0.01,
    }  # fmt: skip


def _tags(config: str, kernel: str = "k" * 64, data: str = "d" * 64) -> dict[str, str]:
    return {
        "harness.config_hash": config,
        "harness.kernel_hash": kernel,
        "harness.data_digest": data,
        "harness.git_commit": "0123abcd",
        "harness.version.mlflow": "3.17.0",
    }


@pytest.fixture(scope="module")
def runs_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store with a finished baseline, a second finished run (other lr, other config hash), a failed run, and
    a sweep parent with two children; plus an experiment "crowded" with two runs sharing an id's first character."""
    tmp = tmp_path_factory.mktemp("runs")
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("harness", artifact_location=str(tmp / "artifacts"))
    ids: dict[str, str] = {}
    clock = iter(range(T0, T0 + 10**8, 60_000))

    def make(
        name: str, status: str, params: dict, metrics: dict, tags: dict, seconds: float = 12.0, history: bool = True
    ) -> str:
        start = next(clock)
        run = client.create_run(exp, start_time=start, tags={"mlflow.runName": name, **tags}, run_name=name)
        rid = run.info.run_id
        for key, value in params.items():
            client.log_param(rid, key, value)
        for epoch in range(3 if history else 0):  # per-epoch history, as the pipeline logs it
            for key, value in (("lr", 0.05), ("train_loss", 9.1 + epoch), ("val_loss", 9.2 + epoch)):
                client.log_metric(rid, key, value, step=epoch, timestamp=start)
        for key, value in metrics.items():
            client.log_metric(rid, key, value, timestamp=start)
        client.set_terminated(rid, status=status, end_time=start + int(seconds * 1000))
        ids[name] = rid
        return rid

    base = make("baseline", "FINISHED", _params(), _metrics(0.004), _tags("a" * 64), seconds=75)
    art = tmp / "upload"
    (art / "config").mkdir(parents=True)
    (art / "fit").mkdir()
    (art / "config" / "resolved.yaml").write_text(RESOLVED_YAML)
    (art / "fit" / "params.json").write_text(PARAMS_JSON)
    client.log_artifact(base, str(art / "config" / "resolved.yaml"), artifact_path="config")
    client.log_artifact(base, str(art / "fit" / "params.json"), artifact_path="fit")
    make("faster-lr", "FINISHED", _params(lr="0.1"), _metrics(0.002, fit=False), _tags("b" * 64), history=False)
    make(
        "broken", "FAILED", _params(), {"stage/build_s": 0.02},
        {**_tags("a" * 64), "harness.error": "FitError: no rows left after sampling"},
    )  # fmt: skip
    parent = make("sweep", "FINISHED", {}, {"children": 2}, {"harness.sweep": "parent"}, history=False)
    for i, hl in enumerate(("0.5", "2.0")):
        tags = {**_tags(f"{i}" * 64), "mlflow.parentRunId": parent}
        make(f"sweep-{i}", "FINISHED", _params(halflife=hl), _metrics(0.003 + i / 1000), tags)

    crowded = client.create_experiment("crowded", artifact_location=str(tmp / "crowded"))
    first: dict[str, str] = {}
    for _ in range(17):  # 16 hex digits: by the 17th run two share their first character
        rid = client.create_run(crowded).info.run_id
        if rid[0] in first:
            return Store(uri, ids, ambiguous=rid[0])
        first[rid[0]] = rid
    raise AssertionError("unreachable: pigeonhole")


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Rich tables 200 columns wide, so cells are not wrapped or cut and lines can be matched; the working
    directory a temporary one (compare writes its plot under outputs/)."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)


def run_cli(capsys: pytest.CaptureFixture[str], store: Store, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--tracking-uri", store.uri])
    out = capsys.readouterr()
    return code, out.out, out.err


def line(text: str, *needles: str) -> str:
    """The one output line that holds all `needles`."""
    found = [row for row in text.splitlines() if all(n in row for n in needles)]
    assert len(found) == 1, f"{needles} on {len(found)} lines of:\n{text}"
    return found[0]


# ---------------------------------------------------------------------------------------------- list


def test_list_is_newest_first_with_children_under_their_parent(capsys, runs_store: Store) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli(capsys, runs_store, "list")
    assert code == 0, err
    names = ["sweep ", "└ sweep-0", "└ sweep-1", "broken", "faster-lr", "baseline"]
    rows = [out.index(line(out, name)) for name in names]
    assert rows == sorted(rows), out  # the sweep is newest; its children follow it, oldest first
    ids = runs_store.ids
    assert ids["baseline"][:8] in line(out, "baseline")
    assert "FAILED" in line(out, "broken")
    assert line(out, "sweep ").rstrip().endswith("sweep")  # the parent column (the last) marks the sweep parent
    child = line(out, "sweep-1")
    assert f"↳ {ids['sweep'][:8]}" in child and "0.004" in child  # parent marker and test_mse
    base = line(out, "baseline")
    assert "1m15s" in base and "0.004" in base and "0.3" in base  # duration, test_mse, test_ic
    assert "0.006" in base and "11.2" not in base  # val_loss: the best epoch's (fit_val_loss), not the last epoch's
    assert "0.003" in line(out, "faster-lr")  # a run without fit_val_loss: its val_loss


def test_list_limit_and_status_filter(capsys, runs_store: Store) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli(capsys, runs_store, "list", "--limit", "2")
    assert code == 0
    assert "2 newest runs" in out
    assert "sweep-1" in out and "sweep-0" in out and "baseline" not in out and "broken" not in out
    assert f"↳ {runs_store.ids['sweep'][:8]}" in line(out, "sweep-0")  # parent not shown: still marked

    code, out, _ = run_cli(capsys, runs_store, "list", "--status", "failed")
    assert code == 0
    assert "broken" in out and "baseline" not in out and "sweep" not in out

    code, out, _ = run_cli(capsys, runs_store, "list", "--status", "KILLED")
    assert code == 0 and "no KILLED runs in experiment 'harness'" in out


def test_list_all_experiments_adds_the_experiment_column(capsys, runs_store: Store) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli(capsys, runs_store, "list", "--all-experiments", "--limit", "100")
    assert code == 0
    assert "experiment" in line(out, "run", "name", "status")
    assert "harness" in line(out, "baseline")
    assert out.count("crowded") >= 2


@pytest.mark.parametrize("columns", [80, 60])
def test_list_fits_a_narrow_or_piped_terminal(capsys, runs_store: Store, monkeypatch, columns: int) -> None:  # type: ignore[no-untyped-def]
    """Piped (rich assumes 80 columns) or narrow: no line is wider than the terminal, the columns that stay keep
    their full values (ids, status, metrics) and drop out whole, the least useful first; long names are cut."""
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = run_cli(capsys, runs_store, "list")
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(row) for row in lines) <= columns, out
    header = line(out, "run", "name", "status")
    ids = runs_store.ids
    base = line(out, ids["baseline"][:8])
    assert "baseline" in base and "FINISHED" in base
    if columns == 80:
        assert header.split() == ["run", "name", "status", "start", "duration", "test_r2", "test_ic", "val_loss"]
        assert "0.1" in base.split() and "0.3" in base.split() and "0.006" in base.split() and "1m15s" in base
        day, minute = base.split()[3:5]  # the short form of the start time: month-day hour:minute
        assert len(day) == len("12-29") and day[2] == "-" and len(minute) == len("10:20") and minute[2] == ":"
    else:
        assert header.split()[:3] == ["run", "name", "status"] and "parent" not in header
        assert len(header.split()) < 8


def test_list_as_json_and_csv_has_every_field_in_full(capsys, runs_store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    monkeypatch.setenv("COLUMNS", "40")  # machine-readable output does not depend on the terminal
    code, out, err = run_cli(capsys, runs_store, "list", "--format", "json")
    assert code == 0, err
    records = json.loads(out)
    by_name = {r["name"]: r for r in records}
    ids = runs_store.ids
    assert [r["name"] for r in records] == ["sweep", "sweep-0", "sweep-1", "broken", "faster-lr", "baseline"]
    base = by_name["baseline"]
    assert base["run_id"] == ids["baseline"] and base["status"] == "FINISHED" and base["duration_s"] == 75.0
    assert base["test_mse"] == 0.004 and base["val_loss"] == pytest.approx(0.006) and base["test_ic"] == 0.3
    assert base["start"].endswith("+00:00") and base["parent_run_id"] is None and base["experiment"] == "harness"
    child = by_name["sweep-1"]
    assert child["parent_run_id"] == ids["sweep"] and child["depth"] == 1 and by_name["sweep"]["sweep_parent"]
    assert by_name["broken"]["test_r2"] is None

    code, out, err = run_cli(capsys, runs_store, "list", "--format", "csv", "--status", "failed")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["run_id"] == ids["broken"] and rows[0]["test_r2"] == ""
    code, out, _ = run_cli(capsys, runs_store, "list", "--format", "json", "--status", "killed")
    assert code == 0 and json.loads(out) == []


def test_list_errors_are_one_line_and_exit_2(capsys, runs_store: Store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli(capsys, runs_store, "list", "--experiment", "nope")
    assert code == 2 and out == ""
    assert err.startswith("error: no experiment named 'nope'") and "crowded, harness" in err
    assert err.count("\n") == 1

    missing = tmp_path / "absent" / "mlflow.db"
    assert main(["list", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: no MLflow store at {missing} (nothing tracked there yet?); pass --tracking-uri\n"
    assert not missing.parent.exists()  # looking does not create a store

    assert main(["list", "--limit", "0", "--tracking-uri", runs_store.uri]) == 2
    assert "--limit: must be >= 1" in capsys.readouterr().err


def test_unreachable_server_is_an_error_line(capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    assert main(["list", "--tracking-uri", "http://127.0.0.1:9"]) == 2  # port 9: discard, nothing listens
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read the MLflow store http://127.0.0.1:9: ") and err.count("\n") == 1
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------- show


def test_show_finds_a_run_by_prefix_and_groups_params(capsys, runs_store: Store) -> None:  # type: ignore[no-untyped-def]
    rid = runs_store.ids["baseline"]
    code, out, err = run_cli(capsys, runs_store, "show", rid[:10])
    assert code == 0, err
    assert f"run {rid}" in out
    assert "FINISHED" in line(out, "status") and "1m15s" in line(out, "duration")
    assert "a" * 64 in line(out, "harness.config_hash") and "3.17.0" in line(out, "harness.version.mlflow")
    assert "error:" not in out
    sections = [line(out, "│ circuit ", "builder"), line(out, "│ stream ", "events", "100000")]
    sections += [
        line(out, "│ trainer ", "lr", "0.05"),
        line(out, "│ task ", "seed"),
        line(out, "│ tracking ", "experiment"),
    ]
    assert [out.index(s) for s in sections] == sorted(out.index(s) for s in sections)  # sections in config order
    assert "halflife_mid" in line(out, "halflife_mid", "1.0") and "circuit.halflife_mid" not in out
    assert "0.004" in line(out, "│ test_mse ") and "7" in line(out, "│ best_epoch ")
    assert "11.2" in line(out, "│ val_loss ")  # the last epoch's, as MLflow keeps it
    order = [out.index(f"│ {m} ") for m in ("test_mse", "fit_val_loss", "val_loss", "compile_s", "stage/build_s")]
    assert order == sorted(order)  # key metrics first, stage timings last
    assert "artifacts (2 files" in out
    assert f"{len(RESOLVED_YAML)} B" in line(out, "config/resolved.yaml")
    assert f"{len(PARAMS_JSON)} B" in line(out, "fit/params.json")


def test_show_full_id_failed_run_and_sweep_children(capsys, runs_store: Store) -> None:  # type: ignore[no-untyped-def]
    ids = runs_store.ids
    code, out, _ = run_cli(capsys, runs_store, "show", ids["broken"])
    assert code == 0
    assert "FAILED" in line(out, "status")
    assert line(out, "error: ") == "error: FitError: no rows left after sampling"
    assert "artifacts: none" in out

    code, out, _ = run_cli(capsys, runs_store, "show", ids["sweep"][:12])
    assert code == 0
    assert "children (2)" in out
    assert ids["sweep-0"][:8] in line(out, "sweep-0") and "0.004" in line(out, "sweep-1")
    assert "parent" in line(out, "harness.sweep")

    code, out, _ = run_cli(capsys, runs_store, "show", ids["sweep-1"][:12])
    assert code == 0
    assert ids["sweep"] in line(out, "│ parent ")
    assert "children" not in out


def test_show_unknown_and_ambiguous_prefixes_exit_2(capsys, runs_store: Store) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli(capsys, runs_store, "show", "zz")
    assert code == 2 and out == ""
    assert err == "error: no run with id 'zz' or starting with it in experiment 'harness'\n"

    code, out, err = run_cli(capsys, runs_store, "show", runs_store.ambiguous, "--experiment", "crowded")
    assert code == 2 and out == ""
    assert err.startswith(f"error: run prefix '{runs_store.ambiguous}' is ambiguous: ") and err.count("\n") == 1
    candidates = err.split("ambiguous: ")[1].split(", ")
    assert len(candidates) >= 2 and all(c.startswith(runs_store.ambiguous) for c in candidates)

    code, _, err = run_cli(capsys, runs_store, "show", "ab'; --")
    assert code == 2 and "is not a run id or id prefix" in err


def test_show_looks_in_the_experiment_asked_for(capsys, runs_store: Store) -> None:  # type: ignore[no-untyped-def]
    prefix = runs_store.ids["baseline"][:10]
    code, _, err = run_cli(capsys, runs_store, "show", prefix, "--experiment", "crowded")
    assert code == 2 and "no run with id" in err and "'crowded'" in err
    code, out, _ = run_cli(capsys, runs_store, "show", prefix, "--all-experiments")
    assert code == 0 and "baseline" in line(out, "│ name ")


def test_resolve_run_is_reusable(runs_store: Store) -> None:
    client = MlflowClient(tracking_uri=runs_store.uri)
    rid = runs_store.ids["faster-lr"]
    assert resolve_run(client, rid[:6].upper(), ["harness"]).info.run_id == rid
    assert resolve_run(client, rid, ["crowded"]).info.run_id == rid  # a full id is found in any experiment
    with pytest.raises(RunsError, match="ambiguous"):
        resolve_run(client, runs_store.ambiguous, ["crowded"])
    with pytest.raises(RunsError, match="no experiment named 'gone'"):
        resolve_run(client, rid[:6], ["gone"])


# ---------------------------------------------------------------------------------------------- compare


def test_compare_shows_differing_params_metrics_and_identity(capsys, runs_store: Store) -> None:  # type: ignore[no-untyped-def]
    a, b = runs_store.ids["baseline"], runs_store.ids["faster-lr"]
    code, out, err = run_cli(capsys, runs_store, "compare", a[:8], b[:8])
    assert code == 0, err
    assert "baseline" in line(out, "┃ tag ") and "faster-lr" in line(out, "┃ tag ")  # run columns: id over name
    assert line(out, "┃ param ").index("baseline") < line(out, "┃ param ").index("faster-lr")
    assert f"┃ {a[:8]}" in out and f"┃ {b[:8]}" in out
    assert "differs" in line(out, "config hash") and "aaaaaaaaaaaa" in line(out, "config hash")
    assert "same" in line(out, "kernel hash") and "same" in line(out, "data digest")
    assert "same" in line(out, "prediction digest")  # absent in both: not a difference
    assert "params that differ (1)" in out
    lr = line(out, "trainer.lr")
    assert lr.index("0.05") < lr.index("0.1")  # columns in the order the runs were given
    assert "circuit.halflife_mid" not in out and "task.seed" not in out
    mse = line(out, "│ test_mse ")
    assert mse.index("0.004") < mse.index("0.002")
    assert "600" in line(out, "rows_train")


def test_compare_all_params_and_missing_values(capsys, runs_store: Store) -> None:  # type: ignore[no-untyped-def]
    ids = runs_store.ids
    code, out, _ = run_cli(capsys, runs_store, "compare", ids["sweep-0"], ids["sweep-1"], ids["sweep"][:9], "--all")
    assert code == 0
    assert "params (6 of 6 differ)" in out  # the parent has no params: every param is missing there
    assert "differs" in line(out, "halflife_mid", "0.5", "2.0")
    code, out, _ = run_cli(capsys, runs_store, "compare", ids["sweep-0"], ids["sweep-1"], "--all")
    assert "params (1 of 6 differ)" in out
    assert "same" in line(out, "trainer.lr") and "differs" in line(out, "halflife_mid")
    code, out, _ = run_cli(capsys, runs_store, "compare", ids["broken"], ids["baseline"])
    assert "params: all 6 equal" in out
    assert line(out, "│ test_mse ").split("│")[2].strip() == "-"  # the failed run has no test_mse


def test_compare_of_many_runs_fits_80_columns(capsys, runs_store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Piped (80 columns): the runs are split over several tables of consecutive runs, each line fits, every run
    and every metric value is shown in full."""
    monkeypatch.setenv("COLUMNS", "80")
    ids = runs_store.ids
    names = ["baseline", "faster-lr", "sweep-0", "sweep-1", "broken"]
    code, out, err = run_cli(capsys, runs_store, "compare", *(ids[n][:8] for n in names), "--all")
    assert code == 0, err
    assert max(len(row) for row in out.splitlines()) <= 80, out
    assert "final metrics (runs 1-" in out and f"of {len(names)})" in out  # split by runs
    for n in names:
        assert ids[n][:8] in out
    assert out.count("test_mse") >= 2  # the key column repeats in each part
    assert "0.004" in out and "0.003" in out and "0.002" in out


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_compare_as_json_or_csv_records(capsys, runs_store: Store, fmt: str) -> None:  # type: ignore[no-untyped-def]
    ids = runs_store.ids
    a, b = ids["baseline"], ids["faster-lr"]
    code, out, err = run_cli(capsys, runs_store, "compare", a[:8], b[:8], "--format", fmt)
    assert code == 0, err
    if fmt == "json":
        rows = json.loads(out)
    else:
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(out)))
        assert out.splitlines()[0] == f"section,key,{a},{b}"
    by_key = {(r["section"], r["key"]): r for r in rows}
    mse = by_key[("metric", "test_mse")]
    assert float(mse[a]) == 0.004 and float(mse[b]) == 0.002
    assert by_key[("param", "trainer.lr")][b] == "0.1"
    assert by_key[("identity", "config hash")][a] == "a" * 64  # in full, never cut
    assert ("param", "task.seed") not in by_key  # only the params that differ, unless --all


def test_compare_writes_a_plot(capsys, runs_store: Store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = runs_store.ids
    png = tmp_path / "plots" / "cmp.png"
    code, out, err = run_cli(capsys, runs_store, "compare", ids["baseline"], ids["sweep-0"], "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5_000
    assert f"plot: {png}" in err.replace("\n", "")
    from harness.runs.compare_view import ic_by_horizon, run_chunks

    assert ic_by_horizon({"report/ic_2s": 0.1, "report/ic_0.5s": 0.3, "test_ic": 1.0}) == [(0.5, 0.3), (2.0, 0.1)]
    assert run_chunks(10, [20, 20, 20], 80) == [range(0, 2), range(2, 3)]
    assert run_chunks(10, [100], 80) == [range(0, 1)]  # one run always makes a table
    a, b = ids["baseline"], ids["faster-lr"]
    code, _, err = run_cli(capsys, runs_store, "compare", a, b)  # by default beside Hydra's outputs
    default = Path("outputs") / "compare" / f"compare-{a[:8]}-{b[:8]}.png"
    assert code == 0 and default.is_file() and f"plot: {default}" in err
    code, _, err = run_cli(capsys, runs_store, "compare", a, b, "--no-plot", "--format", "json")
    assert code == 0 and "plot:" not in err


def test_compare_needs_two_known_runs(capsys, runs_store: Store) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli(capsys, runs_store, "compare", runs_store.ids["baseline"])
    assert code == 2 and err == "error: compare needs at least two runs\n"
    code, out, err = run_cli(capsys, runs_store, "compare", runs_store.ids["baseline"], "zz")
    assert code == 2 and out == "" and "no run with id 'zz'" in err


# ---------------------------------------------------------------------------------------------- replay


def test_replay_is_handed_to_harness_runs_replay(capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[tuple] = []
    fake = types.ModuleType("harness.runs.replay")

    def fake_main(run: str, *, tracking_uri: str, experiment: str) -> int:
        calls.append((run, tracking_uri, experiment))
        return 7

    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "harness.runs.replay", fake)
    assert main(["replay", "abc123", "--tracking-uri", "sqlite:///x.db", "--experiment", "e"]) == 7
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert main(["replay", "def"]) == 7
    assert calls == [("abc123", "sqlite:///x.db", "e"), ("def", "sqlite:///from-env.db", "harness")]

    monkeypatch.setitem(sys.modules, "harness.runs.replay", None)  # the module missing
    assert main(["replay", "abc123"]) == 2
    assert "harness.runs.replay is missing" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 2
    assert "harness runs" in capsys.readouterr().err
    assert main(["list", "--status", "DONE"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert all(command in usage for command in ("list", "show", "compare", "replay"))
