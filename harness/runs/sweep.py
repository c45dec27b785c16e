"""Hydra callback that makes a sweep one MLflow parent run with a child run per job, and always ends it.

Before any job starts (in the controller process) it creates the tracking store once, opens the parent run
(host, pid, heartbeat like every run; `stage/compose_s` of the controller), and compiles the sweep's kernels
once, so parallel jobs neither race to create a sqlite store nor compile the same kernel side by side. Jobs find
the parent through $HARNESS_PARENT_RUN_ID (inherited by local launchers' workers) or the file
`.mlflow_parent_run` in the sweep folder (cluster launchers on a shared file system).

The parent always ends (`MlflowSweepCallback.end`): FINISHED when the sweeper finished or only jobs failed
(metrics `children`, `children_failed`, `best_<objective>`; the failed jobs' errors in `harness.failed_jobs`),
FAILED with the reason when the launcher or sweeper failed, KILLED on Ctrl-C/SIGTERM/SIGHUP. Children left
RUNNING whose process is gone are ended KILLED. Hydra calls `on_multirun_end` only when the sweep succeeds; the
`harness` command calls `end_open_sweeps(error)` otherwise, and an exit hook ends any sweep still open.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.errors import HarnessError

log = logging.getLogger(__name__)
SETTLE_S = 10.0  # how long an ending sweep waits for its in-flight local jobs' processes to go
FAILED_JOBS_TAG = "harness.failed_jobs"
_open: list[MlflowSweepCallback] = []  # sweeps started in this process and not ended yet


@dataclass
class SweepSummary:
    """How a sweep ended: the parent's status and reason, its children and the failed jobs' errors."""

    parent: str
    status: str
    reason: str = ""
    children: int = 0
    failed: list[str] = field(default_factory=list)
    running: int = 0  # children still running elsewhere (another host) when the sweep ended
    objective: str = ""
    best: float | None = None

    def lines(self) -> list[str]:
        """One line for the sweep, then one per failed job (a stopped sweep: its line only)."""
        head = f"sweep {self.parent}: {self.status}, {self.children} jobs, {len(self.failed)} failed"
        if self.best is not None:
            head += f", best {self.objective} {self.best:.6g}"
        if self.running:
            head += f", {self.running} still running elsewhere"
        if self.reason:
            head += f" ({self.reason})"
        if self.status == "KILLED":
            return [head]
        return [head, *(f"  failed: {line}" for line in self.failed)]


class MlflowSweepCallback(Callback):
    """Parent run for a multirun; single runs are left alone."""

    def __init__(self) -> None:
        self.parent: str | None = None
        self.uri: str | None = None
        self.objective = "fit_val_loss"
        self.heartbeat: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Process-pool launchers pickle the callbacks with each job: the heartbeat thread stays here."""
        return {**self.__dict__, "heartbeat": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        from harness.pipeline.app import SWEEP_PID_ENV, take_compose_time
        from harness.pipeline.run import PARENT_ENV
        from harness.track import mlflow_log, store

        compose_s = take_compose_time()
        self.uri = store.tracking_uri(config.tracking.uri)
        self.objective = str(config.task.objective)
        experiment_id = store.ensure_experiment(self.uri, config.tracking.experiment)
        for dead, reason in store.reap_quietly(self.uri, [experiment_id], by="the check when a sweep starts"):
            log.info("run %s was still RUNNING: ended KILLED (%s)", dead.info.run_id, reason)
        heartbeat_s = float(config.tracking.heartbeat_s)
        tags = {
            "harness.sweep": "parent",
            "harness.sweep_overrides": " ".join(config.hydra.overrides.task),
            **store.process_tags(heartbeat_s, float(config.tracking.heartbeat_timeout_s)),
        }
        client = MlflowClient(tracking_uri=self.uri)
        name = mlflow_log.redact(str(config.tracking.run_name or "sweep"))
        run = client.create_run(experiment_id, run_name=name, tags=mlflow_log.redact_tags(tags))
        self.parent = run.info.run_id
        _open.append(self)
        if compose_s:
            client.log_metric(self.parent, "stage/compose_s", compose_s)
        os.environ[PARENT_ENV] = self.parent
        os.environ[SWEEP_PID_ENV] = str(os.getpid())
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / ".mlflow_parent_run").write_text(self.parent + "\n")
        log.info("sweep parent run %s in %s", self.parent, mlflow_log.redact(self.uri))
        self.heartbeat = store.Heartbeat(self.uri, self.parent, heartbeat_s).__enter__()
        self.heartbeat.beat("precompile")
        self._precompile(config)
        self.heartbeat.beat("jobs")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.end(None)

    def end(self, error: BaseException | None) -> SweepSummary | None:
        """End the parent run (see the module doc) and print how the sweep ended; None if it was not open."""
        from mlflow.tracking import MlflowClient

        from harness.pipeline.app import SWEEP_PID_ENV
        from harness.pipeline.run import PARENT_ENV
        from harness.track import mlflow_log

        if self.parent is None or self not in _open:
            return None
        _open.remove(self)
        if self.heartbeat is not None:
            self.heartbeat.__exit__(None, None, None)
        os.environ.pop(PARENT_ENV, None)
        os.environ.pop(SWEEP_PID_ENV, None)
        status, reason = _outcome(error)
        client = MlflowClient(tracking_uri=self.uri)
        children = self._settle(client, status, reason)
        summary = SweepSummary(self.parent, status, reason, len(children), objective=self.objective)
        for child in children:
            if child.info.status in ("FAILED", "KILLED"):
                error_text = child.data.tags.get("harness.error", "no error recorded")
                summary.failed.append(f"{_job_name(child)} {child.info.status}: {error_text}")
            summary.running += child.info.status == "RUNNING"
        if isinstance(error, _job_failure()) and not summary.failed:  # a job that failed before its run started
            summary.failed.append(str(error))
        values = [c.data.metrics.get(self.objective, math.nan) for c in children if c.info.status == "FINISHED"]
        finite = [v for v in values if math.isfinite(v)]
        summary.best = min(finite) if finite else None
        client.log_metric(self.parent, "children", len(children))
        client.log_metric(self.parent, "children_failed", len(summary.failed))
        if summary.best is not None:
            client.log_metric(self.parent, f"best_{self.objective}", summary.best)
        tags = {FAILED_JOBS_TAG: "\n".join(summary.failed)} if summary.failed else {}
        tags.update({"harness.error": reason} if reason else {})
        for key, value in mlflow_log.redact_tags(tags).items():
            client.set_tag(self.parent, key, value)
        client.set_terminated(self.parent, status=status)
        for line in summary.lines():
            print(mlflow_log.redact(line), file=sys.stderr)
        return summary

    def _settle(self, client: Any, status: str, reason: str) -> list[Any]:
        """The children, once in-flight jobs of this host have stopped; those left RUNNING with their process gone
        are ended KILLED (a sweep that stops takes its local jobs with it)."""
        from harness.track import store

        host, deadline = socket.gethostname(), time.monotonic() + (SETTLE_S if status != "FINISHED" else 0.0)
        while True:
            children = client.search_runs(
                [client.get_run(self.parent).info.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{self.parent}'",
                order_by=["attributes.start_time ASC"],
                max_results=10_000,
            )
            running = [c for c in children if c.info.status == "RUNNING"]
            verdicts = {c.info.run_id: store.verdict(c.data.tags, now=time.time(), host=host) for c in running}
            alive_here = [
                c for c in running if verdicts[c.info.run_id] is None and c.data.tags.get(store.HOST_TAG) == host
            ]
            if not alive_here or time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        now_ms = int(time.time() * 1000)
        for child in running:
            why = verdicts[child.info.run_id]
            if why is not None and status != "FINISHED":  # the sweep stopped and took this job with it
                tags = child.data.tags
                why = f"{reason or status}: the sweep stopped; process {tags.get(store.PID_TAG, '?')} ended with it"
            if why is not None:
                store.end_dead_run(client, child, why, by=f"sweep {self.parent}", end_ms=now_ms)
        return [client.get_run(c.info.run_id) if c.info.status == "RUNNING" else c for c in children]

    def _precompile(self, config: DictConfig) -> None:
        """Compile the kernels of the sweep's jobs (basic sweeper: every job; others: the base config) once."""
        try:
            circuits = _sweep_circuits(config)
            from harness.codegen import compile_many
            from harness.fit.trace import trace

            recording = [trace(c, config.task.target).recording_circuit() for c in circuits]
            if config.task.backend == "cpp":
                compile_many(recording)
        except Exception as e:  # the jobs compile what they need themselves; say why this did not help
            log.warning("could not compile the sweep's kernels before the jobs: %s: %s", type(e).__name__, e)


def end_open_sweeps(error: BaseException | None) -> list[SweepSummary]:
    """End every sweep of this process still open (its sweeper or launcher raised `error`, or a signal came);
    a parent that cannot be ended (store unreachable) is reported, never raised."""
    out = []
    for sweep in list(_open):
        try:
            summary = sweep.end(error)
        except Exception as e:
            if sweep in _open:
                _open.remove(sweep)
            log.error("could not end the sweep's parent run %s: %s: %s", sweep.parent, type(e).__name__, e)
            continue
        if summary is not None:
            out.append(summary)
    return out


@atexit.register
def _end_at_exit() -> None:
    """A process that exits with a sweep still open (not through `harness`) ends it FAILED."""
    if _open:
        end_open_sweeps(RuntimeError("the sweep's process exited before the sweep ended"))


def _outcome(error: BaseException | None) -> tuple[str, str]:
    """The parent's status and reason for how the sweep stopped."""
    from harness.pipeline.signals import signal_name
    from harness.track.mlflow_log import redact

    if error is None or isinstance(error, _job_failure()):
        return "FINISHED", ""
    if isinstance(error, KeyboardInterrupt):
        return "KILLED", f"{signal_name(error)}: the sweep was interrupted"
    return "FAILED", redact(f"the launcher or sweeper failed: {type(error).__name__}: {error}")


def _job_failure() -> type[BaseException]:
    from harness.pipeline.app import SweepJobFailed

    return SweepJobFailed


def _job_name(run: Any) -> str:
    tags = run.data.tags
    job = tags.get("harness.sweep_job")
    what = f"job {job}" if job is not None else f"run {run.info.run_id[:8]}"
    overrides = tags.get("harness.job_overrides")
    return f"{what} ({overrides})" if overrides else what


def _sweep_circuits(config: DictConfig) -> list[Any]:
    """The distinct circuits of the jobs a basic sweep will run (the base circuit for other sweepers)."""
    from hydra import compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from harness.pipeline.build import build_circuit

    task = list(config.hydra.overrides.task)
    parser = OverridesParser.create()
    if config.hydra.sweeper._target_.endswith("BasicSweeper"):
        params = config.hydra.sweeper.get("params") or {}
        parsed = parser.parse_overrides(task + [f"{k}={v}" for k, v in params.items()])
        batches = BasicSweeper.split_arguments(parsed, None)
        jobs = [list(job) for batch in batches for job in batch]
    else:  # other sweepers choose values as they go: the base config without the swept keys
        jobs = [[o.input_line for o in parser.parse_overrides(task) if not o.is_sweep_override()]]
    seen: dict[str, Any] = {}
    for job in jobs:
        try:
            circuit = build_circuit(compose(config_name="config", overrides=job))
        except HarnessError:  # that job fails with this error itself, as one failed job of the sweep
            continue
        seen.setdefault(circuit.structure_hash(), circuit)
    return list(seen.values())
