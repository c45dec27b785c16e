"""Market-data operators (`hs.lib`): the order book, trades and quotes fed by `hs.streams` events."""
