// harness._native: the C++ runtime pieces built once at install time (not per circuit).
// For now it exposes the numeric helpers of numeric.hpp so tests can prove that they agree bit for bit
// with the Python reference in harness/ops/numeric.py.
#include <pybind11/pybind11.h>

#include "harness/numeric.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
    m.doc() = "harness C++ runtime helpers (numeric twins of harness.ops.numeric)";
    m.def("div", &hs::div);
    m.def("exp", &hs::exp);
    m.def("exp2", &hs::exp2);
    m.def("log", &hs::log);
    m.def("sqrt", &hs::sqrt);
    m.def("tanh", &hs::tanh);
    m.def("sigmoid", &hs::sigmoid);
    m.def("relu", &hs::relu);
    m.def("fmin", &hs::fmin);
    m.def("fmax", &hs::fmax);
    m.def("clamp", &hs::clamp);
    m.def("decay_weight", &hs::decay_weight);
    m.def("seconds_to_ns", &hs::seconds_to_ns);
}
