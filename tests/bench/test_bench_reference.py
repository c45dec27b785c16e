"""Reference interpreter throughput on the l1_pressure circuit, side by side with a hand-written Python loop.

Run: python -m pytest tests/bench --run-bench   (figures go to the README's performance table)
"""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

import harness as hs
from harness import examples
from harness.streams import l1_events

N = 20_000


@pytest.fixture(scope="module")
def events() -> pa.Table:
    return l1_events(N, seed=0)


def hand_written_loop(events: pa.Table) -> list[float | None]:
    """The l1_pressure circuit written directly in Python: the floor for any Python interpreter."""
    cols = {name: events.column(name).to_pylist() for name in events.column_names}
    out: list[float | None] = []
    mid = imb = ew = ew_t = tp = tp_t = None
    for i, trig in enumerate(cols["trigger"]):
        t = cols["t"][i]
        if trig == "book":
            bid, ask, bs, az = cols["bid"][i], cols["ask"][i], cols["bid_size"][i], cols["ask_size"][i]
            mid = (bid + ask) / 2.0
            imb = (bs - az) / (bs + az)
            if ew is None:
                ew = mid
            else:
                w = math.exp2(-((t - ew_t) / 1e9) / 1.0)
                ew = w * ew + (1.0 - w) * mid
            ew_t = t
        else:
            x = cols["signed_size"][i]
            tp = x if tp is None else tp * math.exp2(-((t - tp_t) / 1e9) / 0.5) + x
            tp_t = t
        if mid is None or tp is None:
            out.append(None)
        else:
            out.append(math.tanh(0.5 * imb + 1000.0 * (mid - ew) / mid + 0.002 * tp))
    return out


def test_reference_interpreter(benchmark, events: pa.Table) -> None:  # type: ignore[no-untyped-def]
    kernel = hs.compile(examples.l1_pressure(), backend="python")

    def run() -> pa.Table:
        kernel.reset()
        return kernel.replay(events)

    result = benchmark(run)
    assert result.num_rows == N
    benchmark.extra_info["events"] = N


def test_hand_written_python_loop(benchmark, events: pa.Table) -> None:  # type: ignore[no-untyped-def]
    out = benchmark(hand_written_loop, events)
    expected = hs.compile(examples.l1_pressure(), backend="python").replay(events).column("out").to_pylist()
    assert out == expected  # same numbers: the interpreter is exact, only slower
    benchmark.extra_info["events"] = N
