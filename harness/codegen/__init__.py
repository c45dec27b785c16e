"""C++ code generation under the native backend: emit (source from the call plans), toolchain, build (CMake),
cache (content-hash, self-healing) and native (loading a built module). The kernel they make is
`harness.backends.native.NativeKernel`; `compile_many` and `compile_cpp` live there and are re-exported here."""

from __future__ import annotations

from typing import Any

__all__ = ["compile_cpp", "compile_many"]


def __getattr__(name: str) -> Any:
    """`compile_many` / `compile_cpp` from harness.backends.native, imported on first use (that module imports
    this package's submodules, so a top-level import here would be circular at run time)."""
    if name in __all__:
        from harness.backends import native

        return getattr(native, name)
    raise AttributeError(f"module 'harness.codegen' has no attribute {name!r}")
