// Helpers of the generated replay loops: per-block checks of the events (64 rows at a time) with bit masks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace hs {

// Bit k of rows[j] is set when row k of the block has trigger j; `unknown` gets rows with no known trigger.
// codes are the raw column (trigger codes, or dictionary indices when remap != nullptr); m <= 64 rows.
template <int NT, typename Code, bool Remap>
inline void trigger_masks(const Code* codes, std::int64_t m, const std::int32_t* remap, std::int64_t remap_size,
                          std::uint64_t (&rows)[NT], std::uint64_t& unknown) {
    for (int j = 0; j < NT; ++j) rows[j] = 0;
    const std::uint64_t all = m == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << m) - 1;
#if defined(__SSE2__)
    if constexpr (sizeof(Code) == 1 && Remap) {
        if (m == 64 && remap_size <= 64) {  // dictionary indices: one byte compare per entry, 16 rows at once
            const auto* p = reinterpret_cast<const __m128i*>(codes);
            const __m128i c0 = _mm_loadu_si128(p), c1 = _mm_loadu_si128(p + 1);
            const __m128i c2 = _mm_loadu_si128(p + 2), c3 = _mm_loadu_si128(p + 3);
            std::uint64_t known = 0;
            for (std::int64_t d = 0; d < remap_size; ++d) {
                const std::int32_t j = remap[d];
                if (j < 0 || j >= NT) continue;
                const __m128i v = _mm_set1_epi8(static_cast<char>(d));
                const std::uint64_t hit =
                    static_cast<std::uint64_t>(static_cast<std::uint16_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(c0, v)))) |
                    static_cast<std::uint64_t>(static_cast<std::uint16_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(c1, v)))) << 16 |
                    static_cast<std::uint64_t>(static_cast<std::uint16_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(c2, v)))) << 32 |
                    static_cast<std::uint64_t>(static_cast<std::uint16_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(c3, v)))) << 48;
                rows[j] |= hit;
                known |= hit;
            }
            unknown = ~known & all;
            return;
        }
    }
#endif
    std::uint64_t known = 0;
    for (std::int64_t k = 0; k < m; ++k) {
        const std::int64_t idx = static_cast<std::int64_t>(codes[k]);
        std::int32_t code = -1;
        if (!Remap) code = static_cast<std::int32_t>(idx);
        else if (idx >= 0 && idx < remap_size) code = remap[idx];
        if (code >= 0 && code < NT) {
            rows[code] |= std::uint64_t{1} << k;
            known |= std::uint64_t{1} << k;
        }
    }
    unknown = ~known & all;
}

// Bit k set where t[k] < the time before it (prev for k = 0).
inline std::uint64_t time_decreases(const std::int64_t* t, std::int64_t m, std::int64_t prev) {
    bool any = t[0] < prev;
    for (std::int64_t k = 1; k < m; ++k) any |= t[k] < t[k - 1];
    if (!any) return 0;
    std::uint64_t down = 0;
    for (std::int64_t k = 0; k < m; ++k) {
        down |= static_cast<std::uint64_t>(t[k] < prev) << k;
        prev = t[k];
    }
    return down;
}

// 64 validity bits of an Arrow bitmap starting at bit `start` (only `count` <= 64 of them are read).
inline std::uint64_t load_bits(const std::uint8_t* bits, std::int64_t start, std::int64_t count) {
    const std::int64_t first = start >> 3;
    const std::int64_t last = (start + count - 1) >> 3;
    std::uint64_t lo = 0;
    std::uint8_t extra = 0;
    std::memcpy(&lo, bits + first, static_cast<std::size_t>(std::min<std::int64_t>(8, last - first + 1)));
    if (last - first == 8) extra = bits[last];
    const int shift = static_cast<int>(start & 7);
    const std::uint64_t word = shift ? (lo >> shift) | (static_cast<std::uint64_t>(extra) << (64 - shift)) : lo;
    return count == 64 ? word : word & ((std::uint64_t{1} << count) - 1);
}

}  // namespace hs
