"""`harness runs`: look at the runs in the MLflow store without the MLflow UI.

`list` the recent runs (sweep children under their parent), `show` one run (tags, error, params by config
section, final metrics, artifacts, children), `compare` runs side by side (the params that differ, the metrics,
the identity tags that say whether two runs used the same config, kernel and data). `replay` is handed to
`harness.runs.replay`. `gc` ends RUNNING runs that are dead (their process is gone on this host, or their
heartbeat is older than their timeout) as KILLED with the reason. A run is named by its id or a unique prefix
of it (`harness.track.query.resolve_run`, reused by replay).

A sqlite store that does not exist is an error, not created. Looking changes nothing except the same cheap
check `gc` makes: dead RUNNING runs of the experiments looked at are ended KILLED (a note on stderr says so).
Bad input (unknown run or experiment, an ambiguous prefix, an unreadable store) prints one line `error: ...` to
stderr and returns 2. Tables (results) go to stdout, notes and errors to stderr.

A local sqlite store is read with sqlite3 (`harness.runs.sqlite_store`): the commands start in well under a
second instead of the ~2 s MLflow takes to import and open a store. MLflow is imported only to write (ending dead
runs) and for other stores (a server, PostgreSQL), artifacts that are not in a local folder, and replays.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.errors import HarnessError
from harness.runs import compare_view, tables
from harness.runs.sqlite_store import SqliteRuns
from harness.track import store
from harness.track.query import PARENT_TAG, RunsError, children_of, experiment_ids, open_client, resolve_run

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    Client = SqliteRuns | MlflowClient  # what the commands read the store with

DEFAULT_EXPERIMENT = "harness"
KEY_METRICS = {  # table column -> the metrics it shows, first logged wins
    "test_mse": ("test_mse",),
    "test_r2": ("test_r2",),
    "test_ic": ("test_ic",),
    "val_loss": ("fit_val_loss", "val_loss"),  # the best epoch's (val_loss is also the per-epoch history)
}
METRIC_ORDER = ("test_mse", "test_r2", "test_ic", "fit_val_loss", "fit_train_loss", "val_loss", "train_loss")
PARAM_SECTIONS = ("circuit", "stream", "trainer", "task", "tracking")
IDENTITY_TAGS = {  # what decides whether two runs computed the same thing
    "config hash": "harness.config_hash",
    "kernel hash": "harness.kernel_hash",
    "data digest": "harness.data_digest",
    "prediction digest": "harness.prediction_digest",
    "record digest": "harness.record_digest",
}
STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
STATUS_STYLE = {"FINISHED": "green", "FAILED": "red", "RUNNING": "yellow", "KILLED": "magenta"}
SHORT = 8  # characters of a run id in tables
LIST_FIELDS = (  # the fields of `runs list --format json|csv`
    "run_id", "name", "status", "start", "end", "duration_s", *KEY_METRICS, "parent_run_id", "depth", "sweep_parent",
    "experiment",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- commands


def list_command(client: Client, args: argparse.Namespace, console: Console) -> int:
    """The newest runs, each sweep child indented under its parent when both are shown: a table that fits the
    terminal (80 columns when piped; `harness.runs.tables`), or every field as JSON or CSV (`--format`)."""
    ids = experiment_ids(client, None if args.all_experiments else [args.experiment])
    status = f"attributes.status = '{args.status}'" if args.status else ""
    runs = client.search_runs(
        list(ids), filter_string=status, order_by=["attributes.start_time DESC"], max_results=args.limit
    )
    tree = _tree(runs)
    if args.format != "table":
        tables.write_records([_list_record(run, depth, ids) for run, depth in tree], args.format, LIST_FIELDS)
        return 0
    where = "all experiments" if args.all_experiments else f"experiment {args.experiment!r}"
    if not runs:
        console.print(f"no {args.status + ' ' if args.status else ''}runs in {where}")
        return 0
    title = f"{len(runs)} newest {args.status + ' ' if args.status else ''}runs in {where}"
    console.print(tables.fitted_table(title, _list_columns(tree, ids, args.all_experiments), console.width))
    return 0


def _list_columns(tree: list[tuple[Run, int]], ids: dict[str, str], experiments: bool) -> list[tables.Column]:
    """The columns of `runs list`, most useful first to stay: id, name, status, R², IC, val_loss, duration,
    start (short form: month-day hour:minute), experiment, test_mse, parent."""
    runs = [run for run, _ in tree]
    names = [Text("  " * (depth - 1) + "└ " if depth else "") + Text(run.info.run_name or "") for run, depth in tree]
    metric = {key: [_key_metric(run, key) for run in runs] for key in KEY_METRICS}
    columns = [
        tables.Column("run", [run.info.run_id[:SHORT] for run in runs]),
        tables.Column("name", names, flex=True),
        tables.Column("status", [_status(run) for run in runs]),
        tables.Column("start", [_time(r.info.start_time) for r in runs], drop=4,
                      short=[_time(r.info.start_time, "%m-%d %H:%M") for r in runs]),
        tables.Column("duration", [_duration(run) for run in runs], drop=3, justify="right"),
        tables.Column("test_mse", metric["test_mse"], drop=6, justify="right"),
        tables.Column("test_r2", metric["test_r2"], drop=1, justify="right"),
        tables.Column("test_ic", metric["test_ic"], drop=1, justify="right"),
        tables.Column("val_loss", metric["val_loss"], drop=2, justify="right"),
        tables.Column("parent", [_parent_marker(run) for run in runs], drop=7),
    ]  # fmt: skip
    if experiments:
        columns.append(tables.Column("experiment", [ids.get(r.info.experiment_id, "") for r in runs], drop=5))
    return columns


def _list_record(run: Run, depth: int, ids: dict[str, str]) -> dict[str, object]:
    """One run of `runs list --format json|csv`: full id, times in ISO 8601 (UTC), raw metric values."""
    start, end = run.info.start_time, run.info.end_time
    values = {key: next((run.data.metrics[k] for k in names if k in run.data.metrics), None)
              for key, names in KEY_METRICS.items()}  # fmt: skip
    return {
        "run_id": run.info.run_id, "name": run.info.run_name or "", "status": run.info.status,
        "start": _iso(start), "end": _iso(end), "duration_s": (end - start) / 1000 if start and end else None,
        **values, "parent_run_id": run.data.tags.get(PARENT_TAG), "depth": depth,
        "sweep_parent": run.data.tags.get("harness.sweep") == "parent",
        "experiment": ids.get(run.info.experiment_id, run.info.experiment_id),
    }  # fmt: skip


def show_command(client: Client, args: argparse.Namespace, console: Console) -> int:
    """Everything about one run: summary, harness tags, error, params by section, metrics, artifacts, children."""
    run = _resolve(client, args.run, _experiment_names(client, args))
    info, data = run.info, run.data
    summary = Table(title=f"run {info.run_id}", show_header=False)
    summary.add_column("field")
    summary.add_column("value")
    summary.add_row("name", Text(info.run_name or ""))
    summary.add_row("experiment", Text(_experiment_name(client, info.experiment_id)))
    summary.add_row("status", _status(run))
    summary.add_row("start", _time(info.start_time))
    summary.add_row("end", _time(info.end_time))
    summary.add_row("duration", _duration(run))
    if PARENT_TAG in data.tags:
        summary.add_row("parent", Text(data.tags[PARENT_TAG]))
    console.print(summary)
    if "harness.error" in data.tags:
        console.print(Text("error: ", style="bold red") + Text(data.tags["harness.error"]))

    tags = {k: v for k, v in sorted(data.tags.items()) if k.startswith("harness.") and k != "harness.error"}
    if tags:
        console.print(_key_value_table("tags", tags.items()))

    if data.params:
        params = Table(title="params")
        params.add_column("section")
        params.add_column("param")
        params.add_column("value", overflow="fold")
        for section, items in _param_sections(data.params).items():
            for i, (key, value) in enumerate(items):
                params.add_row(section if i == 0 else "", Text(key), Text(value), end_section=i == len(items) - 1)
        console.print(params)

    if data.metrics:
        metrics = [(k, _num(data.metrics[k], digits=6)) for k in _metric_order(data.metrics)]
        console.print(_key_value_table("final metrics", metrics, justify="right"))

    _print_artifacts(client, run, console)

    children = children_of(client, run)
    if children:
        table = Table(title=f"children ({len(children)})")
        for col in ("run", "name", "status", "duration", *KEY_METRICS):
            table.add_column(col, justify="right" if col in KEY_METRICS else "left")
        for child in children:
            cells = [Text(child.info.run_id[:SHORT]), Text(child.info.run_name or ""), _status(child)]
            cells += [_duration(child), *(_key_metric(child, k) for k in KEY_METRICS)]
            table.add_row(*cells)
        console.print(table)
    return 0


def compare_command(client: Client, args: argparse.Namespace, console: Console) -> int:
    """Runs side by side: identity tags (marked where they differ), the params that differ (all with --all),
    and the final metrics; tables split by runs to fit the width, or `--format json|csv` records; and a
    comparison plot (`--plot PATH`, default under outputs/compare/; `--no-plot`)."""
    if len(args.runs) < 2:
        raise RunsError("compare needs at least two runs")
    names = _experiment_names(client, args)
    runs = [_resolve(client, r, names) for r in args.runs]
    keys = sorted({k for r in runs for k in r.data.params}, key=_param_sort_key)
    differ = [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]
    metric_keys = _metric_order({k for r in runs for k in r.data.metrics})
    if not args.no_plot:
        labels = [f"{r.info.run_id[:SHORT]} {r.info.run_name or ''}".strip() for r in runs]
        path = Path(args.plot) if args.plot else compare_view.default_plot_path([r.info.run_id for r in runs])
        compare_view.plot(runs, labels, path)
        Console(stderr=True).print(f"plot: {path}", highlight=False, soft_wrap=True)
    if args.format != "table":
        shown = keys if args.all else differ
        rows = compare_view.records(runs, IDENTITY_TAGS, shown, metric_keys)
        tables.write_records(rows, args.format, ["section", "key", *(r.info.run_id for r in runs)])
        return 0
    headers = [f"{r.info.run_id[:SHORT]}\n{r.info.run_name or ''}" for r in runs]
    identity = [
        (Text(label), [Text(v[:12]) if v else Text("-", style="dim") for v in values], _marker(values))
        for label, values in ((lb, [r.data.tags.get(tag) for r in runs]) for lb, tag in IDENTITY_TAGS.items())
    ]
    _side_by_side(console, "identity", "tag", headers, identity, marker=True)
    shown = keys if args.all else differ
    if not shown:
        console.print(f"params: all {len(keys)} equal")
    else:
        title = f"params ({len(differ)} of {len(keys)} differ)" if args.all else f"params that differ ({len(differ)})"
        params = []
        for key in shown:
            values = [r.data.params.get(key) for r in runs]
            cells = [Text(v) if v is not None else Text("-", style="dim") for v in values]
            params.append((Text(key), cells, _marker(values)))
        _side_by_side(console, title, "param", headers, params, marker=bool(args.all))
    if metric_keys:
        rows = [(Text(k), [Text(_num(r.data.metrics.get(k), digits=6)) for r in runs], None) for k in metric_keys]
        _side_by_side(console, "final metrics", "metric", headers, rows, justify="right")
    return 0


def _side_by_side(
    console: Console,
    title: str,
    key_header: str,
    headers: list[str],
    rows: list[tuple[Text, list[Text], Text | None]],
    *,
    marker: bool = False,
    justify: Literal["left", "right"] = "left",
) -> None:
    """A table with a key column and one column per run, split into several tables of consecutive runs when
    they do not fit the console (the key column cut with an ellipsis); the same/differs marker column last."""
    key_width = compare_view.cell_width([key_header, *(k for k, _, _ in rows)])
    widths = [compare_view.cell_width([h, *(cells[i] for _, cells, _ in rows)]) for i, h in enumerate(headers)]
    spare = console.width - (len("differs") + compare_view.BORDER if marker else 0)
    groups = compare_view.run_chunks(key_width, widths, spare)
    for g in groups:
        part = f" (runs {g.start + 1}-{g.stop} of {len(headers)})" if len(groups) > 1 else ""
        table = Table(title=title + part)
        table.add_column(key_header, max_width=compare_view.KEY_COLUMN_MAX, no_wrap=True, overflow="ellipsis")
        for i in g:
            table.add_column(headers[i], justify=justify, no_wrap=True, overflow="ellipsis")
        if marker:
            table.add_column("")
        for key, cells, mark in rows:
            table.add_row(key, *(cells[i] for i in g), *([mark] if marker and mark is not None else []))
        console.print(table)


def gc_command(client: Client, args: argparse.Namespace, console: Console) -> int:
    """End the dead RUNNING runs KILLED (process gone on this host, or heartbeat older than the timeout) and show
    every RUNNING run with its verdict; `--dry-run` only shows."""
    ids = experiment_ids(client, None if args.all_experiments else [args.experiment])
    where = "all experiments" if args.all_experiments else f"experiment {args.experiment!r}"
    found = _reap(client, list(ids), args.heartbeat_timeout, args.dry_run)
    if not found:
        console.print(f"no RUNNING runs in {where}")
        return 0
    now = time.time()
    verb = "would end" if args.dry_run else "ended"
    table = Table(title=f"{len(found)} RUNNING runs in {where}")
    for col in ("run", "name", "host", "pid", "heartbeat", "stage", "verdict"):
        table.add_column(col, overflow="fold" if col == "verdict" else "ellipsis")
    for run, reason in found:
        tags = run.data.tags
        beat = tags.get(store.HEARTBEAT_TAG)
        age = f"{now - float(beat):.0f} s ago" if beat and _is_number(beat) else "-"
        verdict = Text(f"{verb} KILLED: {reason}", style="magenta") if reason else Text("alive", style="green")
        cells = [run.info.run_id[:SHORT], run.info.run_name or "", tags.get(store.HOST_TAG, "-")]
        cells += [tags.get(store.PID_TAG, "-"), age, tags.get(store.STAGE_TAG, "-")]
        table.add_row(*(Text(c) for c in cells), verdict)
    console.print(table)
    dead = sum(reason is not None for _, reason in found)
    console.print(f"{dead} of {len(found)} RUNNING runs {verb} KILLED")
    return 0


def check_dangling(uri: str, client: Client, args: argparse.Namespace) -> None:
    """The cheap check when a command opens the store: end the dead RUNNING runs of the experiments it looks at
    (a note on stderr per run); never fails the command."""
    try:
        ids = experiment_ids(client, None if getattr(args, "all_experiments", False) else [args.experiment])
        if isinstance(client, SqliteRuns) and not any(
            reason for _, reason in store.reap(client, list(ids), dry_run=True)
        ):
            return  # read without MLflow: nothing to end, so MLflow is not imported
    except Exception:
        return  # the command itself reports an unknown experiment or an unreadable store
    for run, reason in store.reap_quietly(uri, list(ids), by=f"harness runs {args.command}"):
        print(f"note: run {run.info.run_id} was still RUNNING: ended KILLED ({reason})", file=sys.stderr)


def replay_command(args: argparse.Namespace) -> int:
    """Hand `harness runs replay RUN` to harness.runs.replay (imported only when asked for)."""
    try:
        from harness.runs.replay import main as replay_main
    except ModuleNotFoundError as e:
        if e.name != "harness.runs.replay":
            raise
        raise RunsError("replay is not available: the module harness.runs.replay is missing") from None
    try:
        return replay_main(args.run, tracking_uri=args.tracking_uri, experiment=args.experiment)
    except RunsError:
        raise
    except HarnessError as e:  # e.g. the logged circuit's module is not importable here: one line, not a traceback
        raise RunsError(f"cannot replay run {args.run}: {e}") from None


# ---------------------------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The `harness runs` argument parser: list, show, compare, replay, gc."""
    parser = argparse.ArgumentParser(prog="harness runs", description="Look at the runs in the MLflow store.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,show,compare,replay,gc}")

    def common(p: argparse.ArgumentParser, many: bool = True) -> None:
        p.add_argument(
            "--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)"
        )
        if many:
            group = p.add_mutually_exclusive_group()
            group.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment name (default harness)")
            group.add_argument("--all-experiments", action="store_true", help="look in every experiment")
        else:
            p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment name (default harness)")

    p = sub.add_parser("list", help="the newest runs, sweep children under their parent")
    common(p)
    p.add_argument("--limit", type=_positive, default=20, help="how many runs (default 20)")
    p.add_argument("--status", type=str.upper, choices=STATUSES, default=None, help="only runs with this status")
    p.add_argument(
        "--format", choices=tables.FORMATS, default="table", help="table (fits the terminal), json or csv (every field)"
    )
    p = sub.add_parser("show", help="one run: tags, error, params, metrics, artifacts, children")
    common(p)
    p.add_argument("run", help="run id or a unique prefix of it")
    p = sub.add_parser("compare", help="runs side by side: identity tags, differing params, metrics")
    common(p)
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run ids or unique prefixes")
    p.add_argument("--all", action="store_true", help="show every param, not only those that differ")
    p.add_argument("--format", choices=tables.FORMATS, default="table", help="table (fits the terminal), json or csv")
    p.add_argument(
        "--plot", metavar="PNG", default=None,
        help="where to write the comparison plot (default outputs/compare/compare-<ids>.png)",
    )  # fmt: skip
    p.add_argument("--no-plot", action="store_true", help="do not write the comparison plot")
    p = sub.add_parser("replay", help="rerun a logged run and check it reproduces (harness.runs.replay)")
    common(p, many=False)
    p.add_argument("run", help="run id or a unique prefix of it")
    p = sub.add_parser("gc", help="end RUNNING runs whose process is gone or whose heartbeat is too old as KILLED")
    common(p)
    p.add_argument(
        "--heartbeat-timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help="a run silent for S seconds is dead (default: the tracking.heartbeat_timeout_s each run recorded)",
    )
    p.add_argument("--dry-run", action="store_true", help="show the verdicts, end nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `harness runs ...`; 0 on success, 2 on bad arguments or on a run/experiment/store error."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or bad arguments (2, message already printed)
        return e.code if isinstance(e.code, int) else 2
    args.tracking_uri = store.tracking_uri(args.tracking_uri)
    try:
        if args.command == "replay":
            return replay_command(args)
        client = open_store(args.tracking_uri)
        if args.command != "gc":
            check_dangling(args.tracking_uri, client, args)
        command = {"list": list_command, "show": show_command, "compare": compare_command, "gc": gc_command}
        return command[args.command](client, args, Console())
    except RunsError as e:
        return _fail(str(e))
    except (sqlite3.Error, OSError) as e:
        return _fail(f"cannot read the MLflow store {args.tracking_uri}: {_first_line(e)}")
    except Exception as e:
        if not _is_mlflow_error(e):
            raise
        return _fail(f"cannot read the MLflow store {args.tracking_uri}: {_first_line(e)}")


def open_store(uri: str) -> Client:
    """A reader of the store: sqlite3 on a local sqlite file (no MLflow import), else MLflow's client. A sqlite
    store that does not exist is an error (looking at runs must not create one)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        if str(path) != ":memory:" and not path.is_file():
            raise RunsError(f"no MLflow store at {path} (nothing tracked there yet?); pass --tracking-uri")
    return SqliteRuns.open(uri) or open_client(uri)


def _resolve(client: Client, run: str, experiments: list[str]) -> Run:
    """The run named by an id or a unique prefix (`harness.track.query.resolve_run`), on either reader."""
    if isinstance(client, SqliteRuns):
        return client.resolve_run(run, experiments)  # type: ignore[return-value]
    return resolve_run(client, run, experiments)


def _reap(client: Client, ids: list[str], timeout_s: float | None, dry_run: bool) -> list:  # type: ignore[type-arg]
    """`store.reap` for gc: the verdicts read without MLflow when nothing has to be ended (or on a dry run)."""
    by = "harness runs gc"
    if isinstance(client, SqliteRuns):
        found = store.reap(client, ids, timeout_s=timeout_s, dry_run=True, by=by)
        if dry_run or not any(reason for _, reason in found):
            return found
        client = client.mlflow_client()
    return store.reap(client, ids, timeout_s=timeout_s, dry_run=dry_run, by=by)


def _is_mlflow_error(e: BaseException) -> bool:
    """Whether `e` is an MlflowException (without importing MLflow: if it is not loaded, `e` cannot be one)."""
    module = sys.modules.get("mlflow.exceptions")
    return module is not None and isinstance(e, module.MlflowException)


# ---------------------------------------------------------------------------------------------- formatting


def _fail(message: str) -> int:
    print(f"error: {_first_line(message)}", file=sys.stderr)
    return 2


def _first_line(e: object) -> str:
    text = getattr(e, "message", None) or str(e)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _experiment_names(client: Client, args: argparse.Namespace) -> list[str]:
    if args.all_experiments:
        return list(experiment_ids(client, None).values())
    return [args.experiment]


def _experiment_name(client: Client, experiment_id: str) -> str:
    return client.get_experiment(experiment_id).name


def _tree(runs: list[Run]) -> list[tuple[Run, int]]:
    """Runs in order with their depth: each run followed by its children (oldest first) that are in `runs`;
    a child whose parent is not in `runs` stands at the top level."""
    ids = {r.info.run_id for r in runs}
    children: dict[str, list[Run]] = {}
    top: list[Run] = []
    for r in runs:
        parent = r.data.tags.get(PARENT_TAG)
        if parent in ids and parent != r.info.run_id:
            children.setdefault(parent, []).append(r)
        else:
            top.append(r)
    out: list[tuple[Run, int]] = []

    def walk(run: Run, depth: int) -> None:
        out.append((run, depth))
        for child in sorted(children.get(run.info.run_id, []), key=lambda c: c.info.start_time or 0):
            walk(child, depth + 1)

    for r in top:
        walk(r, 0)
    return out


def _parent_marker(run: Run) -> Text:
    if PARENT_TAG in run.data.tags:
        return Text(f"↳ {run.data.tags[PARENT_TAG][:SHORT]}")
    if run.data.tags.get("harness.sweep") == "parent":
        return Text("sweep", style="bold")
    return Text("")


def _status(run: Run) -> Text:
    return Text(run.info.status, style=STATUS_STYLE.get(run.info.status, ""))


def _time(ms: int | None, form: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime.fromtimestamp(ms / 1000).strftime(form) if ms else "-"


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") if ms else None


def _duration(run: Run) -> str:
    start, end = run.info.start_time, run.info.end_time
    if not start or not end:
        return "running" if run.info.status == "RUNNING" else "-"
    s = max(0.0, (end - start) / 1000)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def _key_metric(run: Run, column: str) -> str:
    """The value of a KEY_METRICS column: the first of its metrics that the run logged."""
    values = (run.data.metrics.get(k) for k in KEY_METRICS[column])
    return _num(next((v for v in values if v is not None), None))


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def _marker(values: list[str | None]) -> Text:
    return Text("differs", style="bold red") if len(set(values)) > 1 else Text("same", style="dim")


def _key_value_table(title: str, items: Iterable[tuple[str, str]], justify: Literal["left", "right"] = "left") -> Table:
    table = Table(title=title)
    table.add_column("key")
    table.add_column("value", justify=justify, overflow="fold")
    for key, value in items:
        table.add_row(Text(key), Text(value))
    return table


def _param_sections(params: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """Params grouped by config section (circuit, stream, trainer, task, tracking, then any other), each sorted,
    keys without the section prefix."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key in sorted(params, key=_param_sort_key):
        section, _, rest = key.partition(".")
        if not rest:
            section, rest = "other", key
        groups.setdefault(section, []).append((rest, params[key]))
    return groups


def _param_sort_key(key: str) -> tuple[int, str]:
    section = key.partition(".")[0]
    return (PARAM_SECTIONS.index(section) if section in PARAM_SECTIONS else len(PARAM_SECTIONS), key)


def _metric_order(metrics: Iterable[str]) -> list[str]:
    """Key metrics first, then the others by name, stage timings last."""

    def key(name: str) -> tuple[int, int, str]:
        if name in METRIC_ORDER:
            return (0, METRIC_ORDER.index(name), name)
        return (2 if name.startswith("stage/") else 1, 0, name)

    return sorted(metrics, key=key)


def _print_artifacts(client: Client, run: Run, console: Console) -> None:
    """Every artifact file of the run with its size (a store whose artifacts cannot be listed is noted)."""
    files: list[tuple[str, int | None]] = []

    def walk(path: str | None) -> None:
        for f in client.list_artifacts(run.info.run_id, path):
            if f.is_dir:
                walk(f.path)
            else:
                files.append((f.path, f.file_size))

    try:
        walk(None)
    except Exception as e:
        if not isinstance(e, OSError | RunsError) and not _is_mlflow_error(e):
            raise
        console.print(f"artifacts: cannot be listed ({_first_line(e)})")
        return
    if not files:
        console.print("artifacts: none")
        return
    total = sum(size or 0 for _, size in files)
    table = Table(title=f"artifacts ({len(files)} files, {_size(total)})")
    table.add_column("path")
    table.add_column("size", justify="right")
    for path, size in files:
        table.add_row(Text(path), _size(size))
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
