"""The kernel cache: compiled kernels keyed by the sha256 of what makes them (source, flags, toolchain).

Layout under the cache root (`$HARNESS_KERNEL_CACHE`, default the user cache dir):
    <key>/              a complete entry: the module, its source, meta.json (published by one rename)
    .locks/<key>.lock   a file lock held while <key> is being built or healed
    .tmp/<name>/        private build directories (removed after use; stale ones are cleaned)
    .failed/<key>.cpp   sources of kernels that did not compile, kept for the error message
    .quarantine/<name>/ entries (and toolchain records) that failed verification or import, kept for inspection

A build runs in a private temp dir under the lock; the entry appears only through an atomic rename, so a
build killed at any point (even SIGKILL) leaves no half entry, and the lock dies with its process.
Processes asking for the same kernel build it once: the second waits for the lock, then finds the entry.

meta.json records the module's size, sha256 and stat times. An entry is verified before its module is
opened (a truncated shared object can kill the process with SIGBUS when it is mapped): size and times as
recorded is the fast path, otherwise the full sha256 decides. An entry that fails verification, or whose
module fails to import, is moved to `.quarantine/` and rebuilt once, with a warning naming the circuit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import platformdirs
from filelock import FileLock, Timeout

from harness.codegen.build import EXT_SUFFIX, BuildUnit, CompileError, KernelCacheWarning, build_modules
from harness.codegen.toolchain import Toolchain
from harness.errors import HarnessError

log = logging.getLogger("harness.codegen")
ABI_TAG = "harness-kernel-abi-1"
META_VERSION = 2  # meta.json with size, sha256 and stat times of the module
STALE_SECONDS = 24 * 3600
LOCK_TIMEOUT_S = float(os.environ.get("HARNESS_BUILD_TIMEOUT", "1800"))
ENV_VAR = "HARNESS_KERNEL_CACHE"
LEGACY = "entry written by an older harness (no recorded digest)"


class KernelCacheError(HarnessError):
    """The kernel cache cannot be used (not a directory, not writable) or a kernel stays broken after a rebuild."""


def default_cache_dir() -> Path:
    """`$HARNESS_KERNEL_CACHE`, else `<user cache dir>/harness/kernels`."""
    env = os.environ.get(ENV_VAR)
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


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in chunks; never mapped, so a truncated file cannot fault)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def unusable_root(root: Path, err: OSError | None = None) -> KernelCacheError:
    """The one-line error for a cache root that cannot be created or written."""
    if root.exists() and not root.is_dir():
        why = "it exists and is not a directory"
    elif err is not None:
        where = f" ({err.filename})" if err.filename and str(err.filename) != str(root) else ""
        why = f"{err.strerror or type(err).__name__}{where}"
    else:
        why = "it is not writable"
    return KernelCacheError(f"kernel cache {str(root)!r} is not usable: {why}; set {ENV_VAR} to a writable directory")


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


def _describe(key: str, name: str | None) -> str:
    return f"kernel of circuit {name!r} ({key[:12]})" if name else f"kernel {key[:12]}"


class KernelCache:
    """Compiled kernels on disk, safe to share between processes, verified before they are loaded."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"KernelCache({str(self.root)!r})"

    def lookup(self, key: str) -> Path | None:
        """The entry directory for `key` when it is complete and verified, else None."""
        return self.root / key if self.check(key) is None else None

    def check(self, key: str) -> str | None:
        """None when the entry of `key` is complete and its module matches its record, else what is wrong.

        An absent entry gives "absent". The fast path trusts a module whose size, mtime and ctime are as
        recorded; otherwise the full sha256 must match. Nothing here opens the module as a library.
        """
        path = self.root / key
        try:
            if not path.is_dir():
                return "absent"
            meta = json.loads((path / "meta.json").read_text())
        except FileNotFoundError:
            return "meta.json is missing"
        except (OSError, ValueError) as e:
            return f"meta.json is unreadable ({type(e).__name__})"
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("module") != module_name(key):
            return "meta.json does not describe this kernel"
        rec = meta.get("file")
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str) or not isinstance(rec.get("size"), int):
            return LEGACY
        module = path / f"{module_name(key)}{EXT_SUFFIX}"
        try:
            st = module.stat()
            if st.st_size != rec["size"]:
                return f"module is {st.st_size} bytes, {rec['size']} recorded"
            if (st.st_mtime_ns, st.st_ctime_ns) == (rec.get("mtime_ns"), rec.get("ctime_ns")):
                return None
            if file_sha256(module) != rec["sha256"]:
                return "module bytes differ from the recorded sha256"
        except FileNotFoundError:
            return "module file is missing"
        except OSError as e:
            return f"module is unreadable ({e.strerror or type(e).__name__})"
        return None

    def ensure(
        self, units: dict[str, str], tc: Toolchain, names: Mapping[str, str] | None = None
    ) -> dict[str, CacheEntry]:
        """Return entries for every key -> source in `units`, building the missing ones in one batch.

        Entries that fail verification are quarantined and rebuilt; `names` (key -> circuit name) makes
        the warning name the circuit.
        """
        start = time.perf_counter()
        names = names or {}
        entries: dict[str, CacheEntry] = {}
        missing = []
        for key in units:
            if self.check(key) is None:
                entries[key] = CacheEntry(key, self.root / key, module_name(key), False, 0.0)
            else:
                missing.append(key)
        if not missing:
            return entries
        self.prepare()
        with self._locks(sorted(missing)):
            todo = []
            for key in missing:
                reason = self.check(key)  # again: another process may have built or healed it meanwhile
                if reason is None:
                    seconds = time.perf_counter() - start
                    entries[key] = CacheEntry(key, self.root / key, module_name(key), False, seconds)
                    continue
                if reason != "absent":
                    self._quarantine_entry(key, reason, names.get(key))
                todo.append(key)
            if todo:
                self._clean_stale()
                built = self._build({k: units[k] for k in todo}, tc)
                seconds = time.perf_counter() - start
                for key, path in built.items():
                    entries[key] = CacheEntry(key, path, module_name(key), True, seconds)
        return entries

    def load(
        self, entry: CacheEntry, source: str, tc: Toolchain, name: str | None = None
    ) -> tuple[ModuleType, CacheEntry]:
        """Import the entry's module; if the import fails, quarantine the entry, rebuild it once and import that.

        Returns the module and the entry it came from (a rebuilt entry says `built`).
        """
        from harness.codegen.native import load_module

        start = time.perf_counter()
        try:
            return load_module(entry.module_path, entry.module), entry
        except ImportError as e:
            first = f"{type(e).__name__}: {e}"
        self.prepare()
        with self._locks([entry.key]):
            if self.root.joinpath(entry.key).exists():
                self._quarantine_entry(entry.key, f"its module fails to import ({first})", name)
            self._build({entry.key: source}, tc)
        rebuilt = CacheEntry(entry.key, entry.path, entry.module, True, entry.seconds + time.perf_counter() - start)
        # a module that was mapped but failed to initialise stays mapped under its path name: load the rebuilt
        # file through an alias so the dynamic loader opens the new file (it also compares inodes)
        alias = f"{entry.path}/./{entry.module_path.name}"
        try:
            return load_module(alias, entry.module), rebuilt
        except ImportError as e:
            raise KernelCacheError(
                f"{_describe(entry.key, name)} still fails to import after a rebuild: {e} ({entry.module_path}); "
                f"first failure: {first}"
            ) from None

    def prepare(self) -> None:
        """Create the cache's directories and check they are writable, or raise one clear KernelCacheError."""
        try:
            for d in (".locks", ".tmp", ".failed", ".quarantine"):
                (self.root / d).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root / ".tmp", prefix="write-check."):
                pass
        except OSError as e:
            raise unusable_root(self.root, e) from None

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a broken entry or record out of the way (kept for inspection); returns where it went."""
        qroot = self.root / ".quarantine"
        dest = qroot / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        try:
            qroot.mkdir(parents=True, exist_ok=True)
            os.rename(path, dest)
            (qroot / f"{dest.name}.reason.txt").write_text(reason + "\n")
        except OSError as e:
            raise KernelCacheError(
                f"cannot quarantine the broken cache item {path} ({reason}): {e.strerror or e}; "
                f"delete it or set {ENV_VAR} to a writable directory"
            ) from None
        return dest

    def _quarantine_entry(self, key: str, reason: str, name: str | None) -> None:
        dest = self.quarantine(self.root / key, reason)
        what = _describe(key, name)
        if reason == LEGACY:
            log.info("%s: %s; moved to %s and rebuilt", what, reason, dest)
            return
        msg = f"kernel cache: {what} is broken: {reason}; moved to {dest}, rebuilding it"
        log.warning(msg)
        warnings.warn(msg, KernelCacheWarning, stacklevel=4)

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
                except OSError as e:
                    raise unusable_root(self.root, e) from None
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
            return {key: self._publish(key, src, modules[module_name(key)], tmp, tc) for key, src in units.items()}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, key: str, src: str, built: Path, tmp: Path, tc: Toolchain) -> Path:
        """Make the entry in `tmp`, record the module's size, digest and times, and rename it into place."""
        name = module_name(key)
        entry = tmp / "entries" / key
        entry.mkdir(parents=True)
        module = entry / f"{name}{EXT_SUFFIX}"
        shutil.copy2(built, module)
        (entry / "kernel.cpp").write_text(src)
        st = module.stat()
        meta = {
            "key": key,
            "module": name,
            "meta_version": META_VERSION,
            "toolchain": tc.fingerprint,
            "built_by_pid": os.getpid(),
            "file": {
                "name": module.name,
                "size": st.st_size,
                "sha256": file_sha256(module),
                "mtime_ns": st.st_mtime_ns,
                "ctime_ns": st.st_ctime_ns,
            },
        }
        (entry / "meta.json").write_text(json.dumps(meta, indent=2))
        final = self.root / key
        try:
            os.rename(entry, final)  # atomic publish; a directory rename leaves the module's times as recorded
        except OSError:
            if self.check(key) is not None:  # a broken leftover: move it aside and publish ours
                self.quarantine(final, "left over when a new build was published")
                os.rename(entry, final)
        return final

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
        """Delete every cached kernel (and the quarantine); returns how many entries were removed."""
        n = 0
        if self.root.is_dir():
            for path in self.root.iterdir():
                if path.is_dir() and not path.name.startswith("."):
                    shutil.rmtree(path, ignore_errors=True)
                    n += 1
            shutil.rmtree(self.root / ".quarantine", ignore_errors=True)
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
