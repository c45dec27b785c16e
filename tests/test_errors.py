"""Every error of the foundation issue (Deliver 5) has a message that names the object and the rule."""

from __future__ import annotations

import pyarrow as pa
import pytest

import harness as hs
from harness import examples, ops


def test_unknown_input_in_a_trigger() -> None:
    c = hs.Circuit("e")
    c.input("a")
    with pytest.raises(hs.CircuitError, match=r"trigger 'ab': unknown input 'zz' \(inputs: a\)"):
        c.trigger("ab", "a", "zz")
    a = c.inputs["a"]
    with pytest.raises(hs.CircuitError, match=r"trigger 'bad': 'neg_\w+' is a neg node, not an input"):
        c.trigger("bad", -a)
    with pytest.raises(hs.CircuitError, match="trigger 'dup': input 'a' is listed twice"):
        c.trigger("dup", a, "a")
    c.trigger("ok", a)
    with pytest.raises(hs.CircuitError, match="trigger 'ok' is already declared"):
        c.trigger("ok", a)


def test_input_that_no_trigger_sets(backend: str) -> None:
    c = hs.Circuit("e")
    a, b = c.input("a"), c.input("b")
    c.trigger("a", a)
    c.output("o", a + b)
    with pytest.raises(hs.CircuitError, match="input 'b' is not set by any trigger"):
        hs.compile(c, backend=backend)


def test_cycle_is_reported_with_its_path() -> None:
    c = hs.Circuit("loop")
    a = c.input("a")
    c.trigger("a", a)
    f = c.forward("f")
    g = ops.tanh(f + a)
    c.bind(f, g * 0.5)
    c.output("g", g)
    with pytest.raises(
        hs.CircuitError, match=r"circuit 'loop' has a cycle: .*f -> add_\w+ -> tanh_\w+ -> mul_\w+ -> f"
    ):
        c.validate()


def test_forward_binding_without_cycle_works_and_unbound_forward_fails(backend: str) -> None:
    c = hs.Circuit("fw")
    a = c.input("a")
    c.trigger("a", a)
    f = c.forward("later")
    c.output("o", f * 2.0)
    with pytest.raises(hs.CircuitError, match="forward 'later' was declared but never bound"):
        c.validate()
    c.bind(f, a + 1.0)
    k = hs.compile(c, backend=backend)
    k.call("a", t=0, a=1.0)
    assert k.value("o") == 4.0
    with pytest.raises(hs.CircuitError, match="forward 'later' is already bound"):
        c.bind(f, a)


def test_output_name_used_twice() -> None:
    c = hs.Circuit("e")
    a = c.input("a")
    c.output("o", a)
    with pytest.raises(hs.CircuitError, match="output name 'o' is already used .* output names must be unique"):
        c.output("o", -a)


def test_operator_parameter_out_of_range() -> None:
    c = hs.Circuit("e")
    a = c.input("a")
    with pytest.raises(hs.CircuitError, match=r"ewma: parameter halflife=-1.0 is out of range: must be > 0"):
        ops.ewma(a, halflife=-1)
    with pytest.raises(hs.CircuitError, match=r"decay_sum: parameter halflife=inf is out of range"):
        ops.decay_sum(a, halflife=float("inf"))
    with pytest.raises(hs.CircuitError, match="ewma: parameter halflife must be a number, got 'fast'"):
        ops.ewma(a, halflife="fast")


@pytest.mark.parametrize("bad", ["1abc", "a-b", "a b", "", "x;system()", "ä", "a.b", "a\n"])
def test_names_must_be_identifiers(bad: str) -> None:
    rule = r"names must match \[A-Za-z_\]\[A-Za-z0-9_\]\*"
    with pytest.raises(hs.CircuitError, match=f"invalid circuit name .*{rule}"):
        hs.Circuit(bad)
    c = hs.Circuit("ok")
    if bad != "a.b":  # inputs, triggers and outputs may be market.name (hs.lib.market(c, market=...)): see below
        with pytest.raises(hs.CircuitError, match=f"invalid input name .*{rule}"):
            c.input(bad)
        with pytest.raises(hs.CircuitError, match=f"invalid trigger name .*{rule}"):
            c.trigger(bad)
    with pytest.raises(hs.CircuitError, match=f"invalid parameter name .*{rule}"):
        c.parameter(bad, init=1.0)
    a = c.input("a")
    if bad != "a.b":
        with pytest.raises(hs.CircuitError, match=f"invalid output name .*{rule}"):
            c.output(bad, a)


@pytest.mark.parametrize("bad", ["a.b.c", ".a", "a.", "a..b", "1a.b", "a.1b"])
def test_market_qualified_names_have_exactly_one_dot_between_two_identifiers(bad: str) -> None:
    c = hs.Circuit("ok")
    assert c.input("perp.mid").name == "perp.mid"
    c.trigger("perp.book", "perp.mid")
    rule = r"names must match \[A-Za-z_\]\[A-Za-z0-9_\]\* or market\.name"
    with pytest.raises(hs.CircuitError, match=f"invalid input name .*{rule}"):
        c.input(bad)
    with pytest.raises(hs.CircuitError, match=f"invalid trigger name .*{rule}"):
        c.trigger(bad)
    assert c.output("perp.mid_out", c.inputs["perp.mid"]) is c.inputs["perp.mid"]  # the market's mid, recorded
    with pytest.raises(hs.CircuitError, match=f"invalid output name .*{rule}"):
        c.output(bad, c.inputs["perp.mid"])


def test_reserved_and_non_string_names() -> None:
    c = hs.Circuit("ok")
    with pytest.raises(hs.CircuitError, match="invalid input name 't': it is reserved"):
        c.input("t")
    with pytest.raises(hs.CircuitError, match="invalid output name 'trigger': it is reserved"):
        c.output("trigger", c.input("a"))
    with pytest.raises(hs.CircuitError, match="input name must be a string, got int"):
        c.input(3)  # type: ignore[arg-type]
    with pytest.raises(hs.CircuitError, match="longer than 128"):
        c.input("x" * 129)
    with pytest.raises(hs.CircuitError, match="name 'a' is already used by a input node"):
        c.parameter("a", init=0.0)


def test_node_that_can_never_run_and_circuit_without_outputs() -> None:
    c = hs.Circuit("e")
    a, b = c.input("a"), c.input("b")
    c.trigger("a", a)
    c.trigger("b", b)
    with pytest.raises(hs.CircuitError, match="circuit 'e' has no outputs"):
        c.validate()
    c.output("o", ops.ewma(hs.observe(a), 1.0))
    with pytest.raises(hs.CircuitError, match=r"node ewma_\w+ \(ewma\(halflife=1.0\)\) can never run"):
        c.validate()


def wide_events(**overrides: object) -> pa.Table:
    data = {
        "t": pa.array([10, 20, 30], pa.int64()),
        "trigger": ["ab", "c", "ab"],
        "a": [1.0, None, 3.0],
        "b": [2.0, None, 2.0],
        "c": [None, 5.0, None],
    }
    data.update(overrides)  # type: ignore[arg-type]
    return pa.table({k: v for k, v in data.items() if v is not None})


def kernel(backend: str) -> hs.Kernel:
    return hs.compile(examples.wide_add(), backend=backend)


def test_events_whose_t_decreases(backend: str) -> None:
    with pytest.raises(hs.EventsError, match=r"column 't' decreases at row 2 \(5 after 20\).*sorted by time"):
        kernel(backend).replay(wide_events(t=pa.array([10, 20, 5], pa.int64())))
    k = kernel(backend)
    k.replay(wide_events())
    with pytest.raises(hs.EventsError, match=r"decreases at row 0 \(29 after 30\)"):
        k.replay(wide_events(t=pa.array([29, 40, 50], pa.int64())))
    batches = wide_events(t=pa.array([10, 20, 15], pa.int64())).to_batches(max_chunksize=2)
    with pytest.raises(hs.EventsError, match=r"decreases at row 2 \(15 after 20\)"):
        kernel(backend).replay(batches)
    k = kernel(backend)
    k.call("ab", t=100, a=1.0, b=1.0)
    with pytest.raises(hs.EventsError, match="event 'c': t=99 is before the previous event's t=100"):
        k.call("c", t=99, c=1.0)


def test_event_naming_an_unknown_trigger(backend: str) -> None:
    with pytest.raises(hs.EventsError, match=r"row 1 names unknown trigger 'zz' \(triggers: ab, c\)"):
        kernel(backend).replay(wide_events(trigger=["ab", "zz", "ab"]))
    with pytest.raises(hs.EventsError, match=r"row 2 names a null trigger"):
        kernel(backend).replay(wide_events(trigger=["ab", "c", None]))
    with pytest.raises(hs.EventsError, match=r"kernel 'wide_add': unknown trigger 'zz' \(triggers: ab, c\)"):
        kernel(backend).call("zz", t=0)


def test_event_missing_a_required_input_column(backend: str) -> None:
    with pytest.raises(hs.EventsError, match="trigger 'c' sets input 'c' but the events have no column 'c'"):
        kernel(backend).replay(wide_events(c=None))
    with pytest.raises(hs.EventsError, match=r"row 2 \(trigger 'ab'\) has a null in column 'b'"):
        kernel(backend).replay(wide_events(b=[2.0, None, None]))
    with pytest.raises(hs.EventsError, match=r"event 'ab' at t=0: missing input 'b' \(it sets: a, b\)"):
        kernel(backend).call("ab", t=0, a=1.0)
    with pytest.raises(hs.EventsError, match="event 'ab': 'c' is not an input of this trigger"):
        kernel(backend).call("ab", t=0, a=1.0, b=2.0, c=3.0)


def test_events_table_column_types_and_missing_time(backend: str) -> None:
    with pytest.raises(hs.EventsError, match="missing column 't'"):
        kernel(backend).replay(wide_events(t=None))
    with pytest.raises(hs.EventsError, match="column 't' must be int64 nanoseconds .* got double"):
        kernel(backend).replay(wide_events(t=[10.0, 20.0, 30.0]))
    with pytest.raises(hs.EventsError, match="input column 'a' must be numeric, got string"):
        kernel(backend).replay(wide_events(a=["1", None, "3"]))
    with pytest.raises(hs.EventsError, match="column 'trigger' must hold strings"):
        kernel(backend).replay(wide_events(trigger=[1, 2, 1]))
    with pytest.raises(hs.EventsError, match="row 1 has a null in column 't'"):
        kernel(backend).replay(wide_events(t=pa.array([10, None, 30], pa.int64())))
    with pytest.raises(hs.EventsError, match="events must be a pyarrow Table"):
        kernel(backend).replay(42)
    with pytest.raises(hs.EventsError, match="t must be an integer time in nanoseconds"):
        kernel(backend).call("c", t=1.5, c=1.0)
    with pytest.raises(hs.EventsError, match="input 'c' must be a number"):
        kernel(backend).call("c", t=1, c=None)


def test_unknown_output_and_backend(backend: str) -> None:
    with pytest.raises(hs.CircuitError, match=r"kernel 'wide_add' has no output 'sum' \(outputs: out\)"):
        kernel(backend).value("sum")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        hs.compile(examples.wide_add(), backend="gpu")
    with pytest.raises(TypeError, match="compile\\(\\) takes a harness Circuit"):
        hs.compile("wide_add")  # type: ignore[arg-type]
