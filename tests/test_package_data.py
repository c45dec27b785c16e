"""Where the configs, experiments and C++ headers are (`harness.package_data`: in a wheel or in the checkout), and a
user's own config directories on Hydra's search path (`harness.pipeline.user_conf`: $HARNESS_CONF, ./conf).
The wheel itself is built and run in tests/test_install.py (marked `install`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir

from harness import package_data
from harness.cli import main
from harness.codegen.toolchain import runtime_include_dir
from harness.errors import HarnessError
from harness.pipeline import schema, user_conf
from harness.pipeline.targets import ConfigError


def test_the_checkout_reads_its_own_conf_experiments_and_headers() -> None:
    here = package_data.layout()
    assert here.checkout == ROOT and not here.installed
    assert (here.conf, here.experiments, here.include) == (ROOT / "conf", ROOT / "experiments", ROOT / "cpp")
    assert here.primary_config_path == str(ROOT / "conf")
    assert runtime_include_dir() == ROOT / "cpp"
    assert schema.CONF_DIR == ROOT / "conf" and schema.ROOT == ROOT


def test_an_installed_package_reads_its_copies_through_pkg(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "harness"
    (package / "conf").mkdir(parents=True)
    (package / "conf" / "config.yaml").write_text("defaults: []\n")
    wheel = package_data.layout(package)
    assert wheel.installed and wheel.checkout is None
    assert (wheel.conf, wheel.experiments, wheel.include) == (
        package / "conf", package / "experiments", package / "include",
    )  # fmt: skip
    assert wheel.primary_config_path == "pkg://harness.conf"


def test_a_package_with_neither_layout_says_so(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"neither inside the package .*harness/conf.* nor in a source checkout"):
        package_data.layout(tmp_path / "harness")


def test_user_conf_dirs_are_harness_conf_then_the_working_directorys_conf(tmp_path: Path) -> None:
    a, b, cwd = tmp_path / "a", tmp_path / "b", tmp_path / "work"
    for d in (a, b, cwd / "conf"):
        d.mkdir(parents=True)
    env = {user_conf.ENV: f"{a}{os.pathsep}../b"}  # relative entries are relative to the working directory
    assert user_conf.user_conf_dirs(cwd, env) == [a, b, cwd / "conf"]
    assert user_conf.user_conf_dirs(cwd, {}) == [cwd / "conf"]
    assert user_conf.user_conf_dirs(tmp_path, {}) == []  # no ./conf: nothing
    assert user_conf.user_conf_dirs(ROOT, {}) == []  # the checkout's own conf/ is the built-in one, not a user's
    with pytest.raises(ConfigError, match=r"HARNESS_CONF=.*missing is not a directory"):
        user_conf.user_conf_dirs(cwd, {user_conf.ENV: str(tmp_path / "missing")})


def write_user_conf(root: Path) -> None:
    (root / "circuit").mkdir(parents=True)
    (root / "circuit" / "mine.yaml").write_text("target: harness.circuits:linear_xy\ninit: 0.25\n")
    (root / "experiment").mkdir()
    (root / "experiment" / "mine.yaml").write_text("# @package _global_\nstream:\n  events: 4321\n")


def test_a_users_options_compose_and_show_in_the_help(workdir: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    write_user_conf(workdir / "conf")
    schema.register()
    with initialize_config_dir(config_dir=str(schema.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["circuit=mine", "+experiment=mine"])
    assert cfg.circuit.target == "harness.circuits:linear_xy" and cfg.circuit.init == 0.25
    assert cfg.stream.events == 4321
    assert main(["--help"]) == 0
    groups = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines() if ": " in line)
    assert "mine" in groups["circuit"].split(", ") and "mine" in groups["experiment"].split(", ")
    assert "quick" in groups["experiment"]  # the built-in experiments are still there


def test_harness_conf_adds_a_directory_and_a_bad_one_is_one_error(workdir: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    team = workdir / "team"
    write_user_conf(team)
    monkeypatch.setenv(user_conf.ENV, str(team))
    schema.register()
    with initialize_config_dir(config_dir=str(schema.CONF_DIR), version_base="1.3"):
        assert compose("config", overrides=["+experiment=mine"]).stream.events == 4321
    monkeypatch.setenv(user_conf.ENV, str(workdir / "nope"))
    assert main(["--cfg", "job"]) == 1
    err = capsys.readouterr().err
    assert f"HARNESS_CONF={workdir / 'nope'}: {workdir / 'nope'} is not a directory" in err
    assert "Traceback" not in err


def test_the_lock_beside_the_sqlite_store_is_ignored_by_git() -> None:
    """filelock leaves `mlflow.db.lock` beside the store: `git status` must not show it."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    inside = subprocess.run([git, "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True)
    if inside.returncode != 0 or Path(inside.stdout.strip()).resolve() != ROOT.resolve():
        pytest.skip(f"{ROOT} is not the root of a git checkout")
    for name in ("mlflow.db.lock", "experiments/other.db.lock"):
        assert subprocess.run([git, "check-ignore", "-q", name], cwd=ROOT).returncode == 0, name
    assert subprocess.run([git, "check-ignore", "-q", "harness/cli.py"], cwd=ROOT).returncode == 1
