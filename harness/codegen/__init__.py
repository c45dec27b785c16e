"""C++ kernels: per-trigger code generation, CMake/pybind11 build, content-hash cache, native kernels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.codegen.native import NativeKernel


def compile_many(
    circuits: Sequence[Circuit], *, opt: str = "O2", cache_dir: str | Path | None = None
) -> list[NativeKernel]:
    """Compile several circuits at once: one CMake configure, parallel compiles, shared cache.

    Kernels already in the cache are loaded, not rebuilt. Returns kernels in the order of `circuits`.
    """
    from harness.codegen.cache import KernelCache, kernel_key, module_name
    from harness.codegen.emit import generate
    from harness.codegen.native import NativeKernel, load_module
    from harness.codegen.toolchain import toolchain

    tc = toolchain(opt)
    sources = [generate(c) for c in circuits]
    keys = [kernel_key(s.body, tc) for s in sources]
    units = {key: src.module_source(module_name(key)) for key, src in zip(keys, sources, strict=True)}
    entries = KernelCache(cache_dir).ensure(units, tc)
    kernels = []
    for circuit, src, key in zip(circuits, sources, keys, strict=True):
        entry = entries[key]
        module = load_module(entry.module_path, entry.module)
        kernels.append(NativeKernel(circuit, src, entry, module))
    return kernels


def compile_cpp(circuit: Circuit, *, opt: str = "O2", cache_dir: str | Path | None = None) -> NativeKernel:
    """Generate, compile (or load from the cache) and wrap the kernel of one circuit."""
    return compile_many([circuit], opt=opt, cache_dir=cache_dir)[0]


__all__ = ["compile_cpp", "compile_many"]
