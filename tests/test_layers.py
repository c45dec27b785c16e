"""The import graph of harness respects its layers (harness/layers.py): no module imports one of a higher layer,
and no import cycle joins modules. Imports inside functions count; those under `if TYPE_CHECKING:` do not.
There is no list of known exceptions: a violation is fixed, not recorded."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from harness import layers


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
    up = sorted(layers.upward(graph))
    assert not up, "imports up the layers (harness/layers.py):\n" + "\n".join(
        f"  {a} ({layers.layer_of(a)}) imports {b} ({layers.layer_of(b)})" for a, b in up
    )


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    found = layers.cycles(graph)
    assert not found, "import cycles:\n" + "\n".join("  " + " <-> ".join(c) for c in found)


def test_the_compile_factory_sits_above_its_backends_and_the_events_contract_below_them() -> None:
    rank = {m: layers.RANK[layers.layer_of(m)] for m in layers.graph()}
    for backend in ("harness.backends.interface", "harness.backends.reference", "harness.backends.native"):
        assert rank["harness.events"] < rank[backend] < rank["harness.backends"], backend
    assert rank["harness.codegen.cache"] < rank["harness.backends"]
    assert rank["harness.names"] <= rank["harness.ops.timers"]  # operators' C++ forms use the sanitiser


def test_old_import_paths_name_the_same_objects() -> None:
    """harness.kernel, harness.replay.events, harness.codegen.literals and harness.codegen's compile functions
    are re-exports of the modules that now hold them."""
    import harness
    import harness.backends as backends
    import harness.backends.native as native
    import harness.codegen as codegen
    import harness.codegen.literals as literals
    import harness.events as events
    import harness.kernel as kernel
    import harness.names as names
    import harness.replay.events as replay_events

    assert harness.compile is kernel.compile is backends.compile
    assert harness.Kernel is kernel.Kernel is backends.Kernel
    assert codegen.compile_many is native.compile_many and codegen.compile_cpp is native.compile_cpp
    assert all(getattr(replay_events, n) is getattr(events, n) for n in replay_events.__all__)
    assert all(getattr(literals, n) is getattr(names, n) for n in literals.__all__)


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
