"""The events-table contract, re-exported: it lives in `harness.events`, below the backends that check it."""

from harness.events import (
    ERR_COLUMN,
    ERR_MEMORY,
    ERR_NULL,
    ERR_OPERATOR,
    ERR_TIME,
    ERR_TRIGGER,
    EventBatch,
    EventSchema,
    check_rows,
    iter_batches,
    prepare_batch,
    row_error,
)

__all__ = [
    "ERR_COLUMN",
    "ERR_MEMORY",
    "ERR_NULL",
    "ERR_OPERATOR",
    "ERR_TIME",
    "ERR_TRIGGER",
    "EventBatch",
    "EventSchema",
    "check_rows",
    "iter_batches",
    "prepare_batch",
    "row_error",
]
