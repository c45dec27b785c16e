"""Issue 3 performance: the generated kernel against a hand-written C++ loop, numba and the reference.

All in one run, on the same synthetic events (80% book updates) and the benchmark circuit
`harness.examples.l1_pressure`. Run:
    python -m pytest tests/bench/test_bench_kernel.py --run-bench --benchmark-columns=median,rounds
Events/s are in each benchmark's extra_info (`--benchmark-json` keeps them); figures go to the README.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import harness as hs
from harness import examples
from harness.codegen.build import BuildUnit, build_modules
from harness.codegen.native import load_module
from harness.codegen.toolchain import toolchain
from harness.streams import l1_events

N = int(os.environ.get("HARNESS_BENCH_EVENTS", "10000000"))
N_REFERENCE = 100_000
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def events() -> pa.Table:
    return l1_events(N, seed=0).combine_chunks()


@pytest.fixture(scope="module")
def arrays(events: pa.Table) -> dict[str, np.ndarray]:
    """The events as plain numpy arrays (trigger codes 0 = book, 1 = trade), for the hand-written loops."""
    out = {
        "t": events.column("t").to_numpy(),
        "trig": events.column("trigger").chunk(0).indices.to_numpy().astype(np.int32),
    }
    for name in ("bid", "ask", "bid_size", "ask_size", "signed_size"):
        out[name] = events.column(name).to_numpy(zero_copy_only=False)
    return out


@pytest.fixture(scope="module")
def handwritten(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("handwritten")
    unit = BuildUnit("hs_bench_handwritten_l1", (HERE / "handwritten_l1.cpp").read_text())
    path = build_modules([unit], work, toolchain("O2"))[unit.module]
    return load_module(path, unit.module)


@pytest.fixture(scope="module")
def kernel() -> hs.Kernel:
    return hs.compile(examples.l1_pressure())


def per_second(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    if benchmark.stats is not None:
        median = benchmark.stats.stats.median
        benchmark.extra_info["events_per_s"] = round(n / median) if median else None
    benchmark.extra_info["events"] = n


def test_generated_kernel_replay(benchmark, kernel: hs.Kernel, events: pa.Table, arrays) -> None:  # type: ignore[no-untyped-def]
    """End to end: kernel.replay(table) including the events check and building the result table."""

    def run() -> pa.Table:
        kernel.reset()
        return kernel.replay(events)

    result = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    per_second(benchmark, N)
    assert result.num_rows == N


def test_generated_kernel_loop_only(benchmark, kernel: hs.Kernel, arrays) -> None:  # type: ignore[no-untyped-def]
    """The native loop alone, on the same decoded arrays the hand-written loop gets."""
    k = kernel._k
    cols = [arrays[name] for name in kernel.inputs]
    out = np.empty((1, N))
    bits = np.zeros((1, (N + 7) // 8), np.uint8)
    no_nulls = [None] * len(cols)

    def run() -> None:
        kernel.reset()
        bits[:] = 0
        done = k.replay(
            arrays["t"], -(2**63), arrays["trig"], None, cols, no_nulls, no_nulls, [0] * len(cols), out, bits
        )[0]
        assert done == N

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    per_second(benchmark, N)


def test_handwritten_cpp_loop(benchmark, handwritten, kernel: hs.Kernel, events: pa.Table, arrays) -> None:  # type: ignore[no-untyped-def]
    out = np.empty(N)
    valid = np.zeros(N, np.uint8)
    a = arrays

    def run() -> None:
        handwritten.replay(
            a["t"], a["trig"], a["bid"], a["ask"], a["bid_size"], a["ask_size"], a["signed_size"], out, valid
        )

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    per_second(benchmark, N)
    kernel.reset()
    ours = kernel.replay(events.slice(0, 200_000)).column("out")
    mask = valid[:200_000].astype(bool)
    np.testing.assert_array_equal(ours.is_valid().to_numpy(zero_copy_only=False), mask)
    assert np.array_equal(ours.to_numpy(zero_copy_only=False)[mask], out[:200_000][mask])  # bit-identical


def numba_loop():  # type: ignore[no-untyped-def]
    numba = pytest.importorskip("numba", reason="numba is a dev extra: pip install -e '.[dev]'")

    @numba.njit(cache=False, fastmath=False)
    def replay(t, trig, bid, ask, bsz, asz, ss, out, valid):  # type: ignore[no-untyped-def]
        book = e = tp = 0.0
        e_t = tp_t = 0
        have_book = have_e = have_tp = False
        for r in range(t.shape[0]):
            now = t[r]
            if trig[r] == 0:
                mid = (bid[r] + ask[r]) / 2.0
                imb = (bsz[r] - asz[r]) / (bsz[r] + asz[r])
                if not have_e:
                    e = mid
                    have_e = True
                else:
                    w = np.exp2(-((now - e_t) / 1e9) / 1.0)
                    e = w * e + (1.0 - w) * mid
                e_t = now
                book = 1000.0 * (mid - e) / mid + 0.5 * imb
                have_book = True
            else:
                if not have_tp:
                    tp = ss[r]
                    have_tp = True
                else:
                    tp = tp * np.exp2(-((now - tp_t) / 1e9) / 0.5) + ss[r]
                tp_t = now
            out[r] = np.tanh(0.002 * tp + book)
            valid[r] = have_book and have_tp

    return replay


def test_numba_loop(benchmark, arrays) -> None:  # type: ignore[no-untyped-def]
    replay = numba_loop()
    a = arrays
    out = np.empty(N)
    valid = np.zeros(N, np.bool_)
    args = (a["t"], a["trig"], a["bid"], a["ask"], a["bid_size"], a["ask_size"], a["signed_size"], out, valid)
    replay(*[x[:100] for x in args])  # compile outside the timing
    benchmark.pedantic(replay, args=args, rounds=5, iterations=1, warmup_rounds=1)
    per_second(benchmark, N)


def test_reference_interpreter_on_the_same_stream(benchmark, events: pa.Table) -> None:  # type: ignore[no-untyped-def]
    kernel = hs.compile(examples.l1_pressure(), backend="python")
    part = events.slice(0, N_REFERENCE)

    def run() -> pa.Table:
        kernel.reset()
        return kernel.replay(part)

    benchmark.pedantic(run, rounds=3, iterations=1)
    per_second(benchmark, N_REFERENCE)


COMPILE_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import harness as hs
from harness import examples
t1 = time.perf_counter()
k = hs.compile(examples.l1_pressure(), cache_dir=sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "compile_s": t2 - t1, "cache_hit": k.build["cache_hit"],
                  "so_bytes": __import__("os").path.getsize(k.build["module"]),
                  "source_lines": k.source.count(chr(10))}))
"""


def test_cold_compile_and_warm_load(tmp_path: Path, benchmark) -> None:  # type: ignore[no-untyped-def]
    """Cold: a fresh cache directory (CMake configure + compile). Warm: a new process loading from the cache."""

    def once() -> dict:
        out = subprocess.run(
            [sys.executable, "-c", COMPILE_SCRIPT, str(tmp_path)], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)

    cold = once()
    warm = [once() for _ in range(3)]
    assert not cold["cache_hit"] and all(w["cache_hit"] for w in warm)
    benchmark.extra_info.update(
        cold_compile_s=round(cold["compile_s"], 3),
        warm_load_s=round(sorted(w["compile_s"] for w in warm)[1], 4),
        so_bytes=cold["so_bytes"],
        source_lines=cold["source_lines"],
    )
    benchmark.pedantic(lambda: None, rounds=1)
    print(
        f"\ncold compile {cold['compile_s']:.2f} s, warm load {benchmark.extra_info['warm_load_s'] * 1e3:.1f} ms, "
        f"kernel {cold['so_bytes'] / 1024:.0f} KiB, {cold['source_lines']} source lines"
    )


MEMORY_SCRIPT = """
import gc, json, os, sys, threading, time
import psutil
import harness as hs
from harness import examples
from harness.streams import l1_events
n = int(sys.argv[1])
k = hs.compile(examples.l1_pressure())
events = l1_events(n, seed=0, chunk=1_000_000)
input_bytes = sum(events.column(c).nbytes for c in events.column_names)
gc.collect()
proc = psutil.Process()
base = proc.memory_info().rss
peak = base
stop = False
def sample():
    global peak
    while not stop:
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.002)
th = threading.Thread(target=sample); th.start()
result = k.replay(events)
stop = True; th.join()
peak = max(peak, proc.memory_info().rss)
print(json.dumps({"input_bytes": input_bytes, "extra_bytes": peak - base, "result_bytes": result.nbytes}))
"""


def test_peak_memory_of_a_chunked_replay(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Peak memory while replaying N events held in 1M-row chunks: (input + extra) / input <= 1.5."""
    pytest.importorskip("psutil", reason="psutil is a dev extra")
    hs.compile(examples.l1_pressure())  # make sure the kernel is cached for the subprocess
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(N)], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout)
    ratio = (m["input_bytes"] + m["extra_bytes"]) / m["input_bytes"]
    benchmark.extra_info.update(
        input_mb=round(m["input_bytes"] / 2**20), extra_mb=round(m["extra_bytes"] / 2**20), ratio=round(ratio, 3)
    )
    benchmark.pedantic(lambda: None, rounds=1)
    print(
        f"\ninput {m['input_bytes'] / 2**20:.0f} MiB, extra peak {m['extra_bytes'] / 2**20:.0f} MiB, ratio {ratio:.2f}"
    )
    assert ratio <= 1.5


def user_seconds() -> float:
    """User-mode CPU time of this process: the work of the loops themselves. System time is left out: on
    this shared machine it is dominated by page faults on fresh output memory (transparent huge page
    compaction), which swings by 0.2 s between identical runs."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def interleaved(kernel: hs.Kernel, events: pa.Table, arrays, handwritten, rounds: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median user CPU seconds of (kernel.replay end to end, hand-written loop) over interleaved rounds."""
    a = arrays
    gen, hw = [], []
    for _ in range(rounds):
        kernel.reset()
        t0 = user_seconds()
        kernel.replay(events)
        gen.append(user_seconds() - t0)
        t0 = user_seconds()
        out, valid = np.empty(N), np.zeros(N, np.uint8)  # allocate like a replay does
        handwritten.replay(
            a["t"], a["trig"], a["bid"], a["ask"], a["bid_size"], a["ask_size"], a["signed_size"], out, valid
        )
        hw.append(user_seconds() - t0)
    return float(np.median(gen)), float(np.median(hw))


def report_ratio(benchmark, label: str, gen: float, hw: float) -> float:  # type: ignore[no-untyped-def]
    ratio = hw / gen
    benchmark.extra_info.update(
        generated_events_per_s=round(N / gen), handwritten_events_per_s=round(N / hw), ratio=round(ratio, 3)
    )
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\n{label} {N / gen / 1e6:.1f} M/s, hand-written {N / hw / 1e6:.1f} M/s, ratio {ratio:.2f}")
    return ratio


def test_ratio_generated_over_handwritten(benchmark, kernel: hs.Kernel, events: pa.Table, arrays, handwritten) -> None:  # type: ignore[no-untyped-def]
    """The README's headline ratio: interleaved rounds (generated, hand-written, generated, ...), user CPU
    time, medians. The generated kernel runs end to end (events check, result table); the hand-written loop
    gets decoded arrays and allocates its outputs like a replay does."""
    gen, hw = interleaved(kernel, events, arrays, handwritten, 1 if benchmark.disabled else 9)
    ratio = report_ratio(benchmark, "generated", gen, hw)
    if not benchmark.disabled:
        # target >= 1.0x. Both loops spend most of their time in the same libm calls and run at parity;
        # repeated runs on this shared machine spread over +-5%, so the check allows that much.
        assert ratio >= 0.95, f"generated kernel at {ratio:.2f}x the hand-written loop (target >= 1.0x)"


@pytest.mark.parametrize("level", ["outputs", "all"])
def test_ratio_vector_math_over_handwritten(benchmark, level: str, events: pa.Table, arrays, handwritten) -> None:  # type: ignore[no-untyped-def]
    """The stretch target: vector_math kernels against the hand-written scalar loop, measured like
    test_ratio_generated_over_handwritten. Stretch target >= 2.0x; checked here: >= 1.0x."""
    kernel = hs.compile(examples.l1_pressure(), vector_math=level)
    gen, hw = interleaved(kernel, events, arrays, handwritten, 1 if benchmark.disabled else 9)
    benchmark.extra_info["level"] = level
    ratio = report_ratio(benchmark, f"vector_math={level}", gen, hw)
    if not benchmark.disabled:
        assert ratio >= 1.0
