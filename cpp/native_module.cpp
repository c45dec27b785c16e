// harness._native: the C++ runtime built once at install time (not per circuit).
//  - Kernel: owns the state of one generated kernel and runs it through the kernel's C interface
//    (kernel_abi.h); replay releases the GIL. Keeping the pybind11 bindings here means a generated
//    kernel never includes pybind11 headers.
//  - the numeric twins of numeric.hpp (its HS_NUMERIC_TWINS list), so tests can prove they agree bit for bit
//    with their Python twins, and the names of vecmath.hpp's vector functions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness/kernel_abi.h"
#include "harness/numeric.hpp"
#include "harness/scan.hpp"
#include "harness/vecmath.hpp"

namespace py = pybind11;

namespace {

using f64_array = py::array_t<double, py::array::c_style>;

const double* f64_data(const py::array& a, const char* what, py::ssize_t n) {
    if (!py::isinstance<py::array_t<double>>(a) || a.ndim() != 1 || a.shape(0) < n ||
        !(a.flags() & py::array::c_style)) {
        throw std::invalid_argument(std::string(what) + ": expected a contiguous 1-d float64 array of length >= " +
                                    std::to_string(n));
    }
    return static_cast<const double*>(a.data());
}

// Growable storage behind an hs_rows sink (replay with timer rows).
struct RowsSink {
    hs_rows rows{};
    std::vector<int64_t> t;
    std::vector<int32_t> source;
    std::vector<std::vector<double>> values;
    std::vector<std::vector<uint8_t>> valid;
    std::vector<double*> value_ptrs;
    std::vector<uint8_t*> valid_ptrs;

    RowsSink(size_t n_outputs, int64_t cap) : values(n_outputs), valid(n_outputs) {
        rows.owner = this;
        rows.grow = &RowsSink::grow_cb;
        resize(std::max<int64_t>(cap, 16));
    }
    void resize(int64_t cap) {
        t.resize(static_cast<size_t>(cap));
        source.resize(static_cast<size_t>(cap));
        value_ptrs.clear();
        valid_ptrs.clear();
        for (size_t j = 0; j < values.size(); ++j) {
            values[j].resize(static_cast<size_t>(cap));
            valid[j].resize(static_cast<size_t>(cap));
            value_ptrs.push_back(values[j].data());
            valid_ptrs.push_back(valid[j].data());
        }
        rows.cap = cap;
        rows.t = t.data();
        rows.source = source.data();
        rows.values = value_ptrs.data();
        rows.valid = valid_ptrs.data();
    }
    static int grow_cb(hs_rows* r) {
        try {
            static_cast<RowsSink*>(r->owner)->resize(r->cap * 2);
            return 1;
        } catch (const std::bad_alloc&) {
            return 0;
        }
    }
};

template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v, int64_t n) {
    py::array_t<T> out(static_cast<py::ssize_t>(n));
    std::copy(v.begin(), v.begin() + n, out.mutable_data());
    return out;
}

py::tuple error_tuple(int64_t done, const hs_replay_error& e) {
    return py::make_tuple(done, e.kind, e.column, e.code, e.a, e.b);
}

class Kernel {
   public:
    Kernel(py::capsule api, py::array params) : owner_(api) {
        if (std::strcmp(api.name(), HS_KERNEL_CAPSULE) != 0) {
            throw std::invalid_argument("not a harness kernel capsule");
        }
        api_ = static_cast<const hs_kernel_api*>(api.get_pointer());
        if (api_->abi != HS_KERNEL_ABI) {
            throw std::runtime_error("kernel was generated for kernel ABI " + std::to_string(api_->abi) +
                                     " but harness._native implements ABI " + std::to_string(HS_KERNEL_ABI) +
                                     "; reinstall harness (pip install -e .) and clear the kernel cache");
        }
        size_t align = api_->state_align < alignof(std::max_align_t) ? alignof(std::max_align_t) : api_->state_align;
        size_t size = (api_->state_size + align - 1) / align * align;
        state_ = std::aligned_alloc(align, size == 0 ? align : size);
        if (state_ == nullptr) throw std::bad_alloc();
        api_->init(state_, f64_data(params, "params", api_->n_params));
        live_ = true;
    }
    ~Kernel() {
        if (live_) api_->destroy(state_);
        std::free(state_);
    }
    Kernel(const Kernel&) = delete;
    Kernel& operator=(const Kernel&) = delete;

    void reset(py::array params) {
        const double* p = f64_data(params, "params", api_->n_params);
        if (live_) api_->destroy(state_);
        live_ = false;
        api_->init(state_, p);
        live_ = true;
    }
    void set_params(py::array params) { api_->set_params(state_, f64_data(params, "params", api_->n_params)); }

    // One event; returns (0, ...) or (error kind, column, code, a, b) like replay.
    py::tuple call(int32_t trigger, int64_t t, py::array scalars, py::list lists) {
        if (trigger < 0 || static_cast<uint32_t>(trigger) >= api_->n_triggers) {
            throw std::out_of_range("trigger index out of range");
        }
        std::vector<const double*> list_ptrs;
        std::vector<int64_t> sizes;
        for (auto item : lists) {
            py::array a = item.cast<py::array>();
            list_ptrs.push_back(f64_data(a, "list input", 0));
            sizes.push_back(a.shape(0));
        }
        hs_replay_error e{-1, HS_ERR_NONE, -1, 0, 0.0, 0.0};
        api_->call(state_, trigger, t, f64_data(scalars, "inputs", 0), list_ptrs.data(), sizes.data(), &e);
        return error_tuple(0, e);
    }

    py::tuple advance(int64_t t) {
        hs_replay_error e{-1, HS_ERR_NONE, -1, 0, 0.0, 0.0};
        api_->advance(state_, t, &e);
        return error_tuple(0, e);
    }

    std::optional<double> value(uint32_t j) const {
        if (j >= api_->n_outputs) throw std::out_of_range("output index out of range");
        std::vector<double> v(api_->n_outputs);
        std::vector<uint8_t> ok(api_->n_outputs);
        api_->read(state_, v.data(), ok.data());
        if (!ok[j]) return std::nullopt;
        return v[j];
    }

    // Runs a batch. Without timer rows it writes into `out` / `bits` (one row per event) and returns
    // (rows done, error kind, column, code, a, b). With timer rows (`out` is None) it returns that tuple
    // plus (t, source, values[outputs, rows], valid[outputs, rows]) of the recorded rows. On an error the
    // kernel has restored its state, so a failed batch changes nothing.
    py::tuple replay(py::array t, int64_t last_t, py::array codes, py::object remap, py::list columns,
                     py::list offsets, py::list bitmaps, std::vector<int64_t> bit_offsets, py::object out_obj,
                     py::object bits_obj) {
        if (!py::isinstance<py::array_t<int64_t>>(t) || t.ndim() != 1 || !(t.flags() & py::array::c_style)) {
            throw std::invalid_argument("t: expected a contiguous 1-d int64 array");
        }
        const py::ssize_t n = t.shape(0);
        const int32_t code_bytes = static_cast<int32_t>(codes.itemsize());
        if (codes.ndim() != 1 || codes.shape(0) != n || !(codes.flags() & py::array::c_style) ||
            codes.dtype().kind() != 'i' || (code_bytes != 1 && code_bytes != 2 && code_bytes != 4)) {
            throw std::invalid_argument("codes: expected a contiguous 1-d int8/int16/int32 array as long as t");
        }
        const int32_t* remap_ptr = nullptr;
        int64_t remap_size = 0;
        py::array remap_arr;
        if (!remap.is_none()) {
            remap_arr = remap.cast<py::array>();
            if (!py::isinstance<py::array_t<int32_t>>(remap_arr) || !(remap_arr.flags() & py::array::c_style)) {
                throw std::invalid_argument("remap: expected a contiguous int32 array");
            }
            remap_ptr = static_cast<const int32_t*>(remap_arr.data());
            remap_size = remap_arr.size();
        }
        const size_t n_in = api_->n_inputs;
        if (columns.size() != n_in || offsets.size() != n_in || bitmaps.size() != n_in || bit_offsets.size() != n_in) {
            throw std::invalid_argument("columns/offsets/bitmaps/bit_offsets: expected one entry per input");
        }
        std::vector<const double*> cols(n_in, nullptr);
        std::vector<const int32_t*> offs(n_in, nullptr);
        std::vector<const uint8_t*> valid(n_in, nullptr);
        std::vector<py::buffer_info> keep;
        for (size_t i = 0; i < n_in; ++i) {
            const bool is_list = !offsets[i].is_none();
            if (is_list) {
                py::array o = offsets[i].cast<py::array>();
                if (!py::isinstance<py::array_t<int32_t>>(o) || o.ndim() != 1 || o.shape(0) != n + 1 ||
                    !(o.flags() & py::array::c_style)) {
                    throw std::invalid_argument("offsets: expected contiguous int32 arrays of length rows + 1");
                }
                offs[i] = static_cast<const int32_t*>(o.data());
            }
            if (!columns[i].is_none()) {
                py::array c = columns[i].cast<py::array>();
                cols[i] = f64_data(c, "column", is_list ? (n > 0 ? offs[i][n] : 0) : n);
            }
            if (!bitmaps[i].is_none()) {
                keep.push_back(bitmaps[i].cast<py::buffer>().request());
                if (keep.back().size * keep.back().itemsize * 8 < bit_offsets[i] + n) {
                    throw std::invalid_argument("bitmaps: a validity bitmap is shorter than its column");
                }
                valid[i] = static_cast<const uint8_t*>(keep.back().ptr);
            }
        }
        const int64_t* times = static_cast<const int64_t*>(t.data());
        const void* code_ptr = codes.data();
        hs_replay_error error{-1, HS_ERR_NONE, -1, 0, 0.0, 0.0};
        const py::ssize_t n_out = api_->n_outputs;
        if (out_obj.is_none()) {  // timer rows: a growable sink
            RowsSink sink(static_cast<size_t>(n_out), n + n / 4 + 16);
            int64_t done;
            {
                py::gil_scoped_release release;
                done = api_->replay(state_, n, times, last_t, code_ptr, code_bytes, remap_ptr, remap_size, cols.data(),
                                    offs.data(), valid.data(), bit_offsets.data(), nullptr, nullptr, &sink.rows, &error);
            }
            const int64_t m = sink.rows.n;
            py::array_t<double> values({n_out, static_cast<py::ssize_t>(m)});
            py::array_t<uint8_t> ok({n_out, static_cast<py::ssize_t>(m)});
            for (py::ssize_t j = 0; j < n_out; ++j) {
                std::copy(sink.values[j].begin(), sink.values[j].begin() + m, values.mutable_data(j, 0));
                std::copy(sink.valid[j].begin(), sink.valid[j].begin() + m, ok.mutable_data(j, 0));
            }
            return py::make_tuple(done, error.kind, error.column, error.code, error.a, error.b, to_numpy(sink.t, m),
                                  to_numpy(sink.source, m), values, ok);
        }
        py::array out = out_obj.cast<py::array>();
        py::array bits = bits_obj.cast<py::array>();
        const py::ssize_t nbytes = (n + 7) / 8;
        if (!py::isinstance<py::array_t<double>>(out) || out.ndim() != 2 || out.shape(0) != n_out ||
            out.shape(1) != n || !(out.flags() & py::array::c_style) || !out.writeable()) {
            throw std::invalid_argument("out: expected a writable C-contiguous float64 array (outputs, rows)");
        }
        if (!py::isinstance<py::array_t<uint8_t>>(bits) || bits.ndim() != 2 || bits.shape(0) != n_out ||
            bits.shape(1) != nbytes || !(bits.flags() & py::array::c_style) || !bits.writeable()) {
            throw std::invalid_argument("bits: expected a writable C-contiguous uint8 array (outputs, ceil(rows/8))");
        }
        std::vector<double*> outs(n_out);
        std::vector<uint8_t*> out_valid(n_out);
        auto* out_base = static_cast<double*>(out.mutable_data());
        auto* bits_base = static_cast<uint8_t*>(bits.mutable_data());
        for (py::ssize_t j = 0; j < n_out; ++j) {
            outs[j] = out_base + j * n;
            out_valid[j] = bits_base + j * nbytes;
        }
        int64_t done;
        {
            py::gil_scoped_release release;
            done = api_->replay(state_, n, times, last_t, code_ptr, code_bytes, remap_ptr, remap_size, cols.data(),
                                offs.data(), valid.data(), bit_offsets.data(), outs.data(), out_valid.data(), nullptr,
                                &error);
        }
        return error_tuple(done, error);
    }

    uint32_t n_inputs() const { return api_->n_inputs; }
    uint32_t n_outputs() const { return api_->n_outputs; }
    uint32_t n_triggers() const { return api_->n_triggers; }
    uint32_t n_params() const { return api_->n_params; }
    size_t state_size() const { return api_->state_size; }

   private:
    py::capsule owner_;
    const hs_kernel_api* api_ = nullptr;
    void* state_ = nullptr;
    bool live_ = false;
};

// One pass over a batch of events: how many rows each trigger has, and the first row whose trigger sets an
// input that is null there. required[code * n_cols + c] says whether trigger `code` sets column c;
// bitmaps[c] is column c's Arrow validity bitmap (None: no nulls) starting at bit offsets[c].
py::tuple scan_events(py::array codes_arr, uint32_t n_triggers, py::array required_arr, py::list bitmaps,
                      std::vector<int64_t> offsets) {
    if (!py::isinstance<py::array_t<int32_t>>(codes_arr) || codes_arr.ndim() != 1 ||
        !(codes_arr.flags() & py::array::c_style)) {
        throw std::invalid_argument("codes: expected a contiguous 1-d int32 array");
    }
    const size_t n_cols = bitmaps.size();
    if (offsets.size() != n_cols || required_arr.size() != static_cast<py::ssize_t>(n_triggers * n_cols) ||
        !py::isinstance<py::array_t<uint8_t>>(required_arr) || !(required_arr.flags() & py::array::c_style)) {
        throw std::invalid_argument("required/offsets: expected n_triggers * n_columns flags and one offset per column");
    }
    const int32_t* codes = static_cast<const int32_t*>(codes_arr.data());
    const uint8_t* required = static_cast<const uint8_t*>(required_arr.data());
    const py::ssize_t n = codes_arr.shape(0);
    std::vector<const uint8_t*> bits(n_cols, nullptr);
    std::vector<py::buffer_info> keep;
    for (size_t c = 0; c < n_cols; ++c) {
        if (bitmaps[c].is_none()) continue;
        keep.push_back(bitmaps[c].cast<py::buffer>().request());
        bits[c] = static_cast<const uint8_t*>(keep.back().ptr);
    }
    // per trigger: the columns it sets that have nulls at all (the only ones worth a bit test)
    std::vector<std::vector<size_t>> checks(n_triggers);
    for (uint32_t code = 0; code < n_triggers; ++code) {
        for (size_t c = 0; c < n_cols; ++c) {
            if (required[code * n_cols + c] && bits[c] != nullptr) checks[code].push_back(c);
        }
    }
    std::vector<int64_t> counts(n_triggers, 0);
    int64_t bad_row = -1, bad_col = -1;
    {
        py::gil_scoped_release release;
        for (py::ssize_t r = 0; r < n && bad_row < 0; ++r) {
            const int32_t code = codes[r];
            if (code < 0 || static_cast<uint32_t>(code) >= n_triggers) {
                bad_row = r;
                bad_col = -2;
                break;
            }
            ++counts[code];
            for (const size_t c : checks[code]) {
                const int64_t i = offsets[c] + r;
                if (!((bits[c][i >> 3] >> (i & 7)) & 1)) {
                    bad_row = r;
                    bad_col = static_cast<int64_t>(c);
                    break;
                }
            }
        }
    }
    py::array_t<int64_t> out_counts(static_cast<py::ssize_t>(n_triggers));
    std::copy(counts.begin(), counts.end(), out_counts.mutable_data());
    return py::make_tuple(out_counts, bad_row, bad_col);
}

// a [1 or F, N], b [F, N], out [F, N]: C-contiguous float64 (checked), the scan runs without the GIL
template <void (*Scan)(const double*, bool, const double*, double*, std::int64_t, std::int64_t)>
void linear_scan(const py::array& a, const py::array& b, py::array& out) {
    auto ok = [](const py::array& x) {
        return py::isinstance<py::array_t<double>>(x) && x.ndim() == 2 && (x.flags() & py::array::c_style);
    };
    if (!ok(a) || !ok(b) || !ok(out) || !out.writeable()) {
        throw std::invalid_argument("linear scan: a, b and out must be C-contiguous 2-d float64 arrays");
    }
    const py::ssize_t rows = b.shape(0), n = b.shape(1);
    if (out.shape(0) != rows || out.shape(1) != n || a.shape(1) != n || (a.shape(0) != 1 && a.shape(0) != rows)) {
        throw std::invalid_argument("linear scan: a must be [1 or F, N] and out [F, N] for b [F, N]");
    }
    const auto* ap = static_cast<const double*>(a.data());
    const auto* bp = static_cast<const double*>(b.data());
    auto* op = static_cast<double*>(out.mutable_data());
    const bool shared = a.shape(0) == 1 && rows != 1;
    py::gil_scoped_release release;
    Scan(ap, shared, bp, op, rows, n);
}

bool f64_c(const py::array& x, int ndim) {
    return py::isinstance<py::array_t<double>>(x) && x.ndim() == ndim && (x.flags() & py::array::c_style);
}

// gaps [>= N-1], h [F], x [F, N], s [F, N]: C-contiguous float64 (checked); see hs::decay_scan_forward
void decay_scan_forward(const py::array& gaps, const py::array& h, const py::array& x, bool ewma, py::array& s) {
    if (!f64_c(gaps, 1) || !f64_c(h, 1) || !f64_c(x, 2) || !f64_c(s, 2) || !s.writeable()) {
        throw std::invalid_argument("decay scan: gaps, h, x and s must be C-contiguous float64 arrays (1, 1, 2, 2-d)");
    }
    const py::ssize_t rows = x.shape(0), n = x.shape(1);
    if (h.shape(0) != rows || s.shape(0) != rows || s.shape(1) != n || gaps.shape(0) < std::max<py::ssize_t>(n - 1, 0)) {
        throw std::invalid_argument("decay scan: h must be [F], s [F, N] and gaps hold N-1 values for x [F, N]");
    }
    const auto* gp = static_cast<const double*>(gaps.data());
    const auto* hp = static_cast<const double*>(h.data());
    const auto* xp = static_cast<const double*>(x.data());
    auto* sp = static_cast<double*>(s.mutable_data());
    py::gil_scoped_release release;
    hs::decay_scan_forward(gp, hp, xp, ewma, sp, rows, n);
}

// the gradients; dx is None when x needs none
void decay_scan_backward(const py::array& gaps, const py::array& h, const py::array& x, const py::array& s,
                         const py::array& g, bool ewma, py::object dx, py::array& dh) {
    const bool with_dx = !dx.is_none();
    py::array dxa = with_dx ? dx.cast<py::array>() : py::array();
    if (!f64_c(gaps, 1) || !f64_c(h, 1) || !f64_c(x, 2) || !f64_c(s, 2) || !f64_c(g, 2) || !f64_c(dh, 1) ||
        (with_dx && (!f64_c(dxa, 2) || !dxa.writeable())) || !dh.writeable()) {
        throw std::invalid_argument("decay scan backward: arrays must be C-contiguous float64");
    }
    const py::ssize_t rows = x.shape(0), n = x.shape(1);
    const bool shapes = h.shape(0) == rows && dh.shape(0) == rows && s.shape(0) == rows && s.shape(1) == n &&
                        g.shape(0) == rows && g.shape(1) == n && gaps.shape(0) >= std::max<py::ssize_t>(n - 1, 0) &&
                        (!with_dx || (dxa.shape(0) == rows && dxa.shape(1) == n));
    if (!shapes) throw std::invalid_argument("decay scan backward: shapes do not match x [F, N]");
    const auto* gp = static_cast<const double*>(gaps.data());
    const auto* hp = static_cast<const double*>(h.data());
    const auto* xp = static_cast<const double*>(x.data());
    const auto* sp = static_cast<const double*>(s.data());
    const auto* grad = static_cast<const double*>(g.data());
    double* dxp = with_dx ? static_cast<double*>(dxa.mutable_data()) : nullptr;
    auto* dhp = static_cast<double*>(dh.mutable_data());
    py::gil_scoped_release release;
    hs::decay_scan_backward(gp, hp, xp, sp, grad, ewma, dxp, dhp, rows, n);
}

template <typename R, typename... A>
constexpr int arity_of(R (*)(A...)) {
    return static_cast<int>(sizeof...(A));
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "harness C++ runtime: the kernel runner and the numeric twins of harness.ops.numeric";
    m.attr("KERNEL_ABI") = HS_KERNEL_ABI;

    py::class_<Kernel>(m, "Kernel")
        .def(py::init<py::capsule, py::array>(), py::arg("api"), py::arg("params"))
        .def("reset", &Kernel::reset)
        .def("set_params", &Kernel::set_params)
        .def("call", &Kernel::call)
        .def("advance", &Kernel::advance)
        .def("value", &Kernel::value)
        .def("replay", &Kernel::replay)
        .def_property_readonly("n_inputs", &Kernel::n_inputs)
        .def_property_readonly("n_outputs", &Kernel::n_outputs)
        .def_property_readonly("n_triggers", &Kernel::n_triggers)
        .def_property_readonly("n_params", &Kernel::n_params)
        .def_property_readonly("state_size", &Kernel::state_size);

    m.def("scan_events", &scan_events, py::arg("codes"), py::arg("n_triggers"), py::arg("required"),
          py::arg("bitmaps"), py::arg("offsets"));

    m.def("scan_forward", &linear_scan<hs::scan_forward>, py::arg("a"), py::arg("b"), py::arg("out"),
          "out[:, k] = a[:, k] * out[:, k-1] + b[:, k] (out[:, 0] = b[:, 0]); a has one row or one per row of b");
    m.def("scan_reverse", &linear_scan<hs::scan_reverse>, py::arg("a"), py::arg("g"), py::arg("out"),
          "out[:, k] = g[:, k] + a[:, k+1] * out[:, k+1] (out[:, N-1] = g[:, N-1])");

    m.def("decay_scan_forward", &decay_scan_forward, py::arg("gaps"), py::arg("h"), py::arg("x"), py::arg("ewma"),
          py::arg("s"), "the EWMA / decayed-sum recurrence with its weights 2^(-gap/h), into s [F, N]");
    m.def("decay_scan_backward", &decay_scan_backward, py::arg("gaps"), py::arg("h"), py::arg("x"), py::arg("s"),
          py::arg("g"), py::arg("ewma"), py::arg("dx"), py::arg("dh"), "the gradients of decay_scan_forward");

    // the numeric twins of numeric.hpp, each under its name; NUMERIC_TWINS maps each name to its arity
    py::dict twins;
#define HS_BIND_TWIN(NAME)     \
    m.def(#NAME, &hs::NAME);   \
    twins[#NAME] = arity_of(&hs::NAME);
    HS_NUMERIC_TWINS(HS_BIND_TWIN)
#undef HS_BIND_TWIN
    m.attr("NUMERIC_TWINS") = twins;

    py::list vector_functions;  // the hs::vec functions of vecmath.hpp, for the check of operators' vector_cpp
#define HS_LIST_VEC(NAME) vector_functions.append(#NAME);
    HS_VEC_FUNCTIONS(HS_LIST_VEC)
#undef HS_LIST_VEC
    m.attr("VECTOR_FUNCTIONS") = vector_functions;
}
