"""Tracking as an interface: `RunLogger` is everything the pipeline tells a tracking store about a run.

The pipeline talks only to a RunLogger; `harness.track.mlflow_logger.MlflowRunLogger` keeps the runs in MLflow.
Another store (or a test double) implements these methods and nothing else changes. A logger redacts what it
writes (`harness.track.mlflow_log.redact`): callers may pass text that holds credentials.

Lifecycle: `reap_dead_runs` (optional tidying before a run), `start` (the run exists, its heartbeat runs),
any of the `log_*`/`set_tags`/`beat` calls, then exactly one `end` with the run's status and, unless it
finished, the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Literal, Protocol

Status = Literal["FINISHED", "FAILED", "KILLED"]
ERROR_TAG = "harness.error"  # the reason a run did not finish


class RunLogger(Protocol):
    """One run in a tracking store, as the pipeline sees it."""

    run_id: str | None  # set by `start`

    def reap_dead_runs(self, by: str) -> list[tuple[str, str]]:
        """End the runs left RUNNING by a process that is gone (KILLED); (run id, reason) of each."""
        ...

    def start(self, *, run_name: str | None, parent: str | None, tags: Mapping[str, str]) -> str:
        """Open the run (a child of run `parent` when given) with `tags`, start its heartbeat; its id."""
        ...

    def end(self, status: Status, reason: str = "") -> None:
        """Stop the heartbeat and close the run with `status`; `reason` (why it failed) goes to `ERROR_TAG`."""
        ...

    def beat(self, stage: str) -> None:
        """A sign of life now, naming the stage that starts."""
        ...

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Tags of the run (identity, provenance)."""
        ...

    def log_params(self, params: Mapping[str, str]) -> None:
        """The run's parameters (the flattened config)."""
        ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Metric values now (at `step`, e.g. an epoch, when given)."""
        ...

    def log_series(self, points: Iterable[tuple[str, float, int]]) -> None:
        """Many (key, value, step) points at once, e.g. a fit's per-epoch history."""
        ...

    def artifact_dir(self) -> AbstractContextManager[Path]:
        """A folder whose files become the run's artifacts (under their relative paths) when the block ends."""
        ...

    def log_dataset(self, name: str, digest: str, source: str, files: list[str], rows: int) -> None:
        """The events the run replayed: the stream's name, content digest, source description, files and rows."""
        ...
