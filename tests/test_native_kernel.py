"""The native kernel runtime: zero-copy inputs of any offset and code width, atomic failed batches,
runtime parameters without recompiling, and a replay that lets other Python threads run."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import harness as hs
from harness import examples, ops
from harness.streams import l1_events


@pytest.fixture(scope="module")
def events() -> pa.Table:
    return l1_events(3000, seed=7)


def test_sliced_tables_and_every_trigger_encoding_replay_the_same(events: pa.Table) -> None:
    k = hs.compile(examples.l1_pressure())
    ref = hs.compile(examples.l1_pressure(), backend="python").replay(events.slice(13, 2000))
    # offsets inside the Arrow buffers (values and validity bitmaps)
    assert k.replay(events.slice(13, 2000)).equals(ref)
    plain = events.set_column(1, "trigger", pc.cast(events.column("trigger"), pa.string()))
    for trig in (
        pc.cast(events.column("trigger"), pa.string()),
        pc.cast(events.column("trigger"), pa.large_string()),
        pc.cast(pc.cast(events.column("trigger"), pa.string()), pa.dictionary(pa.int16(), pa.string())),
        pc.cast(pc.cast(events.column("trigger"), pa.string()), pa.dictionary(pa.int32(), pa.string())),
        pc.cast(pc.cast(events.column("trigger"), pa.string()), pa.dictionary(pa.int64(), pa.string())),
    ):
        k.reset()
        table = plain.set_column(1, "trigger", trig).slice(13, 2000)
        assert k.replay(table).equals(ref), trig.type


def test_unused_dictionary_entries_and_extra_triggers_are_fine(events: pa.Table) -> None:
    k = hs.compile(examples.l1_pressure())
    names = pa.array(["zz_unused", "book", "trade"])
    idx = pc.add(events.column("trigger").combine_chunks().indices.cast(pa.int8()), 1)
    table = events.set_column(1, "trigger", pa.DictionaryArray.from_arrays(idx, names))
    assert k.replay(table).equals(hs.compile(examples.l1_pressure(), backend="python").replay(events))
    bad = pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int8()), names)
    k.reset()
    with pytest.raises(hs.EventsError, match=r"row 0 names unknown trigger 'zz_unused'"):
        k.replay(table.slice(0, 2).set_column(1, "trigger", bad))


def test_a_failed_batch_changes_no_state(events: pa.Table, backend: str) -> None:
    k = hs.compile(examples.l1_pressure(), backend=backend)
    k.replay(events.slice(0, 1000))
    broken = events.slice(1000, 500)
    t = broken.column("t").to_numpy().copy()
    t[300] = t[0] - 1  # decreases in the middle of the batch: rows 0..299 ran before the check failed
    with pytest.raises(hs.EventsError, match="decreases at row 300"):
        k.replay(broken.set_column(0, "t", pa.array(t)))
    rest = k.replay(events.slice(1000))
    expected = hs.compile(examples.l1_pressure(), backend="python")
    expected.replay(events.slice(0, 1000))
    assert rest.equals(expected.replay(events.slice(1000)))


def test_set_params_changes_outputs_without_recompiling(kernel_cache: Path) -> None:
    c = hs.Circuit("tunable")
    x = c.input("x")
    c.trigger("x", x)
    hl = c.parameter("hl", init=1.0, lower=0.01)
    w = c.parameter("w", init=2.0)
    c.output("y", ops.ewma(x, halflife=hl) * w)
    k = hs.compile(c)
    before = {p.name for p in kernel_cache.iterdir()}
    k.call("x", t=0, x=0.0)
    k.call("x", t=1_000_000_000, x=1.0)
    assert k.value("y") == 1.0  # ewma 0.5, times 2
    k.set_params({"hl": 0.5, "w": 4.0})
    k.reset()
    k.call("x", t=0, x=0.0)
    k.call("x", t=1_000_000_000, x=1.0)
    assert k.value("y") == 3.0  # ewma 0.75, times 4
    assert k.params == {"hl": 0.5, "w": 4.0}
    assert {p.name for p in kernel_cache.iterdir()} == before  # nothing was built
    assert hs.compile(c).build["cache_hit"] is True


def test_replay_releases_the_gil() -> None:
    k = hs.compile(examples.l1_pressure())
    events = l1_events(3_000_000, seed=1).combine_chunks()
    ticks = 0
    running = threading.Event()
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        running.set()
        while not done.is_set():
            ticks += 1
            time.sleep(0)

    counter = threading.Thread(target=count)
    counter.start()
    running.wait()
    k.reset()
    start_ticks = ticks
    start = time.perf_counter()
    k._k.replay(  # the native call alone, so the count covers only time spent in C++
        events.column("t").to_numpy(),
        -(2**63),
        events.column("trigger").chunk(0).indices.to_numpy(),
        np.array([0, 1], np.int32),
        [events.column(n).chunk(0).to_numpy(zero_copy_only=False) for n in k.inputs],
        [None] * len(k.inputs),
        [None] * len(k.inputs),
        [0] * len(k.inputs),
        np.empty((1, events.num_rows)),
        np.zeros((1, (events.num_rows + 7) // 8), np.uint8),
    )
    elapsed = time.perf_counter() - start
    done.set()
    counter.join()
    assert elapsed > 0.02
    assert ticks - start_ticks > 50  # the other thread kept running while the kernel replayed
