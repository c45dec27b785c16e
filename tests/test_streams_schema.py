"""The market events schema: conform fills missing columns and gives the trigger column the schema's codes."""

from __future__ import annotations

import pyarrow as pa
import pytest

from harness.errors import EventsError
from harness.streams import schema


def test_conform_maps_trigger_names_to_the_schema_codes() -> None:
    table = pa.table({"t": [1, 2, 3], "trigger": ["trade", "book", "quote"], "extra": [1, 2, 3]})
    out = schema.conform(table)
    trig = out.column("trigger").chunk(0)
    assert trig.indices.to_pylist() == [schema.CODES["trade"], schema.CODES["book"], schema.CODES["quote"]]
    assert trig.dictionary.to_pylist() == ["book", "trade", "quote"]
    assert out.column_names == [*schema.SCHEMA.names, "extra"]
    assert out.column("trade_price").null_count == 3


def test_conform_remaps_a_foreign_dictionary() -> None:
    foreign = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int32()), pa.array(["quote", "book"]))
    out = schema.conform(pa.table({"t": [1, 2, 3], "trigger": foreign}))
    assert out.column("trigger").to_pylist() == ["quote", "book", "quote"]
    assert out.column("trigger").chunk(0).indices.to_pylist() == [2, 0, 2]


def test_conform_names_an_unknown_trigger() -> None:
    with pytest.raises(
        EventsError, match="trigger: row 1 has trigger 'bok', not one of \\['book', 'trade', 'quote'\\]"
    ):
        schema.conform(pa.table({"t": [1, 2], "trigger": ["book", "bok"]}))
