"""The synthetic L1 stream: seeded, chunk-invariant in shape, and valid for the l1_pressure circuit."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import harness as hs
from harness import examples
from harness.streams import l1_batches, l1_events


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    assert l1_events(2000, seed=3).equals(l1_events(2000, seed=3))
    assert not l1_events(2000, seed=3).equals(l1_events(2000, seed=4))


def test_batches_are_bounded_and_times_increase_across_chunks() -> None:
    batches = list(l1_batches(2500, seed=1, chunk=1000))
    assert [b.num_rows for b in batches] == [1000, 1000, 500]
    t = np.concatenate([b.column("t").to_numpy() for b in batches])
    assert (np.diff(t) > 0).all()


def test_shape_of_the_stream() -> None:
    ev = l1_events(20_000, seed=0, book_share=0.8)
    share = pc.mean(pc.equal(ev.column("trigger"), "book").cast(pa.float64())).as_py()
    assert 0.78 < share < 0.82
    book = ev.filter(pc.equal(ev.column("trigger"), "book"))
    spread = (book.column("ask").to_numpy() - book.column("bid").to_numpy()) / 0.1
    assert np.median(np.round(spread)) == 1 and (np.round(spread) >= 1).all()
    trades = ev.filter(pc.equal(ev.column("trigger"), "trade"))
    assert trades.column("bid").null_count == trades.num_rows
    assert book.column("signed_size").null_count == book.num_rows


def test_replays_through_the_l1_pressure_circuit() -> None:
    r = hs.compile(examples.l1_pressure(), backend="python").replay(l1_events(3000, seed=2))
    out = r.column("out").drop_null().to_numpy()
    assert len(out) > 2900 and np.all(np.abs(out) < 1.0)


def test_bad_arguments() -> None:
    with pytest.raises(hs.HarnessError, match="book_share must be in"):
        next(l1_batches(10, book_share=2.0))
