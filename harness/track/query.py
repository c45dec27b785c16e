"""Runs in the MLflow store looked up by what people type: an id or a unique prefix of it, experiment names.

Used by `harness runs` and run replay (`harness.runs`). A sqlite store that does not exist is an error here, not
created (looking at runs must not make an empty store).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
MAX_CANDIDATES = 10  # runs listed when a prefix is ambiguous


class RunsError(HarnessError):
    """A run or experiment that cannot be found, an ambiguous run prefix, or a store that cannot be read."""


def open_client(uri: str) -> MlflowClient:
    """A client for `uri`; a sqlite store must already exist (looking at runs must not create an empty one)."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        if str(path) != ":memory:" and not path.is_file():
            raise RunsError(f"no MLflow store at {path} (nothing tracked there yet?); pass --tracking-uri")
    return MlflowClient(tracking_uri=uri)


def experiment_ids(client: MlflowClient, names: Iterable[str] | None) -> dict[str, str]:
    """Experiment id -> name for the named experiments (None: every active one); unknown names are errors."""
    if names is None:
        found = {e.experiment_id: e.name for e in client.search_experiments()}
        if not found:
            raise RunsError("the store has no experiments")
        return found
    out: dict[str, str] = {}
    for name in names:
        exp = client.get_experiment_by_name(name)
        if exp is None or exp.lifecycle_stage != "active":
            known = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
            raise RunsError(f"no experiment named {name!r} (experiments: {known})")
        out[exp.experiment_id] = exp.name
    return out


def resolve_run(client: MlflowClient, run: str, experiments: list[str]) -> Run:
    """The run whose id is `run` or starts with it, searched in the named experiments (a full 32-character id
    is found in any experiment). Raises RunsError when no run matches or the prefix names several (listed)."""
    from mlflow.exceptions import MlflowException

    prefix = run.strip().lower()
    if not re.fullmatch(r"[0-9a-z-]+", prefix):
        raise RunsError(f"{run!r} is not a run id or id prefix")
    if len(prefix) == 32:
        try:
            return client.get_run(prefix)
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    ids = experiment_ids(client, experiments)
    found = client.search_runs(
        list(ids), filter_string=f"attributes.run_id LIKE '{prefix}%'", max_results=MAX_CANDIDATES + 1
    )
    return the_one(run, found, ids)


def the_one(run: str, found: list[Any], ids: dict[str, str]) -> Any:
    """The single run among those whose id starts with `run` (up to MAX_CANDIDATES + 1 searched in the experiments
    `ids`); RunsError naming the prefix when there is none or more than one."""
    where = ", ".join(repr(n) for n in ids.values())
    if not found:
        raise RunsError(f"no run with id {run!r} or starting with it in experiment {where}")
    if len(found) > 1:
        names = ", ".join(f"{r.info.run_id} ({r.info.run_name})" for r in found[:MAX_CANDIDATES])
        more = " and more" if len(found) > MAX_CANDIDATES else ""
        raise RunsError(f"run prefix {run!r} is ambiguous: {names}{more}")
    return found[0]


def children_of(client: MlflowClient, run: Run) -> list[Run]:
    """The child runs of `run` (sweep jobs carry their parent in the tag mlflow.parentRunId), oldest first."""
    return client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.{PARENT_TAG} = '{run.info.run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=10_000,
    )
