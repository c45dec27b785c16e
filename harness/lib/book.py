"""The L2 order book operator and its projections: one numeric spec each (Python reference + C++ form).

`Book` applies one exchange message per event: lists of (side, price, amount) level updates, where amount
is the new absolute size at that price and 0 deletes the level; `snapshot` 1 clears the book first (the
first message of a snapshot block). Its value is the mid. `BookField` nodes read the book's state: best
prices and sizes, mid, size-weighted mid, spread, depth sums over the best N levels, and the count of
crossed messages. Prices are invalid while a side is empty. A crossed book (best bid >= best ask after a
message) is an error (`crossed="error"`) or makes the prices invalid and counts (`crossed="invalid"`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.circuit.operator import Operator, OperatorError, Param, StepContext

ERR_CROSSED, ERR_NAN_PRICE, ERR_BAD_AMOUNT, ERR_SIDE, ERR_LENGTHS = 1, 2, 3, 4, 5


@dataclass
class BookState:
    """Both sides of the book: size per price, and the prices in ascending order."""

    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    bid_prices: list[float] = field(default_factory=list)
    ask_prices: list[float] = field(default_factory=list)
    crossed: float = 0.0  # messages after which the book was crossed
    crossed_now: bool = False

    def apply(self, side: float, price: float, amount: float) -> None:
        sizes, prices = (self.bids, self.bid_prices) if side > 0 else (self.asks, self.ask_prices)
        if amount == 0.0:
            if price in sizes:
                del sizes[price]
                prices.pop(bisect.bisect_left(prices, price))
        else:
            if price not in sizes:
                bisect.insort(prices, price)
            sizes[price] = amount

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.bid_prices.clear()
        self.ask_prices.clear()

    def band(self, bid: bool, width: float) -> float:
        """Sum of the sizes of one side's levels within `width` (price units) of its best price, best first."""
        if bid:
            best = self.bid_prices[-1]
            prices = [p for p in reversed(self.bid_prices) if best - p <= width]
            sizes = self.bids
        else:
            best = self.ask_prices[0]
            prices = [p for p in self.ask_prices if p - best <= width]
            sizes = self.asks
        total = 0.0
        for price in prices:
            total += sizes[price]
        return total

    def depth(self, bid: bool, levels: int) -> float:
        """Sum of the sizes of the best `levels` levels of one side, best first."""
        sizes, prices = (self.bids, self.bid_prices[::-1]) if bid else (self.asks, self.ask_prices)
        total = 0.0
        for price in prices[:levels]:
            total += sizes[price]
        return total


def check_message(sides: Sequence[float], prices: Sequence[float], amounts: Sequence[float]) -> None:
    """Raise OperatorError for the first rule a message breaks: list lengths, then per level a nan price,
    a negative or nan amount, a side other than +1/-1 (the same order as the C++ twin)."""
    if not len(sides) == len(prices) == len(amounts):
        raise OperatorError(
            ERR_LENGTHS, float(len(prices)), float(len(sides) if len(sides) != len(prices) else len(amounts))
        )
    for side, price, amount in zip(sides, prices, amounts, strict=True):
        if math.isnan(price):
            raise OperatorError(ERR_NAN_PRICE, price, amount)
        if not amount >= 0.0:  # negative or nan
            raise OperatorError(ERR_BAD_AMOUNT, price, amount)
        if side != 1.0 and side != -1.0:
            raise OperatorError(ERR_SIDE, side, price)


class Book(Operator):
    """L2 order book from incremental messages (inputs: side, price, amount lists; snapshot flag)."""

    kind, arity, stateful, can_fail = "book", 4, True, True
    list_inputs = (0, 1, 2)
    params_spec = {"crossed": Param(rule="'invalid' or 'error'", choices=("invalid", "error"), default="invalid")}
    cpp_state = "hs::Book"
    cpp_includes = ("harness/book.hpp",)

    def ref_init(self, p: Mapping[str, Any]) -> tuple[Any, float | None]:
        return BookState(), None

    def ref_step(self, state: Any, ctx: StepContext, p: Mapping[str, Any], xs: Sequence[Any]) -> float | None:
        sides, prices, amounts, snapshot = xs
        book: BookState = state
        check_message(sides, prices, amounts)
        if snapshot == 1.0:
            book.clear()
        for side, price, amount in zip(sides, prices, amounts, strict=True):
            book.apply(side, price, amount)
        book.crossed_now = False
        if book.bid_prices and book.ask_prices:
            bid, ask = book.bid_prices[-1], book.ask_prices[0]
            if bid >= ask:
                if p["crossed"] == "error":
                    raise OperatorError(ERR_CROSSED, bid, ask)
                book.crossed += 1.0
                book.crossed_now = True
                return None
            return (bid + ask) / 2.0
        return None

    def error_message(self, code: int, a: float, b: float) -> str:
        if code == ERR_CROSSED:
            return f"the book is crossed after this message (best bid {a!r} >= best ask {b!r})"
        if code == ERR_NAN_PRICE:
            return f"a level update has price nan (amount {b!r})"
        if code == ERR_BAD_AMOUNT:
            return f"a level update at price {a!r} has amount {b!r}; amounts must be >= 0"
        if code == ERR_SIDE:
            return f"a level update at price {b!r} has side {a!r}; sides are +1 (bid) or -1 (ask)"
        if code == ERR_LENGTHS:
            return f"the message's side, price and amount lists differ in length ({int(a)} prices, {int(b)})"
        return super().error_message(code, a, b)

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        error_mode = "true" if self.params["crossed"] == "error" else "false"
        return f"{s}.step({xs[0]}, {xs[1]}, {xs[2]}, {xs[3]}, {error_mode}, s.err);"


FIELDS = (
    "bid_price",
    "bid_size",
    "ask_price",
    "ask_size",
    "mid",
    "wmid",
    "spread",
    "bid_depth",
    "ask_depth",
    "bid_band",
    "ask_band",
    "crossed",
)


def _width_ok(v: float) -> bool:
    return math.isfinite(v) and v >= 0.0


class BookField(Operator):
    """One number read from a Book's state after each message (see the module docstring for the fields)."""

    kind, arity, reads_state = "book_field", 1, True
    params_spec = {
        "field": Param(rule="a book field", choices=FIELDS),
        "levels": Param(rule="an integer >= 1 (depth fields)", check=lambda v: v >= 1, default=1, integer=True),
        "width": Param(rule=">= 0 and finite (band fields, price units)", check=_width_ok, default=0.0),
    }

    def ref(self, p: Mapping[str, Any], xs: Sequence[Any]) -> float | None:
        book: BookState = xs[0]
        f = p["field"]
        if f == "crossed":
            return book.crossed
        if book.crossed_now:
            return None
        has_bid, has_ask = bool(book.bid_prices), bool(book.ask_prices)
        if f in ("bid_price", "bid_size", "bid_depth", "bid_band") and not has_bid:
            return None
        if f in ("ask_price", "ask_size", "ask_depth", "ask_band") and not has_ask:
            return None
        if f in ("mid", "wmid", "spread") and not (has_bid and has_ask):
            return None
        if f in ("bid_band", "ask_band"):
            return book.band(f == "bid_band", p["width"])
        if f == "bid_depth":
            return book.depth(True, p["levels"])
        if f == "ask_depth":
            return book.depth(False, p["levels"])
        bid = book.bid_prices[-1] if has_bid else 0.0
        ask = book.ask_prices[0] if has_ask else 0.0
        bsz = book.bids[bid] if has_bid else 0.0
        asz = book.asks[ask] if has_ask else 0.0
        if f == "bid_price":
            return bid
        if f == "bid_size":
            return bsz
        if f == "ask_price":
            return ask
        if f == "ask_size":
            return asz
        if f == "mid":
            return (bid + ask) / 2.0
        if f == "spread":
            return ask - bid
        return (bid * asz + ask * bsz) / (bsz + asz)  # wmid

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        f = self.params["field"]
        if f in ("bid_depth", "ask_depth"):
            return f"{xs[0]}.{f}({self.params['levels']})"
        if f in ("bid_band", "ask_band"):
            return f"{xs[0]}.{f}({p['width']})"
        return f"{xs[0]}.{f}()"

    def cpp_valid(self, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str]) -> str:
        return f"{xs[0]}.{self.params['field']}_ok()"
