"""Hydra callback that makes a sweep one MLflow parent run with a child run per job.

Before any job starts (in the controller process) it creates the tracking store once, opens the parent run,
and compiles the sweep's kernels once, so parallel jobs neither race to create a sqlite store nor compile the
same kernel side by side. Jobs find the parent through $HARNESS_PARENT_RUN_ID (inherited by local launchers'
workers) or the file `.mlflow_parent_run` in the sweep folder (cluster launchers on a shared file system).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class MlflowSweepCallback(Callback):
    """Parent run for a multirun; single runs are left alone."""

    def __init__(self) -> None:
        self.parent: str | None = None
        self.uri: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        from harness.pipeline.run import PARENT_ENV
        from harness.track import store

        self.uri = store.tracking_uri(config.tracking.uri)
        experiment_id = store.ensure_experiment(self.uri, config.tracking.experiment)
        client = MlflowClient(tracking_uri=self.uri)
        overrides = list(config.hydra.overrides.task)
        name = config.tracking.run_name or "sweep"
        run = client.create_run(
            experiment_id,
            run_name=name,
            tags={"harness.sweep": "parent", "harness.sweep_overrides": " ".join(overrides)},
        )
        self.parent = run.info.run_id
        os.environ[PARENT_ENV] = self.parent
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / ".mlflow_parent_run").write_text(self.parent + "\n")
        log.info("sweep parent run %s in %s", self.parent, self.uri)
        self._precompile(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        from harness.pipeline.run import PARENT_ENV

        if self.parent is None:
            return
        client = MlflowClient(tracking_uri=self.uri)
        run = client.get_run(self.parent)
        children = client.search_runs(
            [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{self.parent}'", max_results=10_000
        )
        objective = config.task.objective
        values = [c.data.metrics.get(objective, math.nan) for c in children if c.info.status == "FINISHED"]
        finite = [v for v in values if math.isfinite(v)]
        client.log_metric(self.parent, "children", len(children))
        client.log_metric(self.parent, "children_failed", sum(c.info.status != "FINISHED" for c in children))
        if finite:
            client.log_metric(self.parent, f"best_{objective}", min(finite))
        failed = any(c.info.status == "FAILED" for c in children)
        client.set_terminated(self.parent, status="FAILED" if failed else "FINISHED")
        os.environ.pop(PARENT_ENV, None)

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
        cfg = compose(config_name="config", overrides=job)
        circuit = build_circuit(cfg)
        seen.setdefault(circuit.structure_hash(), circuit)
    return list(seen.values())
