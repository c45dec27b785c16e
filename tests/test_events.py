"""The events-table contract: accepted shapes and types (errors are in test_errors.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import harness as hs
from harness import examples


def test_accepts_timestamps_dictionary_triggers_int_inputs_and_extra_columns(backend: str) -> None:
    k = hs.compile(examples.wide_add(), backend=backend)
    table = pa.table(
        {
            "t": pa.array([10, 20, 30], pa.timestamp("us")),
            "trigger": pa.array(["ab", "c", "ab"]).dictionary_encode(),
            "a": pa.array([1, None, 3], pa.int32()),
            "b": [2.0, None, 2.0],
            "c": [None, 5.0, None],
            "note": ["x", "y", "z"],
        }
    )
    r = k.replay(table)
    assert r.column("t").to_pylist() == [10_000, 20_000, 30_000]  # microseconds -> ns
    assert r.column("out").to_pylist() == [None, 8.0, 10.0]


def test_accepts_a_dict_of_columns_and_equal_timestamps(backend: str) -> None:
    k = hs.compile(examples.add_two(), backend=backend)
    r = k.replay({"t": np.array([5, 5, 5], np.int64), "trigger": ["ab"] * 3, "a": [1.0, 2.0, 3.0], "b": [0.0] * 3})
    assert r.column("sum").to_pylist() == [1.0, 2.0, 3.0]


def test_nan_input_is_a_valid_value_not_a_null(backend: str) -> None:
    k = hs.compile(examples.add_two(), backend=backend)
    r = k.replay({"t": pa.array([1], pa.int64()), "trigger": ["ab"], "a": [float("nan")], "b": [1.0]})
    (v,) = r.column("sum").to_pylist()
    assert v is not None and v != v
