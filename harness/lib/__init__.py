"""Market-data operators (`hs.lib`): the order book, trades and quotes fed by `hs.streams` events."""

from harness.lib.book import FIELDS, Book, BookField
from harness.lib.market import BookView, Market, book, market

__all__ = ["FIELDS", "Book", "BookField", "BookView", "Market", "book", "market"]
