"""Loading a built kernel module (an extension module, once per process); NativeKernel (harness.backends.native)
wraps it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import threading
from pathlib import Path
from types import ModuleType

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
