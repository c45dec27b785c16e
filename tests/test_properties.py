"""Property tests: random circuits give the same values through `call`, `replay` and chunked `replay`."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st
from strategies import circuits, events_for, replay_by_calls, same

import harness as hs


@given(st.data())
def test_call_one_event_at_a_time_equals_replay(data: st.DataObject) -> None:
    circuit = data.draw(circuits())
    events = data.draw(events_for(circuit))
    by_calls = replay_by_calls(hs.compile(circuit, backend="python"), events)
    table = hs.compile(circuit, backend="python").replay(events)
    assert table.column("t").to_pylist() == events.column("t").to_pylist()
    for name, values in by_calls.items():
        got = table.column(name).to_pylist()
        assert len(got) == len(values)
        for r, (a, b) in enumerate(zip(values, got, strict=True)):
            assert same(a, b), (name, r, a, b)


@given(st.data())
def test_chunked_replay_equals_whole_replay(data: st.DataObject) -> None:
    circuit = data.draw(circuits())
    events = data.draw(events_for(circuit))
    whole = hs.compile(circuit, backend="python").replay(events)
    size = data.draw(st.integers(1, 7))
    kernel = hs.compile(circuit, backend="python")
    parts = [kernel.replay(b) for b in events.to_batches(max_chunksize=size)]
    joined = pa.concat_tables(parts) if parts else whole
    for name in whole.column_names:
        a, b = whole.column(name).to_pylist(), joined.column(name).to_pylist()
        assert all(same(x, y) for x, y in zip(a, b, strict=True)), name


@given(st.data())
def test_random_circuits_are_deterministic(data: st.DataObject) -> None:
    circuit = data.draw(circuits())
    events = data.draw(events_for(circuit, finite=True))
    a = hs.compile(circuit, backend="python").replay(events)
    k = hs.compile(circuit, backend="python")
    k.replay(events)
    k.reset()
    b = k.replay(events)
    for name in a.column_names:
        assert all(same(x, y) for x, y in zip(a.column(name).to_pylist(), b.column(name).to_pylist(), strict=True))
