"""The `harness` command. For now its main job is a demo: the seed scenarios, then a synthetic L1 circuit
replayed by its generated C++ kernel and checked against the reference interpreter (the full Hydra/MLflow
pipeline replaces it later)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from harness import examples
from harness.errors import HarnessError
from harness.kernel import compile
from harness.streams import l1_batches

REFERENCE_EVENTS = 20_000  # the reference interpreter replays only the first events (it is slow)


def seed_scenarios(console: Console) -> bool:
    """Run the two seed scenarios through the reference interpreter; print and return whether all match."""
    table = Table(title="seed scenarios (reference interpreter)")
    for col in ("scenario", "event", "output", "expected", "got", "ok"):
        table.add_column(col)
    ok_all = True

    def row(scenario: str, event: str, output: str, expected: float | None, got: float | None) -> None:
        nonlocal ok_all
        ok = expected == got
        ok_all &= ok
        table.add_row(scenario, event, output, str(expected), str(got), "[green]yes" if ok else "[red]NO")

    k = compile(examples.add_two(), backend="python")
    k.call("ab", t=10, a=1.0, b=2.0)
    row("add two numbers", "ab(t=10, a=1, b=2)", "sum", 3.0, k.value("sum"))

    k = compile(examples.wide_add(), backend="python")
    k.call("ab", t=10, a=1.0, b=2.0)
    row("wide trigger add", "ab(t=10, a=1, b=2)", "out", None, k.value("out"))
    k.call("c", t=20, c=5.0)
    row("wide trigger add", "c(t=20, c=5)", "out", 8.0, k.value("out"))
    k.call("ab", t=30, a=3.0, b=2.0)
    row("wide trigger add", "ab(t=30, a=3, b=2)", "out", 10.0, k.value("out"))
    console.print(table)
    return ok_all


def l1_demo(console: Console, events: int, seed: int, out: Path | None, draw: Path | None) -> None:
    """Replay synthetic L1 events through the l1_pressure circuit: the generated C++ kernel on all of them,
    the reference interpreter on the first ones, and check that both agree on every shared row."""
    circuit = examples.l1_pressure()
    if draw is not None:
        circuit.draw(draw)
        console.print(f"circuit drawing written to {draw}")
    with console.status("generating and compiling the C++ kernel (cached after the first run)..."):
        start = time.perf_counter()
        kernel = compile(circuit)
        compile_s = time.perf_counter() - start
    reference = compile(circuit, backend="python")
    n_ref = min(events, REFERENCE_EVENTS)
    chunk = max(1, min(1_000_000, events))
    results: list[pa.Table] = []
    ref_results: list[pa.Table] = []
    native_s = ref_s = 0.0
    with Progress(
        TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as progress:
        task = progress.add_task("replay", total=events)
        done = 0
        for batch in l1_batches(events, seed=seed, chunk=chunk):
            t0 = time.perf_counter()
            results.append(kernel.replay(batch))
            native_s += time.perf_counter() - t0
            if done < n_ref:
                part = batch.slice(0, n_ref - done)
                t0 = time.perf_counter()
                ref_results.append(reference.replay(part))
                ref_s += time.perf_counter() - t0
            done += batch.num_rows
            progress.advance(task, batch.num_rows)
    result = pa.concat_tables(results) if results else kernel.replay([])
    agree = not ref_results or result.slice(0, n_ref).equals(pa.concat_tables(ref_results))
    col = result.column("out")
    values = col.drop_null().to_numpy()
    summary = Table(title=f"l1_pressure on {events:,} synthetic events (seed {seed})")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    hit = "cache hit" if kernel.build["cache_hit"] else "compiled"
    summary.add_row("C++ kernel", f"{hit} in {compile_s:.2f} s ({kernel.kernel_hash[:12]})")
    summary.add_row("events/s, generated C++", f"{events / native_s:,.0f}" if native_s > 0 else "-")
    summary.add_row(
        f"events/s, reference interpreter ({n_ref:,} events)", f"{n_ref / ref_s:,.0f}" if ref_s > 0 else "-"
    )
    summary.add_row("C++ equals reference on shared rows", "[green]yes" if agree else "[red]NO")
    summary.add_row("rows with a valid output", f"{len(values):,} of {len(col):,}")
    if len(values):
        summary.add_row("output mean / std", f"{values.mean():+.4f} / {values.std():.4f}")
        summary.add_row("output min / max", f"{values.min():+.4f} / {values.max():+.4f}")
    console.print(summary)
    if out is not None:
        tmp = out.with_name(out.name + ".partial")
        pq.write_table(result, tmp)
        tmp.replace(out)  # publish only a complete file
        console.print(f"replay result written to {out}")
    if not agree:
        raise HarnessError("the C++ kernel and the reference interpreter disagree")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `harness` console script and `python -m harness`."""
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="seed scenarios + synthetic L1 replay (the default)")
    for p in (parser, demo):
        p.add_argument("--events", type=int, default=1_000_000, help="synthetic events to replay (default 1000000)")
        p.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream (default 0)")
        p.add_argument("--out", type=Path, default=None, help="write the replay result to this parquet file")
        p.add_argument("--draw", type=Path, default=None, help="draw the circuit to this .dot/.svg file")
    args = parser.parse_args(argv)
    console = Console()
    if args.events < 0:
        parser.error(f"--events must be >= 0, got {args.events}")
    try:
        ok = seed_scenarios(console)
        l1_demo(console, args.events, args.seed, args.out, args.draw)
    except HarnessError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
