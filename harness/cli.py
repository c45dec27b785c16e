"""The `harness` command.

harness [OVERRIDES...]          the pipeline (Hydra): compose, compile, replay, fit, evaluate, log to MLflow
harness -m OVERRIDES...         a sweep: one MLflow parent run, a child run per job
harness runs list|show|compare|replay|gc ...   the run tools
harness demo [--events N ...]   the demo: seed scenarios, a synthetic L2 replay checked against the
                                reference interpreter, a fit of a learnable market circuit

Exit status of the pipeline: 0 done; 1 a config that does not compose (Hydra's message); 2 a run that failed
(one line; its MLflow run is FAILED) or a sweep with failed jobs or a failed launcher (its parent run is ended,
a line per failed job); 128 + N on signal N (Ctrl-C 130, SIGTERM 143, SIGHUP 129: one line, runs ended KILLED).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from harness import examples
from harness.errors import HarnessError
from harness.kernel import compile
from harness.replay import every_n, record
from harness.streams import synthetic

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


def market_demo(console: Console, events: int, seed: int, out: Path | None, draw: Path | None) -> pa.Table:
    """Replay synthetic L2 book + trade events through `examples.market_pressure`: the generated C++ kernel on
    all of them (sampled every 10 trades, labelled with the 1 s mid return), the reference interpreter on the
    first ones, and check that both agree on every shared row."""
    circuit = examples.market_pressure()
    if draw is not None:
        circuit.draw(draw)
        console.print(f"circuit drawing written to {draw}")
    with console.status("generating and compiling the C++ kernel (cached after the first run)..."):
        start = time.perf_counter()
        kernel = compile(circuit)
        compile_s = time.perf_counter() - start
    with console.status(f"generating {events:,} synthetic events..."):
        start = time.perf_counter()
        stream = synthetic(events, seed=seed)
        generate_s = time.perf_counter() - start
    start = time.perf_counter()
    rec = record(
        kernel,
        stream.to_batches(max_chunksize=max(1, min(250_000, events))),
        sampler=every_n(10, "trade"),
        labels=[("mid", 1.0, "return")],
        progress=console.is_terminal,
    )
    native_s = time.perf_counter() - start
    n_ref = min(events, REFERENCE_EVENTS)
    start = time.perf_counter()
    ref_rows = compile(circuit, backend="python").replay(stream.slice(0, n_ref))
    ref_s = time.perf_counter() - start
    kernel.reset()
    agree = kernel.replay(stream.slice(0, n_ref)).equals(ref_rows)
    table = rec.table
    summary = Table(title=f"market_pressure on {events:,} synthetic L2 book + trade events (seed {seed})")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    hit = "cache hit" if kernel.build["cache_hit"] else "compiled"
    summary.add_row("C++ kernel", f"{hit} in {compile_s:.2f} s ({kernel.kernel_hash[:12]})")
    summary.add_row("synthetic events generated in", f"{generate_s:.2f} s")
    summary.add_row("events/s, generated C++ (replay + sampling + labels)", _rate(events, native_s))
    summary.add_row(f"events/s, reference interpreter ({n_ref:,} events)", _rate(n_ref, ref_s))
    summary.add_row("C++ equals reference on shared rows", "[green]yes" if agree else "[red]NO")
    summary.add_row("rows sampled (every 10 trades)", f"{rec.sampled:,}")
    summary.add_row("rows dropped (no full 1 s horizon / invalid label)", f"{sum(rec.dropped.values()):,}")
    if table.num_rows > 2:
        pressure = table.column("pressure").to_numpy(zero_copy_only=False)
        label = table.column("label_mid_return_1s").to_numpy()
        ok = np.isfinite(pressure)
        ic = float(np.corrcoef(pressure[ok], label[ok])[0, 1]) if ok.sum() > 2 else float("nan")
        summary.add_row("corr(pressure, 1 s mid return)", f"{ic:+.3f}")
    console.print(summary)
    if out is not None:
        tmp = out.with_name(out.name + ".partial")
        pq.write_table(table, tmp)
        tmp.replace(out)  # publish only a complete file
        console.print(f"sampled rows and labels written to {out}")
    if not agree:
        raise HarnessError("the C++ kernel and the reference interpreter disagree")
    return stream


def fit_demo(console: Console, stream: pa.Table, epochs: int, seed: int, params_out: Path | None) -> None:
    """Fit `examples.fit_market` (decayed flow and mid against its EWMA, learnable half-lives) to the 1 s mid
    return on `stream`, chronological 60/20/20 split, and show the out-of-sample metrics and the parity check."""
    from harness import fit

    circuit = examples.fit_market()
    res = fit.fit(
        circuit, stream.to_batches(max_chunksize=250_000), target="pred", label=("mid", 1.0),
        sampler=every_n(10, "trade"), trainer={"optimizer": "adam", "lr": 0.05, "epochs": epochs}, seed=seed,
        progress=console.is_terminal,
    )  # fmt: skip
    m = res.metrics
    summary = Table(title=f"fit of {circuit.name}.pred to the 1 s mid return ({epochs} Adam epochs, seed {seed})")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_row("rows train / val / test", f"{m['rows_train']:,} / {m['rows_val']:,} / {m['rows_test']:,}")
    summary.add_row("best epoch (validation)", str(m["best_epoch"]))
    summary.add_row("test R² / IC", f"{m['test_r2']:+.3f} / {m['test_ic']:+.3f}")
    summary.add_row("fitted half-lives (s)", f"pressure {res.params['hl_press']:.3f}, mid {res.params['hl_mid']:.3f}")
    summary.add_row("kernel vs torch, max abs error", f"{res.parity['max_abs_error']:.1e}")
    summary.add_row(
        "seconds: record / train / parity",
        " / ".join(f"{res.stages[k]:.2f}" for k in ("record_s", "train_s", "parity_s")),
    )
    console.print(summary)
    if params_out is not None:
        res.save_params(params_out)
        console.print(f"fitted parameters written to {params_out}")


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds > 0 and n else "-"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `harness` console script and `python -m harness`: dispatch to the pipeline (Hydra),
    the run tools or the demo."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["demo"]:
        return demo_main(args[1:])
    if args[:1] == ["runs"]:
        from harness.runs.cli import main as runs_main

        return runs_main(args[1:])
    return pipeline_main(args)


def pipeline_main(args: list[str]) -> int:
    """Run the Hydra application on `args`; whatever stops it, every run and sweep it opened is ended (see the
    module doc for the exit status). Hydra's error printer is bypassed (HYDRA_FULL_ERROR) so that a failed sweep
    is ended before its error is reported, in one line."""
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    from harness.pipeline import app, signals
    from harness.runs import sweep

    saved_argv, saved_full = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["harness", *args]
    os.environ["HYDRA_FULL_ERROR"] = "1"
    app.start_clock()
    try:
        with signals.as_interrupts():
            try:
                app.main()
            except BaseException as e:
                swept = _end_sweeps(sweep, e)
                if isinstance(e, KeyboardInterrupt):
                    if not swept:  # a sweep printed its own line
                        print(f"interrupted by {signals.signal_name(e)}: the run ended KILLED", file=sys.stderr)
                    return signals.exit_code(e)
                if saved_full == "1" or isinstance(e, SystemExit):
                    raise
                if isinstance(e, CompactHydraException):  # as Hydra prints it
                    cause = f"\n{e.__cause__}" if isinstance(e.__cause__, OmegaConfBaseException) else ""
                    print(f"{e}{cause}", file=sys.stderr)
                    return 1
                if swept:
                    return 2  # the sweep's summary and its failed jobs are printed
                raise  # not a sweep: an unexpected error keeps its traceback
            _end_sweeps(sweep, None)  # normally ended by Hydra's on_multirun_end already
            return 0
    finally:
        sys.argv = saved_argv
        if saved_full is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full


def _end_sweeps(sweep, error: BaseException | None) -> bool:  # type: ignore[no-untyped-def]
    """End the sweeps still open because of `error`; whether there were any. A second signal during this only
    shortens it (one line)."""
    try:
        return bool(sweep.end_open_sweeps(error))
    except KeyboardInterrupt:
        print("interrupted again while ending the sweep: `harness runs gc` ends what is left", file=sys.stderr)
        return True


def demo_main(argv: list[str]) -> int:
    """`harness demo`: the seed scenarios, the synthetic L2 replay and the fit, with plain flags."""
    parser = argparse.ArgumentParser(prog="harness demo", description="seed scenarios + synthetic L2 replay + fit")
    parser.add_argument("--events", type=int, default=1_000_000, help="synthetic events to replay (default 1000000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="write the sampled, labelled rows to this parquet file")
    parser.add_argument("--draw", type=Path, default=None, help="draw the circuit to this .dot/.svg file")
    parser.add_argument("--fit-epochs", type=int, default=60, help="epochs of the fit stage (0 skips it; default 60)")
    parser.add_argument("--params", type=Path, default=None, help="write the fitted parameters to this JSON file")
    args = parser.parse_args(argv)
    console = Console()
    if args.events < 0:
        parser.error(f"--events must be >= 0, got {args.events}")
    if args.fit_epochs < 0:
        parser.error(f"--fit-epochs must be >= 0, got {args.fit_epochs}")
    try:
        ok = seed_scenarios(console)
        stream = market_demo(console, args.events, args.seed, args.out, args.draw)
        if args.fit_epochs:
            fit_demo(console, stream, args.fit_epochs, args.seed, args.params)
    except HarnessError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
