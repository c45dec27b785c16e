"""Shared test setup: hypothesis profiles and the project paths tests need."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]
# the real market-data samples (shared/data/real/README.md): $HARNESS_DATA_ROOT, else beside the checkout
SHARED_DATA = Path(os.environ.get("HARNESS_DATA_ROOT") or ROOT.parent / "shared" / "data" / "real").resolve()


def real_data_missing(path: Path) -> str:
    """The one skip reason of every test that needs the real market data and does not find it."""
    return (
        f"real market data not found at {path}: set HARNESS_DATA_ROOT to the folder of the shared real-data "
        "samples (README: 'Getting real data'; `harness data download` fetches days of your own)"
    )


def real_data(*parts: str) -> Path:
    """A path under the real market-data folder; skips the calling test (one clear reason) when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(real_data_missing(path))
    return path


settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")  # tests that size their own examples read it too
settings.load_profile(PROFILE)


def pytest_addoption(parser) -> None:  # type: ignore[no-untyped-def]
    parser.addoption("--run-bench", action="store_true", help="run the benchmarks under tests/bench")


INSTALL_SKIP = (
    "install test (builds the wheel, installs it in a fresh venv: minutes): "
    "run with `python -m pytest -m install tests/test_install.py` (.ci/run does)"
)


HEAVY_SKIP = (
    "heavy test (a sweep of several processes, a real torch.compile, ...: part of CI, not of the default run): "
    "run with `python -m pytest -m heavy`"
)


def pytest_collection_modifyitems(config, items) -> None:  # type: ignore[no-untyped-def]
    markexpr = config.getoption("markexpr") or ""
    for marker, reason in (("install", INSTALL_SKIP), ("heavy", HEAVY_SKIP)):
        if marker not in markexpr.replace(f"not {marker}", ""):  # selected only by name: `-m install`, `-m heavy`
            skip = pytest.mark.skip(reason=reason)
            for item in items:
                if item.get_closest_marker(marker) is not None:
                    item.add_marker(skip)
    if config.getoption("--run-bench"):
        return
    skip = pytest.mark.skip(reason="benchmark: run with --run-bench (add --benchmark-disable for a smoke pass)")
    for item in items:
        if "bench" in Path(str(item.fspath)).relative_to(ROOT).parts:
            item.add_marker(skip)


def _session_kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh kernel cache for this test run: one per session, or one for all the xdist workers of a run."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return tmp_path_factory.mktemp("kernel-cache")
    path = tmp_path_factory.getbasetemp().parent / "kernel-cache"  # the run's folder, above each worker's own
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One kernel cache for the whole session, so a circuit compiles once however many tests use it.

    Set HARNESS_TEST_KERNEL_CACHE to a directory to keep compiled kernels between test runs. Under pytest-xdist
    the workers share one cache beside their temporary folders (the cache locks each key while it builds).
    """
    path = os.environ.get("HARNESS_TEST_KERNEL_CACHE") or str(_session_kernel_cache(tmp_path_factory))
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_KERNEL_CACHE", path)
    yield Path(path)
    mp.undo()


@pytest.fixture(params=["python", "cpp"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run a test on the reference interpreter and on the generated C++ kernel."""
    return request.param


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory whose default store is sqlite:///<it>/mlflow.db: no tracking URI, parent run or
    sweep inherited from the environment (mlflow and earlier tests may have set them in this process)."""
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID", "HARNESS_SWEEP_PID"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path
