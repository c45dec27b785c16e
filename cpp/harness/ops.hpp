// Stateful operators of harness.ops as small structs. Each is the C++ twin of the class of the same
// name in harness/ops/stateful.py or harness/ops/timers.py: same state, same operation order, same bits.
// Every struct exposes its value as `v` and its validity as `ok`.
#pragma once

#include <cstdint>

#include "harness/numeric.hpp"

namespace hs {

constexpr std::int64_t NO_TIMER = INT64_MAX;

// A list input's value in one event: `size` doubles at `data` (views into the events' Arrow buffers).
struct ListView {
    const double* data = nullptr;
    std::int64_t size = 0;
};

// The first error an operator raised in the current event (node = plan position, -1: none). The codes,
// and the numbers a and b, are the operator's own (OperatorError in its Python spec).
struct OpError {
    std::int32_t node = -1;
    std::int32_t code = 0;
    double a = 0.0;
    double b = 0.0;
    void set(std::int32_t c, double x, double y) {
        if (code == 0) {
            code = c;
            a = x;
            b = y;
        }
    }
};

// floor(a / b) for b > 0 (C++ '/' truncates toward zero; Python '//' floors).
inline std::int64_t floordiv(std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

// Time-decayed EWMA: v = w*v + (1-w)*x, w = 2^(-dt/halflife); the first valid sample initialises.
// step_w takes the weight precomputed for this sample (vector_math kernels compute a block at once).
struct Ewma {
    double v = 0.0;
    bool ok = false;
    std::int64_t t = 0;
    void step(std::int64_t now, double x, bool xok, double halflife) {
        if (xok) step_w(now, x, true, ok ? decay_weight_between(now, t, halflife) : 1.0);
    }
    void step_w(std::int64_t now, double x, bool xok, double w) {
        if (!xok) return;
        if (!ok) {
            v = x;
            ok = true;
        } else {
            v = w * v + (1.0 - w) * x;
        }
        t = now;
    }
};

// Decayed running sum: s = s*2^(-dt/halflife) + x at each valid sample; the first sample sets s = x.
// step_w takes the weight precomputed for this sample.
struct DecaySum {
    double v = 0.0;
    bool ok = false;
    std::int64_t t = 0;
    void step(std::int64_t now, double x, bool xok, double halflife) {
        if (xok) step_w(now, x, true, ok ? decay_weight_between(now, t, halflife) : 1.0);
    }
    void step_w(std::int64_t now, double x, bool xok, double w) {
        if (!xok) return;
        if (!ok) {
            v = x;
            ok = true;
        } else {
            v = v * w + x;
        }
        t = now;
    }
};

// x minus its previous valid value; invalid until two valid samples.
struct Delta {
    double v = 0.0;
    bool ok = false;
    double prev = 0.0;
    bool has_prev = false;
    void step(double x, bool xok) {
        if (!xok) return;
        if (has_prev) {
            v = x - prev;
            ok = true;
        }
        prev = x;
        has_prev = true;
    }
};

// Number of events in which the input was valid; valid (0.0) from the start.
struct Count {
    double v = 0.0;
    bool ok = true;
    void step(bool xok) {
        if (xok) v += 1.0;
    }
};

// Edge 1.0 when `dur` ns pass after the input's last valid update; each update restarts the countdown.
// Due times at or past the last int64 time (INT64_MAX) are dropped (NO_TIMER), as in the reference.
struct Timeout {
    double v = 0.0;
    bool ok = false;
    void step(std::int64_t now, bool xok, std::int64_t dur, std::int64_t& due) {
        ok = false;
        if (xok) due = due_after(now, dur);
    }
    void fire() {
        v = 1.0;
        ok = true;
    }
};

// Edge ticks at multiples of `period` ns after the input's first valid update; value = tick ordinal.
struct Every {
    double v = 0.0;
    bool ok = false;
    bool started = false;
    double n = 0.0;
    void step(std::int64_t now, bool xok, std::int64_t period, std::int64_t& due) {
        ok = false;
        if (xok && !started) {
            started = true;
            std::int64_t k, at;  // the next multiple of period; none at or past the last int64 time
            const bool past = __builtin_add_overflow(floordiv(now, period), std::int64_t{1}, &k) ||
                              __builtin_mul_overflow(k, period, &at);
            due = past ? NO_TIMER : at;
        }
    }
    void fire(std::int64_t now, std::int64_t period, std::int64_t& due) {
        due = due_after(now, period);
        n += 1.0;
        v = n;
        ok = true;
    }
};

}  // namespace hs
