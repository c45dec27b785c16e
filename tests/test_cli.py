"""`harness demo`: seed scenarios, a synthetic L2 market replay checked against the reference, a fit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from harness.cli import main


def test_main_job_runs_and_writes_a_complete_result(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "result.parquet"
    params = tmp_path / "params.json"
    argv = ["--events", "30000", "--seed", "1", "--out", str(out), "--draw", str(tmp_path / "c.dot")]
    assert main(["demo", *argv, "--fit-epochs", "5", "--params", str(params)]) == 0
    printed = capsys.readouterr().out
    assert "seed scenarios" in printed and "events/s" in printed
    assert "fit of fit_market.pred" in printed and "test R² / IC" in printed
    assert set(json.loads(params.read_text())) == {"hl_press", "hl_mid", "scale", "w0", "w1", "w2"}
    table = pq.read_table(out)
    assert 0 < table.num_rows < 30000
    assert table.column_names == ["t", "source", "mid", "spread", "imbalance", "pressure", "label_mid_return_1s"]
    assert set(table.column("source").to_pylist()) == {"trade"}
    assert not list(tmp_path.glob("*.partial"))
    assert (tmp_path / "c.dot").read_text().startswith('digraph "market_pressure"')


def test_python_dash_m_and_bad_arguments() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "harness", "demo", "--events", "200", "--fit-epochs", "0"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    bad = subprocess.run([sys.executable, "-m", "harness", "demo", "--events", "-5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--events must be >= 0" in bad.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "harness", "demo", "--fit-epochs", "-1"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--fit-epochs must be >= 0" in bad.stderr
