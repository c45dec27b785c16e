// First-order linear recurrences for fitting (harness/fit/scan.py): s[k] = a[k] * s[k-1] + b[k] along each row,
// and its reverse lam[k] = g[k] + a[k+1] * lam[k+1]. One sequential pass per row: on a CPU this streams the data
// once, where a vectorised blocked scan in torch makes a dozen passes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "harness/numeric.hpp"

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

// The decay factor 2^(-gap / h) of the fused scans below; at a zero gap 1 without the division and exp2 when
// `unit` (unit_at_zero(h)): bursts of trades at one timestamp (77% of the flagship's trade gaps on synthetic data).
inline double decay_factor(double gap, double h, bool unit) { return gap == 0.0 && unit ? 1.0 : std::exp2(-gap / h); }

// Rows go through a fused scan kScanLanes at a time, interleaved step by step: each row's recurrence is one chain
// of dependent multiply-adds, so a row alone waits on its own latency; four independent chains hide it. Each
// row's operations and their order are those of a row on its own.
constexpr std::int64_t kScanLanes = 4;

// The decayed recurrences of the EWMA and the decayed sum, fused with their weights (fitting's hot loop):
// w[0] = 0, w[k] = 2^(-gaps[k-1] / h[r]) with the kernel's operations (hs::Ewma / hs::DecaySum), and
//   ewma: s[k] = w[k] * s[k-1] + (1 - w[k]) * x[k]      sum: s[k] = w[k] * s[k-1] + x[k]
// in the kernel's operation order. Nothing of size [F, N] but s is kept: the backward recomputes w.
inline void decay_scan_forward(const double* gaps, const double* h, const double* x, bool ewma, double* s,
                               std::int64_t rows, std::int64_t n) {
    if (n == 0) return;
    for (std::int64_t r0 = 0; r0 < rows; r0 += kScanLanes) {
        const std::int64_t m = std::min(kScanLanes, rows - r0);
        double acc[kScanLanes], hr[kScanLanes];
        bool unit[kScanLanes];
        for (std::int64_t j = 0; j < m; ++j) {
            hr[j] = h[r0 + j];
            unit[j] = unit_at_zero(hr[j]);
            acc[j] = x[(r0 + j) * n];  // w[0] = 0: the first sample sets the state ((1 - 0) * x is x)
            s[(r0 + j) * n] = acc[j];
        }
        for (std::int64_t k = 1; k < n; ++k) {
            const double gap = gaps[k - 1];
            for (std::int64_t j = 0; j < m; ++j) {
                const std::int64_t i = (r0 + j) * n + k;
                const double w = decay_factor(gap, hr[j], unit[j]);
                acc[j] = ewma ? w * acc[j] + (1.0 - w) * x[i] : w * acc[j] + x[i];
                s[i] = acc[j];
            }
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
    for (std::int64_t r0 = 0; r0 < rows; r0 += kScanLanes) {
        const std::int64_t m = std::min(kScanLanes, rows - r0);
        double lam[kScanLanes] = {}, w_next[kScanLanes] = {}, sum[kScanLanes] = {}, hr[kScanLanes];
        bool unit[kScanLanes];
        for (std::int64_t j = 0; j < m; ++j) {
            hr[j] = h[r0 + j];
            unit[j] = unit_at_zero(hr[j]);
        }
        for (std::int64_t k = n - 1; k >= 0; --k) {
            const double gap = k > 0 ? gaps[k - 1] : 0.0;
            for (std::int64_t j = 0; j < m; ++j) {
                const std::int64_t i = (r0 + j) * n + k;
                lam[j] = g[i] + w_next[j] * lam[j];
                const double w = k > 0 ? decay_factor(gap, hr[j], unit[j]) : 0.0;
                if (dx != nullptr) dx[i] = ewma ? lam[j] * (1.0 - w) : lam[j];
                if (k > 0) {
                    const double dw = ewma ? lam[j] * (s[i - 1] - x[i]) : lam[j] * s[i - 1];
                    sum[j] += dw * w * gap;
                }
                w_next[j] = w;
            }
        }
        for (std::int64_t j = 0; j < m; ++j) {
            dh[r0 + j] = n > 1 ? sum[j] * ln2 / (hr[j] * hr[j]) : 0.0;
        }
    }
}

}  // namespace hs
