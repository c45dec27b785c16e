"""NativeKernel: a generated, compiled kernel behind the shared Kernel interface (backend "cpp")."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from harness.errors import EventsError
from harness.events import ERR_MEMORY, ERR_OPERATOR, row_error
from harness.kernel import Kernel

INT64_MIN = -(2**63)

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.codegen.cache import CacheEntry
    from harness.codegen.emit import KernelSource
    from harness.events import EventBatch

_LOADED: dict[str, ModuleType] = {}
_LOAD_LOCK = threading.Lock()


def load_module(path: Path | str, name: str) -> ModuleType:
    """Import the extension module at `path` (once per process; the path is used as given, not normalised).

    Callers verify the file first (`KernelCache.check`): opening a damaged shared object can kill the process.
    """
    path = str(path)
    with _LOAD_LOCK:
        module = _LOADED.get(path)
        if module is None:
            loader = importlib.machinery.ExtensionFileLoader(name, path)
            spec = importlib.util.spec_from_file_location(name, path, loader=loader)
            assert spec is not None
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            _LOADED[path] = module
        return module


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
