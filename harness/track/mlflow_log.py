"""What a pipeline run puts into MLflow besides metrics: flattened config params, the dataset input with our
content digest, digests that identify results, plots, and the helpers that write artifacts."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

RESULT_SECTIONS = ("circuit", "stream", "trainer", "task")  # what decides a run's numbers (not tracking)
MAX_PARAM = 500  # characters of one param value (MLflow's limit is 6000; lists of files get long)


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """Scalar leaves of the resolved config as `section.key` -> text (lists as JSON), hydra section left out."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            if not value:
                out[prefix] = "{}"
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
            out[prefix] = text if len(text) <= MAX_PARAM else text[: MAX_PARAM - 3] + "..."

    for key, value in data.items():
        if key != "hydra":
            walk(str(key), value)
    return out


def config_hash(cfg: DictConfig) -> str:
    """sha256 of the sections that decide the results (circuit, stream, trainer, task), resolved, keys sorted."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    chosen = {k: data.get(k) for k in RESULT_SECTIONS}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 of arrays' bytes (dtype, shape and values): equal digests, bit-identical results."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def log_dataset(name: str, digest: str, source: str, files: list[str], rows: int) -> None:
    """`mlflow.log_input` of the events with our content digest (MLflow keeps 36 characters of it)."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    src = CodeDatasetSource(tags={"source": source, "files": json.dumps(files), "rows": str(rows), "sha256": digest})
    mlflow.log_input(MetaDataset(src, name=name, digest=digest[:36]), context="replay")


@contextmanager
def artifact_dir() -> Iterator[Path]:
    """A temporary folder whose files are logged as artifacts (under their relative paths) on exit."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="harness-artifacts-") as tmp:
        root = Path(tmp)
        yield root
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            sub = path.parent.relative_to(root).as_posix()
            mlflow.log_artifact(str(path), artifact_path=None if sub == "." else sub)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """JSON with sorted keys, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def plot_loss(history: list[dict[str, float]], path: Path) -> None:
    """Train and validation loss per epoch (log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if all(h["train_loss"] > 0 for h in history):
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_prediction(pred: np.ndarray, label: np.ndarray, parts: Mapping[str, np.ndarray], path: Path) -> None:
    """Prediction against label, one colour per split part (at most 20k points per part)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, rows in parts.items():
        if len(rows):
            take = rows[:: max(1, len(rows) // 20_000)]
            ax.scatter(pred[take], label[take], s=2, alpha=0.4, label=name)
    ax.set_xlabel("prediction")
    ax.set_ylabel("label")
    ax.legend(markerscale=5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
