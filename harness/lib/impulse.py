"""The book "impulse" fair price: bid and ask sizes weighted by exp(-|price - ref| / d) around a reference.

    B = sum over bid levels of size * exp((p - ref) / d),   A = sum over ask levels of size * exp(-(p - ref) / d)
    fair = ref + d * ln(B / A) / 2

With weights that fall off exponentially in price, the reference cancels out of `fair`, so it is only an
anchor that keeps the exponentials in range. The sums are kept incrementally: a level update adds
(new size - old size) * its weight, so a message costs its own level updates, not the book's depth. Every
`recompute_every` messages, and whenever the mid has moved more than `reanchor * d` from the anchor, both
sums are recomputed in full at the current mid (which bounds the rounding drift of the running sums and
keeps the weights near 1). Levels more than 40 * d beyond the anchor weigh exactly 0: next to the touch they
cannot change the sums in double precision, and their exponentials would be subnormal (slow). The value
is invalid while a side is empty, a sum is not positive, or the book is crossed. The operator keeps its own
copy of the levels (its inputs are the book's list inputs), with the same rules and errors as `hs.lib.book`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.circuit.operator import Operator, Param, StepContext, positive
from harness.lib.book import Book, BookState, check_message
from harness.ops import numeric as nm


@dataclass
class ImpulseState:
    """The levels, the running weighted sums at the anchor, and the bookkeeping of recomputes."""

    book: BookState = field(default_factory=BookState)
    sb: float = 0.0  # sum over bids of size * exp((p - anchor) / d)
    sa: float = 0.0  # sum over asks of size * exp(-(p - anchor) / d)
    anchor: float = 0.0
    anchored: bool = False
    since: int = 0  # messages since the last full recompute
    recomputes: int = 0


CUTOFF = 40.0  # levels farther than CUTOFF * distance beyond the anchor weigh 0 (e^-40 ~ 4e-18)


def weight(side: float, price: float, anchor: float, distance: float) -> float:
    """exp((p - anchor) / d) for a bid (side +1), exp(-(p - anchor) / d) for an ask; 0 below e^-CUTOFF, where a
    level no longer moves the sums in double precision (and exp would slow down into subnormal numbers)."""
    x = (price - anchor) / distance
    x = x if side > 0 else -x
    return 0.0 if x < -CUTOFF else nm.exp(x)


def full_sums(book: BookState, anchor: float, distance: float) -> tuple[float, float]:
    """Both weighted sums from scratch, best level first on each side (the order the C++ twin uses)."""
    sb = 0.0
    for p in reversed(book.bid_prices):
        w = weight(1.0, p, anchor, distance)
        if w == 0.0:
            break  # every deeper level is beyond the cutoff too
        sb = sb + book.bids[p] * w
    sa = 0.0
    for p in book.ask_prices:
        w = weight(-1.0, p, anchor, distance)
        if w == 0.0:
            break
        sa = sa + book.asks[p] * w
    return sb, sa


def fair_of(sb: float, sa: float, anchor: float, distance: float) -> float | None:
    """anchor + d * ln(sb / sa) / 2, or None when a sum is not positive."""
    if not (sb > 0.0 and sa > 0.0):
        return None
    return anchor + distance * nm.log(sb / sa) / 2.0


class Impulse(Operator):
    """The impulse fair price of an L2 book (inputs: the book's side, price, amount lists and snapshot flag)."""

    kind, arity, stateful, can_fail = "impulse", 4, True, True
    list_inputs = (0, 1, 2)
    params_spec = {
        "distance": Param(rule="> 0 and finite (price units)", check=positive),
        "recompute_every": Param(rule="an integer >= 1 (messages)", check=lambda v: v >= 1, default=256, integer=True),
        "reanchor": Param(rule="> 0 and finite (multiples of distance)", check=positive, default=30.0),
    }
    cpp_state = "hs::Impulse"
    cpp_includes = ("harness/impulse.hpp",)

    def ref_init(self, p: Mapping[str, Any]) -> tuple[Any, float | None]:
        return ImpulseState(), None

    def ref_step(self, state: Any, ctx: StepContext, p: Mapping[str, Any], xs: Sequence[Any]) -> float | None:
        st: ImpulseState = state
        sides, prices, amounts, snapshot = xs
        check_message(sides, prices, amounts)
        book, d = st.book, p["distance"]
        if snapshot == 1.0:
            book.clear()
            st.sb = st.sa = 0.0
            st.anchored = False
        for side, price, amount in zip(sides, prices, amounts, strict=True):
            sizes = book.bids if side > 0 else book.asks
            old = sizes.get(price, 0.0)
            book.apply(side, price, amount)
            if st.anchored:
                w = weight(side, price, st.anchor, d)
                if side > 0:
                    st.sb = st.sb + (amount - old) * w
                else:
                    st.sa = st.sa + (amount - old) * w
        if not (book.bid_prices and book.ask_prices):
            return None
        bid, ask = book.bid_prices[-1], book.ask_prices[0]
        if bid >= ask:
            return None
        mid = (bid + ask) / 2.0
        st.since += 1
        if not st.anchored or st.since >= p["recompute_every"] or abs(mid - st.anchor) > p["reanchor"] * d:
            st.anchor, st.anchored, st.since = mid, True, 0
            st.sb, st.sa = full_sums(book, mid, d)
            st.recomputes += 1
        return fair_of(st.sb, st.sa, st.anchor, d)

    def error_message(self, code: int, a: float, b: float) -> str:
        return Book.error_message(self, code, a, b)  # type: ignore[arg-type]

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        return (
            f"{s}.step({xs[0]}, {xs[1]}, {xs[2]}, {xs[3]}, {p['distance']}, {p['recompute_every']}, "
            f"{p['reanchor']}, s.err);"
        )
