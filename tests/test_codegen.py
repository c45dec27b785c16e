"""Code generation: byte-identical output (golden files), readability, safety of names and numbers."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

import harness as hs
from harness import examples, ops
from harness.circuit.operator import Operator
from harness.codegen.build import CompileError
from harness.codegen.emit import generate
from harness.codegen.literals import cpp_double, cpp_int, cpp_name

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("HARNESS_UPDATE_GOLDEN") == "1"


def features() -> hs.Circuit:
    """A small circuit with every kind of node: inputs, event, parameter, static node, stateful, timer."""
    c = hs.Circuit("features")
    price, size = c.input("price"), c.input("size")
    trade = c.trigger("trade", price, size)
    c.trigger("tick", c.input("clock"))
    w = c.parameter("w", init=0.5)
    hl = c.parameter("hl", init=2.0, lower=0.01)
    e = ops.ewma(price, halflife=hl)
    pressure = ops.decay_sum(size * trade.event, 1.5)
    c.output("signal", ops.tanh(w * (price - e) + ops.exp(w) * pressure + hs.observe(c.inputs["clock"])))
    c.output("quiet", ops.count(ops.timeout(size, 0.25)))
    c.output("clock_seen", c.inputs["clock"] * 1.0)
    return c


@pytest.mark.parametrize("build", [examples.wide_add, features], ids=["wide_add", "features"])
def test_generated_source_matches_the_golden_file(build) -> None:  # type: ignore[no-untyped-def]
    body = generate(build()).body
    path = GOLDEN / f"{build().name}.cpp"
    if UPDATE or not path.exists():
        path.write_text(body)
    assert body == path.read_text(), f"generated C++ changed; rerun with HARNESS_UPDATE_GOLDEN=1 if intended ({path})"


def test_generated_source_is_byte_identical_across_processes() -> None:
    script = textwrap.dedent(
        """
        import sys; sys.path.insert(0, sys.argv[1])
        from test_codegen import features
        from harness.codegen.emit import generate
        sys.stdout.write(generate(features()).body)
        """
    )
    outs = [
        subprocess.run(
            [sys.executable, "-c", script, str(Path(__file__).parent)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    assert outs[0] == outs[1] == generate(features()).body


def test_source_is_readable_one_function_per_trigger_and_timer_and_a_comment_per_node() -> None:
    c = features()
    body = generate(c).body
    plan = c.plan()
    for node in plan.order:
        if node.kind not in ("const", "param"):
            assert f" {node.name} = {node.kind}" in body, node.name
    assert "void trigger_0(State& s, std::int64_t t, double in0, double in1)" in body  # trade: price, size
    assert "void trigger_1(State& s, std::int64_t t, double in0)" in body  # tick: clock
    (timer,) = plan.timers
    assert f"void timer_{plan.position(timer.node)}(State& s, std::int64_t t)" in body
    assert "[local]" in body  # ephemeral values are locals
    assert "hs::Ewma" in body and "s.p[1]" in body  # runtime half-life from parameter hl


def test_the_trigger_function_runs_only_what_the_plan_says() -> None:
    c = examples.wide_add()
    body = generate(c).body
    fn = body[body.index("void trigger_1(") : body.index("}", body.index("void trigger_1("))]
    steps = [ln for ln in fn.splitlines() if ln.startswith("    // n")]
    assert len(steps) == 1 and "add" in steps[0]  # only `out` is computed on trigger c: ab is stored


def test_literals_round_trip_exactly_and_refuse_bad_input() -> None:
    for x in (0.1, -0.0, 1e-310, 5e-324, 1.7976931348623157e308, -2.5, 3.0, 1 / 3):
        text = cpp_double(x)
        assert float(text.strip("()")) == x and math.copysign(1, float(text.strip("()"))) == math.copysign(1, x)
    assert (
        cpp_double(math.inf) == "HS_INF" and cpp_double(-math.inf) == "(-HS_INF)" and cpp_double(math.nan) == "HS_NAN"
    )
    assert cpp_int(-(2**63)) == "INT64_MIN" and cpp_int(5) == "INT64_C(5)"
    with pytest.raises(hs.CircuitError, match="refused the integer"):
        cpp_int(2**63)
    with pytest.raises(hs.CircuitError, match="refused the value"):
        cpp_double('1); system("x"')  # type: ignore[arg-type]
    for bad in ('x"; system("rm -rf /"); //', "a\nb", "x*/", "1a", "", "é"):
        with pytest.raises(hs.CircuitError, match="code generation refused"):
            cpp_name(bad)


def test_hostile_names_smuggled_past_the_builder_are_refused() -> None:
    c = examples.wide_add()
    c.inputs["a"].name = 'a"); system("touch /tmp/pwned"); ("'  # bypass the builder on purpose
    with pytest.raises(hs.CircuitError, match="code generation refused"):
        generate(c)
    c = examples.wide_add()
    c.name = "wide_add */ int evil; /*"
    with pytest.raises(hs.CircuitError, match="code generation refused"):
        generate(c)


def test_hostile_values_are_emitted_exactly(backend: str) -> None:
    c = hs.Circuit("values")
    x = c.input("x")
    c.trigger("x", x)
    consts = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, 0.1, 1e22, -1e-300]
    for i, k in enumerate(consts):
        c.output(f"o{i}", x * k)
    c.output("neg_zero", x - x * 0.0 + (-0.0))
    ref = hs.compile(c, backend="python")
    ker = hs.compile(c, backend=backend)
    for v in (1.0, -1.0, 0.0, 3.5):
        ref.call("x", t=0, x=v)
        ker.call("x", t=0, x=v)
        for name in ref.outputs:
            a, b = ref.value(name), ker.value(name)
            assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), name


def test_operator_without_a_cpp_form_gets_a_clear_error() -> None:
    class Square(Operator):
        kind, arity = "square", 1

        def f(self, p, x):  # type: ignore[no-untyped-def]
            return x * x

    c = hs.Circuit("custom")
    x = c.input("x")
    c.trigger("x", x)
    c.output("y", Square()(x))
    assert hs.compile(c, backend="python") is not None
    with pytest.raises(hs.CircuitError, match=r"operator 'square' \(node square_\w+\) has no C\+\+ form"):
        hs.compile(c)


def test_compile_error_shows_the_compiler_message_and_the_source_path(tmp_path: Path) -> None:
    class Broken(Operator):
        kind, arity = "broken", 1

        def f(self, p, x):  # type: ignore[no-untyped-def]
            return x

        def cpp(self, xs, p):  # type: ignore[no-untyped-def]
            return f"undefined_function_xyz({xs[0]})"

    c = hs.Circuit("broken")
    x = c.input("x")
    c.trigger("x", x)
    c.output("y", Broken()(x))
    with pytest.raises(CompileError) as info:
        hs.compile(c, cache_dir=tmp_path)
    message = str(info.value)
    assert "undefined_function_xyz" in message and "error" in message
    kept = re.search(r"generated source kept at (\S+\.cpp)", message)
    assert kept and Path(kept.group(1)).is_file()
    assert "undefined_function_xyz" in Path(kept.group(1)).read_text()
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]  # no half entry published


def test_kernel_exposes_its_source_hash_and_build_info() -> None:
    k = hs.compile(examples.wide_add())
    assert k.backend == "cpp" and len(k.kernel_hash) == 64
    assert "HS_DEFINE_KERNEL_MODULE(hs_kernel_" in k.source
    assert set(k.build) == {"cache_hit", "seconds", "module"}
    assert pa.Table.from_pydict({"x": [1]}) is not None
