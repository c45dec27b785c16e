"""From config to objects: the circuit, the events, the sampler, the label and the trainer of a pipeline run.

Circuits come from a registry of builders (`CIRCUITS`: builder name -> function of the config's fields);
streams from their `kind`. Every function here takes the composed config node and raises a HarnessError that
names the config key when a value is unusable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from harness import examples, streams
from harness.circuit.builder import Circuit
from harness.errors import HarnessError
from harness.fit.trainer import TrainerConfig
from harness.replay.labels import Label
from harness.replay.sampling import Sampler, every_event, every_n, when
from harness.streams.content_digest import StreamDigest
from harness.streams.rules import Rules


class ConfigError(HarnessError, ValueError):
    """A composed config names something that does not exist or cannot be used (the key is in the message)."""


def _fields(node: DictConfig, drop: tuple[str, ...]) -> dict[str, Any]:
    values = OmegaConf.to_container(node, resolve=True)
    assert isinstance(values, dict)
    return {k: v for k, v in values.items() if k not in drop}


def _linear_xy(init: float) -> Circuit:
    c = Circuit("linear_xy")
    x, y = c.input("x"), c.input("y")
    c.trigger("tick", x, y)
    c.output("pred", c.parameter("w1", init=init) * x + c.parameter("w2", init=init) * y)
    c.output("x_out", x)
    return c


CIRCUITS: dict[str, Callable[..., Circuit]] = {
    "fit_market": examples.fit_market,
    "trade_pressure": examples.trade_pressure,
    "linear_xy": _linear_xy,
}


def build_circuit(cfg: DictConfig) -> Circuit:
    """The circuit of `cfg.circuit` (its `builder` and the builder's parameters)."""
    builder = cfg.circuit.builder
    if builder not in CIRCUITS:
        raise ConfigError(f"circuit.builder={builder!r} is not a known circuit (known: {', '.join(CIRCUITS)})")
    return CIRCUITS[builder](**_fields(cfg.circuit, ("builder",)))


class Events:
    """A loaded stream: how to iterate it, its content digest, a description for the run, its files.

    A file stream is held as one table; a synthetic stream is regenerated on each pass (it is a pure function
    of its seed and settings), so 10M+ events never sit in memory at once. The digest is computed along the
    first complete pass (the replay that records the run), or by a pass of its own when asked for first.
    """

    def __init__(
        self,
        source_batches: Callable[[], Iterator[pa.RecordBatch]],
        rows: int,
        source: str,
        files: list[str],
        digest: str | None = None,
    ) -> None:
        self.source_batches = source_batches
        self.rows = rows
        self.source = source  # e.g. "synthetic(events=300000, seed=0)" or the first file's path
        self.files = files
        self._digest = digest

    @property
    def digest(self) -> str:
        """The content digest of the whole stream (`hs.streams.digest`)."""
        if self._digest is None:
            self._digest = streams.digest(self.source_batches())
        return self._digest

    def batches(self) -> Iterator[pa.RecordBatch]:
        """A fresh pass over the events as record batches (what the replay consumes); a first complete pass
        also computes the digest."""
        if self._digest is not None:
            yield from self.source_batches()
            return
        d = StreamDigest()
        for batch in self.source_batches():
            d.add(batch)
            yield batch
        self._digest = d.hexdigest()


def _paths(values: list[str] | None, key: str) -> list[Path] | None:
    if values is None:
        return None
    paths = [Path(v) for v in values]
    for p in paths:
        if not p.exists():
            raise ConfigError(f"{key}: data file {str(p)!r} does not exist (working directory {Path.cwd()})")
    return paths


def _rules(s: DictConfig) -> Rules:
    """`stream.rules` (the plausibility rules of the readers; a config without them gets the defaults)."""
    rules = s.get("rules")
    try:
        return Rules.of(None if rules is None else _fields(rules, ()))
    except HarnessError as e:
        raise ConfigError(f"stream.{e}") from None


def load_stream(cfg: DictConfig) -> Events:
    """Read or generate the events of `cfg.stream` and digest them."""
    s = cfg.stream
    kind = s.kind
    files: list[Path] = []
    chunk = int(s.chunk)
    if kind == "synthetic":
        n, seed = int(s.events), int(s.seed)
        params = OmegaConf.to_container(s.params, resolve=True)
        assert isinstance(params, dict)
        if n <= 0:
            raise ConfigError(f"stream.events={n} must be > 0")

        def generate() -> Iterator[pa.RecordBatch]:
            return streams.synthetic_batches(n, seed=seed, chunk=chunk, **params)

        return Events(generate, n, f"synthetic(events={n}, seed={seed})", [])
    if kind == "tardis":
        parts = {k: _paths(s[k], f"stream.{k}") for k in ("book", "trades", "quotes")}
        files = [p for v in parts.values() if v for p in v]
        table = streams.tardis(
            **parts, clock=s.clock, on_bad_rows=s.on_bad_rows, cache_dir=s.cache_dir, rules=_rules(s)
        )
        source = str(files[0]) if files else "tardis"
    elif kind == "binance":
        parts = {k: _paths(s[k], f"stream.{k}") for k in ("trades", "agg_trades", "book_ticker")}
        files = [p for v in parts.values() if v for p in v]
        table = streams.binance(**parts, on_bad_rows=s.on_bad_rows, cache_dir=s.cache_dir, rules=_rules(s))
        source = str(files[0]) if files else "binance"
    elif kind == "parquet":
        (path,) = _paths([s.path], "stream.path")  # type: ignore[misc]
        files = [path]
        table = streams.read_parquet(path, rules=_rules(s))
        source = str(path)
    else:
        raise ConfigError(f"stream.kind={kind!r} is not a known stream (synthetic, tardis, binance, parquet)")
    limit = s.get("limit")
    if limit is not None:
        table = table.slice(0, int(limit))
    if table.num_rows == 0:
        raise ConfigError(f"stream ({source}): no events")
    return Events(lambda: iter(table.to_batches(max_chunksize=chunk)), table.num_rows, source, [str(p) for p in files])


def make_sampler(cfg: DictConfig) -> Sampler:
    """`task.sampler`: every_event, every_n (n, trigger) or when (output)."""
    s = cfg.task.sampler
    if s.kind == "every_event":
        return every_event(trigger=s.trigger)
    if s.kind == "every_n":
        return every_n(int(s.n), trigger=s.trigger or "trade")
    if s.kind == "when":
        if not s.output:
            raise ConfigError("task.sampler.kind=when needs task.sampler.output (a boolean output of the circuit)")
        return when(s.output)
    raise ConfigError(f"task.sampler.kind={s.kind!r} is not one of every_event, every_n, when")


def make_label(cfg: DictConfig) -> Label:
    """`task.label` as a hs.replay.Label."""
    lab = cfg.task.label
    return Label(lab.output, (float(lab.horizon),), lab.kind)


def make_trainer(cfg: DictConfig) -> TrainerConfig:
    """`trainer` as a validated harness.fit.TrainerConfig."""
    return TrainerConfig.from_dict(_fields(cfg.trainer, ()))


def split_fractions(cfg: DictConfig) -> tuple[float, float, float]:
    """`task.split` as three fractions, each > 0 (an empty part leaves the objective NaN), summing to 1."""
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
