// The runtime of generated kernels: everything in a kernel that does not depend on its circuit. A generated
// kernel (harness.codegen) holds only the circuit: its State, one function per trigger and per timer, and a
// traits struct C describing them; `hs::kernel::api<C>()` turns that into the C interface of kernel_abi.h.
//
// What the traits struct C provides (all static members):
//   state_type                 the circuit's State: double p[] (parameters), hs::OpError err (the first
//                              operator error of the event) and, with timers, std::int64_t due[n_timers]
//   pre_type                   vector-math decay weights of a block (struct Pre), or hs::kernel::NoPre
//   n_inputs, n_triggers, n_outputs, n_params, n_timers           (int constants)
//   can_fail                   an operator can raise an error in an event; guarded: a failed call or
//                              advance restores the state; block_outputs: after_block applies vector math
//   apply_params(State&)       nodes computed from constants and parameters: at start, on set_params
//   begin_event(State&)        edge-triggered values become invalid again
//   dispatch<UsePre>(State&, Pre&, code, t, in)      the function of trigger `code`, its inputs read with
//                              in.number(column, slot) / in.list(column, slot) (RowInputs or CallInputs)
//   fire_timer(State&, w, t)   the function of timer w (slot s.due[w])
//   outputs<Block>(const State&, double* v, bool* k)  the outputs' values and validity (Block: as recorded
//                              per row before after_block)
//   column_needs(rows_of, need)                       rows of a block whose trigger sets input column c
//   prepass(const State&, Pre&, rows_of, t, m)        (with a Pre) the block's decay weights
//   after_block(double* const* out, b, m)             (with block_outputs) vector math over the block
#pragma once

#include <cstdint>
#include <limits>
#include <new>

#include "harness/kernel_abi.h"
#include "harness/kernel_events.hpp"
#include "harness/kernel_replay.hpp"
#include "harness/module.hpp"
#include "harness/numeric.hpp"
#include "harness/ops.hpp"

#define HS_INF (std::numeric_limits<double>::infinity())
#define HS_NAN (std::numeric_limits<double>::quiet_NaN())

namespace hs::kernel {

template <typename C>
void set_params(void* st, const double* params) {
    State<C>& s = *static_cast<State<C>*>(st);
    for (int j = 0; j < C::n_params; ++j) s.p[j] = params[j];
    C::apply_params(s);
}

template <typename C>
void init(void* st, const double* params) {
    new (st) State<C>();
    set_params<C>(st, params);
}

template <typename C>
void destroy(void* st) {
    static_cast<State<C>*>(st)->~State<C>();
}

// One event: fire due timers, then the trigger's function (see hs_kernel_api::call).
template <typename C>
std::int32_t call(void* st, std::int32_t trig, std::int64_t now, const double* in, const double* const* lists,
                  const std::int64_t* sizes, hs_replay_error* err) {
    State<C>& s = *static_cast<State<C>*>(st);
    return guarded<C>(s, err, [&]() {
        typename C::pre_type pre;
        std::int32_t status = fire_due<C, false>(s, now, nullptr);
        if (status == HS_ERR_NONE) {
            C::begin_event(s);
            C::template dispatch<false>(s, pre, trig, now, CallInputs{in, lists, sizes});
            if (s.err.code != 0) status = HS_ERR_OPERATOR;
        }
        return status;
    });
}

template <typename C>
std::int32_t advance(void* st, std::int64_t t, hs_replay_error* err) {
    State<C>& s = *static_cast<State<C>*>(st);
    return guarded<C>(s, err, [&]() { return fire_due<C, false>(s, t, nullptr); });
}

template <typename C>
void read(const void* st, double* values, std::uint8_t* valid) {
    const State<C>& s = *static_cast<const State<C>*>(st);
    double v[at_least_one(C::n_outputs)];
    bool k[at_least_one(C::n_outputs)];
    C::template outputs<false>(s, v, k);
    for (int j = 0; j < C::n_outputs; ++j) {
        values[j] = v[j];
        valid[j] = k[j] ? 1 : 0;
    }
}

// The C interface of the kernel of circuit C.
template <typename C>
constexpr hs_kernel_api api() {
    using S = State<C>;
    return hs_kernel_api{
        HS_KERNEL_ABI,
        C::n_inputs,
        C::n_triggers,
        C::n_outputs,
        C::n_params,
        sizeof(S),
        alignof(S),
        &init<C>,
        &destroy<C>,
        &set_params<C>,
        &call<C>,
        &advance<C>,
        &read<C>,
        &replay<C>,
    };
}

}  // namespace hs::kernel
