"""The built wheel works outside the checkout: build it, install it into a fresh venv (torch first, as the README
says, then the wheel with its dependencies), and from an empty folder run `harness +experiment=quick` (a kernel
compiled from the headers the wheel carries, an MLflow run FINISHED) and see a user's own conf/ picked up.

Minutes (measured: wheel 20-90 s, venv + torch + the wheel's dependencies ~80 s, the run ~15 s), so marked
`install` and skipped unless selected: `python -m pytest -m install tests/test_install.py` (.ci/run runs it).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.install
TORCH = "torch==2.13.0"  # the README's install line: this CPU build is on the machine's disk
TIMEOUT = 1200


def sh(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test with its output."""
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    sh(sys.executable, "-m", "pip", "wheel", ROOT, "-w", dist, "--no-deps", "-q", cwd=dist)
    (built,) = dist.glob("harness-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with torch and the wheel installed."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    sh(sys.executable, "-m", "venv", root, cwd=root.parent)
    pip = [root / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    sh(*pip, TORCH, cwd=root.parent)
    sh(*pip, wheel, cwd=root.parent)
    return root


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who has just installed the wheel: the venv's bin first, nothing of this
    checkout or of this test session (no PYTHONPATH, tracking URI, kernel cache or config directories)."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "HARNESS_KERNEL_CACHE", "HARNESS_CONF")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("HARNESS_TEST")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return {**env, **extra}


def test_the_wheel_carries_the_configs_experiments_and_headers(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = {f"harness/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    experiments = {f"harness/experiments/{p.name}" for p in (ROOT / "experiments").glob("*.yaml")}
    headers = {f"harness/include/harness/{p.name}" for p in (ROOT / "cpp" / "harness").iterdir()}
    assert conf and experiments and headers
    assert conf | experiments | headers <= names, sorted((conf | experiments | headers) - names)
    assert "harness/conf/__init__.py" in names  # Hydra reads pkg://harness.conf only from a package
    assert any(n.startswith("harness/_native.") for n in names)
    assert not any(n.startswith(("tests/", "conf/", "experiments/", "cpp/")) for n in names)


def test_harness_quick_runs_from_an_empty_folder(venv: Path, tmp_path: Path) -> None:
    work, cache = tmp_path / "empty", tmp_path / "kernels"
    work.mkdir()
    env = clean_env(venv, HARNESS_KERNEL_CACHE=str(cache))
    where = sh(
        "python", "-c", "import harness, harness.package_data as d; print(harness.__file__); print(d.layout())",
        cwd=work, env=env,
    ).stdout  # fmt: skip
    assert str(venv) in where.splitlines()[0] and "checkout=None" in where, where  # the wheel, not this checkout
    done = sh("harness", "+experiment=quick", cwd=work, env=env)
    assert "test MSE / R² / IC" in done.stdout, done.stdout
    with sqlite3.connect(work / "mlflow.db") as db:
        runs = db.execute("SELECT run_uuid, status, name FROM runs").fetchall()
        assert [(status, name) for _, status, name in runs] == [("FINISHED", "quick")], runs
        tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (runs[0][0],)).fetchall())
    assert len(tags["harness.kernel_hash"]) == 64 and tags["harness.git_commit"] == "unknown"
    assert any(cache.rglob("*.so")), "no kernel was compiled into the fresh cache"  # from the wheel's headers


def test_a_users_conf_folder_is_picked_up(venv: Path, tmp_path: Path) -> None:
    work = tmp_path / "project"
    (work / "conf" / "circuit").mkdir(parents=True)
    (work / "conf" / "circuit" / "mine.yaml").write_text("target: harness.circuits:linear_xy\ninit: 0.5\n")
    shared = tmp_path / "team-conf"
    (shared / "experiment").mkdir(parents=True)
    (shared / "experiment" / "team.yaml").write_text("# @package _global_\nstream:\n  events: 1234\n")
    env = clean_env(venv, HARNESS_CONF=str(shared))
    help_text = sh("harness", "--help", cwd=work, env=env).stdout
    assert "mine" in next(line for line in help_text.splitlines() if line.startswith("circuit:"))
    assert "team" in next(line for line in help_text.splitlines() if line.startswith("experiment:"))
    job = sh("harness", "circuit=mine", "+experiment=team", "--cfg", "job", cwd=work, env=env).stdout
    assert "target: harness.circuits:linear_xy" in job and "init: 0.5" in job and "events: 1234" in job
