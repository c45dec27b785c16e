/* The C interface between a generated kernel module and harness._native (built once at install).
 * A kernel module exports a PyCapsule named "harness.kernel_api" pointing at one hs_kernel_api.
 * Bump HS_KERNEL_ABI whenever these structs or the meaning of a field change. */
#ifndef HARNESS_KERNEL_ABI_H
#define HARNESS_KERNEL_ABI_H

#include <stddef.h>
#include <stdint.h>

#define HS_KERNEL_ABI 4
#define HS_KERNEL_CAPSULE "harness.kernel_api"

/* errors a replay, call or advance reports (harness/replay/events.py has the same kinds) */
#define HS_ERR_NONE 0
#define HS_ERR_TIME 1     /* t decreases */
#define HS_ERR_TRIGGER 2  /* unknown trigger code */
#define HS_ERR_NULL 3     /* a trigger's input is null in its row */
#define HS_ERR_COLUMN 4   /* a trigger's input column is missing */
#define HS_ERR_OPERATOR 5 /* an operator raised an error: column = its node, code/a/b its details */
#define HS_ERR_MEMORY 6   /* the row sink could not grow */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hs_replay_error {
    int64_t row;
    int32_t kind;
    int32_t column;
    int32_t code;
    double a;
    double b;
} hs_replay_error;

/* A growable sink of recorded rows (replay with timer rows): values[j][i] and valid[j][i] (0/1) of output j
   in row i, t[i] its time, source[i] the trigger code of an event row or -(k+1) for timer k (plan order).
   grow() makes room for at least one more row (returns 0 when it cannot). */
typedef struct hs_rows {
    int64_t n;
    int64_t cap;
    int64_t* t;
    int32_t* source;
    double** values;
    uint8_t** valid;
    void* owner;
    int (*grow)(struct hs_rows* rows);
} hs_rows;

typedef struct hs_kernel_api {
    uint32_t abi;
    uint32_t n_inputs, n_triggers, n_outputs, n_params;
    size_t state_size, state_align;
    /* construct the state in caller memory with these parameter values; destroy ends its lifetime */
    void (*init)(void* state, const double* params);
    void (*destroy)(void* state);
    /* new parameter values; static nodes are recomputed */
    void (*set_params)(void* state, const double* params);
    /* one event: fire due timers, then the trigger's function. The trigger's scalar inputs come in order
       in `scalars`, its list inputs in `lists` (sizes in `list_sizes`). Returns 0, or the error kind with
       the details in *error (the state is then as before the call). */
    int32_t (*call)(void* state, int32_t trigger, int64_t t, const double* scalars, const double* const* lists,
                    const int64_t* list_sizes, hs_replay_error* error);
    /* fire every timer due at or before t (same error convention as call) */
    int32_t (*advance)(void* state, int64_t t, hs_replay_error* error);
    /* current output values and validity (0/1) */
    void (*read)(const void* state, double* values, uint8_t* valid);
    /* n events, checking the per-row rules as it goes. t must not go below last_t (INT64_MIN: no
       previous event). codes has code_bytes = 1, 2 or 4 bytes per row; with remap != NULL a row's
       trigger is remap[code] (dictionary indices; remap_size entries), else the code itself; -1 and
       indices outside remap are unknown. columns[i] = input i's values (NULL: no such column); for a
       list input, list_offsets[i] holds n + 1 offsets into columns[i] (NULL for scalar inputs);
       valid[i] = its Arrow validity bitmap starting at bit valid_offset[i] (NULL: no nulls).
       Without a row sink: out[j][r] = output j after row r, out_valid[j] = Arrow validity bitmap of
       output j (zeroed by the caller). With a row sink, rows go to it instead, one after every event
       and one after every timer firing. Returns n, or the row of the first error (described in
       *error); the state is then restored to what it was before the call. */
    int64_t (*replay)(void* state, int64_t n, const int64_t* t, int64_t last_t, const void* codes,
                      int32_t code_bytes, const int32_t* remap, int64_t remap_size, const double* const* columns,
                      const int32_t* const* list_offsets, const uint8_t* const* valid, const int64_t* valid_offset,
                      double* const* out, uint8_t* const* out_valid, hs_rows* rows, hs_replay_error* error);
} hs_kernel_api;

#ifdef __cplusplus
}
#endif

#endif
