"""Memory planning: liveness analysis and buffer assignment for a graph's intermediate values.

Every value a node produces (constants excepted: they belong to the plan) needs a buffer from its
producer until its last reader. The planner walks the nodes in order, gives each output an offset
in one arena (best fit among freed blocks, else the end), and frees a value's block after its last
use; an elementwise node whose input dies right there and has the same size writes **in place**
into that input's block. Graph outputs are never freed; graph inputs are the caller's and are not
counted. The result is ``graph.meta["memory_plan"]`` (a :class:`MemoryPlan`): the offset of every
value, the arena size (the planned peak), the peak of live bytes (a lower bound no plan can beat)
and the bytes a plan without reuse would need.

>>> import numpy as np
>>> from suanli.graph import Graph
>>> g = Graph()
>>> x = g.add_input((1024,), np.float32)
>>> a = g.add_node("exp", [x], shape=(1024,), dtype=np.float32)
>>> b = g.add_node("tanh", [a], shape=(1024,), dtype=np.float32)     # in place: a dies here
>>> g.outputs = [g.add_node("sum", [b], {"axes": (0,), "keepdims": False}, shape=(), dtype=np.float32)]
>>> plan = plan_memory(g).meta["memory_plan"]
>>> plan.arena_bytes, plan.naive_bytes, plan.in_place
(4160, 8256, 1)
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ...graph import Graph, evaluate_dims
from ..group import ELEMENTWISE_OPS

__all__ = ["MemoryPlan", "plan_memory"]

ALIGN = 64


def _aligned(n: int) -> int:
    return max(ALIGN, (n + ALIGN - 1) // ALIGN * ALIGN)


@dataclass
class MemoryPlan:
    offsets: dict[int, int] = field(default_factory=dict)     # value id -> byte offset in the arena
    sizes: dict[int, int] = field(default_factory=dict)       # value id -> aligned bytes
    arena_bytes: int = 0                                      # planned peak (the arena's size)
    live_peak_bytes: int = 0                                  # max over time of live bytes
    naive_bytes: int = 0                                      # one buffer per value, no reuse
    in_place: int = 0                                         # outputs written over a dying input

    def summary(self) -> str:
        mib = 1 / (1 << 20)
        saved = 1 - self.arena_bytes / self.naive_bytes if self.naive_bytes else 0.0
        return (f"memory plan: {len(self.offsets)} buffers, arena {self.arena_bytes * mib:.2f} MiB "
                f"(live-set peak {self.live_peak_bytes * mib:.2f} MiB; no reuse {self.naive_bytes * mib:.2f} MiB, "
                f"{saved:.0%} saved), {self.in_place} in-place")


class _Arena:
    """Free blocks kept sorted by offset, coalesced on free; best-fit allocation."""

    def __init__(self) -> None:
        self.free: list[tuple[int, int]] = []     # (offset, size)
        self.end = 0

    def alloc(self, size: int) -> int:
        best = None
        for k, (off, sz) in enumerate(self.free):
            if sz >= size and (best is None or sz < self.free[best][1]):
                best = k
        if best is None:
            if self.free and self.free[-1][0] + self.free[-1][1] == self.end:   # grow the last hole
                off, sz = self.free.pop()
                self.end = off + size
                return off
            off = self.end
            self.end += size
            return off
        off, sz = self.free[best]
        if sz == size:
            self.free.pop(best)
        else:
            self.free[best] = (off + size, sz - size)
        return off

    def release(self, off: int, size: int) -> None:
        k = bisect.bisect(self.free, (off, size))
        self.free.insert(k, (off, size))
        if k + 1 < len(self.free) and off + size == self.free[k + 1][0]:          # merge right
            self.free[k] = (off, size + self.free.pop(k + 1)[1])
        if k > 0 and self.free[k - 1][0] + self.free[k - 1][1] == off:            # merge left
            prev = self.free.pop(k - 1)
            self.free[k - 1] = (prev[0], prev[1] + self.free[k - 1][1])


def plan_memory(graph: Graph, bindings: Mapping[str, int] | None = None) -> Graph:
    """Attach a :class:`MemoryPlan` to ``graph.meta["memory_plan"]``; the graph is unchanged.
    Symbolic sizes are evaluated at ``bindings`` (default: the sizes seen while tracing)."""
    env = dict(bindings or graph.meta.get("sym_hints") or {})
    last: dict[int, int] = {}
    for k, n in enumerate(graph.nodes):
        for v in n.inputs:
            last[v.id] = k
    pinned = {v.id for v in graph.outputs}
    plan = MemoryPlan()
    arena = _Arena()
    alive: dict[int, tuple[int, int]] = {}            # value id -> (offset, size) while it lives
    live = 0
    for k, node in enumerate(graph.nodes):
        if node.op == "constant":
            continue
        dying = list({v.id: v for v in node.inputs
                      if last.get(v.id) == k and v.id in alive and v.id not in pinned}.values())
        for out in node.outputs:
            nbytes = int(np.prod(evaluate_dims(out.shape, env), dtype=np.int64)) * out.dtype.itemsize
            size = _aligned(nbytes)
            plan.naive_bytes += size
            donor = None
            if node.op in ELEMENTWISE_OPS:
                donor = next((v for v in dying if alive[v.id][1] == size), None)
            if donor is not None:                     # write over the input that dies here
                dying.remove(donor)
                alive[out.id] = alive.pop(donor.id)
                plan.in_place += 1
            else:
                alive[out.id] = (arena.alloc(size), size)
                live += size
            plan.offsets[out.id], plan.sizes[out.id] = alive[out.id]
        plan.live_peak_bytes = max(plan.live_peak_bytes, live)
        for v in dying:                               # free after the node ran (its inputs were read)
            arena.release(*alive.pop(v.id))
            live -= plan.sizes[v.id]
        for out in node.outputs:                      # produced but never read: free right away
            if out.id not in last and out.id not in pinned and out.id in alive:
                arena.release(*alive.pop(out.id))
                live -= plan.sizes[out.id]
    plan.arena_bytes = arena.end
    graph.meta["memory_plan"] = plan
    return graph
