// The l1_pressure benchmark circuit written by hand in scalar C++: the reference frame for the generated
// kernel. Same operations in the same order, so the outputs are bit-identical to the kernel's.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>

namespace py = pybind11;

template <typename T>
const T* ptr(const py::array& a) {
    return static_cast<const T*>(a.data());
}

void replay(py::array t_, py::array trig_, py::array bid_, py::array ask_, py::array bsz_, py::array asz_,
            py::array ss_, py::array out_, py::array valid_) {
    const int64_t n = t_.shape(0);
    const int64_t* t = ptr<int64_t>(t_);
    const int32_t* trig = ptr<int32_t>(trig_);
    const double *bid = ptr<double>(bid_), *ask = ptr<double>(ask_), *bsz = ptr<double>(bsz_);
    const double *asz = ptr<double>(asz_), *ss = ptr<double>(ss_);
    double* out = static_cast<double*>(out_.mutable_data());
    uint8_t* valid = static_cast<uint8_t*>(valid_.mutable_data());
    py::gil_scoped_release release;
    double book = 0.0, e = 0.0, tp = 0.0;
    int64_t e_t = 0, tp_t = 0;
    bool have_book = false, have_e = false, have_tp = false;
    for (int64_t r = 0; r < n; ++r) {
        const int64_t now = t[r];
        if (trig[r] == 0) {
            const double mid = (bid[r] + ask[r]) / 2.0;
            const double imb = (bsz[r] - asz[r]) / (bsz[r] + asz[r]);
            if (!have_e) {
                e = mid;
                have_e = true;
            } else {
                const double w = std::exp2(-(static_cast<double>(now - e_t) / 1e9) / 1.0);
                e = w * e + (1.0 - w) * mid;
            }
            e_t = now;
            book = 1000.0 * (mid - e) / mid + 0.5 * imb;
            have_book = true;
        } else {
            if (!have_tp) {
                tp = ss[r];
                have_tp = true;
            } else {
                tp = tp * std::exp2(-(static_cast<double>(now - tp_t) / 1e9) / 0.5) + ss[r];
            }
            tp_t = now;
        }
        out[r] = std::tanh(0.002 * tp + book);
        valid[r] = have_book && have_tp;
    }
}

PYBIND11_MODULE(hs_bench_handwritten_l1, m) { m.def("replay", &replay); }
