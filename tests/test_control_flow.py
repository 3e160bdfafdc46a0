"""cond / while_loop / scan: eager values and gradients (vs finite differences), compiled vs eager,
the interpreter on their subgraphs, captured tensors, and the clear errors."""
import numpy as np
import pytest

import suanli
from suanli.graph import TraceError, interpret, verify


def _fd_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        g[i] = (f(x + d) - f(x - d)) / (2 * eps)
    return g


def _value(fn, a):
    return float(fn(suanli.tensor(a)).sum().item())


def cond_fn(x):
    return suanli.cond(x.sum() > 0, lambda v: (v * v).sin(), lambda v: v.exp() * 3, x)


def while_fn(x):
    return suanli.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, (c[1] * 1.5).tanh()),
                             (suanli.tensor(0), x))[1]


def scan_fn(x):
    carry, ys = suanli.scan(lambda c, v: (c * v + 1.0, c.sin() * v), suanli.tensor(0.5, dtype=x.dtype), x)
    return ys.sum() + carry


@pytest.mark.parametrize("fn", [cond_fn, while_fn, scan_fn])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_eager_gradients_match_finite_differences(fn, sign):
    a = sign * np.random.default_rng(3).uniform(0.2, 1.0, 4)
    x = suanli.tensor(a, requires_grad=True)
    fn(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), _fd_grad(lambda v: _value(fn, v), a), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("fn", [cond_fn, while_fn, scan_fn])
def test_compiled_matches_eager_both_ways(fn):
    compiled = suanli.compile(fn)
    for sign in (1.0, -1.0, 2.0):          # one trace serves both branches / any data
        a = sign * np.random.default_rng(int(sign * 10) % 7).uniform(0.2, 1.0, 4)
        want = fn(suanli.tensor(a)).numpy()
        np.testing.assert_allclose(compiled(suanli.tensor(a)).numpy(), want, rtol=1e-13)
        plan = compiled.last_plan
        verify(plan.graph)
        np.testing.assert_allclose(interpret(plan.graph, a)[0], want, rtol=1e-13)
    assert compiled.stats["traces"] == 1
    assert any(n.op in ("cond", "while_loop", "scan") for n in compiled.last_plan.graph.nodes)


def test_data_dependent_trip_count_and_captures():
    w = suanli.nn.Parameter(suanli.tensor([2.0, 3.0], dtype=suanli.float64))
    bias = suanli.tensor([1.0, 1.0], dtype=suanli.float64)

    def f(x, n):
        def body(c):
            i, v = c
            return i + 1, suanli.cond(i % 2 == 0, lambda u: u * w, lambda u: u + bias, v)
        return suanli.while_loop(lambda c: c[0] < n, body, (suanli.tensor(0), x))[1]

    with suanli.no_grad():
        compiled = suanli.compile(f)
        for n in (3, 0, 5):
            x = suanli.tensor([1.0, -1.0], dtype=suanli.float64)
            np.testing.assert_allclose(compiled(x, suanli.tensor(n)).numpy(), f(x, suanli.tensor(n)).numpy())
        with suanli.no_grad():
            w.mul_(2)       # parameters captured by a nested body are still read by reference
        np.testing.assert_allclose(compiled(x, suanli.tensor(2)).numpy(), f(x, suanli.tensor(2)).numpy())
    assert compiled.stats["traces"] == 1


def test_scan_with_tuple_xs_and_outputs():
    def f(h0, xs, gs):
        return suanli.scan(lambda h, xg: ((h + xg[0]).tanh() * xg[1], (h, xg[0] * 2)), h0, (xs, gs))

    rng = np.random.default_rng(0)
    args = [suanli.tensor(rng.standard_normal(s)) for s in [(3,), (5, 3), (5, 3)]]
    want = f(*args)
    got = suanli.compile(f)(*args)
    np.testing.assert_allclose(got[0].numpy(), want[0].numpy(), rtol=1e-13)
    for a, b in zip(got[1], want[1]):
        assert a.shape == (5, 3)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-13)


def test_clear_errors():
    x = suanli.ones(2, requires_grad=True)
    with pytest.raises(TraceError, match="gradients through suanli.cond inside a compiled"):
        suanli.compile(lambda v: cond_fn(v).sum())(x)
    with pytest.raises(TraceError, match="branches return different shapes"):
        suanli.compile(lambda v: suanli.cond(v.sum() > 0, lambda a: a, lambda a: a.sum(), v))(suanli.ones(2))
    with pytest.raises(TraceError, match="body_fn changes the shapes"):
        suanli.compile(lambda v: suanli.while_loop(lambda a: a.sum() < 5, lambda a: a.sum() + 1, v))(suanli.ones(2))
    with pytest.raises(ValueError, match="one-element"):
        suanli.cond(suanli.ones(2) > 0, lambda: 1, lambda: 2)
