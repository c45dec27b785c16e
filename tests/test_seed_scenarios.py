"""The seed scenarios of the issue, on the reference interpreter (backend fixture grows with issue 3)."""

from __future__ import annotations

import pyarrow as pa

import harness as hs
from harness import examples


def test_add_two_numbers(backend: str) -> None:
    k = hs.compile(examples.add_two(), backend=backend)
    k.call("ab", t=10, a=1.0, b=2.0)
    assert k.value("sum") == 3.0


def test_wide_trigger_add_values(backend: str) -> None:
    k = hs.compile(examples.wide_add(), backend=backend)
    k.call("ab", t=10, a=1.0, b=2.0)
    assert k.value("out") is None  # c never set
    k.call("c", t=20, c=5.0)
    assert k.value("out") == 8.0
    k.call("ab", t=30, a=3.0, b=2.0)
    assert k.value("out") == 10.0  # c retained


def test_wide_trigger_add_call_plan_of_c_is_only_out() -> None:
    c = examples.wide_add()
    plan = c.plan()
    out = c.outputs["out"]
    assert plan.triggers["c"].steps == (out,)
    ab = out.inputs[0] if out.inputs[0].kind == "add" else out.inputs[1]
    assert ab.kind == "add" and {n.name for n in ab.inputs} == {"a", "b"}
    assert plan.triggers["ab"].steps == (ab, out)
    assert plan.is_stored(ab)  # read by trigger c, where it does not run


def test_wide_trigger_add_replay_matches_calls(backend: str) -> None:
    events = pa.table(
        {
            "t": pa.array([10, 20, 30], pa.int64()),
            "trigger": ["ab", "c", "ab"],
            "a": [1.0, None, 3.0],
            "b": [2.0, None, 2.0],
            "c": [None, 5.0, None],
        }
    )
    result = hs.compile(examples.wide_add(), backend=backend).replay(events)
    assert result.column_names == ["t", "out"]
    assert result.column("t").to_pylist() == [10, 20, 30]
    assert result.column("out").to_pylist() == [None, 8.0, 10.0]
