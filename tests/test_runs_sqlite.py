"""`harness runs` reads a local sqlite store with sqlite3 (`harness.runs.sqlite_store`), not MLflow: the same
output as through MLflow's client for every read command and error, and MLflow imported only to end dead runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient
from test_track_runs import Store, runs_store, wide  # noqa: F401  (fixtures)

from harness.runs import cli
from harness.runs.sqlite_store import SqliteRuns
from harness.track import store as tracking


def outputs(capsys: pytest.CaptureFixture[str], uri: str, argv: list[str]) -> tuple[int, str, str]:
    code = cli.main([*argv, "--tracking-uri", uri])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_read_command_prints_what_mlflow_would(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    runs_store: Store,  # noqa: F811
) -> None:
    ids = runs_store.ids
    commands = [
        ["list"], ["list", "--all-experiments"], ["list", "--status", "finished", "--limit", "2"],
        ["show", ids["baseline"][:6]], ["show", ids["sweep"]], ["show", ids["broken"][:8]],
        ["compare", ids["baseline"][:8], ids["faster-lr"][:8]], ["compare", "--all", ids["sweep-0"], ids["sweep-1"]],
        ["show", "nope"], ["show", "Z!"], ["show", runs_store.ambiguous, "--experiment", "crowded"],
        ["list", "--experiment", "missing"], ["gc", "--dry-run", "--all-experiments"],
    ]  # fmt: skip
    assert isinstance(cli.open_store(runs_store.uri), SqliteRuns)
    fast = [outputs(capsys, runs_store.uri, argv) for argv in commands]
    monkeypatch.setattr(SqliteRuns, "open", classmethod(lambda cls, uri: None))
    assert isinstance(cli.open_store(runs_store.uri), MlflowClient)
    slow = [outputs(capsys, runs_store.uri, argv) for argv in commands]
    for argv, a, b in zip(commands, fast, slow, strict=True):
        assert a == b, argv
    assert [code for code, _, _ in fast] == [0] * 8 + [2] * 4 + [0]


def test_another_store_or_an_unknown_schema_is_left_to_mlflow(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    assert SqliteRuns.open("http://127.0.0.1:5000") is None
    assert SqliteRuns.open(f"sqlite:///{tmp_path / 'missing.db'}") is None
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE runs (x INTEGER)").connection.commit()
    assert SqliteRuns.open(f"sqlite:///{tmp_path / 'other.db'}") is None


def test_mlflow_is_imported_only_to_end_a_dead_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("harness")
    alive = {tracking.HOST_TAG: socket.gethostname(), tracking.PID_TAG: str(os.getpid())}
    client.create_run(exp, run_name="alive", tags=alive)
    probe = (
        "import sys\nfrom harness.cli import main\n"
        "code = main(['runs', 'list', '--tracking-uri', sys.argv[1]])\n"
        "print('mlflow' in sys.modules, code, file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", probe, uri], capture_output=True, text=True)
    assert res.stderr.strip().endswith("False 0"), res.stderr
    stale = {tracking.HEARTBEAT_TAG: f"{time.time() - 10_000:.3f}", tracking.TIMEOUT_TAG: "900"}
    dead = client.create_run(exp, run_name="dead", tags=stale).info.run_id
    res = subprocess.run([sys.executable, "-c", probe, uri], capture_output=True, text=True)
    assert f"note: run {dead} was still RUNNING: ended KILLED (no heartbeat" in res.stderr
    assert res.stderr.strip().endswith("True 0"), res.stderr
    assert client.get_run(dead).info.status == "KILLED"
