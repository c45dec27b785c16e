"""The `harness` command: `harness demo` (seed scenarios, a synthetic L2 market replay checked against the
reference, a fit); unknown verbs, `--help` and Hydra's errors without the internal schemas, a closed stdout, and
what the command imports before it does anything (startup)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from harness import cli
from harness.cli import main


def line_of(text: str, start: str) -> str:
    """The one line of `text` that starts with `start`."""
    (found,) = [row for row in text.splitlines() if row.startswith(start)]
    return found


def test_main_job_runs_and_writes_a_complete_result(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "result.parquet"
    params = tmp_path / "params.json"
    argv = ["--events", "30000", "--seed", "1", "--out", str(out), "--draw", str(tmp_path / "c.dot")]
    assert main(["demo", *argv, "--fit-epochs", "5", "--params", str(params)]) == 0
    printed = capsys.readouterr().out
    assert "seed scenarios" in printed and "events/s" in printed
    assert "fit of fit_market.pred" in printed and "test R² / IC" in printed
    assert set(json.loads(params.read_text())) == {"hl_press", "hl_mid", "scale", "w0", "w1", "w2"}
    table = pq.read_table(out)
    assert 0 < table.num_rows < 30000
    assert table.column_names == ["t", "source", "mid", "spread", "imbalance", "pressure", "label_mid_return_1s"]
    assert set(table.column("source").to_pylist()) == {"trade"}
    assert not list(tmp_path.glob("*.partial"))
    assert (tmp_path / "c.dot").read_text().startswith('digraph "market_pressure"')


def test_python_dash_m_and_bad_arguments() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "harness", "demo", "--events", "200", "--fit-epochs", "0"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    bad = subprocess.run([sys.executable, "-m", "harness", "demo", "--events", "-5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--events must be >= 0" in bad.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "harness", "demo", "--fit-epochs", "-1"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--fit-epochs must be >= 0" in bad.stderr


# ----- the command line: verbs, help, streams, startup ---------------------------------------------------------
def harness(*argv: str, close_stdout: bool = False) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGV` in a fresh process (stdout closed before it writes when `close_stdout`)."""
    if not close_stdout:
        return subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone, as with `| head` once it has its lines
    err = proc.stderr.read()
    return subprocess.CompletedProcess(proc.args, proc.wait(), "", err)


def test_an_unknown_verb_is_one_error_naming_it_the_closest_commands_and_the_verbs(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["lsit"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'lsit' (did you mean `harness runs list` or `harness data list`?)")
    for verb in ("harness runs", "harness data", "harness demo", "harness [KEY=VALUE ...]"):
        assert verb in err
    assert main(["demoo"]) == 2 and "did you mean `harness demo`?" in capsys.readouterr().err
    assert main(["zzz"]) == 2 and "unknown command 'zzz'\ncommands" in capsys.readouterr().err
    assert cli.unknown_command("show").startswith("error: unknown command 'show' (did you mean `harness runs show`?)")


def test_help_lists_the_verbs_and_the_groups_without_internal_schemas(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:\n  harness [KEY=VALUE ...]")
    assert "harness runs list|show|compare|replay|gc" in out and "harness data import|list|download" in out
    assert "_schema" not in out
    assert line_of(out, "circuit: ").startswith("circuit: custom, fit_market, fit_market_fixed, linear_xy")
    assert "trainer: adam, lbfgs, sgd" in out and "experiment: " in out
    assert "== Config ==" in out and "optimizer: adam" in out
    assert main(["trainer=sgd", "-h"]) == 0
    assert "optimizer: sgd" in capsys.readouterr().out  # the config as the command line composes it


def test_the_fast_group_listing_is_hydras_own(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert main(["--help"]) == 0
    fast = capsys.readouterr().out
    monkeypatch.setattr(cli, "_one_repository_group_listing", contextlib.nullcontext)
    assert main(["--help"]) == 0
    assert capsys.readouterr().out == fast


def test_hydra_errors_do_not_list_the_schemas(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["circuit=nope"]) == 1
    err = capsys.readouterr().err
    assert "Could not find 'circuit/nope'" in err and "\tfit_market\n" in err and "_schema" not in err
    assert cli.without_schemas("circuit: a, a_schema, b\n\tx_schema\n\ty\n") == "circuit: a, b\n\ty\n"


def test_a_closed_stdout_ends_quietly() -> None:
    for argv in (["--help"], ["runs", "--help"], ["demo", "--events", "200", "--fit-epochs", "0"]):
        res = harness(*argv, close_stdout=True)  # argparse's help ignores the error (0), rich's tables exit 1
        assert res.returncode in (0, 1, cli.EPIPE_EXIT), (argv, res.stderr)
        assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, (argv, res.stderr)


def test_help_and_the_run_tools_start_without_torch_or_mlflow(tmp_path: Path) -> None:
    """What makes a command slow to start: torch (~1 s), MLflow (~1.7 s with a store), pandas and
    pyarrow.dataset (~0.45 s, what the replay and streams layers read with) are not imported."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri).create_experiment("harness")
    probe = (
        "import sys, io, contextlib\n"
        "from harness.cli import main\n"
        "commands = [['--help'], ['runs', '--help'], ['runs', 'list', '--tracking-uri', sys.argv[1]], ['lsit']]\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main(c) for c in commands]\n"
        "heavy = ('torch', 'mlflow', 'pandas', 'pyarrow.dataset')\n"
        "print(codes, sorted(m for m in heavy if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", probe, uri], capture_output=True, text=True)
    assert res.stdout.strip() == "[0, 0, 0, 2] []", res.stderr


def test_the_pipeline_schema_reads_trainer_config_as_the_class_defines_it() -> None:
    """The trainer schema comes from TrainerConfig's source (importing the class loads torch): the same fields,
    types and defaults as the class (epochs 100 in the pipeline)."""
    import dataclasses

    from harness.fit.trainer import TrainerConfig
    from harness.pipeline import schema

    def fields(cls: type) -> list[tuple[str, object, object]]:
        return [(f.name, f.type, f.default) for f in dataclasses.fields(cls)]

    expected = schema._schema_of(schema._fields_of(TrainerConfig), "Expected", epochs=100)
    assert fields(schema.TrainerConf) == fields(expected)
    assert len(fields(expected)) == len(dataclasses.fields(TrainerConfig))


def test_the_pipeline_schema_reads_the_stream_rules_as_the_class_defines_them() -> None:
    """The stream rules' schema comes from Rules' source (importing it loads the streams package): the same
    fields, types and defaults as the class."""
    import dataclasses

    from harness.pipeline import schema
    from harness.streams.rules import Rules

    def fields(cls: type) -> list[tuple[str, object, object]]:
        return [(f.name, f.type, f.default) for f in dataclasses.fields(cls)]

    expected = schema._schema_of(schema._fields_of(Rules), "Expected")
    assert fields(schema.StreamRulesConf) == fields(expected)
    assert [f[0] for f in fields(expected)] == [f.name for f in dataclasses.fields(Rules)]


def test_hydra_and_job_logs_go_to_stderr_unless_the_command_line_picks_other_logging() -> None:
    import yaml

    res = harness("--cfg", "hydra", "trainer=sgd")
    assert res.returncode == 0, res.stderr
    hydra = yaml.safe_load(res.stdout)["hydra"]
    for key in ("job_logging", "hydra_logging"):
        assert hydra[key]["handlers"]["console"]["stream"] == "ext://sys.stderr", key
    assert hydra["overrides"]["task"] == ["trainer=sgd"]  # what a run logs as its overrides: the user's only
    assert cli.hydra_argv(["--info"], {"hydra/help": "harness"}) == ["harness", "hydra/help=harness", "--info"]
    assert cli.hydra_argv(["-m", "a=1,2", "hydra/job_logging=disabled"], cli.HYDRA_LOGGING) == [
        "harness", "-m", "hydra/hydra_logging=harness", "a=1,2", "hydra/job_logging=disabled",
    ]  # fmt: skip
