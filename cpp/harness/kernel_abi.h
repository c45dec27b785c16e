/* The C interface between a generated kernel module and harness._native (built once at install).
 * A kernel module exports a PyCapsule named "harness.kernel_api" pointing at one hs_kernel_api.
 * Bump HS_KERNEL_ABI whenever this struct or the meaning of a field changes. */
#ifndef HARNESS_KERNEL_ABI_H
#define HARNESS_KERNEL_ABI_H

#include <stddef.h>
#include <stdint.h>

#define HS_KERNEL_ABI 3
#define HS_KERNEL_CAPSULE "harness.kernel_api"

#ifdef __cplusplus
extern "C" {
#endif

/* per-row rules a replay checks as it goes (harness/replay/events.py has the same kinds) */
#define HS_ERR_NONE 0
#define HS_ERR_TIME 1    /* t decreases */
#define HS_ERR_TRIGGER 2 /* unknown trigger code */
#define HS_ERR_NULL 3    /* a trigger's input is null in its row */
#define HS_ERR_COLUMN 4  /* a trigger's input column is missing */

typedef struct hs_replay_error {
    int64_t row;
    int32_t kind;
    int32_t column;
} hs_replay_error;

typedef struct hs_kernel_api {
    uint32_t abi;
    uint32_t n_inputs, n_triggers, n_outputs, n_params;
    size_t state_size, state_align;
    /* construct the state in caller memory with these parameter values (also: reset) */
    void (*init)(void* state, const double* params);
    /* new parameter values; static nodes are recomputed */
    void (*set_params)(void* state, const double* params);
    /* one event: fire due timers, then the trigger's function; inputs in the trigger's input order */
    void (*call)(void* state, int32_t trigger, int64_t t, const double* inputs);
    /* fire every timer due at or before t */
    void (*advance)(void* state, int64_t t);
    /* current output values and validity (0/1) */
    void (*read)(const void* state, double* values, uint8_t* valid);
    /* n events, checking the per-row rules as it goes. t must not go below last_t (INT64_MIN: no
       previous event). codes has code_bytes = 1, 2 or 4 bytes per row; with remap != NULL a row's
       trigger is remap[code] (dictionary indices; remap_size entries), else the code itself; -1 and
       indices outside remap are unknown.
       columns[i] = input i's values (NULL: no such column); valid[i] = its Arrow validity bitmap
       starting at bit valid_offset[i] (NULL: no nulls). out[j][r] = output j after row r;
       out_valid[j] = Arrow validity bitmap of output j (zeroed by the caller).
       Returns n, or the row of the first broken rule (described in *error); the caller restores the
       state it saved before the call, so a failed batch changes nothing. */
    int64_t (*replay)(void* state, int64_t n, const int64_t* t, int64_t last_t, const void* codes,
                      int32_t code_bytes, const int32_t* remap, int64_t remap_size, const double* const* columns,
                      const uint8_t* const* valid, const int64_t* valid_offset, double* const* out,
                      uint8_t* const* out_valid, hs_replay_error* error);
} hs_kernel_api;

#ifdef __cplusplus
}
#endif

#endif
