"""The L2 order book operator and its projections: one numeric spec each (Python reference + C++ form).

`Book` applies one exchange message per event: lists of (side, price, amount) level updates, where amount
is the new absolute size at that price and 0 deletes the level; `snapshot` 1 clears the book first (the
first message of a snapshot block). Its value is the mid. `BookField` nodes read the book's state: best
prices and sizes, mid, size-weighted mid, spread, depth sums over the best N levels, and the count of
crossed messages. Prices are invalid while a side is empty. A crossed book (best bid >= best ask after a
message) is an error (`crossed="error"`) or makes the prices invalid and counts (`crossed="invalid"`).

Levels live on a price grid: a price p is the level with grid index k = round(p * scale), scale = 1 / tick,
and p must lie on the grid (|p * scale - k| within rounding, see `grid_index`). With `tick` given, a price off
the grid is an error; with `tick=0` (the default) the grid is inferred: the coarsest decimal grid 10^-d (d =
0..12) that holds every price seen so far, made finer when a price needs it. A level keeps the price of its
last update. Other signals (`hs.lib.impulse`) read the book's levels and the level updates of the current
message (`BookState.deltas`) instead of keeping copies. The C++ twin (`cpp/harness/book.hpp`) keeps the levels
near the touch in a flat, tick-indexed ladder; both give the same numbers bit for bit.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.circuit.operator import Operator, OperatorError, Param, StepContext

ERR_CROSSED, ERR_NAN_PRICE, ERR_BAD_AMOUNT, ERR_SIDE, ERR_LENGTHS, ERR_PRICE_RANGE, ERR_OFF_GRID = 1, 2, 3, 4, 5, 6, 7

# scales (1 / tick) of the decimal grids tried when the tick is inferred: 10^d for d = 0..12 (exact doubles)
SCALES = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12)
GRID_EPS = 2.220446049250313e-16  # double precision epsilon
GRID_LIMIT = 17592186044416.0  # 2^44: beyond it the rounding tolerance nears a tenth of a tick


def grid_index(price: float, scale: float) -> int | None:
    """round(price * scale) when `price` lies on the grid of tick 1 / scale, else None. On the grid: price * scale
    is within 8 ulps of an integer (a decimal price parsed to the nearest double is within ~2); round half to
    even, as in C++."""
    q = price * scale
    if not abs(q) < GRID_LIMIT:
        return None
    k = round(q)
    if not abs(q - k) <= 8.0 * GRID_EPS * max(1.0, abs(q)):
        return None
    return k


@dataclass
class BookSide:
    """The levels of one side keyed by grid index; bid keys are negated so that the best key is the smallest."""

    levels: dict[int, list[float]] = field(default_factory=dict)  # key -> [price, size]
    keys: list[int] = field(default_factory=list)  # ascending: best first

    def set(self, key: int, price: float, amount: float) -> float:
        """Set (amount > 0) or delete (amount 0) the level at `key`; return its previous size (0: none)."""
        level = self.levels.get(key)
        old = level[1] if level is not None else 0.0
        if amount == 0.0:
            if level is not None:
                del self.levels[key]
                self.keys.pop(bisect.bisect_left(self.keys, key))
        elif level is not None:
            level[0], level[1] = price, amount
        else:
            self.levels[key] = [price, amount]
            bisect.insort(self.keys, key)
        return old

    def clear(self) -> None:
        self.levels.clear()
        self.keys.clear()

    def best(self) -> list[float]:
        """[price, size] of the best level (the side must not be empty)."""
        return self.levels[self.keys[0]]

    def each(self) -> Iterator[list[float]]:
        """[price, size] of every level, best first."""
        for key in self.keys:
            yield self.levels[key]

    def rekey(self, scale: float, sign: int) -> None:
        """Re-index every level on a finer grid (keys = sign * round(price * scale))."""
        levels = {sign * round(level[0] * scale): level for level in self.levels.values()}
        self.levels = levels
        self.keys = sorted(levels)


@dataclass
class LevelDelta:
    """One applied level update of the current message: side, price, size before, size after."""

    side: float
    price: float
    old: float
    amount: float


@dataclass
class BookState:
    """Both sides of the book, the price grid, and what the current message changed."""

    bids: BookSide = field(default_factory=BookSide)
    asks: BookSide = field(default_factory=BookSide)
    scale: float = 1.0  # 1 / tick of the grid in use (given, or inferred: SCALES[grid])
    grid: int = 0
    crossed: float = 0.0  # messages after which the book was crossed
    crossed_now: bool = False
    snapshot_now: bool = False  # the current message cleared the book first
    deltas: list[LevelDelta] = field(default_factory=list)  # the current message's level updates, in order

    def key(self, side: float, price: float, tick: float) -> int:
        """The level key of `price` on `side` (+1 bid: negated); a given `tick` (> 0) is fixed, else an inferred
        grid is refined when needed."""
        k = grid_index(price, self.scale)
        if k is None:
            if tick > 0.0:
                raise OperatorError(ERR_OFF_GRID, price, tick)
            self.refine(price)
            k = grid_index(price, self.scale)
            assert k is not None
        return -k if side > 0 else k

    def refine(self, price: float) -> None:
        """Move an inferred grid to the coarsest finer decimal grid that holds `price` (error if none)."""
        for d in range(self.grid + 1, len(SCALES)):
            if grid_index(price, SCALES[d]) is not None:
                self.grid, self.scale = d, SCALES[d]
                self.bids.rekey(self.scale, -1)
                self.asks.rekey(self.scale, 1)
                return
        raise OperatorError(ERR_OFF_GRID, price, 0.0)

    def band(self, bid: bool, width: float) -> float:
        """Sum of the sizes of one side's levels within `width` (price units) of its best price, best first."""
        side = self.bids if bid else self.asks
        best = side.best()[0]
        total = 0.0
        for price, size in side.each():
            if abs(price - best) > width:
                break
            total += size
        return total

    def depth(self, bid: bool, levels: int) -> float:
        """Sum of the sizes of the best `levels` levels of one side, best first."""
        total = 0.0
        for i, (_, size) in enumerate((self.bids if bid else self.asks).each()):
            if i == levels:
                break
            total += size
        return total


class Book(Operator):
    """L2 order book from incremental messages (inputs: side, price, amount lists; snapshot flag)."""

    kind, arity, stateful, can_fail = "book", 4, True, True
    memory = "snapshot"  # every level since the last snapshot message (and the count of crossed messages)
    list_inputs = (0, 1, 2)
    params_spec = {
        "crossed": Param(rule="'invalid' or 'error'", choices=("invalid", "error"), default="invalid"),
        "tick": Param(rule=">= 0 and finite (price units; 0 infers a decimal grid)", check=lambda v: 0 <= v < math.inf,
                      default=0.0),
    }  # fmt: skip
    cpp_state = "hs::Book"
    cpp_includes = ("harness/book.hpp",)

    def ref_init(self, p: Mapping[str, Any]) -> tuple[Any, float | None]:
        return BookState(scale=1.0 / p["tick"] if p["tick"] > 0.0 else SCALES[0]), None

    def ref_step(self, state: Any, ctx: StepContext, p: Mapping[str, Any], xs: Sequence[Any]) -> float | None:
        sides, prices, amounts, snapshot = xs
        book: BookState = state
        if not len(sides) == len(prices) == len(amounts):
            raise OperatorError(
                ERR_LENGTHS, float(len(prices)), float(len(sides) if len(sides) != len(prices) else len(amounts))
            )
        book.deltas = []
        book.snapshot_now = snapshot == 1.0
        if book.snapshot_now:
            book.bids.clear()
            book.asks.clear()
        for side, price, amount in zip(sides, prices, amounts, strict=True):
            _check_level(side, price, amount)
            key = book.key(side, price, p["tick"])
            old = (book.bids if side > 0 else book.asks).set(key, price, amount)
            book.deltas.append(LevelDelta(side, price, old, amount))
        book.crossed_now = False
        if book.bids.keys and book.asks.keys:
            bid, ask = book.bids.best()[0], book.asks.best()[0]
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
        if code == ERR_PRICE_RANGE:
            return f"a level update has price {a!r}; prices must be finite"
        if code == ERR_OFF_GRID and b > 0.0:
            return f"price {a!r} is off the price grid of tick {b!r} (hs.lib.market(c, tick=...))"
        if code == ERR_OFF_GRID:
            return (
                f"price {a!r} lies on no decimal price grid of at most 12 decimals; "
                "give the tick: hs.lib.market(c, tick=...)"
            )
        return super().error_message(code, a, b)

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        error_mode = "true" if self.params["crossed"] == "error" else "false"
        return f"{s}.step({xs[0]}, {xs[1]}, {xs[2]}, {xs[3]}, {p['tick']}, {error_mode}, s.err);"


def _check_level(side: float, price: float, amount: float) -> None:
    """Raise OperatorError for the first rule a level update breaks (the order of the C++ twin): a nan price,
    a negative or nan amount, a side other than +1/-1, an infinite price."""
    if math.isnan(price):
        raise OperatorError(ERR_NAN_PRICE, price, amount)
    if not amount >= 0.0:  # negative or nan
        raise OperatorError(ERR_BAD_AMOUNT, price, amount)
    if side != 1.0 and side != -1.0:
        raise OperatorError(ERR_SIDE, side, price)
    if math.isinf(price):
        raise OperatorError(ERR_PRICE_RANGE, price, amount)


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

    def memory_kind(self) -> str:
        """The `crossed` field counts crossed messages since the start; the others read the current book."""
        return "unbounded" if self.params["field"] == "crossed" else "none"

    def ref(self, p: Mapping[str, Any], xs: Sequence[Any]) -> float | None:
        book: BookState = xs[0]
        f = p["field"]
        if f == "crossed":
            return book.crossed
        if book.crossed_now:
            return None
        has_bid, has_ask = bool(book.bids.keys), bool(book.asks.keys)
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
        bid, bsz = book.bids.best() if has_bid else (0.0, 0.0)
        ask, asz = book.asks.best() if has_ask else (0.0, 0.0)
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
