// The L2 order book: the C++ twin of harness/lib/book.py (Book and BookField). Same rules, same order
// of floating-point operations: sizes per price in a sorted map per side, best levels first.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>

#include "harness/ops.hpp"

namespace hs {

constexpr std::int32_t BOOK_ERR_CROSSED = 1, BOOK_ERR_NAN_PRICE = 2, BOOK_ERR_BAD_AMOUNT = 3, BOOK_ERR_SIDE = 4,
                       BOOK_ERR_LENGTHS = 5;

// The rules of one message, checked before anything is applied (the order of harness.lib.book.check_message):
// equal list lengths, then per level a non-nan price, an amount >= 0, a side of +1 or -1. False on the first
// broken rule, with the error set.
inline bool check_message(ListView side, ListView price, ListView amount, OpError& err) {
    if (side.size != price.size || amount.size != price.size) {
        err.set(BOOK_ERR_LENGTHS, static_cast<double>(price.size),
                static_cast<double>(side.size != price.size ? side.size : amount.size));
        return false;
    }
    for (std::int64_t k = 0; k < price.size; ++k) {
        const double sd = side.data[k], px = price.data[k], am = amount.data[k];
        if (std::isnan(px)) return err.set(BOOK_ERR_NAN_PRICE, px, am), false;
        if (!(am >= 0.0)) return err.set(BOOK_ERR_BAD_AMOUNT, px, am), false;
        if (sd != 1.0 && sd != -1.0) return err.set(BOOK_ERR_SIDE, sd, px), false;
    }
    return true;
}

struct Book {
    std::map<double, double, std::greater<double>> bids;  // best (highest) first
    std::map<double, double> asks;                         // best (lowest) first
    double crossed_count = 0.0;
    bool crossed_now = false;
    double v = 0.0;  // the mid
    bool ok = false;

    template <typename Side>
    static void apply(Side& side, double price, double amount) {
        if (amount == 0.0) {
            side.erase(price);
        } else {
            side[price] = amount;
        }
    }

    void step(ListView side, ListView price, ListView amount, double snapshot, bool error_mode, OpError& err) {
        if (side.size != price.size || amount.size != price.size) {
            err.set(BOOK_ERR_LENGTHS, static_cast<double>(price.size),
                    static_cast<double>(side.size != price.size ? side.size : amount.size));
            return;
        }
        if (snapshot == 1.0) {
            bids.clear();
            asks.clear();
        }
        for (std::int64_t k = 0; k < price.size; ++k) {
            const double sd = side.data[k], px = price.data[k], am = amount.data[k];
            if (std::isnan(px)) return err.set(BOOK_ERR_NAN_PRICE, px, am);
            if (!(am >= 0.0)) return err.set(BOOK_ERR_BAD_AMOUNT, px, am);
            if (sd == 1.0) {
                apply(bids, px, am);
            } else if (sd == -1.0) {
                apply(asks, px, am);
            } else {
                return err.set(BOOK_ERR_SIDE, sd, px);
            }
        }
        crossed_now = false;
        ok = false;
        if (!bids.empty() && !asks.empty()) {
            const double bid = bids.begin()->first, ask = asks.begin()->first;
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

    // fields (BookField): value and validity
    double bid_price() const { return bids.empty() ? 0.0 : bids.begin()->first; }
    double ask_price() const { return asks.empty() ? 0.0 : asks.begin()->first; }
    double bid_size() const { return bids.empty() ? 0.0 : bids.begin()->second; }
    double ask_size() const { return asks.empty() ? 0.0 : asks.begin()->second; }
    double mid() const { return (bid_price() + ask_price()) / 2.0; }
    double spread() const { return ask_price() - bid_price(); }
    double wmid() const {
        return (bid_price() * ask_size() + ask_price() * bid_size()) / (bid_size() + ask_size());
    }
    template <typename Side>
    static double depth(const Side& side, std::int64_t levels) {
        double total = 0.0;
        std::int64_t k = 0;
        for (const auto& level : side) {
            if (k++ == levels) break;
            total += level.second;
        }
        return total;
    }
    // sizes of the levels within `width` of the best price (|price - best| <= width), best first
    template <typename Side>
    static double band(const Side& side, double width) {
        double total = 0.0;
        if (side.empty()) return total;
        const double best = side.begin()->first;
        for (const auto& level : side) {
            if (std::fabs(level.first - best) > width) break;
            total += level.second;
        }
        return total;
    }
    double bid_band(double width) const { return band(bids, width); }
    double ask_band(double width) const { return band(asks, width); }
    double bid_depth(std::int64_t levels) const { return depth(bids, levels); }
    double ask_depth(std::int64_t levels) const { return depth(asks, levels); }
    double crossed() const { return crossed_count; }

    bool bid_ok() const { return !crossed_now && !bids.empty(); }
    bool ask_ok() const { return !crossed_now && !asks.empty(); }
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
