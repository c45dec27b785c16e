"""Graphviz drawings of a circuit and of one trigger's call plan (DOT text; SVG when `dot` is installed).

Shapes: inputs are boxes, parameters diamonds, constants plain text, stateful operators double ellipses,
outputs notes. Solid edges trigger, dashed edges are observed reads, dotted edges feed operator
parameters. In a call-plan drawing the nodes that run are filled and numbered in execution order; stored
nodes have a bold border, ephemeral ones a dashed border, and nodes that do not run are grey.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import CircuitError

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.circuit.node import Node

SHAPES = {"input": "box", "param": "diamond", "const": "plaintext", "event": "cds", "forward": "invhouse"}


def to_dot(circuit: Circuit, *, trigger: str | None = None) -> str:
    """DOT source for the whole circuit, or for the call plan of `trigger` (a timer's node name also works)."""
    plan = circuit.plan()
    running: dict[Node, int] = {}
    title = f"circuit {circuit.name}"
    if trigger is not None:
        timers = {tp.name: tp for tp in plan.timers}
        if trigger in plan.triggers:
            tplan = plan.triggers[trigger]
            seq = [*tplan.inputs, *tplan.steps]
            title += f": call plan of trigger {trigger}"
        elif trigger in timers:
            seq = [timers[trigger].node, *timers[trigger].steps]
            title += f": call plan of timer {trigger}"
        else:
            known = ", ".join([*plan.triggers, *timers]) or "none"
            raise CircuitError(f"draw: circuit {circuit.name!r} has no trigger or timer {trigger!r} ({known})")
        running = {n: i for i, n in enumerate(seq)}

    lines = [
        f'digraph "{circuit.name}" {{',
        "  rankdir=LR;",
        f'  label="{title}"; labelloc=t; fontname="Helvetica";',
        '  node [fontname="Helvetica", fontsize=10]; edge [arrowsize=0.6, fontname="Helvetica", fontsize=9];',
    ]
    for node in plan.order:
        lines.append(f'  "{node.name}" [{_node_attrs(node, plan.is_stored(node), running, trigger is not None)}];')
    for node in plan.order:
        for m, obs in zip(node.inputs, node.observed, strict=True):
            style = ' [style=dashed, label="observe"]' if obs else ""
            lines.append(f'  "{m.name}" -> "{node.name}"{style};')
        for pname, pnode in node.param_nodes.items():
            lines.append(f'  "{pnode.name}" -> "{node.name}" [style=dotted, label="{pname}"];')
    for oname, node in plan.outputs.items():
        lines.append(f'  "out__{oname}" [shape=note, label="{oname}", style=filled, fillcolor="#fff2cc"];')
        lines.append(f'  "{node.name}" -> "out__{oname}";')
    if trigger is None:
        for tname, tplan in plan.triggers.items():
            lines.append(f'  "trig__{tname}" [shape=cds, label="trigger {tname}", style=filled, fillcolor="#dae8fc"];')
            for inp in tplan.inputs:
                lines.append(f'  "trig__{tname}" -> "{inp.name}" [color="#6c8ebf"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_attrs(node: Node, stored: bool, running: dict[Node, int], plan_view: bool) -> str:
    kind = node.kind
    if kind == "const":
        label = repr(node.op.params["value"])
    elif kind in ("input", "param", "event", "forward"):
        label = f"{node.name}\\n{kind}"
    else:
        label = f"{node.name}\\n{node.op.describe()}"
    attrs = {"shape": SHAPES.get(kind, "ellipse")}
    if node.op.stateful:
        attrs["peripheries"] = "2"
    if plan_view:
        if node in running:
            label = f"#{running[node]} {label}"
            attrs["style"] = "filled,bold" if stored else "filled,dashed"
            attrs["fillcolor"] = "#d5e8d4"
        else:
            attrs["color"] = "grey60"
            attrs["fontcolor"] = "grey50"
    attrs["label"] = label.replace('"', '\\"')
    return ", ".join(f'{k}="{v}"' for k, v in attrs.items())


def draw(circuit: Circuit, path: str | Path | None = None, *, trigger: str | None = None) -> str:
    """Return the DOT text; with `path`, also write it (.dot/.gv) or render it with Graphviz (.svg/.png/.pdf)."""
    dot = to_dot(circuit, trigger=trigger)
    if path is None:
        return dot
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt in ("dot", "gv"):
        path.write_text(dot)
        return dot
    if fmt not in ("svg", "png", "pdf"):
        raise CircuitError(f"draw: cannot write {path.name}: use a .dot, .gv, .svg, .png or .pdf file name")
    exe = shutil.which("dot")
    if exe is None:
        raise CircuitError(
            f"draw: writing {path.name} needs Graphviz's `dot` program, which is not installed; "
            "write a .dot file instead or install graphviz"
        )
    result = subprocess.run([exe, f"-T{fmt}", "-o", str(path)], input=dot, text=True, capture_output=True)
    if result.returncode != 0:
        raise CircuitError(f"draw: dot failed on {path.name}: {result.stderr.strip()}")
    return dot
