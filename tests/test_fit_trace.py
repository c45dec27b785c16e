"""hs.fit.trace: which nodes are fitted, which are recorded, and in which domain each value lives."""

from __future__ import annotations

import pytest

import harness as hs
from harness.errors import CircuitError
from harness.fit.trace import ROWS


def two_inputs() -> tuple[hs.Circuit, hs.Node, hs.Node]:
    c = hs.Circuit("two")
    x, y = c.input("x"), c.input("y")
    c.trigger("a", x)
    c.trigger("b", y)
    return c, x, y


def kinds(tr: hs.fit.Trace) -> dict[str, str]:
    return {n.node.name: n.kind for n in tr.nodes}


def test_linear_circuit_traces_to_inputs_and_parameters() -> None:
    c, x, y = two_inputs()
    w1, w2 = c.parameter("w1", init=0.1), c.parameter("w2", init=0.2)
    c.parameter("unused", init=1.0)
    c.output("pred", w1 * x + w2 * y)
    tr = hs.fit.trace(c, "pred")
    assert tr.params == ["w1", "w2"]
    assert tr.frozen == ["unused"]
    assert sorted(n.node.name for n in tr.nodes if n.kind == "leaf") == ["x", "y"]
    assert len(tr.domains) == 1 and all(n.domain in (ROWS, -1) for n in tr.nodes)
    assert sorted(tr.leaf_outputs) == ["fit_leaf_x", "fit_leaf_y"]
    assert "w1" in tr.describe() and "domain rows" in tr.describe()


def test_subtrees_without_parameters_are_recorded_as_leaves() -> None:
    c, x, y = two_inputs()
    w = c.parameter("w", init=1.0)
    signal = hs.ops.tanh(x * y) - hs.ops.ewma(x, halflife=1.0)  # no parameter below: one leaf
    c.output("signal", signal)
    c.output("pred", w * signal)
    tr = hs.fit.trace(c, "pred")
    leaves = [n for n in tr.nodes if n.kind == "leaf"]
    assert [n.node for n in leaves] == [signal]
    assert tr.leaf_outputs == {"signal": signal}  # already an output: reused, not added
    assert tr.recording_circuit() is c


def test_learnable_half_lives_make_decays_in_step_domains() -> None:
    c, x, y = two_inputs()
    hls = [c.parameter(f"hl{i}", init=1.0 + i, lower=0.01) for i in range(3)]
    ex = [hs.ops.ewma(x, halflife=h) for h in hls[:2]]
    ey = hs.ops.decay_sum(y, halflife=hls[2])
    c.output("pred", ex[0] + ex[1] + ey)
    tr = hs.fit.trace(c, "pred")
    domain = {n.node: n.domain for n in tr.nodes if n.kind == "decay"}
    assert len(domain) == 3
    # the two EWMAs of x share a domain (same events, same validity), the decayed sum of y has its own
    assert domain[ex[0]] == domain[ex[1]] != domain[ey]
    assert tr.domains[domain[ex[0]]].runs == ("a",) and tr.domains[domain[ey]].runs == ("b",)
    assert sorted(n.kind for n in tr.domain_nodes(ROWS)) == ["import"] * 3 + ["op"] * 2
    assert tr.positive_params == {"hl0", "hl1", "hl2"}
    assert tr.domain_order()[-1] == ROWS


def test_parameter_dependent_input_of_a_decay_is_evaluated_at_its_steps() -> None:
    c, x, y = two_inputs()
    w = c.parameter("w", init=0.5)
    inner = hs.ops.ewma(w * x, halflife=2.0)  # constant half-life, learnable input
    c.output("pred", inner * y)
    tr = hs.fit.trace(c, "pred")
    decay = next(n for n in tr.nodes if n.kind == "decay")
    mul = tr.nodes[decay.inputs[0]]
    assert mul.kind == "op" and mul.domain == decay.domain != ROWS
    assert tr.nodes[dict(decay.params)["halflife"]].kind == "const"


def test_an_observed_input_makes_its_reader_a_producer() -> None:
    c, x, y = two_inputs()
    hl = c.parameter("hl", init=1.0, lower=0.01)
    reader = y * hs.observe(hs.ops.ewma(x, halflife=hl))  # runs on b only, keeps its value on a
    c.output("pred", reader)
    tr = hs.fit.trace(c, "pred")
    producer = next(n for n in tr.nodes if n.node is reader and n.kind == "op")
    assert producer.domain != ROWS and tr.domains[producer.domain].runs == ("b",)
    assert tr.nodes[tr.target].kind == "import"


def test_non_differentiable_node_above_a_parameter_is_an_error_unless_stopped() -> None:
    c, x, y = two_inputs()
    w = c.parameter("w", init=0.5)
    gated = hs.ops.select(x > 0, w * x, y)
    c.output("pred", gated + w)
    with pytest.raises(CircuitError, match=r"select_\w+ \(select\) depends on learnable parameters \['w'\].*stop"):
        hs.fit.trace(c, "pred")
    tr = hs.fit.trace(c, "pred", stop=[gated])
    assert kinds(tr)[gated.name] == "leaf"
    assert tr.params == ["w"]


def test_stop_by_output_name_and_bad_arguments() -> None:
    c, x, _ = two_inputs()
    w = c.parameter("w", init=0.5)
    c.output("inner", w * x)
    c.output("pred", hs.ops.exp(c.outputs["inner"]))
    tr = hs.fit.trace(c, "pred", stop=["inner"])
    assert tr.params == [] and tr.frozen == ["w"]
    with pytest.raises(CircuitError, match="has no output 'nope'"):
        hs.fit.trace(c, "nope")
    with pytest.raises(CircuitError, match="stop 'zz' is not an output"):
        hs.fit.trace(c, "pred", stop=["zz"])
    with pytest.raises(TypeError, match="Circuit"):
        hs.fit.trace("pred", "pred")  # type: ignore[arg-type]


def test_recording_circuit_adds_outputs_and_leaves_the_circuit_alone() -> None:
    c, x, y = two_inputs()
    w = c.parameter("w", init=0.5)
    c.output("pred", w * x + y)
    before = c.structure_hash()
    tr = hs.fit.trace(c, "pred")
    rec = tr.recording_circuit()
    assert list(c.outputs) == ["pred"] and c.structure_hash() == before
    assert list(rec.outputs) == ["pred", *tr.leaf_outputs] and rec.structure_hash() != before
    k = hs.compile(rec, backend="python")
    k.call("a", t=1, x=2.0)
    k.call("b", t=2, y=3.0)
    assert k.value("fit_leaf_x") == 2.0 and k.value("pred") == 4.0


def test_static_and_forward_nodes() -> None:
    c, x, _ = two_inputs()
    w = c.parameter("w", init=0.5)
    fwd = c.forward("scaled")
    c.bind(fwd, hs.ops.exp(w) * x)
    c.output("pred", fwd)
    tr = hs.fit.trace(c, "pred")
    exp_node = next(n for n in tr.nodes if n.kind == "op" and n.op.kind == "exp")
    assert exp_node.scalar
    assert not tr.nodes[tr.target].scalar
