"""No god units (issue 14, item 4): no function or method under harness/ is longer than MAX_LINES lines.

A function's length is its whole span, `def` line to last line, docstring and comments included (decorators
not). Nested functions are measured on their own too, named outer.inner; methods are Class.method.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "harness"
MAX_LINES = 80

# Offenders in files that other work is restructuring right now (harness/pipeline/*, harness/codegen/*,
# harness/track/*, harness/cli.py): to be split there. The list can only shrink: an entry that is no longer
# too long (split, renamed or gone) fails `test_pending_entries_are_still_too_long` until it is removed here.
# Empty now: pipeline/run.py::_stages (111 lines) and codegen's _Emitter.emit_replay (135) were split there.
PENDING: set[str] = set()


def long_functions(source: str, limit: int = MAX_LINES) -> dict[str, tuple[int, int]]:
    """Qualified name -> (first line, length) of every function in `source` longer than `limit` lines."""
    found: dict[str, tuple[int, int]] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                length = (child.end_lineno or child.lineno) - child.lineno + 1
                if length > limit:
                    found[name] = (child.lineno, length)
                walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            else:
                walk(child, prefix)

    walk(ast.parse(source), "")
    return found


def offenders() -> dict[str, str]:
    """'path::name' -> where and how long, for every too-long function under harness/."""
    out: dict[str, str] = {}
    for path in sorted(HARNESS.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name, (line, length) in long_functions(path.read_text(encoding="utf-8")).items():
            out[f"{rel}::{name}"] = f"{rel}:{line} {name} is {length} lines"
    return out


def test_no_function_is_longer_than_the_limit() -> None:
    found = offenders()
    new = sorted(found[k] for k in found if k not in PENDING)
    assert not new, f"functions longer than {MAX_LINES} lines (split them into named steps): " + "; ".join(new)


def test_pending_entries_are_still_too_long() -> None:
    found = offenders()
    done = sorted(PENDING - set(found))
    assert not done, (
        f"PENDING entries no longer over {MAX_LINES} lines (split, renamed or gone): remove them from PENDING in "
        f"{Path(__file__).name}: " + ", ".join(done)
    )


def test_the_measure_finds_long_functions_methods_and_nested_ones() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(80))
    source = (
        f"def long():\n{body}\n"  # 81 lines
        f"def short():\n{''.join(body.splitlines(keepends=True)[:79])}\n"  # 80 lines: allowed
        "class C:\n    def method(self):\n" + body.replace("    ", "        ") + "\n"
        "def outer():\n    def inner():\n" + body.replace("    ", "        ") + "    return inner\n"
    )
    found = long_functions(source)
    assert found["long"] == (1, 81)
    assert "short" not in found
    assert found["C.method"][1] == 81
    assert found["outer.inner"][1] == 81 and found["outer"][1] == 83
