"""A read-only view of a local MLflow sqlite store, so `harness runs list|show|compare` (and the dangling-run check
of every `harness runs` command) start without MLflow: importing MLflow and opening a store through it takes about
1.7 s, reading the same rows with sqlite3 a few milliseconds.

`SqliteRuns` answers the queries the run tools make, shaped like MLflow's client: experiments (active ones, or by
name or id), one run by id, runs by status, id prefix or parent tag, newest or oldest first, and artifact listings
of local artifact folders. Runs look like MLflow's (`run.info.run_id`, `run.data.tags`, `run.data.metrics` as the
latest value of each metric). `SqliteRuns.open` returns None for another kind of store or a sqlite file whose
tables it does not recognise; the caller then uses MLflow's client. Writing (ending dead runs, replays) is
MLflow's alone.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from harness.track.query import MAX_CANDIDATES, PARENT_TAG, RunsError

TABLES = {  # what the reader reads: table -> the columns it needs
    "experiments": {"experiment_id", "name", "artifact_location", "lifecycle_stage"},
    "runs": {
        "run_uuid",
        "name",
        "status",
        "start_time",
        "end_time",
        "lifecycle_stage",
        "artifact_uri",
        "experiment_id",
    },
    "tags": {"key", "value", "run_uuid"},
    "params": {"key", "value", "run_uuid"},
    "latest_metrics": {"key", "value", "is_nan", "run_uuid"},
}
_FILTERS = (  # the filter strings the run tools use -> (SQL condition, how the quoted value becomes its parameter)
    (re.compile(r"attributes\.status = '([A-Z]+)'"), "r.status = ?", lambda v: v),
    (re.compile(r"attributes\.run_id LIKE '([0-9a-z-]+)%'"), "r.run_uuid LIKE ?", lambda v: v + "%"),
    (
        re.compile(rf"tags\.{re.escape(PARENT_TAG)} = '([0-9a-z-]+)'"),
        "r.run_uuid IN (SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = ?)",
        lambda v: v,
    ),
)
_ORDER = {"attributes.start_time DESC": "r.start_time DESC", "attributes.start_time ASC": "r.start_time ASC"}


@dataclass(frozen=True)
class Experiment:
    """An experiment as MLflow's client gives it (the fields the run tools read)."""

    experiment_id: str
    name: str
    lifecycle_stage: str
    artifact_location: str


@dataclass(frozen=True)
class RunInfo:
    """A run's identity and lifecycle, as `mlflow.entities.RunInfo`."""

    run_id: str
    run_name: str | None
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str


@dataclass
class RunData:
    """A run's tags, params and metrics (the latest value of each), as `mlflow.entities.RunData`."""

    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Run:
    """A run as `mlflow.entities.Run`: `info` and `data`."""

    info: RunInfo
    data: RunData


@dataclass(frozen=True)
class FileInfo:
    """An artifact as `mlflow.entities.FileInfo`: its path under the run's artifact root, folder or file, size."""

    path: str
    is_dir: bool
    file_size: int | None


class SqliteRuns:
    """Read-only queries on an MLflow sqlite store (see the module doc); `open` it from a tracking URI."""

    def __init__(self, path: Path, uri: str) -> None:
        self.path, self.uri = path, uri
        self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        self._client: Any = None

    @classmethod
    def open(cls, uri: str) -> SqliteRuns | None:
        """A reader of the sqlite store at `uri`, or None: not a sqlite file, or tables it does not recognise."""
        if not uri.startswith("sqlite:///"):
            return None
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.is_file():
            return None
        try:
            reader = cls(path, uri)
            if reader._recognised():
                return reader
            reader.con.close()
        except sqlite3.Error:
            pass
        return None

    def _recognised(self) -> bool:
        """Whether every table and column the reader needs is there."""
        for table, columns in TABLES.items():
            have = {row[1] for row in self.con.execute(f"PRAGMA table_info({table})")}
            if not columns <= have:
                return False
        return True

    # ----- experiments -----------------------------------------------------------------------------------
    def search_experiments(self) -> list[Experiment]:
        """The active experiments, by id."""
        return self._experiments("WHERE lifecycle_stage = 'active'", ())

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment named `name` (active or deleted), or None."""
        found = self._experiments("WHERE name = ?", (name,))
        return found[0] if found else None

    def get_experiment(self, experiment_id: str) -> Experiment:
        """The experiment with this id."""
        found = self._experiments("WHERE experiment_id = ?", (int(experiment_id),))
        if not found:
            raise RunsError(f"no experiment with id {experiment_id} in {self.path}")
        return found[0]

    def _experiments(self, where: str, args: tuple[Any, ...]) -> list[Experiment]:
        sql = f"SELECT experiment_id, name, lifecycle_stage, artifact_location FROM experiments {where}"
        rows = self.con.execute(sql + " ORDER BY experiment_id", args).fetchall()
        return [Experiment(str(i), name, stage, location or "") for i, name, stage, location in rows]

    # ----- runs ---------------------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run | None:
        """The run with this full id (in any experiment, even deleted), or None."""
        runs = self._runs("r.run_uuid = ?", (run_id,), "", None)
        return runs[0] if runs else None

    def search_runs(
        self,
        experiment_ids: Iterable[str],
        filter_string: str = "",
        order_by: list[str] | None = None,
        max_results: int = 1000,
    ) -> list[Run]:
        """The active runs of the experiments matching `filter_string` (one of the forms the run tools use),
        ordered by `order_by` then, as MLflow does, newest first and by id."""
        ids = [int(i) for i in experiment_ids]
        where = f"r.experiment_id IN ({', '.join('?' * len(ids))}) AND r.lifecycle_stage = 'active'"
        args: list[Any] = list(ids)
        if filter_string:
            condition, value = _filter(filter_string)
            where += f" AND {condition}"
            args.append(value)
        order = [_ORDER[o] for o in order_by or []]
        return self._runs(where, tuple(args), ", ".join([*order, "r.start_time DESC", "r.run_uuid ASC"]), max_results)

    def _runs(self, where: str, args: tuple[Any, ...], order: str, limit: int | None) -> list[Run]:
        sql = (
            "SELECT r.run_uuid, r.name, r.experiment_id, r.status, r.start_time, r.end_time, r.lifecycle_stage, "
            f"r.artifact_uri FROM runs r WHERE {where}"
        )
        if order:
            sql += f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        runs = [
            Run(RunInfo(i, name, str(exp), status, start, end, stage, art or ""), RunData())
            for i, name, exp, status, start, end, stage, art in self.con.execute(sql, args).fetchall()
        ]
        self._fill(runs)
        return runs

    def _fill(self, runs: list[Run]) -> None:
        """Tags, params and latest metrics of the runs, read in one query per table (per 500 runs)."""
        by_id = {r.info.run_id: r.data for r in runs}
        for start in range(0, len(runs), 500):
            ids = list(by_id)[start : start + 500]
            where = f"run_uuid IN ({', '.join('?' * len(ids))})"
            for key, value, run in self.con.execute(f"SELECT key, value, run_uuid FROM tags WHERE {where}", ids):
                by_id[run].tags[key] = value
            for key, value, run in self.con.execute(f"SELECT key, value, run_uuid FROM params WHERE {where}", ids):
                by_id[run].params[key] = value
            sql = f"SELECT key, value, is_nan, run_uuid FROM latest_metrics WHERE {where}"
            for key, value, is_nan, run in self.con.execute(sql, ids):
                by_id[run].metrics[key] = math.nan if is_nan else float(value)

    def resolve_run(self, run: str, experiments: list[str]) -> Run:
        """`harness.track.query.resolve_run` on this store: the run whose id is `run` or starts with it, in the
        named experiments (a full 32-character id in any experiment); the same errors."""
        from harness.track.query import experiment_ids, the_one

        prefix = run.strip().lower()
        if not re.fullmatch(r"[0-9a-z-]+", prefix):
            raise RunsError(f"{run!r} is not a run id or id prefix")
        if len(prefix) == 32:
            exact = self.get_run(prefix)
            if exact is not None:
                return exact
        ids = experiment_ids(self, experiments)
        found = self.search_runs(list(ids), f"attributes.run_id LIKE '{prefix}%'", max_results=MAX_CANDIDATES + 1)
        return the_one(run, found, ids)

    # ----- artifacts ------------------------------------------------------------------------------------------
    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """The artifacts directly under `path` of the run, sorted by path; a root that is not a local folder is
        listed by MLflow's client."""
        run = self.get_run(run_id)
        if run is None:
            raise RunsError(f"no run with id {run_id!r} in {self.path}")
        root = _local_path(run.info.artifact_uri)
        if root is None:
            return list(self.mlflow_client().list_artifacts(run_id, path))
        folder = root / path if path else root
        if not folder.is_dir():
            return []
        out = []
        for name in os.listdir(folder):
            full, rel = folder / name, f"{path}/{name}" if path else name
            out.append(FileInfo(rel, full.is_dir(), None if full.is_dir() else full.stat().st_size))
        return sorted(out, key=lambda f: f.path)

    def mlflow_client(self) -> Any:
        """MLflow's client on the same store (imported on first use), for what the reader does not do."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client


def _filter(text: str) -> tuple[str, Any]:
    """The SQL condition and its parameter for one of the filter strings the run tools use."""
    for pattern, condition, value in _FILTERS:
        m = pattern.fullmatch(text.strip())
        if m:
            return condition, value(m.group(1))
    raise RunsError(f"the sqlite reader does not understand the filter {text!r}")


def _local_path(uri: str) -> Path | None:
    """The folder of a local artifact URI (a plain path or file://), or None for any other kind."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None
