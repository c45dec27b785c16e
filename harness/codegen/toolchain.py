"""What a kernel is compiled with: compiler, flags, CMake/Ninja, pybind11, Python ABI and runtime headers.

All of it enters the kernel cache key, so a change of any of them (a new compiler, other flags, edited
runtime headers, another Python) builds a new kernel instead of loading a stale one.
"""

from __future__ import annotations

import ctypes.util
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from harness import package_data
from harness.errors import HarnessError

COMMON_FLAGS = ("-std=c++17", "-ffp-contract=off", "-fno-math-errno", "-DNDEBUG")
OPT_FLAGS = {"O2": ("-O2",), "O3": ("-O3",), "native": ("-O3", "-march=native")}


class ToolchainError(HarnessError):
    """A tool needed to build kernels (compiler, CMake) is missing."""


@dataclass(frozen=True)
class Toolchain:
    """The build environment of kernels; `fingerprint` is what the cache key uses."""

    cxx: str
    cxx_version: str
    cmake: str
    generator: str
    make_program: str
    pybind11_dir: str
    pybind11_version: str
    python: str
    python_abi: str
    include_dir: Path
    headers_digest: str
    opt: str
    flags: tuple[str, ...]
    cpu: str
    link_libs: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Everything that changes the compiled module, as one text."""
        return "\n".join(
            [
                f"cxx={self.cxx} {self.cxx_version}",
                f"flags={' '.join(self.flags)}",
                f"libs={' '.join(self.link_libs)}",
                f"cpu={self.cpu}",
                f"pybind11={self.pybind11_version}",
                f"python={self.python_abi}",
                f"headers={self.headers_digest}",
            ]
        )


def runtime_include_dir() -> Path:
    """Directory holding `harness/*.hpp` (`harness.package_data`): inside an installed wheel, or `cpp/` of the
    source checkout."""
    include = package_data.layout().include
    if not (include / "harness" / "kernel_abi.h").is_file():
        raise ToolchainError(f"harness C++ runtime headers not found in {include}; reinstall harness")
    return include


def _headers_digest(include: Path) -> str:
    h = hashlib.sha256()
    for path in sorted((include / "harness").glob("*.h*")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _find_cmake() -> str:
    try:
        import cmake  # type: ignore[import-not-found]

        exe = Path(cmake.CMAKE_BIN_DIR) / "cmake"
        if exe.is_file():
            return str(exe)
    except ImportError:
        pass
    exe = shutil.which("cmake")
    if exe is None:
        raise ToolchainError("CMake is needed to build kernels and was not found; `pip install cmake`")
    return exe


def _find_ninja() -> str | None:
    try:
        import ninja  # type: ignore[import-not-found]

        exe = Path(ninja.BIN_DIR) / "ninja"
        if exe.is_file():
            return str(exe)
    except ImportError:
        pass
    return shutil.which("ninja")


def _cpu_model() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("flags")), "")
    return f"{model} flags:{hashlib.sha256(flags.encode()).hexdigest()[:16]}"


def vector_math_available() -> str | None:
    """None when vector_math kernels can be built here, else the reason they cannot."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"vector_math needs an x86-64 CPU (this is {platform.machine()})"
    if ctypes.util.find_library("mvec") is None:
        return "vector_math needs glibc's libmvec (glibc >= 2.35 on Linux), which was not found"
    return None


@functools.cache
def toolchain(opt: str = "O2", vector_math: bool = False) -> Toolchain:
    """Detect the toolchain once per process, optimisation level ("O2", "O3" or "native") and math mode."""
    if opt not in OPT_FLAGS:
        raise ToolchainError(f"unknown optimisation level {opt!r}; choose one of {', '.join(OPT_FLAGS)}")
    if vector_math and (reason := vector_math_available()) is not None:
        raise ToolchainError(reason)
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        raise ToolchainError("a C++ compiler is needed to build kernels and none was found (set CXX)")
    cxx = shutil.which(cxx) or cxx
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ToolchainError(f"the C++ compiler {cxx} does not run: {e}") from None
    import pybind11

    ninja = _find_ninja()
    include = runtime_include_dir()
    return Toolchain(
        cxx=cxx,
        cxx_version=version.splitlines()[0] if version else "unknown",
        cmake=_find_cmake(),
        generator="Ninja" if ninja else "Unix Makefiles",
        make_program=ninja or (shutil.which("make") or "make"),
        pybind11_dir=pybind11.get_cmake_dir(),
        pybind11_version=pybind11.__version__,
        python=sys.executable,
        python_abi=f"{sys.version.split()[0]} {sysconfig.get_config_var('EXT_SUFFIX')}",
        include_dir=include,
        headers_digest=_headers_digest(include),
        opt=opt,
        flags=OPT_FLAGS[opt] + COMMON_FLAGS + (("-DHS_VECTOR_MATH",) if vector_math else ()),
        cpu=_cpu_model() if opt == "native" else platform.machine(),
        link_libs=("mvec",) if vector_math else (),
    )
