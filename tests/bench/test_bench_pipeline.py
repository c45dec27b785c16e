"""Issue 12 performance: the flagship pipeline end to end (wall time, stage times, peak resident size) on 1M and
10M synthetic events, and the seconds per training epoch of the flagship over ~1M sampled rows.

Run:
    python -m pytest tests/bench/test_bench_pipeline.py --run-bench -s --benchmark-columns=median,rounds
HARNESS_BENCH_EVENTS sets the larger pipeline run (10M by default; CI's smoke pass uses 1M) and
HARNESS_BENCH_FIT_ROWS the sampled rows of the epoch benchmark (1M by default). Figures go to the README.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from harness import fit
from harness.fit import fitting
from harness.pipeline import build, schema

N_LARGE = int(os.environ.get("HARNESS_BENCH_EVENTS", "10000000"))
FIT_ROWS = int(os.environ.get("HARNESS_BENCH_FIT_ROWS", "1000000"))
EPOCHS = 10


# the child reports its own peak resident size at exit (ru_maxrss of RUSAGE_CHILDREN would be the largest of any
# child this session ran, compilers included)
CHILD = (
    "import atexit, resource, sys\n"
    "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "atexit.register(lambda: print('PEAK_RSS_KIB', peak(), file=sys.stderr))\n"
    "from harness.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run_pipeline(events: int, cwd: Path) -> tuple[float, int, dict[str, float]]:
    """`harness +experiment=trade_pressure_synthetic stream.events=N` in a child process, in a fresh directory
    (its own sqlite store); its wall seconds, its peak resident size in MiB and its logged metrics."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    cmd = [sys.executable, "-c", CHILD, "+experiment=trade_pressure_synthetic", f"stream.events={events}"]
    cmd += ["tracking.plots=false"]
    clock = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - clock
    assert res.returncode == 0, res.stderr[-3000:]
    peak = int(res.stderr.rsplit("PEAK_RSS_KIB", 1)[1].split()[0])
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    return wall, peak // 1024, run.data.metrics


@pytest.mark.parametrize("events", sorted({1_000_000, N_LARGE}))
def test_flagship_pipeline(benchmark, events: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wall, peak_mib, metrics = benchmark.pedantic(lambda: run_pipeline(events, tmp_path), rounds=1, iterations=1)
    stages = {
        k.removeprefix("stage/").removesuffix("_s"): round(v, 2) for k, v in metrics.items() if k.startswith("stage/")
    }
    benchmark.extra_info.update(events=events, wall_s=round(wall, 1), peak_rss_mib=peak_mib, stages=stages)
    assert metrics["parity_rows"] > 0 and stages["train"] > 0
    print(
        f"\nflagship pipeline, {events:,} synthetic events: {wall:.1f} s wall, peak RSS {peak_mib} MiB, stages {stages}"
    )


@pytest.mark.parametrize("where", ["memory", "spilled"])
def test_flagship_seconds_per_epoch(benchmark, where: str) -> None:  # type: ignore[no-untyped-def]
    """Record the flagship with one sampled row per trade (~0.77 rows per event), then train EPOCHS full-batch epochs
    (no early stopping) on a 60/20/20 split of ~FIT_ROWS rows; seconds per epoch = train seconds / epochs. `spilled`:
    the recording is spilled to Parquet (`memory_rows=1`) and read back in pieces."""
    schema.register()
    from hydra import compose, initialize_config_dir

    events = int(FIT_ROWS / 0.766)
    overrides = ["+experiment=trade_pressure_synthetic", f"stream.events={events}", "task.sampler.n=1"]
    with initialize_config_dir(str(schema.CONF_DIR), version_base=None):
        cfg = compose("config", overrides)
    trainer = dataclasses.replace(build.make_trainer(cfg), epochs=EPOCHS, patience=EPOCHS + 1, progress=False)
    trainer = dataclasses.replace(trainer, memory_rows=1 if where == "spilled" else None)
    stream = build.load_stream(cfg)

    def fitted():  # type: ignore[no-untyped-def]
        return fit.fit(
            build.build_circuit(cfg), stream.batches, target=cfg.task.target, label=build.make_label(cfg),
            split=build.split_fractions(cfg), trainer=trainer, sampler=build.make_sampler(cfg), total=stream.rows,
        )  # fmt: skip

    cpu: list[float] = []
    original = fitting.train

    def timed_train(*args, **kwargs):  # type: ignore[no-untyped-def]
        start = cpu_seconds()
        try:
            return original(*args, **kwargs)
        finally:
            cpu.append(cpu_seconds() - start)

    fitting.train = timed_train
    try:
        res = benchmark.pedantic(fitted, rounds=1, iterations=1)
    finally:
        fitting.train = original
    assert res.data.points.spilled == (where == "spilled")
    res.close()
    rows, epochs = len(res.data.t), res.training.epochs_run
    per_epoch, cpu_per_epoch = res.stages["train_s"] / epochs, cpu[0] / epochs
    benchmark.extra_info.update(
        rows=rows,
        train_rows=len(res.split.train),
        s_per_epoch=round(per_epoch, 3),
        cpu_s_per_epoch=round(cpu_per_epoch, 3),
    )
    assert epochs == EPOCHS
    print(
        f"\nflagship fit ({where}): {rows:,} sampled rows ({len(res.split.train):,} train), {per_epoch:.3f} s/epoch "
        f"({cpu_per_epoch:.3f} s of CPU, {torch.get_num_threads()} threads)"
    )


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): the work done, whatever else the machine runs."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
