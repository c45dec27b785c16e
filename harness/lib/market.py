"""`hs.lib.market(c)`: declare the inputs and triggers of market events (`hs.streams` schema) in one call.

The names match the columns every `hs.streams` source produces (see `harness/streams/schema.py`), so a
circuit built on `market(c)` replays tardis, Binance, Parquet and synthetic events unchanged:

    c = hs.Circuit("bbo"); md = hs.lib.market(c)
    c.output("bid", md.bid_price); c.output("ask", md.ask_price); c.output("flow", md.signed_amount)

Several markets in one circuit: `hs.lib.market(c, market="perp")` declares the inputs and triggers of the
stream tagged "perp" (`hs.streams.tardis(..., market="perp")`): inputs `perp.book_side` ..., triggers
`perp.book`, `perp.trade` (`perp.quote`). Each call builds its own book; signals take their market from the
fields they are given, and `hs.observe` reads one market's value on another market's events.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.circuit.builder import Circuit
from harness.circuit.node import Node
from harness.errors import CircuitError
from harness.lib.book import Book, BookField
from harness.names import IDENTIFIER, qualify


@dataclass(frozen=True)
class BookView:
    """An L2 book node (its value is the mid) and accessors for the numbers read from it."""

    node: Node

    def field(self, name: str, levels: int = 1, width: float = 0.0) -> Node:
        """The book field `name` (see `harness.lib.book.FIELDS`); `levels` for the depth fields, `width` (price
        units from the best price) for the band fields."""
        if name in ("bid_depth", "ask_depth"):
            return BookField(field=name, levels=levels)(self.node)
        if name in ("bid_band", "ask_band"):
            return BookField(field=name, width=width)(self.node)
        return BookField(field=name)(self.node)

    @property
    def bid_price(self) -> Node:
        """Best bid price; invalid while the bid side is empty or the book is crossed."""
        return self.field("bid_price")

    @property
    def bid_size(self) -> Node:
        """Size at the best bid."""
        return self.field("bid_size")

    @property
    def ask_price(self) -> Node:
        """Best ask price; invalid while the ask side is empty or the book is crossed."""
        return self.field("ask_price")

    @property
    def ask_size(self) -> Node:
        """Size at the best ask."""
        return self.field("ask_size")

    @property
    def mid(self) -> Node:
        """(bid + ask) / 2."""
        return self.field("mid")

    @property
    def wmid(self) -> Node:
        """Size-weighted mid (bid*ask_size + ask*bid_size) / (bid_size + ask_size): leans toward the thin side."""
        return self.field("wmid")

    @property
    def spread(self) -> Node:
        """ask - bid."""
        return self.field("spread")

    @property
    def crossed(self) -> Node:
        """How many messages so far left the book crossed (always valid; only grows with crossed='invalid')."""
        return self.field("crossed")

    def bid_depth(self, levels: int) -> Node:
        """Sum of the sizes of the best `levels` bid levels (fewer if the side has fewer)."""
        return self.field("bid_depth", levels)

    def ask_depth(self, levels: int) -> Node:
        """Sum of the sizes of the best `levels` ask levels (fewer if the side has fewer)."""
        return self.field("ask_depth", levels)


def book(
    side: Node, price: Node, amount: Node, snapshot: Node, *, crossed: str = "invalid", tick: float = 0.0
) -> BookView:
    """An L2 book fed by list inputs (side, price, amount per level update) and a snapshot flag per message.

    `crossed="invalid"` makes prices invalid while the book is crossed and counts such messages;
    `crossed="error"` stops the replay with the row and the two prices. `tick`: the price grid (a price off
    it is an error); 0 infers the coarsest decimal grid that holds the prices (see `harness.lib.book`).
    """
    return BookView(Book(crossed=crossed, tick=tick)(side, price, amount, snapshot))


@dataclass(frozen=True)
class Market(BookView):
    """The market inputs of one circuit: the book (fields as on `BookView`) and the trade inputs."""

    trade_price: Node
    trade_amount: Node
    trade_side: Node
    quote_bid_price: Node | None = None
    quote_bid_amount: Node | None = None
    quote_ask_price: Node | None = None
    quote_ask_amount: Node | None = None
    trade_exchange_time: Node | None = None  # t_exchange of trades (ns, as float64), with exchange_time=True
    market: str | None = None  # the market's name (None: a stream without one)

    @property
    def book(self) -> BookView:
        """The book alone (same node as `self`)."""
        return BookView(self.node)

    @property
    def signed_amount(self) -> Node:
        """trade_amount * trade_side: positive for buyer-initiated trades, negative for seller-initiated."""
        return self.trade_amount * self.trade_side


def market(
    c: Circuit,
    *,
    quotes: bool = False,
    crossed: str = "invalid",
    exchange_time: bool = False,
    tick: float = 0.0,
    market: str | None = None,
) -> Market:
    """Declare the market inputs and the triggers "book" and "trade" (and "quote" with `quotes=True`) on `c`.

    Book rows set `book_side`, `book_price`, `book_amount` (lists, one entry per level update of one
    exchange message) and `book_snapshot`; trade rows set `trade_price`, `trade_amount`, `trade_side`
    (and `t_exchange`, the exchange's clock in ns, with `exchange_time=True`: burst detection uses it).
    `tick` is the book's price grid (0: inferred from the prices). With `market="perp"` every name is
    qualified (`perp.book_side`, trigger `perp.book`), the names of a stream read with `market="perp"`.
    """
    if market is not None and (not isinstance(market, str) or not IDENTIFIER.fullmatch(market)):
        raise CircuitError(f"hs.lib.market: market name {market!r} must be a plain identifier [A-Za-z_][A-Za-z0-9_]*")
    declared = [t for t in ("book", "trade", "quote") if qualify(t, market) in c.triggers]
    if declared:
        which = "without a market name" if market is None else f"of market {market!r}"
        raise CircuitError(
            f"hs.lib.market: circuit {c.name!r} already has the triggers {declared} {which}; declare each market "
            "once (give each market of several its own name: hs.lib.market(c, market='perp'))"
        )

    def q(name: str) -> str:
        return qualify(name, market)

    side = c.input(q("book_side"), list=True)
    price = c.input(q("book_price"), list=True)
    amount = c.input(q("book_amount"), list=True)
    snapshot = c.input(q("book_snapshot"))
    c.trigger(q("book"), side, price, amount, snapshot)
    tp, ta, ts = c.input(q("trade_price")), c.input(q("trade_amount")), c.input(q("trade_side"))
    te = c.input(q("t_exchange")) if exchange_time else None
    c.trigger(q("trade"), tp, ta, ts, *([te] if te is not None else []))
    quote: dict[str, Node] = {}
    if quotes:
        for name in ("quote_bid_price", "quote_bid_amount", "quote_ask_price", "quote_ask_amount"):
            quote[name] = c.input(q(name))
        c.trigger(q("quote"), *quote.values())
    view = book(side, price, amount, snapshot, crossed=crossed, tick=tick)
    return Market(view.node, tp, ta, ts, **quote, trade_exchange_time=te, market=market)
