"""`harness data`: the market-data catalog from the command line (`harness.streams.catalog`, `hs.data`).

    harness data import --root DIR [--market NAME] [--reader tardis|binance --role ROLE] [--clock local|exchange]
                        FILES...        import tardis.dev / Binance files (one at a time, a progress bar over them)
    harness data list --root DIR [--market NAME]      the partitions: market, date, rows, time span, digest, sources
    harness data download tardis --exchange EX --data-type T [--data-type T2] --symbol S --from DAY [--to DAY]
                        [--dir data] [--base-url URL] [--api-key KEY]     tardis.dev CSV datasets
    harness data download binance --market spot|futures-um --kind trades|aggTrades|bookTicker --symbol S --from DAY
                        [--to DAY] [--dir data] [--base-url URL]          data.binance.vision dumps, sha256-checked

Bad input (an unknown file name pattern, a bad market name, a file breaking its format, no catalog) prints one line
`error: ...` to stderr and returns 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from harness.errors import HarnessError
from harness.streams import catalog
from harness.streams import download as dl
from harness.streams.csvread import ON_BAD_ROWS
from harness.streams.paths import expand


def _parser() -> argparse.ArgumentParser:
    """The `harness data` argument parser: `import` and `list`."""
    parser = argparse.ArgumentParser(prog="harness data", description="the market-data catalog (hive Parquet)")
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import tardis.dev / Binance files into a catalog")
    imp.add_argument("--root", type=Path, required=True, help="the catalog's directory (created when missing)")
    imp.add_argument("--market", default=None, help="market name (default: from each file's name, else 'default')")
    imp.add_argument("--reader", choices=sorted(catalog.READERS), default=None, help="reader (default: from names)")
    roles = sorted({r for rs in catalog.READERS.values() for r in rs})
    imp.add_argument("--role", choices=roles, default=None, help="the files' role for the reader (default: names)")
    imp.add_argument("--clock", choices=("local", "exchange"), default="local", help="tardis event clock")
    imp.add_argument("--on-bad-rows", choices=ON_BAD_ROWS, default="error", help="bad rows: fail or skip them")
    imp.add_argument("files", nargs="+", type=Path, help="the files to import, in order (a quoted glob: sorted)")
    lst = sub.add_parser("list", help="the partitions of a catalog")
    lst.add_argument("--root", type=Path, required=True, help="the catalog's directory")
    lst.add_argument("--market", action="append", default=None, help="only this market (repeatable)")
    _download_parser(sub.add_parser("download", help="fetch tardis.dev / data.binance.vision files (resumable)"))
    return parser


def _download_parser(down: argparse.ArgumentParser) -> None:
    """`harness data download tardis|binance`: what to fetch, from when to when, where to."""
    sources = down.add_subparsers(dest="source", required=True)
    tardis = sources.add_parser("tardis", help="tardis.dev CSV datasets (the 1st of each month is free without a key)")
    tardis.add_argument("--exchange", required=True, help="tardis exchange id, e.g. binance-futures, deribit")
    tardis.add_argument(
        "--data-type", action="append", required=True, help="e.g. incremental_book_L2, trades (repeatable)"
    )
    binance = sources.add_parser("binance", help="data.binance.vision daily dumps, checked against their .CHECKSUM")
    binance.add_argument("--market", choices=sorted(dl.BINANCE_MARKETS), required=True, help="spot or USD-M futures")
    binance.add_argument(
        "--kind", action="append", choices=dl.BINANCE_KINDS, required=True, help="dump type (repeatable)"
    )
    for p, url in ((tardis, dl.TARDIS_URL), (binance, dl.BINANCE_URL)):
        p.add_argument("--symbol", action="append", required=True, help="e.g. BTCUSDT (repeatable)")
        p.add_argument("--from", dest="start", metavar="DAY", required=True, help="first day, YYYY-MM-DD (UTC)")
        p.add_argument("--to", dest="end", metavar="DAY", help="last day, inclusive (default: --from)")
        p.add_argument("--dir", type=Path, default=None, help="the data folder (default: $HARNESS_DATA_DIR or ./data)")
        p.add_argument("--base-url", default=url, help=f"the site (default {url})")
        p.add_argument("--timeout", type=float, default=dl.TIMEOUT, help="seconds to wait for the server")
    tardis.add_argument("--api-key", default=None, help="tardis.dev API key (default: $TARDIS_API_KEY)")


def import_command(args: argparse.Namespace, console: Console) -> int:
    """Import the files (paths or quoted globs, expanded sorted) one by one under a progress bar; a line saying
    what was imported and skipped."""
    files = expand(args.files)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise HarnessError(f"no such file: {', '.join(missing)}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("importing", total=len(files))

        def advance(path: Path, status: str) -> None:
            bar.update(task, advance=1, description=f"{status} {path.name}")

        done = catalog.import_files(
            args.root, files, market=args.market, reader=args.reader, role=args.role, clock=args.clock,
            on_bad_rows=args.on_bad_rows, progress=advance,
        )  # fmt: skip
    partitions = ", ".join(f"{m}/{d}" for m, d in done.dates) or "none"
    console.print(
        f"{args.root}: imported {len(done.imported)} file(s), skipped {len(done.skipped)} already imported; "
        f"partitions written: {partitions}",
        soft_wrap=True,
    )
    return 0


def list_command(args: argparse.Namespace, console: Console) -> int:
    """A table of the catalog's partitions."""
    parts = catalog.partitions(args.root, args.market)
    if not parts:
        console.print(f"{args.root}: the catalog holds no partitions")
        return 0
    table = Table(title=f"{len(parts)} partitions in {args.root}", box=box.SIMPLE_HEAD)
    for name in ("market", "date", "rows", "span (UTC)", "digest", "files"):
        justify = "right" if name in ("rows", "files") else "left"
        table.add_column(name, justify=justify, overflow="fold", no_wrap=name != "market")  # type: ignore[arg-type]
    for p in parts:
        table.add_row(p.market, p.date, f"{p.rows:,}", p.span, p.digest[:8], str(len(p.sources)))
    console.print(table)
    console.print(f"{sum(p.rows for p in parts):,} events")
    return 0


class _Lines(dl.Progress):
    """One line per file (output that is not a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def done(self, fetched: dl.Fetched) -> None:
        self.console.print(_outcome(fetched), soft_wrap=True, highlight=False)


class _Bars(dl.Progress):
    """A bar (bytes, speed) per file on a terminal."""

    def __init__(self, bars: Progress) -> None:
        self.bars, self.task = bars, None

    def start(self, remote: dl.Remote, total: int | None, have: int) -> None:
        self.task = self.bars.add_task(remote.dest.name, total=total, completed=have)

    def advance(self, n: int) -> None:
        self.bars.update(self.task, advance=n)  # type: ignore[arg-type]

    def done(self, fetched: dl.Fetched) -> None:
        if self.task is None:
            self.bars.console.print(_outcome(fetched), soft_wrap=True, highlight=False)
        else:
            self.bars.update(self.task, total=fetched.size, completed=fetched.size)
        self.task = None


def _outcome(f: dl.Fetched) -> str:
    """What happened to one file, in a line."""
    checked = ", sha256 verified" if f.sha256 else ""
    got = f", {f.received:,} bytes received" if f.status == "resumed" else ""
    return f"{f.status}: {f.remote.dest} ({f.size:,} bytes{got}{checked})"


def _remotes(args: argparse.Namespace) -> list[dl.Remote]:
    """The files the command line asks for."""
    root = args.dir or Path(os.environ.get("HARNESS_DATA_DIR") or "data")
    if args.source == "tardis":
        key = args.api_key or os.environ.get("TARDIS_API_KEY") or None
        return dl.tardis_files(
            args.exchange, args.data_type, args.symbol, args.start, args.end, root, args.base_url, key
        )
    return dl.binance_files(args.market, args.kind, args.symbol, args.start, args.end, root, args.base_url)


def download_command(args: argparse.Namespace, console: Console, err: Console) -> int:
    """Fetch the files (bars on a terminal, a line per file otherwise), then say where they are and how to read
    them; Ctrl-C keeps the partial file for the next run."""
    remotes = _remotes(args)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        if err.is_terminal:
            with Progress(*columns, console=err, transient=False) as bars:
                done = dl.download(remotes, progress=_Bars(bars), timeout=args.timeout)
        else:
            done = dl.download(remotes, progress=_Lines(err), timeout=args.timeout)
    except KeyboardInterrupt:
        print("interrupted: the partial file (.part) is kept; run the command again to resume", file=sys.stderr)
        return 130
    counts = {s: sum(f.status == s for f in done) for s in ("downloaded", "resumed", "already there")}
    folders = ", ".join(sorted({str(f.remote.dest.parent) for f in done}))
    console.print(
        f"{folders}: {len(done)} file(s): " + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f" ({sum(f.received for f in done):,} bytes received)",
        soft_wrap=True, highlight=False,
    )  # fmt: skip
    lines = dl.stream_overrides(remotes)
    if lines:
        console.print("read them with:", highlight=False)
        for line in lines:
            console.print(f"  {line}", soft_wrap=True, highlight=False, markup=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`harness data ...`: 0 on success, 2 with one line on stderr for bad input."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    console = Console()
    try:
        if args.command == "import":
            return import_command(args, console)
        if args.command == "download":
            return download_command(args, console, Console(stderr=True))
        return list_command(args, console)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
