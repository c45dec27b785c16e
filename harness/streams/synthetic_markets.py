"""Several correlated synthetic markets in one stream, with a lead-lag: a follower's mid tracks its leader's.

`synthetic_markets(n_events, {"perp": {}, "spot": {"follows": "perp"}}, seed=0)` generates each market with the
single-market model of `harness.streams.synthetic` (its own parameters: the shared `params` overridden by the
market's own), tags it with its name (`schema.tag`) and merges all of them by time (`hs.streams.merge`'s rule,
markets in the order given) into one stream of `n_events` rows in all.

Lead-lag. A market with `follows: <leader>` moves as the single-market model says (when, and how far), but the
direction of each of its moves also heads for a target: its own start level moved by `follow_beta` times the
leader's relative mid change since the start, as of `follow_lag_ms` earlier. Up with probability
(1 + clip(signal * tanh(F / flow_scale) + follow * tanh(gap / follow_ticks), -1, 1)) / 2, gap = target - its
base level (ticks). So the leader's mid (its return over the last `follow_lag_ms`, or the basis between the two)
predicts the follower's next moves, and `follow` = 0 makes the follower an independent market. Markets are
otherwise independent: each has its own random stream (the first market's is exactly `synthetic(seed=seed)`'s,
market i's is seeded with (seed, i)), and the stream is a pure function of (n_events, markets, seed, params),
whatever `chunk`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from harness.errors import HarnessError
from harness.streams import schema
from harness.streams.merge_by_time import merge, merge_streams
from harness.streams.synthetic import Source, SyntheticParams, cut, make_params

FOLLOWS = "follows"  # the key of a market's spec naming its leader
_NAME = "synthetic_markets"
_ENDLESS = 2**62  # events a market's own stream is cut to (the merged stream is cut to n_events)
_PIECE = 32_768  # rows of a market's own batches as they are merged


class Path:
    """The leader's mid after each of its book messages, kept from the earliest time a follower may still ask."""

    def __init__(self) -> None:
        self.t = np.empty(0, np.int64)
        self.mid = np.empty(0, np.float64)
        self.low: dict[int, int] = {}  # follower id -> the earliest time it asked for last

    def add(self, t: np.ndarray, mid: np.ndarray) -> None:
        self.t = np.concatenate([self.t, t])
        self.mid = np.concatenate([self.mid, mid])

    def at(self, times: np.ndarray, who: int) -> np.ndarray:
        """The mid as of each time (the last message at or before it; the first mid before the first message)."""
        i = np.searchsorted(self.t, times, "right") - 1
        out = self.mid[np.maximum(i, 0)]
        self.low[who] = int(times[0])
        keep = max(0, int(np.searchsorted(self.t, min(self.low.values()), "right")) - 1)
        if keep > 4096:  # forget what no follower will ask for again
            self.t, self.mid = self.t[keep:], self.mid[keep:]
        return out


class Follow:
    """What a follower knows of its leader: its source, the record of its mid, where both started."""

    def __init__(self, leader: Source, path: Path, who: int, p: SyntheticParams) -> None:
        self.leader, self.path, self.who = leader, path, who
        self.m0 = (2.0 * round(leader.p.start_price / leader.p.tick) + 1.0) * (0.5 * leader.p.tick)
        self.L0 = round(p.start_price / p.tick)

    def targets(self, p: SyntheticParams, t: np.ndarray) -> np.ndarray:
        """The follower's target base level (ticks) at each of its messages `t`: the leader's lagged mid."""
        lag = round(p.follow_lag_ms * 1_000_000)
        self.leader.ensure(int(t[-1]) - lag)
        mid = self.path.at(t - lag, self.who)
        return self.L0 + p.follow_beta * (mid / self.m0 - 1.0) * (p.start_price / p.tick)


def _specs(markets: Mapping[str, Mapping[str, Any] | None] | list[str], params: Mapping[str, Any]) -> dict:
    """{market: (its SyntheticParams, its leader or None)}, every name and leader checked."""
    if isinstance(markets, list | tuple):
        markets = {m: {} for m in markets}
    if not isinstance(markets, Mapping) or not markets:
        raise HarnessError(f"{_NAME}: markets must be a non-empty mapping of market names to their parameters")
    if len(set(markets)) != len(markets):
        raise HarnessError(f"{_NAME}: a market name is given twice in {list(markets)}")
    out = {}
    for name, spec in markets.items():
        schema.check_market(name)
        spec = dict(spec or {})
        leader = spec.pop(FOLLOWS, None)
        if leader is not None and (leader not in markets or leader == name):
            raise HarnessError(
                f"{_NAME}: market {name!r} follows {leader!r}, which is not another of the markets {list(markets)}"
            )
        try:
            out[name] = (make_params(**{**params, **spec}), leader)
        except HarnessError as e:
            raise HarnessError(f"{_NAME}: market {name!r}: {e}") from None
    for name in out:  # a leader must not (indirectly) follow its follower
        seen, at = [name], out[name][1]
        while at is not None:
            if at in seen:
                raise HarnessError(f"{_NAME}: markets follow each other in a circle: {' -> '.join([*seen, at])}")
            seen.append(at)
            at = out[at][1]
    return out


def synthetic_markets_batches(
    n_events: int,
    markets: Mapping[str, Mapping[str, Any] | None] | list[str],
    *,
    seed: int = 0,
    chunk: int = 1_000_000,
    **params: Any,
) -> Iterator[pa.RecordBatch]:
    """The first `n_events` events of the merged markets (module docstring) in batches of at most `chunk` rows.

    `markets`: names (independent markets), or {name: {parameter: value, "follows": leader}}; `params` are the
    `SyntheticParams` fields every market shares (a market's own override them). Memory: about one block per
    market plus a follower's lag of its leader's blocks."""
    for what, v in (("n_events", n_events), ("chunk", chunk), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < (1 if what == "chunk" else 0):
            raise HarnessError(f"{_NAME}: {what} must be an integer >= {1 if what == 'chunk' else 0}, got {v!r}")
    specs = _specs(markets, params)
    names = list(specs)
    sources = {
        m: Source(np.random.default_rng(seed if i == 0 else [int(seed), i]), specs[m][0]) for i, m in enumerate(names)
    }
    for who, (m, (p, leader)) in enumerate(specs.items()):
        if leader is not None:
            src = sources[leader]
            if src.st.path is None:
                src.st.path = Path()
            sources[m].st.follow = Follow(src, src.st.path, who, p)
    piece = min(int(chunk), _PIECE)
    streams = [_tagged(cut(sources[m], _ENDLESS, piece), m) for m in names]
    empties = [schema.tag(schema.empty(), m) for m in names]
    return _first(merge_streams(streams, empties, int(chunk)), int(n_events), int(chunk))


def _tagged(batches: Iterator[pa.RecordBatch], market: str) -> Iterator[pa.Table]:
    for batch in batches:
        yield schema.tag(pa.Table.from_batches([batch]), market)


def _first(batches: Iterator[pa.RecordBatch], n: int, chunk: int) -> Iterator[pa.RecordBatch]:
    """The first `n` rows of `batches`, re-cut to batches of exactly `chunk` rows (the last one shorter)."""
    pending: list[pa.RecordBatch] = []
    have = done = 0
    while done < n:
        take = min(chunk, n - done)
        while have < take:
            batch = next(batches)
            pending.append(batch)
            have += batch.num_rows
        table = pa.Table.from_batches(pending)
        yield table.slice(0, take).combine_chunks().to_batches()[0]
        rest = table.slice(take)
        pending = rest.combine_chunks().to_batches() if rest.num_rows else []
        have -= take
        done += take


def synthetic_markets(
    n_events: int, markets: Mapping[str, Mapping[str, Any] | None] | list[str], *, seed: int = 0, **params: Any
) -> pa.Table:
    """`synthetic_markets_batches` as one table."""
    batches = list(synthetic_markets_batches(n_events, markets, seed=seed, **params))
    if not batches:
        return merge(*[schema.tag(schema.empty(), m) for m in markets])
    return pa.Table.from_batches(batches)
