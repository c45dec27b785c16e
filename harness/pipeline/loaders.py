"""The built-in stream functions that `conf/stream/*.yaml` name (`target: harness.pipeline.loaders:tardis`).

Each takes its config keys as keyword arguments and returns the `Events` of the run; a user's own stream
function is named and called the same way (it may also return a pyarrow Table). File keys take one path, a
glob (`data/*.csv.gz`, sorted) or a list of them, relative to the working directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from harness import streams
from harness.errors import DataError, HarnessError
from harness.pipeline.events import DEFAULT_CHUNK, Events
from harness.pipeline.targets import ConfigError
from harness.replay.sources import BatchesSource, CatalogSource
from harness.streams import catalog as market_catalog
from harness.streams.paths import expand
from harness.streams.rules import Rules


def files(value: str | Path | Sequence[str | Path] | None, key: str) -> list[Path] | None:
    """The files of config key `key`: a path, a glob or a list of them (None stays None); each must exist."""
    if value is None:
        return None
    items = [value] if isinstance(value, str | Path) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str | Path) for v in items):
        raise ConfigError(f"{key}={value!r} must be a file path, a glob or a list of them")
    if not items:
        raise ConfigError(f"{key}=[] names no file; leave the key unset (null) to read none")
    try:
        return expand(items, must_exist=True)  # globs sorted, as every reader takes them
    except DataError as e:
        raise ConfigError(f"{key}: {e}") from None


def _rules(rules: dict[str, Any] | None) -> Rules:
    """`stream.rules` (the readers' plausibility rules; None: the defaults)."""
    try:
        return Rules.of(rules)
    except HarnessError as e:
        raise ConfigError(f"stream.{e}") from None


def _file_events(table: pa.Table, parts: dict[str, list[Path] | None], name: str, chunk: int, limit: Any) -> Events:
    """The events of a table read from the files in `parts` (source: the first file)."""
    paths = [str(p) for v in parts.values() if v for p in v]
    return Events.from_table(table, paths[0] if paths else name, paths, chunk, None if limit is None else int(limit))


def synthetic(
    events: int = 300_000, seed: int = 0, chunk: int = DEFAULT_CHUNK, params: dict[str, Any] | None = None
) -> Events:
    """`hs.streams.synthetic(events, seed, **params)`, regenerated on each pass (never held in memory whole)."""
    n, seed_, chunk_, fields = int(events), int(seed), int(chunk), dict(params or {})
    if n <= 0:
        raise ConfigError(f"stream.events={n} must be > 0")

    def generate() -> Iterator[pa.RecordBatch]:
        return streams.synthetic_batches(n, seed=seed_, chunk=chunk_, **fields)

    key = repr(("synthetic", n, seed_, chunk_, sorted(fields.items())))  # a pure function of these: its content
    out = Events(generate, n, f"synthetic(events={n}, seed={seed_})", [], shard_source=BatchesSource(generate, key))
    out.markets = [None]  # one market without a name
    return out


def tardis(
    book: Any = None,
    trades: Any = None,
    quotes: Any = None,
    *,
    clock: str = "local",
    on_bad_rows: str = "error",
    cache_dir: str | None = None,
    rules: dict[str, Any] | None = None,
    chunk: int = DEFAULT_CHUNK,
    limit: int | None = None,
) -> Events:
    """`hs.streams.tardis(book=..., trades=..., quotes=...)` of tardis.dev CSV(.gz) files."""
    parts = {k: files(v, f"stream.{k}") for k, v in (("book", book), ("trades", trades), ("quotes", quotes))}
    table = streams.tardis(**parts, clock=clock, on_bad_rows=on_bad_rows, cache_dir=cache_dir, rules=_rules(rules))
    return _file_events(table, parts, "tardis", chunk, limit)


def binance(
    trades: Any = None,
    agg_trades: Any = None,
    book_ticker: Any = None,
    *,
    on_bad_rows: str = "error",
    cache_dir: str | None = None,
    rules: dict[str, Any] | None = None,
    chunk: int = DEFAULT_CHUNK,
    limit: int | None = None,
) -> Events:
    """`hs.streams.binance(trades=..., agg_trades=..., book_ticker=...)` of Binance public dumps."""
    given = (("trades", trades), ("agg_trades", agg_trades), ("book_ticker", book_ticker))
    parts = {k: files(v, f"stream.{k}") for k, v in given}
    table = streams.binance(**parts, on_bad_rows=on_bad_rows, cache_dir=cache_dir, rules=_rules(rules))
    return _file_events(table, parts, "binance", chunk, limit)


def parquet(
    path: str, *, rules: dict[str, Any] | None = None, chunk: int = DEFAULT_CHUNK, limit: int | None = None
) -> Events:
    """`hs.streams.read_parquet(path)`: an events table written by `hs.streams.write_parquet`."""
    found = files(path, "stream.path")
    assert found is not None
    if len(found) != 1:
        raise ConfigError(f"stream.path={path!r} matches {len(found)} files; a parquet stream reads one")
    table = streams.read_parquet(found[0], rules=_rules(rules))
    return _file_events(table, {"path": found}, "parquet", chunk, limit)


def _catalog_markets(root: Path, markets: Any) -> list[str]:
    """`stream.markets`: a name or a list of names; None: the catalog's only market (several: name them)."""
    held = market_catalog.markets(root)
    if markets is None:
        if len(held) != 1:
            raise ConfigError(f"stream.markets: the catalog {root} holds markets {held}; name the ones to read")
        return held
    names = [markets] if isinstance(markets, str) else list(markets)
    if not names or not all(isinstance(m, str) for m in names):
        raise ConfigError(f"stream.markets={markets!r} must be a market name or a list of them")
    return names


def catalog(
    root: str,
    markets: Any = None,
    start: Any = None,
    end: Any = None,
    *,
    verify: bool = True,
    chunk: int = DEFAULT_CHUNK,
    limit: int | None = None,
    named: bool = False,
) -> Events:
    """`hs.data.read(root, markets, start, end)`: a date range of the market-data catalog, read batch by batch on
    each pass (never held in memory whole); `limit` keeps the first events; `named`: each market under its name
    (for a circuit of several markets)."""
    path = Path(root)
    try:
        names = _catalog_markets(path, markets)
        parts = market_catalog.partitions(path, names, start, end)
    except HarnessError as e:
        raise ConfigError(f"stream: {e}") from None
    if int(chunk) <= 0:
        raise ConfigError(f"stream.chunk={chunk} must be > 0")
    rows = sum(p.rows for p in parts) if limit is None else min(int(limit), sum(p.rows for p in parts))
    if rows <= 0:
        raise ConfigError(f"stream: the catalog {root} holds no events of {names} between {start} and {end}")

    def batches() -> Iterator[pa.RecordBatch]:
        left = rows
        read = market_catalog.read(path, names, start, end, batch_size=int(chunk), verify=verify, named=named)
        for batch in read:
            yield batch.slice(0, left)
            left -= min(left, batch.num_rows)
            if not left:
                return

    described = f"catalog({root}, markets={names}, {start or 'first'}..{end or 'last'})"
    shard_source = None
    if limit is None and not named:
        shard_source = CatalogSource(str(path), tuple(names), start, end, verify, int(chunk))
    return Events(batches, rows, described, [str(path / p.file) for p in parts], shard_source=shard_source)


MARKET_KINDS = {
    "tardis": ("book", "trades", "quotes", "clock"),
    "binance": ("trades", "agg_trades", "book_ticker"),
    "parquet": ("path",),
    "synthetic": ("follows", "params"),
}


def _market_specs(markets: Any) -> dict[str, dict[str, Any]]:
    """`stream.markets` checked: {name: {kind, that kind's keys}}, names plain identifiers, one kind of source."""
    if not isinstance(markets, dict) or not markets:
        raise ConfigError(
            f"stream.markets={markets!r} must map market names to their streams, e.g. "
            "{perp: {kind: tardis, book: ..., trades: ...}, spot: {kind: tardis, ...}}"
        )
    out = {}
    for name, spec in markets.items():
        key = f"stream.markets.{name}"
        try:
            streams.schema.check_market(name, "stream.markets: market")
        except HarnessError as e:
            raise ConfigError(str(e)) from None
        if not isinstance(spec, dict) or spec.get("kind") not in MARKET_KINDS:
            found = spec.get("kind") if isinstance(spec, dict) else spec
            raise ConfigError(f"{key}.kind={found!r} must be one of {sorted(MARKET_KINDS)}")
        unknown = sorted(set(spec) - {"kind", *MARKET_KINDS[spec["kind"]]})
        if unknown:
            raise ConfigError(
                f"{key}: keys {unknown} are not keys of a {spec['kind']} market {MARKET_KINDS[spec['kind']]}"
            )
        out[str(name)] = dict(spec)
    kinds = {spec["kind"] == "synthetic" for spec in out.values()}
    if len(kinds) > 1:
        raise ConfigError(
            f"stream.markets: synthetic markets cannot be merged with markets read from files ({list(out)})"
        )
    return out


def _read_market(name: str, spec: dict[str, Any], on_bad_rows: str, cache_dir: str | None, rules: Rules) -> tuple:
    """One file market's table (tagged with its name) and its files."""
    key, kind = f"stream.markets.{name}", spec["kind"]
    parts = {k: files(v, f"{key}.{k}") for k, v in spec.items() if k not in ("kind", "clock")}
    common = {"rules": rules, "market": name}
    if kind == "parquet":
        if not parts.get("path") or len(parts["path"]) != 1:
            raise ConfigError(f"{key}.path must name one parquet file")
        return streams.read_parquet(parts["path"][0], **common), parts["path"]
    options = {"on_bad_rows": on_bad_rows, "cache_dir": cache_dir, **common}
    if kind == "tardis":
        clock = spec.get("clock", "local")
        if clock not in ("local", "exchange"):
            raise ConfigError(f"{key}.clock={clock!r} must be 'local' or 'exchange'")
        table = streams.tardis(**parts, clock=clock, **options)
    else:
        table = streams.binance(**parts, **options)
    return table, [p for v in parts.values() if v for p in v]


def markets(
    markets: Any,
    events: int = 300_000,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    *,
    on_bad_rows: str = "error",
    cache_dir: str | None = None,
    rules: dict[str, Any] | None = None,
    chunk: int = DEFAULT_CHUNK,
    limit: int | None = None,
) -> Events:
    """Several markets in one stream (`stream.markets`): file markets read with their readers under their names
    (`market=`) and merged by time (`hs.streams.merge`, markets in the order given), or synthetic markets
    generated together (`hs.streams.synthetic_markets`: `events` in all, regenerated on each pass)."""
    specs = _market_specs(markets)
    if all(spec["kind"] == "synthetic" for spec in specs.values()):
        return _synthetic_markets(specs, int(events), int(seed), dict(params or {}), int(chunk))
    tables, paths = [], []
    for name, spec in specs.items():
        table, found = _read_market(name, spec, on_bad_rows, cache_dir, _rules(rules))
        tables.append(table)
        paths += [str(p) for p in found]
    described = f"markets({', '.join(specs)})"
    out = Events.from_table(streams.merge(*tables), described, paths, chunk, None if limit is None else int(limit))
    out.markets = list(specs)
    return out


def _synthetic_markets(specs: dict[str, dict[str, Any]], n: int, seed: int, params: dict, chunk: int) -> Events:
    """`hs.streams.synthetic_markets` of `stream.markets`, regenerated on each pass."""
    if n <= 0:
        raise ConfigError(f"stream.events={n} must be > 0")
    own = {m: {**dict(s.get("params") or {}), **({"follows": s["follows"]} if s.get("follows") else {})}
           for m, s in specs.items()}  # fmt: skip
    try:
        next(iter(streams.synthetic_markets_batches(1, own, seed=seed, chunk=1, **params)))  # check the settings now
    except HarnessError as e:
        raise ConfigError(f"stream.markets: {e}") from None

    def generate() -> Iterator[pa.RecordBatch]:
        return streams.synthetic_markets_batches(n, own, seed=seed, chunk=chunk, **params)

    key = repr(("synthetic_markets", n, seed, chunk, sorted(own.items()), sorted(params.items())))
    described = f"synthetic_markets({', '.join(specs)}; events={n}, seed={seed})"
    out = Events(generate, n, described, [], shard_source=BatchesSource(generate, key))
    out.markets = list(specs)
    return out
