"""Compiler passes: each pass keeps the graph's results (reference interpreter vs eager, float64
tight), does the rewrite it promises, and the memory plan never overlaps two live buffers."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import suanli
import suanli.nn.functional as F
from suanli import nn
from suanli.compiler.passes import (constant_folding, cse, dce, fold_affine, freeze, plan_memory, rematerialize,
                                    simplify)
from suanli.graph import Graph, interpret, trace, verify
from suanli.models import GPT, GPTConfig, LeNet5, resnet18

PIPELINE = [constant_folding, simplify, cse, dce]


def run_pipeline(graph, passes):
    for p in passes:
        graph = verify(p(graph))
    return graph


def frozen(traced):
    """The traced graph with its parameters/buffers as constants (inference)."""
    values = {traced.num_args + i: t.detach().numpy() for i, t in enumerate(traced.state)}
    return freeze(traced.graph, values)


def ops(graph):
    return [n.op for n in graph.nodes]


# ------------------------------------------------------------------------------ semantics on models
def _models():
    suanli.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, groups=2, bias=False), nn.BatchNorm2d(8), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    for m in cnn.modules():      # non-trivial running statistics and affine parameters
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(suanli.randn(*m.running_mean.shape, dtype=m.running_mean.dtype))
            m.running_var.copy_(suanli.rand(*m.running_var.shape, dtype=m.running_var.dtype) + 0.5)
            m.weight.data.copy_(suanli.randn(*m.weight.shape, dtype=m.weight.dtype))
            m.bias.data.copy_(suanli.randn(*m.bias.shape, dtype=m.bias.dtype))
    return {
        "cnn-bn": (cnn, (2, 3, 6, 6)),
        "lenet5": (LeNet5(), (2, 1, 32, 32)),
        "resnet18": (resnet18(num_classes=5), (1, 3, 32, 32)),
        "gpt": (GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=16)), None),
    }


@pytest.mark.parametrize("name", ["cnn-bn", "lenet5", "resnet18", "gpt"])
def test_inference_pipeline_keeps_results(name):
    model, shape = _models()[name]
    model = model.double().eval()
    x = suanli.randint(0, 11, (2, 8)) if shape is None else suanli.randn(*shape, dtype=suanli.float64)
    with suanli.no_grad():
        expected = model(x)
        expected = expected[0] if isinstance(expected, tuple) else expected
        traced = trace(model, (x,))
    graph = frozen(traced)
    n_before = len(graph.nodes)
    graph = run_pipeline(graph, [constant_folding, simplify, cse, fold_affine, constant_folding, dce, plan_memory])
    got = interpret(graph, x.numpy())[0]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-12)
    assert len(graph.nodes) < n_before
    if name in ("cnn-bn", "resnet18"):       # batch norm folded away: no rsqrt/sub left on activations
        assert "rsqrt" not in ops(graph) and "sub" not in ops(graph), ops(graph)
        assert ops(graph).count("conv2d") == (2 if name == "cnn-bn" else 20)


def test_training_graph_passes_keep_loss_and_grads():
    suanli.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=16)).double()
    idx, tgt = suanli.randint(0, 11, (2, 8)), suanli.randint(0, 11, (2, 8))

    def step(idx, tgt):
        _, loss = model(idx, tgt)
        loss.backward()
        return loss

    traced = trace(step, (idx, tgt))
    arrays = [idx.numpy(), tgt.numpy()] + [t.detach().numpy() for t in traced.state]
    ref = interpret(traced.graph, *arrays)
    graph = run_pipeline(traced.graph, PIPELINE + [rematerialize, plan_memory])
    got = interpret(graph, *arrays)
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    plan = graph.meta["memory_plan"]
    assert plan.live_peak_bytes <= plan.arena_bytes < plan.naive_bytes
    assert_no_overlap(graph, plan)


# ------------------------------------------------------------------------------ each pass's rewrite
def _g(*shapes, dtype=np.float64):
    g = Graph()
    return g, [g.add_input(s, dtype) for s in shapes]


def test_cse_merges_repeats_and_equal_constants():
    g, (x,) = _g((3,))
    c1, c2 = g.add_constant(np.float64(2.0)), g.add_constant(np.float64(2.0))
    a = g.add_node("mul", [x, c1], shape=(3,), dtype=np.float64)
    b = g.add_node("mul", [x, c2], shape=(3,), dtype=np.float64)
    s1 = g.add_node("sum", [a], {"axes": (0,), "keepdims": False}, shape=(), dtype=np.float64)
    s2 = g.add_node("sum", [b], {"axes": (0,), "keepdims": True}, shape=(1,), dtype=np.float64)   # attrs differ
    g.outputs = [s1, s2]
    out = verify(dce(cse(g)))
    assert ops(out) == ["constant", "mul", "sum", "sum"]
    np.testing.assert_allclose(interpret(out, np.arange(3.0))[1], [6.0])


def test_cse_keeps_distinct_constants_apart():
    g, (x,) = _g((2,))
    zero, neg_zero = g.add_constant(np.float64(0.0)), g.add_constant(np.float64(-0.0))
    g.outputs = [g.add_node("mul", [x, zero], shape=(2,), dtype=np.float64),
                 g.add_node("mul", [x, neg_zero], shape=(2,), dtype=np.float64)]
    out = cse(g)
    assert ops(out).count("constant") == 2
    a, b = interpret(out, np.array([1.0, -1.0]))
    assert list(np.signbit(a)) == [False, True] and list(np.signbit(b)) == [True, False]


def test_dce_removes_unread_nodes_inside_subgraphs_too():
    def f(x):
        _ = x.exp()                                       # dead
        return suanli.cond(x.sum() > 0, lambda v: (v.sin(), v.cos())[0], lambda v: v * 2, x)
    traced = trace(f, (suanli.ones(3, dtype=suanli.float64),))
    graph = dce(traced.graph)
    assert "exp" not in ops(graph)
    then = next(n for n in graph.nodes if n.op == "cond").subgraphs["then"]
    assert "cos" not in ops(then)
    np.testing.assert_allclose(interpret(verify(graph), -np.ones(3))[0], -2 * np.ones(3))


def test_constant_folding_evaluates_and_respects_the_growth_limit():
    g, (x,) = _g((4,))
    c = g.add_constant(np.arange(4.0))
    e = g.add_node("exp", [c], shape=(4,), dtype=np.float64)
    big = g.add_node("expand", [g.add_constant(np.float64(1.0))], {"shape": (512, 512)}, shape=(512, 512),
                     dtype=np.float64)
    g.outputs = [g.add_node("add", [x, e], shape=(4,), dtype=np.float64), big]
    out = verify(dce(constant_folding(g)))
    assert "exp" not in ops(out) and "expand" in ops(out)       # 262144 elements from 1: not folded
    np.testing.assert_allclose(interpret(out, np.zeros(4))[0], np.exp(np.arange(4.0)))


def test_constant_predicate_cond_is_inlined():
    def f(x):
        return suanli.cond(suanli.tensor(True), lambda v: v.sin(), lambda v: v.cos(), x)
    traced = trace(f, (suanli.ones(2, dtype=suanli.float64),))
    out = verify(dce(constant_folding(traced.graph)))
    assert ops(out) == ["sin"]
    np.testing.assert_allclose(interpret(out, np.ones(2))[0], np.sin(np.ones(2)))


def test_simplify_identities_and_chains():
    def f(x):
        y = (x * 1.0) / 1.0
        z = -(-y)
        w = z.reshape(6).reshape(2, 3).permute(1, 0).permute(1, 0)
        return w.exp() + 0.0, x.to(suanli.float64).sum()
    x = suanli.randn(2, 3, dtype=suanli.float64)
    traced = trace(f, (x,))
    out = verify(dce(simplify(constant_folding(traced.graph))))
    assert ops(out).count("mul") == 0 and "div" not in ops(out) and "neg" not in ops(out)
    assert "permute" not in ops(out) and "cast" not in ops(out)
    assert ops(out).count("reshape") <= 1
    assert "add" in ops(out)              # x + 0.0 stays: it turns -0.0 into +0.0
    for a, b in zip(interpret(out, x.numpy()), f(x)):
        np.testing.assert_array_equal(a, b.numpy())


def test_simplify_never_returns_an_input_as_an_output():
    g, (x,) = _g((2,))
    g.outputs = [g.add_node("mul", [x, g.add_constant(np.float64(1.0))], shape=(2,), dtype=np.float64)]
    out = simplify(g)
    assert out.outputs[0] is not x


def test_fold_affine_ignores_live_parameters_and_non_channel_constants():
    g, (x, w) = _g((2, 3), (3, 4))                       # w is an input: a live parameter
    y = g.add_node("matmul", [x, w], shape=(2, 4), dtype=np.float64)
    g.outputs = [g.add_node("mul", [y, g.add_constant(np.arange(4.0))], shape=(2, 4), dtype=np.float64)]
    assert ops(fold_affine(g)) == ["matmul", "constant", "mul"]
    g, (x,) = _g((2, 3))
    w = g.add_constant(np.ones((3, 4)))
    y = g.add_node("matmul", [x, w], shape=(2, 4), dtype=np.float64)
    per_row = g.add_constant(np.arange(2.0).reshape(2, 1))   # varies along rows: not per channel
    g.outputs = [g.add_node("mul", [y, per_row], shape=(2, 4), dtype=np.float64)]
    assert "mul" in ops(dce(fold_affine(g)))


def test_fold_affine_after_simplify_with_default_batchnorm():
    """Fresh BatchNorm (mean 0, var 1, gamma 1, beta 0): simplify bypasses ``x - 0`` and ``x * 1``
    first; the bypassed nodes must not block the fold."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    x = suanli.randn(1, 3, 5, 5)
    graph = run_pipeline(frozen(trace(model, (x,))), [constant_folding, simplify, cse, fold_affine,
                                                      constant_folding, dce])
    assert [n.op for n in graph.nodes if n.op != "constant"] == ["conv2d", "add", "relu"]
    np.testing.assert_allclose(interpret(graph, x.numpy())[0], model(x).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_freeze_checks_values():
    g, (x,) = _g((2,))
    with pytest.raises(ValueError, match="freeze: input 0"):
        freeze(g, {0: np.zeros(3)})


# ------------------------------------------------------------------------------ memory planning
def assert_no_overlap(graph, plan):
    """No two values whose lifetimes overlap share a byte of the arena (in-place reuse excepted:
    the output starts exactly where its dying input ended its life)."""
    last, born = {}, {}
    for k, n in enumerate(graph.nodes):
        for v in n.inputs:
            last[v.id] = k
        for v in n.outputs:
            born[v.id] = k
    end = len(graph.nodes)
    outs = {v.id for v in graph.outputs}
    spans = [(born[i], end if i in outs else last.get(i, born[i]), plan.offsets[i], plan.sizes[i])
             for i in plan.offsets]
    for a in range(len(spans)):
        b0, b1, o, s = spans[a]
        assert o + s <= plan.arena_bytes
        for c in range(a + 1, len(spans)):
            c0, c1, p, t = spans[c]
            if b0 < c1 and c0 < b1:                 # strictly overlapping lifetimes
                assert o + s <= p or p + t <= o, (spans[a], spans[c])


def test_memory_plan_on_a_gpt_training_graph_saves_and_is_valid():
    suanli.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=32))
    idx, tgt = suanli.randint(0, 11, (4, 16)), suanli.randint(0, 11, (4, 16))

    def step(idx, tgt):
        _, loss = model(idx, tgt)
        loss.backward()
        return loss
    graph = run_pipeline(trace(step, (idx, tgt)).graph, PIPELINE + [rematerialize, plan_memory])
    plan = graph.meta["memory_plan"]
    assert plan.in_place > 0
    assert plan.arena_bytes < 0.5 * plan.naive_bytes
    assert plan.arena_bytes <= 1.25 * plan.live_peak_bytes
    assert_no_overlap(graph, plan)
    assert "arena" in plan.summary()


# ------------------------------------------------------------------------------ random graphs
UNARY = ["exp", "tanh", "neg", "sin", "relu", "abs", "sigmoid"]
BINARY = ["add", "sub", "mul", "maximum"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(UNARY + BINARY + ["const", "reuse"]), st.integers(0, 100),
                          st.integers(0, 100)), min_size=1, max_size=14))
def test_random_graphs_keep_their_values(program):
    g = Graph()
    x = g.add_input((3, 4), np.float64)
    vals = [x]
    for op, i, j in program:
        a, b = vals[i % len(vals)], vals[j % len(vals)]
        if op == "const":
            vals.append(g.add_constant(np.full((3, 4) if i % 2 else (), (j % 5) / 2.0)))
        elif op == "reuse":                      # an exact repeat of an earlier node: CSE material
            src = next((n for n in g.nodes if n.op != "constant"), None)
            if src is not None:
                vals.append(g.add_node(src.op, list(src.inputs), dict(src.attrs), shape=src.outputs[0].shape,
                                       dtype=np.float64))
        elif op in UNARY:
            vals.append(g.add_node(op, [a], shape=a.shape, dtype=np.float64))
        else:
            shape = np.broadcast_shapes(a.shape, b.shape)
            vals.append(g.add_node(op, [a, b], shape=shape, dtype=np.float64))
    g.outputs = [vals[-1], vals[len(vals) // 2]]
    verify(g)
    xin = np.random.default_rng(0).standard_normal((3, 4))
    ref = interpret(g, xin)
    out = run_pipeline(g, PIPELINE + [rematerialize, plan_memory])
    for a, b in zip(interpret(out, xin), ref):
        np.testing.assert_array_equal(a, b)
    assert_no_overlap(out, out.meta["memory_plan"])


def test_rematerialize_recomputes_gelu_for_the_backward_and_lowers_the_peak():
    suanli.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=32)).double()
    idx, tgt = suanli.randint(0, 11, (4, 16)), suanli.randint(0, 11, (4, 16))

    def step(idx, tgt):
        _, loss = model(idx, tgt)
        loss.backward()
        return loss
    traced = trace(step, (idx, tgt))
    arrays = [idx.numpy(), tgt.numpy()] + [t.detach().numpy() for t in traced.state]
    base = run_pipeline(traced.graph.copy(), PIPELINE + [plan_memory])
    remat = run_pipeline(traced.graph.copy(), PIPELINE + [rematerialize, plan_memory])
    assert ops(remat).count("gelu") == 2 * ops(base).count("gelu")      # one copy per layer for the backward
    assert remat.meta["memory_plan"].live_peak_bytes < 0.95 * base.meta["memory_plan"].live_peak_bytes
    for a, b in zip(interpret(remat, *arrays), interpret(base, *arrays)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ elementwise fusion
from suanli import native                                   # noqa: E402
from suanli.compiler.passes import fuse_elementwise          # noqa: E402


@pytest.mark.parametrize("dtype, tol", [(suanli.float64, 1e-12), (suanli.float32, 2e-6)])
@pytest.mark.parametrize("use_native", [True, False])
def test_fusion_keeps_training_graph_results(dtype, tol, use_native):
    suanli.manual_seed(0)
    model = LeNet5().to(dtype)
    x, y = suanli.randn(3, 1, 32, 32, dtype=dtype), suanli.randint(0, 10, (3,))

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss
    traced = trace(step, (x, y))
    arrays = [x.numpy(), y.numpy()] + [t.detach().numpy() for t in traced.state]
    ref = interpret(traced.graph, *arrays)
    if use_native:
        graph = run_pipeline(traced.graph.copy(), PIPELINE + [fuse_elementwise, dce])
    else:
        with native.disabled():
            graph = run_pipeline(traced.graph.copy(), PIPELINE + [fuse_elementwise, dce])
    fused = [n for n in graph.nodes if n.op == "fused"]
    assert len(fused) >= 4 and any(n.attrs["ops"] == "add+tanh" for n in fused)
    assert all(n.attrs["kernel"].native == use_native for n in fused) or not native.enabled()
    for a, b in zip(interpret(graph, *arrays), ref):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert "ops=add+tanh" in str(graph)


def test_fusion_stays_convex():
    """b = exp(a) is read by a matmul before c = tanh(b) runs: fusing a..c would move exp after the
    matmul that needs it, so exp and tanh must not share a group across it."""
    g, (x, w) = _g((2, 2), (2, 2))
    a = g.add_node("neg", [x], shape=(2, 2), dtype=np.float64)
    b = g.add_node("exp", [a], shape=(2, 2), dtype=np.float64)
    m = g.add_node("matmul", [b, w], shape=(2, 2), dtype=np.float64)
    c = g.add_node("add", [b, m], shape=(2, 2), dtype=np.float64)
    g.outputs = [g.add_node("tanh", [c], shape=(2, 2), dtype=np.float64)]
    xin, win = np.random.default_rng(1).standard_normal((2, 2)), np.eye(2)
    ref = interpret(g, xin, win)[0]
    out = verify(fuse_elementwise(g))
    assert [n.attrs.get("ops", n.op) for n in out.nodes] == ["neg+exp", "matmul", "add+tanh"]
    np.testing.assert_allclose(interpret(out, xin, win)[0], ref, rtol=1e-14)


def test_fusion_leaves_unsupported_dtypes_alone():
    g, (x,) = _g((4,), dtype=np.float16)
    a = g.add_node("exp", [x], shape=(4,), dtype=np.float16)
    g.outputs = [g.add_node("tanh", [a], shape=(4,), dtype=np.float16)]
    assert ops(fuse_elementwise(g)) == ["exp", "tanh"]
