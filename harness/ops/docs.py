"""The README's operator table, generated from the operator registry: `python -m harness.ops.docs` rewrites it
in README.md, and tests/test_op_registry.py fails while the README differs from what this module generates.

One row per `hs.ops` operator (its function's signature, its Python syntax, what kind of operator it is, the
first paragraph of its docstring), then one per helper (tree_sum, linear).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path

from harness import ops
from harness.circuit.operator import Operator

HEADING = "## Operators (`hs.ops`)"
README = Path(__file__).resolve().parents[2] / "README.md"


def operator_table() -> str:
    """The markdown table of every hs.ops operator and helper, one row each."""
    lines = ["| function | syntax | kind | semantics |", "| --- | --- | --- | --- |"]
    for op in ops.OPERATORS.values():
        lines.append(_row(getattr(ops, op.kind), _syntax(op), _kind(op)))
    lines += [_row(fn, "", "helper") for fn in ops.HELPERS]
    return "\n".join(lines) + "\n"


def _row(fn: Callable[..., object], syntax: str, kind: str) -> str:
    args = ", ".join(_arg(p) for p in inspect.signature(fn).parameters.values())
    summary = inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    return f"| `{fn.__name__}({args})` | {syntax} | {kind} | {_cell(summary)} |"


def _arg(p: inspect.Parameter) -> str:
    name = f"*{p.name}" if p.kind is inspect.Parameter.VAR_POSITIONAL else p.name
    return name if p.default is inspect.Parameter.empty else f"{name}={p.default!r}"


def _kind(op: type[Operator]) -> str:
    """stateless, stateful or timer; differentiable ones (torch form, usable in fitting) say so."""
    kind = "timer" if op.timer else "stateful" if op.stateful else "stateless"
    return f"{kind}, differentiable" if op.differentiable else kind


def _syntax(op: type[Operator]) -> str:
    """The Python syntax that builds the operator: `a + b`, `-x`, `abs(x)`, or nothing."""
    if op.symbol is None:
        return ""
    if op.arity == 2:
        return f"`a {op.symbol} b`"
    return f"`{op.symbol}(x)`" if op.symbol.isidentifier() else f"`{op.symbol}x`"


def _cell(text: str) -> str:
    """Text shown as written in a markdown table cell: `|` would end the cell, `*` outside code would emphasise."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("*", "\\*") for i, part in enumerate(parts))


def readme_with_table(text: str) -> str:
    """`text` (the README) with the table under HEADING replaced by `operator_table()`."""
    start = text.index(HEADING)
    begin = text.index("\n|", start) + 1
    end = text.find("\n\n", begin)
    end = len(text) if end < 0 else end + 1
    return text[:begin] + operator_table() + text[end:]


def update_readme(path: Path = README) -> bool:
    """Rewrite the operator table of `path`; True when it changed."""
    old = path.read_text()
    new = readme_with_table(old)
    if new != old:
        path.write_text(new)
    return new != old


if __name__ == "__main__":
    changed = update_readme(Path(sys.argv[1]) if len(sys.argv) > 1 else README)
    print(f"{'updated' if changed else 'unchanged'}: the operator table of the README")
