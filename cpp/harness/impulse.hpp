// The book "impulse" fair price: the C++ twin of harness/lib/impulse.py (Impulse). It reads the levels and the
// current message's level updates of its Book (no copy of the levels); same running sums, same order of
// floating-point operations (updates in message order, full sums best level first).
#pragma once

#include <cmath>
#include <cstdint>

#include "harness/book.hpp"
#include "harness/numeric.hpp"

namespace hs {

struct Impulse {
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

    static double full_sum(const BookSide& levels, double side, double anchor, double distance) {
        double s = 0.0;
        levels.each([&](const BookLevel& lv) {
            const double w = weight(side, lv.price, anchor, distance);
            if (w == 0.0) return false;  // every deeper level is beyond the cutoff too
            s = s + lv.size * w;
            return true;
        });
        return s;
    }

    void step(const Book& book, double distance, std::int64_t recompute_every, double reanchor) {
        if (book.snapshot_now) {
            sb = sa = 0.0;
            anchored = false;
        }
        if (anchored) {
            for (const BookDelta& u : book.deltas) {
                const double w = weight(u.side, u.price, anchor, distance);
                if (u.side > 0.0) {
                    sb = sb + (u.amount - u.old) * w;
                } else {
                    sa = sa + (u.amount - u.old) * w;
                }
            }
        }
        ok = false;
        if (book.bids.count == 0 || book.asks.count == 0) return;
        const double bid = book.bids.top().price, ask = book.asks.top().price;
        if (bid >= ask) return;
        const double mid = (bid + ask) / 2.0;
        since += 1;
        if (!anchored || since >= recompute_every || std::fabs(mid - anchor) > reanchor * distance) {
            anchor = mid;
            anchored = true;
            book.keep_deltas = true;  // incremental from the next message on: the book records its level changes
            since = 0;
            sb = full_sum(book.bids, 1.0, anchor, distance);
            sa = full_sum(book.asks, -1.0, anchor, distance);
        }
        if (sb > 0.0 && sa > 0.0) {
            v = anchor + distance * hs::log(sb / sa) / 2.0;
            ok = true;
        }
    }
};

}  // namespace hs
