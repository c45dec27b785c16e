"""The import graph of harness respects its layers (harness/layers.py): no module imports one of a higher layer,
and no import cycle joins modules. Imports inside functions count; those under `if TYPE_CHECKING:` do not.

KNOWN lists the violations that remain in code being restructured right now; it can only shrink: the test fails
on a violation not listed and on a listed one that no longer occurs (remove it from the list)."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from harness import layers

# being restructured (issue 14 item 3: backends/): the compile() factory in kernel.py ties the backends into one cycle.
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[frozenset[str]] = {
    frozenset(
        {"harness.codegen", "harness.codegen.cache", "harness.codegen.native", "harness.interpreter", "harness.kernel"}
    ),
}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return layers.graph()


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    missing = []
    for module in graph:
        try:
            layers.layer_of(module)
        except KeyError:
            missing.append(module)
    assert not missing, f"modules outside every layer of harness/layers.py LAYERS: {missing}"


def test_no_import_goes_up_the_layers(graph: dict[str, set[str]]) -> None:
    up = layers.upward(graph)
    new = sorted(up - KNOWN_UPWARD)
    assert not new, "imports up the layers (harness/layers.py):\n" + "\n".join(
        f"  {a} ({layers.layer_of(a)}) imports {b} ({layers.layer_of(b)})" for a, b in new
    )
    gone = sorted(KNOWN_UPWARD - up)
    assert not gone, f"fixed, remove from KNOWN_UPWARD in tests/test_layers.py: {gone}"


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    found = {frozenset(c) for c in layers.cycles(graph)}
    new = [sorted(c) for c in found - KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join("  " + " <-> ".join(c) for c in new)
    gone = [sorted(c) for c in KNOWN_CYCLES - found]
    assert not gone, f"no longer a cycle (changed or fixed), update KNOWN_CYCLES in tests/test_layers.py: {gone}"


def test_the_pipeline_talks_to_tracking_only_through_run_logger() -> None:
    """mlflow stays behind harness.track (RunLogger, MlflowRunLogger): no pipeline module imports it."""
    for module, path in layers.modules().items():
        if module.startswith("harness.pipeline."):
            tree = ast.parse(path.read_text())
            names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert not any(n == "mlflow" or n.startswith("mlflow.") for n in names), f"{module} imports mlflow"


# ---------------------------------------------------------------------------------------------- the checker itself


def write(root: Path, files: dict[str, str]) -> Path:
    """A package `harness` under root/harness with the given modules (path -> source)."""
    for name, source in files.items():
        path = root / "harness" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root / "harness"


def test_the_checker_sees_function_and_relative_imports_and_skips_type_checking(tmp_path: Path) -> None:
    pkg = write(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from harness.fit import x\n",
            "fit/__init__.py": "",
            "fit/a.py": "def f():\n    from harness.pipeline import run\n",
            "fit/b.py": "from . import a\nfrom .a import f\nimport harness.errors\n",
            "pipeline/__init__.py": "",
            "pipeline/run.py": "from harness.fit import b\nfrom harness import _native\n",
        },
    )
    g = layers.graph(pkg)
    assert g["harness.errors"] == set()  # under TYPE_CHECKING
    assert g["harness.fit.a"] == {"harness.pipeline.run"}  # inside a function
    assert g["harness.fit.b"] == {"harness.fit.a", "harness.errors"}  # relative, and `import a.b`
    assert g["harness.pipeline.run"] == {"harness.fit.b", "harness._native"}
    assert layers.upward(g) == {("harness.fit.a", "harness.pipeline.run")}
    assert layers.cycles(g) == [("harness.fit.a", "harness.fit.b", "harness.pipeline.run")]


def test_a_name_from_a_package_is_an_import_of_the_package(tmp_path: Path) -> None:
    pkg = write(
        tmp_path,
        {
            "__init__.py": "from harness.circuit import Circuit\n",
            "circuit/__init__.py": "from harness.circuit.builder import Circuit\n",
            "circuit/builder.py": "class Circuit: ...\n",
        },
    )
    g = layers.graph(pkg)
    assert g["harness"] == {"harness.circuit"}
    assert g["harness.circuit"] == {"harness.circuit.builder"}
    with pytest.raises(KeyError, match="no layer"):
        layers.layer_of("elsewhere.module")
