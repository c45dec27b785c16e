"""Market-data operators and signals (`hs.lib`): the order book, trades and quotes fed by `hs.streams` events,
the impulse fair, aggressor bursts, return / combination signals built from `hs.ops`, and signals across markets
(basis, another market's return, lead-lag pressure, another market's prediction)."""

from harness.lib.book import FIELDS, Book, BookField
from harness.lib.bursts import BURST_FIELDS, BurstField, Bursts
from harness.lib.impulse import Impulse
from harness.lib.market import BookView, Market, book, market
from harness.lib.signals import (
    BurstView,
    band_depth,
    basis,
    bbo_returns,
    bursts,
    consume,
    diff_to_ewma,
    discount_by,
    imbalance,
    impulse,
    lead_pressure,
    linear,
    market_return,
    mlp,
    normalize,
    past_return,
    pressure,
    ret_vs_ewma,
    soft_bounded_sum,
    tanh,
    tree_max,
    tree_min,
)

__all__ = [
    "BURST_FIELDS", "FIELDS", "Book", "BookField", "BookView", "BurstField", "BurstView", "Bursts", "Impulse",
    "Market", "band_depth", "basis", "bbo_returns", "book", "bursts", "consume", "diff_to_ewma", "discount_by",
    "imbalance", "impulse", "lead_pressure", "linear", "market", "market_return", "mlp", "normalize", "past_return",
    "pressure", "ret_vs_ewma", "soft_bounded_sum", "tanh", "tree_max", "tree_min",
]  # fmt: skip
