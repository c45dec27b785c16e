"""`harness data download`: tardis.dev and data.binance.vision files fetched from a local HTTP server (127.0.0.1,
in a thread) serving the real sample files laid out like the two sites; resume, checksums, errors, the CLI."""

from __future__ import annotations

import hashlib
import re
import shlex
import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import real_data
from test_pipeline import runs_of

from harness.cli import main
from harness.errors import HarnessError
from harness.streams import download as dl

DAY = "2024-08-08"
KEY = "test-key-123"
TARDIS = {"incremental_book_L2": "binance-futures_incremental_book_L2_2024-08-08_BTCUSDT.csv.gz",
          "trades": "binance-futures_trades_2024-08-08_BTCUSDT.csv.gz"}  # fmt: skip
BINANCE = {  # (market path on the site, kind) -> the sample dump
    ("futures/um", "trades"): "binance-futures_2024-08-08/binance_vision_format/BTCUSDT-trades-2024-08-08.zip",
    ("futures/um", "bookTicker"): "binance-futures_2024-08-08/binance_vision_format/BTCUSDT-bookTicker-2024-08-08.zip",
    ("spot", "trades"): "binance_2024-08-08/binance_vision_format/BTCUSDT-trades-2024-08-08.zip",
}


class RangeHandler(SimpleHTTPRequestHandler):
    """GET with `Range: bytes=N-` (206), tardis' rule (a day other than the 1st needs the API key), and knobs on
    the server: `ignore_range` (answer 200 to a range), `cut_after` (close after that many body bytes)."""

    server: Site

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        entry = {"path": self.path, "range": self.headers.get("Range"), "status": 0, "sent": 0}
        self.server.requests.append(entry)
        file = Path(self.translate_path(self.path))
        free = not self.path.startswith("/tardis/") or re.search(r"/\d{4}/\d{2}/01/", self.path)
        if not free and self.headers.get("Authorization") != f"Bearer {KEY}":
            entry["status"] = 401
            return self.send_error(401, "Unauthorized")
        if not file.is_file():
            entry["status"] = 404
            return self.send_error(404, "Not Found")
        data = file.read_bytes()
        m = re.fullmatch(r"bytes=(\d+)-", entry["range"] or "")
        start = int(m[1]) if m and not self.server.ignore_range else 0
        if start >= len(data) > 0:
            entry["status"] = 416
            return self.send_error(416, "Range Not Satisfiable")
        entry["status"] = 206 if m and not self.server.ignore_range else 200
        self.send_response(entry["status"])
        if entry["status"] == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut_after is not None:
            body, self.close_connection = body[: self.server.cut_after], True
        entry["sent"] = len(body)  # before the write: the client may see the whole body before this thread goes on
        self.wfile.write(body)


class Site(ThreadingHTTPServer):
    requests: list[dict[str, Any]]
    root: Path
    ignore_range: bool = False
    cut_after: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def build_site(root: Path) -> dict[str, Path]:
    """The two sites' layouts under `root`, symlinks to the real samples and .CHECKSUM files; url path -> source."""
    sources: dict[str, Path] = {}
    for kind, name in TARDIS.items():
        sources[f"tardis/v1/binance-futures/{kind}/2024/08/08/BTCUSDT.csv.gz"] = real_data(
            "derived", "binance-futures_2024-08-08", name
        )
    for (market, kind), rel in BINANCE.items():
        sources[f"binance/data/{market}/daily/{kind}/BTCUSDT/BTCUSDT-{kind}-{DAY}.zip"] = real_data("derived", rel)
    sources["tardis/v1/binance-futures/trades/2024/08/01/BTCUSDT.csv.gz"] = sources[
        "tardis/v1/binance-futures/trades/2024/08/08/BTCUSDT.csv.gz"
    ]  # a free day (the same bytes)
    for url, src in sources.items():
        (root / url).parent.mkdir(parents=True, exist_ok=True)
        (root / url).symlink_to(src)
        if url.startswith("binance/"):
            digest = hashlib.sha256(src.read_bytes()).hexdigest()
            (root / (url + ".CHECKSUM")).write_text(f"{digest}  {Path(url).name}\n")
    return sources


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Site, dict[str, Path]]]:
    root = tmp_path / "site"
    sources = build_site(root)
    server = Site(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    server.requests, server.root = [], root
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, sources
    server.shutdown()
    server.server_close()
    thread.join(5)


def tardis_remotes(server: Site, out: Path, kinds=("incremental_book_L2", "trades"), day=DAY, key=KEY):  # type: ignore[no-untyped-def]
    return dl.tardis_files("binance-futures", kinds, ["btcusdt"], day, None, out, f"{server.url}/tardis", key)


def test_tardis_and_binance_files_arrive_byte_identical_and_a_second_run_skips(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, sources = site
    out = tmp_path / "data"
    remotes = tardis_remotes(server, out) + dl.binance_files(
        "futures-um", ["trades", "bookTicker"], ["BTCUSDT"], DAY, DAY, out, f"{server.url}/binance"
    )
    done = dl.download(remotes)
    assert [f.status for f in done] == ["downloaded"] * 4
    expected = {
        out / "tardis/binance-futures" / name: sources[f"tardis/v1/binance-futures/{kind}/2024/08/08/BTCUSDT.csv.gz"]
        for kind, name in TARDIS.items()
    }
    for kind in ("trades", "bookTicker"):
        name = f"BTCUSDT-{kind}-{DAY}.zip"
        expected[out / "binance/futures-um" / name] = sources[f"binance/data/futures/um/daily/{kind}/BTCUSDT/{name}"]
    assert sorted(f.remote.dest for f in done) == sorted(expected)
    for dest, src in expected.items():
        assert dest.read_bytes() == src.read_bytes()
        assert not dest.with_name(dest.name + ".part").exists()
    assert all(f.sha256 == hashlib.sha256(f.remote.dest.read_bytes()).hexdigest() for f in done[2:])
    assert done[0].received == done[0].size == expected[done[0].remote.dest].stat().st_size
    binance_requests = [r for r in server.requests if r["path"].startswith("/binance/")]
    assert len(binance_requests) == 4  # each dump and its .CHECKSUM
    server.requests.clear()
    again = dl.download(remotes)
    assert [f.status for f in again] == ["already there"] * 4
    assert server.requests == []  # nothing fetched: the kept checksums verify the dumps


def test_a_truncated_part_resumes_with_a_range_request(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, sources = site
    (remote,) = dl.binance_files("spot", ["trades"], ["BTCUSDT"], DAY, None, tmp_path / "d", f"{server.url}/binance")
    source = sources[f"binance/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-{DAY}.zip"].read_bytes()
    remote.dest.parent.mkdir(parents=True)
    remote.part.write_bytes(source[:50_000])
    got = dl.fetch(remote)
    assert (got.status, got.received, got.size) == ("resumed", len(source) - 50_000, len(source))
    (data_request,) = [r for r in server.requests if r["path"].endswith(".zip")]
    assert data_request["range"] == "bytes=50000-" and data_request["status"] == 206
    assert data_request["sent"] == len(source) - 50_000
    assert remote.dest.read_bytes() == source and not remote.part.exists()


def test_a_server_answering_200_to_a_range_restarts_the_file(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, sources = site
    server.ignore_range = True
    (remote,) = tardis_remotes(server, tmp_path / "d", kinds=["trades"])
    source = sources["tardis/v1/binance-futures/trades/2024/08/08/BTCUSDT.csv.gz"].read_bytes()
    remote.dest.parent.mkdir(parents=True)
    remote.part.write_bytes(b"not the start of the file" * 100)
    got = dl.fetch(remote)
    assert (got.status, got.received) == ("downloaded", len(source))
    assert server.requests[-1]["status"] == 200
    assert remote.dest.read_bytes() == source


def test_a_part_as_long_as_the_file_gets_416_and_restarts(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, sources = site
    (remote,) = tardis_remotes(server, tmp_path / "d", kinds=["trades"])
    source = sources["tardis/v1/binance-futures/trades/2024/08/08/BTCUSDT.csv.gz"].read_bytes()
    remote.dest.parent.mkdir(parents=True)
    remote.part.write_bytes(source + b"junk")
    assert dl.fetch(remote).status == "downloaded"
    assert [r["status"] for r in server.requests] == [416, 200]
    assert remote.dest.read_bytes() == source


def test_a_dropped_connection_keeps_the_part_and_the_next_run_resumes(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, sources = site
    server.cut_after = 30_000
    (remote,) = tardis_remotes(server, tmp_path / "d", kinds=["incremental_book_L2"])
    source = sources["tardis/v1/binance-futures/incremental_book_L2/2024/08/08/BTCUSDT.csv.gz"].read_bytes()
    with pytest.raises(HarnessError, match=f"closed after 30,000 of {len(source):,} bytes.*run the command again"):
        dl.fetch(remote)
    assert remote.part.stat().st_size == 30_000 and not remote.dest.exists()
    server.cut_after = None
    got = dl.fetch(remote)
    assert (got.status, got.received) == ("resumed", len(source) - 30_000)
    assert server.requests[-1]["range"] == "bytes=30000-"
    assert remote.dest.read_bytes() == source


def test_a_bad_checksum_fails_naming_the_file_and_leaves_nothing(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, _ = site
    name = f"BTCUSDT-trades-{DAY}.zip"
    (server.root / f"binance/data/spot/daily/trades/BTCUSDT/{name}.CHECKSUM").write_text(f"{'0' * 64}  {name}\n")
    (remote,) = dl.binance_files("spot", ["trades"], ["BTCUSDT"], DAY, None, tmp_path / "d", f"{server.url}/binance")
    with pytest.raises(HarnessError, match=f"{name}: its sha256 [0-9a-f]{{64}} does not match .*{'0' * 64}.*deleted"):
        dl.fetch(remote)
    assert not remote.dest.exists() and not remote.part.exists()


def test_a_changed_final_file_is_fetched_again(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, sources = site
    (remote,) = dl.binance_files("spot", ["trades"], ["BTCUSDT"], DAY, None, tmp_path / "d", f"{server.url}/binance")
    dl.fetch(remote)
    remote.dest.write_bytes(b"damaged")
    assert dl.fetch(remote).status == "downloaded"
    assert (
        remote.dest.read_bytes()
        == sources[f"binance/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-{DAY}.zip"].read_bytes()
    )


def test_errors_name_the_url(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, _ = site
    (missing,) = tardis_remotes(server, tmp_path / "d", kinds=["trades"], day="2024-08-09")
    with pytest.raises(HarnessError, match=re.escape(f"no such file on the server: {missing.url}")):
        dl.fetch(missing)
    (paid,) = tardis_remotes(server, tmp_path / "d", kinds=["trades"], key=None)
    with pytest.raises(HarnessError, match="HTTP 401.*only the first day of each month is free without an API key"):
        dl.fetch(paid)
    (free,) = tardis_remotes(server, tmp_path / "d", kinds=["trades"], day="2024-08-01", key=None)
    assert dl.fetch(free).status == "downloaded"
    assert server.requests[-1]["path"] == "/tardis/v1/binance-futures/trades/2024/08/01/BTCUSDT.csv.gz"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    (offline,) = dl.tardis_files(
        "deribit", ["trades"], ["BTC-PERPETUAL"], DAY, None, tmp_path, f"http://127.0.0.1:{port}"
    )
    with pytest.raises(HarnessError, match=f"network error fetching http://127.0.0.1:{port}/v1/deribit/trades/"):
        dl.fetch(offline)
    assert not list(tmp_path.glob("**/*.part"))


def test_date_ranges_names_and_stream_overrides(tmp_path: Path) -> None:
    remotes = dl.tardis_files(
        "binance-futures", ["trades", "quotes"], ["btcusdt", "ETHUSDT"], "2024-02-28", "2024-03-01", "data"
    )
    assert len(remotes) == 2 * 2 * 3
    assert remotes[0].url == "https://datasets.tardis.dev/v1/binance-futures/trades/2024/02/28/BTCUSDT.csv.gz"
    assert remotes[2].dest == Path("data/tardis/binance-futures/binance-futures_trades_2024-03-01_BTCUSDT.csv.gz")
    assert "Authorization" not in remotes[0].headers
    assert dl.stream_overrides(remotes) == [
        f"harness stream=tardis stream.trades='data/tardis/binance-futures/binance-futures_trades_*_{s}.csv.gz' "
        f"stream.quotes='data/tardis/binance-futures/binance-futures_quotes_*_{s}.csv.gz'"
        for s in ("BTCUSDT", "ETHUSDT")
    ]
    keyed = dl.tardis_files("deribit", ["trades"], ["BTC-PERPETUAL"], "2024-08-08", None, "d", api_key="K")
    assert keyed[0].headers == {"Authorization": "Bearer K"} and "K" not in repr(keyed[0])
    (dump,) = dl.binance_files("futures-um", ["aggTrades"], ["btcusdt"], "2024-08-08", None, "d")
    assert (
        dump.url
        == "https://data.binance.vision/data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-08.zip"
    )
    assert dump.checksum_url == dump.url + ".CHECKSUM"
    assert dump.dest == Path("d/binance/futures-um/BTCUSDT-aggTrades-2024-08-08.zip")
    assert dl.stream_overrides([dump]) == [
        "harness stream=binance stream.agg_trades='d/binance/futures-um/BTCUSDT-aggTrades-*.zip'"
    ]
    for bad, match in [
        (lambda: dl.days("2024-08-09", "2024-08-08"), "--to 2024-08-08 is before --from 2024-08-09"),
        (lambda: dl.days("2024-13-01"), "--from '2024-13-01' is not a date"),
        (
            lambda: dl.binance_files("coin-m", ["trades"], ["X"], "2024-08-08", None, "d"),
            "market 'coin-m' is not one of",
        ),
        (lambda: dl.binance_files("spot", ["klines"], ["X"], "2024-08-08", None, "d"), "kind 'klines' is not one of"),
        (lambda: dl.tardis_files("../x", ["trades"], ["X"], "2024-08-08", None, "d"), "exchange '../x' is not a plain"),
        (lambda: dl.tardis_files("binance", [], ["X"], "2024-08-08", None, "d"), "give at least one data type"),
    ]:
        with pytest.raises(HarnessError, match=re.escape(match)):
            bad()


def test_a_second_download_of_the_same_file_at_once_is_refused(tmp_path: Path) -> None:
    from filelock import FileLock

    (remote,) = dl.tardis_files("binance", ["trades"], ["BTCUSDT"], DAY, None, tmp_path, "http://127.0.0.1:9")
    (tmp_path / "tardis/binance/.locks").mkdir(parents=True)
    with (
        FileLock(str(tmp_path / f"tardis/binance/.locks/{remote.dest.name}.lock")),
        pytest.raises(HarnessError, match="another download of this file is running"),
    ):
        dl.fetch(remote)


def test_the_cli_downloads_says_how_to_read_the_files_and_the_pipeline_reads_them(  # type: ignore[no-untyped-def]
    site, workdir: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, sources = site
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.setenv("TARDIS_API_KEY", KEY)
    argv = ["data", "download", "tardis", "--exchange", "binance-futures", "--data-type", "incremental_book_L2"]
    argv += ["--data-type", "trades", "--symbol", "BTCUSDT", "--from", DAY, "--base-url", f"{server.url}/tardis"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    folder = Path("data/tardis/binance-futures")
    for name in TARDIS.values():
        assert f"downloaded: {folder / name} (" in err  # a line per file (not a terminal)
        assert (workdir / folder / name).read_bytes() == (
            real_data("derived", "binance-futures_2024-08-08", name)
        ).read_bytes()
    assert f"{folder}: 2 file(s): 2 downloaded, 0 resumed, 0 already there" in out
    (command,) = [line.strip() for line in out.splitlines() if line.strip().startswith("harness stream=")]
    assert command == (
        f"harness stream=tardis stream.book='{folder}/binance-futures_incremental_book_L2_*_BTCUSDT.csv.gz' "
        f"stream.trades='{folder}/binance-futures_trades_*_BTCUSDT.csv.gz'"
    )
    assert KEY not in out + err
    assert main(argv) == 0
    assert "0 downloaded, 0 resumed, 2 already there (0 bytes received)" in capsys.readouterr().out
    # the printed command, as a shell would split it, runs the pipeline on the downloaded files
    assert main([*shlex.split(command)[1:], "stream.limit=8000", "trainer.epochs=2", "task.sampler.n=5"]) == 0
    (run,) = runs_of(workdir)
    assert run.info.status == "FINISHED" and run.data.params["stream.target"] == "harness.pipeline.loaders:tardis"
    assert run.data.metrics["rows_train"] > 100


def test_the_cli_binance_and_its_errors(site, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    server, sources = site
    base = ["data", "download", "binance", "--market", "spot", "--kind", "trades", "--symbol", "btcusdt"]
    base += ["--dir", str(tmp_path / "d"), "--base-url", f"{server.url}/binance"]
    assert main([*base, "--from", DAY]) == 0
    out, err = capsys.readouterr()
    dest = tmp_path / "d/binance/spot" / f"BTCUSDT-trades-{DAY}.zip"
    assert f"downloaded: {dest} (" in err and "sha256 verified" in err
    assert f"harness stream=binance stream.trades={tmp_path / 'd/binance/spot'}/BTCUSDT-trades-*.zip" in out.replace(
        "'", ""
    )
    assert main([*base, "--from", DAY, "--to", "2024-08-09"]) == 2
    out, err = capsys.readouterr()
    url = f"{server.url}/binance/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-09.zip"
    assert err.splitlines()[-1] == f"error: no such file on the server: {url} (HTTP 404 for its .CHECKSUM)"
    assert main([*base, "--from", "2024-08-10", "--to", DAY]) == 2
    assert capsys.readouterr().err == "error: --to 2024-08-08 is before --from 2024-08-10\n"
    tardis = ["data", "download", "tardis", "--exchange", "binance-futures", "--data-type", "trades", "--symbol", "X"]
    assert main([*tardis, "--from", DAY, "--dir", str(tmp_path), "--base-url", f"{server.url}/tardis"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: access refused (HTTP 401)") and "only the first day of each month is free" in err
    assert err.count("\n") == 1


def test_real_data_tests_find_the_samples_through_conftest() -> None:
    """Every test needing the real samples goes through conftest (SHARED_DATA, real_data, real_data_missing), so
    all of them honour $HARNESS_DATA_ROOT and skip with the same reason."""
    pattern = re.compile(r'"shared"\s*/\s*"data"|real market data ' + "not found")
    tests = Path(__file__).resolve().parent
    offenders = [
        str(p.relative_to(tests))
        for p in sorted(tests.rglob("*.py"))
        if p.name != "conftest.py" and p != Path(__file__).resolve() and pattern.search(p.read_text())
    ]
    assert not offenders, f"use conftest.SHARED_DATA / real_data / real_data_missing in: {offenders}"
