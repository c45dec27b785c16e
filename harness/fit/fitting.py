"""`hs.fit.fit`: trace, record, build the torch model, train, write the fitted values back, prove parity.

res = hs.fit.fit(c, events, target="pred", label=("mid", 1.0), split=(0.6, 0.2, 0.2),
                 trainer={"optimizer": "adam", "lr": 0.05, "epochs": 300}, seed=0)
res.params     # name -> value, ready for kernel.set_params
res.metrics    # train_loss, val_loss, test_mse, test_r2, test_ic, ...
res.model      # the torch module
res.warnings   # a suspect fit in words (no gradient at the start, a diverged loss), also a FitWarning
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch

from harness.errors import FitError
from harness.fit.data import FitData, collect
from harness.fit.model import CircuitModel
from harness.fit.store import point_count, spill
from harness.fit.trace import Trace, trace
from harness.fit.trainer import (
    NonFiniteLoss,
    Split,
    TrainerConfig,
    TrainerError,
    TrainResult,
    chronological_split,
    evaluate,
    train,
)
from harness.fit.walk_forward import Fold, WalkForward
from harness.replay.driver import chunks, release_memory
from harness.replay.labels import Label, LabelError
from harness.replay.sampling import Sampler

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.circuit.node import Node
    from harness.kernel import Kernel

PARITY_RTOL = 1e-9
PARITY_ATOL = 1e-12
PARITY_EVENTS = 250_000  # events replayed by the fitted kernel to check parity (the slice starts at the first)


class ParityError(FitError):
    """The fitted kernel and the torch model disagree; `.result` keeps the fit so nothing is lost."""

    def __init__(self, message: str, result: FitResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class FoldResult:
    """One walk-forward fold's fit: its windows and rows, fitted parameters, metrics, and test predictions."""

    fold: Fold
    params: dict[str, float]
    metrics: dict[str, float]  # train_loss, val_loss, best_epoch, epochs_run, test_mse, test_r2, test_ic
    predictions: np.ndarray  # the fold's fitted model at its test rows
    history: list[dict[str, float]]


@dataclass
class FitResult:
    """A fitted circuit: parameters, metrics, the torch model, and how they were obtained."""

    params: dict[str, float]  # every learnable parameter of the circuit (fitted ones updated)
    metrics: dict[str, float]
    model: CircuitModel
    history: list[dict[str, float]]
    trace: Trace
    kernel: Kernel  # the recording kernel, with the fitted parameters set
    data: FitData
    split: Split
    training: TrainResult
    parity: dict[str, float] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage
    kernel_predictions: np.ndarray | None = None  # the fitted kernel's target at the first rows (the parity slice)
    folds: list[FoldResult] = field(default_factory=list)  # walk-forward: each fold's fit (the last is `model`)

    def save_params(self, path: str | Path) -> Path:
        """Write the parameters as a JSON object {name: value} (what `kernel.set_params` takes)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.params, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    @property
    def warnings(self) -> list[str]:
        """Why the fit is suspect, each with a hint (parameters without gradient at the start, a diverged loss)."""
        return self.training.warnings

    def predictions(self) -> np.ndarray:
        """The fitted model's prediction at every training row (train, validation and test)."""
        with torch.no_grad():
            return self.model().numpy()

    def out_of_sample(self, predictions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The test rows and their out-of-sample predictions: the test part (of `predictions`, default the
        fitted model's), or with walk-forward folds every fold's test rows predicted by that fold's fit."""
        if not self.folds:
            rows = self.split.test.numpy()
            return rows, (self.predictions() if predictions is None else predictions)[rows]
        rows = np.concatenate([f.fold.split.test.numpy() for f in self.folds])
        return rows, np.concatenate([f.predictions for f in self.folds])

    def close(self) -> None:
        """Release the recording: a spilled one's folder is removed (the model cannot be evaluated after)."""
        self.data.close()

    def __repr__(self) -> str:
        shown = {k: round(v, 6) for k, v in self.metrics.items() if k.startswith("test_")}
        return f"<FitResult {self.trace.circuit.name}.{self.trace.target_output} params={self.params} {shown}>"


def fit(
    circuit: Circuit,
    events: object,
    *,
    target: str = "pred",
    label: Label | tuple = ("mid", 1.0),
    split: tuple[float, float, float] | WalkForward = (0.6, 0.2, 0.2),
    trainer: Mapping[str, Any] | TrainerConfig | None = None,
    seed: int = 0,
    sampler: Sampler | None = None,
    stop: Iterable[Node | str] = (),
    fold: bool = True,
    backend: str = "cpp",
    parity: bool = True,
    parity_events: int | None = PARITY_EVENTS,
    progress: bool | None = None,
    total: int | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    report_horizons: Iterable[float] = (),
    execution: Any = None,
) -> FitResult:
    """Fit the learnable parameters under output `target` so that it predicts `label` on `events`.

    label: (output, horizon seconds[, kind]) — the output's value at t + horizon as `kind` ("value" when the
    horizon is 0, else "return" by default; or "difference", "log_return"). split: chronological fractions
    (train, validation, test), train rows whose label reaches into validation purged; or a `WalkForward` (folds in
    time, each fitted afresh and scored on its own test window: `folds`, `out_of_sample()`). trainer: a dict of
    `TrainerConfig` fields. events: a table, a list of record batches, or a function returning a fresh
    iterable of batches (it is replayed twice: to record, then to check parity). sampler: which events
    become rows (default: every event). stop: nodes where tracing ends. on_epoch: called with each epoch's
    history entry (epoch, train_loss, val_loss, lr) as soon as it is done, e.g. to log it while the fit runs.
    report_horizons: more label horizons recorded for an evaluation report (`res.data.horizon_labels`).
    execution: a `hs.replay.Sharding` to record shard by shard on an engine (the parity slice stays serial).
    """
    from harness.kernel import compile as compile_kernel

    stages: dict[str, float] = {}
    with _timed(stages, "trace_s"):
        config = trainer if isinstance(trainer, TrainerConfig) else TrainerConfig.from_dict(dict(trainer or {}))
        lab = make_label(label)
        tr, replayable = _trace_for_fit(circuit, events, target, lab, stop)
    with _timed(stages, "compile_s"):
        kernel = compile_kernel(tr.recording_circuit(), backend=backend)
    with _timed(stages, "record_s"):
        horizons = tuple(float(h) for h in report_horizons)
        recorded = events if execution is not None else replayable()  # a sharded recording re-opens the events
        data = collect(
            tr,
            kernel,
            recorded,
            label=lab,
            sampler=sampler,
            progress=progress,
            total=total,
            horizons=horizons,
            shards=execution,
        )
        _spill_if_large(data, config)
        release_memory()  # what recording and joining its pieces freed (~40% of the resident size at 10M events)
    with _timed(stages, "train_s"):
        model, parts, training, folds = _train(tr, kernel, data, split, config, fold, seed, on_epoch)

    fitted = model.param_values()
    params = {**kernel.params, **fitted}
    kernel.set_params(params)
    metrics = dict(training.metrics) if not folds else _fold_metrics(folds, data.y)
    metrics.update(rows_train=len(parts.train), rows_val=len(parts.val), rows_test=len(parts.test))
    result = FitResult(
        params=params, metrics=metrics, model=model, history=training.history, trace=tr, kernel=kernel, data=data,
        split=parts, training=training, stages=stages, folds=folds,
    )  # fmt: skip
    if parity:
        _check_fitted_parity(result, replayable, parity_events)
    return result


def _train(
    tr: Trace,
    kernel: Kernel,
    data: FitData,
    split: tuple[float, float, float] | WalkForward,
    config: TrainerConfig,
    fold: bool,
    seed: int,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> tuple[CircuitModel, Split, TrainResult, list[FoldResult]]:
    """Train on a chronological split or walk-forward folds; a failed fit releases the recording (a spilled one's
    folder goes with it)."""
    try:
        if isinstance(split, WalkForward):
            return _train_folds(tr, kernel, data, split, config, fold, seed, on_epoch)
        parts = chronological_split(data.t, split, horizon_ns=data.horizon_ns)
        model, training = _train_model(tr, kernel, data, parts, config, fold=fold, seed=seed, on_epoch=on_epoch)
        return model, parts, training, []
    except BaseException:
        data.close()
        raise


def _spill_if_large(data: FitData, config: TrainerConfig) -> None:
    """Spill the recording to Parquet when it holds more than `memory_rows` points (read back in pieces)."""
    points = point_count(data)
    if config.memory_rows is None or points <= config.memory_rows:
        return
    if config.piece_rows is None:
        raise TrainerError(
            f"trainer.memory_rows={config.memory_rows}: the recording holds {points} points, so it is spilled to "
            "disk and read back in pieces, which needs trainer.piece_rows (got None); set piece_rows (e.g. "
            "100000) or memory_rows=None to keep it in memory"
        )
    data.points = spill(data, config.spill_dir, config.piece_rows)


@contextmanager
def _timed(stages: dict[str, float], key: str) -> Iterator[None]:
    """Record the seconds the block took as `stages[key]` (when it finishes without raising)."""
    clock = time.perf_counter()
    yield
    stages[key] = time.perf_counter() - clock


def _trace_for_fit(
    circuit: Circuit, events: object, target: str, lab: Label, stop: Iterable[Node | str]
) -> tuple[Trace, Callable[[], object]]:
    """The trace of `target` and a replayable `events`, checking the label is an output and a parameter is fitted."""
    if lab.output not in circuit.outputs:
        raise FitError(f"fit: label output {lab.output!r} is not an output of circuit {circuit.name!r}")
    replayable = _replayable(events)
    tr = trace(circuit, target, stop=stop)
    if not tr.params:
        raise FitError(
            f"fit: output {target!r} of circuit {circuit.name!r} depends on no learnable parameter; "
            "declare one with c.parameter(name, init=...) and use it under the target"
        )
    return tr, replayable


def _train_model(
    tr: Trace,
    kernel: Kernel,
    data: FitData,
    parts: Split,
    config: TrainerConfig,
    *,
    fold: bool,
    seed: int,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    init: dict[str, float] | None = None,
    check_start: bool = True,
) -> tuple[CircuitModel, TrainResult]:
    """Build the torch model at the kernel's parameters (or `init`), check it against the kernel, and train it on
    `parts`."""
    model = CircuitModel(data, fold=fold, init=kernel.params if init is None else init)
    model.piece_rows = config.piece_rows  # beyond it the model is evaluated in chronological pieces (exact)
    if tr.statistics:  # frozen train statistics: from the training rows, into the model and the kernel
        stats = train_statistics(tr, data, parts.train.numpy())
        model.set_statistics(stats)
        kernel.set_params(stats)
    elif check_start:  # (with statistics the recorded target used the placeholder values; parity after fitting holds)
        with torch.no_grad():
            start = model().numpy()
        _check_parity(start, data.kernel_target, data, "before fitting (the torch model at the initial parameters)")
    try:
        training = train(model, torch.from_numpy(data.y), parts, config, seed=seed, on_epoch=on_epoch)
    except NonFiniteLoss as e:
        raise FitError(f"NaN guard: {e}; {_explain(model, data, e)}") from None
    return model, training


def _train_folds(
    tr: Trace,
    kernel: Kernel,
    data: FitData,
    wf: WalkForward,
    config: TrainerConfig,
    fold: bool,
    seed: int,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> tuple[CircuitModel, Split, TrainResult, list[FoldResult]]:
    """Fit each walk-forward fold afresh from the initial parameters; `on_epoch` sees the epochs of all folds
    numbered on (with the fold's index under "fold"). The last fold's model, split and training, and all folds."""
    init = dict(kernel.params)
    done: list[FoldResult] = []
    model, training, epochs = None, None, 0
    for f in wf.folds(data.t, data.horizon_ns):

        def numbered(entry: dict[str, float], base: int = epochs, index: int = f.index) -> None:
            if on_epoch is not None:
                on_epoch({**entry, "epoch": entry["epoch"] + base, "fold": index})

        model, training = _train_model(
            tr, kernel, data, f.split, config, fold=fold, seed=seed, on_epoch=numbered, init=init, check_start=not done
        )  # fmt: skip
        with torch.no_grad():
            pred = model(f.split.test).numpy()
        test = evaluate(torch.from_numpy(pred), torch.from_numpy(data.y[f.split.test.numpy()]))
        metrics = {**training.metrics, **{f"test_{k}": v for k, v in test.items()}}
        done.append(FoldResult(f, model.param_values(), metrics, pred, training.history))
        epochs += len(training.history)
    assert model is not None and training is not None  # wf.folds raises when there is no fold
    return model, done[-1].fold.split, training, done


def _fold_metrics(folds: list[FoldResult], y: np.ndarray) -> dict[str, float]:
    """A walk-forward fit's metrics: losses averaged over folds, test_* over every fold's out-of-sample rows."""
    rows = np.concatenate([f.fold.split.test.numpy() for f in folds])
    pred = np.concatenate([f.predictions for f in folds])
    test = evaluate(torch.from_numpy(pred), torch.from_numpy(y[rows]))
    last = folds[-1].metrics
    return {
        "train_loss": float(np.mean([f.metrics["train_loss"] for f in folds])),
        "val_loss": float(np.mean([f.metrics["val_loss"] for f in folds])),
        **{f"test_{k}": v for k, v in test.items()},
        "best_epoch": last["best_epoch"],
        "epochs_run": last["epochs_run"],
        "folds": float(len(folds)),
    }


def _check_fitted_parity(result: FitResult, replayable: Callable[[], object], parity_events: int | None) -> None:
    """Replay the fitted kernel over the first `parity_events` events; ParityError (keeping `result`) on a mismatch."""
    tr, data = result.trace, result.data
    with _timed(result.stages, "parity_s"):
        replayed = replay_target(result.kernel, replayable(), tr.target_output, data.domains[0].rows, parity_events)
        with torch.no_grad():
            pred = result.model().numpy()[: len(replayed)]
        result.parity = _parity_stats(replayed, pred)
        result.kernel_predictions = replayed
    try:
        _check_parity(pred, replayed, data, "after fitting (the fitted kernel replayed)")
    except FitError as e:
        raise ParityError(str(e), result) from None


def train_statistics(tr: Trace, data: FitData, train_rows: np.ndarray) -> dict[str, float]:
    """The value of each `Circuit.statistic` of the trace: mean or standard deviation (population) of its
    node over the valid training rows (a standard deviation of 0, or no valid row, gives 1)."""
    out: dict[str, float] = {}
    for name, (column, kind) in tr.statistics.items():
        values, valid = data.stat_sources[column]
        x = values[train_rows][valid[train_rows]]
        x = x[np.isfinite(x)]
        if kind == "mean":
            out[name] = float(x.mean()) if len(x) else 0.0
        else:
            std = float(x.std()) if len(x) else 0.0
            out[name] = std if std > 0.0 and math.isfinite(std) else 1.0
    return out


def make_label(label: Label | tuple) -> Label:
    """The one label of a fit: a Label, or (output, horizon[, kind]) with kind "value" at horizon 0."""
    if isinstance(label, Label):
        lab = label
    elif isinstance(label, tuple) and len(label) in (2, 3) and isinstance(label[0], str):
        horizon = label[1]
        if isinstance(horizon, (list, tuple)):
            raise FitError(f"fit: label {label!r} must have one horizon (a number of seconds), not several")
        kind = label[2] if len(label) == 3 else ("value" if horizon == 0 else "return")
        try:
            lab = Label(label[0], (horizon,), kind)
        except LabelError as e:
            raise FitError(f"fit: {e}") from None
    else:
        raise FitError(f"fit: label must be (output, horizon seconds[, kind]) or a hs.replay.Label, got {label!r}")
    if len(lab.horizons) != 1:
        raise FitError(f"fit: label {lab.output!r} must have one horizon, got {lab.horizons}")
    return lab


def replay_target(
    kernel: Kernel, events: object, output: str, rows: np.ndarray, max_events: int | None = None
) -> np.ndarray:
    """The kernel's `output` at replay positions `rows` (reset first; nan where invalid), over the first
    `max_events` events (None: all); only the positions inside that slice are returned."""
    kernel.reset()
    out: list[np.ndarray] = []
    for chunk in chunks(kernel, events, max_events=max_events, label="parity"):
        lo, hi = np.searchsorted(rows, [chunk.offset, chunk.offset + chunk.rows.num_rows])
        if hi > lo:
            picked = chunk.rows.column(output).take(pa.array(rows[lo:hi] - chunk.offset, pa.int64()))
            out.append(picked.to_numpy(zero_copy_only=False).astype(np.float64))
        if hi == len(rows):
            break
    return np.concatenate(out) if out else np.empty(0)


def _parity_stats(kernel_values: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    with np.errstate(invalid="ignore"):
        err = np.abs(kernel_values - pred)
    scale = np.abs(kernel_values)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(scale > 0, err / scale, err)
    return {
        "rows": float(len(pred)),
        "max_abs_error": float(np.nanmax(err)) if len(err) else 0.0,
        "max_rel_error": float(np.nanmax(rel)) if len(rel) else 0.0,
    }


def _check_parity(pred: np.ndarray, kernel_values: np.ndarray, data: FitData, when: str) -> None:
    """Raise FitError naming the first row where torch and the kernel differ beyond 1e-9 rel + 1e-12 abs."""
    both_nan = np.isnan(pred) & np.isnan(kernel_values)
    same_inf = np.isinf(pred) & (pred == kernel_values)
    with np.errstate(invalid="ignore"):
        close = np.abs(pred - kernel_values) <= PARITY_RTOL * np.abs(kernel_values) + PARITY_ATOL
    ok = both_nan | same_inf | close
    if ok.all():
        return
    i = int(np.flatnonzero(~ok)[0])
    raise FitError(
        f"parity {when}: output {data.trace.target_output!r} at training row {i} (t={int(data.t[i])}) is "
        f"{kernel_values[i]!r} in the kernel but {pred[i]!r} in torch ({int((~ok).sum())} rows differ beyond "
        f"{PARITY_RTOL:g} relative + {PARITY_ATOL:g} absolute)"
    )


def _explain(model: CircuitModel, data: FitData, e: NonFiniteLoss) -> str:
    pred, y, rows = e.pred.reshape(-1), e.y.reshape(-1), e.rows.reshape(-1)
    bad = torch.nonzero(~torch.isfinite(pred) | ~torch.isfinite(y)).flatten()
    if not len(bad):
        return "every prediction and label of the batch is finite (the loss overflowed)"
    i = int(bad[0])
    row = int(rows[i])
    if math.isfinite(float(pred[i])):
        return f"the label {data.label_column!r} is {float(y[i])!r} at training row {row} (t={int(data.t[row])})"
    return model.explain(row)


def _replayable(events: object) -> Callable[[], object]:
    """A function giving a fresh pass over `events` (tables and lists can be replayed as they are)."""
    if callable(events):
        return events  # type: ignore[return-value]
    if isinstance(events, (pa.Table, pa.RecordBatch, list, tuple)):
        return lambda: events
    raise FitError(
        f"fit: events must be a pyarrow Table, a list of record batches or a function returning an iterable of "
        f"batches (they are replayed twice), got {type(events).__name__}"
    )
