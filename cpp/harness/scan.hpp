// First-order linear recurrences for fitting (harness/fit/scan.py): s[k] = a[k] * s[k-1] + b[k] along each row,
// and its reverse lam[k] = g[k] + a[k+1] * lam[k+1]. One sequential pass per row: on a CPU this streams the data
// once, where a vectorised blocked scan in torch makes a dozen passes.
#pragma once

#include <cstdint>

namespace hs {

// s[r, 0] = b[r, 0]; s[r, k] = a[r', k] * s[r, k-1] + b[r, k] (r' = r, or 0 when a has one row)
inline void scan_forward(const double* a, bool a_shared, const double* b, double* s, std::int64_t rows,
                         std::int64_t n) {
    for (std::int64_t r = 0; r < rows; ++r) {
        const double* ar = a_shared ? a : a + r * n;
        const double* br = b + r * n;
        double* sr = s + r * n;
        if (n == 0) continue;
        double acc = br[0];
        sr[0] = acc;
        for (std::int64_t k = 1; k < n; ++k) {
            acc = ar[k] * acc + br[k];
            sr[k] = acc;
        }
    }
}

// lam[r, n-1] = g[r, n-1]; lam[r, k] = g[r, k] + a[r', k+1] * lam[r, k+1]
inline void scan_reverse(const double* a, bool a_shared, const double* g, double* lam, std::int64_t rows,
                         std::int64_t n) {
    for (std::int64_t r = 0; r < rows; ++r) {
        const double* ar = a_shared ? a : a + r * n;
        const double* gr = g + r * n;
        double* lr = lam + r * n;
        if (n == 0) continue;
        double acc = gr[n - 1];
        lr[n - 1] = acc;
        for (std::int64_t k = n - 2; k >= 0; --k) {
            acc = gr[k] + ar[k + 1] * acc;
            lr[k] = acc;
        }
    }
}

}  // namespace hs
