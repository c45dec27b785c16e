"""Runs always end: signals (SIGTERM, SIGHUP) end a run KILLED in one line; a sweep's parent run always ends
(FINISHED with its failed jobs, FAILED when the launcher fails, KILLED on a signal); every run records host, pid
and a heartbeat, and `harness runs gc` (and the check any command makes when it opens the store) ends dead
RUNNING runs KILLED with the reason; stage times are measured inside the job."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.track import store

QUICK = ["stream.events=20000", "trainer.epochs=2", "tracking.plots=false"]
ENDLESS = ["stream.events=20000", "trainer.epochs=1000000", "tracking.plots=false"]  # trains until stopped


def uri_of(path: Path) -> str:
    return f"sqlite:///{path / 'mlflow.db'}"


def all_runs(path: Path) -> list:  # type: ignore[type-arg]
    client = MlflowClient(tracking_uri=uri_of(path))
    exp = client.get_experiment_by_name("harness")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def start(workdir: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m harness ARGS` in a fresh process of its own session, with the default store of `workdir`."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID")}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args], cwd=workdir, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


def wait_for_stage(proc: subprocess.Popen[str], db: Path, stage: str, child: bool = False, timeout: float = 240) -> str:
    """The id of the first run (a sweep child when `child`) whose heartbeat names `stage`, read from the sqlite
    file read-only while the process writes it."""
    sql = "select run_uuid from tags where key = 'harness.stage' and value = ?"
    if child:
        sql += " and run_uuid in (select run_uuid from tags where key = 'mlflow.parentRunId')"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended (exit {proc.returncode}) before stage {stage!r}:\n{err[-3000:]}")
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                    rows = con.execute(sql, (stage,)).fetchall()
                if rows:
                    return rows[0][0]
            except sqlite3.Error:
                pass  # the store is still being created
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no run reached stage {stage!r} within {timeout} s")


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def fake_run(client: MlflowClient, experiment_id: str, name: str, **tags: str) -> str:
    """A RUNNING run with the given liveness tags (as a pipeline run records them)."""
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


# ---------------------------------------------------------------------------------------------- signals


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_a_run_killed_in_one_line(workdir: Path, sig: signal.Signals) -> None:
    proc = start(workdir, *ENDLESS)
    run_id = wait_for_stage(proc, workdir / "mlflow.db", "fit")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"interrupted by {sig.name}: the run ended KILLED"
    run = MlflowClient(tracking_uri=uri_of(workdir)).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["harness.error"].startswith(f"{sig.name}: the run was interrupted")
    assert run.info.end_time is not None


# ---------------------------------------------------------------------------------------------- sweeps


@pytest.mark.heavy
def test_a_sweep_with_a_failing_job_finishes_with_its_errors(workdir: Path) -> None:
    proc = start(workdir, "-m", "hydra/launcher=joblib_local", "circuit.halflife_pressure=0.5,-1.0,1.0", *QUICK)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err
    runs = all_runs(workdir)
    (parent,) = [r for r in runs if r.data.tags.get("harness.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["children"] == 3 and parent.data.metrics["children_failed"] == 1
    finished = [c for c in children if c.info.status == "FINISHED"]
    (failed,) = [c for c in children if c.info.status == "FAILED"]
    assert len(finished) == 2  # the other jobs ran
    assert parent.data.metrics["best_fit_val_loss"] == min(c.data.metrics["fit_val_loss"] for c in finished)
    errors = parent.data.tags["harness.failed_jobs"]
    assert "circuit.halflife_pressure=-1.0" in errors and "CircuitError" in errors and "hl_press" in errors
    assert failed.data.tags["harness.job_overrides"].startswith("circuit.halflife_pressure=-1.0")
    assert f"sweep {parent.info.run_id}: FINISHED, 3 jobs, 1 failed, best fit_val_loss" in err
    assert "  failed: job 1 (circuit.halflife_pressure=-1.0" in err
    # stage times are measured inside each job: no compose stage counted from the worker's start
    for child in finished:
        stages = {k: v for k, v in child.data.metrics.items() if k.startswith("stage/")}
        assert "stage/compose_s" not in stages and "stage/train_s" in stages
        assert sum(stages.values()) <= (child.info.end_time - child.info.start_time) / 1000 + 0.5
    assert 0 < parent.data.metrics["stage/compose_s"] < (parent.info.end_time - parent.info.start_time) / 1000


def test_a_sweep_whose_launcher_cannot_start_is_failed_with_the_reason(workdir: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed")
    if shutil.which("srun"):
        pytest.skip("srun is installed here: the Slurm launcher would start")
    proc = start(workdir, "-m", "hydra/launcher=slurm", "circuit.halflife_pressure=0.5,1.0", *QUICK)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err
    (parent,) = all_runs(workdir)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["harness.error"].startswith("the launcher or sweeper failed: RuntimeError: ")
    assert "srun" in parent.data.tags["harness.error"]
    assert parent.data.metrics["children"] == 0
    assert f"sweep {parent.info.run_id}: FAILED, 0 jobs" in err


@pytest.mark.heavy
def test_sigterm_to_a_joblib_sweep_ends_parent_and_children_killed(workdir: Path) -> None:
    proc = start(workdir, "-m", "hydra/launcher=joblib_local", "trainer.lr=0.01,0.02,0.03", *ENDLESS)
    wait_for_stage(proc, workdir / "mlflow.db", "fit", child=True)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    runs = all_runs(workdir)
    (parent,) = [r for r in runs if r.data.tags.get("harness.sweep") == "parent"]
    assert parent.info.status == "KILLED"
    assert parent.data.tags["harness.error"] == "SIGTERM: the sweep was interrupted"
    assert [line for line in err.splitlines() if line.startswith("sweep ")] == [
        f"sweep {parent.info.run_id}: KILLED, {int(parent.data.metrics['children'])} jobs, "
        f"{int(parent.data.metrics['children_failed'])} failed (SIGTERM: the sweep was interrupted)"
    ]
    assert parent.data.metrics["children"] >= 1
    assert all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]


# ---------------------------------------------------------------------------------------------- liveness, gc


def test_sigkill_then_runs_gc_ends_the_run_killed(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = start(workdir, *ENDLESS)
    run_id = wait_for_stage(proc, workdir / "mlflow.db", "fit")
    proc.kill()
    proc.communicate(timeout=60)
    client = MlflowClient(tracking_uri=uri_of(workdir))
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"  # nothing could end it
    tags = run.data.tags
    assert tags[store.HOST_TAG] == socket.gethostname() and int(tags[store.PID_TAG]) == proc.pid
    assert main(["runs", "gc", "--dry-run", "--tracking-uri", uri_of(workdir)]) == 0
    assert "1 of 1 RUNNING runs would end KILLED" in capsys.readouterr().out
    assert client.get_run(run_id).info.status == "RUNNING"
    assert main(["runs", "gc", "--tracking-uri", uri_of(workdir)]) == 0
    assert "1 of 1 RUNNING runs ended KILLED" in capsys.readouterr().out
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert f"process {proc.pid} on {socket.gethostname()} is gone during stage 'fit'" in run.data.tags["harness.error"]
    assert run.data.tags[store.REAPED_TAG] == "harness runs gc"
    assert run.info.end_time == int(float(run.data.tags[store.HEARTBEAT_TAG]) * 1000)  # last known alive
    assert main(["runs", "gc", "--tracking-uri", uri_of(workdir)]) == 0
    assert "no RUNNING runs" in capsys.readouterr().out


def test_opening_the_store_ends_dead_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = uri_of(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("harness")
    me = psutil.Process()
    host = socket.gethostname()
    dead = fake_run(client, exp, "dead", **{
        store.HOST_TAG: host, store.PID_TAG: str(dead_pid()), store.PID_START_TAG: f"{time.time() - 5:.3f}",
        store.HEARTBEAT_TAG: f"{time.time():.3f}", store.TIMEOUT_TAG: "900",
    })  # fmt: skip
    alive = fake_run(client, exp, "alive", **{
        store.HOST_TAG: host, store.PID_TAG: str(me.pid), store.PID_START_TAG: f"{me.create_time():.3f}",
        store.HEARTBEAT_TAG: f"{time.time():.3f}", store.TIMEOUT_TAG: "900",
    })  # fmt: skip
    reused = fake_run(client, exp, "reused-pid", **{  # our pid, but another process's start time
        store.HOST_TAG: host, store.PID_TAG: str(me.pid), store.PID_START_TAG: f"{me.create_time() - 3600:.3f}",
    })  # fmt: skip
    legacy = client.create_run(exp, run_name="no-liveness-tags").info.run_id  # left alone: nothing to judge by
    assert main(["runs", "list", "--tracking-uri", uri]) == 0
    err = capsys.readouterr().err
    assert f"note: run {dead} was still RUNNING: ended KILLED (process " in err and "is gone" in err
    status = {r: client.get_run(r).info.status for r in (dead, alive, reused, legacy)}
    assert status == {dead: "KILLED", alive: "RUNNING", reused: "KILLED", legacy: "RUNNING"}
    assert client.get_run(dead).data.tags[store.REAPED_TAG] == "harness runs list"


def test_heartbeat_timeout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = uri_of(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("harness")
    now = time.time()

    def remote(name: str, age: float, timeout: str) -> str:  # a run on another host: only its heartbeat tells
        return fake_run(client, exp, name, **{
            store.HOST_TAG: "node-17.cluster", store.PID_TAG: "4242", store.HEARTBEAT_TAG: f"{now - age:.3f}",
            store.TIMEOUT_TAG: timeout, store.STAGE_TAG: "train",
        })  # fmt: skip

    silent, fresh, short = remote("silent", 1000, "900"), remote("fresh", 10, "900"), remote("short", 100, "60")
    assert main(["runs", "gc", "--dry-run", "--heartbeat-timeout", "5000", "--tracking-uri", uri]) == 0
    assert "0 of 3 RUNNING runs would end KILLED" in capsys.readouterr().out
    assert main(["runs", "gc", "--tracking-uri", uri]) == 0
    assert "2 of 3 RUNNING runs ended KILLED" in capsys.readouterr().out
    status = {r: client.get_run(r).info.status for r in (silent, fresh, short)}
    assert status == {silent: "KILLED", fresh: "RUNNING", short: "KILLED"}
    reason = client.get_run(silent).data.tags["harness.error"]
    assert reason.startswith("no heartbeat from process 4242 on node-17.cluster for 1") and "timeout 900 s" in reason
    assert "last stage 'train'" in reason
    assert main(["runs", "gc", "--heartbeat-timeout", "5", "--tracking-uri", uri]) == 0  # the override wins
    assert client.get_run(fresh).info.status == "KILLED"
    assert main(["runs", "gc", "--heartbeat-timeout", "0", "--tracking-uri", uri]) == 2
    assert "must be > 0 seconds" in capsys.readouterr().err


def test_heartbeat_thread_and_stage_beats(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=uri_of(tmp_path))
    run_id = client.create_run(client.create_experiment("harness")).info.run_id
    with store.Heartbeat(uri_of(tmp_path), run_id, every_s=0.05) as beat:
        beat.beat("record")
        first = float(client.get_run(run_id).data.tags[store.HEARTBEAT_TAG])
        time.sleep(0.5)
        later = float(client.get_run(run_id).data.tags[store.HEARTBEAT_TAG])
    assert later > first  # the thread beats between stages
    assert client.get_run(run_id).data.tags[store.STAGE_TAG] == "record"
    assert not beat._thread.is_alive()  # type: ignore[union-attr]


def test_a_heartbeat_timeout_below_two_heartbeats_is_a_config_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*QUICK, "tracking.heartbeat_s=60", "tracking.heartbeat_timeout_s=90"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error: tracking.heartbeat_timeout_s=90.0 must be at least twice tracking.heartbeat_s=60.0 (" in err


def test_a_run_records_liveness_checks_the_store_and_times_compose_inside_the_job(workdir: Path) -> None:
    import harness.pipeline.app  # noqa: F401  # imported long before the job starts

    client = MlflowClient(tracking_uri=uri_of(workdir))
    exp = client.create_experiment("harness")
    dead = fake_run(client, exp, "dead", **{store.HOST_TAG: socket.gethostname(), store.PID_TAG: str(dead_pid())})
    time.sleep(1.0)
    clock = time.perf_counter()
    assert main(QUICK) == 0
    wall = time.perf_counter() - clock
    run = next(r for r in all_runs(workdir) if r.info.run_id != dead)
    assert run.info.status == "FINISHED"
    assert 0 < run.data.metrics["stage/compose_s"] < wall  # not counted from the process's (or import's) start
    tags = run.data.tags
    assert tags[store.HOST_TAG] == socket.gethostname() and int(tags[store.PID_TAG]) == os.getpid()
    assert tags[store.TIMEOUT_TAG] == "900" and tags[store.STAGE_TAG] == "log"  # the last stage beat
    assert abs(float(tags[store.PID_START_TAG]) - psutil.Process().create_time()) < 1
    assert client.get_run(dead).info.status == "KILLED"  # the check when the run started
    assert client.get_run(dead).data.tags[store.REAPED_TAG] == "the check when a run starts"


def test_a_signal_during_a_store_write_waits_for_its_end() -> None:
    """SIGTERM inside `deferred()` (every MlflowRunLogger write) is raised when the block ends, not in the middle of
    the write (an interrupted sqlite transaction kept the store locked and the run could not be ended)."""
    from harness.interrupts import Interrupted, deferred
    from harness.pipeline.signals import as_interrupts

    done = []
    with as_interrupts(), pytest.raises(Interrupted) as info, deferred():
        with deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run by now: it only noted the signal
            done.append("inner")
        done.append("outer")
    assert done == ["inner", "outer"] and info.value.signum == signal.SIGTERM


def test_a_swallowed_interrupt_is_raised_again_at_the_next_safe_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception raised in a garbage-collection callback is printed and dropped; `check()` (each stage and
    epoch) raises the signal again."""
    from harness import interrupts

    monkeypatch.setattr(interrupts, "_received", None)
    interrupts.check()  # nothing received: nothing raised
    with pytest.raises(interrupts.Interrupted):
        interrupts.interrupt(signal.SIGTERM)  # the first raise (imagine it swallowed)
    with pytest.raises(interrupts.Interrupted) as info:
        interrupts.check()
    assert info.value.signum == signal.SIGTERM
