// The replay loop of a generated kernel, independent of the circuit: blocks of 64 rows, each checked with
// bit masks (harness/replay.hpp), then run without checks. A template over the circuit's traits struct `C`
// (see harness/kernel.hpp), the width of trigger codes, dictionary remapping, and recording into a row sink
// (a row after every event and timer firing) instead of one row per event.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "harness/kernel_abi.h"
#include "harness/kernel_events.hpp"
#include "harness/replay.hpp"

namespace hs::kernel {

// The arguments of hs_kernel_api::replay (see kernel_abi.h), bundled.
struct ReplayArgs {
    std::int64_t n;
    const std::int64_t* t;
    std::int64_t last_t;
    const void* codes;
    const std::int32_t* remap;
    std::int64_t remap_size;
    const double* const* columns;
    const std::int32_t* const* list_offsets;
    const std::uint8_t* const* valid;
    const std::int64_t* valid_offset;
    double* const* out;
    std::uint8_t* const* bits;
    hs_rows* rows;
    hs_replay_error* err;
};

// Check rows b .. b+m-1 against the rules, in the order of `check_rows`: time order, known trigger, then
// each input column a row's trigger needs is present and not null there. Returns the row of the first
// broken rule (reported in *err), or -1 when the block is sound.
template <typename C>
inline std::int64_t check_block(const ReplayArgs& a, std::int64_t b, std::int64_t m, std::uint64_t down,
                                std::uint64_t unknown, const std::uint64_t* rows_of) {
    constexpr int NI = at_least_one(C::n_inputs);
    std::uint64_t need[NI];
    std::uint64_t bad[NI];
    C::column_needs(rows_of, need);
    std::uint64_t broken = down | unknown;
    for (int c = 0; c < C::n_inputs; ++c) {
        const std::uint8_t* valid = a.valid[c];
        bad[c] = a.columns[c] == nullptr ? need[c]
                 : valid != nullptr      ? need[c] & ~load_bits(valid, a.valid_offset[c] + b, m)
                                         : 0;
        broken |= bad[c];
    }
    if (broken == 0) return -1;
    const int k = __builtin_ctzll(broken);
    const std::uint64_t bit = std::uint64_t{1} << k;
    if (down & bit) return fail(a.err, b + k, HS_ERR_TIME, -1);
    if (unknown & bit) return fail(a.err, b + k, HS_ERR_TRIGGER, -1);
    for (int c = 0; c < C::n_inputs; ++c) {
        if (bad[c] & bit) return fail(a.err, b + k, a.columns[c] == nullptr ? HS_ERR_COLUMN : HS_ERR_NULL, c);
    }
    return -1;  // not reached: a broken bit belongs to one of the rules above
}

// Replay a.n rows; returns a.n, or the row of the first error (described in *a.err).
template <typename C, typename Code, bool Remap, bool Rows>
std::int64_t replay_loop(State<C>& s, const ReplayArgs& a) {
    constexpr int NO = at_least_one(C::n_outputs);
    constexpr int NT = at_least_one(C::n_triggers);
    const Code* const codes = static_cast<const Code*>(a.codes);
    const std::int64_t* const t = a.t;
    RowInputs<C::n_inputs> in{};
    static_for<C::n_inputs>([&](auto c) {
        in.col[c] = a.columns[c];
        in.off[c] = a.list_offsets[c];
    });
    double* out[NO];
    std::uint8_t* bits[NO];
    static_for<C::n_outputs>([&](auto j) {
        out[j] = Rows ? nullptr : a.out[j];
        bits[j] = Rows ? nullptr : a.bits[j];
    });
    typename C::pre_type pre;
    std::int64_t prev = a.last_t;
    for (std::int64_t b = 0; b < a.n; b += 64) {
        const std::int64_t m = std::min<std::int64_t>(64, a.n - b);
        // check the block: one bit per row for each rule
        const std::uint64_t down = time_decreases(t + b, m, prev);
        prev = t[b + m - 1];
        std::uint64_t rows_of[NT];
        std::uint64_t unknown;
        trigger_masks<NT, Code, Remap>(codes + b, m, a.remap, a.remap_size, rows_of, unknown);
        if (const std::int64_t row = check_block<C>(a, b, m, down, unknown, rows_of); row >= 0) return row;
        if constexpr (!std::is_same_v<typename C::pre_type, NoPre>) C::prepass(s, pre, rows_of, t + b, m);
        // run the block
        std::uint64_t acc[NO];
        static_for<C::n_outputs>([&](auto j) { acc[j] = 0; });
        for (std::int64_t k = 0; k < m; ++k) {
            const std::int64_t r = b + k;
            const std::int64_t now = t[r];
            const std::int32_t code = Remap ? a.remap[codes[r]] : static_cast<std::int32_t>(codes[r]);
            if constexpr (C::n_timers > 0) {
                if (const std::int32_t status = fire_due<C, Rows>(s, now, a.rows); status != HS_ERR_NONE) {
                    return status == HS_ERR_OPERATOR ? fail_op(a.err, r, s.err) : fail(a.err, r, status, -1);
                }
            }
            C::begin_event(s);
            in.r = r;
            C::template dispatch<true>(s, pre, code, now, in);
            if constexpr (C::can_fail) {
                if (s.err.code != 0) return fail_op(a.err, r, s.err);
            }
            if constexpr (Rows) {
                if (!record_row<C>(s, a.rows, now, code)) return fail(a.err, r, HS_ERR_MEMORY, -1);
            } else {
                double v[NO];
                bool ok[NO];
                C::template outputs<true>(s, v, ok);
                static_for<C::n_outputs>([&](auto j) {
                    out[j][r] = v[j];
                    acc[j] |= static_cast<std::uint64_t>(ok[j] ? 1u : 0u) << k;
                });
            }
        }
        if constexpr (!Rows) {
            static_for<C::n_outputs>([&](auto j) {
                std::memcpy(bits[j] + (b >> 3), &acc[j], static_cast<std::size_t>((m + 7) >> 3));
            });
            if constexpr (C::block_outputs) C::after_block(out, b, m);
        }
    }
    return a.n;
}

// hs_kernel_api::replay: the loop for this code width and remapping, into arrays or a row sink. A failed
// batch changes nothing: the state is restored to what it was before the call.
template <typename C>
std::int64_t replay(void* st, std::int64_t n, const std::int64_t* t, std::int64_t last_t, const void* codes,
                    std::int32_t code_bytes, const std::int32_t* remap, std::int64_t remap_size,
                    const double* const* columns, const std::int32_t* const* list_offsets,
                    const std::uint8_t* const* valid, const std::int64_t* valid_offset, double* const* out,
                    std::uint8_t* const* bits, hs_rows* rows, hs_replay_error* err) {
    State<C>& s = *static_cast<State<C>*>(st);
    const State<C> saved = s;
    const ReplayArgs a{n, t, last_t, codes, remap, remap_size, columns, list_offsets, valid, valid_offset,
                       out, bits, rows, err};
    std::int64_t done;
#define HS_LOOP(T, R) \
    (rows != nullptr ? replay_loop<C, T, R, true>(s, a) : replay_loop<C, T, R, false>(s, a))
    switch (code_bytes * 2 + (remap != nullptr ? 1 : 0)) {
        case 2: done = HS_LOOP(std::int8_t, false); break;
        case 3: done = HS_LOOP(std::int8_t, true); break;
        case 4: done = HS_LOOP(std::int16_t, false); break;
        case 5: done = HS_LOOP(std::int16_t, true); break;
        case 9: done = HS_LOOP(std::int32_t, true); break;
        default: done = HS_LOOP(std::int32_t, false); break;
    }
#undef HS_LOOP
    if (done != n) s = saved;
    s.err = OpError{};
    return done;
}

}  // namespace hs::kernel
