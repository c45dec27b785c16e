// hs::Lag, the C++ twin of harness.ops.timers.Lag: a value `dur` ns old. Samples wait in a queue until they
// are `dur` old; the timer (slot `due`, due when the oldest waiting sample comes of age) makes the last sample
// that old the value. Same state and operation order as the reference: same bits.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>

#include "harness/ops.hpp"

namespace hs {

struct Lag {
    double v = 0.0;
    bool ok = false;
    std::deque<std::pair<std::int64_t, double>> queue;
    void step(std::int64_t now, double x, bool xok, std::int64_t dur, std::int64_t& due) {
        if (!xok) return;
        if (queue.empty()) due = due_after(now, dur);
        queue.emplace_back(now, x);
    }
    void fire(std::int64_t now, std::int64_t dur, std::int64_t& due) {
        while (!queue.empty() && due_after(queue.front().first, dur) <= now) {
            v = queue.front().second;
            ok = true;
            queue.pop_front();
        }
        if (!queue.empty()) due = due_after(queue.front().first, dur);
    }
};

}  // namespace hs
