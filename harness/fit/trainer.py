"""A small, deterministic torch trainer that fits the learnable parameters of a circuit model.

The model is any `torch.nn.Module` whose `forward(rows)` takes an int64 tensor of row indices (sorted ascending)
and returns float64 predictions for those rows; labels are a float64 tensor `y` over all rows, in time order.

    split = chronological_split(t, (0.6, 0.2, 0.2), horizon_ns=5_000_000_000)
    result = train(model, y, split, TrainerConfig.from_dict({"optimizer": "adam", "lr": 0.05}), seed=0)
    result.metrics  # train_loss, val_loss, test_mse, test_r2, test_ic, best_epoch, epochs_run
    result.warnings  # a suspect fit, in words: parameters without gradient at the start, a diverged loss
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from harness.errors import HarnessError

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = [
    "FitWarning",
    "NonFiniteLoss",
    "Split",
    "TrainResult",
    "TrainerConfig",
    "TrainerError",
    "chronological_split",
    "evaluate",
    "train",
    "zero_gradients",
]

OPTIMIZERS = ("adam", "sgd", "lbfgs")
SCHEDULES = ("step", "cosine")
LOSSES = ("mse", "huber")
DIVERGENCE_FACTOR = 10.0  # a loss ending this many times above its start is a diverged fit (a warning)


class TrainerError(HarnessError, ValueError):
    """A trainer config, split or training input breaks a rule: the message names the field, the value and the rule."""


class FitWarning(UserWarning):
    """A fit that finished but is suspect (a parameter without gradient at the start, a diverged loss)."""


class NonFiniteLoss(TrainerError):
    """A train-batch or validation loss is NaN or inf; carries the batch so the caller can diagnose the operator."""

    def __init__(self, message: str, *, epoch: int, rows: torch.Tensor, pred: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.rows = rows
        self.pred = pred
        self.y = y


# ----------------------------------------------------------------------------------------------------- config


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _is_real(v: object) -> bool:
    return (_is_int(v) or isinstance(v, float | np.floating)) and math.isfinite(float(v))  # type: ignore[arg-type]


def _bad(name: str, value: object, rule: str) -> TrainerError:
    return TrainerError(f"TrainerConfig.{name}={value!r}: {rule}")


@dataclass(frozen=True)
class TrainerConfig:
    """How to fit: optimizer, schedule, loss, batching, early stopping; validated on construction."""

    optimizer: str = "adam"
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    epochs: int = 300
    batch_size: int | None = None
    schedule: str | None = None
    step_every: int = 100
    step_factor: float = 0.5
    loss: str = "mse"
    huber_delta: float = 1.0
    normalize_target: bool = True
    patience: int | None = None
    min_delta: float = 0.0
    lbfgs_max_iter: int = 20
    compile: bool = False
    progress: bool | None = None
    piece_rows: int | None = 100_000  # 250k: ~15% faster epochs at 4M-10M events, +100 MiB peak RSS at 10M
    memory_rows: int | None = 20_000_000  # recorded points (all domains) held in memory; beyond: spilled
    spill_dir: str | None = None

    def __post_init__(self) -> None:
        """Check every field so a bad config fails here, not epochs into a fit."""
        self._choice("optimizer", OPTIMIZERS)
        self._real("lr", lambda v: v > 0, "must be a finite number > 0")
        self._real("momentum", lambda v: v >= 0, "must be a finite number >= 0")
        self._real("weight_decay", lambda v: v >= 0, "must be a finite number >= 0")
        self._int("epochs", optional=False)
        self._int("batch_size", optional=True)
        if self.schedule is not None:
            self._choice("schedule", SCHEDULES, extra=" or None")
        self._int("step_every", optional=False)
        self._real("step_factor", lambda v: 0 < v < 1, "must be a number with 0 < step_factor < 1")
        self._choice("loss", LOSSES)
        self._real("huber_delta", lambda v: v > 0, "must be a finite number > 0")
        self._bool("normalize_target", optional=False)
        self._int("patience", optional=True)
        self._real("min_delta", lambda v: v >= 0, "must be a finite number >= 0")
        self._int("lbfgs_max_iter", optional=False)
        self._bool("compile", optional=False)
        self._bool("progress", optional=True)
        self._int("piece_rows", optional=True)
        self._int("memory_rows", optional=True)
        if self.spill_dir is not None and (not isinstance(self.spill_dir, str) or not self.spill_dir):
            raise _bad("spill_dir", self.spill_dir, "must be a folder path (a non-empty string) or None")
        if self.optimizer != "sgd" and self.momentum != 0:
            raise _bad("momentum", self.momentum, f"applies to optimizer 'sgd' only, not {self.optimizer!r}")
        if self.optimizer == "lbfgs" and self.weight_decay != 0:
            raise _bad("weight_decay", self.weight_decay, "is not supported by optimizer 'lbfgs' (use adam or sgd)")
        if self.optimizer == "lbfgs" and self.batch_size is not None:
            raise _bad("batch_size", self.batch_size, "optimizer 'lbfgs' runs full batch only (batch_size=None)")

    def _choice(self, name: str, allowed: Sequence[str], extra: str = "") -> None:
        value = getattr(self, name)
        if not isinstance(value, str) or value not in allowed:
            raise _bad(name, value, f"must be one of {', '.join(repr(a) for a in allowed)}{extra}")

    def _real(self, name: str, ok: Callable[[float], bool], rule: str) -> None:
        value = getattr(self, name)
        if not _is_real(value) or not ok(float(value)):
            raise _bad(name, value, rule)

    def _int(self, name: str, *, optional: bool) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        if not _is_int(value) or value < 1:
            raise _bad(name, value, "must be an int >= 1" + (" or None" if optional else ""))

    def _bool(self, name: str, *, optional: bool) -> None:
        value = getattr(self, name)
        if not (isinstance(value, bool) or (optional and value is None)):
            raise _bad(name, value, "must be True or False" + (" or None" if optional else ""))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainerConfig:
        """Build a config from a plain mapping (e.g. a YAML section), rejecting keys it does not know."""
        if not isinstance(d, Mapping):
            raise TrainerError(f"TrainerConfig.from_dict: expected a mapping, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in known:
                raise TrainerError(f"TrainerConfig: unknown key {key!r} (known keys: {', '.join(known)})")
        return cls(**d)


# ------------------------------------------------------------------------------------------------------ split


@dataclass
class Split:
    """Row indices (int64, ascending) of the train, validation and test parts, and rows purged per part."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    purged: dict[str, int] = field(default_factory=dict)


def chronological_split(t: np.ndarray, fractions: Sequence[float] = (0.6, 0.2, 0.2), horizon_ns: int = 0) -> Split:
    """Cut rows in time order into train/val/test, keep equal timestamps together, and purge label overlap.

    1. Cut by row counts: the train part ends at round(n * f_train), the val part at round(n * (f_train + f_val)).
    2. Move each cut forward past rows that share the timestamp of the row just before it, so one timestamp is
       never split between two parts (a part may therefore end up larger, and a later one smaller or empty).
    3. Purge: a row whose label spans [t, t + horizon_ns] must not reach into the next part, so every train row with
       t + horizon_ns >= time of the first row after train (the first val row; the first test row if val is empty)
       is dropped, and likewise every val row with t + horizon_ns >= the first test row's time. The counts of
       dropped rows are in `Split.purged` ({"train": ..., "val": ...}); with horizon_ns=0 nothing is purged.
    """
    t = np.asarray(t)
    if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer):
        raise TrainerError(f"chronological_split: t must be a 1-D integer array of row times, got {t.dtype} {t.shape}")
    t = t.astype(np.int64, copy=False)
    n = len(t)
    if n == 0:
        raise TrainerError("chronological_split: t is empty, there are no rows to split")
    if n > 1 and bool(np.any(np.diff(t) < 0)):
        i = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
        raise TrainerError(f"chronological_split: t must be non-decreasing, but row {i} (t={t[i]}) < row {i - 1}")
    fr = _check_fractions(fractions)
    if not _is_int(horizon_ns) or horizon_ns < 0:
        raise TrainerError(f"chronological_split: horizon_ns={horizon_ns!r} must be an int >= 0")

    def advance(cut: int) -> int:
        """Move a cut forward so the row before it and the row after it have different timestamps."""
        if 0 < cut < n and t[cut] == t[cut - 1]:
            return int(np.searchsorted(t, t[cut - 1], side="right"))
        return cut

    c1 = advance(min(n, max(0, round(n * fr[0]))))
    c2 = advance(max(c1, min(n, round(n * (fr[0] + fr[1])))))
    train_rows, val_rows, test_rows = np.arange(0, c1), np.arange(c1, c2), np.arange(c2, n)

    def purge(rows: np.ndarray, next_start: int) -> np.ndarray:
        """Keep the rows whose label horizon ends before the first row of the next part."""
        if next_start >= n or len(rows) == 0:
            return rows
        limit = int(t[next_start]) - int(horizon_ns)  # keep t < limit, i.e. t + horizon < next start
        return rows[t[rows] < max(limit, np.iinfo(np.int64).min)]

    kept_train = purge(train_rows, c1 if len(val_rows) else c2)
    kept_val = purge(val_rows, c2)
    if len(train_rows) and not len(kept_train):
        raise TrainerError(
            f"chronological_split: horizon_ns={horizon_ns} purges all {len(train_rows)} train rows "
            "(every train label reaches into the next part); use a shorter horizon or more data"
        )
    if not len(kept_train):
        raise TrainerError(f"chronological_split: the train part is empty ({n} rows, fractions {tuple(fr)})")
    return Split(
        train=_rows_tensor(kept_train),
        val=_rows_tensor(kept_val),
        test=_rows_tensor(test_rows),
        purged={"train": len(train_rows) - len(kept_train), "val": len(val_rows) - len(kept_val)},
    )


def _rows_tensor(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Fractions are three finite numbers >= 0, train > 0, summing to 1 within 1e-9."""
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise TrainerError(f"chronological_split: fractions={fractions!r} must be three numbers") from None
    if len(fr) != 3:
        raise TrainerError(f"chronological_split: fractions={fractions!r} must be three numbers (train, val, test)")
    if not all(math.isfinite(f) and f >= 0 for f in fr):
        raise TrainerError(f"chronological_split: fractions={fractions!r} must all be finite and >= 0")
    if fr[0] <= 0:
        raise TrainerError(f"chronological_split: fractions={fractions!r}: the train fraction must be > 0")
    if abs(sum(fr) - 1.0) > 1e-9:
        raise TrainerError(f"chronological_split: fractions={fractions!r} sum to {sum(fr)!r}, must sum to 1")
    return fr  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------- metrics


def evaluate(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Label-unit metrics of predictions: mse, r2 (1 - SSE/SST about y's mean) and ic (Pearson correlation).

    r2 is NaN when y is constant (SST = 0); ic is NaN when either side is constant; all are NaN when empty.
    """
    p = pred.detach().to(torch.float64).reshape(-1)
    a = y.detach().to(torch.float64).reshape(-1)
    if p.shape != a.shape:
        raise TrainerError(f"evaluate: pred has {p.numel()} values but y has {a.numel()}")
    if p.numel() == 0:
        return {"mse": math.nan, "r2": math.nan, "ic": math.nan}
    err = p - a
    sse = float((err * err).sum())
    sst = float(((a - a.mean()) ** 2).sum())
    dp, da = p - p.mean(), a - a.mean()
    sp, sa = float((dp * dp).sum()), float((da * da).sum())
    ic = float((dp * da).sum()) / math.sqrt(sp * sa) if sp > 0 and sa > 0 else math.nan
    return {"mse": sse / p.numel(), "r2": 1.0 - sse / sst if sst > 0 else math.nan, "ic": ic}


# ------------------------------------------------------------------------------------------------------ train


@dataclass
class TrainResult:
    """What a fit produced: per-epoch history, final metrics and the target statistics that go with the model."""

    history: list[dict[str, float]]
    metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    target_mean: float
    target_std: float
    compiled: bool
    seconds: float
    start_loss: float = math.nan  # the validation loss at the initial parameters (NaN without validation rows)
    zero_grad: list[str] = field(default_factory=list)  # learnable parameters with zero gradient at the start
    warnings: list[str] = field(default_factory=list)  # why the fit is suspect, each with a hint (FitWarning)


class _Forward:
    """Calls the model, through torch.compile when asked; on any compile failure warns once and stays eager."""

    def __init__(self, model: torch.nn.Module, use_compile: bool) -> None:
        self.model = model
        self.fn: Callable[[torch.Tensor], torch.Tensor] = model
        self.compiled = False
        if use_compile:
            try:
                self.fn = torch.compile(model)
                self.compiled = True
            except Exception as exc:
                self._fall_back("torch.compile", exc)

    def _fall_back(self, where: str, exc: BaseException) -> None:
        warnings.warn(
            f"torch.compile failed ({where} raised {type(exc).__name__}: {exc}); falling back to eager mode",
            RuntimeWarning,
            stacklevel=2,
        )
        self.fn, self.compiled = self.model, False

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        if self.compiled:
            try:
                return self.fn(rows)
            except Exception as exc:
                self._fall_back("the compiled forward", exc)
        return self.model(rows)


def _loss_fn(config: TrainerConfig, scale: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The configured loss on residuals divided by `scale` (the train label std, or 1)."""

    def loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = (pred - y) / scale
        if config.loss == "huber":
            return torch.nn.functional.huber_loss(r, torch.zeros_like(r), delta=config.huber_delta)
        return (r * r).mean()

    return loss


def _make_optimizer(params: list[torch.nn.Parameter], c: TrainerConfig) -> torch.optim.Optimizer:
    if c.optimizer == "adam":
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
    if c.optimizer == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    return torch.optim.LBFGS(params, lr=c.lr, max_iter=c.lbfgs_max_iter, line_search_fn="strong_wolfe")


def _make_scheduler(opt: torch.optim.Optimizer, c: TrainerConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    if c.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=c.step_every, gamma=c.step_factor)
    if c.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    return None


def _non_finite(epoch: int, part: str, rows: torch.Tensor, pred: torch.Tensor, y: torch.Tensor, loss: float) -> None:
    """Raise NonFiniteLoss naming the epoch and the first row whose prediction or label is not finite."""
    pred = pred.detach().clone()
    bad = ~(torch.isfinite(pred) & torch.isfinite(y))
    where = f"{len(rows)} {part} rows"
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        detail = f"first non-finite row {int(rows[i])} (pred={float(pred[i])!r}, y={float(y[i])!r})"
    else:
        detail = "every prediction and label is finite, so the loss itself overflowed"
    raise NonFiniteLoss(
        f"epoch {epoch}: {part} loss is {loss!r} on {where}; {detail}", epoch=epoch, rows=rows, pred=pred, y=y
    )


def _check_rows(name: str, rows: torch.Tensor, n: int) -> torch.Tensor:
    """Split parts are 1-D int64 indices into y; returned sorted ascending as the model expects."""
    if not isinstance(rows, torch.Tensor) or rows.dtype != torch.int64 or rows.ndim != 1:
        what = f"{rows.dtype} {tuple(rows.shape)}" if isinstance(rows, torch.Tensor) else type(rows).__name__
        raise TrainerError(f"train: split.{name} must be a 1-D int64 tensor of row indices, got {what}")
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n):
        raise TrainerError(f"train: split.{name} has row indices outside [0, {n}) (y has {n} rows)")
    return torch.sort(rows).values


def _progress(config: TrainerConfig) -> Progress | None:
    """A started transient rich progress bar on stderr, or None when progress is off (auto: only on a terminal)."""
    show = sys.stderr.isatty() if config.progress is None else config.progress
    if not show:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("fit"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    progress.start()
    return progress


class _Run:
    """One fit in progress: the model's forward, the loss, the optimizer and the batching of the train rows."""

    def __init__(
        self, model: torch.nn.Module, y: torch.Tensor, split: tuple[torch.Tensor, ...], config: TrainerConfig, seed: int
    ) -> None:
        self.model, self.y, self.config = model, y, config
        self.tr, self.va, self.te = split
        self.gen = torch.Generator().manual_seed(seed)
        self.fwd = _Forward(model, config.compile)
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = _make_optimizer(params, config)
        self.sched = _make_scheduler(self.opt, config)
        y_tr = y[self.tr]
        self.target_mean = float(y_tr.mean())
        std = float(y_tr.std(correction=0))
        self.target_std = std if math.isfinite(std) and std > 0 else 1.0
        self.loss_fn = _loss_fn(config, self.target_std if config.normalize_target else 1.0)
        self.zero_grad: list[str] | None = None  # set after the fit's first backward

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate; after the fit's first backward, note which learnable parameters got no gradient."""
        loss.backward()
        if self.zero_grad is None:
            self.zero_grad = zero_gradients(self.model)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Predictions for rows, checked to be one value per row."""
        pred = self.fwd(rows)
        if not isinstance(pred, torch.Tensor) or pred.shape != rows.shape:
            got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
            raise TrainerError(f"train: model returned {got} for {len(rows)} rows; expected shape ({len(rows)},)")
        return pred

    def batches(self) -> list[torch.Tensor]:
        """The epoch's train batches: all rows, or a fresh shuffle cut into batches, each sorted ascending."""
        bs, tr = self.config.batch_size, self.tr
        if bs is None or bs >= len(tr):
            return [tr]
        perm = tr[torch.randperm(len(tr), generator=self.gen)]
        return [torch.sort(perm[i : i + bs]).values for i in range(0, len(perm), bs)]

    def loss_backward(self, epoch: int, rows: torch.Tensor) -> torch.Tensor:
        """The loss of one train batch with its gradient accumulated (raising NonFiniteLoss before any step).
        A model with `backward_in_pieces` (a CircuitModel over more rows than `piece_rows`) goes through
        chronological pieces of the rows, never holding one graph over all of them: the same loss and
        gradient, summed in another order."""
        done = self._in_pieces(rows)
        if done is None:
            loss = self.batch_loss(epoch, rows)
            self.backward(loss)
            return loss.detach()
        return self._pieces_done(epoch, rows, done[0])

    def _in_pieces(
        self, rows: torch.Tensor, ahead: torch.Tensor | None = None
    ) -> tuple[float, torch.Tensor | None] | None:
        """The model's `backward_in_pieces` of the loss over rows (and its predictions at `ahead`); None when the
        model has none or the rows fit in one piece."""
        in_pieces = getattr(self.model, "backward_in_pieces", None)
        if in_pieces is None:
            return None
        n = len(rows)
        return in_pieces(rows, lambda pred, part: self.loss_fn(pred, self.y[part]) * (len(part) / n), ahead)

    def _pieces_done(self, epoch: int, rows: torch.Tensor, total: float) -> torch.Tensor:
        """The summed loss of a backward in pieces, checked finite, as a tensor; notes parameters without gradient."""
        if not math.isfinite(total):
            with torch.no_grad():
                _non_finite(epoch, "train", rows, self.forward(rows), self.y[rows], total)
        if self.zero_grad is None:
            self.zero_grad = zero_gradients(self.model)
        return torch.tensor(total, dtype=torch.float64)

    def batch_loss(self, epoch: int, rows: torch.Tensor) -> torch.Tensor:
        """The loss of one train batch (with grad), raising NonFiniteLoss before anything steps on it."""
        pred, target = self.forward(rows), self.y[rows]
        loss = self.loss_fn(pred, target)
        if not bool(torch.isfinite(loss)):
            _non_finite(epoch, "train", rows, pred, target, float(loss.detach()))
        return loss

    def step(self, epoch: int, rows: torch.Tensor) -> float:
        """One optimizer step on a batch; returns the batch loss before the step."""
        if self.config.optimizer == "lbfgs":

            def closure() -> torch.Tensor:
                self.opt.zero_grad()
                return self.loss_backward(epoch, rows)

            return float(self.opt.step(closure).detach())  # type: ignore[union-attr]
        self.opt.zero_grad()
        loss = self.loss_backward(epoch, rows)
        self.opt.step()
        return float(loss)

    def eval_loss(self, rows: torch.Tensor, epoch: int | None = None) -> float:
        """The loss on rows without grad in eval mode; NaN for no rows; NonFiniteLoss during training epochs."""
        if rows.numel() == 0:
            return math.nan
        self.model.eval()
        with torch.no_grad():
            pred = self.forward(rows)
            loss = float(self.loss_fn(pred, self.y[rows]))
        if epoch is not None and not math.isfinite(loss):
            _non_finite(epoch, "validation", rows, pred, self.y[rows], loss)
        return loss

    def ahead(self) -> bool:
        """Whether an epoch's validation loss can come out of the next epoch's forward (see `epoch_ahead`): a model
        evaluated in pieces, one full batch per step (adam or sgd), validation rows all after the train rows."""
        if self.config.optimizer == "lbfgs" or self.va.numel() == 0 or self.tr.numel() == 0:
            return False
        if self.config.batch_size is not None and self.config.batch_size < len(self.tr):
            return False
        in_pieces = getattr(self.model, "in_pieces", None)
        return in_pieces is not None and bool(self.va[0] > self.tr[-1]) and in_pieces(self.tr)

    def epoch_ahead(self, epoch: int) -> tuple[float, dict[str, float]]:
        """Train one epoch whose forward also predicts the validation rows at the parameters it starts from: the
        validation loss of the epoch before (the same value `eval_loss` gives then), and this epoch's entry
        without its validation loss. One pass over the prefix per epoch instead of two."""
        self.model.train()
        lr = float(self.opt.param_groups[0]["lr"])
        self.opt.zero_grad()
        total, pred = self._in_pieces(self.tr, self.va)  # type: ignore[misc]
        val = float(self.loss_fn(pred, self.y[self.va]))
        if epoch > 1 and not math.isfinite(val):  # (epoch 1 starts from the initial parameters: not an epoch's)
            _non_finite(epoch - 1, "validation", self.va, pred, self.y[self.va], val)
        loss = float(self._pieces_done(epoch, self.tr, total))
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        return val, {"epoch": epoch, "train_loss": loss, "val_loss": math.nan, "lr": lr}

    def epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch, score validation, advance the schedule; returns the history entry."""
        self.model.train()
        lr = float(self.opt.param_groups[0]["lr"])
        total = sum(self.step(epoch, rows) * len(rows) for rows in self.batches())
        entry = {
            "epoch": epoch,
            "train_loss": total / len(self.tr),
            "val_loss": self.eval_loss(self.va, epoch),
            "lr": lr,
        }
        if self.sched is not None:
            self.sched.step()
        return entry


def _check_inputs(model: torch.nn.Module, y: torch.Tensor, split: Split, config: TrainerConfig, seed: int) -> None:
    """Reject bad arguments to train() with a message naming the argument and the rule."""
    if not isinstance(config, TrainerConfig):
        raise TrainerError(f"train: config must be a TrainerConfig, got {type(config).__name__}")
    if not _is_int(seed):
        raise TrainerError(f"train: seed={seed!r} must be an int")
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or not y.is_floating_point():
        raise TrainerError("train: y must be a 1-D floating-point tensor of labels, one per row")
    if not isinstance(split, Split):
        raise TrainerError(f"train: split must be a Split, got {type(split).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainerError(f"train: {type(model).__name__} has no parameters with requires_grad=True to fit")


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """torch's deterministic algorithms for the duration of a fit, then the caller's setting again."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def train(
    model: torch.nn.Module,
    y: torch.Tensor,
    split: Split,
    config: TrainerConfig,
    *,
    seed: int = 0,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Fit the model's parameters on split.train, pick the best epoch on split.val, and score split.test.

    Deterministic on CPU for a given seed; the global torch RNG is left as it was. The per-epoch train loss is
    the batch-size-weighted mean of each batch's loss before its optimizer step; losses are in units of the
    train label std when config.normalize_target (metrics test_* are always in label units). With a validation
    split the parameters of the best validation epoch are restored (and early stopping applies); without one the
    last parameters are kept and patience is ignored. The model is left with its original train/eval mode.
    `on_epoch` gets each epoch's history entry as soon as it is done (e.g. to log it while the fit runs; what it
    raises stops the fit). A suspect fit (a learnable parameter with an exactly-zero gradient after the first
    backward, a loss ending over 10x above its start) warns (`FitWarning`) and says why in `warnings`.
    """
    _check_inputs(model, y, split, config, seed)
    y = y.detach().to(torch.float64)
    rows = tuple(_check_rows(k, getattr(split, k), len(y)) for k in ("train", "val", "test"))
    if rows[0].numel() == 0:
        raise TrainerError("train: split.train is empty, there is nothing to fit")
    start, was_training = time.perf_counter(), model.training
    with torch.random.fork_rng(devices=[]), _deterministic():
        torch.manual_seed(seed)
        run = _Run(model, y, rows, config, int(seed))
        start_loss = run.eval_loss(run.va)  # the validation loss before any step: what divergence is measured by
        progress = _progress(config)
        try:
            history, best_epoch, stopped_early = _epochs(run, progress, on_epoch)
            metrics = _final_metrics(run, best_epoch, len(history))
        finally:
            if progress:
                progress.stop()
            model.train(was_training)
    notes = fit_warnings(history, start_loss, run.zero_grad or [], config)
    for note in notes:
        warnings.warn(note, FitWarning, stacklevel=2)
    return TrainResult(
        history=history,
        metrics=metrics,
        best_epoch=best_epoch,
        epochs_run=len(history),
        stopped_early=stopped_early,
        target_mean=run.target_mean,
        target_std=run.target_std,
        compiled=run.fwd.compiled,
        seconds=time.perf_counter() - start,
        start_loss=start_loss,
        zero_grad=list(run.zero_grad or []),
        warnings=notes,
    )


class _Kept:
    """The history of a fit's epochs, shown and handed on as each ends, and the best validation epoch's parameters
    (early stopping after `patience` epochs without improvement)."""

    def __init__(
        self, run: _Run, progress: Progress | None, on_epoch: Callable[[dict[str, float]], None] | None
    ) -> None:
        self.run, self.progress, self.on_epoch = run, progress, on_epoch
        self.history: list[dict[str, float]] = []
        self.best, self.best_epoch, self.since_best = math.inf, 0, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.task = progress.add_task("fit", total=run.config.epochs, losses="") if progress else None

    def add(self, entry: dict[str, float], state: dict[str, torch.Tensor]) -> bool:
        """Keep an epoch's entry with its parameters (`state`, copied only when the epoch is the best so far); True
        when the fit should stop."""
        config = self.run.config
        self.history.append(entry)
        if self.progress:
            epoch = entry["epoch"]
            losses = f"epoch {epoch}/{config.epochs}  train {entry['train_loss']:.4g}  val {entry['val_loss']:.4g}"
            self.progress.update(self.task, advance=1, losses=losses)  # type: ignore[arg-type]
        if self.on_epoch is not None:
            self.on_epoch(dict(entry))
        if self.run.va.numel() == 0:
            return False
        if entry["val_loss"] < self.best - config.min_delta:
            self.best, self.best_epoch, self.since_best = entry["val_loss"], int(entry["epoch"]), 0
            self.best_state = {k: v.detach().clone() for k, v in state.items()}
            return False
        self.since_best += 1
        return config.patience is not None and self.since_best >= config.patience


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's parameters and buffers now (they change at the next step)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _epochs(
    run: _Run, progress: Progress | None, on_epoch: Callable[[dict[str, float]], None] | None
) -> tuple[list[dict[str, float]], int, bool]:
    """The epochs of a fit: each trained, shown, handed to `on_epoch`, and kept when its validation loss is the
    best; the best epoch's parameters are restored at the end. (history, best epoch, stopped early)."""
    kept = _Kept(run, progress, on_epoch)
    stopped = _epochs_ahead(run, kept) if run.ahead() else _epochs_each(run, kept)
    if kept.best_state is None:  # no validation rows: the last parameters are kept
        return kept.history, len(kept.history), stopped
    run.model.load_state_dict(kept.best_state)
    return kept.history, kept.best_epoch, stopped


def _epochs_each(run: _Run, kept: _Kept) -> bool:
    """Epochs scored on validation as each ends; True when stopped early."""
    for epoch in range(1, run.config.epochs + 1):
        entry = run.epoch(epoch)
        if kept.add(entry, run.model.state_dict()):  # the live parameters: copied only for a best epoch
            return True
    return False


def _epochs_ahead(run: _Run, kept: _Kept) -> bool:
    """Epochs whose validation loss comes out of the next epoch's forward (`_Run.epoch_ahead`), the last one's
    from its own evaluation: the same history as `_epochs_each`, each entry handed on one epoch later. A stop
    found at epoch e discards the step epoch e + 1 took (the best parameters are restored anyway)."""
    pending: dict[str, float] | None = None
    for epoch in range(1, run.config.epochs + 1):
        start = _state(run.model)  # the parameters the epoch before ended with
        val, entry = run.epoch_ahead(epoch)
        if pending is not None:
            pending["val_loss"] = val
            if kept.add(pending, start):
                return True
        pending = entry
    if pending is not None:
        pending["val_loss"] = run.eval_loss(run.va, int(pending["epoch"]))
        return kept.add(pending, run.model.state_dict())
    return False


def zero_gradients(model: torch.nn.Module) -> list[str]:
    """The learnable parameters whose gradient is exactly zero (or absent) now, e.g. after a first backward.

    A parameter that gets no gradient at the start cannot move until what sits downstream of it does (a head
    whose weights start at 0 silences every learnable parameter upstream). Elements of a vector parameter are
    named `name[i]`, or by the model's `param_names` when that is its only learnable tensor (a CircuitModel).
    """
    learnable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    labels = getattr(model, "param_names", None)
    out: list[str] = []
    for name, p in learnable:
        grad = p.grad
        zero = torch.ones(p.numel(), dtype=torch.bool) if grad is None else grad.detach().reshape(-1) == 0
        if not bool(zero.any()):
            continue
        if p.numel() == 1:
            names = [name]
        elif len(learnable) == 1 and isinstance(labels, list | tuple) and len(labels) == p.numel():
            names = [str(n) for n in labels]
        else:
            names = [f"{name}[{i}]" for i in range(p.numel())]
        out += [names[i] for i in torch.nonzero(zero).flatten().tolist()]
    return out


def fit_warnings(
    history: list[dict[str, float]], start_loss: float, zero_grad: list[str], config: TrainerConfig
) -> list[str]:
    """Why a finished fit is suspect, each with a hint: parameters without gradient at the start, a loss that
    ended over DIVERGENCE_FACTOR times above its start (validation; train when there are no validation rows)."""
    notes = []
    if zero_grad:
        notes.append(
            f"no gradient at the start for {', '.join(zero_grad)}: exactly 0 after the first batch, so they move "
            "only once the parameters downstream do (e.g. head weights starting at 0), and a fit whose best "
            "epoch is the first returns them unfitted; start those weights away from 0 (hs.lib.linear does) "
            "or check that the parameters are used"
        )
    if history:
        where, first = ("validation", start_loss) if math.isfinite(start_loss) else ("train", history[0]["train_loss"])
        last = history[-1]["val_loss" if where == "validation" else "train_loss"]
        if first > 0 and last > DIVERGENCE_FACTOR * first:
            other = "lbfgs" if config.optimizer == "adam" else "adam"
            notes.append(
                f"the fit diverged: the {where} loss went from {first:.4g} at the start to {last:.4g} at epoch "
                f"{len(history)} (over {DIVERGENCE_FACTOR:g}x); try a lower learning rate (lr={config.lr:g}) or "
                f"another optimizer than {config.optimizer!r} (e.g. {other})"
            )
    return notes


def _final_metrics(run: _Run, best_epoch: int, epochs_run: int) -> dict[str, float]:
    """Losses of the kept parameters on train and val (loss units), and test metrics in label units."""
    train_loss, val_loss = run.eval_loss(run.tr), run.eval_loss(run.va)
    if run.te.numel():
        with torch.no_grad():
            test = evaluate(run.forward(run.te), run.y[run.te])
    else:
        test = evaluate(run.y[:0], run.y[:0])
    return {
        "train_loss": train_loss,
        "val_loss": val_loss,
        "test_mse": test["mse"],
        "test_r2": test["r2"],
        "test_ic": test["ic"],
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
    }
