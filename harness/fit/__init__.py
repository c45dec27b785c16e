"""Fitting (`hs.fit`): trace the differentiable part of a circuit to torch, fold it, fit it, write it back.

res = hs.fit.fit(c, events, target="pred", label=("mid", 1.0), seed=0)
res.params, res.metrics, res.model
tr = hs.fit.trace(c, "pred")          # what would be fitted, and which leaves the replay records
"""

from harness.fit.data import FitData, FitDataError, collect
from harness.fit.fitting import FitError, FitResult, FoldResult, ParityError, fit, make_label, replay_target
from harness.fit.model import CircuitModel
from harness.fit.trace import Domain, TNode, Trace, trace
from harness.fit.trainer import (
    NonFiniteLoss,
    Split,
    TrainerConfig,
    TrainerError,
    TrainResult,
    chronological_split,
    train,
)
from harness.fit.walk_forward import Fold, WalkForward

__all__ = [
    "CircuitModel",
    "Domain",
    "FitData",
    "FitDataError",
    "FitError",
    "FitResult",
    "Fold",
    "FoldResult",
    "NonFiniteLoss",
    "ParityError",
    "Split",
    "TNode",
    "Trace",
    "TrainResult",
    "TrainerConfig",
    "TrainerError",
    "WalkForward",
    "chronological_split",
    "collect",
    "fit",
    "make_label",
    "replay_target",
    "trace",
    "train",
]
