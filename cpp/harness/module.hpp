// Defines the Python entry point of a generated kernel module with the plain C API (no pybind11 headers,
// so a kernel compiles in a fraction of a second): the module exposes `api`, a capsule of hs_kernel_api
// that harness._native's Kernel runs.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "harness/kernel_abi.h"

#define HS_CONCAT_(a, b) a##b
#define HS_CONCAT(a, b) HS_CONCAT_(a, b)
#define HS_STR_(a) #a
#define HS_STR(a) HS_STR_(a)

#define HS_DEFINE_KERNEL_MODULE(NAME, API, DOC)                                                     \
    static PyModuleDef hs_module_def = {PyModuleDef_HEAD_INIT, HS_STR(NAME), DOC, -1, nullptr,       \
                                        nullptr, nullptr, nullptr, nullptr};                         \
    PyMODINIT_FUNC HS_CONCAT(PyInit_, NAME)(void) {                                                  \
        PyObject* m = PyModule_Create(&hs_module_def);                                               \
        if (m == nullptr) return nullptr;                                                            \
        PyObject* cap = PyCapsule_New(const_cast<hs_kernel_api*>(&(API)), HS_KERNEL_CAPSULE, nullptr); \
        if (cap == nullptr || PyModule_AddObject(m, "api", cap) < 0) {                               \
            Py_XDECREF(cap);                                                                         \
            Py_DECREF(m);                                                                            \
            return nullptr;                                                                          \
        }                                                                                            \
        return m;                                                                                    \
    }
