"""ONNX export: onnxruntime is the oracle (every model in suanli.models and a wide op mix), plus the
round trip export -> suanli.onnx.load, dynamic batch, and the error cases."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import suanli
import suanli.nn.functional as F
import suanli.onnx as so
from suanli import nn
from suanli.models import GPT, GPTConfig, LeNet5, ViT, ViTConfig, bit_resnet_v2, resnet18, resnet34

ort = pytest.importorskip("onnxruntime")


def _ort_run(path, feeds):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, feeds)


def _eager(fn, args):
    with suanli.no_grad():
        out = fn(*args)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numpy() for o in outs if o is not None]


def _close(actual, expected, rtol=1e-4, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (what, actual.shape, expected.shape)
    if expected.dtype.kind == "f":
        scale = max(float(np.abs(expected).max()), 1e-6)
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def _check_model(model, args, path, *, dynamic=False, other_batch=None):
    """Export, run in onnxruntime and through suanli.onnx.load; both must equal the eager model."""
    model.eval()
    proto = so.export(model, args, path, dynamic_batch=dynamic)
    onnx.checker.check_model(str(path))
    expected = _eager(model, args)
    names = [i.name for i in proto.graph.input]
    got = _ort_run(path, {n: a.numpy() for n, a in zip(names, args)})
    for i, (g, e) in enumerate(zip(got, expected)):
        _close(g, e, what=f"onnxruntime output {i}")
    loaded = so.load(path)
    back = loaded(*[a.numpy() for a in args])
    back = back if isinstance(back, tuple) else (back,)
    for i, (g, e) in enumerate(zip(back, expected)):
        _close(g.numpy(), e, what=f"round-trip output {i}")
    if other_batch is not None:
        got = _ort_run(path, {n: a.numpy() for n, a in zip(names, other_batch)})
        for i, (g, e) in enumerate(zip(got, _eager(model, other_batch))):
            _close(g, e, what=f"onnxruntime output {i} at another batch size")
    return proto


MODELS = {
    "lenet5": lambda: (LeNet5(), (suanli.randn(2, 1, 32, 32),)),
    "resnet18": lambda: (resnet18(num_classes=10), (suanli.randn(2, 3, 32, 32),)),
    "bit_resnet_v2": lambda: (bit_resnet_v2(18, num_classes=10, width_factor=0.5), (suanli.randn(2, 3, 32, 32),)),
    "bit_resnet_v2_50": lambda: (bit_resnet_v2(50, num_classes=7, width_factor=0.25, num_groups=8),
                                 (suanli.randn(1, 3, 32, 32),)),
    "vit": lambda: (ViT(ViTConfig(image_size=16, patch_size=4, num_classes=10, dim=32, depth=2, num_heads=4)),
                    (suanli.randn(2, 3, 16, 16),)),
    "vit22b_switches": lambda: (ViT(ViTConfig(image_size=16, patch_size=8, num_classes=5, dim=16, depth=1,
                                              num_heads=2, parallel_block=True, qk_layernorm=True, qkv_bias=False)),
                                (suanli.randn(3, 3, 16, 16),)),
    "gpt": lambda: (GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=16)),
                    (suanli.randint(0, 50, (2, 8)),)),
}


def _randomize_norm_stats(model):
    """Non-trivial BatchNorm statistics, so the exported eval-mode normalisation is really exercised."""
    g = np.random.default_rng(1)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf._data[...] = g.normal(0, 0.1, buf.shape)
        elif name.endswith("running_var"):
            buf._data[...] = g.uniform(0.5, 1.5, buf.shape)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_exports_and_matches_onnxruntime(name, tmp_path):
    suanli.manual_seed(0)
    model, args = MODELS[name]()
    _randomize_norm_stats(model)
    proto = _check_model(model, args, tmp_path / f"{name}.onnx")
    # parameters are initializers under their state-dict names
    inits = {t.name for t in proto.graph.initializer}
    first = next(iter(model.state_dict()))
    assert first in inits
    n_params = sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.name in dict(model.named_parameters()))
    assert n_params == sum(p.numel() for _, p in model.named_parameters())


@pytest.mark.slow
def test_resnet34_exports(tmp_path):
    suanli.manual_seed(0)
    _check_model(resnet34(num_classes=10), (suanli.randn(1, 3, 32, 32),), tmp_path / "r34.onnx")


@pytest.mark.parametrize("name,batches", [("resnet18", (2, 5)), ("gpt", (2, 3)), ("vit", (2, 7))])
def test_dynamic_batch(name, batches, tmp_path):
    suanli.manual_seed(0)
    model, args = MODELS[name]()
    other = (suanli.randint(0, 50, (batches[1], 8)) if name == "gpt"
             else suanli.randn(batches[1], *args[0].shape[1:]),)
    proto = _check_model(model, args, tmp_path / "d.onnx", dynamic=True, other_batch=other)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_training_mode_is_restored_and_dropout_off(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    model.train()
    x = suanli.randn(3, 4)
    so.export(model, (x,), tmp_path / "m.onnx")
    assert model.training and all(m.training for m in model.modules())
    model.eval()     # the exported graph is the eval-mode model: dropout off, running statistics
    _close(_ort_run(tmp_path / "m.onnx", {"input": x.numpy()})[0], _eager(model, (x,))[0])


# ------------------------------------------------------------------------- a wide mix of primitives
def _mix_elementwise(x):
    y = suanli.exp(x * 0.1) + suanli.log1p(x.abs()) + suanli.expm1(x * 0.2) + (x.abs() + 1).rsqrt()
    y = y + suanli.trunc(x * 3) + suanli.round(x * 3) + x.sign() + x.floor() + x.ceil() + x.reciprocal()
    y = y + F.silu(x) + F.logsigmoid(x) + F.softplus(x, beta=2.0, threshold=1.0) + F.leaky_relu(x, 0.1)
    y = y + F.hardtanh(x, -0.5, 0.5) + F.hardsigmoid(x) + F.hardswish(x) + F.elu(x) + F.selu(x) + F.celu(x, 0.5)
    y = y + F.gelu(x) + F.gelu(x, approximate="tanh") + suanli.clamp(x, -0.3, 0.4) + x.sigmoid() + x.tanh()
    y = y + suanli.where(x > 0, x, x * 2) + suanli.fmod(x, 0.7) + suanli.remainder(x, 0.7)
    y = y + suanli.floor_divide(x, 0.7) + x.sin() * x.cos() + suanli.erf(x) + x.pow(2) + suanli.maximum(x, x.T)
    y = y + (x != 0.5).float() + ((x >= 0) & (x < 1)).float() + suanli.isfinite(x).float()
    return y + x.masked_fill(x < -1, 3.0)


def _mix_reduce(x):
    parts = [x.sum(1, keepdim=True).expand(-1, x.shape[1]), x.amax(0) + x.amin(1), x.prod(0) * 0.01,
             x.argmax(1).float()[:, None] + x.argmin(0).float(), x.cumsum(1), x.mean(0),
             (x > 0).all(1).float()[:, None] + (x > 1).any(0).float(), suanli.count_nonzero(x > 0, 1).float()[:, None],
             x.softmax(1), x.log_softmax(0), F.layer_norm(x, (x.shape[1],)), x.std(1, keepdim=True),
             x.argmax().float()]
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def _mix_shape(x):
    y = x.flip(0) + suanli.roll(x, 2, 1) + x.tril(1) + x.triu(-1)
    y = suanli.cat([y, x[:, ::2].repeat(1, 2)[:, :x.shape[1]]], 0)     # (2R, C)
    z = y[None, 1:5, 2][:, :, None] * y[3, None]                       # slice with None / int / step
    z = F.pad(z, (1, 2, 0, 1), value=0.5)
    idx = suanli.tensor([[0, 2], [1, 1]])
    g = x.gather(1, idx.repeat(x.shape[0] // 2, 1))
    s = suanli.zeros(x.shape).scatter_add(1, idx.repeat(x.shape[0] // 2, 1), g)
    sel = x[suanli.tensor([2, 0, 1])][:, :3] + x[:, suanli.tensor([1, 3, 0])].T[:3, :3]
    both = x[suanli.tensor([0, 1]), suanli.tensor([2, 3])]
    e = suanli.einsum("ij,kj->ik", x, x)
    return z.sum() + s.sum() + sel.sum() + both.sum() + e.sum() + x.permute(1, 0).reshape(-1).sum()


def _mix_conv(x):
    w = suanli.linspace(-1, 1, 3 * 2 * 3 * 3).reshape(3, 2, 3, 3)
    y = F.conv2d(x, w, stride=2, padding=1, dilation=1)
    y = y + F.conv2d(x, w, padding=2, dilation=2)[:, :, ::2, ::2][:, :, :y.shape[2], :y.shape[3]]
    t = F.conv_transpose2d(y, w, stride=2, padding=1, output_padding=1)
    p = F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True).sum() + F.avg_pool2d(x, 2).sum()
    a = F.adaptive_avg_pool2d(x, (3, 5)).sum() + F.adaptive_avg_pool2d(x, 1).sum()
    gn = F.group_norm(y, 1) + F.instance_norm(y)
    return t.sum() + p + a + gn.sum() + t.mean((2, 3)).sum()


def _mix_attention(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True) + F.scaled_dot_product_attention(q, k, v)


MIXES = {
    "elementwise": (_mix_elementwise, lambda: (suanli.randn(4, 4),)),
    "reduce": (_mix_reduce, lambda: (suanli.randn(4, 4),)),
    "shape_index": (_mix_shape, lambda: (suanli.randn(6, 4),)),
    "conv_pool": (_mix_conv, lambda: (suanli.randn(2, 2, 9, 11),)),
    "attention": (_mix_attention, lambda: tuple(suanli.randn(2, 3, 5, 4) for _ in range(3))),
    "float64": (lambda x, y: (x @ y).tanh() + x.sum(), lambda: (suanli.randn(3, 4, dtype=suanli.float64),
                                                               suanli.randn(4, 3, dtype=suanli.float64))),
    "int": (lambda x: (x * 3 + 1) // 2 + x % 3, lambda: (suanli.tensor([[-5, 3, 7], [0, -1, 2]]),)),
}


@pytest.mark.parametrize("name", list(MIXES))
def test_primitive_mix_matches_onnxruntime(name, tmp_path):
    suanli.manual_seed(0)
    fn, make = MIXES[name]
    args = make()
    path = tmp_path / f"{name}.onnx"
    so.export(fn, args, path)
    expected = _eager(fn, args)
    names = ["input"] if len(args) == 1 else [f"input{i}" for i in range(len(args))]
    got = _ort_run(path, {n: a.numpy() for n, a in zip(names, args)})
    for g, e in zip(got, expected):
        _close(g, e, rtol=2e-5 if e.dtype == np.float32 else 1e-9)


def test_multiple_outputs_and_names(tmp_path):
    fn = lambda a, b: (a + b, (a * b).sum(), a)  # noqa: E731
    args = (suanli.randn(2, 3), suanli.randn(2, 3))
    proto = so.export(fn, args, tmp_path / "m.onnx", input_names=["a", "b"], output_names=["s", "p", "same"])
    assert [i.name for i in proto.graph.input] == ["a", "b"]
    assert [o.name for o in proto.graph.output] == ["s", "p", "same"]
    got = _ort_run(tmp_path / "m.onnx", {"a": args[0].numpy(), "b": args[1].numpy()})
    for g, e in zip(got, _eager(fn, args)):
        _close(g, e)


def test_opsets(tmp_path):
    fn = lambda x: x.amax(1) + x.mean(1) + F.layer_norm(x, (3,)).sum(1)  # noqa: E731
    x = suanli.randn(2, 3)
    for opset in (13, 17, 18):
        proto = so.export(fn, (x,), tmp_path / f"o{opset}.onnx", opset=opset)
        assert proto.opset_import[0].version == opset
        _close(_ort_run(tmp_path / f"o{opset}.onnx", {"input": x.numpy()})[0], _eager(fn, (x,))[0])


# ------------------------------------------------------------------------- errors
def test_unmapped_primitive_lists_every_one_with_its_node(tmp_path):
    fn = lambda x: suanli.cumprod(x, 0) + suanli.diagonal(x).sum()  # noqa: E731
    with pytest.raises(so.ExportError) as info:
        so.export(fn, (suanli.randn(3, 3),), tmp_path / "bad.onnx")
    msg = str(info.value)
    assert "cumprod" in msg and "diagonal" in msg and "2 primitive(s)" in msg
    assert "cumprod(float32[3,3]" in msg and "help:" in msg
    assert not (tmp_path / "bad.onnx").exists()


def test_bad_arguments(tmp_path):
    x = suanli.randn(2, 2)
    with pytest.raises(so.ExportError, match="opset 9 is not supported"):
        so.export(lambda a: a + 1, (x,), tmp_path / "m.onnx", opset=9)
    with pytest.raises(so.ExportError, match="input_names must name each"):
        so.export(lambda a: a + 1, (x,), tmp_path / "m.onnx", input_names=["a", "b"])
    with pytest.raises(so.ExportError, match="example_inputs must be tensors"):
        so.export(lambda a, k: a + k, (x, 3), tmp_path / "m.onnx")
    with pytest.raises(so.ExportError, match="not batch-polymorphic"):
        so.export(lambda a: a + suanli.ones(2, 2), (x,), tmp_path / "m.onnx", dynamic_batch=True)


def test_write_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    so.export(lambda a: a * 2, (suanli.ones(2),), path)
    assert onnx.load(str(path)).graph.node
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


# ------------------------------------------------------------------------- ONNX -> IR (to_graph)
from onnx import TensorProto, helper  # noqa: E402

from suanli.graph import interpret, verify  # noqa: E402


def _runner_outputs(path, arrays):
    m = so.load(path)
    with suanli.no_grad():
        return [o.numpy() for o in m.run(dict(zip(m.input_names, arrays)))]


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "vit", "gpt"])
def test_to_graph_of_exported_models_matches_runner_and_eager(name, tmp_path):
    suanli.manual_seed(0)
    model, args = MODELS[name]()
    model.eval()
    path = tmp_path / "m.onnx"
    so.export(model, args, path, dynamic_batch=True)
    graph = verify(so.to_graph(path))
    assert graph.meta["static_reason"] == "" and str(graph.inputs[0].shape[0]) == "B"
    assert all(n.op != "constant" or n.outputs[0].name is None for n in graph.nodes)
    other = (suanli.randint(0, 50, (3, 8)) if name == "gpt" else suanli.randn(3, *args[0].shape[1:]),)
    got = interpret(graph, *[a.numpy() for a in other])
    for g, r, e in zip(got, _runner_outputs(path, [a.numpy() for a in other]), _eager(model, other)):
        _close(g, r, rtol=1e-6)
        _close(g, e)


def _model(nodes, inputs, outputs, initializers=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_to_graph_shape_arithmetic_becomes_symbolic():
    # y = reshape(x, [shape(x)[0], -1]) @ w : the Shape/Gather/Concat chain is folded by tracing
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["y"])]
    w = np.arange(12, dtype=np.float32).reshape(6, 2)
    proto = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                   [helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
                    helper.make_tensor("minus1", TensorProto.INT64, [1], [-1]),
                    helper.make_tensor("w", TensorProto.FLOAT, [6, 2], w.ravel())])
    graph = so.to_graph(proto)
    assert [n.op for n in graph.nodes if n.op != "constant"] == ["reshape", "matmul"]
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(interpret(graph, x)[0], x.reshape(5, 6) @ w, rtol=1e-6)
    np.testing.assert_allclose(interpret(graph, x)[0],
                               _ort_run_proto(proto, {"x": x})[0], rtol=1e-6)


def _ort_run_proto(proto, feeds):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_to_graph_refuses_data_dependent_models():
    # Reshape's target is an input *value*: tracing would freeze it, so to_graph must refuse
    proto = _model([helper.make_node("Reshape", ["x", "shape"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                    helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    good = [np.zeros((2, 3), np.float32), np.array([3, 2], np.int64)]
    with pytest.raises(so.OnnxError, match="froze|cannot|failed"):
        so.to_graph(proto, example_inputs_=good)


def test_to_graph_fixed_and_named_dims():
    nodes = [helper.make_node("Add", ["x", "y"], ["z"])]
    proto = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "T"]),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "T"])],
                   [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, "T"])])
    graph = so.to_graph(proto, dims={"T": 7})
    assert graph.inputs[0].shape == (2, 7) and graph.meta["static_reason"]
    assert [v.name for v in graph.inputs] == ["x", "y"]
