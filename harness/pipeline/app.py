"""The Hydra application behind `harness` (and `python -m harness`): compose the config, run the pipeline,
return the objective (for sweepers).

A single run that fails prints one line and exits 2 (its MLflow run is already FAILED). A sweep job that fails
raises `SweepJobFailed` (a one-line, picklable error naming the job) so the launcher records the failure and the
other jobs still run; the sweep's parent run is ended by `harness.runs.sweep`. SIGTERM and SIGHUP are
handled like Ctrl-C (`harness.pipeline.signals`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from harness.errors import HarnessError
from harness.pipeline import schema, signals

schema.register()
log = logging.getLogger(__name__)
SWEEP_PID_ENV = "HARNESS_SWEEP_PID"  # the pid of the process that runs the sweep (set by the sweep callback)
_clock: float | None = None  # when this process handed a command line to Hydra (start_clock)


class SweepJobFailed(HarnessError):
    """A job of a sweep failed (its run is FAILED or KILLED); the message names the job and the error."""


def start_clock() -> None:
    """Mark now as the start of composing a command line (`stage/compose_s` of the run it becomes)."""
    global _clock
    _clock = time.perf_counter()


def take_compose_time() -> float:
    """Seconds since `start_clock` in this process (0.0 when it was not called); the clock is used once."""
    global _clock
    started, _clock = _clock, None
    return time.perf_counter() - started if started is not None else 0.0


@hydra.main(config_path=schema.LAYOUT.primary_config_path, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """One job: run the pipeline on the composed config and return `task.objective`."""
    from harness.pipeline.run import run
    from harness.track.mlflow_log import redact

    hc = HydraConfig.get()
    output = Path(hc.runtime.output_dir)
    if hc.mode != RunMode.MULTIRUN:
        try:
            with signals.as_interrupts():
                return run(cfg, hydra_dir=output, compose_s=take_compose_time()).objective
        except HarnessError as e:
            Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
            sys.exit(2)  # a clear message, not a traceback; the MLflow run is already marked FAILED
    # a sweep job: its config was composed by the launcher, so the job's stages start here (no compose stage)
    job = f"job {hc.job.num} ({' '.join(hc.overrides.task)})"
    tags = {"harness.sweep_job": str(hc.job.num), "harness.job_overrides": " ".join(hc.overrides.task)}
    try:
        with signals.as_interrupts():
            return run(cfg, hydra_dir=output, extra_tags=tags).objective
    except HarnessError as e:
        raise SweepJobFailed(redact(f"{job}: {type(e).__name__}: {e}")) from None
    except KeyboardInterrupt as e:
        if os.environ.get(SWEEP_PID_ENV) == str(os.getpid()):
            raise  # the sweep's own process: the whole sweep stops
        raise SweepJobFailed(f"{job}: interrupted by {signals.signal_name(e)}") from None
    except Exception as e:  # a bug: the traceback goes to the job's log, the sweep goes on
        log.exception("%s failed", job)
        raise SweepJobFailed(redact(f"{job}: {type(e).__name__}: {e}")) from None
