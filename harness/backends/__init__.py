"""`hs.compile`: a circuit checked and compiled by one of the backends, each behind the shared Kernel interface.

    interface.py   Kernel: argument checks, parameters, the events contract, the result table
    reference.py   ReferenceKernel (backend "python"): the interpreter, the oracle
    native.py      NativeKernel (backend "cpp"): generated C++ (harness.codegen), compiled and cached

This package module sits one layer above its backends (harness/layers.py): the factory imports them, they never
import it. A backend is imported when first asked for, so `import harness` does not load the C++ toolchain.
"""

from __future__ import annotations

from typing import Any

from harness.backends.interface import Kernel
from harness.circuit.builder import Circuit

BACKENDS = ("cpp", "python")

__all__ = ["BACKENDS", "Kernel", "compile"]


def compile(circuit: Circuit, backend: str = "cpp", **options: Any) -> Kernel:
    """Validate `circuit` and build a kernel: backend "cpp" (generated C++) or "python" (reference).

    C++ options: `opt` ("O2" default, "O3", or "native" = -O3 -march=native), `vector_math` (False
    default: bit-exact with the reference; True or "outputs": output tanh/exp/log through libmvec a
    block of rows at a time, ~1e-15 relative; "all": decay weights too) and `cache_dir`
    (default `$HARNESS_KERNEL_CACHE` or the user cache dir).
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"compile() takes a harness Circuit, got {type(circuit).__name__}")
    circuit.validate()
    if backend == "python":
        if options:
            raise TypeError(f"the python backend takes no options, got {sorted(options)}")
        from harness.backends.reference import ReferenceKernel

        return ReferenceKernel(circuit)
    if backend == "cpp":
        from harness.backends.native import compile_cpp

        return compile_cpp(circuit, **options)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
