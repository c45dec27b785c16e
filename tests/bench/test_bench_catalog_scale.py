"""Issue 17 performance: 100M synthetic events through the catalog and a sharded record, peak RSS per process.

Run:
    python -m pytest tests/bench/test_bench_catalog_scale.py --run-bench -s
HARNESS_BENCH_SCALE_EVENTS (100M by default; CI's smoke pass: 1M) events of one continuous synthetic stream (~3.4
hours per 1M events: 100M span ~15 UTC days). Each step runs in its own child process, which reports its own peak
resident size (ru_maxrss of RUSAGE_SELF): the import (generated 100k events at a time into `import_batches`), then
the sharded record (one shard per day, run in turn in that process, the largest a worker of any engine holds),
recording every 100th trade with two labels. Target: <= 1.5 GB per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

EVENTS = int(os.environ.get("HARNESS_BENCH_SCALE_EVENTS", "100000000"))
LIMIT_MIB = 1536

IMPORT = """
import resource, sys
import harness as hs
from harness.streams import catalog
root, events = sys.argv[1], int(sys.argv[2])
stream = hs.streams.synthetic_batches(events, seed=0, chunk=100_000, start_ns=1_723_075_200 * 10**9 + 1_000_000)
catalog.import_batches(root, stream, market="btc", source="synthetic")
print("DAYS", len(catalog.partitions(root)))
print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

RECORD = """
import resource, sys
sys.path.insert(0, sys.argv[2])
import harness as hs
from test_bench_shards import bench_circuit
source = hs.replay.CatalogSource(sys.argv[1], ("btc",))
kernel = hs.compile(bench_circuit())
how = hs.replay.Sharding(every_s=86_400.0, engine="serial")
rec = hs.replay.record(kernel, source, sampler=hs.replay.every_n(100, "trade"),
                       labels=[("mid", (1.0, 5.0), "return")], shards=how, progress=False)
print("EVENTS", rec.rows, "ROWS", rec.table.num_rows, "SHARDS", len(rec.shards))
print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _child(code: str, *args: str) -> tuple[float, int, str]:
    """Run `code` in a fresh interpreter; its wall seconds, peak RSS in MiB and stdout."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    clock = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=7200)
    wall = time.perf_counter() - clock
    assert res.returncode == 0, res.stderr[-3000:]
    return wall, int(res.stdout.rsplit("PEAK_RSS_KIB", 1)[1].split()[0]) // 1024, res.stdout


def test_catalog_and_sharded_record_at_scale(tmp_path: Path, benchmark) -> None:  # type: ignore[no-untyped-def]
    events = 1_000_000 if benchmark.disabled else EVENTS
    root = str(tmp_path / "catalog")
    import_s, import_mib, imported = _child(IMPORT, root, str(events))
    days = int(imported.split("DAYS", 1)[1].split()[0])
    record_s, record_mib, out = _child(RECORD, root, str(Path(__file__).parent))
    replayed = int(out.split("EVENTS", 1)[1].split()[0])
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(events=replayed, days=days, import_s=round(import_s, 1), import_peak_mib=import_mib,
                                record_s=round(record_s, 1), record_peak_mib=record_mib)  # fmt: skip
    print(
        f"\ncatalog at scale: {replayed:,} events in {days} days; import {import_s:.0f} s, peak {import_mib} MiB; "
        f"sharded record {record_s:.0f} s, peak {record_mib} MiB ({out.split('ROWS', 1)[1].split()[0]} rows)"
    )
    assert replayed == events
    if not benchmark.disabled:
        assert max(import_mib, record_mib) <= LIMIT_MIB, f"peak RSS {max(import_mib, record_mib)} MiB > {LIMIT_MIB}"
