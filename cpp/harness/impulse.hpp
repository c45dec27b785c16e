// The book "impulse" fair price: the C++ twin of harness/lib/impulse.py (Impulse). Same levels, same running
// sums, same order of floating-point operations (levels in message order, full sums best level first).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>

#include "harness/book.hpp"
#include "harness/numeric.hpp"
#include "harness/ops.hpp"

namespace hs {

struct Impulse {
    std::map<double, double, std::greater<double>> bids;  // best (highest) first
    std::map<double, double> asks;                         // best (lowest) first
    double sb = 0.0, sa = 0.0, anchor = 0.0;
    bool anchored = false;
    std::int64_t since = 0;
    double v = 0.0;
    bool ok = false;

    static constexpr double CUTOFF = 40.0;  // harness.lib.impulse.CUTOFF
    static double weight(double side, double price, double anchor, double distance) {
        const double y = (price - anchor) / distance;
        const double x = side > 0.0 ? y : -y;
        return x < -CUTOFF ? 0.0 : hs::exp(x);
    }

    void full_sums(double distance) {
        sb = 0.0;
        for (const auto& level : bids) {
            const double w = weight(1.0, level.first, anchor, distance);
            if (w == 0.0) break;  // every deeper level is beyond the cutoff too
            sb = sb + level.second * w;
        }
        sa = 0.0;
        for (const auto& level : asks) {
            const double w = weight(-1.0, level.first, anchor, distance);
            if (w == 0.0) break;
            sa = sa + level.second * w;
        }
    }

    template <typename Side>
    static double apply(Side& book_side, double price, double amount) {
        const auto it = book_side.find(price);
        const double old = it == book_side.end() ? 0.0 : it->second;
        if (amount == 0.0) {
            if (it != book_side.end()) book_side.erase(it);
        } else if (it != book_side.end()) {
            it->second = amount;
        } else {
            book_side.emplace(price, amount);
        }
        return old;
    }

    void step(ListView side, ListView price, ListView amount, double snapshot, double distance,
              std::int64_t recompute_every, double reanchor, OpError& err) {
        if (!check_message(side, price, amount, err)) return;
        if (snapshot == 1.0) {
            bids.clear();
            asks.clear();
            sb = sa = 0.0;
            anchored = false;
        }
        for (std::int64_t k = 0; k < price.size; ++k) {
            const double sd = side.data[k], px = price.data[k], am = amount.data[k];
            const double old = sd > 0.0 ? apply(bids, px, am) : apply(asks, px, am);
            if (anchored) {
                const double w = weight(sd, px, anchor, distance);
                if (sd > 0.0) {
                    sb = sb + (am - old) * w;
                } else {
                    sa = sa + (am - old) * w;
                }
            }
        }
        ok = false;
        if (bids.empty() || asks.empty()) return;
        const double bid = bids.begin()->first, ask = asks.begin()->first;
        if (bid >= ask) return;
        const double mid = (bid + ask) / 2.0;
        since += 1;
        if (!anchored || since >= recompute_every || std::fabs(mid - anchor) > reanchor * distance) {
            anchor = mid;
            anchored = true;
            since = 0;
            full_sums(distance);
        }
        if (sb > 0.0 && sa > 0.0) {
            v = anchor + distance * hs::log(sb / sa) / 2.0;
            ok = true;
        }
    }
};

}  // namespace hs
