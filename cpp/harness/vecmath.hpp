// Vector math for kernels compiled with vector_math=True: exp2/tanh/exp/log over arrays, four (AVX2) or
// eight (AVX-512) doubles per call through glibc's libmvec, chosen at run time; a scalar loop otherwise.
// libmvec is accurate to a few ulp (not correctly rounded like the scalar path may be), so vector-math
// kernels agree with the reference to about 1e-15 relative rather than bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GLIBC__) && defined(HS_VECTOR_MATH)
#include <immintrin.h>
#define HS_HAVE_LIBMVEC 1
#endif

// The vector functions, each hs::vec::NAME(x, n) over an array in place, from std::NAME and libmvec's
// _ZGVdN4v_NAME. An operator's `vector_cpp` names one of them; a new one is its entry here.
#define HS_VEC_FUNCTIONS(X) \
    X(exp2)                 \
    X(tanh)                 \
    X(exp)                  \
    X(log)

#if defined(HS_HAVE_LIBMVEC)
#define HS_VEC_DECLARE(NAME) __m256d _ZGVdN4v_##NAME(__m256d);
extern "C" {
HS_VEC_FUNCTIONS(HS_VEC_DECLARE)
}
#undef HS_VEC_DECLARE
#endif

namespace hs::vec {

#if defined(HS_HAVE_LIBMVEC)
#define HS_VEC_AVX2_LOOP(NAME, FN)                                                      \
    __attribute__((target("avx2"))) inline void NAME##_avx2(double* x, std::int64_t n) { \
        std::int64_t i = 0;                                                              \
        for (; i + 4 <= n; i += 4) _mm256_storeu_pd(x + i, FN(_mm256_loadu_pd(x + i))); \
        if (i < n) { /* the tail goes through the same vector function */              \
            double pad[4] = {0.0, 0.0, 0.0, 0.0};                                        \
            std::memcpy(pad, x + i, static_cast<std::size_t>(n - i) * sizeof(double));  \
            _mm256_storeu_pd(pad, FN(_mm256_loadu_pd(pad)));                             \
            std::memcpy(x + i, pad, static_cast<std::size_t>(n - i) * sizeof(double));  \
        }                                                                                \
    }
#define HS_VEC_AVX2(NAME) HS_VEC_AVX2_LOOP(NAME, _ZGVdN4v_##NAME)
HS_VEC_FUNCTIONS(HS_VEC_AVX2)
#undef HS_VEC_AVX2
#undef HS_VEC_AVX2_LOOP

inline bool have_avx2() {
    static const bool yes = __builtin_cpu_supports("avx2");
    return yes;
}
#define HS_VEC_DISPATCH(NAME)                    \
    if (have_avx2()) return NAME##_avx2(x, n);
#else
#define HS_VEC_DISPATCH(NAME)
#endif

#define HS_VEC_FUNCTION(NAME)                                                   \
    inline void NAME(double* x, std::int64_t n) {                               \
        HS_VEC_DISPATCH(NAME)                                                   \
        for (std::int64_t i = 0; i < n; ++i) x[i] = std::NAME(x[i]);            \
    }
HS_VEC_FUNCTIONS(HS_VEC_FUNCTION)
#undef HS_VEC_FUNCTION
#undef HS_VEC_DISPATCH

}  // namespace hs::vec
