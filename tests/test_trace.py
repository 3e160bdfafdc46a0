"""Tracing: what is recorded, what is refused (with the user's line), and a random-graph fuzzer
comparing compiled plans, the reference interpreter and eager execution."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import suanli
from suanli.graph import TraceError, interpret, trace, verify
from suanli.models import resnet18

COUNTER = 0


def test_python_if_on_tensor_names_the_line():
    def f(x):
        if x.sum() > 0:                 # the line the error must name
            return x
        return -x

    line = f.__code__.co_firstlineno + 1
    with pytest.raises(TraceError) as info:
        suanli.compile(f)(suanli.ones(2))
    msg = str(info.value)
    assert f"test_trace.py:{line}" in msg and "if x.sum() > 0" in msg
    assert "suanli.cond" in msg and "suanli.while_loop" in msg


@pytest.mark.parametrize("leak", [lambda x: x.sum().item(), lambda x: x.numpy(), lambda x: x.tolist(),
                                  lambda x: float(x.sum()), lambda x: np.asarray(x)])
def test_value_leaks_are_refused(leak):
    with pytest.raises(TraceError, match="data-dependent"):
        suanli.compile(lambda x: x * leak(x))(suanli.ones(2))


def test_unsupported_side_effects_are_refused():
    def bump(x):
        global COUNTER
        COUNTER = COUNTER + 1
        return x * 2
    with pytest.raises(TraceError, match="re-binds the global.*COUNTER"):
        suanli.compile(bump)(suanli.ones(2))
    with pytest.raises(TraceError, match=r"result\[1\] is a float.*only tensors"):
        suanli.compile(lambda x: (x, 1.5))(suanli.ones(2))
    with pytest.raises(TraceError, match="modified in place"):
        suanli.compile(lambda x: (x * 1).add_(1))(suanli.ones(2))
    with pytest.raises(TraceError, match="random numbers"):
        suanli.compile(lambda x: suanli.nn.functional.dropout(x, 0.5))(suanli.ones(2))
    with pytest.raises(TraceError, match=r"x\[idx\]"):
        suanli.compile(lambda x, i: x[i])(suanli.ones(3), suanli.tensor([0, 2]))
    model = resnet18(num_classes=3)          # BatchNorm in training mode updates running stats
    with pytest.raises(TraceError, match="in place.*bn1.running_mean|bn1.running_mean.*in place"):
        suanli.compile(model)(suanli.randn(2, 3, 16, 16))


def test_parameters_by_reference_constants_by_value():
    w = suanli.nn.Parameter(suanli.ones(2))
    c = suanli.ones(2)                        # a plain captured tensor: frozen as a constant
    f = suanli.compile(lambda x: x * w + c, passes=[])   # the graph as traced, before fusion
    assert f(suanli.ones(2)).tolist() == [2.0, 2.0]
    with suanli.no_grad():
        w.mul_(3)
        c.mul_(3)
    assert f(suanli.ones(2)).tolist() == [4.0, 4.0]
    g = f.last_plan.graph
    assert [v.name for v in g.inputs] == ["arg0", "captured0"]
    assert [n.op for n in g.nodes] == ["mul", "constant", "add"]


def test_index_tensors_are_recorded_not_frozen():
    f = suanli.compile(lambda x, i, j: x.index_select(0, i) + x.gather(0, i) + suanli.take_along_dim(x, j, 0))
    x = suanli.arange(5.0)
    for idx, jdx in (([0, 4], [1, 1]), ([3, 1], [-1, 0])):
        i, j = suanli.tensor(idx), suanli.tensor(jdx)
        want = [2 * x.tolist()[a] + x.tolist()[b] for a, b in zip(idx, jdx)]
        assert f(x, i, j).tolist() == want


# ------------------------------------------------------------------------------ fuzzer
UNARY = ["exp_safe", "tanh", "sigmoid", "relu", "neg", "square", "sin"]
BINARY = ["add", "sub", "mul", "maximum"]
REDUCE = ["sum0", "mean1", "amax1"]


def _apply(op, x, y):
    if op == "exp_safe":
        return (x * 0.1).exp()
    if op in UNARY:
        return getattr(x, op)()
    if op in BINARY:
        return getattr(suanli, op)(x, y)
    if op == "matmul":
        return x @ y.transpose(0, 1)
    if op == "sum0":
        return x.sum(dim=0, keepdim=True)
    if op == "mean1":
        return x.mean(dim=1, keepdim=True)
    return x.amax(dim=1, keepdim=True)


@given(st.lists(st.sampled_from(UNARY + BINARY + REDUCE + ["matmul"]), min_size=1, max_size=8),
       st.sampled_from([2, 3]), st.integers(0, 2 ** 31 - 1), st.booleans())
def test_fuzz_random_chains(ops, n, seed, backward):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    w = suanli.nn.Parameter(suanli.tensor(rng.standard_normal((n, n))))

    def f(x, y):
        h = x
        for op in ops:
            h = _apply(op, h, y)
            h = h + w if h.shape == w.shape else h * 1.5
        h = h * w.sum()
        if backward:
            h.sum().backward()
        return h

    compiled = suanli.compile(f)
    compiled(suanli.tensor(a), suanli.tensor(b))          # trace on other data first
    a, b = a + 1.0, b - 0.5
    w.grad = None
    want = f(suanli.tensor(a), suanli.tensor(b)).detach().numpy()
    want_grad = None if w.grad is None else w.grad.numpy().copy()
    w.grad = None
    got = compiled(suanli.tensor(a), suanli.tensor(b)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if backward:
        np.testing.assert_allclose(w.grad.numpy(), want_grad, rtol=1e-12, atol=1e-12)
    plan = compiled.last_plan
    verify(plan.graph)
    ref = interpret(plan.graph, a, b, *[t.detach().numpy() for t in plan.traced.state])
    np.testing.assert_allclose(ref[0], want, rtol=1e-12, atol=1e-12)


def test_trace_records_one_node_per_primitive():
    t = trace(lambda x: x.exp().sum(), (suanli.ones(2, 2),))
    assert [n.op for n in t.graph.nodes] == ["exp", "sum"]
    assert t.graph.outputs[0].producer is t.graph.nodes[-1]
