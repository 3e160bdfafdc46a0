"""Elementwise fusion: chains of elementwise primitives become one ``fused`` node running a
generated C kernel (:mod:`suanli.compiler.kernels`), one pass over memory instead of one per op.

A group grows from an elementwise node by absorbing consumers that are elementwise over the same
output shape (the loop domain; smaller operands broadcast in). It stays convex: a consumer joins
only if no node outside the group reads a group value before that consumer, so the fused node can
sit where the group's last member was. Values read after the group (or returned) become the fused
node's outputs; 0-d constants are inlined as C literals. Groups of fewer than ``min_nodes``, or with
a dtype the code generator does not take (float16, integers), stay as they are. Shapes must be
concrete (a ``dynamic=True`` plan is left unfused).

The node: ``op="fused"``, ``attrs={"ops": "mul+add+tanh", "group": FusedGroup, "kernel":
FusedKernel}``; the kernel runs natively or, without a compiler, as the NumPy reference.

>>> import numpy as np
>>> from suanli.graph import Graph, interpret
>>> g = Graph()
>>> x, b = g.add_input((2, 3), np.float32), g.add_input((3,), np.float32)
>>> y = g.add_node("add", [x, b], shape=(2, 3), dtype=np.float32)
>>> g.outputs = [g.add_node("tanh", [y], shape=(2, 3), dtype=np.float32)]
>>> fused = fuse_elementwise(g)
>>> [(n.op, n.attrs["ops"]) for n in fused.nodes]
[('fused', 'add+tanh')]
>>> bool(interpret(fused, np.zeros((2, 3), np.float32), np.ones(3, np.float32))[0][0, 0] == np.tanh(np.float32(1)))
True
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from ... import native
from ...graph import Graph, Node, Value, has_sym
from ..codegen import _preamble, generate
from ..codegen_rows import lower_native_ops
from ..group import ELEMENTWISE_OPS, FusedGroup
from ..kernels import FusedKernel, _has_libmvec, compile_flags

__all__ = ["fuse_elementwise", "fuse_stack", "lower_native_ops", "StackKernel"]

_DTYPES = ("float32", "float64", "bool")


def _fusible(node: Node) -> bool:
    if node.op not in ELEMENTWISE_OPS or len(node.outputs) != 1 or node.subgraphs:
        return False
    values = [node.outputs[0], *node.inputs]
    return all(str(v.dtype) in _DTYPES and not has_sym(v.shape) for v in values)


def _scalar_constant(v: Value, dtype) -> float | bool | None:
    p = v.producer
    if p is None or p.op != "constant" or "fill" in p.attrs or v.shape != () or v.dtype != dtype:
        return None
    return p.attrs["value"].item()


def _group(members: list[Node], external: list[Value], outputs: list[Value], name: str) -> FusedGroup | None:
    """The members as a :class:`FusedGroup`, or None if the code generator does not take them."""
    group = FusedGroup(name)
    env: dict[int, object] = {v.id: group.input(v.shape, v.dtype) for v in external}
    try:
        for n in members:
            args = [env[v.id] if v.id in env else _scalar_constant(v, n.outputs[0].dtype) for v in n.inputs]
            env[n.outputs[0].id] = group.call(n.op, *args, **n.attrs)
        group.output(*[env[v.id] for v in outputs])
        group.validate()
    except Exception:  # noqa: BLE001 - a group the generator does not take stays unfused
        return None
    return group


def build_all(groups: list[FusedGroup]) -> list[FusedKernel]:
    """Build every group's kernel from **one** C translation unit (one compiler run for the whole
    graph: 2-3x faster than one run per kernel); each kernel falls back on its own if it is missing."""
    if not groups:
        return []
    vector_math = _has_libmvec()
    dtypes = set()
    bodies = []
    for k, g in enumerate(groups):
        source = generate(g, symbol=f"kernel{k}", vector_math=vector_math)
        dtypes |= {v.dtype.name for v in g.inputs} | {n.out.dtype.name for n in g.nodes}
        bodies.append(source[source.index(f"void kernel{k}("):])
    source = _preamble(dtypes, vector_math) + "\n".join(bodies)
    if os.environ.get("SUANLI_DEBUG_CODEGEN", "0") not in ("", "0"):
        print(f"[suanli] codegen: source of {len(groups)} fused kernels\n{source}")
    name = "fused_graph_" + hashlib.sha256(source.encode()).hexdigest()[:8]
    lib = native.compile_source(name, source, flags=compile_flags(), libs=("mvec",) if vector_math else ())
    return [FusedKernel(g, bodies[k], lib, f"kernel{k}") for k, g in enumerate(groups)]


@dataclass(frozen=True)
class _Decl:
    shape: tuple
    dtype: np.dtype


@dataclass
class _StackGroup:
    """What a ``fused`` stack node declares (the verifier checks inputs/outputs)."""
    inputs: list
    outputs: list


class StackKernel:
    """``kernel(*pieces) -> [out]``: ``np.stack(pieces)`` (optionally permuted by ``perm`` and made
    contiguous) in one strided copy per piece, no zero-filled temporaries."""

    def __init__(self, shape: tuple, dtype: np.dtype, perm: tuple | None) -> None:
        self.shape, self.dtype, self.perm = tuple(shape), np.dtype(dtype), perm
        self.out_shape = self.shape if perm is None else tuple(self.shape[p] for p in perm)

    def __call__(self, *pieces: np.ndarray) -> list[np.ndarray]:
        out = np.empty(self.out_shape, self.dtype)
        view = out if self.perm is None else out.transpose(np.argsort(self.perm))
        for k, piece in enumerate(pieces):
            view[k] = piece
        return [out]


def _zero_scatter(v: Value, users: dict[int, list[Node]], returned: set[int]) -> tuple[int, Value] | None:
    """(k, piece) if ``v`` is ``index_put(zeros, piece, basic=(k,))`` read by one node only."""
    p = v.producer
    if p is None or p.op != "index_put" or len(p.inputs) != 2 or p.attrs.get("adv") != () \
            or p.attrs.get("accumulate") or len(users.get(v.id, ())) != 1 or v.id in returned:
        return None
    basic = p.attrs.get("basic")
    if not (isinstance(basic, tuple) and len(basic) == 1 and isinstance(basic[0], int) and basic[0] >= 0):
        return None
    z = p.inputs[0].producer
    if z is None or z.op != "constant" or tuple(p.inputs[1].shape) != tuple(v.shape[1:]):
        return None
    value = z.attrs.get("value")
    if not isinstance(value, np.ndarray) or value.shape != tuple(v.shape) or np.any(value):
        return None
    return basic[0], p.inputs[1]


def fuse_stack(graph: Graph) -> Graph:
    """``index_put(zeros, a, [0]) + index_put(zeros, b, [1]) + ...`` covering every slot of dim 0 --
    the backward of ``x.unbind(0)`` / a qkv split -- becomes one ``fused`` node that stacks the pieces
    (and absorbs a following ``permute``, writing the permuted layout directly so that the usual
    ``reshape`` after it is free). Exact: the sum adds zeros only."""
    users: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for v in n.inputs:
            users.setdefault(v.id, []).append(n)
    returned = {v.id for v in graph.outputs}
    replace: dict[int, Node] = {}
    dropped: set[int] = set()
    for root in graph.nodes:
        if root.op != "add" or id(root) in dropped or has_sym(root.outputs[0].shape):
            continue
        out = root.outputs[0]
        # the add tree: internal adds read once, leaves are zero scatters
        leaves, inner, stack = [], [root], list(root.inputs)
        while stack:
            v = stack.pop()
            p = v.producer
            if p is not None and p.op == "add" and len(users.get(v.id, ())) == 1 and v.id not in returned \
                    and tuple(v.shape) == tuple(out.shape):
                inner.append(p)
                stack.extend(p.inputs)
            else:
                leaves.append(v)
        found = [_zero_scatter(v, users, returned) for v in leaves]
        if any(f is None for f in found) or not out.shape or sorted(k for k, _ in found) != list(range(out.shape[0])):
            continue
        if any(v.dtype != out.dtype or tuple(v.shape) != tuple(out.shape) for v in leaves):
            continue
        pieces = [piece for _, piece in sorted(found, key=lambda f: f[0])]
        perm, final = None, out
        readers = users.get(out.id, ())
        if len(readers) == 1 and readers[0].op == "permute" and out.id not in returned:
            perm, final = tuple(readers[0].attrs["perm"]), readers[0].outputs[0]
            dropped.add(id(readers[0]))
        kernel = StackKernel(tuple(out.shape), out.dtype, perm)
        group = _StackGroup([_Decl(tuple(v.shape), v.dtype) for v in pieces], [_Decl(tuple(final.shape), final.dtype)])
        ops = f"stack[{len(pieces)}]" + (f"+permute{perm}" if perm else "")
        last = readers[0] if perm else root
        replace[id(last)] = Node("fused", pieces, {"ops": ops, "group": group, "kernel": kernel}, [final])
        dropped.update(id(n) for n in inner)
        dropped.update(id(v.producer) for v in leaves)
    if not replace:
        return graph
    kept = [replace.get(id(n), n) for n in graph.nodes if id(n) in replace or id(n) not in dropped]
    # the zero constants the scatters read may be dead now
    live = {v.id for n in kept for v in n.inputs} | returned
    graph.nodes = [n for n in kept if not (n.op == "constant" and all(v.id not in live for v in n.outputs))]
    return graph


def fuse_elementwise(graph: Graph, min_nodes: int = 2) -> Graph:
    """Replace convex groups of same-shape elementwise nodes by ``fused`` nodes (top level only);
    first, :func:`fuse_stack` turns sums of zero scatters (a split's backward) into stacks."""
    graph = fuse_stack(graph)
    nodes = graph.nodes
    users: dict[int, list[int]] = {}
    for k, n in enumerate(nodes):
        for v in n.inputs:
            users.setdefault(v.id, []).append(k)
    returned = {v.id for v in graph.outputs}
    taken: set[int] = set()
    groups: list[list[int]] = []
    for k, node in enumerate(nodes):
        if k in taken or not _fusible(node):
            continue
        domain = node.outputs[0].shape
        members = [k]
        while True:
            member_set = set(members)
            candidates = sorted({u for m in members for u in users.get(nodes[m].outputs[0].id, ())
                                 if u not in member_set and u not in taken and _fusible(nodes[u])
                                 and nodes[u].outputs[0].shape == domain})
            for c in candidates:
                if all(u > c for m in members for u in users.get(nodes[m].outputs[0].id, ())
                       if u not in member_set and u != c):
                    members.append(c)
                    break
            else:
                break
        if len(members) >= min_nodes:
            groups.append(sorted(members))
            taken.update(members)
    if not groups:
        return graph
    replace_at: dict[int, Node] = {}
    dropped: set[int] = set()
    pending = []
    for gi, members in enumerate(groups):
        member_nodes = [nodes[m] for m in members]
        produced = {n.outputs[0].id for n in member_nodes}
        external: list[Value] = []
        seen: set[int] = set()
        for n in member_nodes:
            for v in n.inputs:
                if v.id not in produced and v.id not in seen and _scalar_constant(v, n.outputs[0].dtype) is None:
                    seen.add(v.id)
                    external.append(v)
        outputs = [n.outputs[0] for n in member_nodes
                   if n.outputs[0].id in returned or any(u not in members for u in users.get(n.outputs[0].id, ()))]
        group = _group(member_nodes, external, outputs, f"g{gi}_" + "_".join(n.op for n in member_nodes)[:32])
        if group is not None:
            pending.append((members, group, external, outputs))
    kernels = build_all([p[1] for p in pending])
    for (members, group, external, outputs), kernel in zip(pending, kernels):
        ops = "+".join(nodes[m].op for m in members)
        replace_at[members[-1]] = Node("fused", external, {"ops": ops, "group": group, "kernel": kernel}, outputs)
        dropped.update(members)
    graph.nodes = [replace_at[k] if k in replace_at else n for k, n in enumerate(nodes)
                   if k in replace_at or k not in dropped]
    return graph
