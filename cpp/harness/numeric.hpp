// IEEE-754 double helpers shared by every generated kernel. Each function of HS_NUMERIC_TWINS is the C++ twin
// of a Python function of the same name (harness/ops/numeric.py, or the `f` of the operator class whose `twin`
// names it) and must return the same bits, NaNs included (a NaN input comes back as that NaN, quieted; an
// invalid operation gives the CPU's default NaN).
// Build without -ffast-math and with -ffp-contract=off so the compiler keeps this operation order.
#pragma once

// The numeric twins: harness._native binds each of them under its name, and tests/test_native.py checks this
// list against the Python twins and each pair bit for bit. A new twin is its function below plus its entry here.
#define HS_NUMERIC_TWINS(X) \
    X(div)                  \
    X(exp)                  \
    X(exp2)                 \
    X(log)                  \
    X(sqrt)                 \
    X(tanh)                 \
    X(sigmoid)              \
    X(relu)                 \
    X(softplus)             \
    X(fmin)                 \
    X(fmax)                 \
    X(clamp)                \
    X(decay_weight)         \
    X(seconds_to_ns)

#include <cmath>
#include <cstdint>
#include <cstring>

namespace hs {

// The double with these IEEE-754 bits: NaN constants keep their sign and payload (quiet_NaN() would not).
// The value is hidden from the optimiser, which would otherwise rewrite x - (-nan) as x + nan and lose
// the sign (it treats the constant as a number it may negate).
inline double f64_from_bits(std::uint64_t bits) {
    double x;
    std::memcpy(&x, &bits, sizeof x);
#if defined(__GNUC__) || defined(__clang__)
    __asm__("" : "+m"(x));
#endif
    return x;
}

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
inline double softplus(double x) { return relu(x) + std::log1p(std::exp(-std::fabs(x))); }
inline double fmin(double a, double b) { return (a < b || std::isnan(a)) ? a : b; }
inline double fmax(double a, double b) { return (a > b || std::isnan(a)) ? a : b; }
inline double clamp(double x, double lo, double hi) { return fmin(fmax(x, lo), hi); }

// Whether a zero gap's weight 2^(-0 / halflife) = 2^(+-0) is exactly 1 (any halflife but 0 and NaN): events at
// one timestamp (a burst of trades) then skip the divisions and exp2, bit for bit the same value.
inline bool unit_at_zero(double halflife_s) { return halflife_s > 0.0 || halflife_s < 0.0; }

// 2^(-dt/halflife), dt converted from integer nanoseconds to seconds by one division.
inline double decay_weight(std::int64_t dt_ns, double halflife_s) {
    if (dt_ns == 0 && unit_at_zero(halflife_s)) return 1.0;
    return std::exp2(-(static_cast<double>(dt_ns) / 1e9) / halflife_s);
}

// now - then in nanoseconds as a double: the exact difference rounded once to nearest (ties to even), as
// Python's float(now - then) on its unbounded ints. Times ~292 years apart overflow int64 (undefined
// behaviour), so the difference is then formed in uint64, where it is exact, and converted from there.
inline double elapsed_ns(std::int64_t now, std::int64_t then) {
    std::int64_t d;
    if (!__builtin_sub_overflow(now, then, &d)) return static_cast<double>(d);
    const auto un = static_cast<std::uint64_t>(now), ut = static_cast<std::uint64_t>(then);
    return now > then ? static_cast<double>(un - ut) : -static_cast<double>(ut - un);
}

// The decay weight of the gap between two times: decay_weight(now - then, halflife) for any two int64 times.
inline double decay_weight_between(std::int64_t now, std::int64_t then, double halflife_s) {
    if (now == then && unit_at_zero(halflife_s)) return 1.0;
    return std::exp2(-(elapsed_ns(now, then) / 1e9) / halflife_s);
}

// now + dur for a timer (dur > 0): the due time, or INT64_MAX (no timer) when it is at or past the last
// int64 time; the reference drops such a timer too, so it never fires on either backend.
inline std::int64_t due_after(std::int64_t now, std::int64_t dur) {
    std::int64_t due;
    return __builtin_add_overflow(now, dur, &due) ? INT64_MAX : due;
}

// Duration in seconds -> integer nanoseconds, rounded half up (timers.seconds_to_ns in Python).
inline std::int64_t seconds_to_ns(double seconds) {
    return static_cast<std::int64_t>(std::floor(seconds * 1e9 + 0.5));
}

}  // namespace hs
