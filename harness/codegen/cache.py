"""The kernel cache: compiled kernels keyed by the sha256 of what makes them (source, flags, toolchain).

Layout under the cache root (`$HARNESS_KERNEL_CACHE`, default the user cache dir):
    <key>/            a complete entry: the module, its source, meta.json (published by one rename)
    .locks/<key>.lock a file lock held while <key> is being built
    .tmp/<name>/      private build directories (removed after use; stale ones are cleaned)
    .failed/<key>.cpp sources of kernels that did not compile, kept for the error message

A build runs in a private temp dir under the lock; the entry appears only through an atomic rename, so a
build killed at any point (even SIGKILL) leaves no half entry, and the lock dies with its process.
Processes asking for the same kernel build it once: the second waits for the lock, then finds the entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from filelock import FileLock, Timeout

from harness.codegen.build import EXT_SUFFIX, BuildUnit, CompileError, build_modules
from harness.codegen.toolchain import Toolchain
from harness.errors import HarnessError

log = logging.getLogger("harness.codegen")
ABI_TAG = "harness-kernel-abi-1"
STALE_SECONDS = 24 * 3600
LOCK_TIMEOUT_S = float(os.environ.get("HARNESS_BUILD_TIMEOUT", "1800"))


def default_cache_dir() -> Path:
    """`$HARNESS_KERNEL_CACHE`, else `<user cache dir>/harness/kernels`."""
    env = os.environ.get("HARNESS_KERNEL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("harness")) / "kernels"


def kernel_key(body: str, tc: Toolchain) -> str:
    """sha256 of the generated source and the toolchain fingerprint."""
    h = hashlib.sha256()
    for part in (ABI_TAG, tc.fingerprint, body):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def module_name(key: str) -> str:
    """The Python module (and PyInit symbol) name of the kernel with this key."""
    return f"hs_kernel_{key[:24]}"


@dataclass(frozen=True)
class CacheEntry:
    """A compiled kernel in the cache."""

    key: str
    path: Path
    module: str
    built: bool  # True when this call compiled it (a cache miss)
    seconds: float  # time this call spent waiting for / building it

    @property
    def module_path(self) -> Path:
        """The extension module file."""
        return self.path / f"{self.module}{EXT_SUFFIX}"


class KernelCache:
    """Compiled kernels on disk, safe to share between processes."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"KernelCache({str(self.root)!r})"

    def lookup(self, key: str) -> Path | None:
        """The entry directory for `key` when it is complete, else None."""
        path = self.root / key
        if (path / "meta.json").is_file() and (path / f"{module_name(key)}{EXT_SUFFIX}").is_file():
            return path
        return None

    def ensure(self, units: dict[str, str], tc: Toolchain) -> dict[str, CacheEntry]:
        """Return entries for every key -> source in `units`, building the missing ones in one batch."""
        start = time.perf_counter()
        entries: dict[str, CacheEntry] = {}
        missing = []
        for key in units:
            path = self.lookup(key)
            if path is not None:
                entries[key] = CacheEntry(key, path, module_name(key), False, 0.0)
            else:
                missing.append(key)
        if not missing:
            return entries
        for d in (".locks", ".tmp", ".failed"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        with self._locks(sorted(missing)):
            todo = []
            for key in missing:
                path = self.lookup(key)  # double check: another process may have built it meanwhile
                if path is not None:
                    entries[key] = CacheEntry(key, path, module_name(key), False, time.perf_counter() - start)
                else:
                    todo.append(key)
            if todo:
                self._clean_stale()
                built = self._build({k: units[k] for k in todo}, tc)
                seconds = time.perf_counter() - start
                for key, path in built.items():
                    entries[key] = CacheEntry(key, path, module_name(key), True, seconds)
        return entries

    @contextlib.contextmanager
    def _locks(self, keys: list[str]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for key in keys:
                lock = FileLock(str(self.root / ".locks" / f"{key}.lock"))
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    log.info("waiting for another process to build kernel %s", key[:12])
                    try:
                        lock.acquire(timeout=LOCK_TIMEOUT_S)
                    except Timeout:
                        raise HarnessError(
                            f"gave up after {LOCK_TIMEOUT_S:.0f} s waiting for the build lock of kernel {key[:12]} "
                            f"({lock.lock_file}); set HARNESS_BUILD_TIMEOUT to wait longer"
                        ) from None
                stack.callback(lock.release)
            yield

    def _build(self, units: dict[str, str], tc: Toolchain) -> dict[str, Path]:
        tmp = self.root / ".tmp" / f"{next(iter(units))[:12]}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            build_units = [BuildUnit(module_name(k), src) for k, src in units.items()]
            log.info("compiling %d kernel(s) with %s %s", len(build_units), tc.cxx_version, " ".join(tc.flags))
            try:
                modules = build_modules(build_units, tmp / "work", tc, template_dir=self.root)
            except CompileError as e:
                kept = []
                for key, src in units.items():
                    path = self.root / ".failed" / f"{key}.cpp"
                    path.write_text(src)
                    kept.append(str(path))
                raise CompileError(f"{e}\n(generated source kept at {', '.join(kept)})") from None
            published = {}
            for key, src in units.items():
                name = module_name(key)
                entry = tmp / "entries" / key
                entry.mkdir(parents=True)
                shutil.copy2(modules[name], entry / f"{name}{EXT_SUFFIX}")
                (entry / "kernel.cpp").write_text(src)
                meta = {"key": key, "module": name, "toolchain": tc.fingerprint, "built_by_pid": os.getpid()}
                (entry / "meta.json").write_text(json.dumps(meta, indent=2))
                final = self.root / key
                try:
                    os.rename(entry, final)  # atomic publish
                except OSError:
                    if self.lookup(key) is None:  # a broken leftover: replace it
                        shutil.rmtree(final, ignore_errors=True)
                        os.rename(entry, final)
                published[key] = final
            return published
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _clean_stale(self) -> None:
        """Remove build dirs of processes that no longer exist (or older than a day)."""
        tmp_root = self.root / ".tmp"
        for path in tmp_root.iterdir() if tmp_root.is_dir() else []:
            parts = path.name.split(".")
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            try:
                age = time.time() - path.stat().st_mtime
            except OSError:
                continue
            if (pid is not None and not _alive(pid)) or age > STALE_SECONDS:
                shutil.rmtree(path, ignore_errors=True)

    def clear(self) -> int:
        """Delete every cached kernel; returns how many entries were removed."""
        n = 0
        if self.root.is_dir():
            for path in self.root.iterdir():
                if path.is_dir() and not path.name.startswith("."):
                    shutil.rmtree(path, ignore_errors=True)
                    n += 1
        return n


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
