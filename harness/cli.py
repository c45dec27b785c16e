"""The `harness` command.

harness [OVERRIDES...]          the pipeline (Hydra): compose, compile, replay, fit, evaluate, log to MLflow
harness -m OVERRIDES...         a sweep: one MLflow parent run, a child run per job
harness runs list|show|compare|replay|gc ...   the run tools
harness data import|list|download ...   the market-data catalog, downloads of tardis.dev / Binance files
harness demo [--events N ...]   the demo: seed scenarios, a synthetic L2 replay checked against the
                                reference interpreter, a fit of a learnable market circuit

A first word that is not a verb nor an override (`harness lsit`) is an unknown command: one line naming it,
the closest verbs and the list of them, exit 2. Results (tables, the run summary) go to stdout; progress,
notes, warnings and errors to stderr; a closed stdout (`harness --help | head`) ends the command quietly
(exit 141, or 1 where rich notices it first). Imports happen when a verb needs them, so `harness --help` starts
in about a second and `harness runs ...` in under half a second (no torch, MLflow, pandas or pyarrow.dataset:
see `harness.runs.sqlite_store`; tests/test_cli.py checks).

Hydra's and the job's logs go to stderr too (`conf/hydra/job_logging/harness.yaml`, `hydra_logging/harness.yaml`,
selected unless the command line picks others).

Exit status of the pipeline: 0 done; 1 a config that does not compose (Hydra's message); 2 a run that failed
(one line; its MLflow run is FAILED) or a sweep with failed jobs or a failed launcher (its parent run is ended,
a line per failed job); 128 + N on signal N (Ctrl-C 130, SIGTERM 143, SIGHUP 129: one line, runs ended KILLED).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console

VERBS = {  # verb -> its sub-commands (what `harness VERB` takes first)
    "runs": ("list", "show", "compare", "replay", "gc"),
    "data": ("import", "list", "download"),
    "demo": (),
}
USAGE = """\
harness [KEY=VALUE ...]          the pipeline: compose, compile, replay, fit, evaluate, log (harness --help)
harness -m KEY=A,B ...           a sweep: one parent run, a child run per job
harness runs list|show|compare|replay|gc ...   the run tools (harness runs --help)
harness data import|list|download ...   the market-data catalog, downloads (harness data --help)
harness demo [--events N ...]    seed scenarios, a synthetic replay checked against the reference, a fit"""
EPIPE_EXIT = 141  # 128 + SIGPIPE: stdout was closed by its reader (`harness --help | head`)
HELP_FLAGS = ("--help", "-h")
HYDRA_LOGGING = {"hydra/job_logging": "harness", "hydra/hydra_logging": "harness"}  # conf/hydra/*: logs on stderr
_SCHEMA_OPTION = re.compile(r"^\w+_schema$")  # the structured-config schemas in Hydra's ConfigStore (internal)
REFERENCE_EVENTS = 20_000  # the reference interpreter replays only the first events (it is slow)


def seed_scenarios(console: Console) -> bool:
    """Run the two seed scenarios through the reference interpreter; print and return whether all match."""
    from rich.table import Table

    import harness as hs
    from harness import examples

    table = Table(title="seed scenarios (reference interpreter)")
    for col in ("scenario", "event", "output", "expected", "got", "ok"):
        table.add_column(col)
    ok_all = True

    def row(scenario: str, event: str, output: str, expected: float | None, got: float | None) -> None:
        nonlocal ok_all
        ok = expected == got
        ok_all &= ok
        table.add_row(scenario, event, output, str(expected), str(got), "[green]yes" if ok else "[red]NO")

    k = hs.compile(examples.add_two(), backend="python")
    k.call("ab", t=10, a=1.0, b=2.0)
    row("add two numbers", "ab(t=10, a=1, b=2)", "sum", 3.0, k.value("sum"))

    k = hs.compile(examples.wide_add(), backend="python")
    k.call("ab", t=10, a=1.0, b=2.0)
    row("wide trigger add", "ab(t=10, a=1, b=2)", "out", None, k.value("out"))
    k.call("c", t=20, c=5.0)
    row("wide trigger add", "c(t=20, c=5)", "out", 8.0, k.value("out"))
    k.call("ab", t=30, a=3.0, b=2.0)
    row("wide trigger add", "ab(t=30, a=3, b=2)", "out", 10.0, k.value("out"))
    console.print(table)
    return ok_all


def market_demo(
    console: Console, events: int, seed: int, out: Path | None, draw: Path | None, err: Console | None = None
) -> pa.Table:
    """Replay synthetic L2 book + trade events through `examples.market_pressure`: the generated C++ kernel on
    all of them (sampled every 10 trades, labelled with the 1 s mid return), the reference interpreter on the
    first ones, and check that both agree on every shared row. The table goes to `console`, progress and notes
    to `err` (default: `console`)."""
    import numpy as np
    import pyarrow.parquet as pq
    from rich.table import Table

    import harness as hs
    from harness import examples
    from harness.errors import HarnessError
    from harness.replay import every_n, record

    err = err or console
    circuit = examples.market_pressure()
    if draw is not None:
        circuit.draw(draw)
        err.print(f"circuit drawing written to {draw}")
    with err.status("generating and compiling the C++ kernel (cached after the first run)..."):
        start = time.perf_counter()
        kernel = hs.compile(circuit)
        compile_s = time.perf_counter() - start
    with err.status(f"generating {events:,} synthetic events..."):
        start = time.perf_counter()
        stream = hs.streams.synthetic(events, seed=seed)
        generate_s = time.perf_counter() - start
    start = time.perf_counter()
    rec = record(
        kernel,
        stream.to_batches(max_chunksize=max(1, min(250_000, events))),
        sampler=every_n(10, "trade"),
        labels=[("mid", 1.0, "return")],
        progress=err.is_terminal,
    )
    native_s = time.perf_counter() - start
    n_ref = min(events, REFERENCE_EVENTS)
    start = time.perf_counter()
    ref_rows = hs.compile(circuit, backend="python").replay(stream.slice(0, n_ref))
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
        err.print(f"sampled rows and labels written to {out}")
    if not agree:
        raise HarnessError("the C++ kernel and the reference interpreter disagree")
    return stream


def fit_demo(
    console: Console, stream: pa.Table, epochs: int, seed: int, params_out: Path | None, err: Console | None = None
) -> None:
    """Fit `examples.fit_market` (decayed flow and mid against its EWMA, learnable half-lives) to the 1 s mid
    return on `stream`, chronological 60/20/20 split, and show the out-of-sample metrics and the parity check."""
    from rich.table import Table

    from harness import examples, fit
    from harness.replay import every_n

    err = err or console

    circuit = examples.fit_market()
    res = fit.fit(
        circuit, stream.to_batches(max_chunksize=250_000), target="pred", label=("mid", 1.0),
        sampler=every_n(10, "trade"), trainer={"optimizer": "adam", "lr": 0.05, "epochs": epochs}, seed=seed,
        progress=err.is_terminal,
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
        err.print(f"fitted parameters written to {params_out}")


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds > 0 and n else "-"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `harness` console script and `python -m harness`: dispatch to the pipeline (Hydra),
    the run tools, the data catalog or the demo. A closed stdout ends it quietly (exit 141, no traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        _silence_stdout()
        return EPIPE_EXIT


def _dispatch(args: list[str]) -> int:
    """Run the verb `args` start with, or the pipeline; an unknown first word is one line (exit 2)."""
    verb = args[0] if args else ""
    if verb == "demo":
        return demo_main(args[1:])
    if verb == "runs":
        from harness.runs.cli import main as runs_main

        return runs_main(args[1:])
    if verb == "data":
        from harness.data_cli import main as data_main

        return data_main(args[1:])
    if _looks_like_a_verb(verb):
        print(unknown_command(verb), file=sys.stderr)
        return 2
    return pipeline_main(args)


def _looks_like_a_verb(word: str) -> bool:
    """A bare word (`lsit`, `run`), as opposed to an override (`a.b=1`, `+x=1`, `~k`) or a flag (`-m`)."""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", word))


def unknown_command(word: str) -> str:
    """The message for an unknown first word: its name, the closest commands (difflib) and every verb."""
    commands = {verb: [f"harness {verb}"] for verb in VERBS}
    for verb, subs in VERBS.items():
        for sub in subs:
            commands.setdefault(sub, []).append(f"harness {verb} {sub}")
    close = difflib.get_close_matches(word.lower(), list(commands), n=3, cutoff=0.6)
    suggestions = list(dict.fromkeys(c for name in close for c in commands[name]))
    hint = f" (did you mean {' or '.join(f'`{c}`' for c in suggestions[:3])}?)" if suggestions else ""
    usage = "".join(f"\n  {line}" for line in USAGE.splitlines())
    return f"error: unknown command {word!r}{hint}\ncommands ({', '.join(VERBS)}; else the pipeline):{usage}"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush of a closed pipe does not print a traceback."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def pipeline_main(args: list[str]) -> int:
    """Run the Hydra application on `args`; whatever stops it, every run and sweep it opened is ended (see the
    module doc for the exit status). Hydra's error printer is bypassed (HYDRA_FULL_ERROR) so that a failed sweep
    is ended before its error is reported, in one line. `--help` is Hydra's, with harness's commands on top
    (`conf/hydra/help/harness.yaml`); neither it nor an error lists the internal `*_schema` configs."""
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    from harness.pipeline import app, signals
    from harness.runs import sweep

    if any(a in HELP_FLAGS for a in args):
        return _pipeline_help(args, app)
    saved_argv, saved_full = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = hydra_argv(args, HYDRA_LOGGING)
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
                if isinstance(e, CompactHydraException):  # as Hydra prints it, without the internal schemas
                    cause = f"\n{e.__cause__}" if isinstance(e.__cause__, OmegaConfBaseException) else ""
                    print(without_schemas(f"{e}{cause}"), file=sys.stderr)
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


def _pipeline_help(args: list[str], app) -> int:  # type: ignore[no-untyped-def]
    """Hydra's `--help` for `args` (the config as they compose it), harness's commands on top, schemas hidden."""
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    saved_argv, saved_full, text = sys.argv, os.environ.get("HYDRA_FULL_ERROR"), io.StringIO()
    sys.argv = hydra_argv(args, {"hydra/help": "harness"})
    os.environ["HYDRA_FULL_ERROR"] = "1"  # a config that does not compose is raised here, printed in one piece
    try:
        with contextlib.redirect_stdout(text), _one_repository_group_listing():
            try:
                app.main()
            except SystemExit as e:  # Hydra exits 0 after the help
                if e.code not in (0, None):
                    sys.stdout.flush()
                    raise
    except CompactHydraException as e:
        cause = f"\n{e.__cause__}" if isinstance(e.__cause__, (OmegaConfBaseException, CompactHydraException)) else ""
        print(without_schemas(f"{e}{cause}"), file=sys.stderr)
        return 1
    finally:
        sys.argv = saved_argv
        if saved_full is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full
    sys.stdout.write(without_schemas(text.getvalue()))
    sys.stdout.flush()
    return 0


def hydra_argv(args: list[str], defaults: dict[str, str]) -> list[str]:
    """Hydra's command line for `args`, with `group=option` for each group of `defaults` that `args` do not set
    (harness's log and help configs in `conf/hydra/`), placed with the overrides: argparse takes one run of them,
    and `--info` would take an override after it as its value. Hydra keeps them out of the task's overrides."""
    given = {a.lstrip("+~").split("=", 1)[0] for a in args if not a.startswith("-")}
    added = [f"{group}={option}" for group, option in defaults.items() if group not in given]
    at = next((i for i, a in enumerate(args) if not a.startswith("-") and "=" in a), 0)
    return ["harness", *args[:at], *added, *args[at:]]


@contextlib.contextmanager
def _one_repository_group_listing():  # type: ignore[no-untyped-def]
    """Hydra's help lists the config groups by deep-copying its whole config repository once per group and
    option (about 80 copies: 0.7 s of `harness --help`); for the duration of the help, list them from the one
    repository instead (what Hydra's own listing reads: its sources without the primary config's search path).
    Hydra's own groups are not listed: the help template does not show them (`--hydra-help` does, unchanged)."""
    from hydra._internal.hydra import Hydra
    from hydra.core.object_type import ObjectType

    original = Hydra.format_config_groups

    def format_config_groups(self, predicate, compact: bool = True) -> str:  # type: ignore[no-untyped-def]
        repo = _with_user_conf(self.config_loader)
        if predicate("hydra"):
            return ""  # Hydra's own groups: harness's help template does not show them
        if repo is None or not compact:
            return original(self, predicate, compact)
        return "".join(f"{g}: {', '.join(opts)}\n" for g, opts in sorted(_groups(repo, ObjectType, "")) if predicate(g))

    Hydra.format_config_groups = format_config_groups  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.format_config_groups = original  # type: ignore[method-assign]


def _with_user_conf(loader):  # type: ignore[no-untyped-def]
    """The loader's config repository plus the user's config directories (`harness.pipeline.user_conf`: Hydra
    adds a primary config's `hydra.searchpath` only to the repository it composes with, so its help would not
    list their options); None when the loader has no repository."""
    import copy

    from hydra._internal.config_repository import ConfigRepository

    from harness.pipeline import user_conf

    repo, extra = getattr(loader, "repository", None), user_conf.search_path()
    if repo is None or not extra or not hasattr(loader, "config_search_path"):
        return repo
    path = copy.deepcopy(loader.config_search_path)
    for entry in extra:
        path.append(provider="harness user conf", path=entry)
    return ConfigRepository(config_search_path=path)


def _groups(repo, object_type, parent: str) -> list[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    """(group, its options) for every group under `parent` that has options, as Hydra lists them; not Hydra's
    own groups (`hydra/...`)."""
    out = []
    for name in repo.get_group_options(parent, object_type.GROUP):
        group = f"{parent}/{name}" if parent else name
        if group == "hydra":
            continue
        options = repo.get_group_options(group, object_type.CONFIG)
        if options:
            out.append((group, sorted(options)))
        out += _groups(repo, object_type, group)
    return out


def without_schemas(text: str) -> str:
    """Hydra's help or error text without the structured-config schemas (`fit_market_schema`, ...): they are
    how harness checks configs, not options to pick. Drops them from `group: a, b_schema, c` lines and drops
    lines that are one of them (the option lists of an error)."""
    out = []
    for line in text.splitlines(keepends=True):
        body = line.strip()
        if _SCHEMA_OPTION.match(body):
            continue
        head, sep, options = line.partition(": ")
        if sep and "," in options and re.fullmatch(r"[\w/]+", head):
            kept = [o for o in options.rstrip("\n").split(", ") if not _SCHEMA_OPTION.match(o.strip())]
            line = f"{head}: {', '.join(kept)}" + ("\n" if line.endswith("\n") else "")
        out.append(line)
    return "".join(out)


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
    from rich.console import Console

    from harness.errors import HarnessError

    console, err = Console(), Console(stderr=True)
    if args.events < 0:
        parser.error(f"--events must be >= 0, got {args.events}")
    if args.fit_epochs < 0:
        parser.error(f"--fit-epochs must be >= 0, got {args.fit_epochs}")
    try:
        ok = seed_scenarios(console)
        stream = market_demo(console, args.events, args.seed, args.out, args.draw, err)
        if args.fit_epochs:
            fit_demo(console, stream, args.fit_epochs, args.seed, args.params, err)
    except HarnessError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
