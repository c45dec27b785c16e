"""Structured configs of the pipeline, registered in Hydra's ConfigStore so that a typo in a key or a value
of the wrong type fails when the config is composed, with Hydra's message.

Each yaml option under `conf/<group>/` names its schema first in its defaults list (`- fit_market_schema`);
the experiments in `experiments/*.yaml` are registered as the `experiment` group (`+experiment=NAME`).
A circuit or stream schema's `target` names the function that builds it (`harness.pipeline.targets`);
`circuit=custom` / `stream=custom` have no schema: any keys, passed to the user's function.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from harness import package_data
from harness.errors import HarnessError
from harness.pipeline import user_conf

LAYOUT = package_data.layout()  # the checkout's conf/ and experiments/, or the installed package's copies
ROOT = LAYOUT.checkout  # the source checkout whose git commit a run logs; None for an installed wheel
CONF_DIR = LAYOUT.conf
EXPERIMENTS_DIR = LAYOUT.experiments
TRAINER_SOURCE = Path(__file__).resolve().parents[1] / "fit" / "trainer.py"  # where TrainerConfig is written
RULES_SOURCE = Path(__file__).resolve().parents[1] / "streams" / "rules.py"  # where the streams' Rules are written


# ----- circuits ------------------------------------------------------------------------------------------
@dataclass
class FitMarketCircuit:
    """`harness.circuits.fit_market`: decayed signed flow, mid against its EWMA, book imbalance, a linear head."""

    target: str = "harness.circuits:fit_market"
    halflife_pressure: float = 0.5  # initial half-life of the decayed trade flow (seconds)
    halflife_mid: float = 2.0  # initial half-life of the mid's EWMA (seconds)
    learn_halflives: bool = True  # fit the half-lives too (else they stay constants)
    signals: list[str] = field(default_factory=lambda: ["pressure", "mid_dev", "imbalance"])
    output_scale: float = 1e-4  # the head's output is multiplied by this (returns are small)


@dataclass
class TradePressureCircuit:
    """`harness.circuits.trade_pressure`: the flagship circuit (bursts, book fairs, returns, learnable mixes)."""

    target: str = "harness.circuits:trade_pressure"
    pressure_halflives: list[float] = field(default_factory=lambda: [0.5, 2.0, 8.0])
    return_halflives: list[float] = field(default_factory=lambda: [1.0, 5.0, 30.0])
    impulse_distances: list[float] = field(default_factory=lambda: [1.0, 5.0])
    imbalance_levels: int = 5  # 0 switches the imbalance off
    burst_gap: float = 0.02  # seconds of exchange time that end a burst
    burst_timeout: float = 0.05  # seconds after a burst's last fill that end it
    pressure: bool = True
    penetration: bool = True
    returns: bool = True
    fairs: bool = True
    learn_halflives: bool = True
    output_scale: float = 1e-4
    markets: Optional[list[str]] = None  # noqa: UP045  # several markets (streams named so); the first is predicted
    cross: bool = True  # with markets: the cross-market family (basis, the other's returns, lead-lag pressure)
    cross_horizons: list[float] = field(default_factory=lambda: [0.5, 2.0])  # of the other markets' returns (s)


@dataclass
class LinearXYCircuit:
    """A two-input linear circuit `w1*x + w2*y` on plain events (tests, tiny examples)."""

    target: str = "harness.circuits:linear_xy"
    init: float = 0.0


# ----- streams -------------------------------------------------------------------------------------------
@dataclass
class SyntheticStream:
    """`hs.streams.synthetic(events, seed, **params)`."""

    target: str = "harness.pipeline.loaders:synthetic"
    events: int = 300_000
    seed: int = 0
    chunk: int = 100_000  # events per record batch of the replay (memory holds about one batch at a time)
    params: dict[str, Any] = field(default_factory=dict)  # fields of hs.streams.SyntheticParams


@dataclass
class _FileStream:
    """What every file-based stream takes: the bad-row policy, a Parquet cache, batching, a row limit and the
    plausibility rules (`harness.streams.rules`; e.g. `stream.rules.min_time=1990-01-01` relaxes one)."""

    on_bad_rows: str = "error"
    cache_dir: Optional[str] = None  # noqa: UP045
    chunk: int = 100_000
    limit: Optional[int] = None  # noqa: UP045  # keep only the first `limit` events (quick runs)
    rules: Any = field(default_factory=lambda: StreamRulesConf())


@dataclass
class TardisStream(_FileStream):
    """`hs.streams.tardis(book=..., trades=..., quotes=...)`; each a path, a glob or a list of them, relative
    to the working directory."""

    target: str = "harness.pipeline.loaders:tardis"
    book: Any = None  # a path, a glob or a list of them (checked by harness.pipeline.loaders.files)
    trades: Any = None
    quotes: Any = None
    clock: str = "local"


@dataclass
class BinanceStream(_FileStream):
    """`hs.streams.binance(trades=..., agg_trades=..., book_ticker=...)`; each a path, a glob or a list."""

    target: str = "harness.pipeline.loaders:binance"
    trades: Any = None
    agg_trades: Any = None
    book_ticker: Any = None


@dataclass
class ParquetStream:
    """`hs.streams.read_parquet(path)`: an events table written by `hs.streams.write_parquet`."""

    target: str = "harness.pipeline.loaders:parquet"
    path: str = MISSING  # one file (or a glob matching one)
    chunk: int = 100_000
    limit: Optional[int] = None  # noqa: UP045
    rules: Any = field(default_factory=lambda: StreamRulesConf())


@dataclass
class CatalogStream:
    """`hs.data.read(root, markets, start, end)`: a date range of a market-data catalog (`harness data import`)."""

    target: str = "harness.pipeline.loaders:catalog"
    root: str = MISSING  # the catalog's directory
    markets: Any = None  # a market name or a list of them; None: the catalog's only market
    start: Optional[str] = None  # noqa: UP045  # first UTC date (YYYY-MM-DD), inclusive; None: the first
    end: Optional[str] = None  # noqa: UP045  # last UTC date, inclusive; None: the last
    verify: bool = True  # check each partition against its manifest digest as it is read
    named: bool = False  # each market under its name (<market>.book, <market>.<column>): for hs.lib.market(c, market=)
    chunk: int = 100_000
    limit: Optional[int] = None  # noqa: UP045


@dataclass
class MarketsStream:
    """Several markets in one stream: `markets: {perp: {kind: tardis, book: ..., trades: ..., clock: local},
    spot: {...}}` (kinds tardis, binance, parquet: each read with its reader and its market's name, then merged by
    time), or synthetic markets (`kind: synthetic`, `follows: <leader>`, `params: {...}`) generated together
    (`events` in all, `seed`, shared `params`)."""

    target: str = "harness.pipeline.loaders:markets"
    markets: Any = MISSING  # {name: {kind: ..., that kind's keys}}
    events: int = 300_000  # synthetic markets: events in all
    seed: int = 0  # synthetic markets
    params: dict[str, Any] = field(default_factory=dict)  # synthetic markets: SyntheticParams every market shares
    on_bad_rows: str = "error"  # file markets
    cache_dir: Optional[str] = None  # noqa: UP045
    chunk: int = 100_000
    limit: Optional[int] = None  # noqa: UP045
    rules: Any = field(default_factory=lambda: StreamRulesConf())


# ----- trainer, task, tracking -----------------------------------------------------------------------------
def _schema_of(fields: list[tuple[str, Any, Any]], name: str, **defaults: Any) -> type:
    """A mutable config schema with `fields` (name, type, default; `X | None` read as Optional[X], which is what
    OmegaConf understands), so the pipeline's schemas cannot drift from the dataclasses they come from."""
    out = []
    for key, hint, default in fields:
        args = typing.get_args(hint)
        if type(None) in args:
            hint = Optional[next(a for a in args if a is not type(None))]  # noqa: UP045
        out.append((key, hint, field(default=defaults.get(key, default))))
    return dataclasses.make_dataclass(name, out)


def _fields_of(cls: type) -> list[tuple[str, Any, Any]]:
    """(name, type, default) of each field of dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], f.default) for f in dataclasses.fields(cls)]


def _source_fields(path: Path, name: str) -> list[tuple[str, Any, Any]]:
    """(name, type, default) of each field of dataclass `name` as written in `path`, read without importing it:
    importing `harness.fit.trainer` loads torch (about a second), `harness.streams.rules` the whole streams
    package (numpy, pyarrow, pandas: half a second), which composing a config (and `harness --help`) does not
    need. Types are builtins or `X | None`, defaults literals (a test compares the result with the class)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None:
        raise HarnessError(f"{path}: no class {name} to read the config fields from")
    names = {"str": str, "int": int, "float": float, "bool": bool, "None": None}
    out = []
    for stmt in cls.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        try:
            hint = eval(ast.unparse(stmt.annotation), {"__builtins__": {}}, names)  # our own source: builtin names only
            default = MISSING if stmt.value is None else ast.literal_eval(stmt.value)
        except (NameError, TypeError, ValueError, SyntaxError):
            raise HarnessError(
                f"{path}:{stmt.lineno}: {name}.{stmt.target.id} must have a builtin type (or X | None) and a "
                "literal default: the pipeline's schema reads them from the source"
            ) from None
        out.append((stmt.target.id, hint, default))
    return out


TrainerConf = _schema_of(_source_fields(TRAINER_SOURCE, "TrainerConfig"), "TrainerConf", epochs=100)
StreamRulesConf = _schema_of(_source_fields(RULES_SOURCE, "Rules"), "StreamRulesConf")  # harness.streams.rules.Rules


@dataclass
class SamplerConf:
    """Which events become rows: `every_event`, `every_n` (n events of `trigger`), `when` (an output)."""

    kind: str = "every_n"
    n: int = 10
    trigger: Optional[str] = "trade"  # noqa: UP045
    output: Optional[str] = None  # noqa: UP045


@dataclass
class LabelConf:
    """The label: the value of `output` at t + `horizon` seconds, as `kind`; with `market`, the output
    `<market>.<output>` (and rows sampled on `<market>.<trigger>`)."""

    output: str = "mid"
    horizon: float = 1.0
    kind: str = "return"
    market: Optional[str] = None  # noqa: UP045  # of several: the output (and sampled trigger) of this market


@dataclass
class TaskConf:
    """What is fitted to what: target output, label, sampling, split, seed, and the sweep objective."""

    target: str = "pred"
    label: LabelConf = field(default_factory=LabelConf)
    sampler: SamplerConf = field(default_factory=SamplerConf)
    split: Any = None  # null: [0.6, 0.2, 0.2]; three fractions; or {kind: walk_forward, ...} (pipeline.build)
    seed: int = 0
    fold: bool = True
    backend: str = "cpp"
    objective: str = "fit_val_loss"  # the metric a sweep minimises (returned by the job)


@dataclass
class TrackingConf:
    """Where runs are logged. uri None: $MLFLOW_TRACKING_URI, else a sqlite file in the working directory."""

    uri: Optional[str] = None  # noqa: UP045
    experiment: str = "harness"
    run_name: Optional[str] = None  # noqa: UP045
    log_sample_max_rows: int = 200_000  # the recorded sample is logged as parquet up to this many rows
    plots: bool = True
    heartbeat_s: float = 60.0  # a running run writes its heartbeat this often (and at each stage)
    heartbeat_timeout_s: float = 900.0  # a RUNNING run without a heartbeat for this long is ended KILLED (runs gc)


@dataclass
class ReportConf:
    """The evaluation report (`harness.evaluate.report`): horizons in seconds (null: the label's horizon, then
    0.5x, 2x and 5x it), the trading view's fee (bps per trade, round trip) and entry threshold on |prediction|
    (null: the `threshold_quantile` of |prediction| on the train rows), quantile bins, rolling-IC windows, lags."""

    enabled: bool = True
    horizons: Optional[list[float]] = None  # noqa: UP045
    fee_bps: float = 1.0
    threshold: Optional[float] = None  # noqa: UP045
    threshold_quantile: float = 0.9
    quantiles: int = 5
    windows: int = 20
    lags: list[int] = field(default_factory=lambda: [1, 10, 100])
    attribution: bool = True  # drop-one per weighted signal


@dataclass
class ExecutionConf:
    """Where the recording replays: `serial` (one process), `local` (processes), `ray` (Ray tasks), over shards of
    `shard_s` seconds (86400: UTC days) or `shards` of equal time (`hs.replay.Sharding`; none: one replay)."""

    kind: str = "serial"
    shard_s: Optional[float] = None  # noqa: UP045
    shards: Optional[int] = None  # noqa: UP045  # a number of shards of equal time (instead of shard_s)
    workers: Optional[int] = None  # noqa: UP045  # processes or Ray tasks at once (None: the cores)
    warmup_s: Optional[float] = None  # noqa: UP045  # None: from the circuit's memory (decays: 96 half-lives)
    allow_unbounded: bool = False  # shard a circuit with unbounded memory (count, every) anyway: its rows differ
    check: str = "auto"  # the boundary check: auto, error, warn, off
    address: Optional[str] = None  # noqa: UP045  # ray: a cluster (None: a local instance)
    reuse_dir: Optional[str] = None  # noqa: UP045  # keep finished shards here and reuse them when unchanged


@dataclass
class Config:
    """The whole pipeline config (`conf/config.yaml` composes it)."""

    circuit: Any = MISSING
    stream: Any = MISSING
    trainer: Any = MISSING  # a TrainerConf (set by the trainer group)
    tracking: TrackingConf = MISSING
    execution: ExecutionConf = field(default_factory=ExecutionConf)
    task: TaskConf = field(default_factory=TaskConf)
    report: ReportConf = field(default_factory=ReportConf)


SCHEMAS: dict[str, dict[str, type]] = {
    "circuit": {"fit_market": FitMarketCircuit, "trade_pressure": TradePressureCircuit, "linear_xy": LinearXYCircuit},
    "stream": {
        "synthetic": SyntheticStream,
        "tardis": TardisStream,
        "binance": BinanceStream,
        "parquet": ParquetStream,
        "catalog": CatalogStream,
        "markets": MarketsStream,
    },
    "trainer": {"trainer": TrainerConf},
    "tracking": {"tracking": TrackingConf},
    "execution": {"execution": ExecutionConf},
}


def register() -> None:
    """Put the schemas and the experiments of `experiments/` into Hydra's ConfigStore and the resolver of the
    user's config directories (`harness.pipeline.user_conf`) into OmegaConf (idempotent)."""
    user_conf.register_resolver()
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=group, name=f"{name}_schema", node=node)
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        cs.store(group="experiment", name=path.stem, node=OmegaConf.load(path), package="_global_")
