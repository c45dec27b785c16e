// First-order linear recurrences for fitting (harness/fit/scan.py): s[k] = a[k] * s[k-1] + b[k] along each row,
// and its reverse lam[k] = g[k] + a[k+1] * lam[k+1]. One sequential pass per row: on a CPU this streams the data
// once, where a vectorised blocked scan in torch makes a dozen passes.
#pragma once

#include <cmath>
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

// The decayed recurrences of the EWMA and the decayed sum, fused with their weights (fitting's hot loop):
// w[0] = 0, w[k] = 2^(-gaps[k-1] / h[r]) with the kernel's operations (hs::Ewma / hs::DecaySum), and
//   ewma: s[k] = w[k] * s[k-1] + (1 - w[k]) * x[k]      sum: s[k] = w[k] * s[k-1] + x[k]
// in the kernel's operation order. Nothing of size [F, N] but s is kept: the backward recomputes w.
inline void decay_scan_forward(const double* gaps, const double* h, const double* x, bool ewma, double* s,
                               std::int64_t rows, std::int64_t n) {
    for (std::int64_t r = 0; r < rows; ++r) {
        const double* xr = x + r * n;
        double* sr = s + r * n;
        if (n == 0) continue;
        double acc = xr[0];  // w[0] = 0: the first sample sets the state ((1 - 0) * x is x)
        sr[0] = acc;
        for (std::int64_t k = 1; k < n; ++k) {
            const double w = std::exp2(-gaps[k - 1] / h[r]);
            acc = ewma ? w * acc + (1.0 - w) * xr[k] : w * acc + xr[k];
            sr[k] = acc;
        }
    }
}

// The gradients of decay_scan_forward: lam[k] = g[k] + w[k+1] * lam[k+1] (the reverse recurrence), then
//   dx[k] = lam[k] * (1 - w[k]) (ewma) or lam[k] (sum), and dh[r] = sum_k dw[k] * w[k] * ln2 * gaps[k-1] / h^2
// with dw[k] = lam[k] * (s[k-1] - x[k]) (ewma) or lam[k] * s[k-1] (sum). dx may be null (not needed).
inline void decay_scan_backward(const double* gaps, const double* h, const double* x, const double* s,
                                const double* g, bool ewma, double* dx, double* dh, std::int64_t rows,
                                std::int64_t n) {
    const double ln2 = 0.69314718055994530942;
    for (std::int64_t r = 0; r < rows; ++r) {
        const double* xr = x + r * n;
        const double* sr = s + r * n;
        const double* gr = g + r * n;
        double* dxr = dx != nullptr ? dx + r * n : nullptr;
        double lam = 0.0, w_next = 0.0, sum = 0.0;
        for (std::int64_t k = n - 1; k >= 0; --k) {
            lam = gr[k] + w_next * lam;
            const double w = k > 0 ? std::exp2(-gaps[k - 1] / h[r]) : 0.0;
            if (dxr != nullptr) dxr[k] = ewma ? lam * (1.0 - w) : lam;
            if (k > 0) {
                const double dw = ewma ? lam * (sr[k - 1] - xr[k]) : lam * sr[k - 1];
                sum += dw * w * gaps[k - 1];
            }
            w_next = w;
        }
        dh[r] = n > 1 ? sum * ln2 / (h[r] * h[r]) : 0.0;
    }
}

}  // namespace hs
