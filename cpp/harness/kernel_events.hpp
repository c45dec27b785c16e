// One event of a generated kernel, independent of the circuit: where a trigger's inputs come from, timers
// fired in order, rows recorded into a sink, errors reported. Templates over the circuit's traits struct
// `C` (see harness/kernel.hpp for what it provides); harness.codegen generates only the circuit.
#pragma once

#include <cstdint>
#include <utility>

#include "harness/kernel_abi.h"
#include "harness/ops.hpp"

#define HS_INLINE inline __attribute__((always_inline))

namespace hs::kernel {

template <typename C>
using State = typename C::state_type;

// The decay-weight cursors of a circuit without vector-math decays: nothing.
struct NoPre {};

// f(std::integral_constant<int, I>{}) for I = 0 .. N-1, unrolled at compile time: per-row code indexes its
// arrays (outputs, columns, timer slots) with constants, so the compiler keeps them in registers.
template <typename F, int... I>
HS_INLINE void static_for_each(F&& f, std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
}

template <int N, typename F>
HS_INLINE void static_for(F&& f) {
    static_for_each(f, std::make_integer_sequence<int, N>{});
}

constexpr int at_least_one(int n) { return n > 0 ? n : 1; }

// A trigger's inputs in one row of a replay: input column c at row r (a list input: its slice of the row).
template <int NI>
struct RowInputs {
    const double* col[at_least_one(NI)];
    const std::int32_t* off[at_least_one(NI)];
    std::int64_t r;
    HS_INLINE double number(int c, int) const { return col[c][r]; }
    HS_INLINE ListView list(int c, int) const { return ListView{col[c] + off[c][r], off[c][r + 1] - off[c][r]}; }
};

// A trigger's inputs in a call: its scalar inputs in order in `in`, its list inputs in `lists`/`sizes`.
struct CallInputs {
    const double* in;
    const double* const* lists;
    const std::int64_t* sizes;
    HS_INLINE double number(int, int slot) const { return in[slot]; }
    HS_INLINE ListView list(int, int slot) const { return ListView{lists[slot], sizes[slot]}; }
};

// Report a broken rule of row r (kind HS_ERR_*, column or -1); returns r, the row a replay stopped at.
inline std::int64_t fail(hs_replay_error* err, std::int64_t r, std::int32_t kind, std::int32_t column) {
    err->row = r;
    err->kind = kind;
    err->column = column;
    return r;
}

// Report the operator error `e` raised in row r.
inline std::int64_t fail_op(hs_replay_error* err, std::int64_t r, const OpError& e) {
    err->code = e.code;
    err->a = e.a;
    err->b = e.b;
    return fail(err, r, HS_ERR_OPERATOR, e.node);
}

// Append the current outputs as a row at time t (source: trigger code, or -(k+1) for timer k).
template <typename C>
inline bool record_row(const State<C>& s, hs_rows* rows, std::int64_t t, std::int32_t source) {
    if (rows->n == rows->cap && !rows->grow(rows)) return false;
    const std::int64_t i = rows->n++;
    rows->t[i] = t;
    rows->source[i] = source;
    double v[at_least_one(C::n_outputs)];
    bool k[at_least_one(C::n_outputs)];
    C::template outputs<false>(s, v, k);
    static_for<C::n_outputs>([&](auto j) {
        rows->values[j][i] = v[j];
        rows->valid[j][i] = k[j] ? 1 : 0;
    });
    return true;
}

// Fire every timer due at or before t: earliest first, ties in plan order; each firing is an event of its
// own (begin_event, then the timer's function). With a row sink, record a row after each firing.
// Returns 0, HS_ERR_OPERATOR (s.err says which) or HS_ERR_MEMORY.
template <typename C, bool Rows>
inline std::int32_t fire_due(State<C>& s, std::int64_t t, hs_rows* rows) {
    if constexpr (C::n_timers == 0) {
        return HS_ERR_NONE;
    } else {
        if (t == NO_TIMER) t = NO_TIMER - 1;  // INT64_MAX: an empty slot, never due
        for (;;) {
            int which = -1;
            std::int64_t best = 0;
            static_for<C::n_timers>([&](auto w) {
                if (s.due[w] <= t && (which < 0 || s.due[w] < best)) {
                    which = w;
                    best = s.due[w];
                }
            });
            if (which < 0) return HS_ERR_NONE;
            s.due[which] = NO_TIMER;
            C::begin_event(s);
            C::fire_timer(s, which, best);
            if (s.err.code != 0) return HS_ERR_OPERATOR;
            if constexpr (Rows) {
                if (!record_row<C>(s, rows, best, -(which + 1))) return HS_ERR_MEMORY;
            }
        }
    }
}

// Run `event` (returns a status); on an error report s.err in *err and, when an operator can fail, restore
// the state from before, so a failed call or advance changes nothing.
template <typename C, typename F>
inline std::int32_t guarded(State<C>& s, hs_replay_error* err, F&& event) {
    if constexpr (C::guarded) {
        const State<C> saved = s;
        const std::int32_t status = event();
        if (status != HS_ERR_NONE) {
            fail_op(err, 0, s.err);
            s = saved;
        }
        s.err = OpError{};
        return status;
    } else {
        const std::int32_t status = event();
        if (status != HS_ERR_NONE) fail_op(err, 0, s.err);
        s.err = OpError{};
        return status;
    }
}

}  // namespace hs::kernel
