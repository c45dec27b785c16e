"""The MLflow tracking store: which one (`tracking.uri`, else $MLFLOW_TRACKING_URI, else a sqlite file in the
working directory), created once under a file lock (parallel first-time creation of a sqlite store races),
the identity of the code that runs (git commit, dirty flag, package versions), and the liveness of runs (host,
pid, heartbeat) with `reap`, which ends RUNNING runs whose process is gone as KILLED."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import subprocess
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock

from harness.errors import HarnessError

DEFAULT_DB = "mlflow.db"
PACKAGES = ("harness", "torch", "numpy", "pyarrow", "mlflow", "hydra-core", "omegaconf")


def tracking_uri(configured: str | None = None) -> str:
    """The store to use: the configured uri, else $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db."""
    if configured:
        return str(configured)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store (and the experiment) if needed, once even when several processes ask; its id."""
    from mlflow.tracking import MlflowClient

    lock = _lock_path(uri)
    with FileLock(str(lock), timeout=600):
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return client.create_experiment(name)


def _lock_path(uri: str) -> Path:
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        return db.with_name(db.name + ".lock")
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"harness-mlflow-{key}.lock"


def git_state(root: Path | None) -> dict[str, str]:
    """Commit and dirty flag of the checkout at `root` ("unknown" outside git, and for None: an installed wheel)."""
    if root is None:
        return {"commit": "unknown", "dirty": "unknown"}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": "unknown"}
    return {"commit": commit or "unknown", "dirty": str(dirty).lower() if commit else "unknown"}


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ---------------------------------------------------------------------------------------------- liveness
# Every run records where it runs (host, pid, the process's start time, so a reused pid is not mistaken for it)
# and a heartbeat: the time of its last sign of life, written at each stage and by a background thread every
# `tracking.heartbeat_s` seconds. A RUNNING run whose process is gone on this host, or whose heartbeat is older
# than its `harness.heartbeat_timeout_s`, ended without closing its run (SIGKILL, the OOM killer, a crash, a
# lost node): `reap` ends it KILLED with the reason.

HOST_TAG = "harness.host"
PID_TAG = "harness.pid"
PID_START_TAG = "harness.pid_start"  # the process's start time (unix seconds), to tell a reused pid apart
HEARTBEAT_TAG = "harness.heartbeat"  # unix seconds of the last sign of life
TIMEOUT_TAG = "harness.heartbeat_timeout_s"
STAGE_TAG = "harness.stage"  # the stage running at the last heartbeat
ERROR_TAG = "harness.error"
REAPED_TAG = "harness.reaped_by"
DEFAULT_HEARTBEAT_S = 60.0
DEFAULT_TIMEOUT_S = 900.0
REAP_MAX_RUNS = 1000  # RUNNING runs looked at per experiment by one check

log = logging.getLogger(__name__)


def process_tags(heartbeat_s: float = DEFAULT_HEARTBEAT_S, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, str]:
    """The liveness tags a run starts with: host, pid, process start time, a first heartbeat and its timeout."""
    check_heartbeat(heartbeat_s, timeout_s)
    me = psutil.Process()
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(me.pid),
        PID_START_TAG: f"{me.create_time():.3f}",
        HEARTBEAT_TAG: f"{time.time():.3f}",
        TIMEOUT_TAG: f"{float(timeout_s):g}",
    }


def check_heartbeat(heartbeat_s: float, timeout_s: float) -> None:
    """tracking.heartbeat_s > 0 and a timeout of at least two heartbeats (else live runs would be reaped)."""
    if not (math.isfinite(heartbeat_s) and heartbeat_s > 0):
        raise HarnessError(f"tracking.heartbeat_s={heartbeat_s} must be a positive number of seconds")
    if not (timeout_s >= 2 * heartbeat_s):
        raise HarnessError(
            f"tracking.heartbeat_timeout_s={timeout_s} must be at least twice tracking.heartbeat_s={heartbeat_s} "
            "(a live run would be taken for dead between two heartbeats)"
        )


class Heartbeat:
    """Writes the run's heartbeat tag every `every_s` seconds from a daemon thread while the block runs, and on
    `beat(stage)` (each stage); a failed write is logged once and never stops the run."""

    def __init__(self, uri: str, run_id: str, every_s: float = DEFAULT_HEARTBEAT_S) -> None:
        self.uri, self.run_id, self.every_s = uri, run_id, float(every_s)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._warned = False
        self._client: Any = None

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self.run_id[:8]}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def beat(self, stage: str | None = None) -> None:
        """Record a sign of life now (and the stage that starts, when given)."""
        from mlflow.tracking import MlflowClient

        tags = {HEARTBEAT_TAG: f"{time.time():.3f}", **({STAGE_TAG: stage} if stage else {})}
        try:
            with self._lock:
                self._client = self._client or MlflowClient(tracking_uri=self.uri)
                for key, value in tags.items():
                    self._client.set_tag(self.run_id, key, value)
        except Exception as e:  # the store is briefly unreachable: the next beat tries again
            if not self._warned:
                self._warned = True
                log.warning("heartbeat of run %s not written: %s: %s", self.run_id, type(e).__name__, e)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.beat()


def process_alive(pid: int, started: float | None) -> bool:
    """Whether process `pid` of this host is running and is the one that started at `started` (unix s)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


def verdict(tags: dict[str, str], *, now: float, host: str, timeout_s: float | None = None) -> str | None:
    """Why a RUNNING run with these tags is dead, or None when it may be alive (or records no liveness)."""
    pid, beat = _number(tags.get(PID_TAG)), _number(tags.get(HEARTBEAT_TAG))
    where = f"process {int(pid) if pid is not None else '?'} on {tags.get(HOST_TAG, '?')}"
    if tags.get(HOST_TAG) == host and pid is not None and not process_alive(int(pid), _number(tags.get(PID_START_TAG))):
        stage = f" during stage {tags[STAGE_TAG]!r}" if STAGE_TAG in tags else ""
        return f"{where} is gone{stage}: it ended without closing its run (SIGKILL, out of memory, a crash)"
    limit = timeout_s if timeout_s is not None else _number(tags.get(TIMEOUT_TAG))
    if beat is not None and limit is not None and now - beat > limit:
        stage = f", last stage {tags[STAGE_TAG]!r}" if STAGE_TAG in tags else ""
        return f"no heartbeat from {where} for {now - beat:.0f} s (timeout {limit:g} s{stage})"
    return None


def end_dead_run(client: Any, run: Any, reason: str, by: str, end_ms: int | None = None) -> None:
    """End a dead run KILLED with `reason` in harness.error, at `end_ms`, else at its last heartbeat (the last time
    it was known alive), else now."""
    beat = _number(run.data.tags.get(HEARTBEAT_TAG))
    if end_ms is None:
        end_ms = int(beat * 1000) if beat is not None else int(time.time() * 1000)
    client.set_tag(run.info.run_id, ERROR_TAG, reason)
    client.set_tag(run.info.run_id, REAPED_TAG, by)
    client.set_terminated(run.info.run_id, status="KILLED", end_time=max(end_ms, run.info.start_time or 0))


def running_runs(client: Any, experiment_ids: list[str]) -> list[Any]:
    """The RUNNING runs of the experiments (at most REAP_MAX_RUNS each), oldest first."""
    if not experiment_ids:
        return []
    return client.search_runs(
        experiment_ids,
        filter_string="attributes.status = 'RUNNING'",
        order_by=["attributes.start_time ASC"],
        max_results=REAP_MAX_RUNS,
    )


def reap(
    client: Any, experiment_ids: list[str], *, timeout_s: float | None = None, dry_run: bool = False, by: str = ""
) -> list[tuple[Any, str | None]]:
    """Every RUNNING run of the experiments with its verdict (None: alive); dead ones are ended KILLED unless
    `dry_run`. `timeout_s` overrides the heartbeat timeout each run recorded."""
    now, host = time.time(), socket.gethostname()
    by = by or f"pid {os.getpid()} on {host}"
    out = []
    for run in running_runs(client, experiment_ids):
        reason = verdict(run.data.tags, now=now, host=host, timeout_s=timeout_s)
        if reason is not None and not dry_run:
            end_dead_run(client, run, reason, by)
        out.append((run, reason))
    return out


def reap_quietly(uri: str, experiment_ids: list[str], by: str) -> list[tuple[Any, str]]:
    """The cheap check when a command opens the store: end dead RUNNING runs; never fails the command."""
    from mlflow.tracking import MlflowClient

    try:
        found = reap(MlflowClient(tracking_uri=uri), experiment_ids, by=by)
    except Exception as e:
        log.warning("could not check the store for dangling runs: %s: %s", type(e).__name__, e)
        return []
    return [(run, reason) for run, reason in found if reason is not None]


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
