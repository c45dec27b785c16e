// IEEE-754 double helpers shared by every generated kernel. Each function is the C++ twin of the
// function of the same name in harness/ops/numeric.py and must return the same bits (NaN: any NaN).
// Build without -ffast-math and with -ffp-contract=off so the compiler keeps this operation order.
#pragma once

#include <cmath>
#include <cstdint>

namespace hs {

inline double div(double a, double b) { return a / b; }  // IEEE: x/0 = +-inf, 0/0 = nan
inline double exp(double x) { return std::exp(x); }
inline double exp2(double x) { return std::exp2(x); }
inline double log(double x) { return std::log(x); }
inline double sqrt(double x) { return std::sqrt(x); }
inline double tanh(double x) { return std::tanh(x); }

inline double sigmoid(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
    if (std::isnan(x)) return x;
    const double e = std::exp(x);
    return e / (1.0 + e);
}

inline double relu(double x) { return (x > 0.0 || std::isnan(x)) ? x : 0.0; }
inline double fmin(double a, double b) { return (a < b || std::isnan(a)) ? a : b; }
inline double fmax(double a, double b) { return (a > b || std::isnan(a)) ? a : b; }
inline double clamp(double x, double lo, double hi) { return fmin(fmax(x, lo), hi); }

// 2^(-dt/halflife), dt converted from integer nanoseconds to seconds by one division.
inline double decay_weight(std::int64_t dt_ns, double halflife_s) {
    return std::exp2(-(static_cast<double>(dt_ns) / 1e9) / halflife_s);
}

// Duration in seconds -> integer nanoseconds, rounded half up (timers.seconds_to_ns in Python).
inline std::int64_t seconds_to_ns(double seconds) {
    return static_cast<std::int64_t>(std::floor(seconds * 1e9 + 0.5));
}

}  // namespace hs
