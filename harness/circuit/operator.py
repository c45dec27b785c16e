"""The operator-definition API: an operator is configured by parameters, then applied to inputs.

`Ewma(halflife=1.0)(x)`: the first call validates the static configuration (parameters) and names the
operator and value on error; the second call checks arity and adds a node to the input's circuit. Each
operator class is the single numeric spec of that operator: its Python reference semantics live here
(`f` / `ref` for stateless, `ref_init` / `ref_step` / `ref_timer` for stateful), next to its other forms.

Defining a class with a `kind` registers it in `REGISTRY` (kind -> class); everything else that lists
operators (the `hs.ops` functions, the node syntax `a + b`, the README table, the property tests) reads it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.circuit.node import Node, Observed, bind_syntax
from harness.errors import CircuitError, HarnessError
from harness.names import IDENTIFIER

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit

REQUIRED: Any = object()


_QUIET_NAN = struct.pack("<d", math.nan)


def float_key(x: float) -> str:
    """`x.hex()` for structural hashes, except that a NaN with a sign or payload other than the default
    quiet NaN names its bits (`float.hex` gives 'nan' for every NaN, which would merge different constants)."""
    if math.isnan(x) and struct.pack("<d", x) != _QUIET_NAN:
        return f"nan:{struct.pack('>d', x).hex()}"
    return x.hex()


MEMORY_KINDS = {
    "none": "no state: a function of the current event's values",
    "last": "its last inputs (or the last completed burst): exact again once refreshed within the warm-up",
    "decay": "a geometric decay: the weight of the past falls as 2^(-elapsed / half-life)",
    "window": "at most `memory_param` seconds of the past (a pending timer)",
    "snapshot": "the order book: rebuilt whole by a snapshot message",
    "unbounded": "everything since the start (a count, a tick ordinal): a shard cannot reproduce it",
}


@dataclass(frozen=True)
class Param:
    """Declaration of one operator parameter (static configuration, not an input).

    rule: what a valid value is, in words, for error messages; check: the predicate.
    tunable: the value may be a learnable parameter node (`c.parameter`) and change at run time
    without recompiling.
    """

    rule: str = "finite"
    check: Callable[[float], bool] = math.isfinite
    default: Any = REQUIRED
    tunable: bool = False
    integer: bool = False
    choices: tuple[str, ...] = ()  # a string parameter: one of these identifiers
    typical: tuple[float, float] | None = None  # a range of usual values (random circuits of the tests draw here)


class OperatorError(HarnessError):
    """Raised by an operator's reference semantics when an event breaks its rule (e.g. a crossed book).

    `code`, `a` and `b` are what the C++ form reports too; `Operator.error_message` turns them into words,
    so both backends give the same message.
    """

    def __init__(self, code: int, a: float = 0.0, b: float = 0.0) -> None:
        super().__init__(f"operator error {code} ({a}, {b})")
        self.code, self.a, self.b = code, a, b


def positive(x: float) -> bool:
    """Finite and > 0."""
    return math.isfinite(x) and x > 0.0


class StepContext:
    """What a stateful operator sees while it runs: the event time and its own timer slot."""

    __slots__ = ("_schedule", "t")

    def __init__(self, t: int, schedule: Callable[[int | None], None]) -> None:
        self.t = t
        self._schedule = schedule

    def schedule(self, at: int) -> None:
        """Ask for a timer callback at time `at` (int ns, strictly after now); replaces a pending one."""
        if at <= self.t:
            raise RuntimeError(f"a timer must be scheduled strictly after the current time {self.t}, got {at}")
        self._schedule(int(at))

    def cancel(self) -> None:
        """Drop the pending timer, if any."""
        self._schedule(None)


class Operator:
    """Base class of every operator. Subclasses declare `kind`, `arity`, `params` and the semantics."""

    kind: ClassVar[str] = ""
    arity: ClassVar[int | None] = 1  # None: variadic, at least `min_arity` inputs
    min_arity: ClassVar[int] = 1
    params_spec: ClassVar[dict[str, Param]] = {}
    stateful: ClassVar[bool] = False  # keeps state across events (ref_init/ref_step)
    symmetric: ClassVar[bool] = False  # inputs commute: hash-consing sorts them
    edge: ClassVar[bool] = False  # output valid only in the event that produced it
    timer: ClassVar[bool] = False  # may schedule timer callbacks (ref_timer)
    leaf: ClassVar[bool] = False  # made by the Circuit builder only (input, const, param, event)
    differentiable: ClassVar[bool] = False
    list_inputs: ClassVar[tuple[int, ...]] = ()  # positions that take list inputs (one value list per event)
    reads_state: ClassVar[bool] = False  # reads the state of its (stateful) input node, not its value
    can_fail: ClassVar[bool] = False  # may raise OperatorError (C++: sets the kernel's error record)
    # ----- how the operator is offered (hs.ops functions, node syntax, docs) -----
    input_names: ClassVar[tuple[str, ...]] = ()  # names of the inputs in `hs.ops` functions; () = by arity
    symbol: ClassVar[str | None] = None  # Python syntax that builds it, a key of node.SYNTAX (e.g. "+")
    tree: ClassVar[bool] = False  # binary and associative: `hs.ops` takes two or more values, a balanced tree
    # the C++ numeric function of cpp/harness/numeric.hpp (listed in HS_NUMERIC_TWINS) computing `f` on the
    # inputs then the parameters: it makes the C++ form `hs::<twin>(x..., param...)`
    twin: ClassVar[str | None] = None
    # how far back the state remembers, for sharded replays (`harness.replay.memory`): see MEMORY_KINDS; a
    # stateful operator that declares nothing counts as "unbounded" (its sharded replay is refused)
    memory: ClassVar[str | None] = None
    memory_param: ClassVar[str | None] = None  # the parameter giving the half-life ("decay") or seconds ("window")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__ and IDENTIFIER.fullmatch(cls.kind or ""):
            register(cls)

    def __init__(self, **params: Any) -> None:
        if not IDENTIFIER.fullmatch(self.kind or ""):
            raise CircuitError(f"operator class {type(self).__name__} needs a `kind` that is an identifier")
        self.params: dict[str, Any] = self._validate_params(params)

    # ----- configuration -------------------------------------------------------------------------
    def _validate_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        spec = self.params_spec
        unknown = sorted(set(given) - set(spec))
        if unknown:
            names = ", ".join(spec) or "none"
            raise CircuitError(f"{self.kind}: unknown parameter {unknown[0]!r} (parameters: {names})")
        out: dict[str, Any] = {}
        for name, decl in spec.items():
            if name in given:
                value = given[name]
            elif decl.default is not REQUIRED:
                value = decl.default
            else:
                raise CircuitError(f"{self.kind}: missing required parameter {name!r}")
            out[name] = self._validate_one(name, decl, value)
        self.check_params({k: self.param_value(v) for k, v in out.items()})
        return out

    def _validate_one(self, name: str, decl: Param, value: Any) -> Any:
        if isinstance(value, Observed):
            value = value.node
        if decl.choices:
            if not isinstance(value, str) or value not in decl.choices:
                options = ", ".join(repr(c) for c in decl.choices)
                raise CircuitError(f"{self.kind}: parameter {name}={value!r} must be one of {options}")
            return value
        if isinstance(value, Node):
            if value.kind != "param":
                raise CircuitError(
                    f"{self.kind}: parameter {name} must be a number or a learnable parameter "
                    f"(c.parameter), got node {value.name} ({value.kind})"
                )
            if not decl.tunable:
                raise CircuitError(f"{self.kind}: parameter {name} is not tunable; give a number")
            self.check_value(name, value.op.params["init"], via=value.name)
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CircuitError(f"{self.kind}: parameter {name} must be a number, got {value!r}")
        if decl.integer:
            if float(value) != int(value):
                raise CircuitError(f"{self.kind}: parameter {name}={value!r} must be an integer")
            value = int(value)
        else:
            value = float(value)
        self.check_value(name, value)
        return value

    def check_value(self, name: str, value: float, *, via: str | None = None) -> None:
        """Raise CircuitError naming the operator, parameter and rule when `value` breaks the rule."""
        decl = self.params_spec[name]
        if not decl.check(value):
            source = f" (from parameter {via!r})" if via else ""
            raise CircuitError(f"{self.kind}: parameter {name}={value!r}{source} is out of range: must be {decl.rule}")

    def check_params(self, p: Mapping[str, float]) -> None:
        """Check rules that involve several parameters (e.g. lo <= hi); override where needed."""

    @staticmethod
    def param_value(v: Any) -> Any:
        """The current value of a parameter: a number or choice, or a parameter node's initial value."""
        return v.op.params["init"] if isinstance(v, Node) else v

    def param_key(self) -> str:
        """Deterministic text of the configuration, used in structural hashes."""
        parts = []
        for k in sorted(self.params):
            v = self.params[k]
            if isinstance(v, Node):
                parts.append(f"{k}=param:{v.name}")
            elif isinstance(v, float):
                parts.append(f"{k}={float_key(v)}")
            else:
                parts.append(f"{k}={v!r}")
        return ",".join(parts)

    def memory_kind(self) -> str:
        """How far back this operator's state remembers (one of MEMORY_KINDS): stateless operators "none", a
        stateful one what it declares in `memory` (else "unbounded")."""
        if self.memory is not None:
            return self.memory
        return "unbounded" if self.stateful else "none"

    def describe(self) -> str:
        """Human-readable `kind(param=value, ...)`."""
        if not self.params:
            return self.kind
        inner = ", ".join(f"{k}={v.name if isinstance(v, Node) else repr(v)}" for k, v in self.params.items())
        return f"{self.kind}({inner})"

    # ----- application ---------------------------------------------------------------------------
    def __call__(self, *inputs: Any) -> Node:
        if self.leaf:
            raise CircuitError(f"{self.kind} nodes are made by the Circuit builder, not applied")
        circuit = find_circuit(self.kind, inputs, self.params.values())
        return circuit.apply(self, inputs)

    @classmethod
    def build(cls, inputs: Sequence[Any], params: Mapping[str, Any]) -> Node:
        """What the `hs.ops` function of this operator does: configure, then apply (override to accept more)."""
        return cls(**params)(*inputs)

    @classmethod
    def arg_names(cls) -> tuple[str, ...]:
        """Names of the inputs: `input_names`, else x for one input, a, b for two, x0, x1, ... for more."""
        if cls.input_names:
            return cls.input_names
        n = cls.arity if cls.arity is not None else cls.min_arity
        return {1: ("x",), 2: ("a", "b")}.get(n) or tuple(f"x{i}" for i in range(n))

    def check_arity(self, n: int) -> None:
        """Raise CircuitError when `n` inputs do not fit the declared arity."""
        if self.arity is None:
            if n < self.min_arity:
                raise CircuitError(f"{self.kind}: takes at least {self.min_arity} inputs, got {n}")
        elif n != self.arity:
            raise CircuitError(f"{self.kind}: takes {self.arity} input(s), got {n}")

    # ----- reference semantics ----------------------------------------------------------------------
    def f(self, p: Mapping[str, float], *xs: float) -> float:
        """Stateless value from valid inputs (override in stateless operators)."""
        raise NotImplementedError(f"{self.kind} has no stateless reference form")

    def ref(self, p: Mapping[str, float], xs: Sequence[float | None]) -> float | None:
        """Stateless value with validity: invalid (None) when any input is invalid."""
        for x in xs:
            if x is None:
                return None
        return self.f(p, *xs)  # type: ignore[arg-type]

    def ref_init(self, p: Mapping[str, float]) -> tuple[Any, float | None]:
        """Stateful: the initial state and value (None: invalid until a first sample)."""
        raise NotImplementedError(f"{self.kind} is not stateful")

    def ref_step(
        self, state: Any, ctx: StepContext, p: Mapping[str, float], xs: Sequence[float | None]
    ) -> float | None:
        """Stateful: update `state` for one event where a triggering input ran; return the new value."""
        raise NotImplementedError(f"{self.kind} is not stateful")

    def ref_timer(self, state: Any, ctx: StepContext, p: Mapping[str, float]) -> float | None:
        """Timer callback at `ctx.t`; return the new value."""
        raise NotImplementedError(f"{self.kind} has no timer")

    def error_message(self, code: int, a: float, b: float) -> str:
        """Words for an OperatorError (code, a, b) raised by this operator."""
        return f"error {code} ({a!r}, {b!r})"

    # ----- torch form (used by harness.fit) ---------------------------------------------------------------
    # Tensors in, tensor out; parameters arrive as tensors that broadcast against the inputs, so the same
    # form evaluates one node or a folded group of nodes (a leading fold dimension).
    def torch_f(self, p: Mapping[str, Any], *xs: Any) -> Any:
        """Stateless and differentiable: the torch form of `f`."""
        raise NotImplementedError(f"operator {self.kind!r} has no torch form")

    def torch_coeffs(self, w: Any, x: Any) -> tuple[Any, Any]:
        """Differentiable decay: (a, b) of the recurrence s = a*s + b over the valid samples x, given the
        decay weights w = 2^(-dt/halflife) (w = 0 at the first sample, which initialises the state)."""
        raise NotImplementedError(f"operator {self.kind!r} has no torch recurrence")

    # ----- C++ form (used by harness.codegen) -----------------------------------------------------------
    # Expressions arrive as C++ source: `xs` are input values, `oks` their validity flags, `p` maps each
    # parameter to a C++ expression (a literal, or the runtime slot of a learnable parameter).
    cpp_state: ClassVar[str | None] = None  # stateful: a struct of cpp/harness/ops.hpp with members v, ok
    cpp_includes: ClassVar[tuple[str, ...]] = ()  # extra runtime headers, e.g. ("harness/book.hpp",)
    # vector_math kernels: a unary function applied in place to an array (cpp/harness/vecmath.hpp), and
    # for decays the parameter whose weight 2^(-dt/param) can be precomputed for a block of samples
    vector_cpp: ClassVar[str | None] = None
    vector_weight: ClassVar[str | None] = None

    def cpp(self, xs: Sequence[str], p: Mapping[str, str]) -> str:
        """Stateless: a C++ expression computing the output from the input expressions (by default the call
        of the numeric twin on the inputs, then the parameters)."""
        if self.twin is None:
            raise NotImplementedError(f"operator {self.kind!r} has no C++ form")
        return f"hs::{self.twin}({', '.join([*xs, *(p[k] for k in self.params_spec)])})"

    @classmethod
    def twin_ref(cls, *args: float) -> float:
        """The Python side of the numeric twin: `f` on the twin's arguments (inputs, then parameters)."""
        n = len(cls.arg_names())
        return cls.f(cls.__new__(cls), dict(zip(cls.params_spec, args[n:], strict=True)), *args[:n])

    def cpp_valid(self, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str]) -> str:
        """Stateless: C++ validity of the output; by default every input must be valid."""
        oks = [k for k in oks if k != "true"]
        return " && ".join(oks) if oks else "true"

    def cpp_step(self, s: str, t: str, xs: Sequence[str], oks: Sequence[str], p: Mapping[str, str], due: str) -> str:
        """Stateful: C++ statement updating the struct `s` for one event at time `t` (`due`: timer slot)."""
        raise NotImplementedError(f"operator {self.kind!r} has no C++ form")

    def cpp_timer(self, s: str, t: str, p: Mapping[str, str], due: str) -> str:
        """Timer: C++ statement run when this node's timer fires at `t`."""
        raise NotImplementedError(f"operator {self.kind!r} has no C++ timer form")


REGISTRY: dict[str, type[Operator]] = {}  # kind -> operator class, in the order of definition


def register(op: type[Operator]) -> None:
    """Add `op` to REGISTRY (called for each class that declares a `kind`) and bind its node syntax.

    A kind names one operator in hashes and generated code, so a harness operator's kind cannot be taken by
    another class; a user class may replace another user class of its kind (e.g. a cell run again).
    """
    known = REGISTRY.get(op.kind)
    if known is not None and known.__module__.startswith("harness.") and _name(known) != _name(op):
        raise CircuitError(f"operator class {_name(op)}: kind {op.kind!r} is taken by {_name(known)}; choose another")
    if op.symbol is not None:
        bind_syntax(op)  # raises before anything changes when the syntax is unknown or taken
    REGISTRY[op.kind] = op


def defined_in(package: str) -> dict[str, type[Operator]]:
    """The registered operators whose classes are defined in `package` (e.g. 'harness.ops'), kind -> class."""
    return {k: op for k, op in REGISTRY.items() if op.__module__ == package or op.__module__.startswith(package + ".")}


def _name(op: type[Operator]) -> str:
    return f"{op.__module__}.{op.__qualname__}"


def find_circuit(kind: str, inputs: Sequence[Any], params: Any = ()) -> Circuit:
    """The circuit that the nodes among `inputs` (and parameter nodes) belong to."""
    for x in [*inputs, *params]:
        if isinstance(x, Observed):
            return x.node.circuit
        if isinstance(x, Node):
            return x.circuit
    raise CircuitError(f"{kind}: needs at least one circuit node among its inputs (all were numbers)")
