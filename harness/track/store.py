"""The MLflow tracking store: which one (`tracking.uri`, else $MLFLOW_TRACKING_URI, else a sqlite file in the
working directory), created once under a file lock (parallel first-time creation of a sqlite store races),
and the identity of the code that runs (git commit, dirty flag, package versions)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from importlib import metadata
from pathlib import Path

from filelock import FileLock

DEFAULT_DB = "mlflow.db"
PACKAGES = ("harness", "torch", "numpy", "pyarrow", "mlflow", "hydra-core", "omegaconf")


def tracking_uri(configured: str | None = None) -> str:
    """The store to use: the configured uri, else $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db."""
    if configured:
        return str(configured)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store (and the experiment) if needed, once even when several processes ask; its id."""
    from mlflow.tracking import MlflowClient

    lock = _lock_path(uri)
    with FileLock(str(lock), timeout=600):
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return client.create_experiment(name)


def _lock_path(uri: str) -> Path:
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        return db.with_name(db.name + ".lock")
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"harness-mlflow-{key}.lock"


def git_state(root: Path) -> dict[str, str]:
    """Commit and dirty flag of the checkout at `root` ("unknown" outside git)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": "unknown"}
    return {"commit": commit or "unknown", "dirty": str(dirty).lower() if commit else "unknown"}


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
