// Aggressor bursts: the C++ twin of harness/lib/bursts.py (Bursts and BurstField). Same rules, same order of
// floating-point operations.
#pragma once

#include <cstdint>

#include "harness/ops.hpp"

namespace hs {

struct Burst {
    double side = 0.0, trades = 0.0, amount = 0.0, notional = 0.0;
    double first_price = 0.0, last_price = 0.0, extreme_price = 0.0;
    double fair = 0.0;
    bool fair_ok = false;
    double first_te = 0.0, last_te = 0.0;

    void add(double price, double am, double te) {
        if (trades == 0.0) {
            first_price = price;
            extreme_price = price;
            first_te = te;
        } else if ((side > 0.0 && price > extreme_price) || (side < 0.0 && price < extreme_price)) {
            extreme_price = price;
        }
        trades += 1.0;
        amount = amount + am;
        notional = notional + price * am;
        last_price = price;
        last_te = te;
    }
};

struct Bursts {
    Burst open_burst, done;
    bool is_open = false, has_done = false, done_now = false;
    double v = 0.0;
    bool ok = false;

    void complete() {
        done = open_burst;
        has_done = true;
        is_open = false;
        done_now = true;
    }
    void value() {
        ok = done_now && has_done;
        if (ok) v = done.side * done.amount;
    }
    void step(std::int64_t now, bool valid, double price, double am, double side, double te, double fair,
              bool fair_ok, double gap, std::int64_t timeout, std::int64_t& due) {
        done_now = false;
        ok = false;
        if (!valid || side == 0.0) return;
        if (is_open && (side != open_burst.side || te - open_burst.last_te > gap * 1e9)) complete();
        if (!is_open) {
            open_burst = Burst{};
            open_burst.side = side;
            open_burst.fair = fair;
            open_burst.fair_ok = fair_ok;
            is_open = true;
        }
        open_burst.add(price, am, te);
        due = now + timeout;
        value();
    }
    void fire() {
        done_now = false;
        if (is_open) complete();
        value();
    }

    // fields (BurstField): value and validity, of the burst completed in this event
    bool any_ok() const { return done_now && has_done; }
    double side() const { return done.side; }
    double amount() const { return done.amount; }
    double signed_amount() const { return done.side * done.amount; }
    double trades() const { return done.trades; }
    double vwap() const { return done.notional / done.amount; }
    double first_price() const { return done.first_price; }
    double last_price() const { return done.last_price; }
    double extreme_price() const { return done.extreme_price; }
    double penetration() const { return done.side * (done.extreme_price - done.fair); }
    double duration() const { return (done.last_te - done.first_te) / 1e9; }
    bool side_ok() const { return any_ok(); }
    bool amount_ok() const { return any_ok(); }
    bool signed_amount_ok() const { return any_ok(); }
    bool trades_ok() const { return any_ok(); }
    bool vwap_ok() const { return any_ok() && done.amount != 0.0; }
    bool first_price_ok() const { return any_ok(); }
    bool last_price_ok() const { return any_ok(); }
    bool extreme_price_ok() const { return any_ok(); }
    bool penetration_ok() const { return any_ok() && done.fair_ok; }
    bool duration_ok() const { return any_ok(); }
};

}  // namespace hs
