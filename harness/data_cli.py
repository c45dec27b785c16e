"""`harness data`: the market-data catalog from the command line (`harness.streams.catalog`, `hs.data`).

    harness data import --root DIR [--market NAME] [--reader tardis|binance --role ROLE] [--clock local|exchange]
                        FILES...        import tardis.dev / Binance files (one at a time, a progress bar over them)
    harness data list --root DIR [--market NAME]      the partitions: market, date, rows, time span, digest, sources

Bad input (an unknown file name pattern, a bad market name, a file breaking its format, no catalog) prints one line
`error: ...` to stderr and returns 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.errors import HarnessError
from harness.streams import catalog
from harness.streams.csvread import ON_BAD_ROWS


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
    imp.add_argument("files", nargs="+", type=Path, help="the files to import, in order")
    lst = sub.add_parser("list", help="the partitions of a catalog")
    lst.add_argument("--root", type=Path, required=True, help="the catalog's directory")
    lst.add_argument("--market", action="append", default=None, help="only this market (repeatable)")
    return parser


def import_command(args: argparse.Namespace, console: Console) -> int:
    """Import the files one by one under a progress bar; a line saying what was imported and skipped."""
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise HarnessError(f"no such file: {', '.join(missing)}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("importing", total=len(args.files))

        def advance(path: Path, status: str) -> None:
            bar.update(task, advance=1, description=f"{status} {path.name}")

        done = catalog.import_files(
            args.root, args.files, market=args.market, reader=args.reader, role=args.role, clock=args.clock,
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


def main(argv: list[str] | None = None) -> int:
    """`harness data ...`: 0 on success, 2 with one line on stderr for bad input."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    console = Console()
    try:
        if args.command == "import":
            return import_command(args, console)
        return list_command(args, console)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
