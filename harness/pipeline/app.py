"""The Hydra application behind `harness` (and `python -m harness`): compose the config, run the pipeline,
return the objective (for sweepers)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console

from harness.errors import HarnessError
from harness.pipeline import schema

schema.register()
_STARTED = time.perf_counter()


@hydra.main(config_path=str(schema.CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """One job: run the pipeline on the composed config and return `task.objective`."""
    from harness.pipeline.run import run

    compose_s = time.perf_counter() - _STARTED
    hc = HydraConfig.get()
    output = Path(hc.runtime.output_dir)
    try:
        return run(cfg, hydra_dir=output, compose_s=compose_s).objective
    except HarnessError as e:
        if hc.mode == RunMode.MULTIRUN:
            raise  # the launcher reports the failed job
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        sys.exit(2)  # a clear message, not a traceback; the MLflow run is already marked FAILED
