"""A self-healing, verified kernel cache: damaged modules (truncated, emptied, random, another kernel's, edited
with its mtime restored, verified but not importable), damaged meta.json and toolchain records are quarantined
and rebuilt once with a warning naming the circuit; unusable cache dirs give one line naming the path and
HARNESS_KERNEL_CACHE; any path the OS allows works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import harness as hs
from harness import ops
from harness.codegen.build import EXT_SUFFIX, BuildUnit, KernelCacheWarning, build_modules
from harness.codegen.cache import KernelCache, KernelCacheError, file_sha256, kernel_key, module_name
from harness.codegen.emit import generate
from harness.codegen.toolchain import toolchain

SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import harness as hs
    from harness import ops
    c = hs.Circuit("healme")
    x = c.input("x")
    c.trigger("x", x)
    c.output("y", ops.tanh(x * float(sys.argv[2])))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        k = hs.compile(c, cache_dir=sys.argv[1])
    k.call("x", t=0, x=1.0)
    print(json.dumps({"hit": k.build["cache_hit"], "y": k.value("y"), "warnings": [str(w.message) for w in caught]}))
    """
)


def circuit(tag: float, name: str = "healme") -> hs.Circuit:
    c = hs.Circuit(name)
    x = c.input("x")
    c.trigger("x", x)
    c.output("y", ops.tanh(x * tag))
    return c


def expected(tag: float) -> float | None:
    ref = hs.compile(circuit(tag), backend="python")
    ref.call("x", t=0, x=1.0)
    return ref.value("y")


def module_of(k: hs.Kernel) -> Path:
    return Path(k.build["module"])


def build_only(root: Path, c: hs.Circuit) -> Path:
    """Build a kernel into the cache without loading it (damaging a module this process has mapped would
    crash the process itself, whatever the cache does); returns its module file."""
    tc = toolchain()
    src = generate(c)
    key = kernel_key(src.body, tc)
    (entry,) = KernelCache(root).ensure({key: src.module_source(module_name(key))}, tc).values()
    return entry.module_path


def quarantined(root: Path) -> list[Path]:
    q = root / ".quarantine"
    return sorted(p for p in q.iterdir() if p.is_dir()) if q.is_dir() else []


def run_script(root: Path, tag: float) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(root), str(tag)], capture_output=True, text=True)
    assert proc.returncode == 0, f"exit {proc.returncode} (SIGBUS is -7): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def test_a_module_truncated_to_half_is_rebuilt_on_the_next_run_with_a_warning(tmp_path: Path) -> None:
    tag = 1.0 + uuid.uuid4().int % 1000 / 1e6
    first = run_script(tmp_path, tag)
    assert first["hit"] is False and first["warnings"] == []
    (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    (so,) = entry.glob(f"*{EXT_SUFFIX}")
    so.write_bytes(so.read_bytes()[: so.stat().st_size // 2])  # mapping this used to SIGBUS every later run
    second = run_script(tmp_path, tag)  # in a subprocess: a SIGBUS would not take pytest down
    assert second["hit"] is False and second["y"] == first["y"] == expected(tag)
    (warning,) = second["warnings"]
    assert "'healme'" in warning and "bytes" in warning and "recorded" in warning
    (kept,) = quarantined(tmp_path)
    assert kept.name.startswith(entry.name) and (kept / so.name).stat().st_size < so.stat().st_size  # kept as found
    assert "bytes" in (tmp_path / ".quarantine" / f"{kept.name}.reason.txt").read_text()
    third = run_script(tmp_path, tag)
    assert third["hit"] is True and third["warnings"] == [] and third["y"] == first["y"]


def _emptied(so: Path, other: Path) -> None:
    so.write_bytes(b"")


def _random_same_size(so: Path, other: Path) -> None:
    so.write_bytes(os.urandom(so.stat().st_size))


def _another_kernels_module(so: Path, other: Path) -> None:
    shutil.copyfile(other, so)


def _edited_mtime_restored(so: Path, other: Path) -> None:
    st = so.stat()
    data = bytearray(so.read_bytes())
    i = data.find(b"circuit healme")  # the module's docstring
    assert i > 0
    data[i] = ord("C")  # still a working module, same size, different bytes
    so.write_bytes(bytes(data))
    os.utime(so, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize(
    "damage", [_emptied, _random_same_size, _another_kernels_module, _edited_mtime_restored], ids=lambda f: f.__name__
)
def test_a_damaged_module_is_quarantined_and_rebuilt(tmp_path: Path, damage: Callable[[Path, Path], None]) -> None:
    tag = 2.0 + uuid.uuid4().int % 1000 / 1e6
    so = build_only(tmp_path, circuit(tag))
    damage(so, build_only(tmp_path, circuit(tag + 1.0, "other")))
    with pytest.warns(KernelCacheWarning, match=r"circuit 'healme' .* is broken: .*moved to .*rebuilding"):
        healed = hs.compile(circuit(tag), cache_dir=tmp_path)
    assert healed.build["cache_hit"] is False and module_of(healed) == so
    healed.call("x", t=0, x=1.0)
    assert healed.value("y") == expected(tag)
    assert len(quarantined(tmp_path)) == 1
    assert KernelCache(tmp_path).check(healed.kernel_hash) is None  # the rebuilt entry verifies


def test_a_verified_module_that_fails_to_import_is_rebuilt_once(tmp_path: Path) -> None:
    tag = 3.0 + uuid.uuid4().int % 1000 / 1e6
    so = build_only(tmp_path, circuit(tag))
    entry = so.parent
    shutil.copyfile(build_only(tmp_path, circuit(tag + 1.0, "other")), so)  # another kernel's module...
    meta = json.loads((entry / "meta.json").read_text())
    st = so.stat()
    meta["file"] |= {
        "size": st.st_size,
        "sha256": file_sha256(so),
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }
    (entry / "meta.json").write_text(json.dumps(meta))  # ... and a record that matches it
    with pytest.warns(KernelCacheWarning, match=r"circuit 'healme' .* fails to import .*PyInit"):
        healed = hs.compile(circuit(tag), cache_dir=tmp_path)
    assert healed.build["cache_hit"] is False
    healed.call("x", t=0, x=1.0)
    assert healed.value("y") == expected(tag)
    assert len(quarantined(tmp_path)) == 1


@pytest.mark.parametrize("meta", ["", "{not json", '{"key": "another"}', "[1, 2]"])
def test_a_damaged_meta_json_is_quarantined_and_rebuilt(tmp_path: Path, meta: str) -> None:
    tag = 4.0 + uuid.uuid4().int % 1000 / 1e6
    k = hs.compile(circuit(tag), cache_dir=tmp_path)
    (module_of(k).parent / "meta.json").write_text(meta)
    with pytest.warns(KernelCacheWarning, match=r"circuit 'healme' .* meta\.json"):
        healed = hs.compile(circuit(tag), cache_dir=tmp_path)
    assert healed.build["cache_hit"] is False and KernelCache(tmp_path).check(k.kernel_hash) is None


def test_an_entry_of_an_older_harness_is_rebuilt_without_a_warning(tmp_path: Path) -> None:
    tag = 5.0 + uuid.uuid4().int % 1000 / 1e6
    k = hs.compile(circuit(tag), cache_dir=tmp_path)
    meta_path = module_of(k).parent / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["file"]
    meta_path.write_text(json.dumps(meta))
    assert KernelCache(tmp_path).check(k.kernel_hash) is not None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelCacheWarning)
        healed = hs.compile(circuit(tag), cache_dir=tmp_path)
    assert healed.build["cache_hit"] is False and KernelCache(tmp_path).check(k.kernel_hash) is None


def _toolchain_record(root: Path) -> Path:
    (record,) = (root / ".toolchains").glob("*.json")
    return record


def test_a_damaged_toolchain_record_is_quarantined_and_remade(tmp_path: Path) -> None:
    hs.compile(circuit(6.0), cache_dir=tmp_path)
    record = _toolchain_record(tmp_path)
    data = json.loads(record.read_text())
    data["compile"] = [*data["compile"], "-DEDITED"]  # edited: no longer matches its sha256
    record.write_text(json.dumps(data))
    with pytest.warns(KernelCacheWarning, match=r"toolchain record .* differs from its recorded sha256"):
        k = hs.compile(circuit(6.5), cache_dir=tmp_path)
    assert k.build["cache_hit"] is False and "-DEDITED" not in _toolchain_record(tmp_path).read_text()
    record.write_text("{truncated")
    with pytest.warns(KernelCacheWarning, match=r"toolchain record .* unreadable"):
        hs.compile(circuit(6.75), cache_dir=tmp_path)
    assert len(list((tmp_path / ".quarantine").glob("toolchain.*"))) == 2


def test_a_verified_toolchain_record_that_cannot_build_falls_back_to_cmake_and_is_quarantined(tmp_path: Path) -> None:
    from harness.codegen.build import template_digest

    hs.compile(circuit(7.0), cache_dir=tmp_path)
    record = _toolchain_record(tmp_path)
    data = json.loads(record.read_text())
    data["compile"] = [*data["compile"], "-DHS_BROKEN_RECORD", "-include", "/nonexistent/hs_header.h"]
    data["sha256"] = template_digest(data)
    record.write_text(json.dumps(data))
    with pytest.warns(KernelCacheWarning, match=r"toolchain record .* a build from it failed where CMake succeeded"):
        k = hs.compile(circuit(7.5), cache_dir=tmp_path)
    k.call("x", t=0, x=1.0)
    assert k.value("y") is not None
    assert list((tmp_path / ".toolchains").glob("*.json")) == []
    hs.compile(circuit(7.75), cache_dir=tmp_path)  # makes a new record
    assert "HS_BROKEN_RECORD" not in _toolchain_record(tmp_path).read_text()


def _one_line(e: BaseException, path: Path) -> str:
    msg = str(e)
    assert "\n" not in msg and repr(str(path)) in msg and "HARNESS_KERNEL_CACHE" in msg, msg
    return msg


def test_a_cache_path_that_is_a_file_gives_one_clear_line(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_text("not a directory")
    with pytest.raises(KernelCacheError) as info:
        hs.compile(circuit(8.0), cache_dir=root)
    assert "not a directory" in _one_line(info.value, root)
    below = root / "kernels"  # a parent that is a file
    with pytest.raises(KernelCacheError) as info:
        hs.compile(circuit(8.0), cache_dir=below)
    assert "Not a directory" in _one_line(info.value, below)


def test_the_cli_reports_an_unusable_cache_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_text("")
    env = {**os.environ, "HARNESS_KERNEL_CACHE": str(root), "COLUMNS": "400"}
    cmd = [sys.executable, "-m", "harness", "demo", "--events", "200", "--fit-epochs", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if "error:" in ln]  # errors go to stderr, results to stdout
    assert str(root) in line and "HARNESS_KERNEL_CACHE" in line and "error:" not in proc.stdout


READ_ONLY_SCRIPT = textwrap.dedent(
    """
    import sys
    import harness as hs
    from harness import ops
    from harness.codegen.cache import KernelCacheError
    c = hs.Circuit("healme")
    x = c.input("x")
    c.trigger("x", x)
    c.output("y", ops.tanh(x * float(sys.argv[2])))
    try:
        k = hs.compile(c, cache_dir=sys.argv[1])
    except KernelCacheError as e:
        print("ERROR", e)
    else:
        print("HIT" if k.build["cache_hit"] else "BUILT")
    """
)


def _read_only_runner(root: Path) -> list[str]:
    """A command prefix that runs a child with `root` read-only: chmod for a normal user, a read-only bind
    mount in a private mount namespace for root (which ignores permission bits)."""
    if os.geteuid() != 0:
        os.chmod(root, 0o555)
        return []
    if shutil.which("unshare") is None:
        pytest.skip("running as root without `unshare`: cannot make a read-only directory")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and `unshare -m` is not allowed here: {probe.stderr.decode().strip()}")
    q = f"'{root}'"
    return ["unshare", "-m", "sh", "-c", f'mount --bind {q} {q} && mount -o remount,ro,bind {q} {q} && exec "$@"', "sh"]


def test_a_read_only_cache_serves_hits_and_refuses_builds_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    tag = 9.0 + uuid.uuid4().int % 1000 / 1e6
    hs.compile(circuit(tag), cache_dir=root)
    try:
        prefix = _read_only_runner(root)
        run = [*prefix, sys.executable, "-c", READ_ONLY_SCRIPT, str(root)]
        hit = subprocess.run([*run, str(tag)], capture_output=True, text=True, timeout=300)
        assert hit.returncode == 0 and hit.stdout.strip() == "HIT", hit.stderr[-2000:]
        miss = subprocess.run([*run, str(tag + 1)], capture_output=True, text=True, timeout=300)
        assert miss.returncode == 0 and "Traceback" not in miss.stderr, miss.stderr[-2000:]
        (line,) = miss.stdout.strip().splitlines()
        assert line.startswith("ERROR kernel cache") and str(root) in line and "HARNESS_KERNEL_CACHE" in line, line
        assert "Read-only file system" in line or "Permission denied" in line
    finally:
        os.chmod(root, 0o755)


WEIRD = "we ird;dir $HOME 'sq' \"dq\" ünï\ncode"


def test_any_cache_path_the_os_allows_works(tmp_path: Path) -> None:
    root = tmp_path / WEIRD
    a = hs.compile(circuit(10.0), cache_dir=root)  # the first build of a toolchain (CMake probe)
    b = hs.compile(circuit(10.5), cache_dir=root)  # later builds from the recorded commands
    for k, tag in ((a, 10.0), (b, 10.5)):
        assert k.build["cache_hit"] is False and Path(k.build["module"]).is_relative_to(root)
        k.call("x", t=0, x=1.0)
        assert k.value("y") == expected(tag)
    assert hs.compile(circuit(10.5), cache_dir=root).build["cache_hit"] is True
    assert not list((root / ".quarantine").iterdir())  # the record made in a scratch dir was fine


def test_the_cmake_build_works_in_a_directory_cmake_cannot_use(tmp_path: Path) -> None:
    from harness.codegen.emit import generate
    from harness.codegen.native import load_module

    work = tmp_path / "cm ake;dir\"q'"
    module = f"hs_weird_module_{uuid.uuid4().hex[:8]}"
    unit = BuildUnit(module, generate(circuit(11.0)).module_source(module))
    (out,) = build_modules([unit], work, toolchain()).values()  # no template dir: the full CMake project
    assert out.is_file() and out.is_relative_to(work)
    assert "circuit healme" in (load_module(out, module).__doc__ or "")
