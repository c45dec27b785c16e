"""A seeded synthetic top-of-book + trade stream, generated in chunks with numpy.

Each event is either a book update (trigger "book": bid, ask, bid_size, ask_size) or a trade (trigger
"trade": signed_size, positive = buyer-initiated). The mid follows a random walk on a 0.1 tick grid with
a one-tick spread most of the time; gaps between events are exponential (mean `mean_gap_ms`); sizes are
lognormal. Trade signs lean towards the next mid move, so trade pressure carries a small, real signal.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from harness.errors import HarnessError

SCHEMA = pa.schema(
    [
        ("t", pa.int64()),
        ("trigger", pa.dictionary(pa.int8(), pa.string())),
        ("bid", pa.float64()),
        ("ask", pa.float64()),
        ("bid_size", pa.float64()),
        ("ask_size", pa.float64()),
        ("signed_size", pa.float64()),
    ]
)
TRIGGERS = pa.array(["book", "trade"], pa.string())
START_NS = 1_723_161_255_000_000_000  # 2024-08-08 23:54:15 UTC, the start of the real BTCUSDT sample


def l1_batches(
    n: int,
    *,
    seed: int = 0,
    book_share: float = 0.8,
    chunk: int = 1_000_000,
    tick: float = 0.1,
    start_price: float = 60_000.0,
    mean_gap_ms: float = 1.0,
) -> Iterator[pa.RecordBatch]:
    """Yield `n` events as record batches of at most `chunk` rows (memory bounded by the chunk)."""
    if n < 0 or chunk < 1:
        raise HarnessError(f"l1_batches: n must be >= 0 and chunk >= 1, got n={n}, chunk={chunk}")
    if not 0.0 <= book_share <= 1.0:
        raise HarnessError(f"l1_batches: book_share must be in [0, 1], got {book_share}")
    rng = np.random.default_rng(seed)
    t0 = START_NS
    level = round(start_price / tick)  # mid in ticks (bid level)
    done = 0
    while done < n:
        m = min(chunk, n - done)
        gaps = np.maximum(1, rng.exponential(mean_gap_ms * 1e6, m)).astype(np.int64)
        t = t0 + np.cumsum(gaps)
        is_book = rng.random(m) < book_share
        moves = np.where(is_book, rng.choice([-1, 0, 0, 0, 0, 0, 1], m), 0)
        levels = level + np.cumsum(moves)
        wide = is_book & (rng.random(m) < 0.01)
        bid = np.round(levels * tick, 9)
        ask = np.round((levels + 1 + wide) * tick, 9)
        bid_size = np.round(rng.lognormal(0.0, 1.0, m) + 0.001, 3)
        ask_size = np.round(rng.lognormal(0.0, 1.0, m) + 0.001, 3)
        # trades lean towards the next move of the mid: the sign agrees with it 60% of the time
        next_move = np.sign(np.concatenate([moves[1:], [0]]))
        lean = np.where(next_move == 0, rng.choice([-1.0, 1.0], m), next_move)
        sign = np.where(rng.random(m) < 0.6, lean, -lean)
        signed = sign * np.round(rng.lognormal(-4.0, 1.2, m) + 0.002, 3)
        trig = pa.DictionaryArray.from_arrays(pa.array(np.where(is_book, 0, 1).astype(np.int8)), TRIGGERS)
        null_book = ~is_book
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(t, pa.int64()),
                trig,
                pa.array(bid, pa.float64(), mask=null_book),
                pa.array(ask, pa.float64(), mask=null_book),
                pa.array(bid_size, pa.float64(), mask=null_book),
                pa.array(ask_size, pa.float64(), mask=null_book),
                pa.array(signed, pa.float64(), mask=is_book),
            ],
            schema=SCHEMA,
        )
        t0 = int(t[-1])
        level = int(levels[-1])
        done += m


def l1_events(n: int, *, seed: int = 0, book_share: float = 0.8, **kwargs: float) -> pa.Table:
    """`n` synthetic events as one table (see `l1_batches`)."""
    return pa.Table.from_batches(list(l1_batches(n, seed=seed, book_share=book_share, **kwargs)), schema=SCHEMA)
