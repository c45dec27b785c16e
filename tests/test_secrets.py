"""No secrets in runs: credentials in URIs are redacted (`user:***@host`, `?password=***`) in params, tags and
every logged config; logged configs hold the values resolved at run time, and a replay never resolves the
replayer's environment into its run."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.errors import HarnessError
from harness.track.mlflow_log import load_config, redact, redact_data

QUICK = ["stream.events=20000", "trainer.epochs=2", "tracking.plots=false"]
DSN = "postgresql://harness:dsn-s3cret@db.internal:5432/mlflow"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("http://alice:pw@mlflow.lan:5000", "http://alice:***@mlflow.lan:5000"),
        ("postgresql://harness:p@ss:w0rd@db:5432/x", "postgresql://harness:***@db:5432/x"),  # an unencoded @
        ("https://user:tok%40en@host/path?q=1", "https://user:***@host/path?q=1"),
        ("sqlite:////data/mlflow.db?password=hunter2&mode=ro", "sqlite:////data/mlflow.db?password=***&mode=ro"),
        ("mysql://h/db?user=u&api_key=k3y", "mysql://h/db?user=u&api_key=***"),
        ("tracking: s3://AKIA:SECRET@bucket and http://h:5000", "tracking: s3://AKIA:***@bucket and http://h:5000"),
        ("postgresql://harness@db/mlflow", "postgresql://harness@db/mlflow"),  # no password: nothing to hide
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("a:b@c is not a uri", "a:b@c is not a uri"),
    ],
)
def test_redact_hides_uri_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_data_hides_secret_keys_and_uris_at_any_depth() -> None:
    data = {"tracking": {"uri": DSN, "api_token": "t0k", "password": None}, "files": ["ftp://a:b@h/f"], "n": 3}
    assert redact_data(data) == {
        "tracking": {"uri": "postgresql://harness:***@db.internal:5432/mlflow", "api_token": "***", "password": None},
        "files": ["ftp://a:***@h/f"],
        "n": 3,
    }


def test_load_config_keeps_interpolation_text_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLAYER_SECRET", "leaked")
    values = ["${oc.env:REPLAYER_SECRET}", "a\\${oc.env:REPLAYER_SECRET}", "b\\\\${x}", "${tracking.uri}", "plain\\n"]
    path = tmp_path / "resolved.yaml"
    path.write_text("".join(f"k{i}: '{v}'\n" for i, v in enumerate(values)) + "tracking: {uri: http://h}\n")
    cfg = load_config(path)
    assert [cfg[f"k{i}"] for i in range(len(values))] == values  # each exactly as logged, nothing resolved
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n")
    with pytest.raises(HarnessError, match="list.yaml: not a logged config"):
        load_config(bad)


@pytest.fixture
def workdir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("REPLAYER_SECRET", raising=False)
    return workdir


def logged_text(client: MlflowClient, run_id: str, into: Path) -> dict[str, str]:
    """Every text artifact of the run (path -> content), its params and tags (as `param:`/`tag:` entries)."""
    run = client.get_run(run_id)
    out = {f"param:{k}": v for k, v in run.data.params.items()}
    out.update({f"tag:{k}": v for k, v in run.data.tags.items()})
    for d in run.inputs.dataset_inputs:
        out.update({f"dataset:{t.key}": t.value for t in d.tags} | {"dataset:source": d.dataset.source})
    root = Path(client.download_artifacts(run_id, "", str(into)))
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".json", ".cpp", ".dot"):
            out[path.relative_to(root).as_posix()] = path.read_text()
    return out


def test_credentials_are_redacted_in_params_tags_and_logged_configs(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARNESS_TEST_DSN", DSN)
    uri = f"sqlite:///{workdir / 'mlflow.db'}?password=uri-s3cret"  # a real store with a credential in its URI
    assert main([f"tracking.uri='{uri}'", "tracking.run_name=${oc.env:HARNESS_TEST_DSN}", *QUICK]) == 0
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    logged = logged_text(client, run.info.run_id, workdir / "download")
    leaks = [key for key, text in logged.items() if "s3cret" in text]
    assert not leaks, leaks
    assert logged["param:tracking.uri"].endswith("/mlflow.db?password=***")
    assert logged["param:tracking.run_name"] == "postgresql://harness:***@db.internal:5432/mlflow"
    assert logged["tag:mlflow.runName"] == "postgresql://harness:***@db.internal:5432/mlflow"
    for name in ("config/resolved.yaml", "hydra/config.yaml"):  # resolved when the run ran, then redacted
        assert "run_name: postgresql://harness:***@db.internal:5432/mlflow" in logged[name], name
        assert "${oc.env" not in logged[name] and "password=***" in logged[name], name
    assert "password=***" in logged["hydra/overrides.yaml"] and "password=***" in logged["hydra/hydra.yaml"]
    assert "tracking.run_name=${oc.env:HARNESS_TEST_DSN}" in logged["hydra/overrides.yaml"]  # as typed
    assert main(["runs", "show", run.info.run_id, "--tracking-uri", uri]) == 0
    assert "s3cret" not in capsys.readouterr().out


def test_replay_never_resolves_the_replayers_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    literal = "${oc.env:REPLAYER_SECRET}"
    assert main(["tracking.run_name=\\" + literal, *QUICK]) == 0  # an escaped interpolation: the text itself
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("harness").experiment_id
    (original,) = client.search_runs([exp])
    assert original.data.params["tracking.run_name"] == literal
    monkeypatch.setenv("REPLAYER_SECRET", "replayer-s3cret")
    assert main(["runs", "replay", original.info.run_id, "--tracking-uri", uri]) == 0, capsys.readouterr().out
    (replay,) = [r for r in client.search_runs([exp]) if r.info.run_id != original.info.run_id]
    assert replay.data.tags["harness.replay_of"] == original.info.run_id
    logged = logged_text(client, replay.info.run_id, workdir / "download")
    assert logged["param:tracking.run_name"] == literal
    assert f"run_name: {literal}" in logged["config/resolved.yaml"]
    leaks = [key for key, text in logged.items() if "replayer-s3cret" in text]
    assert not leaks, leaks
