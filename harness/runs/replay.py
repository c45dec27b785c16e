"""`harness runs replay RUN`: rebuild a logged run from its resolved config and check it comes out the same.

1. Read the run's `config/resolved.yaml` and identity tags.
2. Refuse (exit 3) when the data differs (the stream's content digest is not `harness.data_digest`) or the code
   differs (the recording kernel's hash is not `harness.kernel_hash`: generated source, flags, compiler,
   pybind11, Python ABI, runtime headers). A different git commit alone is reported, not refused.
3. Run the pipeline again as a new run tagged `harness.replay_of=RUN`, and compare the recorded data
   (`harness.record_digest`), the kernel's predictions (`harness.prediction_digest`) and the fitted parameters
   (`fit/params.json`) bit for bit. Exit 0 only when all are identical, 1 otherwise.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from harness.errors import HarnessError
from harness.pipeline.build import Events
from harness.track import mlflow_log

REFUSED = 3


class ReplayRefused(HarnessError):
    """The run cannot be replayed as it was: its data or its code is not the same any more."""


def main(run: str, *, tracking_uri: str, experiment: str = "harness", console: Console | None = None) -> int:
    """Replay run `run` (an id or unique prefix) of the store at `tracking_uri`; the exit code (see module doc)."""
    from mlflow.tracking import MlflowClient

    from harness.track.query import resolve_run

    console = console or Console()
    client = MlflowClient(tracking_uri=tracking_uri)
    original = resolve_run(client, run, [experiment])
    run_id = original.info.run_id
    cfg, params = _logged(client, run_id)
    cfg.tracking.uri = tracking_uri
    tags = original.data.tags
    try:
        events = _check_inputs(cfg, tags, console)
    except ReplayRefused as e:
        console.print(f"[red]refused:[/red] {e}")
        return REFUSED

    from harness.pipeline.run import run as run_pipeline

    outcome = run_pipeline(cfg, extra_tags={"harness.replay_of": run_id}, console=console, events=events)
    checks = [
        (
            "recorded data (harness.record_digest)",
            tags.get("harness.record_digest"),
            outcome.tags["harness.record_digest"],
        ),
        (
            "kernel predictions (harness.prediction_digest)",
            tags.get("harness.prediction_digest"),
            outcome.tags["harness.prediction_digest"],
        ),
        ("fitted parameters (fit/params.json)", _canonical(params), _canonical(outcome.params)),
    ]
    table = Table(title=f"replay of {run_id} as {outcome.run_id}")
    table.add_column("check")
    table.add_column("identical")
    same = True
    for name, before, after in checks:
        ok = before is not None and before == after
        same &= ok
        table.add_row(name, "[green]yes" if ok else "[red]NO")
    console.print(table)
    if not same:
        console.print(f"[red]the replay differs from run {run_id}[/red]")
    return 0 if same else 1


def _logged(client, run_id: str) -> tuple[DictConfig, dict[str, float]]:  # type: ignore[no-untyped-def]
    """The run's resolved config and fitted parameters, from its artifacts."""
    with tempfile.TemporaryDirectory(prefix="harness-replay-") as tmp:
        try:
            config = client.download_artifacts(run_id, "config/resolved.yaml", tmp)
            params = client.download_artifacts(run_id, "fit/params.json", tmp)
        except Exception as e:
            raise HarnessError(
                f"run {run_id} cannot be replayed: its artifacts config/resolved.yaml and fit/params.json are "
                f"missing ({type(e).__name__}); only finished pipeline runs can be replayed"
            ) from None
        cfg = mlflow_log.load_config(Path(config))  # as logged: nothing resolved from this environment
        values = json.loads(Path(params).read_text())
    assert isinstance(cfg, DictConfig)
    return cfg, values


def _check_inputs(cfg: DictConfig, tags: dict[str, str], console: Console) -> Events:
    """Refuse when the data digest or the kernel hash differs from the run's; the loaded events otherwise."""
    from harness.codegen import compile_cpp
    from harness.fit.trace import trace
    from harness.pipeline import build, schema
    from harness.track import store

    events = build.load_stream(cfg)
    if events.digest != tags.get("harness.data_digest"):
        raise ReplayRefused(
            f"the data differs: the run was made on events with digest {tags.get('harness.data_digest')}, "
            f"the stream ({events.source}) now gives {events.digest}"
        )
    if cfg.task.backend == "cpp":
        recording = trace(build.build_circuit(cfg), cfg.task.target).recording_circuit()
        kernel_hash = compile_cpp(recording).kernel_hash
        if kernel_hash != tags.get("harness.kernel_hash"):
            raise ReplayRefused(
                f"the code differs: the run's kernel hash is {tags.get('harness.kernel_hash')}, this checkout "
                f"builds {kernel_hash} (generated source, compiler flags or toolchain changed)"
            )
    commit = store.git_state(schema.ROOT)["commit"]
    if commit != tags.get("harness.git_commit"):
        console.print(f"note: the run was made at commit {tags.get('harness.git_commit')}, this checkout is {commit}")
    return events


def _canonical(params: dict[str, float]) -> str:
    return json.dumps({k: float(v).hex() for k, v in params.items()}, sort_keys=True)
