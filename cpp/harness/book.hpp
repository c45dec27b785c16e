// The L2 order book: the C++ twin of harness/lib/book.py (Book and BookField). Same rules, same grid, same
// order of floating-point operations. Levels are keyed by their grid index (bids negated, so on both sides the
// best level has the smallest key). The keys near the touch live in a flat ladder: a window of WINDOW slots
// (price, size) with an occupancy bitmap, placed around the touch and moved when the touch drifts toward its
// edge; the rare levels outside the window (far from the touch, or after a jump) sit in a sorted map.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "harness/ops.hpp"

namespace hs {

constexpr std::int32_t BOOK_ERR_CROSSED = 1, BOOK_ERR_NAN_PRICE = 2, BOOK_ERR_BAD_AMOUNT = 3, BOOK_ERR_SIDE = 4,
                       BOOK_ERR_LENGTHS = 5, BOOK_ERR_PRICE_RANGE = 6, BOOK_ERR_OFF_GRID = 7;

// scales (1 / tick) of the decimal grids tried when the tick is inferred (harness.lib.book.SCALES)
inline constexpr double BOOK_SCALES[13] = {1.0,  10.0,  100.0, 1e3,  1e4,  1e5, 1e6,
                                           1e7, 1e8, 1e9, 1e10, 1e11, 1e12};
constexpr double BOOK_GRID_EPS = 2.220446049250313e-16;
constexpr double BOOK_GRID_LIMIT = 17592186044416.0;  // 2^44

// round(price * scale) when price lies on the grid of tick 1 / scale (harness.lib.book.grid_index), else false
inline bool grid_index(double price, double scale, std::int64_t& k) {
    const double q = price * scale;
    if (!(std::fabs(q) < BOOK_GRID_LIMIT)) return false;
    const double r = (q + 6755399441055744.0) - 6755399441055744.0;  // round half to even (|q| < 2^51), inline
    if (!(std::fabs(q - r) <= 8.0 * BOOK_GRID_EPS * std::max(1.0, std::fabs(q)))) return false;
    k = static_cast<std::int64_t>(r);
    return true;
}

struct BookLevel {
    double price = 0.0;
    double size = 0.0;  // 0: no level (a level with size 0 is deleted)
};

// One side's levels by key, best (smallest key) first.
class BookSide {
   public:
    static constexpr std::int64_t WINDOW = std::int64_t{1} << 16;  // ladder slots
    std::int64_t count = 0;                                         // levels held
    std::int64_t best = 0;                                          // key of the best level (count > 0)

    // set (amount > 0) or delete (amount == 0) the level at key; returns the size it had (0: none)
    [[gnu::always_inline]] inline double set(std::int64_t key, double price, double amount) {
        // one unsigned compare: base_ starts far from every key (|key| < 2^44), so nothing is in the window unplaced
        if (static_cast<std::uint64_t>(key - base_) < static_cast<std::uint64_t>(WINDOW)) {
            return set_slot(key, price, amount);
        }
        return set_other(key, price, amount);
    }
    void clear() {
        for (std::size_t w = 0; count > 0 && w < bits_.size(); ++w) {
            for (std::uint64_t word = bits_[w]; word != 0; word &= word - 1) slots_[w * 64 + __builtin_ctzll(word)] = {};
            bits_[w] = 0;
        }
        far_.clear();
        count = 0;
    }
    const BookLevel& top() const { return level(best); }
    // f(level) for every level best first, until f returns false
    template <typename F>
    void each(F&& f) const {
        if (count == 0) return;
        auto it = far_.begin();
        for (; it != far_.end() && it->first < base_; ++it) {
            if (!f(it->second)) return;
        }
        const std::int64_t lo = std::max(best, base_);
        if (lo < base_ + WINDOW) {
            std::int64_t w = (lo - base_) >> 6;
            std::uint64_t word = bits_[static_cast<std::size_t>(w)] & (~std::uint64_t{0} << ((lo - base_) & 63));
            for (;;) {
                while (word != 0) {
                    const int b = __builtin_ctzll(word);
                    word &= word - 1;
                    if (!f(slots_[static_cast<std::size_t>(w * 64 + b)])) return;
                }
                if (++w == WINDOW / 64) break;
                word = bits_[static_cast<std::size_t>(w)];
            }
        }
        for (it = far_.lower_bound(base_ + WINDOW); it != far_.end(); ++it) {
            if (!f(it->second)) return;
        }
    }
    // keep the ladder around the touch: move the window when the best key nears its edge (after a message)
    void recenter() {
        if (count > 0 && (best < base_ + WINDOW / 16 || best >= base_ + WINDOW / 2)) rebuild(0.0, 1.0);
    }
    // re-key every level on a finer grid: key = sign * round(price * scale)
    void rekey(double scale, double sign) { rebuild(scale, sign); }

   private:
    std::vector<BookLevel> slots_;
    std::vector<std::uint64_t> bits_;
    std::map<std::int64_t, BookLevel> far_;
    std::int64_t base_ = std::int64_t{1} << 62;  // no key lies in the window until place()
    bool placed_ = false;

    void place(std::int64_t key) {
        base_ = key - WINDOW / 8;
        if (!placed_) {
            slots_.assign(static_cast<std::size_t>(WINDOW), BookLevel{});
            bits_.assign(static_cast<std::size_t>(WINDOW / 64), 0);
            placed_ = true;
        }
    }
    const BookLevel& level(std::int64_t key) const {
        if (key >= base_ && key < base_ + WINDOW) return slots_[static_cast<std::size_t>(key - base_)];
        return far_.find(key)->second;
    }
    [[gnu::noinline]] double set_other(std::int64_t key, double price, double amount) {
        if (!placed_) place(key);
        if (key >= base_ && key < base_ + WINDOW) return set_slot(key, price, amount);
        return set_far(key, price, amount);
    }
    // without branches on the data (whether the update adds, changes or deletes a level is a coin toss)
    [[gnu::always_inline]] inline double set_slot(std::int64_t key, double price, double amount) {
        const std::int64_t i = key - base_;
        BookLevel& slot = slots_[static_cast<std::size_t>(i)];
        const double old = slot.size;
        std::uint64_t& word = bits_[static_cast<std::size_t>(i >> 6)];
        const bool was = old != 0.0, now = amount != 0.0;
        slot.price = price;  // an empty slot's price is never read
        slot.size = amount + 0.0;  // -0.0 (a delete) kept as +0.0, as in an empty slot
        word = (word & ~(std::uint64_t{1} << (i & 63))) | (static_cast<std::uint64_t>(now) << (i & 63));
        const std::int64_t before = count;
        count = before + static_cast<std::int64_t>(now) - static_cast<std::int64_t>(was);
        const bool first = now & !was & ((before == 0) | (key < best));
        best = first ? key : best;
        if (__builtin_expect(was & !now & (key == best) & (count > 0), 0)) best = next_from(key + 1);
        return old;
    }
    double set_far(std::int64_t key, double price, double amount) {
        const auto it = far_.find(key);
        if (amount == 0.0) {
            if (it == far_.end()) return 0.0;
            const double old = it->second.size;
            far_.erase(it);
            removed(key);
            return old;
        }
        if (it != far_.end()) {
            const double old = it->second.size;
            it->second = BookLevel{price, amount};
            return old;
        }
        far_.emplace(key, BookLevel{price, amount});
        added(key);
        return 0.0;
    }
    void added(std::int64_t key) {
        if (count++ == 0 || key < best) best = key;
    }
    [[gnu::always_inline]] inline void removed(std::int64_t key) {
        if (--count > 0 && key == best) best = next_from(key + 1);
    }
    // the smallest key >= k that holds a level (count > 0 and every key below k is empty)
    [[gnu::noinline]] std::int64_t next_from(std::int64_t k) const {
        auto it = far_.lower_bound(k);
        if (it != far_.end() && it->first < base_) return it->first;
        const std::int64_t lo = std::max(k, base_);
        if (lo < base_ + WINDOW) {
            std::int64_t w = (lo - base_) >> 6;
            std::uint64_t word = bits_[static_cast<std::size_t>(w)] & (~std::uint64_t{0} << ((lo - base_) & 63));
            for (;;) {
                if (word != 0) return base_ + w * 64 + __builtin_ctzll(word);
                if (++w == WINDOW / 64) break;
                word = bits_[static_cast<std::size_t>(w)];
            }
        }
        return far_.lower_bound(std::max(k, base_ + WINDOW))->first;
    }
    // every level re-inserted (scale 0: same keys; else keys on the new grid), the window around the best
    [[gnu::noinline]] void rebuild(double scale, double sign) {
        std::vector<std::pair<std::int64_t, BookLevel>> all;
        all.reserve(static_cast<std::size_t>(count));
        collect(all);
        if (scale != 0.0) {
            for (auto& entry : all) {
                entry.first = static_cast<std::int64_t>(sign * std::nearbyint(entry.second.price * scale));
            }
        }
        clear();
        if (all.empty()) return;
        place(all.front().first);  // the best key: keys stay in order on a finer grid
        for (const auto& [key, lv] : all) set(key, lv.price, lv.size);
    }
    void collect(std::vector<std::pair<std::int64_t, BookLevel>>& all) const {
        if (count == 0) return;
        for (auto it = far_.begin(); it != far_.end() && it->first < base_; ++it) all.emplace_back(*it);
        for (std::int64_t w = 0; w < WINDOW / 64; ++w) {
            std::uint64_t word = bits_[static_cast<std::size_t>(w)];
            while (word != 0) {
                const int b = __builtin_ctzll(word);
                word &= word - 1;
                all.emplace_back(base_ + w * 64 + b, slots_[static_cast<std::size_t>(w * 64 + b)]);
            }
        }
        for (auto it = far_.lower_bound(base_ + WINDOW); it != far_.end(); ++it) all.emplace_back(*it);
    }
};

// one applied level update of the current message (harness.lib.book.LevelDelta)
struct BookDelta {
    double side, price, old, amount;
};

struct Book {
    BookSide bids, asks;  // bid keys are -round(price * scale)
    double scale = 0.0;   // 1 / tick of the grid in use: given, or BOOK_SCALES[grid]
    int grid = 0;
    double crossed_count = 0.0;
    bool crossed_now = false;
    bool snapshot_now = false;
    std::vector<BookDelta> deltas;  // the current message's level updates, in order, once a reader asked for them
    // set by a reader of `deltas` (an anchored impulse) from its first full recompute on: a book nobody reads
    // incrementally skips recording them (a fifth of a book-only replay)
    mutable bool keep_deltas = false;
    double v = 0.0;                 // the mid
    bool ok = false;

    void step(ListView side, ListView price, ListView amount, double snapshot, double fixed_tick, bool error_mode,
              OpError& err) {
        if (side.size != price.size || amount.size != price.size) {
            err.set(BOOK_ERR_LENGTHS, static_cast<double>(price.size),
                    static_cast<double>(side.size != price.size ? side.size : amount.size));
            return;
        }
        if (scale == 0.0) scale = fixed_tick > 0.0 ? 1.0 / fixed_tick : BOOK_SCALES[0];
        deltas.clear();
        snapshot_now = snapshot == 1.0;
        if (snapshot_now) {
            bids.clear();
            asks.clear();
        }
        for (std::int64_t k = 0; k < price.size; ++k) {
            const double sd = side.data[k], px = price.data[k], am = amount.data[k];
            // the common case in one branch: a sound update on the grid (a nan or infinite price is off it)
            const double q = px * scale;
            const double r = (q + 6755399441055744.0) - 6755399441055744.0;
            const bool sound = (am >= 0.0) & (std::fabs(sd) == 1.0) & (std::fabs(q) < BOOK_GRID_LIMIT) &
                               (std::fabs(q - r) <= 8.0 * BOOK_GRID_EPS * std::max(1.0, std::fabs(q)));
            std::int64_t key = static_cast<std::int64_t>(sound ? r : 0.0);
            if (__builtin_expect(!sound, 0)) {
                if (std::isnan(px)) return err.set(BOOK_ERR_NAN_PRICE, px, am);
                if (!(am >= 0.0)) return err.set(BOOK_ERR_BAD_AMOUNT, px, am);
                if (sd != 1.0 && sd != -1.0) return err.set(BOOK_ERR_SIDE, sd, px);
                if (std::isinf(px)) return err.set(BOOK_ERR_PRICE_RANGE, px, am);
                if (fixed_tick > 0.0) return err.set(BOOK_ERR_OFF_GRID, px, fixed_tick);
                if (!refine(px)) return err.set(BOOK_ERR_OFF_GRID, px, 0.0);
                grid_index(px, scale, key);
            }
            const bool bid = sd == 1.0;
            const double old = (bid ? bids : asks).set(bid ? -key : key, px, am);
            if (keep_deltas) deltas.push_back(BookDelta{sd, px, old, am});
        }
        bids.recenter();
        asks.recenter();
        crossed_now = false;
        ok = false;
        if (bids.count > 0 && asks.count > 0) {
            const double bid = bids.top().price, ask = asks.top().price;
            if (bid >= ask) {
                if (error_mode) return err.set(BOOK_ERR_CROSSED, bid, ask);
                crossed_count += 1.0;
                crossed_now = true;
                return;
            }
            v = (bid + ask) / 2.0;
            ok = true;
        }
    }

    // a finer inferred grid that holds px: re-key both sides (false: none of the decimal grids holds it)
    [[gnu::noinline]] bool refine(double px) {
        std::int64_t key;
        for (int d = grid + 1; d < 13; ++d) {
            if (grid_index(px, BOOK_SCALES[d], key)) {
                grid = d;
                scale = BOOK_SCALES[d];
                bids.rekey(scale, -1.0);
                asks.rekey(scale, 1.0);
                return true;
            }
        }
        return false;
    }

    // fields (BookField): value and validity
    double bid_price() const { return bids.count > 0 ? bids.top().price : 0.0; }
    double ask_price() const { return asks.count > 0 ? asks.top().price : 0.0; }
    double bid_size() const { return bids.count > 0 ? bids.top().size : 0.0; }
    double ask_size() const { return asks.count > 0 ? asks.top().size : 0.0; }
    double mid() const { return (bid_price() + ask_price()) / 2.0; }
    double spread() const { return ask_price() - bid_price(); }
    double wmid() const {
        return (bid_price() * ask_size() + ask_price() * bid_size()) / (bid_size() + ask_size());
    }
    static double depth(const BookSide& side, std::int64_t levels) {
        double total = 0.0;
        std::int64_t k = 0;
        side.each([&](const BookLevel& lv) {
            if (k++ == levels) return false;
            total += lv.size;
            return true;
        });
        return total;
    }
    // sizes of the levels within `width` of the best price (|price - best| <= width), best first
    static double band(const BookSide& side, double width) {
        double total = 0.0;
        if (side.count == 0) return total;
        const double best = side.top().price;
        side.each([&](const BookLevel& lv) {
            if (std::fabs(lv.price - best) > width) return false;
            total += lv.size;
            return true;
        });
        return total;
    }
    double bid_band(double width) const { return band(bids, width); }
    double ask_band(double width) const { return band(asks, width); }
    double bid_depth(std::int64_t levels) const { return depth(bids, levels); }
    double ask_depth(std::int64_t levels) const { return depth(asks, levels); }
    double crossed() const { return crossed_count; }

    bool bid_ok() const { return !crossed_now && bids.count > 0; }
    bool ask_ok() const { return !crossed_now && asks.count > 0; }
    bool both_ok() const { return bid_ok() && ask_ok(); }
    bool bid_price_ok() const { return bid_ok(); }
    bool bid_size_ok() const { return bid_ok(); }
    bool bid_depth_ok() const { return bid_ok(); }
    bool ask_price_ok() const { return ask_ok(); }
    bool ask_size_ok() const { return ask_ok(); }
    bool ask_depth_ok() const { return ask_ok(); }
    bool bid_band_ok() const { return bid_ok(); }
    bool ask_band_ok() const { return ask_ok(); }
    bool mid_ok() const { return both_ok(); }
    bool wmid_ok() const { return both_ok(); }
    bool spread_ok() const { return both_ok(); }
    bool crossed_ok() const { return true; }
};

}  // namespace hs
