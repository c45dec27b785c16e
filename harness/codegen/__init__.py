"""C++ kernels: per-trigger code generation, CMake/pybind11 build, content-hash cache, native kernels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.codegen.native import NativeKernel


def compile_many(
    circuits: Sequence[Circuit],
    *,
    opt: str = "O2",
    vector_math: bool | str = False,
    cache_dir: str | Path | None = None,
) -> list[NativeKernel]:
    """Compile several circuits at once (parallel compiles, shared cache); kernels already in the cache
    are loaded, not rebuilt. Returns kernels in the order of `circuits`.

    `vector_math=True` (or "outputs") applies output tanh/exp/log to blocks of rows with glibc's libmvec
    (x86-64): faster replay, results within ~1e-15 relative instead of bit-exact. "all" also computes
    decay weights that way (faster still; ill-conditioned circuits amplify the few-ulp differences).
    """
    from harness.codegen.cache import KernelCache, kernel_key, module_name
    from harness.codegen.emit import generate, vector_math_level
    from harness.codegen.native import NativeKernel
    from harness.codegen.toolchain import toolchain

    level = vector_math_level(vector_math)
    tc = toolchain(opt, level is not None)
    sources = [generate(c, vector_math=level) for c in circuits]
    keys = [kernel_key(s.body, tc) for s in sources]
    units = {key: src.module_source(module_name(key)) for key, src in zip(keys, sources, strict=True)}
    cache = KernelCache(cache_dir)
    entries = cache.ensure(units, tc, names={key: c.name for key, c in zip(keys, circuits, strict=True)})
    kernels = []
    for circuit, src, key in zip(circuits, sources, keys, strict=True):
        module, entry = cache.load(entries[key], units[key], tc, circuit.name)  # rebuilt once if it fails to import
        kernels.append(NativeKernel(circuit, src, entry, module))
    return kernels


def compile_cpp(
    circuit: Circuit, *, opt: str = "O2", vector_math: bool | str = False, cache_dir: str | Path | None = None
) -> NativeKernel:
    """Generate, compile (or load from the cache) and wrap the kernel of one circuit."""
    return compile_many([circuit], opt=opt, vector_math=vector_math, cache_dir=cache_dir)[0]


__all__ = ["compile_cpp", "compile_many"]
