"""Generic operators (`hs.ops`): one function per operator, plus the operator classes for `Op(params)(x)`.

Every function takes circuit nodes (or numbers, which become constants) and returns a new node. The functions
are made from the operator classes of this package (arith, stateful, timers) as they register themselves:
`OPERATORS` (kind -> class) is the table; see harness.ops.functions for how a class becomes its function.
"""

from __future__ import annotations

from harness.circuit.node import observe as observe
from harness.circuit.operator import Operator as Operator
from harness.circuit.operator import Param as Param
from harness.circuit.operator import StepContext as StepContext
from harness.circuit.operator import defined_in
from harness.ops import arith, numeric, stateful, timers  # noqa: F401  (defining the classes registers them)
from harness.ops.functions import HELPERS, function_for
from harness.ops.functions import Tunable as Tunable
from harness.ops.functions import Value as Value
from harness.ops.functions import linear as linear
from harness.ops.functions import tree_sum as tree_sum

OPERATORS = defined_in(__name__)  # kind -> class of every hs.ops operator, in the order of definition

for _op in OPERATORS.values():
    globals()[_op.__name__] = _op
    globals()[_op.kind] = function_for(_op)

__all__ = sorted(["Operator", "Param", "StepContext", *(op.__name__ for op in OPERATORS.values())])
__all__ += sorted(["observe", *(f.__name__ for f in HELPERS), *OPERATORS])
del _op, defined_in
