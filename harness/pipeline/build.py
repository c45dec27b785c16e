"""From config to objects: the circuit, the events, the sampler, the label and the trainer of a pipeline run.

A circuit or stream config names the function that builds it (`target`, see `harness.pipeline.targets`); the
built-in ones (`harness.circuits`, `harness.pipeline.loaders`) go the same way as a user's own. Every function
here takes the composed config node and raises a ConfigError that names the config key when a value is unusable.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from harness.circuit.builder import Circuit
from harness.errors import HarnessError
from harness.evaluate.report import ReportConfig
from harness.fit.trainer import TrainerConfig, TrainerError
from harness.fit.walk_forward import WalkForward
from harness.names import IDENTIFIER, SEP, qualify
from harness.pipeline import targets
from harness.pipeline.events import DEFAULT_CHUNK, Events
from harness.pipeline.targets import ConfigError
from harness.replay.labels import Label
from harness.replay.sampling import Sampler, every_event, every_n, when
from harness.replay.shards import Sharding
from harness.streams.schema import split

__all__ = ["ConfigError", "Events", "build_circuit", "circuit_name", "load_stream", "stream_name"]

CIRCUITS_MODULE = "harness.circuits"  # the built-in circuits (older configs name one by `circuit.builder`)
LOADERS_MODULE = "harness.pipeline.loaders"  # the built-in streams (older configs name one by `stream.kind`)
DEFAULT_SPLIT = (0.6, 0.2, 0.2)  # task.split: null
STREAM_KEYS = ("chunk", "limit")  # applied by the pipeline to a returned table unless the function takes them


def _fields(node: DictConfig, drop: tuple[str, ...]) -> dict[str, Any]:
    values = OmegaConf.to_container(node, resolve=True)
    assert isinstance(values, dict)
    return {k: v for k, v in values.items() if k not in drop}


def _target(cfg: DictConfig, group: str) -> tuple[str, dict[str, Any]]:
    """The function `cfg.<group>` names and its keyword arguments (an older config's builder/kind mapped)."""
    legacy = ("builder", CIRCUITS_MODULE) if group == "circuit" else ("kind", LOADERS_MODULE)
    return targets.split_target(_fields(cfg[group], ()), group, legacy)


def circuit_name(cfg: DictConfig) -> str:
    """The circuit's function as shown in the run summary: `fit_market`, or a user's `my_pkg.signals:build`."""
    return targets.short_name(_target(cfg, "circuit")[0], CIRCUITS_MODULE)


def stream_name(cfg: DictConfig) -> str:
    """The stream's function as named in the run's dataset input: `tardis`, or a user's `my_pkg.data:load`."""
    return targets.short_name(_target(cfg, "stream")[0], LOADERS_MODULE)


def build_circuit(cfg: DictConfig) -> Circuit:
    """The circuit of `cfg.circuit`: its `target` function called with the node's other keys."""
    spec, kwargs = _target(cfg, "circuit")
    circuit = targets.call(targets.locate(spec, "circuit.target"), spec, kwargs, "circuit")
    if not isinstance(circuit, Circuit):
        raise ConfigError(
            f"circuit.target={spec!r} returned {type(circuit).__name__}, not a harness.Circuit (the function must "
            "build the circuit and return it)"
        )
    return circuit


def load_stream(cfg: DictConfig) -> Events:
    """The events of `cfg.stream`: its `target` function called with the node's other keys; a returned table is
    cut to `stream.limit` rows and into batches of `stream.chunk` rows unless the function takes those keys."""
    spec, kwargs = _target(cfg, "stream")
    fn = targets.locate(spec, "stream.target")
    own = {k: kwargs.pop(k) for k in STREAM_KEYS if k in kwargs and not targets.takes(fn, k)}
    loaded = targets.call(fn, spec, kwargs, "stream")
    if isinstance(loaded, pa.Table):
        limit = own.get("limit")
        return Events.from_table(
            loaded, targets.short_name(spec, LOADERS_MODULE), [], int(own.get("chunk") or DEFAULT_CHUNK),
            None if limit is None else int(limit),
        )  # fmt: skip
    if not isinstance(loaded, Events):
        raise ConfigError(
            f"stream.target={spec!r} returned {type(loaded).__name__}, not a pyarrow.Table of events or a "
            "harness.pipeline.events.Events"
        )
    if own.get("limit") is not None:
        raise ConfigError(f"stream.limit: {spec!r} returns Events and takes no `limit`; cut the stream there")
    return loaded


def _label_market(cfg: DictConfig) -> str | None:
    """`task.label.market` (None: a stream without market names); a plain identifier."""
    market = cfg.task.label.get("market")
    if market is not None and (not isinstance(market, str) or not IDENTIFIER.fullmatch(market)):
        raise ConfigError(f"task.label.market={market!r} must be a market name (a plain identifier)")
    return market


def _of_market(name: str | None, market: str | None) -> str | None:
    """A trigger or output name of the label's market: `name` qualified by it unless it names a market already."""
    return name if name is None or market is None or SEP in name else qualify(name, market)


def make_sampler(cfg: DictConfig) -> Sampler:
    """`task.sampler`: every_event, every_n (n, trigger) or when (output); a trigger or output of the label's
    market (`task.label.market`) unless it names its own."""
    s, market = cfg.task.sampler, _label_market(cfg)
    if s.kind == "every_event":
        return every_event(trigger=_of_market(s.trigger, market))
    if s.kind == "every_n":
        return every_n(int(s.n), trigger=_of_market(s.trigger or "trade", market))
    if s.kind == "when":
        if not s.output:
            raise ConfigError("task.sampler.kind=when needs task.sampler.output (a boolean output of the circuit)")
        return when(s.output)
    raise ConfigError(f"task.sampler.kind={s.kind!r} is not one of every_event, every_n, when")


def make_label(cfg: DictConfig) -> Label:
    """`task.label` as a hs.replay.Label: with `task.label.market`, of that market's output `<market>.<output>`."""
    lab = cfg.task.label
    return Label(_of_market(lab.output, _label_market(cfg)), (float(lab.horizon),), lab.kind)  # type: ignore[arg-type]


def check_markets(cfg: DictConfig, circuit: Circuit, events: Events) -> None:
    """The circuit's markets against the stream's and the label's: a ConfigError naming a market the circuit
    triggers on that has no stream, or a label on a market the circuit does not have."""
    held = events.market_names()
    mine = list(dict.fromkeys(split(t)[0] for t in circuit.triggers))
    missing = [m for m in mine if m not in held]
    if missing and held:
        named = ", ".join("(without a name)" if m is None else repr(m) for m in missing)
        shown = ", ".join("(without a name)" if m is None else m for m in held)
        triggers = [t for t in circuit.triggers if split(t)[0] in missing]
        raise ConfigError(
            f"circuit {circuit.name!r}: its triggers {triggers} are of market(s) {named}, which have no stream "
            f"(the stream {events.source} holds the markets {shown}); add them to stream.markets or name them so"
        )
    market = _label_market(cfg)
    if market is not None and market not in mine:
        known = ", ".join(str(m) for m in mine if m is not None) or "none: the circuit has no market names"
        raise ConfigError(
            f"task.label.market={market!r}: the circuit {circuit.name!r} has no market {market!r} ({known})"
        )


def make_trainer(cfg: DictConfig) -> TrainerConfig:
    """`trainer` as a validated harness.fit.TrainerConfig."""
    return TrainerConfig.from_dict(_fields(cfg.trainer, ()))


def make_split(cfg: DictConfig) -> tuple[float, float, float] | WalkForward:
    """`task.split`: three fractions (`split_fractions`) or a walk-forward mapping `{kind: walk_forward, train,
    val, test[, window, step]}` (lengths in time: seconds or e.g. '2h')."""
    split = cfg.task.split
    if not isinstance(split, DictConfig):
        return split_fractions(cfg)
    spec = {str(k): v for k, v in split.items()}
    kind = spec.get("kind")
    if kind != "walk_forward":
        raise ConfigError(
            f"task.split.kind={kind!r}: a split mapping needs kind: walk_forward (or give three fractions, "
            "e.g. task.split=[0.6,0.2,0.2])"
        )
    try:
        return WalkForward.from_dict(spec)
    except TrainerError as e:
        raise ConfigError(str(e)) from None


def split_fractions(cfg: DictConfig) -> tuple[float, float, float]:
    """`task.split` as three fractions, each > 0 (an empty part leaves the objective NaN), summing to 1
    (null: `DEFAULT_SPLIT`)."""
    if cfg.task.split is None:
        return DEFAULT_SPLIT
    try:
        split = [float(x) for x in cfg.task.split]
    except (TypeError, ValueError):
        raise ConfigError(f"task.split={cfg.task.split} must be three numbers (train, validation, test)") from None
    if len(split) != 3:
        raise ConfigError(f"task.split={split} must be three fractions (train, validation, test)")
    empty = [part for part, f in zip(("train", "validation", "test"), split, strict=True) if not f > 0]
    if empty or not all(math.isfinite(f) for f in split):
        raise ConfigError(
            f"task.split={split}: the {' and '.join(empty) or 'non-finite'} part(s) would be empty; every part "
            "needs a finite fraction > 0 (train, validation, test), e.g. task.split=[0.6,0.2,0.2]"
        )
    if abs(sum(split) - 1.0) > 1e-9:
        raise ConfigError(f"task.split={split} sums to {sum(split)!r}; the fractions must sum to 1")
    return split[0], split[1], split[2]


def make_report(cfg: DictConfig) -> ReportConfig | None:
    """`report` as a ReportConfig (None when `report.enabled` is false); the label's horizon comes first."""
    r = cfg.report
    if not r.enabled:
        return None
    h = float(cfg.task.label.horizon)
    horizons = [float(x) for x in r.horizons] if r.horizons is not None else [h, 0.5 * h, 2.0 * h, 5.0 * h]
    horizons = list(dict.fromkeys([h, *horizons]))
    if any(not (math.isfinite(x) and x >= 0) for x in horizons):
        raise ConfigError(f"report.horizons={list(r.horizons)}: every horizon must be a finite number of seconds >= 0")
    for key in ("quantiles", "windows"):
        if int(r[key]) < 1:
            raise ConfigError(f"report.{key}={r[key]} must be >= 1")
    if not 0.0 <= float(r.threshold_quantile) < 1.0:
        raise ConfigError(f"report.threshold_quantile={r.threshold_quantile} must be in [0, 1)")
    if any(int(lag) < 1 for lag in r.lags):
        raise ConfigError(f"report.lags={list(r.lags)}: every lag must be >= 1 row")
    return ReportConfig(
        horizons=tuple(horizons), fee_bps=float(r.fee_bps),
        threshold=None if r.threshold is None else float(r.threshold), threshold_quantile=float(r.threshold_quantile),
        quantiles=int(r.quantiles), windows=int(r.windows),
        lags=tuple(int(x) for x in r.lags),
    )  # fmt: skip


def make_execution(cfg: DictConfig) -> Sharding | None:
    """`execution` as a hs.replay.Sharding, or None for one serial replay (execution=serial without shards)."""
    ex = cfg.get("execution")
    if ex is None or (ex.kind == "serial" and ex.shard_s is None and ex.shards is None):
        return None
    every = None if ex.shards is not None else float(ex.shard_s if ex.shard_s is not None else 86_400.0)
    try:
        return Sharding(
            every_s=every, count=None if ex.shards is None else int(ex.shards), engine=str(ex.kind),
            workers=ex.workers, warmup_s=ex.warmup_s, allow_unbounded=bool(ex.allow_unbounded), check=str(ex.check),
            address=ex.address, reuse_dir=ex.reuse_dir,
        )  # fmt: skip
    except HarnessError as e:
        raise ConfigError(f"execution: {e}") from None
