"""`hs.compile` and the Kernel interface, re-exported from their home, harness.backends (kept for old imports)."""

from harness.backends import BACKENDS, compile
from harness.backends.interface import Kernel

__all__ = ["BACKENDS", "Kernel", "compile"]
