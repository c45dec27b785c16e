"""The native backend (backend "cpp"): circuits compiled to C++ by harness.codegen, wrapped as NativeKernel.

`compile_many` generates each circuit's source (harness.codegen.emit), builds what the content-hash cache lacks
(harness.codegen.cache, .build) and loads the modules; `NativeKernel` runs events through them behind the shared
Kernel interface, the per-row rules checked in the generated loop and reported through `harness.events`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from harness.backends.interface import Kernel
from harness.codegen.cache import KernelCache, kernel_key, module_name
from harness.codegen.emit import generate, vector_math_level
from harness.codegen.toolchain import toolchain
from harness.errors import EventsError
from harness.events import ERR_MEMORY, ERR_OPERATOR, row_error

INT64_MIN = -(2**63)

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.codegen.cache import CacheEntry
    from harness.codegen.emit import KernelSource
    from harness.events import EventBatch


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
        kernel = NativeKernel(circuit, src, entry, module)
        kernel.options = {"opt": opt, "vector_math": vector_math, "cache_dir": str(cache.root)}
        kernels.append(kernel)
    return kernels


def compile_cpp(
    circuit: Circuit, *, opt: str = "O2", vector_math: bool | str = False, cache_dir: str | Path | None = None
) -> NativeKernel:
    """Generate, compile (or load from the cache) and wrap the kernel of one circuit."""
    return compile_many([circuit], opt=opt, vector_math=vector_math, cache_dir=cache_dir)[0]


class NativeKernel(Kernel):
    """A kernel whose events run in generated C++ (`hs.compile(c)`); replay releases the GIL.

    `source` is the generated C++, `kernel_hash` its cache key, `build` how it was obtained (compiled or
    loaded from the cache, and how long that took). A kernel is safe to use from several threads (calls
    are serialised), and parameters change without recompiling.
    """

    backend = "cpp"

    def __init__(self, circuit: Circuit, source: KernelSource, entry: CacheEntry, module: ModuleType) -> None:
        super().__init__(circuit)
        from harness import _native

        if tuple(self.inputs) != source.inputs or tuple(self.outputs) != source.outputs:
            raise AssertionError("generated kernel layout does not match the plan")
        self.source: str = source.module_source(entry.module)
        self.kernel_hash: str = entry.key
        self.vector_math: str | None = source.vector_math
        self.build: dict[str, Any] = {
            "cache_hit": not entry.built,
            "seconds": entry.seconds,
            "module": str(entry.module_path),
        }
        self.options: dict[str, Any] = {}  # how it was compiled (what a shard's worker compiles it with)
        self._lock = threading.Lock()
        self._k = _native.Kernel(module.api, self._param_array())

    def _param_array(self) -> np.ndarray:
        return np.array([self._params[name] for name in self.plan.parameters], dtype=np.float64)

    def _reset(self) -> None:
        with self._lock:
            self._k.reset(self._param_array())

    def _apply_params(self) -> None:
        with self._lock:
            self._k.set_params(self._param_array())

    def _call(self, trigger: int, t: int, values: list[Any]) -> None:
        scalars = np.asarray([v for v in values if not isinstance(v, list)], dtype=np.float64)
        lists = [np.asarray(v, dtype=np.float64) for v in values if isinstance(v, list)]
        with self._lock:
            _, kind, column, code, a, b = self._k.call(trigger, t, scalars, lists)
        if kind:
            raise EventsError(
                f"event {self.triggers[trigger]!r} at t={t}: {self._operator_failure(column, code, a, b)}"
            )

    def _advance(self, t: int) -> None:
        with self._lock:
            _, kind, column, code, a, b = self._k.advance(t)
        if kind:
            raise EventsError(f"advance to t={t}: {self._operator_failure(column, code, a, b)}")

    def _value(self, output: int) -> float | None:
        with self._lock:
            return self._k.value(output)

    def _native_replay(self, eb: EventBatch, last_t: int | None, out: Any, bits: Any) -> tuple:
        prev = INT64_MIN if last_t is None else last_t
        with self._lock:
            result = self._k.replay(
                eb.t, prev, eb.codes, eb.remap, eb.values, eb.offsets, eb.bitmaps, eb.bit_offsets, out, bits
            )
        done, kind, column, code, a, b = result[:6]
        if done != len(eb):
            if kind == ERR_OPERATOR:
                row = eb.offset + done
                trigger = self.triggers[int(eb.trigger[done])]
                raise EventsError(
                    f"events: row {row} (t={int(eb.t[done])}, trigger {trigger!r}): "
                    f"{self._operator_failure(column, code, a, b)}"
                )
            if kind == ERR_MEMORY:
                raise MemoryError("replay: out of memory for the recorded rows")
            row_error(eb, self.events_schema, last_t, kind, done, column)
        return result

    def _run_batch(self, eb: EventBatch, last_t: int | None) -> list[pa.Array]:
        n = len(eb)
        n_out = len(self.outputs)
        out = np.empty((n_out, n), dtype=np.float64)
        bits = np.zeros((n_out, (n + 7) // 8), dtype=np.uint8)
        self._native_replay(eb, last_t, out, bits)
        return [
            pa.Array.from_buffers(pa.float64(), n, [pa.py_buffer(bits[j]), pa.py_buffer(out[j])]) for j in range(n_out)
        ]

    def _run_batch_rows(self, eb: EventBatch, last_t: int | None) -> tuple[np.ndarray, np.ndarray, list[pa.Array]]:
        *_, t, source, values, valid = self._native_replay(eb, last_t, None, None)
        arrays = [pa.array(values[j], type=pa.float64(), mask=valid[j] == 0) for j in range(len(self.outputs))]
        return t, source, arrays
