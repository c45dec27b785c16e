"""Downloads of public market data: tardis.dev CSV datasets and data.binance.vision daily dumps, resumable.

    tardis   {base}/v1/{exchange}/{data_type}/{YYYY}/{MM}/{DD}/{SYMBOL}.csv.gz       (base https://datasets.tardis.dev)
             -> {dir}/tardis/{exchange}/{exchange}_{data_type}_{YYYY-MM-DD}_{SYMBOL}.csv.gz  (the tardis-dev client's
             names); an API key goes as `Authorization: Bearer KEY`; without one only the first day of each month
             is free
    binance  {base}/data/{spot|futures/um}/daily/{kind}/{SYMBOL}/{SYMBOL}-{kind}-{YYYY-MM-DD}.zip
             (base https://data.binance.vision, kind trades|aggTrades|bookTicker), checksum at the same URL +
             `.CHECKSUM` (`<sha256>  <name>`) -> {dir}/binance/{spot|futures-um}/{SYMBOL}-{kind}-{YYYY-MM-DD}.zip and
             its .CHECKSUM beside it

A file is written to `NAME.part` and renamed to `NAME` only when complete and, where a checksum is published,
verified (a mismatch deletes it and fails naming it); a `.part` left by an interrupted run is resumed with
`Range: bytes=N-` (a server answering 200 instead of 206 restarts it); a final file that exists (and matches its
checksum) is skipped. Errors (HTTP 404, a refused key, network failures, a short transfer) are a HarnessError
naming the URL. Plain HTTP (urllib): no client library needed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shlex
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from filelock import FileLock, Timeout

from harness.errors import HarnessError

TARDIS_URL = "https://datasets.tardis.dev"
BINANCE_URL = "https://data.binance.vision"
BINANCE_MARKETS = {"spot": "spot", "futures-um": "futures/um"}  # our name -> the site's path
BINANCE_KINDS = ("trades", "aggTrades", "bookTicker")
TARDIS_FREE = "only the first day of each month is free without an API key (give --api-key or set TARDIS_API_KEY)"
TARDIS_KEY_REFUSED = "the API key was refused, or does not cover this exchange, data type or day"
CHUNK = 1 << 20  # bytes read and written at a time
TIMEOUT = 60.0  # seconds without an answer before a request fails
MAX_DAYS = 3660  # days one command may ask for (a typo in a year should not start ten thousand downloads)
USER_AGENT = "harness-data-download/1"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TARDIS_STREAM_KEYS = {"incremental_book_L2": "book", "trades": "trades", "quotes": "quotes", "book_ticker": "quotes"}
_BINANCE_STREAM_KEYS = {"trades": "trades", "aggTrades": "agg_trades", "bookTicker": "book_ticker"}


@dataclass(frozen=True)
class Remote:
    """One file to fetch: its URL, where it goes, its published checksum's URL (or None), the headers to send and
    what a refused request (HTTP 401/403) means for this source."""

    url: str
    dest: Path
    checksum_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold an API key: never printed
    denied: str = "access refused"
    source: str = ""  # "tardis" or "binance"
    group: tuple[str, ...] = ()  # what the file is: (exchange, data_type, symbol) or (market, kind, symbol)

    @property
    def part(self) -> Path:
        """The file being written until the download is complete."""
        return self.dest.with_name(self.dest.name + ".part")


@dataclass(frozen=True)
class Fetched:
    """The outcome of one fetch: "downloaded", "resumed" (from a .part) or "already there"; the bytes received
    this time, the file's size and the sha256 it was verified against (None: the source publishes none)."""

    remote: Remote
    status: str
    received: int
    size: int
    sha256: str | None


class Progress:
    """What a download reports as it goes (this base class reports nothing): the command line draws bars."""

    def start(self, remote: Remote, total: int | None, have: int) -> None:
        """A transfer begins: `total` bytes in all when the server says (else None), `have` already on disk."""

    def advance(self, n: int) -> None:
        """`n` more bytes were written."""

    def done(self, fetched: Fetched) -> None:
        """One file is complete (or was already there)."""


class _NotFound(HarnessError):
    """HTTP 404."""


class _RangeRefused(Exception):
    """The .part cannot be continued: HTTP 416 (it is as long as the file, or longer) or a 206 of another range."""


# ----- what to fetch -------------------------------------------------------------------------------------------
def days(start: date | str, end: date | str | None = None) -> list[date]:
    """The days from `start` to `end` inclusive (`end` None: `start` alone); HarnessError for bad dates."""
    first, last = _date(start, "--from"), _date(end if end is not None else start, "--to")
    if last < first:
        raise HarnessError(f"--to {last} is before --from {first}")
    n = (last - first).days + 1
    if n > MAX_DAYS:
        raise HarnessError(f"--from {first} --to {last} is {n} days; at most {MAX_DAYS} at a time")
    return [first + timedelta(days=i) for i in range(n)]


def _date(value: date | str, what: str) -> date:
    """A YYYY-MM-DD date (UTC day) or HarnessError naming the option."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise HarnessError(f"{what} {value!r} is not a date (YYYY-MM-DD)") from None


def _checked(values: Iterable[str], what: str) -> list[str]:
    """The names given for `what` (exchange, data type, symbol, kind), each safe as part of a URL and a file name."""
    out = list(values)
    if not out:
        raise HarnessError(f"give at least one {what}")
    for v in out:
        if not isinstance(v, str) or not _NAME.fullmatch(v) or ".." in v:
            raise HarnessError(f"{what} {v!r} is not a plain name (letters, digits, '_', '-', '.')")
    return out


def tardis_symbol(symbol: str) -> str:
    """A symbol as tardis.dev datasets name it: upper case, ':' and '/' replaced with '-' (as the tardis-dev client)."""
    return symbol.replace(":", "-").replace("/", "-").upper()


def tardis_files(
    exchange: str, data_types: Sequence[str], symbols: Sequence[str], start: date | str, end: date | str | None,
    root: Path | str, base_url: str = TARDIS_URL, api_key: str | None = None,
) -> list[Remote]:  # fmt: skip
    """The tardis.dev dataset files of these data types and symbols, day by day, and where each goes."""
    (exchange,) = _checked([exchange], "exchange")
    kinds = _checked(data_types, "data type")
    names = _checked([tardis_symbol(s) for s in symbols], "symbol")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    denied = TARDIS_KEY_REFUSED if api_key else TARDIS_FREE
    folder = Path(root) / "tardis" / exchange
    base = base_url.rstrip("/")
    return [
        Remote(
            url=f"{base}/v1/{exchange}/{kind}/{d:%Y/%m/%d}/{symbol}.csv.gz",
            dest=folder / f"{exchange}_{kind}_{d:%Y-%m-%d}_{symbol}.csv.gz",
            headers=headers,
            denied=denied,
            source="tardis",
            group=(exchange, kind, symbol),
        )
        for symbol in names
        for kind in kinds
        for d in days(start, end)
    ]


def binance_files(
    market: str, kinds: Sequence[str], symbols: Sequence[str], start: date | str, end: date | str | None,
    root: Path | str, base_url: str = BINANCE_URL,
) -> list[Remote]:  # fmt: skip
    """The data.binance.vision daily dumps of these kinds and symbols, day by day, with their checksum URLs."""
    if market not in BINANCE_MARKETS:
        raise HarnessError(f"market {market!r} is not one of {sorted(BINANCE_MARKETS)}")
    bad = [k for k in kinds if k not in BINANCE_KINDS]
    if bad or not kinds:
        raise HarnessError(f"kind {bad[0] if bad else None!r} is not one of {list(BINANCE_KINDS)}")
    names = _checked([s.upper() for s in symbols], "symbol")
    folder = Path(root) / "binance" / market
    base = f"{base_url.rstrip('/')}/data/{BINANCE_MARKETS[market]}/daily"
    out = []
    for symbol in names:
        for kind in kinds:
            for d in days(start, end):
                name = f"{symbol}-{kind}-{d:%Y-%m-%d}.zip"
                url = f"{base}/{kind}/{symbol}/{name}"
                out.append(
                    Remote(url, folder / name, url + ".CHECKSUM", source="binance", group=(market, kind, symbol))
                )
    return out


# ----- fetching ------------------------------------------------------------------------------------------------
def _open(url: str, headers: dict[str, str], timeout: float, denied: str) -> http.client.HTTPResponse:
    """The server's answer to a GET of `url`; HarnessError naming the URL when it is not a success."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 404:
            raise _NotFound(f"no such file on the server: {url} (HTTP 404)") from None
        if e.code in (401, 403):
            raise HarnessError(f"access refused (HTTP {e.code}) for {url}: {denied}") from None
        if e.code == 416:
            raise _RangeRefused from None
        raise HarnessError(f"HTTP {e.code} {e.reason} from {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise HarnessError(f"network error fetching {url}: {getattr(e, 'reason', e)}") from None


def _published_sha256(remote: Remote, timeout: float) -> str:
    """The sha256 the source publishes for `remote` (its .CHECKSUM file: `<sha256>  <name>`)."""
    assert remote.checksum_url is not None
    try:
        answer = _open(remote.checksum_url, remote.headers, timeout, remote.denied)
    except _NotFound:  # the dump's checksum is published with it: neither is there
        raise HarnessError(f"no such file on the server: {remote.url} (HTTP 404 for its .CHECKSUM)") from None
    with answer:
        try:
            text = answer.read(1 << 16).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            raise HarnessError(f"network error fetching {remote.checksum_url}: {e}") from None
    words = text.split()
    if not words or not _SHA256.fullmatch(words[0]):
        raise HarnessError(f"{remote.checksum_url}: not a checksum file ('<sha256>  <file name>'): {text[:80]!r}")
    return words[0].lower()


def sha256_of(path: Path) -> str:
    """The sha256 of a file's content (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _local_checksum(remote: Remote) -> Path:
    """Where the published checksum is kept beside the downloaded file."""
    return remote.dest.with_name(remote.dest.name + ".CHECKSUM")


def _kept_sha256(remote: Remote) -> str | None:
    """The checksum kept beside the file by an earlier download, when it is there and well formed."""
    try:
        words = _local_checksum(remote).read_text().split()
    except OSError:
        return None
    return words[0].lower() if words and _SHA256.fullmatch(words[0]) else None


def _transfer(remote: Remote, have: int, progress: Progress, timeout: float) -> tuple[int, int, bool]:
    """Write the file to its .part, continuing after `have` bytes when the server honours the range; returns
    (bytes received, the file's size, whether it resumed)."""
    headers = {**remote.headers, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with _open(remote.url, headers, timeout, remote.denied) as answer:
        resumed = bool(have) and answer.status == 206
        if resumed and _range_start(answer) != have:
            raise _RangeRefused  # a part other than the one asked for
        have = have if resumed else 0  # a 200 is the whole file: start again
        length = answer.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        progress.start(remote, total, have)
        received = 0
        try:
            with open(remote.part, "ab" if resumed else "wb") as out:
                while block := answer.read(CHUNK):
                    out.write(block)
                    received += len(block)
                    progress.advance(len(block))
        except (OSError, http.client.HTTPException) as e:
            raise HarnessError(
                f"network error downloading {remote.url} after {have + received:,} bytes: {e}; "
                f"{remote.part} is kept: run the command again to resume"
            ) from None
    if total is not None and have + received != total:
        raise HarnessError(
            f"{remote.url}: the connection closed after {have + received:,} of {total:,} bytes; "
            f"{remote.part} is kept: run the command again to resume"
        )
    return received, have + received, resumed


def _range_start(answer: http.client.HTTPResponse) -> int | None:
    """The first byte of a 206 answer (`Content-Range: bytes START-END/SIZE`), None when it does not say."""
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (answer.headers.get("Content-Range") or "").strip())
    return int(m[1]) if m else None


def fetch(remote: Remote, *, progress: Progress | None = None, timeout: float = TIMEOUT) -> Fetched:
    """Download one file (resuming a .part, verifying the published checksum) unless it is already there."""
    progress = progress or Progress()
    locks = remote.dest.parent / ".locks"  # hidden: globs over the folder do not see it
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(locks / f"{remote.dest.name}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise HarnessError(f"{remote.dest}: another download of this file is running") from None
    try:
        return _fetch_locked(remote, progress, timeout)
    finally:
        lock.release()


def _fetch_locked(remote: Remote, progress: Progress, timeout: float) -> Fetched:
    """`fetch` while holding the file's lock."""
    kept = _kept_sha256(remote) if remote.checksum_url else None
    if remote.dest.is_file() and (remote.checksum_url is None or (kept and sha256_of(remote.dest) == kept)):
        fetched = Fetched(remote, "already there", 0, remote.dest.stat().st_size, kept)
        progress.done(fetched)
        return fetched
    expected = _published_sha256(remote, timeout) if remote.checksum_url else None
    if expected is not None and remote.dest.is_file() and sha256_of(remote.dest) == expected:
        _local_checksum(remote).write_text(f"{expected}  {remote.dest.name}\n")
        fetched = Fetched(remote, "already there", 0, remote.dest.stat().st_size, expected)
        progress.done(fetched)
        return fetched
    have = remote.part.stat().st_size if remote.part.is_file() else 0
    try:
        received, size, resumed = _transfer(remote, have, progress, timeout)
    except _RangeRefused:  # the .part cannot be continued: start it again
        remote.part.unlink()
        received, size, resumed = _transfer(remote, 0, progress, timeout)
    if expected is not None:
        got = sha256_of(remote.part)
        if got != expected:
            remote.part.unlink()
            raise HarnessError(
                f"{remote.dest.name}: its sha256 {got} does not match the published checksum {expected} "
                f"({remote.checksum_url}); the download was deleted"
            )
        _local_checksum(remote).write_text(f"{expected}  {remote.dest.name}\n")
    os.replace(remote.part, remote.dest)
    fetched = Fetched(remote, "resumed" if resumed else "downloaded", received, size, expected)
    progress.done(fetched)
    return fetched


def download(remotes: Sequence[Remote], *, progress: Progress | None = None, timeout: float = TIMEOUT) -> list[Fetched]:
    """Fetch the files one after the other; the first failure stops (files done so far stay, a .part resumes)."""
    return [fetch(r, progress=progress, timeout=timeout) for r in remotes]


# ----- using them ----------------------------------------------------------------------------------------------
def stream_overrides(remotes: Sequence[Remote]) -> list[str]:
    """The `harness` command lines that read the downloaded files: one per (exchange or market, symbol), each file
    key a glob over the days (`stream.book='data/tardis/.../..._incremental_book_L2_*_BTCUSDT.csv.gz'`)."""
    groups: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in remotes:
        where, kind, symbol = r.group
        keys = _TARDIS_STREAM_KEYS if r.source == "tardis" else _BINANCE_STREAM_KEYS
        if kind not in keys:
            continue
        if r.source == "tardis":
            pattern = r.dest.parent / f"{where}_{kind}_*_{symbol}.csv.gz"
        else:
            pattern = r.dest.parent / f"{symbol}-{kind}-*.zip"
        groups.setdefault((r.source, where, symbol), {}).setdefault(keys[kind], str(pattern))
    lines = []
    for (source, _, _), keys in groups.items():
        parts = [f"stream.{key}={shlex.quote(glob)}" for key, glob in keys.items()]
        lines.append(" ".join(["harness", f"stream={source}", *parts]))
    return lines
