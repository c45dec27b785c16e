"""The C++ literal sanitiser, re-exported: it lives in `harness.names`, below the operators that use it too."""

from harness.names import INT64_MAX, INT64_MIN, QUIET_NAN_BITS, cpp_double, cpp_int, cpp_name

__all__ = ["INT64_MAX", "INT64_MIN", "QUIET_NAN_BITS", "cpp_double", "cpp_int", "cpp_name"]
