"""The inference pattern passes (suanli/compiler/passes/patterns.py) on ONNX models in the decomposed
form exporters write: each rewrite must happen (ops before/after) and change no result (against
onnxruntime, the unrewritten graph and torch); near misses must be left alone."""
from __future__ import annotations

import io
import math
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper

import suanli
from suanli.compiler import passes as P
from suanli.graph import interpret, verify
from suanli.inference import Session
from suanli.onnx import to_graph
from suanli.ops.fused_layers import ATTENTION, LINEAR
from suanli.ops.registry import apply

from oracles import check_fd

PATTERNS = ["eliminate_shape_ops", "fuse_layer_norm", "fuse_gelu", "fuse_attention", "fuse_linear"]
RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------ helpers
def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def const(name, value):
    value = np.asarray(value)
    dtype = {np.dtype(np.float32): T.FLOAT, np.dtype(np.float64): T.DOUBLE, np.dtype(np.int64): T.INT64}[value.dtype]
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_v", dtype, value.shape,
                                                                              value.reshape(-1).tolist()))


def model(nodes, inputs, outputs, inits=(), opset=14):
    """An ONNX model: ``inputs``/``outputs`` as (name, shape[, elem type]); ``inits`` as (name, array)."""
    def vi(spec):
        name, shape, *t = spec
        return helper.make_tensor_value_info(name, t[0] if t else T.FLOAT, list(shape))
    g = helper.make_graph(nodes, "g", [vi(s) for s in inputs], [vi(s) for s in outputs],
                          initializer=[helper.make_tensor(n, T.FLOAT, a.shape, a.reshape(-1).tolist())
                                       for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def ops(graph):
    return sorted(n.op for n in graph.nodes if n.op != "constant")


def ort_run(data, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, feeds)


def rewrite(data, pass_name, feeds):
    """(ops before, ops after) of one pass on the model's IR; checks the rewritten graph against the
    original graph and onnxruntime on ``feeds``."""
    graph = to_graph(data, example_inputs_=list(feeds.values()))
    before = ops(graph)
    want = interpret(graph, *feeds.values())
    rewritten = verify(getattr(P, pass_name)(graph.copy()))
    got = interpret(rewritten, *feeds.values())
    for g, w, o in zip(got, want, ort_run(data, feeds)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g, o, rtol=1e-5, atol=1e-5)
    # the whole inference pipeline too
    for g, o in zip(Session(data).run(None, feeds), ort_run(data, feeds)):
        np.testing.assert_allclose(g, o, rtol=1e-5, atol=1e-5)
    return before, ops(rewritten)


# ------------------------------------------------------------------------------------- layer norm
def layer_norm_nodes(square="Pow", affine=True, eps=1e-5, axes2=(-1,), root="Div"):
    """torch's opset-14 LayerNorm: ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1], keepdims=1),
             helper.make_node("Sub", ["x", "mean"], ["d"])]
    if square == "Pow":
        nodes += [const("two", np.float32(2.0)), helper.make_node("Pow", ["d", "two"], ["sq"])]
    else:
        nodes += [helper.make_node("Mul", ["d", "d"], ["sq"])]
    nodes += [helper.make_node("ReduceMean", ["sq"], ["var"], axes=list(axes2), keepdims=1),
              const("eps", np.asarray(eps, np.float32)), helper.make_node("Add", ["var", "eps"], ["ve"]),
              helper.make_node("Sqrt", ["ve"], ["std"])]
    if root == "Div":
        nodes += [helper.make_node("Div", ["d", "std"], ["n" if affine else "y"])]
    else:
        nodes += [helper.make_node("Reciprocal", ["std"], ["inv"]),
                  helper.make_node("Mul", ["d", "inv"], ["n" if affine else "y"])]
    if affine:
        nodes += [helper.make_node("Mul", ["n", "gamma"], ["s"]), helper.make_node("Add", ["s", "beta"], ["y"])]
    return nodes


@pytest.mark.parametrize("square", ["Pow", "Mul"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("root", ["Div", "Reciprocal"])
def test_layer_norm_fused(square, affine, root):
    inits = [("gamma", f32(16)), ("beta", f32(16))] if affine else []
    data = model(layer_norm_nodes(square, affine, eps=1e-5, root=root), [("x", (2, 5, 16))], [("y", (2, 5, 16))], inits)
    x = f32(2, 5, 16, scale=3.0) + 1.0
    before, after = rewrite(data, "fuse_layer_norm", {"x": x})
    assert "sqrt" in before and "sum" in before
    assert after == sorted(["standardize"] + (["mul", "add"] if affine else []))
    # and it is torch's layer norm
    got = Session(data).run(None, {"x": x})[0]
    w = torch.nn.functional.layer_norm(torch.tensor(x), (16,), eps=1e-5)
    if affine:
        w = w * torch.tensor(dict(inits)["gamma"]) + torch.tensor(dict(inits)["beta"])
    np.testing.assert_allclose(got, w.numpy(), rtol=1e-5, atol=1e-5)


def test_layer_norm_eps_carried_over():
    data = model(layer_norm_nodes(affine=False, eps=0.5), [("x", (3, 8))], [("y", (3, 8))])
    graph = P.fuse_layer_norm(to_graph(data))
    (node,) = [n for n in graph.nodes if n.op == "standardize"]
    assert node.attrs["axes"] == (1,) and node.attrs["eps"] == pytest.approx(0.5)


def test_layer_norm_near_misses_are_left_alone():
    x = f32(2, 4, 8)
    # the variance over another axis than the mean
    data = model(layer_norm_nodes(affine=False, axes2=(1,)), [("x", (2, 4, 8))], [("y", (2, 4, 8))])
    _, after = rewrite(data, "fuse_layer_norm", {"x": x})
    assert "standardize" not in after
    # eps is not one number (one per row)
    nodes = layer_norm_nodes(affine=False)
    nodes[nodes.index(next(n for n in nodes if n.output == ["eps"]))] = const("eps", np.full((2, 4, 1), 1e-5, np.float32))
    data = model(nodes, [("x", (2, 4, 8))], [("y", (2, 4, 8))])
    _, after = rewrite(data, "fuse_layer_norm", {"x": x})
    assert "standardize" not in after
    # the mean subtracted from another tensor than the one averaged
    nodes = [helper.make_node("ReduceMean", ["z"], ["mean"], axes=[-1], keepdims=1)] + layer_norm_nodes(affine=False)[1:]
    data = model(nodes, [("x", (2, 4, 8)), ("z", (2, 4, 8))], [("y", (2, 4, 8))])
    _, after = rewrite(data, "fuse_layer_norm", {"x": x, "z": f32(2, 4, 8)})
    assert "standardize" not in after
    # a "mean" dividing by the wrong count (ReduceSum / (K + 1))
    nodes = [const("ax", np.array([-1], np.int64)), helper.make_node("ReduceSum", ["x", "ax"], ["s0"], keepdims=1),
             const("k1", np.float32(9.0)), helper.make_node("Div", ["s0", "k1"], ["mean"])] + layer_norm_nodes(affine=False)[1:]
    data = model(nodes, [("x", (2, 4, 8))], [("y", (2, 4, 8))])
    before, after = rewrite(data, "fuse_layer_norm", {"x": x})
    assert "standardize" not in after and before.count("sum") == 2
    # squaring something else than the centred value: x * x
    nodes = layer_norm_nodes(square="Mul", affine=False)
    nodes[2] = helper.make_node("Mul", ["x", "x"], ["sq"])
    data = model(nodes, [("x", (2, 4, 8))], [("y", (2, 4, 8))])
    _, after = rewrite(data, "fuse_layer_norm", {"x": x})
    assert "standardize" not in after


# ------------------------------------------------------------------------------------------- gelu
def gelu_erf_nodes(root=math.sqrt(2), one=1.0):
    """torch's exact GELU export: Div/Erf/Add/Mul/Mul."""
    return [const("r2", np.float32(root)), helper.make_node("Div", ["x", "r2"], ["a"]),
            helper.make_node("Erf", ["a"], ["e"]), const("one", np.float32(one)),
            helper.make_node("Add", ["e", "one"], ["b"]), helper.make_node("Mul", ["x", "b"], ["c"]),
            const("half", np.float32(0.5)), helper.make_node("Mul", ["c", "half"], ["y"])]


def gelu_tanh_nodes(kappa=0.044715):
    """torch's tanh-GELU export (opset 14): x*x*x, 0.044715*, +x, *sqrt(2/pi), Tanh, 1+, x*, 0.5*."""
    return [helper.make_node("Mul", ["x", "x"], ["x2"]), helper.make_node("Mul", ["x", "x2"], ["x3"]),
            const("k", np.float32(kappa)), helper.make_node("Mul", ["k", "x3"], ["kx3"]),
            helper.make_node("Add", ["x", "kx3"], ["inner"]), const("c", np.float32(math.sqrt(2 / math.pi))),
            helper.make_node("Mul", ["c", "inner"], ["u"]), helper.make_node("Tanh", ["u"], ["t"]),
            const("one", np.float32(1.0)), helper.make_node("Add", ["one", "t"], ["b"]),
            helper.make_node("Mul", ["x", "b"], ["xb"]), const("half", np.float32(0.5)),
            helper.make_node("Mul", ["half", "xb"], ["y"])]


@pytest.mark.parametrize("form", ["erf", "tanh"])
def test_gelu_fused(form):
    nodes = gelu_erf_nodes() if form == "erf" else gelu_tanh_nodes()
    data = model(nodes, [("x", (4, 33))], [("y", (4, 33))])
    x = f32(4, 33, scale=3.0)
    before, after = rewrite(data, "fuse_gelu", {"x": x})
    assert "gelu" not in before and after == ["gelu"]
    graph = P.fuse_gelu(to_graph(data))
    assert [n.attrs["approximate"] for n in graph.nodes if n.op == "gelu"] == ["none" if form == "erf" else "tanh"]
    w = torch.nn.functional.gelu(torch.tensor(x), approximate="none" if form == "erf" else "tanh")
    np.testing.assert_allclose(Session(data).run(None, {"x": x})[0], w.numpy(), rtol=1e-5, atol=1e-6)


def test_gelu_near_misses_are_left_alone():
    x = f32(3, 7)
    for nodes in (gelu_erf_nodes(root=1.5), gelu_erf_nodes(one=2.0), gelu_tanh_nodes(kappa=0.05)):
        data = model(nodes, [("x", (3, 7))], [("y", (3, 7))])
        _, after = rewrite(data, "fuse_gelu", {"x": x})
        assert "gelu" not in after
    # erf of one tensor, multiplied by another
    nodes = gelu_erf_nodes()
    nodes[5] = helper.make_node("Mul", ["z", "b"], ["c"])
    data = model(nodes, [("x", (3, 7)), ("z", (3, 7))], [("y", (3, 7))])
    _, after = rewrite(data, "fuse_gelu", {"x": x, "z": f32(3, 7)})
    assert "gelu" not in after


# -------------------------------------------------------------------------------------- attention
def attention_nodes(scale_op="Div", scale=math.sqrt(8), mask=True, axis=-1):
    """torch's export of softmax(q @ k^T / sqrt(d) + mask) @ v with q/k/v (B, H, T, d)."""
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "kt"], ["qk"]),
             const("c", np.asarray(scale, np.float32)), helper.make_node(scale_op, ["qk", "c"], ["s"])]
    if mask:
        nodes += [helper.make_node("Add", ["s", "mask"], ["sm"])]
    nodes += [helper.make_node("Softmax", ["sm" if mask else "s"], ["p"], axis=axis),
              helper.make_node("MatMul", ["p", "v"], ["y"])]
    return nodes


@pytest.mark.parametrize("scale_op,mask", [("Div", True), ("Mul", True), ("Div", False)])
def test_attention_fused(scale_op, mask):
    b, h, t, d = 2, 3, 6, 8
    scale = math.sqrt(d) if scale_op == "Div" else 1 / math.sqrt(d)
    inputs = [("q", (b, h, t, d)), ("k", (b, h, t, d)), ("v", (b, h, t, d))] + ([("mask", (b, 1, 1, t))] if mask else [])
    data = model(attention_nodes(scale_op, scale, mask), inputs, [("y", (b, h, t, d))])
    feeds = {"q": f32(b, h, t, d), "k": f32(b, h, t, d), "v": f32(b, h, t, d)}
    if mask:
        feeds["mask"] = np.where(RNG.random((b, 1, 1, t)) < 0.3, -10000.0, 0.0).astype(np.float32)
    before, after = rewrite(data, "fuse_attention", feeds)
    assert "softmax" in before and after == ["attention", "permute"]
    (node,) = [n for n in P.fuse_attention(to_graph(data, example_inputs_=list(feeds.values()))).nodes
               if n.op == "attention"]
    assert node.attrs["scale"] == pytest.approx(1 / math.sqrt(d)) and len(node.inputs) == 3 + mask
    w = torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(feeds[n]) for n in "qkv"),
                                                         attn_mask=torch.tensor(feeds["mask"]) if mask else None)
    np.testing.assert_allclose(Session(data).run(None, feeds)[0], w.numpy(), rtol=1e-5, atol=1e-5)


def test_attention_near_misses_are_left_alone():
    b, h, t, d = 2, 3, 5, 4
    feeds = {"q": f32(b, h, t, d), "k": f32(b, h, t, d), "v": f32(b, h, t, d)}
    # softmax over the queries, not the keys
    data = model(attention_nodes(axis=2), [("q", (b, h, t, d)), ("k", (b, h, t, d)), ("v", (b, h, t, d)),
                                           ("mask", (b, 1, 1, t))], [("y", (b, h, t, d))])
    _, after = rewrite(data, "fuse_attention", {**feeds, "mask": f32(b, 1, 1, t)})
    assert "attention" not in after
    # a mask that widens the scores (batch 2 mask, batch 1 scores)
    q1 = {n: a[:1] for n, a in feeds.items()}
    data = model(attention_nodes(), [("q", (1, h, t, d)), ("k", (1, h, t, d)), ("v", (1, h, t, d)),
                                     ("mask", (2, 1, t, t))], [("y", (2, h, t, d))])
    _, after = rewrite(data, "fuse_attention", {**q1, "mask": f32(2, 1, t, t)})
    assert "attention" not in after
    # a scale that is not one number
    data = model(attention_nodes(scale=np.full((t, t), 2.0)), [("q", (b, h, t, d)), ("k", (b, h, t, d)),
                                                               ("v", (b, h, t, d)), ("mask", (b, 1, 1, t))],
                 [("y", (b, h, t, d))])
    _, after = rewrite(data, "fuse_attention", {**feeds, "mask": f32(b, 1, 1, t)})
    assert "attention" not in after
    # 3-D (no head axis)
    q3 = {n: a[0] for n, a in feeds.items()}
    nodes = attention_nodes(mask=False)
    nodes[0] = helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1])
    data = model(nodes, [("q", (h, t, d)), ("k", (h, t, d)), ("v", (h, t, d))], [("y", (h, t, d))])
    _, after = rewrite(data, "fuse_attention", q3)
    assert "attention" not in after


def test_attention_from_suanli_sdpa_causal():
    """suanli's own scaled_dot_product_attention traces to (q * c) @ k^T -> causal softmax -> @ v."""
    import suanli.nn.functional as F
    q, k, v = (f32(1, 2, 6, 4) for _ in range(3))

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    sess = Session(fn, tuple(suanli.tensor(a) for a in (q, k, v)))
    assert "attention" in ops(sess.graph) and "softmax" not in ops(sess.graph)
    want = torch.nn.functional.scaled_dot_product_attention(*map(torch.tensor, (q, k, v)), is_causal=True)
    np.testing.assert_allclose(sess(q, k, v)[0], want.numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------- linear
def linear_nodes(then="Reshape"):
    """torch's export of Linear on (B, T, K): MatMul by the transposed weight, Add(bias, product)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["b", "mm"], ["lin"])]
    if then == "Reshape":
        nodes += [const("shape", np.array([2, 5, 2, 3], np.int64)), helper.make_node("Reshape", ["lin", "shape"], ["y"])]
    else:
        nodes += [helper.make_node(then, ["lin"], ["y"])]
    return nodes


def test_linear_fused():
    data = model(linear_nodes(), [("x", (2, 5, 4))], [("y", (2, 5, 2, 3))], [("w", f32(4, 6)), ("b", f32(6))])
    before, after = rewrite(data, "fuse_linear", {"x": f32(2, 5, 4)})
    assert before == ["add", "matmul", "reshape"] and after == ["linear", "reshape"]


def test_linear_left_to_elementwise_fusion_before_an_activation():
    data = model(linear_nodes("Relu"), [("x", (2, 5, 4))], [("y", (2, 5, 6))], [("w", f32(4, 6)), ("b", f32(6))])
    _, after = rewrite(data, "fuse_linear", {"x": f32(2, 5, 4)})
    assert after == ["add", "matmul", "relu"]
    fused = [n.attrs["ops"] for n in Session(data).graph.nodes if n.op == "fused"]
    assert [f for f in fused if not f.startswith("matmul[native")] == ["add+relu"]


def test_linear_near_misses_are_left_alone():
    # the weight is an input, not a constant
    data = model(linear_nodes(), [("x", (2, 5, 4)), ("w", (4, 6))], [("y", (2, 5, 2, 3))], [("b", f32(6))])
    _, after = rewrite(data, "fuse_linear", {"x": f32(2, 5, 4), "w": f32(4, 6)})
    assert "linear" not in after
    # a bias that varies along the rows too
    data = model(linear_nodes(), [("x", (2, 5, 4))], [("y", (2, 5, 2, 3))], [("w", f32(4, 6)), ("b", f32(5, 6))])
    _, after = rewrite(data, "fuse_linear", {"x": f32(2, 5, 4)})
    assert "linear" not in after


# -------------------------------------------------------------------------------------- shape ops
def test_shape_ops_eliminated():
    nodes = [const("s1", np.array([2, 12], np.int64)), helper.make_node("Reshape", ["x", "s1"], ["r1"]),
             const("s2", np.array([4, 6], np.int64)), helper.make_node("Reshape", ["r1", "s2"], ["r2"]),
             helper.make_node("Transpose", ["r2"], ["t1"], perm=[1, 0]),
             helper.make_node("Transpose", ["t1"], ["t2"], perm=[1, 0]),               # inverse: gone
             helper.make_node("Cast", ["t2"], ["c1"], to=T.FLOAT),                    # same dtype: gone
             helper.make_node("Cast", ["c1"], ["c2"], to=T.DOUBLE),
             helper.make_node("Cast", ["c2"], ["c3"], to=T.FLOAT),                    # exact round trip: gone
             const("es", np.array([3, 4, 6], np.int64)), helper.make_node("Expand", ["c3", "es"], ["e"]),
             helper.make_node("Add", ["e", "z"], ["y"])]                              # broadcasts itself
    data = model(nodes, [("x", (24,)), ("z", (3, 4, 6))], [("y", (3, 4, 6))])
    graph = P.constant_folding(to_graph(data))
    before = ops(graph)
    assert before.count("reshape") == 2 and before.count("permute") == 2 and "expand" in before
    _, after = rewrite(data, "eliminate_shape_ops", {"x": f32(24), "z": f32(3, 4, 6)})
    assert after == ["add", "reshape"]


def test_shape_ops_near_misses_are_kept():
    nodes = [helper.make_node("Cast", ["x"], ["c1"], to=T.FLOAT16),                  # lossy round trip: kept
             helper.make_node("Cast", ["c1"], ["c2"], to=T.FLOAT),
             helper.make_node("Transpose", ["c2"], ["t1"], perm=[1, 2, 0]),
             helper.make_node("Transpose", ["t1"], ["t2"], perm=[1, 2, 0]),            # not inverse: one permute
             const("es", np.array([5, 4, 2, 3], np.int64)), helper.make_node("Expand", ["t2", "es"], ["e"]),
             helper.make_node("Relu", ["e"], ["y"])]                                  # relu does not broadcast
    data = model(nodes, [("x", (2, 3, 4))], [("y", (5, 4, 2, 3))])
    _, after = rewrite(data, "eliminate_shape_ops", {"x": f32(2, 3, 4) * 1000})
    assert after == ["cast", "cast", "expand", "permute", "relu"]
    graph = P.eliminate_shape_ops(to_graph(data))
    assert [n.attrs["perm"] for n in graph.nodes if n.op == "permute"] == [(2, 0, 1)]
    # an expand whose reader would not broadcast its input back to the expanded shape
    nodes = [const("es", np.array([3, 4, 6], np.int64)), helper.make_node("Expand", ["x", "es"], ["e"]),
             helper.make_node("Add", ["e", "z"], ["y"])]
    data = model(nodes, [("x", (4, 6)), ("z", (4, 6))], [("y", (3, 4, 6))])
    _, after = rewrite(data, "eliminate_shape_ops", {"x": f32(4, 6), "z": f32(4, 6)})
    assert after == ["add", "expand"]


# ----------------------------------------------------------------------------- exported from torch
def _export(module, args, names, opset=14):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=opset, input_names=names,
                          output_names=["y"])
    return buf.getvalue()


def test_torch_exported_encoder():
    """A small BERT-style encoder exported by torch (opset 14: LayerNorm decomposed): every pattern
    fires and the session matches onnxruntime and torch."""
    import sys
    import os
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
    from patterns import minilm
    m = minilm(layers=2, width=32, heads=4, ffn=64)
    x, am = torch.randn(1, 10, 32), torch.ones(1, 10)
    am[:, 7:] = 0
    data = _export(m, (x, am), ["x", "attention_mask"])
    feeds = {"x": x.numpy(), "attention_mask": am.numpy()}
    before = Session(data, passes=[getattr(P, n) for n in P.INFERENCE if n not in PATTERNS])
    after = Session(data)
    got = after.run(None, feeds)[0]
    # the patterns' result, before lower_native_ops turns standardize into a native row kernel
    fused = Session(data, passes=[getattr(P, n) for n in P.INFERENCE if n != "lower_native_ops"])
    assert ops(fused.graph).count("standardize") == 4 and ops(fused.graph).count("attention") == 2
    assert ops(fused.graph).count("linear") == 6 and "sqrt" not in str(fused.graph)
    assert sum("gelu" in n.attrs.get("ops", "") for n in fused.graph.nodes if n.op == "fused") == 2
    assert len(ops(after.graph)) < len(ops(before.graph)) and "sqrt" not in str(after.graph)
    with torch.no_grad():
        want = m(x, am).numpy()
    np.testing.assert_allclose(got, ort_run(data, feeds)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, before.run(None, feeds)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_torch_exported_tanh_gelu():
    class M(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.gelu(x, approximate="tanh")
    x = torch.randn(3, 9) * 3
    data = _export(M(), (x,), ["x"])
    graph = P.fuse_gelu(P.constant_folding(to_graph(data)))
    assert ops(graph) == ["gelu"]
    np.testing.assert_allclose(Session(data)(x.numpy())[0], M()(x).numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- the new primitives
def test_linear_and_attention_primitives_gradients():
    check_fd(lambda x, w, b: apply(LINEAR, x, w, b), [RNG.standard_normal((2, 3, 4)), RNG.standard_normal((4, 5)),
                                                      RNG.standard_normal(5)])
    q, kt, v = RNG.standard_normal((2, 2, 3, 4)), RNG.standard_normal((2, 2, 4, 5)), RNG.standard_normal((2, 2, 5, 3))
    check_fd(lambda q, kt, v, m: apply(ATTENTION, q, kt, v, m, scale=0.7, causal=False),
             [q, kt, v, RNG.standard_normal((2, 1, 1, 5))])
    check_fd(lambda q, kt, v: apply(ATTENTION, q, kt, v, scale=0.7, causal=True), [q, kt, v])


@pytest.mark.parametrize("case", ["normal", "far_apart", "fully_masked", "causal"])
def test_attention_primitive_matches_softmax_reference(case):
    """The shared-shift softmax falls back to per-row maxima when rows are far apart, and gives
    what the softmax primitive gives on fully masked rows (NaN) and causal masks."""
    q, kt, v = f32(2, 2, 5, 4), f32(2, 2, 4, 6), f32(2, 2, 6, 3)
    mask = np.zeros((2, 1, 1, 6), np.float32)
    if case == "far_apart":
        mask[0] -= 1000.0                     # batch 0's scores sit 1000 below batch 1's
    if case == "fully_masked":
        mask[1, ..., :] = -np.inf
    causal = case == "causal"
    got = apply(ATTENTION, *map(suanli.tensor, (q, kt, v, mask)), scale=0.5, causal=causal).numpy()
    # the scores as float32 computes them (-1000 + s rounds at 6e-5), then softmax and @ v in float64
    s = torch.tensor(np.matmul(q, kt) * np.float32(0.5) + mask, dtype=torch.float64)
    if causal:
        s = s.masked_fill(torch.ones(5, 6, dtype=torch.bool).triu(1), float("-inf"))
    want = (torch.softmax(s, -1) @ torch.tensor(v, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if case == "fully_masked":
        assert np.isnan(got[1]).all() and np.isfinite(got[0]).all()


def test_primitive_shape_errors_name_the_op():
    with pytest.raises(Exception, match="linear"):
        apply(LINEAR, suanli.ones(2, 3), suanli.ones(4, 5), suanli.ones(5))
    with pytest.raises(Exception, match="attention"):
        apply(ATTENTION, suanli.ones(1, 2, 3, 4), suanli.ones(1, 2, 5, 6), suanli.ones(1, 2, 6, 4),
              scale=1.0, causal=False)


def test_symbolic_batch_encoder():
    """With a dynamic batch axis the patterns still fire (shapes hold the symbol B) and every batch
    size gives onnxruntime's result."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
    from patterns import minilm
    m = minilm(layers=1, width=16, heads=2, ffn=32)
    x, am = torch.randn(2, 6, 16), torch.ones(2, 6)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x, am), buf, dynamo=False, opset_version=14, input_names=["x", "attention_mask"],
                          output_names=["y"], dynamic_axes={"x": {0: "B"}, "attention_mask": {0: "B"}, "y": {0: "B"}})
    sess = Session(buf.getvalue())
    assert str(sess.graph.inputs[0].shape[0]) == "B"
    assert {"standardize", "attention", "linear", "gelu"} <= set(ops(sess.graph))
    for b in (1, 3):
        feeds = {"x": f32(b, 6, 16), "attention_mask": (RNG.random((b, 6)) < 0.8).astype(np.float32)}
        np.testing.assert_allclose(sess.run(None, feeds)[0], ort_run(buf.getvalue(), feeds)[0], rtol=1e-5, atol=1e-5)


def test_cast_round_trip_through_float64_kept_for_int64():
    """int64 -> float64 -> int64 rounds above 2**53, so it stays (NumPy calls the first cast safe)."""
    nodes = [helper.make_node("Cast", ["x"], ["f"], to=T.DOUBLE), helper.make_node("Cast", ["f"], ["y"], to=T.INT64)]
    data = model(nodes, [("x", (3,), T.INT64)], [("y", (3,), T.INT64)])
    feeds = {"x": np.array([2 ** 53 + 1, -5, 7], np.int64)}
    _, after = rewrite(data, "eliminate_shape_ops", feeds)
    assert after == ["cast", "cast"]
    assert Session(data).run(None, feeds)[0][0] == 2 ** 53            # what the two casts compute


def test_suanli_gpt_session_fuses_causal_attention():
    """nanoGPT-style model traced from suanli: its causal attention becomes ``attention`` nodes and the
    session still gives the eager logits."""
    from suanli.models.gpt import GPT, GPTConfig
    suanli.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=4, n_embd=32)).eval()
    idx = suanli.randint(0, 50, (2, 16))
    sess = Session(model, (idx,))
    nodes = [n for n in sess.graph.nodes if n.op == "attention"]
    assert len(nodes) == 2 and all(n.attrs["causal"] for n in nodes)
    with suanli.no_grad():
        want = model(idx)
    want = want[0] if isinstance(want, tuple) else want
    np.testing.assert_allclose(sess(idx.numpy())[0], want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mask_shape,causal", [(None, False), ((2, 1, 1, 96), False), ((96,), False),
                                               (None, True), ((96, 96), True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_is_thread_count_invariant_and_matches_torch(mask_shape, causal, dtype):
    """The attention primitive gives the same bits at one and two threads, equal to torch's."""
    from suanli.inference import conv_kernels
    from suanli.ops.fused_layers import _attention_impl
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 6, 96, 16)).astype(dtype) for _ in range(3))
    kt = np.ascontiguousarray(np.swapaxes(k, -1, -2))
    mask = (rng.standard_normal(mask_shape).astype(dtype),) if mask_shape else ()
    n = conv_kernels.num_threads()
    try:
        conv_kernels.set_num_threads(1)
        one = _attention_impl(q, kt, v, *mask, scale=0.25, causal=causal)
        conv_kernels.set_num_threads(2)
        two = _attention_impl(q, kt, v, *mask, scale=0.25, causal=causal)
    finally:
        conv_kernels.set_num_threads(n)
    assert np.array_equal(one, two)
    tm = torch.from_numpy(np.broadcast_to(mask[0], (2, 6, 96, 96)).copy()) if mask else None
    if causal:
        causal_bias = torch.full((96, 96), -float("inf"), dtype=tm.dtype if tm is not None else
                                 torch.from_numpy(q).dtype).triu(1)
        tm = causal_bias if tm is None else tm + causal_bias
    want = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), attn_mask=tm, scale=0.25).numpy()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(two, want, rtol=tol, atol=tol)
