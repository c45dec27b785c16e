"""Aggressor bursts ("ticks"): runs of trades by one side, scored when they complete.

`Bursts` collects consecutive trades of one aggressor side into a burst. The burst completes when
- a trade of the other side arrives (that trade starts the next burst),
- a trade arrives more than `gap` seconds of *exchange* time after the burst's last trade, or
- `timeout` seconds of local time pass after the burst's last trade (a timer).
Trades of unknown side (0) are ignored. The value is the completed burst's signed amount, valid only in the
event (trade or timer) that completed it (edge-triggered). `BurstField` reads the completed burst: its side,
amount, signed amount, trades, VWAP, first/last/extreme prices, exchange-time duration, and *penetration*:
how far through the book it traded, side * (extreme price - fair), with fair the observed fair price (e.g. the
mid or an impulse fair) at the burst's first trade (invalid when that fair was invalid).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.circuit.operator import Operator, Param, StepContext, positive
from harness.ops.timers import DURATION, seconds_to_ns


@dataclass
class Burst:
    """One run of trades of one side."""

    side: float
    trades: float = 0.0
    amount: float = 0.0
    notional: float = 0.0  # sum of price * amount
    first_price: float = 0.0
    last_price: float = 0.0
    extreme_price: float = 0.0  # highest for buys, lowest for sells
    fair: float | None = None  # the observed fair price at the first trade
    first_te: float = 0.0  # exchange time (ns, float) of the first and the last trade
    last_te: float = 0.0

    def add(self, price: float, amount: float, te: float) -> None:
        if self.trades == 0.0:
            self.first_price, self.extreme_price, self.first_te = price, price, te
        elif (self.side > 0 and price > self.extreme_price) or (self.side < 0 and price < self.extreme_price):
            self.extreme_price = price
        self.trades += 1.0
        self.amount = self.amount + amount
        self.notional = self.notional + price * amount
        self.last_price, self.last_te = price, te


@dataclass
class BurstState:
    """The open burst, the last completed one, and whether it completed in this event."""

    open: Burst | None = None
    done: Burst | None = None
    done_now: bool = False


class Bursts(Operator):
    """Burst detector (inputs: trade price, amount, side, exchange time in ns, observed fair price)."""

    kind, arity, stateful, timer, edge = "bursts", 5, True, True, True
    memory = "last"  # the open burst and the last completed one: forgotten at the next completion
    params_spec = {
        "gap": Param(rule="> 0 and finite (seconds of exchange time)", check=positive),
        "timeout": DURATION,
    }
    cpp_state = "hs::Bursts"
    cpp_includes = ("harness/bursts.hpp",)

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        return BurstState(), None

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        st: BurstState = state
        st.done_now = False
        price, amount, side, te, fair = xs
        if price is None or amount is None or side is None or te is None or side == 0.0:
            return None
        b = st.open
        if b is not None and (side != b.side or te - b.last_te > p["gap"] * 1e9):
            self._complete(st)
            b = None
        if b is None:
            b = st.open = Burst(side=side, fair=fair)
        b.add(price, amount, te)
        ctx.schedule(ctx.t + seconds_to_ns(p["timeout"]))
        return self._value(st)

    def ref_timer(self, state: Any, ctx: StepContext, p: Mapping[str, float]) -> float | None:
        st: BurstState = state
        st.done_now = False
        if st.open is not None:
            self._complete(st)
        return self._value(st)

    @staticmethod
    def _complete(st: BurstState) -> None:
        st.done, st.open, st.done_now = st.open, None, True

    @staticmethod
    def _value(st: BurstState) -> float | None:
        if not st.done_now or st.done is None:
            return None
        return st.done.side * st.done.amount

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        valid = " && ".join(oks[:4])
        timeout = seconds_to_ns(self.params["timeout"])
        return (
            f"{s}.step({t}, {valid}, {xs[0]}, {xs[1]}, {xs[2]}, {xs[3]}, {xs[4]}, {oks[4]}, {p['gap']}, "
            f"{timeout}, {due});"
        )

    def cpp_timer(self, s: str, t: str, p: Mapping[str, str], due: str) -> str:
        return f"{s}.fire();"


BURST_FIELDS = (
    "side", "amount", "signed_amount", "trades", "vwap", "first_price", "last_price", "extreme_price",
    "penetration", "duration",
)  # fmt: skip


class BurstField(Operator):
    """One number of the burst that completed in this event (edge-triggered; see the module docstring)."""

    kind, arity, reads_state, edge = "burst_field", 1, True, True
    params_spec = {"field": Param(rule="a burst field", choices=BURST_FIELDS)}

    def ref(self, p: Mapping[str, Any], xs: Sequence[Any]) -> float | None:
        st: BurstState = xs[0]
        b = st.done
        if not st.done_now or b is None:
            return None
        f = p["field"]
        if f == "side":
            return b.side
        if f == "amount":
            return b.amount
        if f == "signed_amount":
            return b.side * b.amount
        if f == "trades":
            return b.trades
        if f == "vwap":
            return b.notional / b.amount if b.amount != 0.0 else None
        if f == "first_price":
            return b.first_price
        if f == "last_price":
            return b.last_price
        if f == "extreme_price":
            return b.extreme_price
        if f == "penetration":
            return None if b.fair is None else b.side * (b.extreme_price - b.fair)
        return (b.last_te - b.first_te) / 1e9  # duration

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        return f"{xs[0]}.{self.params['field']}()"

    def cpp_valid(self, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str]) -> str:
        return f"{xs[0]}.{self.params['field']}_ok()"
