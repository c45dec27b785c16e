"""One pipeline run: build the circuit, load the stream, fit, write back, evaluate the kernel out of sample,
and log all of it to one MLflow run. Each stage is timed (`stage/<name>_s`).

A run that raises is ended FAILED with the error in the tag `harness.error` (Ctrl-C, SIGTERM, SIGHUP: KILLED,
naming the signal); whatever was logged before stays. A run records its host, pid and a heartbeat (each stage,
and every `tracking.heartbeat_s` from a thread), so `harness runs gc` can end it KILLED when its process dies
without closing it (SIGKILL, out of memory). The run's identity tags (`harness.config_hash`, `harness.kernel_hash`,
`harness.data_digest`, `harness.prediction_digest`, `harness.record_digest`) are what `harness runs replay`
checks.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from harness.errors import HarnessError
from harness.fit.trainer import evaluate
from harness.pipeline import build
from harness.pipeline.schema import ROOT
from harness.pipeline.signals import signal_name
from harness.track import mlflow_log, store

PARENT_ENV = "HARNESS_PARENT_RUN_ID"
_SIGNALS = {"SIGINT": "Ctrl-C", "SIGTERM": "terminated", "SIGHUP": "hangup"}


@dataclass
class Outcome:
    """What a run produced (the MLflow run id, final metrics, fitted parameters) and its objective value."""

    run_id: str
    metrics: dict[str, float]
    params: dict[str, float]
    tags: dict[str, str]
    objective: float
    stages: dict[str, float] = field(default_factory=dict)


class _Stages:
    """Times named stages; each becomes the metric `stage/<name>_s`; each start is a heartbeat of the run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.heartbeat: store.Heartbeat | None = None

    def beat(self, name: str) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat(name)

    @contextmanager
    def __call__(self, name: str, console: Console, what: str):  # type: ignore[no-untyped-def]
        self.beat(name)
        start = time.perf_counter()
        with console.status(what):
            yield
        self.seconds[name] = time.perf_counter() - start


def run(
    cfg: DictConfig,
    *,
    hydra_dir: Path | None = None,
    extra_tags: dict[str, str] | None = None,
    console: Console | None = None,
    compose_s: float = 0.0,
    events: build.Events | None = None,
) -> Outcome:
    """Run the pipeline for a composed config and log it; return the outcome (raises on failure). `events`: the
    stream of `cfg` when the caller has loaded it already (replay checks its digest first)."""
    import mlflow

    console = console or Console(stderr=True)
    uri = store.tracking_uri(cfg.tracking.uri)
    experiment_id = store.ensure_experiment(uri, cfg.tracking.experiment)
    heartbeat_s = float(cfg.tracking.get("heartbeat_s", store.DEFAULT_HEARTBEAT_S))  # absent in older logged configs
    liveness = store.process_tags(heartbeat_s, float(cfg.tracking.get("heartbeat_timeout_s", store.DEFAULT_TIMEOUT_S)))
    for dead, reason in store.reap_quietly(uri, [experiment_id], by="the check when a run starts"):
        console.print(f"[dim]note: run {dead.info.run_id} was still RUNNING: ended KILLED ({reason})[/dim]")
    mlflow.set_tracking_uri(uri)
    parent = os.environ.get(PARENT_ENV) or _parent_from_sweep_dir(hydra_dir)
    stages = _Stages()
    if compose_s:
        stages.seconds["compose"] = compose_s
    name = mlflow_log.redact(str(cfg.tracking.run_name)) if cfg.tracking.run_name else None
    active = mlflow.start_run(experiment_id=experiment_id, run_name=name, parent_run_id=parent or None, tags=liveness)
    with active as run_:
        try:
            with store.Heartbeat(uri, run_.info.run_id, heartbeat_s) as stages.heartbeat:
                outcome = _stages(cfg, run_.info.run_id, stages, console, hydra_dir, extra_tags or {}, events)
        except KeyboardInterrupt as e:
            why = signal_name(e)
            mlflow.set_tag("harness.error", f"{why}: the run was interrupted ({_SIGNALS.get(why, 'a signal')})")
            mlflow.end_run(status="KILLED")
            raise
        except BaseException as e:
            mlflow.set_tag("harness.error", mlflow_log.redact(f"{type(e).__name__}: {e}")[: mlflow_log.MAX_TAG])
            mlflow.end_run(status="FAILED")
            raise
    return outcome


def _stages(
    cfg: DictConfig,
    run_id: str,
    stages: _Stages,
    console: Console,
    hydra_dir: Path | None,
    extra: dict[str, str],
    loaded: build.Events | None,
) -> Outcome:
    import mlflow

    from harness import fit

    git = store.git_state(ROOT)
    tags = {
        "harness.config_hash": mlflow_log.config_hash(cfg),
        "harness.git_commit": git["commit"],
        "harness.git_dirty": git["dirty"],
        **{f"harness.version.{k}": v for k, v in store.package_versions().items()},
        **extra,
    }
    mlflow.set_tags(mlflow_log.redact_tags(tags))
    mlflow.log_params(mlflow_log.flat_params(cfg))
    with mlflow_log.artifact_dir() as art:
        (art / "config").mkdir()
        (art / "config" / "resolved.yaml").write_text(mlflow_log.config_yaml(cfg))  # resolved now, redacted
        if hydra_dir is not None and (hydra_dir / ".hydra").is_dir():
            mlflow_log.copy_hydra_dir(hydra_dir / ".hydra", art / "hydra", cfg)

    with stages("build", console, "building the circuit..."):
        circuit = build.build_circuit(cfg)
        sampler, label, trainer = build.make_sampler(cfg), build.make_label(cfg), build.make_trainer(cfg)
        split = build.split_fractions(cfg)
    with stages("stream", console, "loading the events..."):
        events = loaded if loaded is not None else build.load_stream(cfg)

    stages.beat("fit")
    clock = time.perf_counter()
    res = fit.fit(
        circuit, events.batches, target=cfg.task.target, label=label, split=split, trainer=trainer,
        seed=int(cfg.task.seed), sampler=sampler, fold=bool(cfg.task.fold), backend=cfg.task.backend,
        total=events.rows,
    )  # fmt: skip
    mlflow.set_tag("harness.data_digest", events.digest)  # computed along the recording pass
    mlflow_log.log_dataset(build.stream_name(cfg), events.digest, events.source, events.files, events.rows)
    fit_total = time.perf_counter() - clock
    for name in ("compile", "record", "train", "parity"):
        stages.seconds[name] = res.stages.get(f"{name}_s", 0.0)
    stages.seconds["fit_other"] = max(0.0, fit_total - sum(res.stages.values()))

    with stages("evaluate", console, "evaluating the fitted circuit..."):
        kernel_pred = res.predictions()  # the fitted kernel's, within 1e-9: parity was checked on a replayed slice
        y = res.data.y
        parts = {"train": res.split.train.numpy(), "validation": res.split.val.numpy(), "test": res.split.test.numpy()}
        import torch

        test = evaluate(torch.from_numpy(kernel_pred[parts["test"]]), torch.from_numpy(y[parts["test"]]))
    metrics = {
        "fit_train_loss": res.metrics["train_loss"],  # of the restored best-validation parameters
        "fit_val_loss": res.metrics["val_loss"],
        "test_mse": test["mse"],
        "test_r2": test["r2"],
        "test_ic": test["ic"],
        "best_epoch": res.metrics["best_epoch"],
        "epochs_run": res.metrics["epochs_run"],
        "rows_train": len(parts["train"]),
        "rows_val": len(parts["validation"]),
        "rows_test": len(parts["test"]),
        "parity_max_abs_error": res.parity["max_abs_error"],
        "parity_rows": res.parity["rows"],
        "compile_s": stages.seconds["compile"],
        "replay_events_per_s": events.rows / max(res.data.replay_s, 1e-9),
    }
    identity = {
        "harness.kernel_hash": res.kernel.kernel_hash if hasattr(res.kernel, "kernel_hash") else "python",
        "harness.prediction_digest": mlflow_log.array_digest(kernel_pred),
        "harness.record_digest": _record_digest(res.data),
    }
    mlflow.set_tags(identity)

    with stages("log", console, "logging to MLflow..."):
        _log_history(res.history)
        with mlflow_log.artifact_dir() as art:
            mlflow_log.write_json(art / "fit" / "params.json", res.params)
            mlflow_log.write_json(
                art / "fit" / "summary.json",
                {"metrics": metrics, "dropped": res.data.dropped, "purged": res.split.purged, "stages": stages.seconds},
            )
            (art / "kernel").mkdir()
            if hasattr(res.kernel, "source"):
                (art / "kernel" / f"{circuit.name}.cpp").write_text(res.kernel.source)
            (art / "circuit").mkdir()
            (art / "circuit" / "circuit.dot").write_text(circuit.draw())
            if shutil.which("dot"):
                circuit.draw(art / "circuit" / "circuit.svg")
            if cfg.tracking.plots:
                mlflow_log.plot_loss(res.history, art / "plots" / "loss.png")
                mlflow_log.plot_prediction(kernel_pred, y, parts, art / "plots" / "prediction_vs_label.png")
            if len(y) <= int(cfg.tracking.log_sample_max_rows):
                _write_parquet(_sample_table(res, kernel_pred, parts), art / "data" / "sample.parquet")
    metrics.update({f"stage/{k}_s": v for k, v in stages.seconds.items()})
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    objective_key = cfg.task.objective
    if objective_key not in metrics:
        raise HarnessError(f"task.objective={objective_key!r} is not a metric of the run ({', '.join(metrics)})")
    outcome = Outcome(
        run_id=run_id, metrics=metrics, params=res.params, tags={**tags, **identity},
        objective=float(metrics[objective_key]), stages=stages.seconds,
    )  # fmt: skip
    _summary(console, cfg, outcome, events)
    return outcome


def _log_history(history: list[dict[str, float]]) -> None:
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    rows = [
        Metric(key, float(h[key]), now, int(h["epoch"])) for h in history for key in ("train_loss", "val_loss", "lr")
    ]
    client = mlflow.tracking.MlflowClient()
    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    for i in range(0, len(rows), 900):
        client.log_batch(run_id, metrics=rows[i : i + 900])


def _record_digest(data: Any) -> str:
    arrays = [data.y, *[d.rows for d in data.domains.values()]]
    arrays += [v for d in data.domains.values() for _, v in sorted(d.leaves.items())]
    return mlflow_log.array_digest(*arrays)


def _sample_table(res: Any, kernel_pred: np.ndarray, parts: dict[str, np.ndarray]) -> pa.Table:
    """The training rows as logged: time, split part (or purged), label and the fitted kernel's prediction."""
    part = np.empty(len(res.data.y), dtype=object)
    for name, rows in parts.items():
        part[rows] = name
    return pa.table(
        {
            "t": res.data.t,
            "part": pa.array([p if p is not None else "purged" for p in part], pa.string()),
            "label": res.data.y,
            "prediction": kernel_pred,
        }
    )


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _parent_from_sweep_dir(hydra_dir: Path | None) -> str | None:
    """The parent run of a sweep job, from the file the sweep callback wrote into the sweep folder."""
    if hydra_dir is None:
        return None
    for folder in (hydra_dir, hydra_dir.parent):
        marker = folder / ".mlflow_parent_run"
        if marker.exists():
            return marker.read_text().strip() or None
    return None


def _summary(console: Console, cfg: DictConfig, o: Outcome, events: Any) -> None:
    table = Table(title=f"run {o.run_id} ({build.circuit_name(cfg)} on {events.source})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    m = o.metrics
    table.add_row("rows train / val / test", f"{m['rows_train']:,} / {m['rows_val']:,} / {m['rows_test']:,}")
    table.add_row("test MSE / R² / IC", f"{m['test_mse']:.3e} / {m['test_r2']:+.3f} / {m['test_ic']:+.3f}")
    table.add_row("validation loss (best epoch)", f"{m['fit_val_loss']:.4g} ({int(m['best_epoch'])})")
    table.add_row("kernel vs torch, max abs error", f"{m['parity_max_abs_error']:.1e}")
    table.add_row("replay events/s (fitted kernel)", f"{m['replay_events_per_s']:,.0f}")
    table.add_row("stages (s)", ", ".join(f"{k} {v:.2f}" for k, v in o.stages.items()))
    table.add_row(f"objective ({cfg.task.objective})", f"{o.objective:.6g}")
    console.print(table)
