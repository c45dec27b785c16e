"""`hs.data`: the market-data catalog (`harness.streams.catalog`): import files once, read any range in batches.

hs.data.import_files("catalog", ["binance-futures_trades_2024-08-08_BTCUSDT.csv.gz"])
for batch in hs.data.read("catalog", "binance_futures_BTCUSDT", "2024-08-08", "2024-08-09"): ...
"""

from harness.streams.catalog import (
    Imported,
    Partition,
    detect,
    import_batches,
    import_files,
    import_table,
    markets,
    partitions,
    read,
    read_table,
)

__all__ = [
    "Imported",
    "Partition",
    "detect",
    "import_batches",
    "import_files",
    "import_table",
    "markets",
    "partitions",
    "read",
    "read_table",
]
