"""Blocked NCHWc layout: the reorder primitives (round trips, VJP/JVP by finite differences), the blocked
convolution against torch and between its native and NumPy paths, and the ``layout_nchwc`` pass on
small graphs and on ResNet-18 through ``Session`` (graph verifies, reorders only at region boundaries,
outputs equal to the untransformed session)."""
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import suanli
from suanli import native
from suanli.autograd import gradcheck
from suanli.compiler import passes as P
from suanli.compiler.passes.layout import choose_layout, layout_nchwc
from suanli.errors import DTypeError, ShapeError
from suanli.graph import Graph, interpret, verify
from suanli.inference import Session
from suanli.ops.layout import block_weight, conv2d_nchwc, from_nchwc, max_pool2d_nchwc, to_nchwc

needs_native = pytest.mark.skipif(native.load("conv_nchwc") is None, reason="no working C compiler here")


def _blocked_reference(x: np.ndarray, b: int) -> np.ndarray:
    """NCHWc written out element by element: out[n, c // b, h, w, c % b] = x[n, c, h, w]."""
    N, C, H, W = x.shape
    out = np.zeros((N, -(-C // b), H, W, b), x.dtype)
    for c in range(C):
        out[:, c // b, :, :, c % b] = x[:, c]
    return out


# ===================================================================================== reorders
@pytest.mark.parametrize("C", [1, 5, 8, 16, 20, 33])
@pytest.mark.parametrize("block", [8, 16])
def test_reorder_round_trip(C, block):
    x = np.random.default_rng(C).standard_normal((2, C, 3, 4)).astype(np.float32)
    xb = to_nchwc(suanli.tensor(x), block)
    np.testing.assert_array_equal(xb.numpy(), _blocked_reference(x, block))   # pad channels exactly 0
    np.testing.assert_array_equal(from_nchwc(xb, C).numpy(), x)


@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, block", [((2, 20, 5, 7), 16), ((1, 3, 9, 9), 3), ((1, 64, 40, 40), 16)])
def test_reorder_native_and_numpy_paths_agree(shape, block, dtype):
    x = suanli.tensor(np.random.default_rng(2).standard_normal(shape).astype(dtype))
    fast = to_nchwc(x, block)
    back = from_nchwc(fast, shape[1])
    with native.disabled():
        np.testing.assert_array_equal(to_nchwc(x, block).numpy(), fast.numpy())
        np.testing.assert_array_equal(from_nchwc(fast, shape[1]).numpy(), back.numpy())
    np.testing.assert_array_equal(back.numpy(), x.numpy())


def test_native_kernel_builds_where_a_compiler_exists():
    """The native tests skip without a compiler; with one, a kernel that fails to build must not hide
    behind the NumPy fallback."""
    if native.enabled() and native.compiler() is not None:
        assert native.load("conv_nchwc") is not None


def test_reorder_vjp_and_jvp_by_finite_differences():
    x = suanli.tensor(np.random.default_rng(0).standard_normal((2, 5, 3, 2)), requires_grad=True)
    assert gradcheck(lambda t: to_nchwc(t, 4), (x,))
    xb = suanli.tensor(np.random.default_rng(1).standard_normal((2, 2, 3, 2, 4)), requires_grad=True)
    assert gradcheck(lambda t: from_nchwc(t, 6), (xb,))
    # second order through both (each one's VJP is the other)
    assert suanli.autograd.gradgradcheck(lambda t: to_nchwc(t, 4) * to_nchwc(t, 4), (x,))


def test_reorder_errors_name_the_op():
    with pytest.raises(ShapeError, match="to_nchwc"):
        to_nchwc(suanli.ones(2, 3, 4), 16)
    with pytest.raises(ValueError, match="from_nchwc"):
        from_nchwc(suanli.ones(1, 2, 3, 3, 8), 20)       # 2 blocks of 8 hold 9..16 channels


# =================================================================================== blocked conv
def _torch_conv(x, w, b, stride, padding, dilation):
    y = TF.conv2d(torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
                  torch.tensor(b, dtype=torch.float64), stride=stride, padding=padding, dilation=dilation)
    return y.numpy()


CASES = [  # N, C, O, H, W, k, stride, padding, dilation
    (1, 16, 16, 9, 9, 3, 1, 1, 1),
    (2, 20, 24, 11, 10, 3, 2, 1, 1),
    (1, 32, 16, 8, 8, 1, 1, 0, 1),
    (2, 16, 32, 9, 7, 1, 2, 0, 1),
    (1, 8, 16, 20, 20, 7, 2, 3, 1),
    (1, 17, 9, 12, 13, 3, 1, 2, 2),
    (3, 16, 16, 15, 33, 3, (1, 2), (0, 1), 1),   # width 31 / 17: register blocks of 14 plus a remainder
    (1, 24, 40, 5, 6, 5, 1, 2, 1),
]
NARROW = [  # inputs with fewer channels than a block: one block of C (NHWC) or planar NCHW (blocks of 1)
    (2, 3, 16, 17, 15, 7, 2, 3, 1),
    (1, 5, 8, 9, 9, 3, 1, 1, 2),
    (2, 3, 32, 29, 33, 7, 2, 3, 1),     # an RGB stem with two output blocks: the two-block planar kernel
    (1, 3, 32, 9, 12, 3, 1, 1, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [8, 16])
@pytest.mark.parametrize("case", CASES)
def test_conv2d_nchwc_matches_torch(case, block, dtype):
    _check_against_torch(case, block, dtype, in_block=block)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("planar", [False, True])
@pytest.mark.parametrize("case", NARROW)
def test_conv2d_nchwc_narrow_input_matches_torch(case, planar, dtype):
    _check_against_torch(case, 16, dtype, in_block=1 if planar else case[1])


def test_planar_blocks_are_a_view():
    x = suanli.randn(2, 3, 5, 4)
    xb = to_nchwc(x, 1)
    assert xb.shape == (2, 3, 5, 4, 1) and np.shares_memory(xb.numpy(), x.numpy())


def _check_against_torch(case, block, dtype, in_block):
    N, C, O, H, W, k, stride, padding, dilation = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = (rng.standard_normal((O, C, k, k)) / np.sqrt(C * k * k)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    ref = _torch_conv(x, w, b, stride, padding, dilation)
    res = rng.standard_normal(ref.shape).astype(dtype)
    xb, wb = to_nchwc(suanli.tensor(x), in_block), suanli.tensor(block_weight(w, block, in_block))
    rb = to_nchwc(suanli.tensor(res), block)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    y = conv2d_nchwc(xb, wb, suanli.tensor(b), stride=stride, padding=padding, dilation=dilation)
    assert y.dtype == dtype
    np.testing.assert_allclose(from_nchwc(y, O).numpy(), ref, **tol)
    y = conv2d_nchwc(xb, wb, suanli.tensor(b), rb, stride=stride, padding=padding, dilation=dilation, relu=True)
    np.testing.assert_allclose(from_nchwc(y, O).numpy(), np.maximum(ref + res, 0), **tol)
    assert np.all(y.numpy()[:, -1, ..., O % block or block:] == 0)   # padded output channels stay zero


@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES[:4] + CASES[6:7] + NARROW)
def test_native_and_numpy_paths_agree(case, dtype):
    N, C, O, H, W, k, stride, padding, dilation = case
    bi = min(C, 16)
    rng = np.random.default_rng(1)
    x = suanli.tensor(rng.standard_normal((N, C, H, W)).astype(dtype))
    wb = suanli.tensor(block_weight(rng.standard_normal((O, C, k, k)).astype(dtype), 16, bi))
    b = suanli.tensor(rng.standard_normal(O).astype(dtype))

    def run():
        return conv2d_nchwc(to_nchwc(x, bi), wb, b, stride=stride, padding=padding, dilation=dilation,
                            relu=True).numpy()

    fast = run()
    with native.disabled():
        slow = run()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fast, slow, rtol=tol, atol=tol)


@needs_native
def test_cached_call_plans_follow_native_disabled(monkeypatch):
    """The per-geometry call plan is cached, but whether native kernels run is decided per call."""
    import suanli.ops.layout as layout
    calls = []
    reference = layout._reference
    monkeypatch.setattr(layout, "_reference", lambda *a, **k: calls.append(1) or reference(*a, **k))
    x = to_nchwc(suanli.randn(1, 16, 6, 6), 16)
    wb = suanli.tensor(block_weight(np.ones((32, 16, 3, 3), np.float32), 16))
    run = lambda: conv2d_nchwc(x, wb, padding=1).numpy()   # noqa: E731
    first = run()
    with native.disabled():
        second = run()
    third = run()
    assert len(calls) == 1                      # only the call inside the block took the NumPy path
    np.testing.assert_allclose(second, first, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(third, first)


POOLS = [  # N, C, H, W, kernel, stride, padding, dilation, ceil_mode
    (2, 20, 13, 12, 3, 2, 1, 1, False),
    (1, 16, 9, 10, 2, 2, 0, 1, True),
    (1, 8, 11, 11, 3, 1, 1, 2, False),
    (3, 33, 8, 7, (3, 2), (2, 1), (1, 0), 1, True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOLS)
def test_max_pool2d_nchwc_matches_torch(case, dtype):
    N, C, H, W, k, s, p, d, ceil = case
    x = np.random.default_rng(3).standard_normal((N, C, H, W)).astype(dtype)
    x[0, 0, 1, 1] = np.nan                                        # NaN propagates, as in torch
    x[-1, -1, 4, 5] = x[0, 7, 5, 4] = np.nan                     # wherever it sits in a window
    x[0, 1, 2, 2], x[0, 2, 3, 3] = np.inf, -np.inf
    want = TF.max_pool2d(torch.tensor(x), k, s, p, d, ceil_mode=ceil).numpy()
    for block in (8, 16):
        got = from_nchwc(max_pool2d_nchwc(to_nchwc(suanli.tensor(x), block), k, s, p, d, ceil), C).numpy()
        np.testing.assert_array_equal(got, want)
        if native.load("conv_nchwc") is not None:
            with native.disabled():
                slow = max_pool2d_nchwc(to_nchwc(suanli.tensor(x), block), k, s, p, d, ceil)
            np.testing.assert_array_equal(from_nchwc(slow, C).numpy(), want)


def test_conv2d_nchwc_errors():
    xb = to_nchwc(suanli.ones(1, 16, 5, 5), 16)
    w = block_weight(np.ones((16, 16, 3, 3), np.float32), 16)
    with pytest.raises(ShapeError, match="conv2d_nchwc"):
        conv2d_nchwc(xb, suanli.tensor(np.ones((16, 16, 3, 3), np.float32)))       # weight not blocked
    with pytest.raises(ShapeError, match="conv2d_nchwc"):
        conv2d_nchwc(xb, suanli.tensor(block_weight(np.ones((16, 32, 3, 3), np.float32), 16)))
    with pytest.raises(DTypeError, match="conv2d_nchwc"):
        conv2d_nchwc(xb, suanli.tensor(w.astype(np.float64)))
    with pytest.raises(ShapeError, match="residual"):
        conv2d_nchwc(xb, suanli.tensor(w), residual=xb[:, :, :3])


# ========================================================================================= the pass
_CONV = dict(dilation=(1, 1), groups=1)


def _conv_node(g, x, w, stride=1, pad=1):
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    Ho, Wo = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    return g.add_node("conv2d", [x, g.add_constant(w)],
                      dict(stride=(stride, stride), padding=((pad, pad), (pad, pad)), **_CONV),
                      shape=(N, O, Ho, Wo), dtype=x.dtype)


def _ops(graph):
    return [n.op for n in graph.nodes if n.op != "constant"]


def _always(*args):
    return "nchwc"


@pytest.mark.parametrize("C", [16, 20])
def test_pass_keeps_a_chain_blocked_with_one_reorder_each_way(C):
    """conv -> +bias -> relu -> conv -> (+ residual) -> clamp_min(0.5): the elementwise ops between
    the convolutions run blocked; clamp_min(0.5) maps the zero pad channels to 0.5, so with C = 20
    (padding) it must stay outside the region, with C = 16 (no padding) it may join."""
    rng = np.random.default_rng(0)
    g = Graph()
    x = g.add_input((2, C, 6, 6), np.float32)
    y = _conv_node(g, x, rng.standard_normal((C, C, 3, 3)).astype(np.float32) / 10)
    y = g.add_node("add", [y, g.add_constant(rng.standard_normal((1, C, 1, 1)).astype(np.float32))],
                   shape=y.shape, dtype=y.dtype)
    r = g.add_node("relu", [y], shape=y.shape, dtype=y.dtype)
    z = _conv_node(g, r, rng.standard_normal((C, C, 1, 1)).astype(np.float32), pad=0)
    s = g.add_node("add", [z, r], shape=z.shape, dtype=z.dtype)           # residual: r has two users
    half = g.add_constant(np.array(0.5, np.float32))
    g.outputs = [g.add_node("clamp_min", [s, half], shape=s.shape, dtype=s.dtype)]
    xa = rng.standard_normal((2, C, 6, 6)).astype(np.float32)
    before = interpret(g, xa)[0]
    g = verify(layout_nchwc(g, policy=_always))
    ops = _ops(g)
    assert ops.count("to_nchwc") == 1 and ops.count("from_nchwc") == 1
    assert ops.count("conv2d_nchwc") == 2 and "conv2d" not in ops
    clamp_after_exit = ops.index("clamp_min") > ops.index("from_nchwc")
    assert clamp_after_exit == (C == 20)
    np.testing.assert_allclose(interpret(g, xa)[0], before, rtol=1e-5, atol=1e-5)


def test_pass_leaves_what_the_policy_rejects():
    g = Graph()
    x = g.add_input((1, 16, 16, 16), np.float32)
    y = _conv_node(g, x, np.ones((8, 16, 3, 3), np.float32))             # 8 outputs: narrower than a block
    g.outputs = [g.add_node("conv2d", [y, g.add_constant(np.ones((8, 1, 3, 3), np.float32))],
                            dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=8),
                            shape=(1, 8, 16, 16), dtype=np.float32)]     # depthwise
    assert _ops(layout_nchwc(g)) == ["conv2d", "conv2d"]
    from suanli.inference import conv_kernels
    n = conv_kernels.num_threads()
    try:                                  # layers conv2d would run by Winograd go blocked at any thread count
        for threads in (1, 2):
            conv_kernels.set_num_threads(threads)
            for batch in (1, 8):
                assert choose_layout((batch, 64, 56, 56), (64, 64, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1),
                                     1) == "nchwc"
    finally:
        conv_kernels.set_num_threads(n)
    assert choose_layout((1, 64, 56, 56), (128, 64, 1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), 1) == "nchwc"


def _resnet18():
    """ResNet-18 with non-trivial batch-norm statistics (folded biases are not zero): the benchmark's."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
    from layout import resnet18_with_statistics
    return resnet18_with_statistics()


def _without_layout():
    return [getattr(P, n) for n in P.INFERENCE if n != "layout_nchwc"]


def _with_layout(policy=None):
    layout = layout_nchwc if policy is None else (lambda g: layout_nchwc(g, policy=policy))
    return [layout if n == "layout_nchwc" else getattr(P, n) for n in P.INFERENCE]


def test_layout_pass_is_in_the_inference_list():
    assert "layout_nchwc" in P.INFERENCE


@pytest.mark.parametrize("policy", [None, _always])
def test_resnet18_session_with_layout_pass(policy):
    model = _resnet18()
    x = suanli.randn(1, 3, 64, 64)
    plain = Session(model, (x,), passes=_without_layout())
    blocked = Session(model, (x,), passes=_with_layout(policy))
    verify(blocked.graph)
    ops = _ops(blocked.graph)
    n_conv = _ops(plain.graph).count("conv2d")
    assert ops.count("conv2d_nchwc") + ops.count("conv2d") == n_conv
    # reorders only at region boundaries: none reads another reorder's result
    for node in blocked.graph.nodes:
        if node.op in ("to_nchwc", "from_nchwc"):
            producer = node.inputs[0].producer
            assert producer is None or producer.op not in ("to_nchwc", "from_nchwc")
    assert ops[0] == "to_nchwc" and blocked.graph.nodes[-1].op != "from_nchwc"   # the stem reads planar NCHW
    if policy is _always:
        assert ops.count("conv2d_nchwc") == n_conv and "conv2d" not in ops
        # one region: the stem reads its 3 channels as planar blocks of 1 (a view; relu fused), max pooling runs
        # blocked, the blocked tensor flows to avg_pool
        assert ops.count("to_nchwc") == 1 and ops.count("from_nchwc") == 1
        assert ops[:3] == ["to_nchwc", "conv2d_nchwc", "max_pool2d_nchwc"]
        assert ops[ops.index("adaptive_avg_pool2d") - 1] == "from_nchwc"
    else:
        assert ops.count("conv2d_nchwc") > 1
    xa = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    want, got = plain.run(None, {"input": xa})[0], blocked.run(None, {"input": xa})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_pass_is_registered_and_runs_by_name():
    from suanli.compiler.compile import _PASSES
    P.register_all()
    assert _PASSES["layout_nchwc"][0] is layout_nchwc and not _PASSES["layout_nchwc"][1]   # not a training default


PAIR_CASES = [  # N, C, O, H, W, k, stride, padding, dilation, input block (1: planar NCHW)
    (2, 16, 32, 9, 7, 1, 2, 0, 1, 16),
    (3, 16, 32, 15, 33, 3, (1, 2), (0, 1), 1, 16),
    (2, 32, 64, 10, 31, 3, 1, 1, 1, 16),          # width 31 = 14 + 14 + 2 + 1
    (1, 32, 32, 9, 27, 3, 1, 1, 1, 16),           # width 27 = 14 + 8 + 4 + 1
    (1, 16, 32, 7, 7, 3, 1, 1, 1, 16),            # width 7: one block of 7
    (1, 3, 32, 30, 40, 7, 2, 3, 1, 1),            # planar stride 2 (an RGB stem), width 20 = 14 + 4 + 2
    (2, 5, 32, 11, 17, 3, 1, 1, 1, 1),            # planar stride 1, width 17 = 14 + 2 + 1
]


@needs_native
@pytest.mark.parametrize("case", PAIR_CASES)
def test_two_block_kernel_gives_the_one_block_kernels_bits(case, monkeypatch):
    """conv_nchwc_pair (two output blocks per register block, even block counts; built for float32
    block 16) sums in the same order as the one-block kernel, so the two agree exactly."""
    import suanli.ops.layout as layout
    N, C, O, H, W, k, stride, padding, dilation, bi = case
    rng = np.random.default_rng(2)
    x = to_nchwc(suanli.tensor(rng.standard_normal((N, C, H, W)).astype(np.float32)), bi)
    wb = suanli.tensor(block_weight(rng.standard_normal((O, C, k, k)).astype(np.float32), 16, bi))
    b = suanli.tensor(rng.standard_normal(O).astype(np.float32))
    r = to_nchwc(suanli.tensor(rng.standard_normal((N, O) + _out_hw(H, W, k, stride, padding)).astype(np.float32)), 16)
    runs = []
    for pairs in (True, False):
        monkeypatch.setattr(layout, "PAIRS", pairs)
        runs.append(conv2d_nchwc(x, wb, b, r, stride=stride, padding=padding, dilation=dilation, relu=True).numpy())
    np.testing.assert_array_equal(runs[0], runs[1])
    ref = _torch_conv(from_nchwc(x, C).numpy().astype(np.float64),
                      wb.numpy().transpose(0, 5, 1, 4, 2, 3).reshape(O, -1, k, k)[:, :C].astype(np.float64),
                      b.numpy().astype(np.float64), stride, padding, dilation)
    want = np.maximum(ref + from_nchwc(r, O).numpy(), 0)
    np.testing.assert_allclose(from_nchwc(suanli.tensor(runs[0]), O).numpy(), want, rtol=1e-4, atol=1e-4)


def _out_hw(H, W, k, stride, padding):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (H + 2 * ph - k) // sh + 1, (W + 2 * pw - k) // sw + 1


def test_conv_attributes_given_as_lists_work_like_tuples():
    """The per-geometry call plans are cached by their attributes; lists (unhashable) take the same
    plan uncached instead of failing inside the cache."""
    from suanli.ops.layout import _conv2d_nchwc_impl
    rng = np.random.default_rng(4)
    x = to_nchwc(suanli.tensor(rng.standard_normal((1, 16, 6, 7)).astype(np.float32)), 16).numpy()
    w = block_weight(rng.standard_normal((32, 16, 3, 3)).astype(np.float32), 16)
    b = rng.standard_normal(32).astype(np.float32)
    want = _conv2d_nchwc_impl(x, w, b, stride=(1, 2), padding=((1, 1), (0, 1)), dilation=(1, 1), relu=True)
    got = _conv2d_nchwc_impl(x, w, b, stride=[1, 2], padding=[[1, 1], [0, 1]], dilation=[1, 1], relu=True)
    np.testing.assert_array_equal(got, want)
