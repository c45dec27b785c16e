"""The kernel cache: cold compile, warm hit without a compiler, one build for two processes, recovery
after a build killed with SIGKILL, batch compiles, and keys that follow what makes a kernel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import harness as hs
from harness import examples, ops
from harness.codegen import compile_many
from harness.codegen.cache import KernelCache

COMPILE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import harness as hs
    from harness import ops
    c = hs.Circuit("shared")
    x = c.input("x")
    c.trigger("x", x)
    c.output("y", ops.tanh(x * float(sys.argv[2])))
    k = hs.compile(c, cache_dir=sys.argv[1])
    k.call("x", t=0, x=1.0)
    print(json.dumps({"pid": os.getpid(), "hit": k.build["cache_hit"], "hash": k.kernel_hash, "y": k.value("y")}))
    """
)


def unique_circuit(tag: float) -> hs.Circuit:
    c = hs.Circuit("shared")
    x = c.input("x")
    c.trigger("x", x)
    c.output("y", ops.tanh(x * tag))
    return c


def entries(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]


def test_cold_compile_then_warm_hit_without_any_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = hs.compile(examples.wide_add(), cache_dir=tmp_path)
    assert k.build["cache_hit"] is False
    (entry,) = entries(tmp_path)
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["key"] == k.kernel_hash == entry.name and (entry / "kernel.cpp").read_text() == k.source

    def no_compiler(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"a compiler was invoked on a warm cache: {args}")

    monkeypatch.setattr("harness.codegen.build.subprocess.run", no_compiler)
    warm = hs.compile(examples.wide_add(), cache_dir=tmp_path)
    assert warm.build["cache_hit"] is True and warm.kernel_hash == k.kernel_hash
    warm.call("ab", t=1, a=1.0, b=2.0)
    warm.call("c", t=2, c=3.0)
    assert warm.value("out") == 6.0


def test_warm_hit_in_a_new_process(tmp_path: Path) -> None:
    tag = str(1.0 + uuid.uuid4().int % 1000 / 1e6)
    first = json.loads(
        subprocess.run(
            [sys.executable, "-c", COMPILE_SCRIPT, str(tmp_path), tag], capture_output=True, text=True, check=True
        ).stdout
    )
    second = json.loads(
        subprocess.run(
            [sys.executable, "-c", COMPILE_SCRIPT, str(tmp_path), tag], capture_output=True, text=True, check=True
        ).stdout
    )
    assert (first["hit"], second["hit"]) == (False, True)
    assert first["hash"] == second["hash"] and first["y"] == second["y"]


def test_two_processes_asking_at_once_build_the_kernel_once(tmp_path: Path) -> None:
    tag = str(2.0 + uuid.uuid4().int % 1000 / 1e6)
    procs = [
        subprocess.Popen([sys.executable, "-c", COMPILE_SCRIPT, str(tmp_path), tag], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(r["hit"] for r in results) == [False, True]  # exactly one compiled
    assert results[0]["hash"] == results[1]["hash"] and results[0]["y"] == results[1]["y"]
    (entry,) = entries(tmp_path)
    builder = next(r["pid"] for r in results if not r["hit"])
    assert json.loads((entry / "meta.json").read_text())["built_by_pid"] == builder


def test_a_build_killed_with_sigkill_leaves_the_cache_usable(tmp_path: Path) -> None:
    tag = 3.0 + uuid.uuid4().int % 1000 / 1e6
    proc = subprocess.Popen(
        [sys.executable, "-c", COMPILE_SCRIPT, str(tmp_path), str(tag)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the kill below takes cmake and the compiler with it
    )
    tmp_dir = tmp_path / ".tmp"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_dir.is_dir() and any(tmp_dir.iterdir())):
        time.sleep(0.005)
    assert tmp_dir.is_dir() and any(tmp_dir.iterdir()), "the build never started"
    os.killpg(proc.pid, signal.SIGKILL)  # as a scheduler kills a job (a compiler left running would keep writing)
    proc.wait()
    assert entries(tmp_path) == []  # nothing half-published
    k = hs.compile(unique_circuit(tag), cache_dir=tmp_path)  # the lock died with the process
    assert k.build["cache_hit"] is False
    k.call("x", t=0, x=1.0)
    assert k.value("y") is not None
    assert list(tmp_dir.iterdir()) == []  # the dead build's directory was cleaned up
    assert len(entries(tmp_path)) == 1


def test_compile_many_builds_only_what_is_missing_in_one_batch(tmp_path: Path) -> None:
    circuits = [unique_circuit(4.0 + i) for i in range(3)]
    first = hs.compile(circuits[0], cache_dir=tmp_path)
    kernels = compile_many(circuits, cache_dir=tmp_path)
    assert [k.build["cache_hit"] for k in kernels] == [True, False, False]
    assert kernels[0].kernel_hash == first.kernel_hash
    assert len({k.kernel_hash for k in kernels}) == 3
    for i, k in enumerate(kernels):
        k.call("x", t=0, x=0.25)
        ref = hs.compile(circuits[i], backend="python")
        ref.call("x", t=0, x=0.25)
        assert k.value("y") == ref.value("y")


def test_keys_follow_what_makes_a_kernel(tmp_path: Path) -> None:
    a = hs.compile(unique_circuit(5.0), cache_dir=tmp_path)
    assert hs.compile(unique_circuit(5.0), cache_dir=tmp_path).kernel_hash == a.kernel_hash
    assert hs.compile(unique_circuit(5.5), cache_dir=tmp_path).kernel_hash != a.kernel_hash
    o3 = hs.compile(unique_circuit(5.0), cache_dir=tmp_path, opt="O3")
    assert o3.kernel_hash != a.kernel_hash and o3.build["cache_hit"] is False
    o3.call("x", t=0, x=0.5)
    a.call("x", t=0, x=0.5)
    assert o3.value("y") == a.value("y")
    with pytest.raises(hs.HarnessError, match="unknown optimisation level 'O9'"):
        hs.compile(unique_circuit(5.0), cache_dir=tmp_path, opt="O9")


def test_native_optimisation_builds_and_agrees_bit_for_bit(tmp_path: Path) -> None:
    k = hs.compile(examples.l1_pressure(), cache_dir=tmp_path, opt="native")
    events = hs.streams.l1_events(5000, seed=3)
    assert k.replay(events).equals(hs.compile(examples.l1_pressure(), backend="python").replay(events))


def test_clear_removes_entries(tmp_path: Path) -> None:
    hs.compile(unique_circuit(6.0), cache_dir=tmp_path)
    cache = KernelCache(tmp_path)
    assert cache.clear() == 1 and entries(tmp_path) == []
    assert hs.compile(unique_circuit(6.0), cache_dir=tmp_path).build["cache_hit"] is False


def test_default_cache_dir_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_KERNEL_CACHE", str(tmp_path / "here"))
    assert KernelCache().root == tmp_path / "here"
