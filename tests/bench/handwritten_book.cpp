// A hand-written L2 book over the same list columns the generated kernel reads: the floor for the book-only
// benchmark. A tick ladder over a fixed range of interest (hftbacktest's ROI vector depth: one size per tick
// between roi_lo and roi_hi, the best bid/ask tracked, the next best found by scanning down/up from the old
// one). No checks, no grid inference, no validity rules: it assumes a known tick, prices inside the range
// and a book that never crosses (true of the synthetic stream). Outputs: best bid and ask after every event.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace py = pybind11;

template <typename T>
const T* ptr(const py::array& a) {
    return static_cast<const T*>(a.data());
}

void replay(py::array trig_, py::array offsets_, py::array side_, py::array price_, py::array amount_,
            py::array snapshot_, double tick, double roi_lo, double roi_hi, py::array bid_out_, py::array ask_out_) {
    const int64_t n = trig_.shape(0);
    const int8_t* trig = ptr<int8_t>(trig_);
    const int32_t* off = ptr<int32_t>(offsets_);
    const double *side = ptr<double>(side_), *price = ptr<double>(price_), *amount = ptr<double>(amount_);
    const double* snapshot = ptr<double>(snapshot_);
    double* bid_out = static_cast<double*>(bid_out_.mutable_data());
    double* ask_out = static_cast<double*>(ask_out_.mutable_data());
    py::gil_scoped_release release;
    const double inv = 1.0 / tick;
    const int64_t lo = std::llround(roi_lo * inv), size = std::llround(roi_hi * inv) - lo + 1;
    std::vector<double> bids(static_cast<size_t>(size), 0.0), asks(static_cast<size_t>(size), 0.0);
    int64_t best_bid = -1, best_ask = size;
    for (int64_t r = 0; r < n; ++r) {
        if (trig[r] == 0) {  // book
            if (snapshot[r] == 1.0) {
                std::fill(bids.begin(), bids.end(), 0.0);
                std::fill(asks.begin(), asks.end(), 0.0);
                best_bid = -1;
                best_ask = size;
            }
            for (int32_t k = off[r]; k < off[r + 1]; ++k) {
                const int64_t i = std::llround(price[k] * inv) - lo;
                if (i < 0 || i >= size) continue;
                if (side[k] > 0) {
                    bids[static_cast<size_t>(i)] = amount[k];
                    if (amount[k] > 0.0) {
                        if (i > best_bid) best_bid = i;
                    } else if (i == best_bid) {
                        while (best_bid >= 0 && bids[static_cast<size_t>(best_bid)] == 0.0) --best_bid;
                    }
                } else {
                    asks[static_cast<size_t>(i)] = amount[k];
                    if (amount[k] > 0.0) {
                        if (i < best_ask) best_ask = i;
                    } else if (i == best_ask) {
                        while (best_ask < size && asks[static_cast<size_t>(best_ask)] == 0.0) ++best_ask;
                    }
                }
            }
        }
        bid_out[r] = best_bid >= 0 ? static_cast<double>(best_bid + lo) * tick : NAN;
        ask_out[r] = best_ask < size ? static_cast<double>(best_ask + lo) * tick : NAN;
    }
}

PYBIND11_MODULE(hs_bench_handwritten_book, m) {
    m.def("replay", &replay);
}
