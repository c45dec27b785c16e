"""A seeded synthetic L2 book + trade stream in the market events schema, imitating Binance BTCUSDT futures.

`synthetic_batches(n_events, seed=..., chunk=..., **params)` yields record batches of exactly `schema.SCHEMA`
(a book row carries one whole exchange message as list columns, a trade row one fill); `synthetic(...)`
returns them as one table; `params` override the fields of `SyntheticParams`, whose defaults imitate the real
sample of `shared/data/real/README.md` (binance-futures BTCUSDT, 2024-08-08): tick 0.1, lot 0.001, price
~60,000, a one-tick spread ~99% of the time, a depth message every ~52.6 ms (median 34 level rows, heavy tail,
~1,285 level rows/s, ~85% of them more than 100 ticks from the touch), ~62 trades/s in bursts (fill sizes
lognormal, median ~0.016, ~21% at the 0.002 minimum order), sweeps through several levels.

The model (book message k at time t_k; interval k is the time between messages k and k+1):

* Touch. Best bid B_k = L_k - wb_k, best ask A_k = L_k + 1 + wa_k (ticks). L is a random walk of whole
  ticks: at each message it moves with probability `move_prob`, by 1 + Geometric ticks (mean
  `move_ticks_mean`); wa, wb (at most one non-zero, 1 + Geometric with mean `wide_ticks_mean`) widen the
  spread at a share `wide_prob` of the messages.
* Signal (the exact mechanism). F_k = signed volume (buys +, sells -, base units) of all trades with time in
  (t_k - `signal_window_ms`, t_k]. Whether L moves at message k+1, and by how much, depends on nothing; the
  direction is up with probability (1 + `signal` * tanh(F_k / `flow_scale`)) / 2, down otherwise. So with
  `signal` > 0 recent buying pressure predicts the next mid move; `signal` = 0 makes moves independent of
  the flow. Nothing else in the stream predicts the direction of the next move.
* Book messages. Message k sets the D_k consecutive levels of each side from the touch (D_k = 1 + the
  largest displacement either touch can make into message k or k+1, + Geometric extra with mean
  `refresh_extra_mean`; best-level sizes lognormal `touch_size_*`, the others `inner_size_*`), deletes
  (amount 0) every price the touch left behind, so no level is ever left inside the spread, and adds
  random rows (rows_min + lognormal with median `rows_median` rows in all, at most `rows_max`): a share
  `deep_share` of them more than `near_ticks` from the touch, the others from D_k ticks outwards, spaced by
  log-logistic gaps (`level_gap_*`), sizes log-logistic (`level_size_*`) or deletions with
  `near_delete_prob` / `deep_delete_prob`. Prices are unique within a message: asks first, then bids, each
  side going outwards from the touch (deletions of the left prices, the levels set from the touch, random
  rows). The first message is a snapshot (book_snapshot 1.0): every tick within `snapshot_dense_ticks` of
  the touch, then sparse levels, `snapshot_levels` per side.
* Trades. Aggressive orders ("bursts") arrive in clusters (`cluster_size_mean` orders, `cluster_gap_ms`
  apart) at a rate `burst_rate` times an activity level (Gamma, shape `regime_shape`, mean 1) redrawn every
  ~`regime_ms`; their signs are a Markov chain (lag-1 correlation `sign_persistence`); each has
  min(Zipf(`fills_zipf`), `fills_max`) fills of lognormal size (`trade_size_median`, `trade_size_sigma`,
  floored at `trade_min_size`, plus a share `trade_min_share` exactly at it), in whole lots. The fills of a
  burst share one timestamp. A buy fills at the best ask, a sell at the best bid; fills that would empty
  the best level are dropped (emptying it takes a sweep).
* Sweeps. A share `sweep_share` of the moves are made by a sweep: the last burst of interval k, in the
  direction of the move, takes the best levels of the receding side one after the other (trade prices step
  through the book) and part of the level that becomes the new best; message k+1 deletes the emptied
  levels and shows the new best with exactly what is left of it. The other moves are cancellations.

Guarantees (tested in tests/test_streams_synthetic.py), replaying the book rows in order (clear on
book_snapshot == 1, set each level, delete it on amount 0): the book is never crossed and no side is ever
empty after the first message; every trade walks the book as it stands after the last book message: a buy
(+1) fills at the lowest ask level with volume left once the earlier fills since that message are taken
off (so at >= the best ask), a sell (-1) at the highest such bid level, never for more than is left there;
the next book message updates every level traded since the previous one and deletes every level trades
emptied; after a sweep it shows the last level traded, with exactly what is left of it, as the new best.

The output is a pure function of (n_events, seed, params): the stream is generated in fixed blocks of
`_BLOCK_MESSAGES` book messages (all vectorised with numpy; the only Python loop runs over the mid moves,
whose directions depend on the flow) and then cut to `chunk` rows, so `chunk` changes the batching, never
the rows. Timestamps are int64 ns: t = t_local, non-decreasing from `start_ns`; t_exchange = t - latency,
latency = `latency_min_ms` + exponential (mean `latency_ms` in all), one per message and per burst.

Simplifications: the sizes of the levels set from the touch are redrawn at every message (beyond trades
they stand for 50 ms of arrivals and cancellations); deletions away from the touch may name a level the
book does not hold (a no-op, as in a depth stream replayed from a partial snapshot); the real sample's mid
is far more volatile (price jumps of ~20 ticks) than the default walk; its best levels are larger
(median ~3 vs 0.8) and its sweeps smaller.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from harness.errors import HarnessError
from harness.streams import schema

START_NS = 1_723_161_255_000_000_000  # 2024-08-08 23:54:15 UTC, the start of the real BTCUSDT sample
_BLOCK_MESSAGES = 4096  # book messages per internal block; fixing it fixes the stream whatever the chunk
_MS = 1_000_000  # ns per ms
_MAX_LOTS = 10**9
_NAME = "synthetic"
_LOGISTIC = math.sqrt(3.0) / math.pi  # scale of the logistic law with unit variance
# kinds of level rows, in their order within a (message, side) segment
_DEL, _REF, _DENSE, _NEAR, _SPARSE, _DEEP = range(6)
_KINDS = 6


@dataclass(frozen=True)
class SyntheticParams:
    """Parameters of the synthetic stream; defaults imitate the real BTCUSDT sample (README numbers)."""

    # prices, sizes and clocks
    tick: float = 0.1  # price step
    lot: float = 0.001  # size step (sizes are whole lots)
    start_price: float = 60_000.0  # initial best bid
    start_ns: int = START_NS  # time of the first (snapshot) message
    latency_ms: float = 2.0  # mean of t - t_exchange
    latency_min_ms: float = 1.0  # its minimum
    # book messages (real: a message every 52.6 ms on average, median 52.2, 5%..95% 49.9..56.9 ms)
    message_gap_ms: float = 52.6
    message_gap_jitter_ms: float = 1.5  # Laplace scale of the gap jitter
    rows_median: float = 34.0  # level rows per message: rows_min + lognormal (real median 34, mean 67.7)
    rows_sigma: float = 1.3
    rows_min: int = 8
    rows_max: int = 2000  # (real max 1,226)
    near_ticks: int = 100  # "deep" means farther than this from the touch (real: 85% of the rows)
    deep_share: float = 0.86  # share of the random rows placed deeper than near_ticks
    level_gap_ticks: float = 10.0  # median gap between successive random rows of a message side
    level_gap_sigma: float = 1.5  # (log-logistic, log std)
    near_delete_prob: float = 0.4  # real: 41% of the rows within 10 ticks delete
    deep_delete_prob: float = 0.19  # real: 19% of the rows beyond 100 ticks delete
    refresh_extra_mean: float = 0.5  # mean number of extra levels set beyond those the touch needs
    touch_size_median: float = 0.8  # size of the best levels (real: median 3.0, 10% below 0.3)
    touch_size_sigma: float = 1.5
    inner_size_median: float = 0.15  # size of the other levels set from the touch (lognormal)
    inner_size_sigma: float = 2.0
    level_size_median: float = 0.13  # size of the random rows (real: median 0.13, quartiles 0.019..0.64)
    level_size_sigma: float = 2.3  # (log-logistic, log std)
    snapshot_levels: int = 400  # levels per side in the first (snapshot) message
    snapshot_dense_ticks: int = 30  # every tick this close to the touch holds a level in the snapshot
    # mid and spread
    move_prob: float = 0.08  # real: the best bid changes at 8.3% of the top-of-book updates
    move_ticks_mean: float = 2.0  # mean size of a move (1 + geometric, at most near_ticks // 3)
    sweep_share: float = 0.5  # share of moves made by a sweep (the rest are cancellations)
    wide_prob: float = 0.008  # share of messages with a spread of 2+ ticks (real: 0.9%)
    wide_ticks_mean: float = 2.0  # mean extra spread ticks when wide (at most near_ticks // 10)
    # signal
    signal: float = 0.5  # 0 disables; see the module docstring
    signal_window_ms: float = 1000.0
    flow_scale: float = 1.0  # in base units (BTC)
    # trades (real: 62 trades/s, 15 aggressive orders/s, 64% of them a single fill, up to 348 fills)
    burst_rate: float = 17.0  # non-sweep aggressive orders per second, on average
    cluster_size_mean: float = 2.0
    cluster_gap_ms: float = 3.0
    regime_ms: float = 2000.0
    regime_shape: float = 0.5
    fills_zipf: float = 2.5
    fills_max: int = 400
    sign_persistence: float = 0.24  # real: lag-1 correlation of the signs of successive orders 0.24
    trade_size_median: float = 0.022  # of the lognormal part (real fills: median 0.016 overall)
    trade_size_sigma: float = 1.7
    trade_min_size: float = 0.002  # the minimum order, and the floor of the lognormal part
    trade_min_share: float = 0.12  # extra share at the minimum (real: 21% of the fills are 0.002)
    # following another market (used only by a market of `synthetic_markets` that follows a leader)
    follow: float = 0.6  # how strongly moves head for the leader's lagged mid (0: not at all, 1: always)
    follow_lag_ms: float = 200.0  # the delay: moves head for the leader's mid this long ago
    follow_beta: float = 1.0  # the follower's relative mid change per relative change of the leader's
    follow_ticks: float = 2.0  # the gap (ticks) at which the pull is tanh(1) of its strength

    def __post_init__(self) -> None:
        ints = {f.name for f in dataclasses.fields(self) if f.type in ("int", int)}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ints:
                if isinstance(v, bool) or not isinstance(v, int | np.integer):
                    _fail(f"{f.name} must be an integer, got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                _fail(f"{f.name} must be a number, got {v!r}")
            elif not math.isfinite(v):
                _fail(f"{f.name} must be finite, got {v!r}")
        positive = (
            "tick lot start_price message_gap_ms rows_median signal_window_ms flow_scale regime_ms regime_shape "
            "touch_size_median inner_size_median level_size_median trade_size_median level_gap_ticks follow_ticks"
        )
        for name in positive.split():
            if getattr(self, name) <= 0:
                _fail(f"{name} must be > 0, got {getattr(self, name)!r}")
        non_negative = (
            "start_ns latency_min_ms message_gap_jitter_ms rows_sigma rows_min refresh_extra_mean touch_size_sigma "
            "inner_size_sigma level_size_sigma level_gap_sigma trade_size_sigma burst_rate cluster_gap_ms follow_lag_ms"
        )
        for name in non_negative.split():
            if getattr(self, name) < 0:
                _fail(f"{name} must be >= 0, got {getattr(self, name)!r}")
        probabilities = (
            "deep_share near_delete_prob deep_delete_prob move_prob sweep_share wide_prob signal trade_min_share follow"
        )
        for name in probabilities.split():
            if not 0.0 <= getattr(self, name) <= 1.0:
                _fail(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("move_ticks_mean", "wide_ticks_mean", "cluster_size_mean"):
            if getattr(self, name) < 1:
                _fail(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0.0 <= self.sign_persistence < 1.0:
            _fail(f"sign_persistence must be in [0, 1), got {self.sign_persistence!r}")
        if self.latency_ms < self.latency_min_ms:
            _fail(f"latency_ms ({self.latency_ms}) must be >= latency_min_ms ({self.latency_min_ms})")
        if self.rows_median <= self.rows_min:
            _fail(f"rows_median ({self.rows_median}) must be > rows_min ({self.rows_min})")
        if self.near_ticks < 10:
            _fail(f"near_ticks must be >= 10, got {self.near_ticks}")
        if self.rows_max < self.rows_median:
            _fail(f"rows_max ({self.rows_max}) must be >= rows_median ({self.rows_median})")
        if not 1 <= self.snapshot_dense_ticks <= self.snapshot_levels:
            dense, levels = self.snapshot_dense_ticks, self.snapshot_levels
            _fail(f"need 1 <= snapshot_dense_ticks ({dense}) <= snapshot_levels ({levels})")
        if self.fills_zipf <= 1.0:
            _fail(f"fills_zipf must be > 1, got {self.fills_zipf}")
        if self.fills_max < 1:
            _fail(f"fills_max must be >= 1, got {self.fills_max}")
        if self.trade_min_size < self.lot:
            _fail(f"trade_min_size ({self.trade_min_size}) must be >= lot ({self.lot})")
        reach = 2 * self.near_ticks + self.rows_max * self.level_gap_ticks * math.exp(self.level_gap_sigma**2)
        if self.start_price / self.tick < 2 * reach:
            _fail(
                f"start_price / tick ({self.start_price / self.tick:.0f}) must be >= {2 * reach:.0f}, twice the "
                f"reach of a large message (2 * near_ticks + rows_max * a bound on the mean row gap), so that bid "
                f"prices stay positive"
            )


def _fail(message: str) -> None:
    raise HarnessError(f"{_NAME}: {message}")


def make_params(**params: Any) -> SyntheticParams:
    """`SyntheticParams` with the given fields overridden; unknown names raise `HarnessError`."""
    known = {f.name for f in dataclasses.fields(SyntheticParams)}
    unknown = sorted(set(params) - known)
    if unknown:
        _fail(f"unknown parameter(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
    return SyntheticParams(**params)


def synthetic_batches(
    n_events: int, *, seed: int = 0, chunk: int = 1_000_000, market: str | None = None, **params: Any
) -> Iterator[pa.RecordBatch]:
    """Yield the first `n_events` events of the stream for `seed` as batches of at most `chunk` rows.

    `params` override fields of `SyntheticParams`; `market` names the market (`schema.tag`). State (time, touch,
    regime, trade flow, RNG) is carried across internal blocks; memory is bounded by `chunk` plus one block
    (~4,096 messages, ~17,000 events).
    """
    for name, v in (("n_events", n_events), ("chunk", chunk), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            _fail(f"{name} must be an integer, got {v!r}")
    if n_events < 0:
        _fail(f"n_events must be >= 0, got {n_events}")
    if chunk < 1:
        _fail(f"chunk must be >= 1, got {chunk}")
    if seed < 0:
        _fail(f"seed must be >= 0, got {seed}")
    p = make_params(**params)
    batches = _batches(int(n_events), int(seed), int(chunk), p)
    return batches if market is None else _tag_batches(batches, schema.check_market(market))


def _tag_batches(batches: Iterator[pa.RecordBatch], market: str) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield schema.tag(pa.Table.from_batches([batch]), market).to_batches()[0]


def synthetic(n_events: int, *, seed: int = 0, market: str | None = None, **params: Any) -> pa.Table:
    """The first `n_events` events of the stream for `seed` as one table (see `synthetic_batches`); `market`
    names its market (`schema.tag`)."""
    if market is not None:
        schema.check_market(market)
    batches = list(synthetic_batches(n_events, seed=seed, **params))
    return schema.tagged(pa.Table.from_batches(batches, schema=schema.SCHEMA), market)


class Source:
    """One market's generator: its RNG, parameters and state, and blocks made ahead of time for a follower."""

    def __init__(self, rng: np.random.Generator, p: SyntheticParams) -> None:
        self.rng, self.p, self.st = rng, p, _State(p)
        self.ahead: deque[_Piece] = deque()

    def block(self) -> _Piece:
        """The next block of events (one made ahead, or a new one)."""
        return self.ahead.popleft() if self.ahead else _block(self.rng, self.p, self.st)

    def ensure(self, t: int) -> None:
        """Make blocks ahead until the stream's touch is known at time `t` (the next block starts after it)."""
        while self.st.t0 <= t:
            self.ahead.append(_block(self.rng, self.p, self.st))


def _batches(n: int, seed: int, chunk: int, p: SyntheticParams) -> Iterator[pa.RecordBatch]:
    return cut(Source(np.random.default_rng(seed), p), n, chunk)


def cut(source: Source, n: int, chunk: int) -> Iterator[pa.RecordBatch]:
    """The first `n` events of `source` in batches of at most `chunk` rows.

    Blocks stay numpy (`_Piece`) until a batch is due: each batch is built once from the spans of blocks it
    takes, never by concatenating Arrow arrays (that doubled the time and memory of a large `chunk`).
    """
    pending: deque[_Piece] = deque()
    start = have = done = 0  # start: the events of pending[0] already given out
    while done < n:
        take = min(chunk, n - done)
        while have < take:
            piece = source.block()
            pending.append(piece)
            have += piece.num_rows
        spans, start = _take(pending, start, take)
        batch = _assemble(source.p, spans)
        source.st.work.give_back([piece for piece, _, end in spans if end == piece.num_rows])
        yield batch
        have -= take
        done += take


def _take(pending: deque[_Piece], start: int, n: int) -> tuple[list[tuple[_Piece, int, int]], int]:
    """Spans (piece, first, end) of the next `n` events from event `start` of pending[0], dropping the pieces
    used up; and the new start."""
    spans = []
    while n:
        piece = pending[0]
        end = min(piece.num_rows, start + n)
        spans.append((piece, start, end))
        n -= end - start
        if end == piece.num_rows:
            pending.popleft()
            start = 0
        else:
            start = end
    return spans, start


class _State:
    """What one block hands to the next: the stream's state at the next block's first message."""

    def __init__(self, p: SyntheticParams) -> None:
        self.first = True
        self.t0 = int(p.start_ns)  # time of the next first message
        self.L = round(p.start_price / p.tick)  # its bid base level (ticks)
        self.wa = self.wb = 0  # its spread widening
        self.U0 = 0  # the largest touch displacement into it
        self.A_prev, self.B_prev = self.L + 1, self.L  # touch of the message before it
        self.top_a = self.top_b = 0  # sizes (lots) at its best levels, drawn in advance
        self.g = 1.0  # trade activity level
        self.sign = 1  # sign of the last aggressive order
        self.ct = np.empty(0, np.int64)  # trades within the signal window before it: times
        self.cv = np.empty(0, np.float64)  # and signed volumes
        self.path: Any = None  # the record of its mid, kept for followers (`synthetic_markets.Path`)
        self.follow: Any = None  # the leader it follows (`synthetic_markets.Follow`), None: an independent market
        self.work = _Work()  # the per-row arrays, reused from block to block


class _Work:
    """Per-row arrays reused from block to block: freeing and re-allocating megabytes per block made the
    allocator hand the memory back to the kernel and fault it in again (a third of the generator's time)."""

    def __init__(self) -> None:
        self.scratch: dict[str, np.ndarray] = {}  # temporaries of one block, by name
        self.spare: list[np.ndarray] = []  # int64 buffers for a piece's prices and sizes, given back by `cut`

    def temp(self, name: str, n: int, dtype: type) -> np.ndarray:
        """`n` elements of the scratch array `name`, valid until the next call for the same name."""
        a = self.scratch.get(name)
        if a is None or len(a) < n:
            a = self.scratch[name] = np.empty(n + n // 4, dtype)
        return a[:n]

    def rows(self, n: int) -> np.ndarray:
        """`n` int64 elements for a piece to keep (a spare buffer large enough, else a new one)."""
        for i, a in enumerate(self.spare):
            if len(a) >= n:
                return self.spare.pop(i)[:n]
        return np.empty(n + n // 4, np.int64)[:n]

    def give_back(self, pieces: list[_Piece]) -> None:
        """Take back the price and size buffers of `pieces`, whose rows are copied out."""
        for piece in pieces:
            self.spare += [piece.price.base, piece.size.base]


def _spread(u: np.ndarray, sigma: Any, median: Any, w: np.ndarray | None = None) -> np.ndarray:
    """Map float32 uniforms `u` in place to median * exp(sigma * z), z logistic with unit variance.

    A log-logistic law, lognormal-like (log std `sigma`) and cheaper to draw than normals; z is truncated
    to [-3.8, 3.8] (the 0.1% and 99.9% quantiles) so that the heavier tails keep finite moments. `w`: a work
    array like `u`.
    """
    np.clip(u, np.float32(1e-3), np.float32(1 - 1e-3), out=u)
    w = np.subtract(np.float32(1.0), u, out=w)
    np.divide(u, w, out=u)
    np.log(u, out=u)
    u *= sigma * np.float32(_LOGISTIC)
    np.exp(u, out=u)
    u *= median
    return u


def _lots(rng: np.random.Generator, median: float, sigma: float, lot: float, n: int) -> np.ndarray:
    """`n` lognormal sizes (median `median`, log std `sigma`, truncated at 4 sigma) in whole lots (>= 1)."""
    x = rng.standard_normal(n, dtype=np.float32)
    np.clip(x, np.float32(-4.0), np.float32(4.0), out=x)
    x *= np.float32(sigma)
    np.exp(x, out=x)
    x *= np.float32(median / lot)
    np.clip(x, 1.0, _MAX_LOTS, out=x)
    return np.rint(x).astype(np.int64)


def _trade_lots(rng: np.random.Generator, p: SyntheticParams, n: int) -> np.ndarray:
    lots = _lots(rng, p.trade_size_median, p.trade_size_sigma, p.lot, n)
    smallest = round(p.trade_min_size / p.lot)
    lots[rng.random(n, dtype=np.float32) < p.trade_min_share] = smallest
    return np.maximum(lots, smallest)


def _mean_trade_lots(p: SyntheticParams) -> float:
    body = p.trade_size_median / p.lot * math.exp(p.trade_size_sigma**2 / 2)
    return max(1.0, (1 - p.trade_min_share) * body + p.trade_min_share * p.trade_min_size / p.lot)


def _segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For flat rows grouped in segments of `counts`: segment id, rank within segment, segment starts."""
    starts = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    seg = np.repeat(np.arange(len(counts)), counts)
    rank = np.arange(len(seg), dtype=np.int64) - starts[seg]
    return seg, rank, starts


def _seg_cumsum(values: np.ndarray, seg: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative sum of `values` restarting at each segment."""
    c = np.cumsum(values)
    before = np.concatenate([[0], c])[starts]
    return c - before[seg]


def _block(rng: np.random.Generator, p: SyntheticParams, st: _State) -> _Piece:
    """The next `_BLOCK_MESSAGES` book messages and the trades between them as one piece; carries `st` on.

    One section per step of the model (module docstring), in a fixed order: each section draws from `rng`
    in turn, so the order of the calls below is part of the stream's definition.
    """
    first_block = st.first
    st.first = False
    t = _message_times(rng, p, st)
    mv = _moves(rng, p, st)
    lv = _touch_levels(rng, p, st, mv, first_block)
    bu = _bursts(rng, p, st, t, lv)
    flow = _flow_before(p, st, t, bu)
    sw = _sweep_plan(rng, p, t, bu, lv)
    targets = None if st.follow is None else st.follow.targets(p, t[:_BLOCK_MESSAGES])
    dirs = _directions(p, t, flow, mv, lv, sw, st.L, targets)
    L, A, B = _touch(st, mv, dirs)
    if st.path is not None:
        st.path.add(t[:_BLOCK_MESSAGES], (A[:_BLOCK_MESSAGES] + B[:_BLOCK_MESSAGES]) * (0.5 * p.tick))
    sweeps = _sweep_fills(rng, p, dirs, lv, bu, sw, A, B)
    tr = _all_trades(p, st, t, bu, sweeps, A, B)
    rows = _book_rows(rng, p, st, first_block, mv.D, A, B, lv)
    piece = _events(rng, p, first_block, t, tr, rows)
    _carry(st, t, L, mv, A, B, lv)
    return piece


def _window_ns(p: SyntheticParams) -> int:
    """The signal window in ns."""
    return round(p.signal_window_ms * _MS)


def _latencies(rng: np.random.Generator, p: SyntheticParams, n: int) -> np.ndarray:
    """`n` latencies t - t_exchange (ns, float): `latency_min_ms` + exponential."""
    return p.latency_min_ms * _MS + rng.exponential((p.latency_ms - p.latency_min_ms) * _MS + 1e-9, n)


def _message_times(rng: np.random.Generator, p: SyntheticParams, st: _State) -> np.ndarray:
    """Times t[0..M] of the block's messages (ns); t[M] is the next block's first message."""
    M = _BLOCK_MESSAGES
    gaps = p.message_gap_ms * _MS + rng.laplace(0.0, p.message_gap_jitter_ms * _MS + 1e-9, M)
    gaps = np.maximum(gaps, 0.2 * p.message_gap_ms * _MS).astype(np.int64)
    t = np.empty(M + 1, np.int64)
    t[0] = st.t0
    np.cumsum(gaps, out=t[1:])
    t[1:] += st.t0
    return t


@dataclass(frozen=True)
class _Moves:
    """Sizes of the mid moves and the spread of the block's messages (directions come later, from the flow)."""

    mag: np.ndarray  # (M+1) ticks of the move into message k (0: none; mag[0] unused)
    sweep_in: np.ndarray  # (M) the move of interval k (into message k+1), if any, is made by a sweep
    wa: np.ndarray  # (M+1) ask widening of message k (ticks)
    wb: np.ndarray  # (M+1) bid widening
    u_dir: np.ndarray  # (M) uniforms deciding the direction of each move
    U: np.ndarray  # (M+1) bound on how far either touch moves into message k, whatever the direction
    D: np.ndarray  # (M) levels set from each touch at message k


def _moves(rng: np.random.Generator, p: SyntheticParams, st: _State) -> _Moves:
    """Moves into messages 1..M (index k = interval k, move into k+1), spread widening of messages 0..M."""
    M = _BLOCK_MESSAGES
    near = int(p.near_ticks)
    max_move = max(1, near // 3)
    max_wide = max(1, near // 10)
    moving = rng.random(M) < p.move_prob
    mag = np.zeros(M + 1, np.int64)
    mag[1:] = np.where(moving, np.minimum(rng.geometric(1.0 / p.move_ticks_mean, M), max_move), 0)
    sweep_in = moving & (rng.random(M) < p.sweep_share)
    wide = rng.random(M) < p.wide_prob
    wext = np.minimum(rng.geometric(1.0 / p.wide_ticks_mean, M), max_wide)
    on_ask = rng.random(M) < 0.5
    wa = np.empty(M + 1, np.int64)
    wb = np.empty(M + 1, np.int64)
    wa[0], wb[0] = st.wa, st.wb
    wa[1:] = np.where(wide & on_ask, wext, 0)
    wb[1:] = np.where(wide & ~on_ask, wext, 0)
    u_dir = rng.random(M)
    U = np.empty(M + 1, np.int64)
    U[0] = st.U0
    U[1:] = mag[1:] + wa[1:] + wb[1:] + wa[:-1] + wb[:-1]
    extra = rng.geometric(1.0 / (1.0 + p.refresh_extra_mean), M) - 1
    D = np.minimum(1 + np.maximum(U[:-1], U[1:]) + extra, near)
    return _Moves(mag=mag, sweep_in=sweep_in, wa=wa, wb=wb, u_dir=u_dir, U=U, D=D)


@dataclass(frozen=True)
class _TouchLevels:
    """Sizes (lots) of the levels set from the touch, and how far a sweep either way would reach."""

    top_a: np.ndarray  # (M+1) size of the best ask set at message k, drawn one message ahead
    top_b: np.ndarray  # (M+1) of the best bid
    rstart: np.ndarray  # (M) index of message k's first level in ref_a / ref_b
    ref_a: np.ndarray  # (sum D) sizes of the ask levels set from the touch, offsets 0..D-1 per message
    ref_b: np.ndarray  # (sum D) of the bid levels
    d_up: np.ndarray  # (M) ask levels a sweep up in interval k empties
    d_dn: np.ndarray  # (M) bid levels a sweep down empties
    can_up: np.ndarray  # (M) the move of interval k is a sweep if it goes up
    can_dn: np.ndarray  # (M) if it goes down
    part_a: np.ndarray  # (M) what a sweep up takes from the level that becomes the new best ask
    part_b: np.ndarray  # (M) a sweep down from the new best bid


def _touch_levels(
    rng: np.random.Generator, p: SyntheticParams, st: _State, mv: _Moves, first_block: bool
) -> _TouchLevels:
    """Sizes of the levels set at the touch: top[k] at offset 0, drawn one message ahead."""
    M, lot = _BLOCK_MESSAGES, p.lot
    top_a = np.empty(M + 1, np.int64)
    top_b = np.empty(M + 1, np.int64)
    if first_block:
        top_a[0], top_b[0] = _lots(rng, p.touch_size_median, p.touch_size_sigma, lot, 2)
    else:
        top_a[0], top_b[0] = st.top_a, st.top_b
    top_a[1:] = _lots(rng, p.touch_size_median, p.touch_size_sigma, lot, M)
    top_b[1:] = _lots(rng, p.touch_size_median, p.touch_size_sigma, lot, M)
    rstart = np.zeros(M, np.int64)
    np.cumsum(mv.D[:-1], out=rstart[1:])
    RT = int(mv.D.sum())
    ref_a = _lots(rng, p.inner_size_median, p.inner_size_sigma, lot, RT)
    ref_b = _lots(rng, p.inner_size_median, p.inner_size_sigma, lot, RT)
    ref_a[rstart] = top_a[:M]
    ref_b[rstart] = top_b[:M]
    # a sweep up in interval k empties ask offsets 0..d_up-1 and leaves top_a[k+1] at offset d_up (the new
    # best ask): that level holds top_a[k+1] + part_a, set whatever the direction turns out to be
    d_up = mv.mag[1:] + mv.wa[1:] - mv.wa[:-1]
    d_dn = mv.mag[1:] + mv.wb[1:] - mv.wb[:-1]
    can_up = mv.sweep_in & (d_up >= 1)
    can_dn = mv.sweep_in & (d_dn >= 1)
    part_a, part_b = (  # what a sweep takes from the level that becomes the new best
        np.maximum(1, rng.random(M) * _lots(rng, p.inner_size_median, p.inner_size_sigma, lot, M)).astype(np.int64)
        for _ in range(2)
    )
    ia = np.nonzero(can_up)[0]
    ref_a[rstart[ia] + d_up[ia]] = top_a[ia + 1] + part_a[ia]
    ib = np.nonzero(can_dn)[0]
    ref_b[rstart[ib] + d_dn[ib]] = top_b[ib + 1] + part_b[ib]
    return _TouchLevels(top_a, top_b, rstart, ref_a, ref_b, d_up, d_dn, can_up, can_dn, part_a, part_b)


def _burst_times(
    rng: np.random.Generator, p: SyntheticParams, st: _State, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Times (ns, sorted) and intervals of the aggressive orders apart from sweeps: clusters at a regime's rate."""
    M = _BLOCK_MESSAGES
    dt = np.diff(t)
    newreg = rng.random(M) < np.minimum(1.0, dt / (p.regime_ms * _MS))
    gpool = rng.gamma(p.regime_shape, 1.0 / p.regime_shape, M)
    last_new = np.maximum.accumulate(np.where(newreg, np.arange(M), -1))
    g = np.where(last_new < 0, st.g, gpool[np.maximum(last_new, 0)])
    st.g = float(g[-1])
    ncl = rng.poisson(p.burst_rate / p.cluster_size_mean * g * dt / 1e9)
    cl_int = np.repeat(np.arange(M), ncl)
    C = len(cl_int)
    csize = rng.geometric(1.0 / p.cluster_size_mean, C)
    cstart = rng.random(C) * dt[cl_int]
    b_cl, _, cfirst = _segments(csize)
    bgap = rng.exponential(p.cluster_gap_ms * _MS + 1e-9, len(b_cl))
    bgap[cfirst[csize > 0]] = 0.0
    off = cstart[b_cl] + _seg_cumsum(bgap, b_cl, cfirst)
    b_int = cl_int[b_cl]
    keep = off < dt[b_int] - 1
    b_int = b_int[keep]
    tau = t[b_int] + 1 + off[keep].astype(np.int64)
    order = np.argsort(tau, kind="stable")
    return tau[order], b_int[order]


@dataclass(frozen=True)
class _Bursts:
    """The fills of the aggressive orders apart from sweeps, in time order, and what they take from the best levels."""

    tau: np.ndarray  # time (ns)
    interval: np.ndarray  # interval k (after message k)
    side: np.ndarray  # +1 buy, -1 sell
    lots: np.ndarray  # size (lots)
    lat: np.ndarray  # latency (ns, float)
    used: dict[int, np.ndarray]  # side -> (M) lots taken from the best level in interval k


def _bursts(rng: np.random.Generator, p: SyntheticParams, st: _State, t: np.ndarray, lv: _TouchLevels) -> _Bursts:
    """Aggressive orders (bursts) of the intervals, apart from sweeps: signs, fills, capped by the best level."""
    M = _BLOCK_MESSAGES
    tau, b_int = _burst_times(rng, p, st, t)
    nb = len(tau)
    flips = rng.random(nb) < (1.0 - p.sign_persistence) / 2
    sgn = np.where(np.cumsum(flips) % 2 == 0, st.sign, -st.sign).astype(np.int64)
    if nb:
        st.sign = int(sgn[-1])
    b_lat = _latencies(rng, p, nb)
    nf = np.minimum(rng.zipf(p.fills_zipf, nb), p.fills_max)
    f_b = np.repeat(np.arange(nb), nf)
    f_lots = _trade_lots(rng, p, len(f_b))
    f_int = b_int[f_b]
    f_side = sgn[f_b]
    keep = np.ones(len(f_b), bool)
    used: dict[int, np.ndarray] = {}
    for side, top in ((1, lv.top_a), (-1, lv.top_b)):
        m = np.nonzero(f_side == side)[0]
        lots_s, int_s = f_lots[m], f_int[m]
        c = np.cumsum(lots_s)
        within = c - (c - lots_s)[np.searchsorted(int_s, int_s, "left")]
        ok = within <= top[int_s] - 1  # never empty the best level: that takes a sweep
        keep[m] = ok
        used[side] = np.bincount(int_s[ok], weights=lots_s[ok], minlength=M).astype(np.int64)
    f_b = f_b[keep]
    return _Bursts(tau=tau[f_b], interval=f_int[keep], side=f_side[keep], lots=f_lots[keep], lat=b_lat[f_b], used=used)


def _flow_before(p: SyntheticParams, st: _State, t: np.ndarray, bu: _Bursts) -> np.ndarray:
    """Signed volume before each message within the window: carried trades + these bursts (sweeps: `_directions`)."""
    W = _window_ns(p)
    t_msg = t[:_BLOCK_MESSAGES]
    times = np.concatenate([st.ct, bu.tau])
    vols = np.concatenate([st.cv, bu.side * bu.lots * p.lot])
    csum = np.concatenate([[0.0], np.cumsum(vols)])
    return csum[np.searchsorted(times, t_msg, "right")] - csum[np.searchsorted(times, t_msg - W, "right")]


@dataclass(frozen=True)
class _SweepPlan:
    """When a sweep of interval k would trade, and how much (base units), for either direction."""

    ts: np.ndarray  # (M) time (ns), after the interval's last burst
    v_up: np.ndarray  # (M) volume of a sweep up (0.0 where the move cannot be one)
    v_dn: np.ndarray  # (M) of a sweep down


def _sweep_plan(
    rng: np.random.Generator, p: SyntheticParams, t: np.ndarray, bu: _Bursts, lv: _TouchLevels
) -> _SweepPlan:
    """Sweep times (after the interval's last burst) and volumes for either direction."""
    M = _BLOCK_MESSAGES
    f_int = bu.interval
    last_i = np.searchsorted(f_int, np.arange(M), "right") - 1
    has = last_i >= 0
    has[has] = f_int[last_i[has]] == np.arange(M)[has]
    last_tau = np.zeros(M, np.int64)
    last_tau[has] = bu.tau[last_i[has]]
    base = np.maximum(t[:M] + 1, last_tau)
    span = t[1:] - 1 - base
    ts = np.minimum(base + (rng.random(M) * (span + 1)).astype(np.int64), t[1:] - 1)
    Pa = np.concatenate([[0], np.cumsum(lv.ref_a)])
    Pb = np.concatenate([[0], np.cumsum(lv.ref_b)])
    ju = lv.rstart + np.where(lv.can_up, lv.d_up, 1)
    jd = lv.rstart + np.where(lv.can_dn, lv.d_dn, 1)
    rs1 = lv.rstart + 1
    v_up = np.where(lv.can_up, (lv.top_a[:M] - bu.used[1] + Pa[ju] - Pa[rs1] + lv.part_a) * p.lot, 0.0)
    v_dn = np.where(lv.can_dn, (lv.top_b[:M] - bu.used[-1] + Pb[jd] - Pb[rs1] + lv.part_b) * p.lot, 0.0)
    return _SweepPlan(ts=ts, v_up=v_up, v_dn=v_dn)


def _directions(
    p: SyntheticParams,
    t: np.ndarray,
    flow: np.ndarray,
    mv: _Moves,
    lv: _TouchLevels,
    sw: _SweepPlan,
    L0: int = 0,
    targets: np.ndarray | None = None,
) -> np.ndarray:
    """Directions (+1, -1, 0: no move) of the moves: sequential over moves only (the flow includes earlier sweeps).
    A follower's moves also head for `targets` (its base level L that tracks the leader, per message; L0 at the
    block's first message) with strength `p.follow`."""
    dirs = np.zeros(_BLOCK_MESSAGES, np.int64)
    ks = np.nonzero(mv.mag[1:] > 0)[0].tolist()
    if not ks:
        return dirs
    W = _window_ns(p)
    tl, Gl, ul = t.tolist(), flow.tolist(), mv.u_dir.tolist()
    cu, cd, vu, vd = lv.can_up.tolist(), lv.can_dn.tolist(), sw.v_up.tolist(), sw.v_dn.tolist()
    tsl = sw.ts.tolist()
    sig, scale = float(p.signal), float(p.flow_scale)
    tg, mag, pull, gap = (targets.tolist() if targets is not None else None), mv.mag.tolist(), p.follow, p.follow_ticks
    level = float(L0)
    window: deque[tuple[int, float]] = deque()
    run = 0.0
    for k in ks:
        lo = tl[k] - W
        while window and window[0][0] <= lo:
            run -= window.popleft()[1]
        if not window:
            run = 0.0
        x = sig * math.tanh((Gl[k] + run) / scale)
        if tg is not None:
            x = min(1.0, max(-1.0, x + pull * math.tanh((tg[k] - level) / gap)))
        if ul[k] < 0.5 * (1.0 + x):
            level += mag[k + 1]
            dirs[k] = 1
            if cu[k]:
                window.append((tsl[k], vu[k]))
                run += vu[k]
        else:
            level -= mag[k + 1]
            dirs[k] = -1
            if cd[k]:
                window.append((tsl[k], -vd[k]))
                run -= vd[k]
    return dirs


def _touch(st: _State, mv: _Moves, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bid base level L, best ask A and best bid B (ticks) of messages 0..M."""
    L = np.empty(_BLOCK_MESSAGES + 1, np.int64)
    L[0] = st.L
    np.cumsum(dirs * mv.mag[1:], out=L[1:])
    L[1:] += st.L
    return L, L + 1 + mv.wa, L - mv.wb


@dataclass(frozen=True)
class _Trades:
    """Trades (fills), one entry each."""

    t: np.ndarray  # time (ns)
    interval: np.ndarray  # interval k (after message k)
    side: np.ndarray  # +1 buy, -1 sell
    price: np.ndarray  # ticks
    lots: np.ndarray  # size (lots)
    lat: np.ndarray  # latency (ns, float)


def _swept_levels(
    p: SyntheticParams, sk: np.ndarray, s_up: np.ndarray, lv: _TouchLevels, bu: _Bursts, A: np.ndarray, B: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each level the sweeps of intervals `sk` (up where `s_up`) trade: its interval, side, lots left, price."""
    s_d = np.where(s_up, lv.d_up[sk], lv.d_dn[sk])
    lv_s, lv_i, _ = _segments(s_d + 1)
    lv_k = sk[lv_s]
    lv_up = s_up[lv_s]
    pos = lv.rstart[lv_k] + lv_i
    lv_lots = np.where(lv_up, lv.ref_a[pos], lv.ref_b[pos])
    at0 = lv_i == 0
    lv_lots[at0] -= np.where(lv_up[at0], bu.used[1][lv_k[at0]], bu.used[-1][lv_k[at0]])
    atd = lv_i == s_d[lv_s]
    lv_lots[atd] = np.where(lv_up[atd], lv.part_a[lv_k[atd]], lv.part_b[lv_k[atd]])
    lv_price = np.where(lv_up, A[lv_k] + lv_i, B[lv_k] - lv_i)
    return lv_k, lv_up, lv_lots, lv_price


def _cut_fills(rng: np.random.Generator, p: SyntheticParams, lv_lots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a stream of fill sizes at the boundaries of levels holding `lv_lots`: the pieces and their levels."""
    total = int(lv_lots.sum())
    if not total:
        empty = np.empty(0, np.int64)
        return empty, empty
    cl = np.cumsum(lv_lots)
    pool, psum = [], 0
    while psum < total:
        x = _trade_lots(rng, p, int(1.3 * (total - psum) / _mean_trade_lots(p)) + 64)
        pool.append(x)
        psum += int(x.sum())
    cp = np.cumsum(np.concatenate(pool))
    cuts = _sorted_union(cl, cp[cp < total])
    pieces = np.diff(np.concatenate([[0], cuts]))
    return pieces, np.searchsorted(cl, cuts, "left")


def _sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`np.union1d` of two sorted, non-empty arrays: one merge (timsort of two runs), no hashing."""
    c = np.concatenate([a, b])
    c.sort(kind="stable")
    keep = np.empty(len(c), bool)
    keep[0] = True
    np.not_equal(c[1:], c[:-1], out=keep[1:])
    return c[keep]


def _sweep_fills(
    rng: np.random.Generator,
    p: SyntheticParams,
    dirs: np.ndarray,
    lv: _TouchLevels,
    bu: _Bursts,
    sw: _SweepPlan,
    A: np.ndarray,
    B: np.ndarray,
) -> _Trades:
    """Sweep fills: a stream of fill sizes cut at the consumed levels' boundaries."""
    up_k = (dirs == 1) & lv.can_up
    dn_k = (dirs == -1) & lv.can_dn
    sk = np.nonzero(up_k | dn_k)[0]
    lv_k, lv_up, lv_lots, lv_price = _swept_levels(p, sk, up_k[sk], lv, bu, A, B)
    pieces, lvl = _cut_fills(rng, p, lv_lots)
    s_lat = _latencies(rng, p, len(sk))
    sweep_no = np.full(_BLOCK_MESSAGES, -1, np.int64)
    sweep_no[sk] = np.arange(len(sk))
    k = lv_k[lvl]
    side = np.where(lv_up[lvl], 1, -1)
    return _Trades(t=sw.ts[k], interval=k, side=side, price=lv_price[lvl], lots=pieces, lat=s_lat[sweep_no[k]])


def _all_trades(
    p: SyntheticParams, st: _State, t: np.ndarray, bu: _Bursts, sweeps: _Trades, A: np.ndarray, B: np.ndarray
) -> _Trades:
    """All trades of the block in time order (a sweep comes after the interval's other bursts); carries the window."""
    f_int, f_side = bu.interval, bu.side
    tr_t = np.concatenate([bu.tau, sweeps.t])
    tr_int = np.concatenate([f_int, sweeps.interval])
    tr_side = np.concatenate([f_side, sweeps.side])
    tr_price = np.concatenate([np.where(f_side == 1, A[f_int], B[f_int]), sweeps.price])
    tr_lots = np.concatenate([bu.lots, sweeps.lots])
    tr_lat = np.concatenate([bu.lat, sweeps.lat])
    order = np.argsort(tr_t, kind="stable")
    tr = _Trades(*(a[order] for a in (tr_t, tr_int, tr_side, tr_price, tr_lots, tr_lat)))
    times = np.concatenate([st.ct, tr.t])
    vols = np.concatenate([st.cv, tr.side * tr.lots * p.lot])
    recent = times > t[_BLOCK_MESSAGES] - _window_ns(p)
    st.ct, st.cv = times[recent], vols[recent]
    return tr


@dataclass(frozen=True)
class _Rows:
    """The level rows of the block's messages, message by message (asks, then bids)."""

    price: np.ndarray  # ticks
    size: np.ndarray  # lots (0: delete)
    bid: np.ndarray  # int8: 1 on a bid row, 0 on an ask row
    per_msg: np.ndarray  # (M) rows of message k


def _book_rows(
    rng: np.random.Generator,
    p: SyntheticParams,
    st: _State,
    first_block: bool,
    D: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    lv: _TouchLevels,
) -> _Rows:
    """Book rows of messages 0..M-1: an ask segment then a bid segment per message.

    Within a segment the rows go outwards from the touch by kind: deletions of the prices the touch left
    (negative offsets), the levels set from the touch (offsets 0..D-1), then random rows (near, then deep),
    all from one cumsum.
    """
    M = _BLOCK_MESSAGES
    K = _row_counts(rng, p, st, first_block, D, A, B)
    seg_n = K.sum(axis=2).ravel()  # rows per segment (2M segments, never empty: D >= 1)
    seg_start = np.zeros(2 * M, np.int64)
    np.cumsum(seg_n[:-1], out=seg_start[1:])
    price = _row_prices(rng, p, st.work, K, seg_n, seg_start, A, B)
    size = _row_sizes(rng, p, st.work, K, seg_start, D, lv)
    bid = np.repeat(np.tile(np.array([0, 1], np.int8), M), seg_n)
    return _Rows(price=price, size=size, bid=bid, per_msg=seg_n.reshape(M, 2).sum(axis=1))


def _row_counts(
    rng: np.random.Generator,
    p: SyntheticParams,
    st: _State,
    first_block: bool,
    D: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
) -> np.ndarray:
    """Rows per (message, side, kind), shape (M, 2, _KINDS); message 0 of the first block is the snapshot."""
    M = _BLOCK_MESSAGES
    Ak, Bk = A[:M], B[:M]
    Ap = np.concatenate([[st.A_prev], A[: M - 1]])
    Bp = np.concatenate([[st.B_prev], B[: M - 1]])
    n_del = np.stack([np.maximum(Ak - Ap, 0), np.maximum(Bp - Bk, 0)], axis=1)  # (M, 2): ask, bid
    x = np.minimum(rng.standard_normal(M) * p.rows_sigma, 30.0)
    n_rows = np.minimum(p.rows_min + np.rint((p.rows_median - p.rows_min) * np.exp(x)), p.rows_max).astype(np.int64)
    n_rnd = np.maximum(n_rows - 2 * D - n_del.sum(axis=1), 0)
    n_deep = rng.binomial(n_rnd, p.deep_share)
    n_near = n_rnd - n_deep
    n_deep_a = rng.binomial(n_deep, 0.5)
    n_near_a = rng.binomial(n_near, 0.5)
    K = np.zeros((M, 2, _KINDS), np.int64)
    K[:, :, _DEL] = n_del
    K[:, :, _REF] = D[:, None]
    K[:, 0, _NEAR], K[:, 1, _NEAR] = n_near_a, n_near - n_near_a
    K[:, 0, _DEEP], K[:, 1, _DEEP] = n_deep_a, n_deep - n_deep_a
    if first_block:  # message 0 is the snapshot: a dense block from the touch, then sparse levels
        dense = max(p.snapshot_dense_ticks, int(D[0]))
        K[0] = 0
        K[0, :, _REF] = D[0]
        K[0, :, _DENSE] = dense - D[0]
        K[0, :, _SPARSE] = max(0, p.snapshot_levels - dense)
    return K


def _per_kind(K: np.ndarray, values: list[float], dtype: type) -> np.ndarray:
    """One value per row from one value per kind, for rows counted by `K` (message, side, kind)."""
    return np.repeat(np.tile(np.array(values, dtype), 2 * _BLOCK_MESSAGES), K.ravel())


def _row_prices(
    rng: np.random.Generator,
    p: SyntheticParams,
    work: _Work,
    K: np.ndarray,
    seg_n: np.ndarray,
    seg_start: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
) -> np.ndarray:
    """Row prices (ticks): increments of 1 (deletions, touch levels, snapshot block) or log-logistic gaps.

    A jump of near_ticks before the first deep row puts every deep row more than near_ticks from the touch.
    """
    M = _BLOCK_MESSAGES
    R = int(seg_n.sum())
    u = rng.random(R, dtype=np.float32, out=work.temp("u", R, np.float32))
    e = _spread(u, np.float32(p.level_gap_sigma), np.float32(p.level_gap_ticks), work.temp("w", R, np.float32))
    np.clip(e, 1.0, 1e6, out=e)
    np.ceil(e, out=e)
    inc = work.rows(R)
    np.copyto(inc, e, casting="unsafe")
    K2 = K.reshape(2 * M, _KINDS)
    inc[_leading_rows(seg_start, K2[:, :_NEAR].sum(axis=1))] = 1  # deletions, touch levels, snapshot block
    has_deep = np.nonzero(K2[:, _DEEP] > 0)[0]
    inc[seg_start[has_deep] + K2[has_deep, :_DEEP].sum(axis=1)] += int(p.near_ticks)
    outward = np.tile(np.array([1, -1], np.int8), M)  # asks go up from the touch, bids down
    inc *= np.repeat(outward, seg_n)
    # the row before a segment's first sits n_del + 1 ticks inside the touch: fold that base into the segment's
    # first increment (less what the cumsum carries over from the previous segment), so one cumsum gives prices
    touch = np.stack([A[:M], B[:M]], axis=1).ravel()
    base = touch - outward * (K2[:, _DEL] + 1)
    carried = np.empty(2 * M, np.int64)
    carried[0] = 0
    carried[1:] = base[:-1] + np.add.reduceat(inc, seg_start)[:-1]
    inc[seg_start] += base - carried
    return np.cumsum(inc, out=inc)


def _leading_rows(seg_start: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Indices of the first `counts` rows of each segment starting at `seg_start` (a cheap mask of few rows)."""
    before = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=before[1:])
    return np.repeat(seg_start - before, counts) + np.arange(int(before[-1] + counts[-1]))


def _row_sizes(
    rng: np.random.Generator,
    p: SyntheticParams,
    work: _Work,
    K: np.ndarray,
    seg_start: np.ndarray,
    D: np.ndarray,
    lv: _TouchLevels,
) -> np.ndarray:
    """Row sizes (lots): log-logistic, deleted (0) with the odds of their kind; the touch levels from `lv`."""
    R = int(K.sum())
    odds = _per_kind(K, [1, 0, 0, p.near_delete_prob, 0, p.deep_delete_prob], np.float32)
    u = rng.random(R, dtype=np.float32, out=work.temp("u", R, np.float32))
    kept = np.greater_equal(u, odds, out=work.temp("kept", R, np.bool_))
    median = np.float32(p.level_size_median / p.lot)
    u = rng.random(R, dtype=np.float32, out=work.temp("u", R, np.float32))
    e = _spread(u, np.float32(p.level_size_sigma), median, work.temp("w", R, np.float32))
    np.clip(e, 1.0, _MAX_LOTS, out=e)
    np.rint(e, out=e)
    size = work.rows(R)
    np.copyto(size, e, casting="unsafe")
    size *= kept
    ref_msg, ref_rank, _ = _segments(D)
    size[seg_start[2 * ref_msg] + K[ref_msg, 0, _DEL] + ref_rank] = lv.ref_a
    size[seg_start[2 * ref_msg + 1] + K[ref_msg, 1, _DEL] + ref_rank] = lv.ref_b
    return size


@dataclass(frozen=True)
class _Piece:
    """A block's events as numpy columns (book prices and sizes still in ticks and lots): `cut` makes batches."""

    t: np.ndarray  # (E) t = t_local (ns)
    t_exchange: np.ndarray  # (E) ns
    is_trade: np.ndarray  # (E) bool
    n_rows: np.ndarray  # (E) level rows of the event (0 on trades)
    row_start: np.ndarray  # (E + 1) index of the event's first level row in price / size
    snap: np.ndarray  # (E) book_snapshot (0 on trades)
    trade: tuple[np.ndarray, np.ndarray, np.ndarray]  # (E) trade price, amount, side (0 on book messages)
    price: np.ndarray  # (R) level row prices (ticks)
    size: np.ndarray  # (R) level row sizes (lots, 0: delete)
    bid: np.ndarray  # (R) int8: 1 on a bid row, 0 on an ask row

    @property
    def num_rows(self) -> int:
        """Events in the piece."""
        return len(self.t)


def _events(
    rng: np.random.Generator, p: SyntheticParams, first_block: bool, t: np.ndarray, tr: _Trades, rows: _Rows
) -> _Piece:
    """The events of the block as per-event arrays: message k, then the trades of interval k."""
    M = _BLOCK_MESSAGES
    T = len(tr.t)
    E = M + T
    pos_msg = np.arange(M) + np.searchsorted(tr.interval, np.arange(M), "left")
    pos_tr = np.arange(T) + tr.interval + 1
    is_trade = np.zeros(E, bool)
    is_trade[pos_tr] = True
    tcol = np.empty(E, np.int64)
    tcol[pos_msg] = t[:M]
    tcol[pos_tr] = tr.t
    lat = np.empty(E, np.float64)
    lat[pos_msg] = _latencies(rng, p, M)
    lat[pos_tr] = tr.lat
    n_rows = np.zeros(E, np.int64)
    n_rows[pos_msg] = rows.per_msg
    row_start = np.zeros(E + 1, np.int64)
    np.cumsum(n_rows, out=row_start[1:])
    snap = np.zeros(E, np.float64)
    if first_block:
        snap[pos_msg[0]] = schema.SNAPSHOT_START
    trade = (np.zeros(E, np.float64), np.zeros(E, np.float64), np.zeros(E, np.float64))  # price, amount, side
    for column, values in zip(trade, (_scaled(tr.price, p.tick), _scaled(tr.lots, p.lot), tr.side), strict=True):
        column[pos_tr] = values
    texch = tcol - lat.astype(np.int64)
    return _Piece(tcol, texch, is_trade, n_rows, row_start, snap, trade, rows.price, rows.size, rows.bid)


def _assemble(p: SyntheticParams, spans: list[tuple[_Piece, int, int]]) -> pa.RecordBatch:
    """One batch of the events [first, end) of each span's piece, in order; prices and sizes scaled as copied."""

    def joined(get: Any) -> np.ndarray:
        parts = [get(piece)[a:b] for piece, a, b in spans]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    bounds = [(int(piece.row_start[a]), int(piece.row_start[b])) for piece, a, b in spans]
    R = sum(r1 - r0 for r0, r1 in bounds)
    side, price, size = _pool_array(R), _pool_array(R), _pool_array(R)
    at = 0
    for (piece, _, _), (r0, r1) in zip(spans, bounds, strict=True):
        _scale_into(piece.price[r0:r1], p.tick, price[at : at + r1 - r0])
        _scale_into(piece.size[r0:r1], p.lot, size[at : at + r1 - r0])
        np.copyto(side[at : at + r1 - r0], piece.bid[r0:r1])
        at += r1 - r0
    side *= schema.BID - schema.ASK  # exact: the codes 0, 1 become ASK, BID
    side += schema.ASK
    n_rows = joined(lambda q: q.n_rows)
    offsets = np.zeros(len(n_rows) + 1, np.int64)
    np.cumsum(n_rows, out=offsets[1:])
    trade = [joined(lambda q, i=i: q.trade[i]) for i in range(3)]
    tcol, texch, is_trade = joined(lambda q: q.t), joined(lambda q: q.t_exchange), joined(lambda q: q.is_trade)
    return _batch(tcol, texch, is_trade, offsets, (side, price, size), joined(lambda q: q.snap), trade)


def _pool_array(n: int) -> np.ndarray:
    """`n` float64 in Arrow's memory pool, which reuses the memory of batches already dropped (numpy's fresh
    memory costs the kernel a page fault and a page of zeroes every 4 KiB)."""
    return np.frombuffer(pa.allocate_buffer(8 * n), np.float64)


def _batch(
    tcol: np.ndarray,
    texch: np.ndarray,
    is_trade: np.ndarray,
    offsets: np.ndarray,
    book: tuple[np.ndarray, np.ndarray, np.ndarray],
    snap: np.ndarray,
    trade: list[np.ndarray],
) -> pa.RecordBatch:
    """Arrow columns of `schema.SCHEMA` from the per-event arrays (book lists masked on trades and vice versa)."""
    offs = pa.array(offsets, pa.int32())
    book_mask = pa.array(is_trade)
    trade_mask = ~is_trade
    null = pa.nulls(len(tcol), pa.float64())
    t = pa.array(tcol, pa.int64())
    columns = [
        t,
        schema.trigger_array(is_trade.view(np.int8)),
        t,
        pa.array(texch, pa.int64()),
        *(pa.ListArray.from_arrays(offs, pa.array(values), mask=book_mask) for values in book),
        pa.array(snap, pa.float64(), mask=is_trade),
        *(pa.array(values, pa.float64(), mask=trade_mask) for values in trade),
        null,
        null,
        null,
        null,
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema.SCHEMA)


def _carry(
    st: _State, t: np.ndarray, L: np.ndarray, mv: _Moves, A: np.ndarray, B: np.ndarray, lv: _TouchLevels
) -> None:
    """Carry the state at message M (the next block's first message) into `st`."""
    M = _BLOCK_MESSAGES
    st.t0 = int(t[M])
    st.L, st.wa, st.wb, st.U0 = int(L[M]), int(mv.wa[M]), int(mv.wb[M]), int(mv.U[M])
    st.A_prev, st.B_prev = int(A[M - 1]), int(B[M - 1])
    st.top_a, st.top_b = int(lv.top_a[M]), int(lv.top_b[M])


def _scaled(units: np.ndarray, step: float) -> np.ndarray:
    """Integer multiples of `step` as the nearest doubles to the decimal values (60000.1, not 60000.100000001)."""
    return _scale_into(units, step, np.empty(len(units), np.float64))


def _scale_into(units: np.ndarray, step: float, out: np.ndarray) -> np.ndarray:
    """`_scaled(units, step)` written into `out` (float64, len(units)): no temporary array."""
    inverse = 1.0 / step
    if abs(inverse - round(inverse)) < 1e-9:
        return np.divide(units, float(round(inverse)), out=out)
    decimals = max(0, -math.floor(math.log10(step))) + 6
    np.multiply(units, step, out=out)
    return np.round(out, decimals, out=out)
