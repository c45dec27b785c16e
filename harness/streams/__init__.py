"""Event sources in the market events schema (`harness/streams/schema.py`), merge and digests.

Sources: `tardis` (tardis.dev CSV; per-file readers in `tardis_csv`), `binance` (data.binance.vision dumps;
per-file readers in `binance_dump`), `read_parquet` (the harness's own typed cache) and `synthetic` (a seeded
L2 book + trades generator, the default data source; `synthetic_markets` several of them with a lead-lag).
`merge` orders several sources (or markets) by time with a stable tie-break; `digest` is a content hash that
does not depend on chunking.
"""

from harness.streams import binance_dump, tardis_csv
from harness.streams.binance_dump import binance
from harness.streams.cache import read_parquet, write_parquet
from harness.streams.content_digest import digest
from harness.streams.csvread import ReadStats, stats
from harness.streams.l1 import l1_batches, l1_events
from harness.streams.merge_by_time import merge
from harness.streams.synthetic import SyntheticParams, synthetic, synthetic_batches
from harness.streams.synthetic_markets import synthetic_markets, synthetic_markets_batches
from harness.streams.tardis_csv import tardis

__all__ = [
    "ReadStats",
    "SyntheticParams",
    "binance",
    "binance_dump",
    "digest",
    "l1_batches",
    "l1_events",
    "merge",
    "read_parquet",
    "stats",
    "synthetic",
    "synthetic_batches",
    "synthetic_markets",
    "synthetic_markets_batches",
    "tardis",
    "tardis_csv",
    "write_parquet",
]
