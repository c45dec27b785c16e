"""What a pipeline run logs besides metrics, whatever the store: flattened config params, digests that identify
results, plots, the files of its artifacts, and the redaction every logger applies (`harness.track.logger`).

Nothing secret is logged: credentials in URIs become `user:***@host` (and `?password=***`), values of keys named
like a secret become `***`, in params, tags and every logged config. Logged configs hold the values resolved
when the run ran; `load_config` reads one back without resolving anything again (an `${oc.env:...}` in a
logged value stays that text instead of taking the reader's environment)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf

from harness import figures
from harness.errors import HarnessError

RESULT_SECTIONS = ("circuit", "stream", "trainer", "task")  # what decides a run's numbers (not tracking)
MAX_PARAM = 500  # characters of one param value (MLflow's limit is 6000; lists of files get long)
MAX_TAG = 5000  # characters of a tag value we write (MLflow's limit is 8000)
HIDDEN = "***"
_URI_CREDENTIALS = re.compile(  # scheme://user:password@ -> the password part (up to the authority's last @)
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:'\"]*:)(?P<secret>[^\s/?#'\"]*)@"
)
_SECRET_NAME = r"(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|credentials?)"
_QUERY_SECRET = re.compile(rf"(?P<head>[?&;]{_SECRET_NAME}=)(?P<secret>[^&;#\s'\"]*)", re.IGNORECASE)
_SECRET_KEY = re.compile(rf"(?:^|[._-]){_SECRET_NAME}$", re.IGNORECASE)
_INTERPOLATION = re.compile(r"(\\*)\$\{")  # `${` with the backslashes before it


def redact(text: str) -> str:
    """`text` with the credentials of every URI in it hidden: `scheme://user:***@host`, `?password=***`."""
    text = _URI_CREDENTIALS.sub(lambda m: f"{m['head']}{HIDDEN}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{HIDDEN}", text)


def redact_data(value: Any, key: str = "") -> Any:
    """A copy of plain data (dicts, lists, scalars) with every string redacted and the values of keys named like
    a secret (`password`, `token`, `api_key`, ...) replaced by `***`."""
    if key and _SECRET_KEY.search(key) and value is not None and not isinstance(value, (dict, list, tuple)):
        return HIDDEN
    if isinstance(value, dict):
        return {k: redact_data(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    return redact(value) if isinstance(value, str) else value


def redact_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags as logged: values redacted and cut to MAX_TAG characters."""
    return {k: redact(str(v))[:MAX_TAG] for k, v in tags.items()}


def config_yaml(cfg: DictConfig | Mapping[str, Any]) -> str:
    """The config as logged: every interpolation resolved now (at run time), secrets redacted, plain YAML."""
    data = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return yaml.safe_dump(redact_data(data), sort_keys=False, allow_unicode=True)


def load_config(path: Path) -> DictConfig:
    """A logged config read back as it was logged: text that looks like an interpolation (`${oc.env:X}`) stays
    text, so reading never resolves the reader's environment or config into it."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise HarnessError(f"{path}: not a logged config (invalid YAML: {e})") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: not a logged config (a mapping of config sections was expected)")
    cfg = OmegaConf.create(_escape(data))
    assert isinstance(cfg, DictConfig)
    return cfg


def _escape(value: Any) -> Any:
    """Plain data with `${` in strings escaped for OmegaConf (k backslashes before it become 2k+1)."""
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: "\\" * (2 * len(m[1]) + 1) + "${", value)
    return value


def copy_hydra_dir(src: Path, dst: Path, cfg: DictConfig) -> None:
    """Hydra's `.hydra/` folder as logged: `config.yaml` is the job's config resolved at run time, `hydra.yaml`
    Hydra's own config resolved where it can be (as it was when the job ran), `overrides.yaml` the command line as
    typed; every file redacted."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in src.iterdir() if p.is_file()):
        if path.name == "config.yaml":
            text = config_yaml(cfg)
        elif path.suffix in (".yaml", ".yml") and path.name != "overrides.yaml":  # overrides: the command line
            text = _resolved_file(path)
        else:
            text = redact(path.read_text(errors="replace"))
        (dst / path.name).write_text(text)


def _resolved_file(path: Path) -> str:
    """A YAML file of Hydra's with its interpolations resolved in this process (leaves that cannot be resolved
    are kept as written), redacted."""
    from hydra.core.hydra_config import HydraConfig

    loaded = OmegaConf.load(path)
    if isinstance(loaded, DictConfig) and set(loaded.keys()) == {"hydra"} and HydraConfig.initialized():
        loaded = OmegaConf.create({"hydra": HydraConfig.get()})  # the job's live Hydra config
    try:
        data = OmegaConf.to_container(loaded, resolve=True, enum_to_str=True)
    except Exception:  # an interpolation that only Hydra's job context could resolve: leaf by leaf
        data = _resolve_leaves(loaded)
    return yaml.safe_dump(redact_data(data), sort_keys=False, allow_unicode=True)


def _resolve_leaves(node: Any) -> Any:
    raw = OmegaConf.to_container(node, resolve=False, enum_to_str=True)
    keys = list(node) if isinstance(node, DictConfig) else range(len(node))
    out: dict[Any, Any] = {}
    for k in keys:
        try:
            value = node[k]
        except Exception:  # kept as written
            out[k] = raw[k]  # type: ignore[index]
            continue
        if isinstance(value, Enum):
            value = value.name
        out[k] = _resolve_leaves(value) if OmegaConf.is_config(value) else value
    return out if isinstance(node, DictConfig) else list(out.values())


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """Scalar leaves of the resolved config as `section.key` -> text (lists as JSON), hydra section left out,
    secrets redacted."""
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

    for key, value in redact_data(data).items():
        if key != "hydra":
            walk(str(key), value)
    return out


def config_hash(cfg: DictConfig) -> str:
    """sha256 of the sections that decide the results (circuit, stream, trainer, task), resolved, keys sorted."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    chosen = {k: data.get(k) for k in RESULT_SECTIONS}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """JSON with sorted keys, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def plot_loss(history: list[dict[str, float]], path: Path) -> None:
    """Train and validation loss per epoch (log scale)."""
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if all(h["train_loss"] > 0 for h in history):
        ax.set_yscale("log")
    ax.legend()
    figures.save(fig, path)


def plot_prediction(pred: np.ndarray, label: np.ndarray, parts: Mapping[str, np.ndarray], path: Path) -> None:
    """Prediction against label, one colour per split part (at most 20k points per part)."""
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, rows in parts.items():
        if len(rows):
            take = rows[:: max(1, len(rows) // 20_000)]
            ax.scatter(pred[take], label[take], s=2, alpha=0.4, label=name)
    ax.set_xlabel("prediction")
    ax.set_ylabel("label")
    ax.legend(markerscale=5)
    figures.save(fig, path)
