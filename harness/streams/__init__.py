"""Event sources. For now: a seeded synthetic L1 book + trade stream (`l1_events`, `l1_batches`)."""

from harness.streams.l1 import l1_batches, l1_events

__all__ = ["l1_batches", "l1_events"]
