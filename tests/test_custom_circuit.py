"""Your own circuit and stream in the pipeline: a module outside the repository (or one in a package of yours),
named by `circuit.target` / `stream.target`, runs, logs, sweeps (in a fresh process) and replays like a built-in
one; mistakes are ConfigErrors naming the key and the target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

import harness as hs
from harness.cli import main
from harness.pipeline import build, schema

USER_MODULE = '''
"""A researcher's signals, kept outside the harness repository."""
import harness as hs


def build(halflife: float = 1.0, scale: float = 1e-4, name: str = "my_signals") -> hs.Circuit:
    c = hs.Circuit(name)
    md = hs.lib.market(c)
    flow = hs.ops.tanh(hs.ops.decay_sum(md.signed_amount, halflife=c.parameter("hl", init=halflife, lower=0.01)))
    imbalance = (md.bid_size - md.ask_size) / (md.bid_size + md.ask_size)
    c.output("pred", (c.parameter("w0", init=0.1) * flow + c.parameter("w1", init=0.1) * imbalance) * scale)
    c.output("mid", md.mid)
    return c


def events(n: int = 20000, seed: int = 3):
    return hs.streams.synthetic(n, seed=seed)


def not_a_circuit(halflife: float = 1.0):
    return {"halflife": halflife}
'''
BROKEN_MODULE = '"""A module whose import fails."""\n\nVALUE = 1\nOTHER = undefined_name\n'
CUSTOM = ["circuit=custom", "circuit.target=my_signals:build"]


@pytest.fixture
def user_module(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`my_signals.py` (and `broken_signals.py`) in a folder outside the repository, on sys.path and PYTHONPATH."""
    folder = tmp_path_factory.mktemp("research")
    assert ROOT not in folder.parents
    (folder / "my_signals.py").write_text(USER_MODULE)
    (folder / "broken_signals.py").write_text(BROKEN_MODULE)
    yield from _importable(folder, ("my_signals", "broken_signals"), monkeypatch)


@pytest.fixture
def user_package(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package `my_pkg` (`__init__.py`, `signals.py`) in a folder outside the repository, on sys.path."""
    folder = tmp_path_factory.mktemp("research_pkg")
    assert ROOT not in folder.parents
    (folder / "my_pkg").mkdir()
    (folder / "my_pkg" / "__init__.py").write_text('"""A researcher\'s package."""\n')
    (folder / "my_pkg" / "signals.py").write_text(USER_MODULE)
    yield from _importable(folder, ("my_pkg", "my_pkg.signals"), monkeypatch)


def _importable(folder: Path, modules: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`folder` on sys.path and PYTHONPATH with `modules` freshly imported from it; forgotten afterwards."""
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    yield folder
    for name in modules:
        sys.modules.pop(name, None)


def composed(overrides: list[str]):  # type: ignore[no-untyped-def]
    schema.register()
    with initialize_config_dir(config_dir=str(schema.CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def runs_of(path: Path) -> list:  # type: ignore[type-arg]
    client = MlflowClient(tracking_uri=f"sqlite:///{path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("harness")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def replay(workdir: Path, run_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`harness runs replay RUN` in this process: every check identical."""
    capsys.readouterr()
    assert main(["runs", "replay", run_id, "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]) == 0
    out = capsys.readouterr().out
    assert "identical" in out and "NO" not in out
    assert runs_of(workdir)[-1].data.tags["harness.replay_of"] == run_id


def test_a_user_circuit_and_stream_run_log_and_replay(
    workdir: Path, user_module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = ["stream=custom", "stream.target=my_signals:events", "+stream.n=20000", "stream.limit=15000"]
    assert main([*CUSTOM, "+circuit.halflife=2.0", *stream, "trainer.epochs=3"]) == 0
    (run,) = runs_of(workdir)
    assert run.info.status == "FINISHED"
    p, tags = run.data.params, run.data.tags
    assert (p["circuit.target"], p["circuit.halflife"], p["stream.target"]) == (
        "my_signals:build", "2.0", "my_signals:events",
    )  # fmt: skip
    assert len(tags["harness.kernel_hash"]) == 64  # the compiled kernel of the user's circuit
    assert tags["harness.data_digest"] == hs.streams.digest(hs.streams.synthetic(20000, seed=3).slice(0, 15000))
    assert run.inputs.dataset_inputs[0].dataset.name == "my_signals:events"
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    assert "kernel/my_signals.cpp" in [a.path for a in client.list_artifacts(run.info.run_id, "kernel")]
    params = json.loads(Path(client.download_artifacts(run.info.run_id, "fit/params.json", str(workdir))).read_text())
    assert set(params) == {"hl", "w0", "w1"}  # the user circuit's parameters were fitted and logged
    replay(workdir, run.info.run_id, capsys)
    sys.path.remove(str(user_module))  # the module is gone: the replay says so in one line
    sys.modules.pop("my_signals")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    assert main(["runs", "replay", run.info.run_id, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "no module named 'my_signals'" in err and "PYTHONPATH" in err and "Traceback" not in err


def test_a_circuit_in_a_users_package_runs_logs_and_replays(
    workdir: Path, user_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`circuit.target=my_pkg.signals:build`: a module inside a package of the user's, through the pipeline."""
    target = "my_pkg.signals:build"
    assert main(["circuit=custom", f"circuit.target={target}", "stream.events=20000", "trainer.epochs=2"]) == 0
    (run,) = runs_of(workdir)
    assert run.info.status == "FINISHED" and run.data.params["circuit.target"] == target
    assert sys.modules["my_pkg.signals"].__file__ == str(user_package / "my_pkg" / "signals.py")
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    params = json.loads(Path(client.download_artifacts(run.info.run_id, "fit/params.json", str(workdir))).read_text())
    assert set(params) == {"hl", "w0", "w1"}  # the package's circuit was fitted
    replay(workdir, run.info.run_id, capsys)


@pytest.mark.heavy
def test_a_sweep_of_a_user_circuit_from_its_own_yaml(
    workdir: Path, user_module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A YAML of the user's own (`--config-dir`) names the function and its defaults: sweeps need no `+`."""
    conf = user_module / "conf"
    (conf / "circuit").mkdir(parents=True)
    (conf / "circuit" / "my_signals.yaml").write_text("target: my_signals:build\nhalflife: 1.0\nscale: 1.0e-4\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID")}
    cmd = [sys.executable, "-m", "harness", "--config-dir", str(conf), "-m", "circuit=my_signals"]
    cmd += ["circuit.halflife=1.0,2.0", "stream.events=20000", "trainer.epochs=2"]
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = runs_of(workdir)
    (parent,) = [r for r in runs if r.data.tags.get("harness.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["circuit.halflife"] for r in children) == ["1.0", "2.0"]
    assert all(r.info.status == "FINISHED" and r.data.params["circuit.target"] == "my_signals:build" for r in children)
    assert parent.info.status == "FINISHED" and parent.data.metrics["children"] == 2
    replay(workdir, children[0].info.run_id, capsys)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["circuit=custom"], r"circuit.target is not set: name the function"),
        (
            ["circuit=custom", "circuit.target=no_such_pkg.signals:build"],
            r"circuit.target='no_such_pkg.signals:build': no module named 'no_such_pkg'.*PYTHONPATH",
        ),
        (
            ["circuit=custom", "circuit.target=my_signals:buld"],
            r"module 'my_signals' \(.*my_signals.py\) has no 'buld' \(its functions: build, events, not_a_circuit\)",
        ),
        (
            ["circuit=custom", "circuit.target=my_signals:not_a_circuit"],
            r"circuit.target='my_signals:not_a_circuit' returned dict, not a harness.Circuit",
        ),
        (
            [*CUSTOM, "+circuit.halflif=2"],
            r"cannot be called with the config's keys \(circuit.halflif\).*its parameters: halflife, scale, name",
        ),
        (
            ["circuit=custom", "circuit.target=broken_signals:build"],
            r"importing 'broken_signals' failed: NameError: .*undefined_name.* \(.*broken_signals.py:4\)",
        ),
        (["circuit=custom", "circuit.target=my_signals"], r"must name a function as 'package.module:function'"),
        (
            ["stream=custom", "stream.target=my_signals:build"],
            r"stream.target='my_signals:build' returned Circuit, not a pyarrow.Table of events",
        ),
    ],
)
def test_mistakes_are_config_errors_naming_the_key(user_module: Path, overrides: list[str], message: str) -> None:
    cfg = composed(overrides)
    with pytest.raises(build.ConfigError, match=message):
        build.load_stream(cfg) if overrides[0].startswith("stream") else build.build_circuit(cfg)


def test_a_dotted_target_names_the_same_function(user_module: Path) -> None:
    dotted = build.build_circuit(composed(["circuit=custom", "circuit.target=my_signals.build", "+circuit.halflife=3"]))
    colon = build.build_circuit(composed([*CUSTOM, "+circuit.halflife=3"]))
    assert dotted.structure_hash() == colon.structure_hash() and dotted.name == "my_signals"


def test_a_user_circuit_that_fails_ends_its_run_failed_naming_the_target(
    workdir: Path, user_module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["circuit=custom", "circuit.target=my_signals:not_a_circuit", "+circuit.halflife=2"])
    assert exit_.value.code == 2
    assert "returned dict, not a harness.Circuit" in capsys.readouterr().err
    (run,) = runs_of(workdir)
    assert run.info.status == "FAILED"
    assert "circuit.target='my_signals:not_a_circuit' returned dict" in run.data.tags["harness.error"]
    assert run.data.params["circuit.halflife"] == "2"
