"""Nodes of a circuit graph and the expression syntax (`a + b`, `x < y`, `-x`, `abs(x)`) built on them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.circuit.operator import Operator


class Expr:
    """Operator overloading shared by `Node` and `Observed`; every method builds a new node."""

    __slots__ = ()

    def _binary(self, kind: str, other: Any, *, reverse: bool = False) -> Node:
        from harness.ops import arith

        op = arith.BINARY[kind]()
        return op(other, self) if reverse else op(self, other)

    def _unary(self, kind: str) -> Node:
        from harness.ops import arith

        return arith.UNARY[kind]()(self)

    def __add__(self, other: Any) -> Node:
        return self._binary("add", other)

    def __radd__(self, other: Any) -> Node:
        return self._binary("add", other, reverse=True)

    def __sub__(self, other: Any) -> Node:
        return self._binary("sub", other)

    def __rsub__(self, other: Any) -> Node:
        return self._binary("sub", other, reverse=True)

    def __mul__(self, other: Any) -> Node:
        return self._binary("mul", other)

    def __rmul__(self, other: Any) -> Node:
        return self._binary("mul", other, reverse=True)

    def __truediv__(self, other: Any) -> Node:
        return self._binary("div", other)

    def __rtruediv__(self, other: Any) -> Node:
        return self._binary("div", other, reverse=True)

    def __lt__(self, other: Any) -> Node:
        return self._binary("lt", other)

    def __le__(self, other: Any) -> Node:
        return self._binary("le", other)

    def __gt__(self, other: Any) -> Node:
        return self._binary("gt", other)

    def __ge__(self, other: Any) -> Node:
        return self._binary("ge", other)

    def __neg__(self) -> Node:
        return self._unary("neg")

    def __pos__(self) -> Node:
        return self  # type: ignore[return-value]

    def __abs__(self) -> Node:
        return self._unary("abs")

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


def observe(node: Node) -> Observed:
    """Mark `node` as an observed input: the operator reads its current value but does not run when it
    changes. Example: a trade signal reads the current mid but only runs on trades."""
    return Observed(node)
