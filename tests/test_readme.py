"""The README's Python examples run as written (docs that match the code)."""

from __future__ import annotations

import re

from conftest import ROOT


def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # the examples write files (params.json) into the working directory
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    k = namespace["k"]
    assert k.value("out") == 8.0  # type: ignore[attr-defined]
    assert namespace["y"].kind == "scale"  # type: ignore[attr-defined]
    assert set(namespace["res"].params) == {"hl", "w", "s"}  # type: ignore[attr-defined]
    assert (tmp_path / "params.json").exists()
