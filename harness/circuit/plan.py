"""Call plans: which nodes run, in which order, for each trigger and each timer callback.

This is the input of every backend (the reference interpreter and the C++ generator). Rules:
- A node runs in an event when one of its triggering (non-observed) inputs ran in that event; inputs run
  in the triggers that set them; a timer node runs its callback in its own timer plan.
- Constants and parameters never run; a stateless node computed only from them is *static*: evaluated
  when the kernel starts and whenever parameters change.
- A node is *stored* (lives in kernel state) when it is stateful, static, recorded, forced with `c.store`,
  or read in an event where it did not run (an input read by another trigger's plan, say); every other
  node is *ephemeral* (a local of the function that computes it).
- A node is *edge-triggered* when its operator says so, or when it is stateless and a triggering input is;
  edge nodes are invalid in every event except the one that produced them.
- Only nodes that outputs and stores depend on are planned (dead nodes are dropped).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.circuit.leaves import is_list_input
from harness.errors import CircuitError

if TYPE_CHECKING:
    from harness.circuit.builder import Circuit
    from harness.circuit.node import Node

NEVER_RUNS = ("input", "const", "param", "event")


@dataclass(frozen=True)
class TriggerPlan:
    """One trigger's straight-line program: `inputs` are set from the event, then `steps` run in order."""

    name: str
    inputs: tuple[Node, ...]  # includes the trigger's event node when the circuit uses it
    steps: tuple[Node, ...]

    @property
    def step_names(self) -> list[str]:
        """Names of the nodes computed by this trigger, in order."""
        return [n.name for n in self.steps]


@dataclass(frozen=True)
class TimerPlan:
    """A timer callback: `node` runs its timer callback, then `steps` (its dependents) run in order."""

    node: Node
    steps: tuple[Node, ...]

    @property
    def name(self) -> str:
        """The timer's name (the name of the node that owns it)."""
        return self.node.name


@dataclass(frozen=True)
class CircuitPlan:
    """Everything a backend needs to run a circuit, in a deterministic order."""

    circuit_name: str
    order: tuple[Node, ...]  # all live nodes, topological, ties broken by creation order
    triggers: dict[str, TriggerPlan]
    timers: tuple[TimerPlan, ...]  # in `order`: also the tie-break of timers due at the same time
    static: tuple[Node, ...]
    stored: frozenset[Node]
    edge: tuple[Node, ...]
    outputs: dict[str, Node]
    parameters: dict[str, Node]
    param_users: dict[str, tuple[tuple[Node, str], ...]]  # parameter -> (operator node, op parameter)

    def is_stored(self, node: Node) -> bool:
        """True when `node` lives in kernel state rather than as a local of a trigger function."""
        return node in self.stored

    def position(self, node: Node) -> int:
        """Index of `node` in `order`."""
        return self._positions[node]

    @property
    def _positions(self) -> dict[Node, int]:
        cache = self.__dict__.get("_pos")
        if cache is None:
            cache = {n: i for i, n in enumerate(self.order)}
            object.__setattr__(self, "_pos", cache)
        return cache


def build_plan(c: Circuit) -> CircuitPlan:
    """Validate `c` and compute its call plans; raise CircuitError naming the object and the rule."""
    _check_declarations(c)
    live = _live_nodes(c)
    order = _toposort(c, live)
    static, runs, edge = _classify(c, order)
    triggers, timers = _call_plans(c, order, runs)
    stored = _stored_nodes(c, order, static, runs, triggers, timers)
    param_users: dict[str, list[tuple[Node, str]]] = {name: [] for name in c.parameters}
    for node in order:
        for pname, pnode in node.param_nodes.items():
            param_users[pnode.name].append((node, pname))

    return CircuitPlan(
        circuit_name=c.name,
        order=tuple(order),
        triggers=triggers,
        timers=timers,
        static=tuple(n for n in order if n in static),
        stored=frozenset(stored),
        edge=tuple(n for n in order if n in edge),
        outputs=dict(c.outputs),
        parameters=dict(c.parameters),
        param_users={k: tuple(v) for k, v in param_users.items()},
    )


def _classify(c: Circuit, order: list[Node]) -> tuple[set[Node], dict[Node, set[str]], set[Node]]:
    """The static nodes, where each node runs ("trigger:NAME" / "timer:NAME" keys) and the edge-triggered nodes."""
    static: set[Node] = set()
    runs: dict[Node, set[str]] = {}
    edge: set[Node] = set()
    trig_of_event = {t._event: t.name for t in c.triggers.values() if t._event is not None}
    for node in order:
        kind = node.kind
        runs[node] = set()
        if kind == "input":
            runs[node] = {f"trigger:{t.name}" for t in c.triggers.values() if node in t.inputs}
        elif kind == "event":
            runs[node] = {f"trigger:{trig_of_event[node]}"}
        elif kind in ("const", "param"):
            pass
        elif (
            not node.op.stateful
            and not node.op.timer
            and all(m.kind in ("const", "param") or m in static for m in node.inputs)
        ):
            static.add(node)
        else:
            for m, obs in zip(node.inputs, node.observed, strict=True):
                if not obs:
                    runs[node] |= runs[m]
            if node.op.timer:
                runs[node].add(f"timer:{node.name}")
            if not runs[node]:
                raise CircuitError(
                    f"circuit {c.name!r}: node {node.name} ({node.op.describe()}) can never run: none of its "
                    "inputs is a triggering input (they are all observed, constants or parameters)"
                )
        if node.op.edge or (
            not node.op.stateful
            and not node.op.timer
            and any(m in edge for m, obs in zip(node.inputs, node.observed, strict=True) if not obs)
        ):
            edge.add(node)
    return static, runs, edge


def _call_plans(
    c: Circuit, order: list[Node], runs: dict[Node, set[str]]
) -> tuple[dict[str, TriggerPlan], tuple[TimerPlan, ...]]:
    """One plan per trigger and one per timer: the nodes that run there, in `order`."""

    def steps_of(key: str, exclude: Node | None = None) -> tuple[Node, ...]:
        return tuple(n for n in order if key in runs[n] and n.kind not in NEVER_RUNS and n is not exclude)

    triggers: dict[str, TriggerPlan] = {}
    for t in c.triggers.values():
        key = f"trigger:{t.name}"
        sets = t.inputs + tuple(n for n in order if n.kind == "event" and key in runs[n])
        triggers[t.name] = TriggerPlan(t.name, sets, steps_of(key))
    timers = tuple(TimerPlan(n, steps_of(f"timer:{n.name}", exclude=n)) for n in order if n.op.timer)
    return triggers, timers


def _stored_nodes(
    c: Circuit,
    order: list[Node],
    static: set[Node],
    runs: dict[Node, set[str]],
    triggers: dict[str, TriggerPlan],
    timers: tuple[TimerPlan, ...],
) -> set[Node]:
    """The nodes living in kernel state (module docstring); a list input read outside its own events is an error."""
    stored: set[Node] = static | set(c.outputs.values()) | set(c.stored)
    stored |= {n for n in order if n.op.stateful or n.op.timer}
    plans: list[tuple[str, tuple[Node, ...]]] = [(f"trigger:{name}", p.steps) for name, p in triggers.items()]
    plans += [(f"timer:{p.node.name}", p.steps) for p in timers]
    for key, steps in plans:
        for step in steps:
            for m in step.inputs:
                if m.kind not in ("const", "param") and key not in runs[m]:
                    stored.add(m)

    for node in stored:
        if is_list_input(node):
            reader = next((step for _, steps in plans for step in steps if node in step.inputs), None)
            raise CircuitError(
                f"circuit {c.name!r}: list input {node.name!r} is read in an event that does not set it"
                + (f" (by {reader.name})" if reader is not None else "")
                + "; list inputs exist only in their own events"
            )
    return stored


def _check_declarations(c: Circuit) -> None:
    for name, node in c.forwards.items():
        if not node.inputs:
            raise CircuitError(f"circuit {c.name!r}: forward {name!r} was declared but never bound (c.bind)")
    set_by_some = {n for t in c.triggers.values() for n in t.inputs}
    for name, node in c.inputs.items():
        if node not in set_by_some:
            raise CircuitError(
                f"circuit {c.name!r}: input {name!r} is not set by any trigger; "
                f"list it in a trigger, e.g. c.trigger('{name}', {name})"
            )
    if not c.outputs:
        raise CircuitError(f"circuit {c.name!r} has no outputs; declare one with c.output(name, node)")


def _deps(node: Node) -> list[Node]:
    return [*node.inputs, *node.param_nodes.values()]


def _live_nodes(c: Circuit) -> set[Node]:
    live: set[Node] = set()
    stack = [*c.outputs.values(), *c.stored, *c.inputs.values(), *c.parameters.values()]
    while stack:
        node = stack.pop()
        if node in live:
            continue
        live.add(node)
        stack.extend(_deps(node))
    return live


def _toposort(c: Circuit, live: set[Node]) -> list[Node]:
    """Kahn's algorithm with creation order as the tie-break, so the order is deterministic."""
    indegree = {n: 0 for n in live}
    users: dict[Node, list[Node]] = {n: [] for n in live}
    for n in live:
        for m in set(_deps(n)):
            indegree[n] += 1
            users[m].append(n)
    heap = [(n.index, n) for n in live if indegree[n] == 0]
    heapq.heapify(heap)
    order: list[Node] = []
    while heap:
        _, n = heapq.heappop(heap)
        order.append(n)
        for u in users[n]:
            indegree[u] -= 1
            if indegree[u] == 0:
                heapq.heappush(heap, (u.index, u))
    if len(order) != len(live):
        cycle = _find_cycle({n for n in live if indegree[n] > 0})
        path = " -> ".join(n.name for n in cycle)
        raise CircuitError(f"circuit {c.name!r} has a cycle: {path}; break it (a forward bound to its own descendant)")
    return order


def _find_cycle(nodes: set[Node]) -> list[Node]:
    """One cycle among `nodes` (each of which has an unresolved dependency), as a closed path."""
    start = min(nodes, key=lambda n: n.index)
    path: list[Node] = []
    seen: dict[Node, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min((m for m in _deps(node) if m in nodes), key=lambda m: m.index)
    cycle = path[seen[node] :]
    cycle.reverse()  # dependency order: each node feeds the next
    first = min(range(len(cycle)), key=lambda i: cycle[i].index)  # start at the earliest-made node
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]
