"""Code generation: byte-identical output (golden files), readability, safety of names and numbers."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import harness as hs
from harness import examples, ops
from harness.circuit.operator import Operator
from harness.codegen.build import CompileError
from harness.codegen.cache import kernel_key
from harness.codegen.emit import generate
from harness.codegen.literals import cpp_double, cpp_int, cpp_name
from harness.codegen.toolchain import _headers_digest, runtime_include_dir, toolchain

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


def require_golden(path: Path) -> None:
    """Fail when the golden file `path` is missing, saying how to create it (never write it silently)."""
    if not path.exists():
        pytest.fail(
            f"golden file {path} is missing: create it with "
            f"HARNESS_UPDATE_GOLDEN=1 python -m pytest tests/test_codegen.py, review it and commit it"
        )


def golden_text(path: Path, text: str) -> str:
    """The committed golden file at `path` (written from `text` with HARNESS_UPDATE_GOLDEN=1); a missing one fails."""
    if UPDATE:
        path.write_text(text)
    require_golden(path)
    return path.read_text()


@pytest.mark.parametrize("build", [examples.wide_add, features], ids=["wide_add", "features"])
def test_generated_source_matches_the_golden_file(build) -> None:  # type: ignore[no-untyped-def]
    body = generate(build()).body
    path = GOLDEN / f"{build().name}.cpp"
    assert body == golden_text(path, body), (
        f"generated C++ changed; rerun with HARNESS_UPDATE_GOLDEN=1 if intended ({path})"
    )


def test_a_missing_golden_file_fails_and_says_how_to_create_it(tmp_path: Path) -> None:
    if UPDATE:
        pytest.skip("HARNESS_UPDATE_GOLDEN=1 writes golden files")
    with pytest.raises(pytest.fail.Exception, match="HARNESS_UPDATE_GOLDEN=1"):
        golden_text(tmp_path / "absent.cpp", "// text")
    assert not (tmp_path / "absent.cpp").exists()


def test_a_small_kernel_holds_only_its_circuit() -> None:
    """The replay loop, the C interface and the error plumbing live in cpp/harness/kernel*.hpp, not in the source."""
    body = generate(examples.wide_add()).body
    assert body.count("\n") < 110
    assert '#include "harness/kernel.hpp"' in body and "hs::kernel::api<Circuit>()" in body
    for runtime in ("replay_loop", "k_replay", "record_row", "fail_op", "trigger_masks", "HS_ERR_"):
        assert runtime not in body, runtime


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
    assert "void trigger_0(State& s, [[maybe_unused]] std::int64_t t, double in0, double in1)" in body  # trade
    assert "void trigger_1(State& s, [[maybe_unused]] std::int64_t t, double in0)" in body  # tick: clock
    (timer,) = plan.timers
    assert f"void timer_{plan.position(timer.node)}(State& s, [[maybe_unused]] std::int64_t t)" in body
    assert "[local]" in body  # ephemeral values are locals
    assert "hs::Ewma" in body and "s.p[1]" in body  # runtime half-life from parameter hl
    for name in c.outputs:  # each output's node says which output it is
        assert f"(output {name})" in body, name


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
    ref = hs.compile(c, backend="python")
    ref.call("x", t=0, x=3.0)
    assert ref.value("y") == 9.0
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


# ----- golden replays: the kernels of the seed scenarios and the flagship, bit for bit ------------------------
REPLAYS = GOLDEN / "replays.json"


@functools.cache
def market_events() -> pa.Table:
    return hs.streams.synthetic(50_000, seed=3)


@functools.cache
def l1_events() -> pa.Table:
    return hs.streams.l1_events(50_000, seed=3)


def seed_events(circuit: hs.Circuit, n: int = 20_000, seed: int = 3) -> pa.Table:
    """Random events for a circuit with scalar inputs: each row one trigger with its inputs set, the rest null."""
    rng = np.random.default_rng(seed)
    plan = circuit.plan()
    triggers = list(plan.triggers)
    inputs = [node.name for node in plan.order if node.kind == "input"]
    trig = rng.integers(0, len(triggers), n)
    cols = {
        "t": pa.array(np.cumsum(rng.integers(0, 300_000_000, n)), pa.int64()),
        "trigger": pa.array([triggers[i] for i in trig]),
    }
    for name in inputs:
        users = [j for j, tr in enumerate(triggers) if name in {m.name for m in plan.triggers[tr].inputs}]
        cols[name] = pa.array(rng.normal(size=n), mask=~np.isin(trig, users))
    return pa.table(cols)


def other_params(k: hs.Kernel) -> dict[str, float]:
    """Deterministic parameter values other than the initial ones, inside their bounds."""
    values = {}
    for i, (name, v) in enumerate(sorted(k.params.items())):
        node = k.plan.parameters[name]
        lo, hi = node.op.params["lower"], node.op.params["upper"]
        x = v * 1.25 + 0.05 * ((i % 5) - 2) if v != 0 else 0.3 * ((i % 7) - 3) + 0.1
        values[name] = float(min(max(x, lo), hi))
    return values


REPLAY_CASES = {
    "add_two": (examples.add_two, None),
    "wide_add": (examples.wide_add, None),
    "features": (features, None),
    "l1_pressure": (examples.l1_pressure, l1_events),
    "market_pressure": (examples.market_pressure, market_events),
    "fit_market": (examples.fit_market, market_events),
    "trade_pressure": (examples.trade_pressure, market_events),
}


def replay_digests(name: str) -> dict[str, str]:
    """Content digests of the kernel's replays: initial parameters, other parameters, with timer rows."""
    build, events = REPLAY_CASES[name]
    ev = events() if events is not None else seed_events(build())
    k = hs.compile(build())
    out = {f"{name}.default": hs.streams.digest(k.replay(ev))}
    k.set_params(other_params(k))
    k.reset()
    out[f"{name}.params"] = hs.streams.digest(k.replay(ev))
    k.reset()
    out[f"{name}.timer_rows"] = hs.streams.digest(k.replay(ev, timer_rows=True))
    return out


@pytest.mark.parametrize("name", list(REPLAY_CASES))
def test_kernel_replays_match_the_golden_digests(name: str) -> None:
    """Generated kernels replay bit for bit as the committed digests say (a refactor of codegen keeps them)."""
    got = replay_digests(name)
    if UPDATE:
        known = json.loads(REPLAYS.read_text()) if REPLAYS.exists() else {}
        REPLAYS.write_text(json.dumps(known | got, indent=1, sort_keys=True) + "\n")
    require_golden(REPLAYS)
    known = json.loads(REPLAYS.read_text())
    missing = sorted(set(got) - set(known))
    assert not missing, f"{REPLAYS} has no digest for {missing}: create it with HARNESS_UPDATE_GOLDEN=1"
    assert got == {key: known[key] for key in got}, f"replays of {name} changed against {REPLAYS}"


# ----- the runtime headers are part of the kernel cache key -------------------------------------------------
def included_headers(text: str, include: Path) -> set[str]:
    """Every `harness/...` header `text` includes, directly or through other harness headers."""
    seen: set[str] = set()
    todo = re.findall(r'#include "(harness/[^"]+)"', text)
    while todo:
        header = todo.pop()
        if header not in seen:
            seen.add(header)
            todo += re.findall(r'#include "(harness/[^"]+)"', (include / header).read_text())
    return seen


def test_the_cache_key_covers_every_runtime_header_a_kernel_includes(tmp_path: Path) -> None:
    include = runtime_include_dir()
    headers = included_headers(generate(examples.trade_pressure(), vector_math="all").body, include)
    assert {"harness/kernel.hpp", "harness/kernel_replay.hpp", "harness/kernel_events.hpp"} <= headers
    digested = {f"harness/{p.name}" for p in (include / "harness").glob("*.h*")}  # what _headers_digest reads
    assert headers <= digested, sorted(headers - digested)
    copy = tmp_path / "include"
    shutil.copytree(include, copy)
    tc = toolchain()
    assert _headers_digest(copy) == tc.headers_digest
    runtime = copy / "harness" / "kernel_replay.hpp"
    runtime.write_text(runtime.read_text() + "\n// edited\n")
    edited = dataclasses.replace(tc, headers_digest=_headers_digest(copy))
    body = generate(examples.wide_add()).body
    assert kernel_key(body, edited) != kernel_key(body, tc)  # an edited runtime header builds new kernels
