"""The book "impulse" fair price: bid and ask sizes weighted by exp(-|price - ref| / d) around a reference.

    B = sum over bid levels of size * exp((p - ref) / d),   A = sum over ask levels of size * exp(-(p - ref) / d)
    fair = ref + d * ln(B / A) / 2

With weights that fall off exponentially in price, the reference cancels out of `fair`, so it is only an
anchor that keeps the exponentials in range. The sums are kept incrementally: each level update of the
book's message (`BookState.deltas`) adds (new size - old size) * its weight, so a message costs its own level
updates, not the book's depth. Every `recompute_every` messages, and whenever the mid has moved more than
`reanchor * d` from the anchor, both sums are recomputed in full at the current mid (which bounds the
rounding drift of the running sums and keeps the weights near 1). Levels more than 40 * d beyond the anchor
weigh exactly 0: next to the touch they cannot change the sums in double precision, and their exponentials
would be subnormal (slow). The value is invalid while a side is empty, a sum is not positive, or the book is
crossed. The operator reads the levels of its `hs.lib.book` node: any number of impulses share one book.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.circuit.operator import Operator, Param, StepContext, positive
from harness.lib.book import BookState
from harness.ops import numeric as nm


@dataclass
class ImpulseState:
    """The running weighted sums at the anchor, and the bookkeeping of recomputes."""

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
    sums = []
    for side, levels in ((1.0, book.bids), (-1.0, book.asks)):
        s = 0.0
        for price, size in levels.each():
            w = weight(side, price, anchor, distance)
            if w == 0.0:
                break  # every deeper level is beyond the cutoff too
            s = s + size * w
        sums.append(s)
    return sums[0], sums[1]


def fair_of(sb: float, sa: float, anchor: float, distance: float) -> float | None:
    """anchor + d * ln(sb / sa) / 2, or None when a sum is not positive."""
    if not (sb > 0.0 and sa > 0.0):
        return None
    return anchor + distance * nm.log(sb / sa) / 2.0


class Impulse(Operator):
    """The impulse fair price of an L2 book (input: the `hs.lib.book` node, whose levels and updates it reads)."""

    kind, arity, stateful, reads_state = "impulse", 1, True, True
    memory = "snapshot"  # its sums restart at a snapshot message (then a full recompute at the first valid book)
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
        book: BookState = xs[0]
        d = p["distance"]
        if book.snapshot_now:
            st.sb = st.sa = 0.0
            st.anchored = False
        if st.anchored:
            for u in book.deltas:
                w = weight(u.side, u.price, st.anchor, d)
                if u.side > 0:
                    st.sb = st.sb + (u.amount - u.old) * w
                else:
                    st.sa = st.sa + (u.amount - u.old) * w
        if not (book.bids.keys and book.asks.keys):
            return None
        bid, ask = book.bids.best()[0], book.asks.best()[0]
        if bid >= ask:
            return None
        mid = (bid + ask) / 2.0
        st.since += 1
        if not st.anchored or st.since >= p["recompute_every"] or abs(mid - st.anchor) > p["reanchor"] * d:
            st.anchor, st.anchored, st.since = mid, True, 0
            st.sb, st.sa = full_sums(book, mid, d)
            st.recomputes += 1
        return fair_of(st.sb, st.sa, st.anchor, d)

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        return f"{s}.step({xs[0]}, {p['distance']}, {p['recompute_every']}, {p['reanchor']});"
