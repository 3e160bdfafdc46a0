"""``layout_nchwc``: run chains of convolutions in the channel-blocked layout NCHW16c (inference).

The pass rewrites a frozen inference graph (after :func:`fold_affine`, before elementwise fusion):

1. every ``conv2d`` with a constant weight that :func:`choose_layout` sends to the blocked kernel
   becomes ``to_nchwc -> conv2d_nchwc -> from_nchwc``, with the weight re-laid out once here
   (``ops.layout.block_weight``) and the single-use chain after it -- per-channel bias ``add``,
   residual ``add``, ``relu`` -- folded into the kernel's epilogue;
2. layout-agnostic elementwise ops (``compiler.group.ELEMENTWISE_OPS`` on operands of one shape, or
   one-element constants) whose tensor operands are all available blocked run on the blocked tensors;
3. ``max_pool2d`` of a blocked tensor runs blocked (``max_pool2d_nchwc``);
4. ``to_nchwc(from_nchwc(v))`` is ``v``: back-to-back reorders cancel, so a chain or region keeps
   the blocked layout and reorders remain only at its boundaries; DCE drops the unread ones.

Preserves: the graph's values at its outputs (the blocked kernel sums in another order: float32
results differ by rounding, ~1e-6 relative). Padded channels (when a channel count is not a multiple
of the block) stay exactly zero: an elementwise op joins a region with padding only if it maps zeros
to zeros.

>>> import numpy as np
>>> from suanli.graph import Graph, interpret
>>> g = Graph()
>>> x = g.add_input((1, 32, 8, 8), np.float32)
>>> w = g.add_constant(np.ones((32, 32, 1, 1), np.float32) / 32)
>>> a = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1)
>>> y = g.add_node("conv2d", [x, w], a, shape=(1, 32, 8, 8))
>>> z = g.add_node("relu", [y], shape=(1, 32, 8, 8))
>>> g.outputs = [g.add_node("conv2d", [z, w], a, shape=(1, 32, 8, 8))]
>>> before = interpret(g, np.ones((1, 32, 8, 8), np.float32))[0]
>>> g = layout_nchwc(g)
>>> [n.op for n in g.nodes if n.op != "constant"]
['to_nchwc', 'conv2d_nchwc', 'conv2d_nchwc', 'from_nchwc']
>>> bool(np.allclose(interpret(g, np.ones((1, 32, 8, 8), np.float32))[0], before))
True
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ...graph import Graph, Node, Value
from ...graph.ir import has_sym
from ..group import ELEMENTWISE_OPS
from .affine import _channel_vector, _const
from .cleanup import dce

__all__ = ["layout_nchwc", "choose_layout", "BLOCK"]

BLOCK = 16     # channels per block: 16 float32 = one AVX-512 register (block 8 measured 1.3-2.5x slower)


def choose_layout(x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
                  padding: tuple[tuple[int, int], tuple[int, int]], dilation: Sequence[int], groups: int,
                  block: int = BLOCK) -> str:
    """``'nchwc'`` if a conv2d layer should run blocked (``native/kernels/conv_nchwc.c``), else ``'nchw'``
    (``conv2d`` and its own per-layer policy, ``inference.conv_kernels.choose_conv_kernel``).

    Measured on the 2-core AVX-512 VM, float32, block 16 (block 8: 1.3-2.5x slower), with
    ``python bench/layout.py --layers --single-thread``: one thread each (OpenBLAS too), CPU time of the
    calling thread, median of 9 interleaved rounds -- the machine was shared with 3-4 other agents and
    CPU time is the measure they disturb least. ``conv2d`` runs its own per-layer kernel
    (``choose_conv_kernel``); times in ms, speed-up = conv2d / nchwc.

    ===============================  ===========  ======  =====  ========  =====================
    layer (N, C, H, W) -> O, k, s    conv2d       conv2d  nchwc  speed-up  choice
    ===============================  ===========  ======  =====  ========  =====================
    (1, 64, 56, 56) -> 64, 3x3 s1    Winograd     1.42    1.36   1.04x     nchw (Winograd)
    (1, 128, 28, 28) -> 128, 3x3 s1  Winograd     1.61    1.34   1.20x     nchw (Winograd)
    (8, 64, 56, 56) -> 64, 3x3 s1    Winograd     8.45    10.4   0.82x     nchw (Winograd)
    (8, 128..256) 3x3 s1             Winograd     8.4-9.9 9.5-10 0.89-0.97 nchw (Winograd)
    (8, 512, 7, 7) -> 512, 3x3 s1    Winograd     12.5    11.7   1.07x     nchw (Winograd)
    (1, 256, 14, 14) -> 256, 3x3 s1  direct       1.34    1.40   0.96x     nchwc (keeps a region)
    (1, 512, 7, 7) -> 512, 3x3 s1    direct       1.82    1.67   1.09x     nchwc
    (1|8, 64..256) 3x3 s2            im2col       1.4-12  0.8-5.7 1.7-2.2x nchwc
    (1|8, 64..256) 1x1 s2            1x1 GEMM     0.14-1.2 0.1-0.9 1.3-1.4x nchwc
    (1, 3, 224, 224) -> 64, 7x7 s2   im2col       2.87    1.17   2.45x     nchwc, input NHWC (bi = 3)
    (same, input padded to 16 ch)    im2col       4.27    6.98   0.61x     (not done: 13/16 zeros)
    ===============================  ===========  ======  =====  ========  =====================

    The blocked kernel then ran at 110-200 GFLOP/s per thread (~2x that on two threads), and the
    Winograd layers stayed NCHW (at batch 1 the blocked kernel was only 1.04-1.2x faster there, at batch
    8 slower; ResNet-18 end to end slower with them blocked, 219 against 208 ms CPU time at batch 8) --
    no longer so, see below. Grouped convolutions (no blocked kernel) and outputs narrower than a block
    stay NCHW; the rest goes blocked. An input with fewer channels than a block is read planar, as blocks
    of one channel (``to_nchwc(x, 1)``: a view of the NCHW input, no reorder) rather than padded to 16
    (13 of 16 lanes would be zeros). The table's stem row is the earlier NHWC read (one block of all 3
    channels, ``to_nchwc(x, 3)``); read planar by the two-block kernel it went 1.54 -> 1.26 ms on one
    thread and lost its 0.19 ms reorder. The max pooling after it runs
    blocked too (``max_pool2d_nchwc``: 0.18 against 0.83 ms at batch 1, 2.9 against 19.6 ms at batch
    8, 1x64x112x112 -> 56x56). Under load, with two
    threads, the margin is much larger: OpenBLAS's own two threads wait for each other when another
    process takes a core (im2col and 1x1 layers then take 4-60 ms instead of 0.1-1.5 ms), while the
    blocked kernel's static two-way split merely slows down (``docs/benchmarks.md``).

    The Winograd layers now go blocked too. The table above predates the two-block kernel (110-200
    GFLOP/s per thread then; 225-245 on the 3x3 layers now), when Winograd kept them at one thread. At
    two threads Winograd's batch-1 split scaled poorly (1x64x56x56: 3.7 -> 3.2 ms for four layers),
    and ResNet-18 went 15.0 -> 13.2 ms blocked. With the two-block kernel, one thread too: batch 1
    19.4-21.2 -> 18.4 ms, batch 8 160-181 -> 144.6 ms (per image, Winograd's stage-3 and -4 layers took
    1.2 and 1.5 ms against the blocked kernel's 1.0 and 1.1, and each one cost two reorders and an
    unfused ReLU).

    >>> choose_layout((1, 512, 7, 7), (512, 512, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    'nchwc'
    >>> choose_layout((8, 64, 56, 56), (64, 64, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    'nchwc'
    >>> choose_layout((1, 32, 56, 56), (32, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 32)   # depthwise
    'nchw'
    """
    if groups != 1 or len(x_shape) != 4 or w_shape[0] < block:
        return "nchw"
    return "nchwc"


Policy = Callable[..., str]


def _users(graph: Graph) -> dict[int, list[Node]]:
    users: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for v in n.inputs:
            users.setdefault(v.id, []).append(n)
    return users


def _constant(graph_nodes: list[Node], array: np.ndarray) -> Value:
    v = Value(array.shape, array.dtype)
    graph_nodes.append(Node("constant", [], {"value": array}, [v]))
    return v


def _prim(nodes: list[Node], op: str, inputs: list[Value], attrs: dict, shape, dtype,
          out: Value | None = None) -> Value:
    """Append a one-output primitive node writing ``out`` (or a new value of ``shape``/``dtype``)."""
    out = out if out is not None else Value(shape, dtype)
    nodes.append(Node(op, inputs, attrs, [out]))
    return out


def _topo_sort(graph: Graph) -> None:
    """Reorder ``graph.nodes`` so every node follows its inputs' producers, otherwise keeping the
    current order (rewrites above place a node where the chain it replaces started)."""
    index = {id(n) for n in graph.nodes}
    done: set[int] = set()
    order: list[Node] = []
    for root in graph.nodes:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            stack.append((node, True))
            for v in reversed(node.inputs):
                p = v.producer
                if p is not None and id(p) in index and id(p) not in done:
                    stack.append((p, False))
    graph.nodes = order


def _epilogue(start: Value, channels: int, users: dict[int, list[Node]], outputs: set[int], removed: set[int]
              ) -> tuple[list[Node], np.ndarray | None, Value | None, bool]:
    """The single-use chain after a conv that its kernel can absorb: ``[+ bias] [+ residual] [relu]``."""
    chain: list[Node] = []
    bias = residual = None
    relu = False
    cur = start

    def next_user(op: str) -> Node | None:
        if cur.id in outputs or len(users.get(cur.id, ())) != 1:
            return None
        node = users[cur.id][0]
        if id(node) in removed or node.op != op or tuple(node.outputs[0].shape) != tuple(cur.shape):
            return None
        return node

    node = next_user("add")
    if node is not None and len(node.inputs) == 2:
        other = node.inputs[1] if node.inputs[0] is cur else node.inputs[0]
        c = _const(other)
        vec = None if c is None or other is cur else _channel_vector(c, 4, 1, channels)
        if vec is not None:
            bias, cur = vec, node.outputs[0]
            chain.append(node)
    node = next_user("add")
    if node is not None and len(node.inputs) == 2:
        other = node.inputs[1] if node.inputs[0] is cur else node.inputs[0]
        if other is not cur and _const(other) is None and tuple(other.shape) == tuple(cur.shape) \
                and other.dtype == cur.dtype:
            residual, cur = other, node.outputs[0]
            chain.append(node)
    node = next_user("relu")
    if node is not None:
        relu = True
        chain.append(node)
    return chain, bias, residual, relu


def _layout_free(v: Value, out: Value, twin: dict[int, Value]) -> bool:
    """An operand an elementwise op can read in either layout: a blocked tensor of the output's
    shape and dtype, or a one-element constant (a scalar broadcasts the same way in both)."""
    if v.dtype != out.dtype:
        return False
    if v.id in twin:
        return tuple(v.shape) == tuple(out.shape) and _const(v) is None
    c = _const(v)
    return c is not None and c.size == 1 and c.ndim <= 4


def _zero_preserving(node: Node) -> bool:
    """True if the elementwise ``node`` maps all-zero operands to zeros (padded channels stay zero)."""
    from ...graph.interpret import run_primitive
    try:
        probe = [np.zeros((1,), v.dtype) if _const(v) is None else _const(v).reshape(1) for v in node.inputs]
        out = run_primitive(node.op, probe, node.attrs)
    except Exception:  # noqa: BLE001 - an op that cannot run on a probe is not layout-agnostic here
        return False
    return bool(np.all(out == 0))


def layout_nchwc(graph: Graph, block: int = BLOCK, policy: Policy = choose_layout) -> Graph:
    """Blocked NCHW``block``c layout through conv chains; see the module docstring. ``policy`` picks
    the layers (default :func:`choose_layout`)."""
    from ...ops.layout import block_bias, block_weight
    outputs = {v.id for v in graph.outputs}
    users = _users(graph)
    twin: dict[int, Value] = {}        # NCHW value id -> the same tensor, blocked
    narrow: dict[int, Value] = {}      # value id -> the same tensor as planar blocks of one channel
    removed: set[int] = set()
    nodes: list[Node] = []

    def blocked(v: Value, out: list[Node], blk: int = block) -> Value:
        cache = twin if blk == block else narrow
        if v.id not in cache:
            N, C, H, W = v.shape
            cache[v.id] = _prim(out, "to_nchwc", [v], {"block": blk}, (N, -(-C // blk), H, W, blk), v.dtype)
        return cache[v.id]

    # 1. convolutions (+ their bias / residual / relu epilogue) -> blocked conv between reorders
    for node in graph.nodes:
        if id(node) in removed:
            continue
        w = _const(node.inputs[1]) if node.op == "conv2d" and len(node.inputs) == 2 else None
        if w is None:
            nodes.append(node)
            continue
        x, out = node.inputs[0], node.outputs[0]
        a = node.attrs
        if w.ndim != 4 or x.dtype not in (np.float32, np.float64) or w.dtype != x.dtype \
                or has_sym(x.shape) or policy(tuple(x.shape), w.shape, a["stride"], a["padding"],
                                              a["dilation"], a["groups"], block) != "nchwc":
            nodes.append(node)
            continue
        O = w.shape[0]
        chain, bias, residual, relu = _epilogue(out, O, users, outputs, removed)
        removed.update(id(n) for n in chain)
        final = chain[-1].outputs[0] if chain else out
        in_block = block if x.shape[1] >= block else 1    # fewer channels: planar NCHW, no reorder
        xb = blocked(x, nodes, in_block)
        wb = _constant(nodes, block_weight(w, block, in_block))
        bb = _constant(nodes, block_bias(bias, O, block, w.dtype))
        ins = [xb, wb, bb] + ([blocked(residual, nodes)] if residual is not None else [])
        N, _, Ho, Wo = out.shape
        yb = _prim(nodes, "conv2d_nchwc", ins, {"stride": a["stride"], "padding": a["padding"],
                                                "dilation": a["dilation"], "relu": relu},
                   (N, -(-O // block), Ho, Wo, block), x.dtype)
        _prim(nodes, "from_nchwc", [yb], {"channels": O}, None, None, out=final)
        twin[final.id] = yb
    graph.nodes = nodes
    _topo_sort(graph)

    # 2. elementwise ops and 3. max pooling whose operands are all blocked run blocked;
    # 4. reorders of reorders cancel
    nodes = []
    for node in graph.nodes:
        out = node.outputs[0] if len(node.outputs) == 1 else None
        if node.op == "to_nchwc" and node.inputs[0].id in twin and twin[node.inputs[0].id] is not out:
            src = twin[node.inputs[0].id]
            if src.shape == out.shape:
                graph.replace_all_uses(out, src)
                continue
        if node.op == "max_pool2d" and node.inputs[0].id in twin:     # pooling inside a region
            xb = twin[node.inputs[0].id]
            N, _, Ho, Wo = out.shape
            ob = _prim(nodes, "max_pool2d_nchwc", [xb], node.attrs, (N, xb.shape[1], Ho, Wo, block), out.dtype)
            _prim(nodes, "from_nchwc", [ob], {"channels": out.shape[1]}, None, None, out=out)
            twin[out.id] = ob
            continue
        if node.op in ELEMENTWISE_OPS and out is not None and len(out.shape) == 4 \
                and any(v.id in twin for v in node.inputs) \
                and all(_layout_free(v, out, twin) for v in node.inputs) \
                and (out.shape[1] % block == 0 or _zero_preserving(node)):
            ins = [twin.get(v.id, v) for v in node.inputs]
            shape = next(twin[v.id].shape for v in node.inputs if v.id in twin)
            ob = _prim(nodes, node.op, ins, node.attrs, shape, out.dtype)
            _prim(nodes, "from_nchwc", [ob], {"channels": out.shape[1]}, None, None, out=out)
            twin[out.id] = ob
            continue
        nodes.append(node)
    graph.nodes = nodes
    return dce(graph)
