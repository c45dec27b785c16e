"""One pipeline run: build the circuit, load the stream, fit, write back, evaluate the kernel out of sample,
and log all of it as one run through a `RunLogger` (`harness.track.logger`; MLflow by default). Each stage is
timed (`stage/<name>_s`).

A run that raises is ended FAILED with the error in the tag `harness.error` (Ctrl-C, SIGTERM, SIGHUP: KILLED,
naming the signal); whatever was logged before stays. A run records its host, pid and a heartbeat (each stage,
and every `tracking.heartbeat_s` from a thread), so `harness runs gc` can end it KILLED when its process dies
without closing it (SIGKILL, out of memory). The run's identity tags (`harness.config_hash`, `harness.kernel_hash`,
`harness.data_digest`, `harness.prediction_digest`, `harness.record_digest`) are what `harness runs replay`
checks. Each epoch's train_loss, val_loss and lr are logged as the fit makes them (a killed run keeps its curve
so far). A run that finishes but is suspect (a parameter without gradient at the start, a diverged loss, a test
R² far below 0) ends FINISHED with the causes in the tag `harness.warning` and a `warning:` line each on stderr.
The run's summary table is its result: it goes to stdout; progress and notes go to stderr.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
import warnings
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import interrupts
from harness.errors import HarnessError
from harness.evaluate import report as evaluation
from harness.evaluate.attribution import drop_one
from harness.fit.store import record_digest
from harness.fit.trainer import FitWarning, evaluate
from harness.pipeline import build
from harness.pipeline.schema import ROOT
from harness.pipeline.signals import signal_name
from harness.streams.content_digest import array_digest
from harness.streams.schema import split
from harness.track import mlflow_log, store
from harness.track.logger import RunLogger
from harness.track.mlflow_logger import MlflowRunLogger

PARENT_ENV = "HARNESS_PARENT_RUN_ID"
WARNING_TAG = "harness.warning"  # why a finished run is suspect (with hints); absent when nothing is
R2_FLOOR = -1.0  # a test R² below this is far worse than predicting the mean: a warning
EPOCH_SERIES = ("train_loss", "val_loss", "lr")  # logged at step = epoch while the fit runs (walk-forward: on)
EPOCH_FLUSH_S = 1.0  # epochs reach the store at most this long after they end, in one request (~25 ms each)
SPLIT_KEYS = ("train", "val", "test")
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
    source: str = ""  # the events replayed, in words
    warnings: list[str] = field(default_factory=list)  # why the run is suspect (its tag harness.warning)


class _Stages:
    """Times named stages; each becomes the metric `stage/<name>_s`; each start is a heartbeat of the run."""

    def __init__(self, logger: RunLogger) -> None:
        self.seconds: dict[str, float] = {}
        self.logger = logger

    def beat(self, name: str) -> None:
        interrupts.check()  # a signal whose interrupt was swallowed ends the run here
        self.logger.beat(name)

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
    logger: RunLogger | None = None,
    out: Console | None = None,
) -> Outcome:
    """Run the pipeline for a composed config and log it; return the outcome (raises on failure). `events`: the
    stream of `cfg` when the caller has loaded it already (replay checks its digest first). `logger`: where the
    run is logged (default: the MLflow store of `cfg.tracking`). `console`: progress, notes and warnings
    (default stderr); `out`: the summary table (default stdout)."""
    console = console or Console(stderr=True)
    out = out or Console()
    logger = logger or MlflowRunLogger.from_config(cfg.tracking)
    for dead, reason in logger.reap_dead_runs(by="the check when a run starts"):
        console.print(f"[dim]note: run {dead} was still RUNNING: ended KILLED ({reason})[/dim]")
    parent = os.environ.get(PARENT_ENV) or _parent_from_sweep_dir(hydra_dir)
    stages = _Stages(logger)
    if compose_s:
        stages.seconds["compose"] = compose_s
    name = str(cfg.tracking.run_name) if cfg.tracking.run_name else None
    run_id = logger.start(run_name=name, parent=parent or None, tags={})
    try:
        outcome = _stages(cfg, run_id, logger, stages, console, hydra_dir, extra_tags or {}, events)
    except KeyboardInterrupt as e:
        why = signal_name(e)
        logger.end("KILLED", f"{why}: the run was interrupted ({_SIGNALS.get(why, 'a signal')})")
        raise
    except BaseException as e:
        logger.end("FAILED", f"{type(e).__name__}: {e}")
        raise
    logger.end("FINISHED")
    _summary(out, cfg, outcome)
    for note in outcome.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}", soft_wrap=True, highlight=False)
    return outcome


def _stages(
    cfg: DictConfig,
    run_id: str,
    logger: RunLogger,
    stages: _Stages,
    console: Console,
    hydra_dir: Path | None,
    extra: dict[str, str],
    loaded: build.Events | None,
) -> Outcome:
    """The run's stages, in order: log what it is, build, load, fit, evaluate, log what it gave."""
    tags = _log_inputs(cfg, logger, hydra_dir, extra)
    with stages("build", console, "building the circuit..."):
        circuit = build.build_circuit(cfg)
        sampler, label, trainer = build.make_sampler(cfg), build.make_label(cfg), build.make_trainer(cfg)
        split, report_cfg = build.make_split(cfg), build.make_report(cfg)
        execution = build.make_execution(cfg)
    with stages("stream", console, "loading the events..."):
        events = loaded if loaded is not None else build.load_stream(cfg)
        build.check_markets(cfg, circuit, events)
    horizons = report_cfg.horizons if report_cfg is not None else ()
    res = _fit(
        cfg, logger, stages, events, circuit, sampler=sampler, label=label, trainer=trainer, split=split,
        report_horizons=horizons, execution=execution,
    )  # fmt: skip
    with closing(res):  # a spilled recording is removed when the run is done with it
        with stages("evaluate", console, "evaluating the fitted circuit..."):
            predictions = res.predictions()  # the torch model's; the kernel's agree on the parity slice (fitting.py)
            parts = _parts(res)
            metrics = _metrics(res, predictions, parts, stages, events)
            report = _report(res, predictions, parts, report_cfg, cfg)
            metrics.update(report.metrics() if report is not None else {})
            _log_folds(logger, res)
        kernel_hash, kernel_source = res.kernel.kernel_hash, res.kernel.source  # ("python", None): the reference
        identity = {
            "harness.kernel_hash": kernel_hash,
            "harness.prediction_digest": array_digest(predictions),
            "harness.record_digest": record_digest(res.data),
        }
        logger.set_tags(identity)
        notes = _warnings(cfg, res, metrics)
        if notes:
            logger.set_tags({WARNING_TAG: " | ".join(notes)})
        with stages("log", console, "logging the run..."), logger.artifact_dir() as art:
            _write_artifacts(art, cfg, res, circuit, kernel_source, predictions, parts, metrics, stages.seconds)
            if report is not None:
                evaluation.write(report, art / "report", f"{build.circuit_name(cfg)} on {events.source}: run {run_id}")
        metrics.update({f"stage/{k}_s": v for k, v in stages.seconds.items()})
        logger.log_metrics({k: float(v) for k, v in metrics.items()})
        objective_key = cfg.task.objective
        if objective_key not in metrics:
            raise HarnessError(f"task.objective={objective_key!r} is not a metric of the run ({', '.join(metrics)})")
        return Outcome(
            run_id=run_id, metrics=metrics, params=res.params, tags={**tags, **identity},
            objective=float(metrics[objective_key]), stages=stages.seconds, source=events.source, warnings=notes,
        )  # fmt: skip


def _log_inputs(cfg: DictConfig, logger: RunLogger, hydra_dir: Path | None, extra: dict[str, str]) -> dict[str, str]:
    """Log what the run is (provenance tags, the flattened config, the config files); the tags."""
    git = store.git_state(ROOT)
    tags = {
        "harness.config_hash": mlflow_log.config_hash(cfg),
        "harness.git_commit": git["commit"],
        "harness.git_dirty": git["dirty"],
        **{f"harness.version.{k}": v for k, v in store.package_versions().items()},
        **extra,
    }
    logger.set_tags(tags)
    logger.log_params(mlflow_log.flat_params(cfg))
    with logger.artifact_dir() as art:
        (art / "config").mkdir()
        (art / "config" / "resolved.yaml").write_text(mlflow_log.config_yaml(cfg))  # resolved now, redacted
        if hydra_dir is not None and (hydra_dir / ".hydra").is_dir():
            mlflow_log.copy_hydra_dir(hydra_dir / ".hydra", art / "hydra", cfg)
    return tags


class EpochLog:
    """The fit's per-epoch history (EPOCH_SERIES at step = epoch) to the run, sent as one batch at most every
    `every_s` seconds instead of one request per epoch; what is buffered is sent when the fit ends or fails."""

    def __init__(self, logger: RunLogger, every_s: float = EPOCH_FLUSH_S) -> None:
        self.logger, self.every_s = logger, every_s
        self.points: list[tuple[str, float, int]] = []
        self.sent = time.perf_counter()

    def __call__(self, entry: dict[str, float]) -> None:
        interrupts.check()
        self.points += [(k, float(entry[k]), int(entry["epoch"])) for k in EPOCH_SERIES]
        if time.perf_counter() - self.sent >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Send the buffered epochs (if any) in one batch."""
        if self.points:
            points, self.points = self.points, []
            self.logger.log_series(points)
        self.sent = time.perf_counter()

    def __enter__(self) -> EpochLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.flush()
            return
        with suppress(Exception):  # the epochs so far, kept; a store error must not hide the fit's own error
            self.flush()


def _fit(cfg: DictConfig, logger: RunLogger, stages: _Stages, events: build.Events, circuit: Any, **how: Any) -> Any:
    """Fit the circuit on the events (compile, record, train, parity: timed by the fit itself); log the dataset."""
    from harness import fit

    stages.beat("fit")
    clock = time.perf_counter()
    epochs = EpochLog(logger, EPOCH_FLUSH_S)
    with warnings.catch_warnings(), epochs:  # the run says the warnings itself (a tag and a line each), once
        warnings.simplefilter("ignore", FitWarning)
        res = fit.fit(
            circuit, events, target=cfg.task.target, seed=int(cfg.task.seed), fold=bool(cfg.task.fold),
            backend=cfg.task.backend, total=events.rows, on_epoch=epochs, **how,
        )  # fmt: skip
    logger.set_tags({"harness.data_digest": events.digest})  # computed along the recording pass
    logger.log_dataset(build.stream_name(cfg), events.digest, events.source, events.files, events.rows)
    fit_total = time.perf_counter() - clock
    for name in ("compile", "record", "train", "parity"):
        stages.seconds[name] = res.stages.get(f"{name}_s", 0.0)
    stages.seconds["fit_other"] = max(0.0, fit_total - sum(res.stages.values()))
    return res


def _metrics(
    res: Any, predictions: np.ndarray, parts: dict[str, np.ndarray], stages: _Stages, events: build.Events
) -> dict[str, float]:
    """The run's metrics: the fit's losses, the fitted kernel out of sample, rows, parity and speed."""
    import torch

    rows, pred = res.out_of_sample(predictions)  # walk-forward: each fold's test rows, by that fold's fit
    test = evaluate(torch.from_numpy(pred), torch.from_numpy(res.data.y[rows]))
    folds = {"folds": float(len(res.folds))} if res.folds else {}
    return {
        **folds,
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
        **_shard_metrics(res.data.shards),
        **_market_metrics(events),
    }


def _shard_metrics(shards: list[Any]) -> dict[str, float]:
    """A sharded recording's shards, their values that differ at the boundaries, and the largest difference."""
    if not shards:
        return {}
    return {
        "shards": len(shards),
        "shards_reused": sum(s.reused for s in shards),
        "shard_boundary_differing": sum(s.differing for s in shards),
        "shard_boundary_max_abs_diff": max(s.max_abs_diff for s in shards),
    }


def _market_metrics(events: build.Events) -> dict[str, float]:
    """Per market of a stream of several (named markets): its events and trades (`market/<name>/events`, ...)."""
    out: dict[str, float] = {}
    for trigger, n in sorted((events.trigger_counts or {}).items()):
        market, kind = split(trigger)
        if market is not None:
            out[f"market/{market}/events"] = out.get(f"market/{market}/events", 0.0) + n
            out[f"market/{market}/{kind}_events"] = float(n)
    return out


def _report(
    res: Any, predictions: np.ndarray, parts: dict[str, np.ndarray], config: Any, cfg: DictConfig
) -> evaluation.Report | None:
    """The evaluation report on the out-of-sample rows (None when `report.enabled` is false); attribution on the
    test rows of the final model (walk-forward: the last fold's)."""
    if config is None:
        return None
    rows, pred = res.out_of_sample(predictions)
    labels = {h: res.data.horizon_labels[h][rows] for h in config.horizons}
    labels[config.horizons[0]] = res.data.y[rows]  # the fitted label (the horizon the rows were kept for)
    attribution = None
    if cfg.report.attribution:
        attribution = drop_one(res.model, res.data.y, res.split.test.numpy())
    train_pred = predictions[parts["train"]]
    folds = [
        {"fold": f.fold.index, "test_start_s": f.fold.test_start / 1e9, "test_end_s": f.fold.test_end / 1e9,
         "rows": len(f.fold.split.test), "ic": f.metrics["test_ic"], "r2": f.metrics["test_r2"]}
        for f in res.folds
    ]  # fmt: skip
    t, kind = res.data.t[rows], str(cfg.task.label.kind)
    return evaluation.build(t, pred, labels, train_pred, kind, config, attribution, folds)


def _parts(res: Any) -> dict[str, np.ndarray]:
    """Rows per part. Walk-forward: every fold's test rows; validation and train rows that no fold tests."""
    if not res.folds:
        return {"train": res.split.train.numpy(), "validation": res.split.val.numpy(), "test": res.split.test.numpy()}
    union = {k: np.unique(np.concatenate([getattr(f.fold.split, k).numpy() for f in res.folds])) for k in SPLIT_KEYS}
    val = np.setdiff1d(union["val"], union["test"])
    train = np.setdiff1d(union["train"], np.union1d(val, union["test"]))
    return {"train": train, "validation": val, "test": union["test"]}


def _log_folds(logger: RunLogger, res: Any) -> None:
    """Each walk-forward fold as one step (step = fold index): its losses, test metrics, rows and windows."""
    for f in res.folds:
        m, s = f.metrics, f.fold.split
        values = {f"fold/{k}": float(m[k]) for k in ("train_loss", "val_loss", "test_mse", "test_r2", "test_ic")}
        values.update({"fold/rows_train": len(s.train), "fold/rows_val": len(s.val), "fold/rows_test": len(s.test)})
        values.update({"fold/test_start_s": f.fold.test_start / 1e9, "fold/test_end_s": f.fold.test_end / 1e9})
        logger.log_metrics({k: float(v) for k, v in values.items()}, step=f.fold.index)


def _write_artifacts(
    art: Path,
    cfg: DictConfig,
    res: Any,
    circuit: Any,
    kernel_source: str | None,
    predictions: np.ndarray,
    parts: dict[str, np.ndarray],
    metrics: dict[str, float],
    seconds: dict[str, float],
) -> None:
    """The run's result files: fitted params, summary, kernel source, circuit drawing, plots, a data sample."""
    mlflow_log.write_json(art / "fit" / "params.json", res.params)
    summary = {"metrics": metrics, "dropped": res.data.dropped, "purged": res.split.purged, "stages": seconds}
    if res.data.shards:
        summary["shards"] = [dataclasses.asdict(s) for s in res.data.shards]
    mlflow_log.write_json(art / "fit" / "summary.json", summary)
    (art / "kernel").mkdir()
    if kernel_source is not None:
        (art / "kernel" / f"{circuit.name}.cpp").write_text(kernel_source)
    (art / "circuit").mkdir()
    (art / "circuit" / "circuit.dot").write_text(circuit.draw())
    if shutil.which("dot"):
        circuit.draw(art / "circuit" / "circuit.svg")
    y = res.data.y
    if cfg.tracking.plots:
        mlflow_log.plot_loss(res.history, art / "plots" / "loss.png")
        mlflow_log.plot_prediction(predictions, y, parts, art / "plots" / "prediction_vs_label.png")
    if len(y) <= int(cfg.tracking.log_sample_max_rows):
        _write_parquet(_sample_table(res, predictions, parts), art / "data" / "sample.parquet")


def _sample_table(res: Any, predictions: np.ndarray, parts: dict[str, np.ndarray]) -> pa.Table:
    """The training rows as logged: time, split part (or purged), label and the fitted kernel's prediction."""
    part = np.empty(len(res.data.y), dtype=object)
    for name, rows in parts.items():
        part[rows] = name
    return pa.table(
        {
            "t": res.data.t,
            "part": pa.array([p if p is not None else "purged" for p in part], pa.string()),
            "label": res.data.y,
            "prediction": predictions,
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


def _warnings(cfg: DictConfig, res: Any, metrics: dict[str, float]) -> list[str]:
    """Why a finished run is suspect, each with a hint: the fit's warnings and a test R² far below 0."""
    notes = list(res.warnings)
    r2 = float(metrics["test_r2"])
    if math.isfinite(r2) and r2 < R2_FLOOR:
        notes.append(
            f"test R² is {r2:.4g}, far below 0 (under {R2_FLOOR:g}): the fitted circuit predicts the test rows much "
            f"worse than their mean; try a lower trainer.lr (now {cfg.trainer.lr}), another optimizer (now "
            f"{cfg.trainer.optimizer}; e.g. trainer={'lbfgs' if cfg.trainer.optimizer == 'adam' else 'adam'}) or "
            "more epochs or data"
        )
    return notes


def _summary(console: Console, cfg: DictConfig, o: Outcome) -> None:
    """The run's result as a table (on stdout: it is what the command produced)."""
    table = Table(title=f"run {o.run_id} ({build.circuit_name(cfg)} on {o.source})")
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
