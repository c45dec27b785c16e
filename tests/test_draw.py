"""Drawings: DOT text of the whole circuit and of each trigger's call plan; SVG when Graphviz is present."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import harness as hs
from harness import examples, ops


def test_circuit_dot_lists_every_node_edge_output_and_trigger() -> None:
    c = examples.wide_add()
    dot = c.draw()
    plan = c.plan()
    assert dot.startswith('digraph "wide_add" {') and dot.rstrip().endswith("}")
    for node in plan.order:
        assert f'"{node.name}" [' in dot
        for m in node.inputs:
            assert f'"{m.name}" -> "{node.name}"' in dot
    assert '"out__out" [shape=note' in dot
    assert '"trig__ab" -> "a"' in dot and '"trig__c" -> "c"' in dot


def test_call_plan_dot_numbers_running_nodes_and_greys_the_rest() -> None:
    c = examples.wide_add()
    dot = c.draw(trigger="c")
    out = c.outputs["out"]
    ab = next(n for n in out.inputs if n.kind == "add")
    assert "call plan of trigger c" in dot
    assert f'label="#1 {out.name}' in dot
    line = next(ln for ln in dot.splitlines() if ln.strip().startswith(f'"{ab.name}" ['))
    assert 'color="grey60"' in line  # stored, read, not recomputed


def test_observed_and_parameter_edges_have_their_own_style() -> None:
    c = hs.Circuit("styles")
    x, y = c.input("x"), c.input("y")
    c.trigger("x", x)
    c.trigger("y", y)
    hl = c.parameter("hl", init=1.0, lower=0.1)
    c.output("o", ops.ewma(x, halflife=hl) * hs.observe(y))
    dot = c.draw()
    assert '"y" -> "mul_' in dot and 'style=dashed, label="observe"' in dot
    assert '"hl" -> "ewma_' in dot and 'style=dotted, label="halflife"' in dot
    assert c.draw(trigger=c.plan().triggers["x"].name) != dot


def test_drawing_names_that_are_dot_keywords() -> None:
    c = hs.Circuit("graph")
    node = c.input("node")
    c.trigger("edge", node)
    c.output("subgraph", node * 2.0)
    assert '"node" -> "mul_' in c.draw()


def test_unknown_trigger_and_bad_suffix(tmp_path: Path) -> None:
    c = examples.wide_add()
    with pytest.raises(hs.CircuitError, match=r"has no trigger or timer 'zz' \(ab, c\)"):
        c.draw(trigger="zz")
    with pytest.raises(hs.CircuitError, match="use a .dot, .gv, .svg, .png or .pdf file name"):
        c.draw(tmp_path / "x.txt")


def test_dot_file_written(tmp_path: Path) -> None:
    c = examples.wide_add()
    path = tmp_path / "c.dot"
    text = c.draw(path)
    assert path.read_text() == text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_svg_rendered_for_circuit_and_each_trigger(tmp_path: Path) -> None:
    c = examples.l1_pressure()
    for trig in [None, *c.triggers]:
        path = tmp_path / f"{trig or 'all'}.svg"
        c.draw(path, trigger=trig)
        root = ET.parse(path).getroot()
        assert root.tag.endswith("svg")
        texts = "".join(el.text or "" for el in root.iter() if el.tag.endswith("text"))
        assert "out" in texts
