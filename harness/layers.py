"""The layers of harness, bottom to top, and the import graph that must respect them.

A module may import modules of its own layer or of a layer below, never one above, and no import cycle may join
modules (tests/test_layers.py checks both on every module under harness/; imports inside functions count). Imports
under `if TYPE_CHECKING:` do not count (they never run). A module belongs to the layer of the longest prefix
listed here (so a new module under harness/backends/ belongs to the compile layer until it is listed below it);
`python -m harness.layers` prints the violations.

    base      errors, names, events, this table, package_data, figures, _native
                                                   (error types; the sanitiser of names and C++ literals; the
                                                   events-table contract; where the configs and C++ headers
                                                   are; the compiled C++ runtime helpers)
    core      ops, circuit                         (operators and the circuit graph)
    backends  backends.interface, .reference, .native, codegen
                                                   (the Kernel interface and its backends: the reference
                                                   interpreter, generated C++ kernels and their toolchain)
    compile   backends (the package: hs.compile), kernel (its old import path)
                                                   (the factory, above the backends it picks from)
    library   lib, circuits, examples              (circuits built from the operators)
    streams   streams, data                        (event readers and generators; data: the `hs.data` catalog facade)
    replay    replay                               (a kernel driven over events: record, sampling, labels)
    fit       fit                                  (training a circuit's parameters)
    evaluate  evaluate                             (a fitted circuit out of sample: report numbers, attribution)
    track     track                                (tracking primitives: the store, what a run logs, RunLogger)
    pipeline  pipeline                             (config -> circuit, events, fit, evaluation, logging)
    runs      runs                                 (above the pipeline: `harness runs`, run replay, sweeps)
    api       harness (the `hs` facade), cli, data_cli, __main__
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent  # the harness package
EXTENSIONS = ("harness._native",)  # compiled modules (CMakeLists.txt): part of the graph, with no imports

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        (
            "harness.errors",
            "harness.interrupts",
            "harness.names",
            "harness.events",
            "harness.layers",
            "harness.package_data",
            "harness.figures",
            "harness._native",
        ),
    ),
    ("core", ("harness.ops", "harness.circuit")),
    (
        "backends",
        ("harness.backends.interface", "harness.backends.reference", "harness.backends.native", "harness.codegen"),
    ),
    ("compile", ("harness.backends", "harness.kernel")),
    ("library", ("harness.lib", "harness.circuits", "harness.examples")),
    ("streams", ("harness.streams", "harness.data")),
    ("replay", ("harness.replay",)),
    ("fit", ("harness.fit",)),
    ("evaluate", ("harness.evaluate",)),
    ("track", ("harness.track",)),
    ("pipeline", ("harness.pipeline",)),
    ("runs", ("harness.runs",)),
    ("api", ("harness", "harness.cli", "harness.data_cli", "harness.__main__")),
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str:
    """The layer of a dotted module name under harness (the longest listed prefix); KeyError when none fits."""
    best = ""
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, layer = prefix, name
    if not best:
        raise KeyError(f"{module}: no layer in harness/layers.py LAYERS covers it; add its package to a layer")
    return layer


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package under `root`, by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def known_modules(root: Path = ROOT) -> set[str]:
    """The names an import may resolve to: the package's modules and its compiled extensions."""
    return {*modules(root), *EXTENSIONS}


def _targets(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names an import statement names (`from a import b` gives `a.b`, resolved below)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, *([base] if base else [])])
        yield base
        yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def imports(path: Path, module: str, known: Iterable[str]) -> set[str]:
    """The harness modules `module` (at `path`) imports, anywhere in it: `from pkg import name` counts as an import
    of the submodule `pkg.name` when that is a module, else of `pkg`."""
    names = set(known)
    is_package = path.name == "__init__.py"
    out = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        targets = list(_targets(node, module, is_package))
        if isinstance(node, ast.ImportFrom):
            subs = [t for t in targets[1:] if t in names]
            out.update(subs)
            if len(subs) < len(targets) - 1 and targets[0] in names:  # a name defined in the module itself
                out.add(targets[0])
        else:
            out.update(_known_prefix(t, names) for t in targets if _known_prefix(t, names))
    out.discard(module)
    return out


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in `tree` (in functions and classes too), except those under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (n for child in node.orelse for n in _import_nodes(ast.Module([child], [])))
        else:
            yield from _import_nodes(node)


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an `if` test is `TYPE_CHECKING` or `typing.TYPE_CHECKING`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _known_prefix(name: str, names: set[str]) -> str:
    """The longest prefix of `name` that is a harness module ('' when none)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in names:
            return ".".join(parts[:i])
    return ""


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the harness modules it imports."""
    found, names = modules(root), known_modules(root)
    out = {m: imports(path, m, names) for m, path in found.items()}
    return {**out, **{name: set() for name in EXTENSIONS}}


def upward(g: dict[str, set[str]]) -> set[tuple[str, str]]:
    """The imports (importer, imported) that go up the layers."""
    return {(a, b) for a, targets in g.items() for b in targets if RANK[layer_of(b)] > RANK[layer_of(a)]}


def cycles(g: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The import cycles: strongly connected components of more than one module (sorted, Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(tuple(sorted(component)))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(out)


def main() -> int:
    """Print the upward imports and the cycles; 1 when there are any."""
    g = graph()
    up, loops = sorted(upward(g)), cycles(g)
    for a, b in up:
        print(f"upward: {a} ({layer_of(a)}) imports {b} ({layer_of(b)})")
    for loop in loops:
        print(f"cycle: {' <-> '.join(loop)}")
    return 1 if up or loops else 0


if __name__ == "__main__":
    raise SystemExit(main())
