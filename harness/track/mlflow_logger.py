"""`MlflowRunLogger`: the `RunLogger` of harness, keeping runs in an MLflow tracking store.

A run records its host, pid and a heartbeat (`harness.track.store`): at `start`, at each `beat` and every
`heartbeat_s` from a thread, so that a run whose process dies without ending it is ended KILLED by the next
check (`reap_dead_runs`, `harness runs gc`). Tags, the run name and the failure reason are redacted here.
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import HarnessError
from harness.interrupts import deferred
from harness.track import mlflow_log, store
from harness.track.logger import ERROR_TAG, Status

BATCH = 900  # metric points per request (MLflow accepts 1000)


T = TypeVar("T")


def _atomic(method: Callable[..., T]) -> Callable[..., T]:
    """A store write that SIGTERM/SIGHUP do not cut in half (harness.interrupts): a signal waits for its end."""

    @functools.wraps(method)
    def write(*args: Any, **kwargs: Any) -> T:
        with deferred():
            return method(*args, **kwargs)

    return write


class MlflowRunLogger:
    """One MLflow run of experiment `experiment` in the store at `uri` (see the module doc)."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        heartbeat_s: float = store.DEFAULT_HEARTBEAT_S,
        heartbeat_timeout_s: float = store.DEFAULT_TIMEOUT_S,
    ) -> None:
        store.check_heartbeat(float(heartbeat_s), float(heartbeat_timeout_s))  # a config error before any run
        self.uri, self.experiment = uri, experiment
        self.heartbeat_s, self.timeout_s = float(heartbeat_s), float(heartbeat_timeout_s)
        self.run_id: str | None = None
        self._experiment_id: str | None = None
        self._heartbeat: store.Heartbeat | None = None

    @classmethod
    def from_config(cls, tracking: Any) -> MlflowRunLogger:
        """The logger a `tracking` config node describes (uri, experiment, heartbeat_s, heartbeat_timeout_s)."""
        return cls(
            store.tracking_uri(tracking.uri),
            str(tracking.experiment),
            float(tracking.get("heartbeat_s", store.DEFAULT_HEARTBEAT_S)),  # absent in older logged configs
            float(tracking.get("heartbeat_timeout_s", store.DEFAULT_TIMEOUT_S)),
        )

    @property
    def experiment_id(self) -> str:
        """The experiment's id, creating the store and the experiment on first use."""
        if self._experiment_id is None:
            self._experiment_id = store.ensure_experiment(self.uri, self.experiment)
        return self._experiment_id

    def reap_dead_runs(self, by: str) -> list[tuple[str, str]]:
        dead = store.reap_quietly(self.uri, [self.experiment_id], by=by)
        return [(run.info.run_id, reason) for run, reason in dead]

    @_atomic
    def start(self, *, run_name: str | None, parent: str | None, tags: Mapping[str, str]) -> str:
        import mlflow

        if self.run_id is not None:
            raise HarnessError(f"MlflowRunLogger: run {self.run_id} is already open; one logger logs one run")
        experiment_id = self.experiment_id
        liveness = store.process_tags(self.heartbeat_s, self.timeout_s)
        mlflow.set_tracking_uri(self.uri)
        name = mlflow_log.redact(run_name) if run_name else None
        all_tags = {**mlflow_log.redact_tags(tags), **liveness}
        run = mlflow.start_run(experiment_id=experiment_id, run_name=name, parent_run_id=parent or None, tags=all_tags)
        self.run_id = run.info.run_id
        self._heartbeat = store.Heartbeat(self.uri, self.run_id, self.heartbeat_s).__enter__()
        return self.run_id

    @_atomic
    def end(self, status: Status, reason: str = "") -> None:
        import mlflow

        if self._heartbeat is not None:
            self._heartbeat.__exit__(None, None, None)
            self._heartbeat = None
        if reason:
            mlflow.set_tag(ERROR_TAG, mlflow_log.redact(reason)[: mlflow_log.MAX_TAG])
        mlflow.end_run(status=status)

    def beat(self, stage: str) -> None:
        if self._heartbeat is not None:
            self._heartbeat.beat(stage)

    @_atomic
    def set_tags(self, tags: Mapping[str, str]) -> None:
        import mlflow

        mlflow.set_tags(mlflow_log.redact_tags(tags))

    @_atomic
    def log_params(self, params: Mapping[str, str]) -> None:
        import mlflow

        mlflow.log_params(dict(params))

    @_atomic
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    @_atomic
    def log_series(self, points: Iterable[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        now = int(time.time() * 1000)
        rows = [Metric(key, float(value), now, int(step)) for key, value, step in points]
        client = MlflowClient(tracking_uri=self.uri)
        for i in range(0, len(rows), BATCH):
            client.log_batch(self._open_run(), metrics=rows[i : i + BATCH])

    @contextmanager
    def artifact_dir(self) -> Iterator[Path]:
        import mlflow

        with tempfile.TemporaryDirectory(prefix="harness-artifacts-") as tmp:
            root = Path(tmp)
            yield root
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                sub = path.parent.relative_to(root).as_posix()
                mlflow.log_artifact(str(path), artifact_path=None if sub == "." else sub)

    @_atomic
    def log_dataset(self, name: str, digest: str, source: str, files: list[str], rows: int) -> None:
        """`mlflow.log_input` of the events with our content digest (MLflow keeps 36 characters of it)."""
        import mlflow
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        files_text = mlflow_log.redact(json.dumps(files))
        tags = {"source": mlflow_log.redact(source), "files": files_text, "rows": str(rows), "sha256": digest}
        mlflow.log_input(MetaDataset(CodeDatasetSource(tags=tags), name=name, digest=digest[:36]), context="replay")

    def _open_run(self) -> str:
        if self.run_id is None:
            raise HarnessError("MlflowRunLogger: no run is open (call start first)")
        return self.run_id
