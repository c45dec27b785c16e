"""Nodes of a circuit graph and the expression syntax (`a + b`, `x < y`, `-x`, `abs(x)`) built on them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.errors import CircuitError

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.circuit.operator import Operator


# Python's operator syntax that circuit nodes support: (symbol, number of operands) -> the special methods, the
# reflected one second (`1.0 - x` calls x.__rsub__). An operator class claims one by declaring `symbol`
# (e.g. Sub: "-"); registering the class binds these methods (`bind_syntax`), so this table is the only list.
SYNTAX: dict[tuple[str, int], tuple[str, ...]] = {
    ("+", 2): ("__add__", "__radd__"),
    ("-", 2): ("__sub__", "__rsub__"),
    ("*", 2): ("__mul__", "__rmul__"),
    ("/", 2): ("__truediv__", "__rtruediv__"),
    ("<", 2): ("__lt__",),
    ("<=", 2): ("__le__",),
    (">", 2): ("__gt__",),
    (">=", 2): ("__ge__",),
    ("-", 1): ("__neg__",),
    ("abs", 1): ("__abs__",),
}


class Expr:
    """Operator syntax shared by `Node` and `Observed` (`a + b`, `x < y`, `-x`, `abs(x)`); every method builds a
    new node. The methods of `SYNTAX` are bound by the operator classes that declare the symbol."""

    __slots__ = ()

    def __pos__(self) -> Node:
        return self  # type: ignore[return-value]

    def __bool__(self) -> bool:
        raise TypeError(
            "a circuit node has no truth value while the circuit is being built; "
            "use hs.ops.select(cond, a, b) for a choice made per event"
        )


class Node(Expr):
    """One value of a circuit: an input, constant, parameter or the output of an operator.

    Nodes are hash-consed: building the same operator on the same inputs twice returns the same node.
    `==` keeps Python's identity meaning (use `hs.ops.eq` for an equality node).
    """

    __slots__ = ("circuit", "index", "inputs", "name", "observed", "op", "struct_hash")

    def __init__(
        self,
        circuit: Circuit,
        index: int,
        op: Operator,
        inputs: tuple[Node, ...],
        observed: tuple[bool, ...],
        name: str,
        struct_hash: str,
    ) -> None:
        self.circuit = circuit
        self.index = index
        self.op = op
        self.inputs = inputs
        self.observed = observed
        self.name = name
        self.struct_hash = struct_hash

    @property
    def kind(self) -> str:
        """The operator kind, e.g. 'add', 'ewma', 'input', 'const', 'param'."""
        return self.op.kind

    @property
    def param_nodes(self) -> dict[str, Node]:
        """Operator parameters bound to learnable parameter nodes (tunable at run time)."""
        return {k: v for k, v in self.op.params.items() if isinstance(v, Node)}

    def __repr__(self) -> str:
        return f"<Node {self.name} ({self.op.describe()}) of {self.circuit.name}>"


class Observed(Expr):
    """A read of `node` that does not trigger the reading operator (see `hs.observe`)."""

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        if not isinstance(node, Node):
            raise TypeError(f"observe() takes a circuit node, got {type(node).__name__}")
        self.node = node

    def __repr__(self) -> str:
        return f"observe({self.node.name})"


def bind_syntax(op: type[Operator]) -> None:
    """Make `op.symbol` build an `op` node on `Node` and `Observed` (e.g. `a + b` for Add); one class per symbol."""
    names = SYNTAX.get((op.symbol or "", op.arity or 0))
    if names is None:
        known = ", ".join(f"{s!r} ({n} inputs)" for s, n in SYNTAX)
        raise CircuitError(f"operator {op.kind}: no Python syntax {op.symbol!r} for {op.arity} inputs (known: {known})")
    bound = getattr(Expr, names[0], None)
    owner = getattr(bound, "operator", None)
    if owner is not None and _qualified(owner) != _qualified(op):
        raise CircuitError(f"operator {op.kind}: the syntax {op.symbol!r} already builds {owner.kind} nodes")
    for i, name in enumerate(names):
        method = _unary(op) if op.arity == 1 else _binary(op, reflected=i == 1)
        method.__name__ = method.__qualname__ = name
        method.operator = op  # type: ignore[attr-defined]
        setattr(Expr, name, method)


def _qualified(op: type[Operator]) -> str:
    return f"{op.__module__}.{op.__qualname__}"


def _unary(op: type[Operator]) -> Any:
    def method(self: Expr) -> Node:
        return op()(self)

    syntax = f"{op.symbol}(x)" if (op.symbol or "").isidentifier() else f"{op.symbol}x"
    method.__doc__ = f"{syntax}: {op.kind}(x)"
    return method


def _binary(op: type[Operator], *, reflected: bool) -> Any:
    def method(self: Expr, other: Any) -> Node:
        return op()(other, self) if reflected else op()(self, other)

    method.__doc__ = f"a {op.symbol} b: {op.kind}(a, b)"
    return method


def observe(node: Node) -> Observed:
    """Mark `node` as an observed input: the operator reads its current value but does not run when it
    changes. Example: a trade signal reads the current mid but only runs on trades."""
    return Observed(node)
