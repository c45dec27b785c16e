"""Market-data operators and signals (`hs.lib`): the order book, trades and quotes fed by `hs.streams` events,
the impulse fair, aggressor bursts, and return / combination signals built from `hs.ops`."""

from harness.lib.book import FIELDS, Book, BookField
from harness.lib.bursts import BURST_FIELDS, BurstField, Bursts
from harness.lib.impulse import Impulse
from harness.lib.market import BookView, Market, book, market
from harness.lib.signals import (
    BurstView,
    band_depth,
    bbo_returns,
    bursts,
    diff_to_ewma,
    discount_by,
    imbalance,
    impulse,
    linear,
    mlp,
    normalize,
    pressure,
    ret_vs_ewma,
    soft_bounded_sum,
    tanh,
    tree_max,
    tree_min,
)

__all__ = [
    "BURST_FIELDS", "FIELDS", "Book", "BookField", "BookView", "BurstField", "BurstView", "Bursts", "Impulse",
    "Market", "band_depth", "bbo_returns", "book", "bursts", "diff_to_ewma", "discount_by", "imbalance", "impulse",
    "linear", "market", "mlp", "normalize", "pressure", "ret_vs_ewma", "soft_bounded_sum", "tanh", "tree_max",
    "tree_min",
]  # fmt: skip
