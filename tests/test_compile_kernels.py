"""The compiler's native kernels beyond elementwise fusion: the thread pool (``fused_pool.c``), the
row kernels (softmax / softmax_grad / standardize / standardize_grad, ``codegen_rows``) and the
stack fusion of a split's backward (``passes.fusion.fuse_stack``).

Oracles: the registry's NumPy ``impl`` (what eager runs), torch (float64 and float32, values and
gradients), and eager suanli for whole compiled functions (forward and gradients)."""
import ctypes

import numpy as np
import pytest
import torch

import suanli
import suanli.nn.functional as F
from suanli import native
from suanli.compiler import kernels
from suanli.compiler.codegen_rows import RowKernel, lower_native_ops
from suanli.compiler.passes.fusion import StackKernel, fuse_stack
from suanli.graph import Graph, interpret
from suanli.graph.interpret import run_primitive

needs_cc = pytest.mark.skipif(native.compile_source("probe", "int probe(void) { return 1; }") is None,
                              reason="no working C compiler here")
TOL = {"float64": 1e-10, "float32": 1e-5}


def _close(a, b, dtype):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype] * scale)


@pytest.fixture(params=[1, 2])
def threads(request):
    kernels.set_num_threads(request.param)
    old, kernels.PARALLEL_MIN_ELEMENTS = kernels.PARALLEL_MIN_ELEMENTS, 1     # threads even on small inputs
    yield request.param
    kernels.PARALLEL_MIN_ELEMENTS = old
    kernels.set_num_threads(None)


# ---------------------------------------------------------------------------------------- pool
@needs_cc
@pytest.mark.parametrize("ntasks,nt", [(0, 2), (1, 2), (5, 2), (7, 3), (100, 4), (3, 8)])
def test_pool_runs_every_task_once(ntasks, nt):
    lib = native.compile_source("pool_probe", "void f(void **a, long t0, long t1) {\n"
                                "    int *hits = (int *)a[0];\n"
                                "    for (long t = t0; t < t1; t++) hits[t] += 1;\n}\n")
    fn, addr = kernels.bind(lib, "f")
    hits = np.zeros(max(ntasks, 1), np.int32)
    kernels.run_tasks(fn, addr, (ctypes.c_void_p * 1)(hits.ctypes.data), ntasks, nt)
    assert hits[:ntasks].tolist() == [1] * ntasks


# ---------------------------------------------------------------------------------- row kernels
SHAPES = [(3, 5, 7), (2, 4, 64, 64), (6, 1), (4, 65)]


def _rand(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype) * 3


@needs_cc
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_kernels_match_numpy_and_torch(dtype, shape, causal, threads):
    if causal and len(shape) < 2:
        pytest.skip("causal needs 2 dims")
    x, g = _rand(shape, dtype), _rand(shape, dtype, 1)
    attrs = {"dim": len(shape) - 1, "causal": causal}
    fwd = RowKernel("softmax", shape, dtype, attrs)
    bwd = RowKernel("softmax_grad", shape, dtype, {"dim": len(shape) - 1})
    assert fwd.native and bwd.native
    y = fwd(x)[0]
    _close(y, run_primitive("softmax", [x], attrs), dtype)
    gx = bwd(y, g)[0]
    _close(gx, run_primitive("softmax_grad", [y, g], {"dim": len(shape) - 1}), dtype)
    tx = torch.tensor(x, requires_grad=True)
    scores = tx
    if causal:
        mask = torch.ones(shape[-2:], dtype=torch.bool).triu(1)
        scores = tx.masked_fill(mask, float("-inf"))
    ty = torch.softmax(scores, -1)
    ty.backward(torch.tensor(g))
    _close(y, ty.detach().numpy(), dtype)
    _close(gx, tx.grad.numpy(), dtype)
    assert y.dtype == gx.dtype == np.dtype(dtype)


@needs_cc
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape,axes", [((3, 5, 7), (2,)), ((4, 6, 128), (2,)), ((2, 3, 4, 5), (2, 3)), ((5, 1), (1,))])
def test_layer_norm_kernels_match_numpy_and_torch(dtype, shape, axes, threads):
    x, g = _rand(shape, dtype) + 2, _rand(shape, dtype, 1)
    attrs = {"axes": axes, "eps": 1e-5}
    y = RowKernel("standardize", shape, dtype, attrs)(x)[0]
    _close(y, run_primitive("standardize", [x], attrs), dtype)
    gx = RowKernel("standardize_grad", shape, dtype, attrs)(x, y, g)[0]
    _close(gx, run_primitive("standardize_grad", [x, y, g], attrs), dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.layer_norm(tx, shape[len(shape) - len(axes):], eps=1e-5)
    ty.backward(torch.tensor(g))
    _close(y, ty.detach().numpy(), dtype)
    _close(gx, tx.grad.numpy(), dtype)


@needs_cc
@pytest.mark.parametrize("op", ["softmax", "softmax_grad", "standardize", "standardize_grad"])
def test_row_kernels_are_thread_count_independent(op):
    shape = (3, 4, 33, 33)
    attrs = {"dim": 3, "causal": True} if op == "softmax" else {"dim": 3} if op == "softmax_grad" \
        else {"axes": (3,), "eps": 1e-5}
    args = [_rand(shape, "float32", k) for k in range({"softmax": 1, "softmax_grad": 2}.get(op, 3 if "grad" in op else 1))]
    results = []
    old, kernels.PARALLEL_MIN_ELEMENTS = kernels.PARALLEL_MIN_ELEMENTS, 1
    try:
        for nt in (1, 2, 3):
            kernels.set_num_threads(nt)
            results.append(RowKernel(op, shape, "float32", attrs)(*args)[0])
    finally:
        kernels.PARALLEL_MIN_ELEMENTS = old
        kernels.set_num_threads(None)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@needs_cc
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_kernel_nan_and_inf_rows_as_numpy(causal):
    x = _rand((2, 6, 6), "float32")
    x[0, 4, 1] = np.nan            # a visible key: the whole row is NaN (masked keys too), as NumPy
    x[1, 2, 5] = np.nan            # masked under causal: the row stays finite there
    x[1, 3, 0] = np.inf
    attrs = {"dim": 2, "causal": causal}
    got = RowKernel("softmax", x.shape, "float32", attrs)(x)[0]
    with np.errstate(all="ignore"):
        want = run_primitive("softmax", [x], attrs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, atol=1e-7)


def test_row_kernel_without_native_code_runs_numpy():
    x = _rand((3, 8), "float64")
    with native.disabled():
        k = RowKernel("softmax", x.shape, "float64", {"dim": 1, "causal": False})
        assert not k.native
        np.testing.assert_array_equal(k(x)[0], run_primitive("softmax", [x], {"dim": 1, "causal": False}))


# --------------------------------------------------------------------------------- the passes
def _attention_block(x, w, ln_w):
    h = F.layer_norm(x, (x.shape[-1],), ln_w, None)
    q, k, v = (h @ w).reshape(x.shape[0], x.shape[1], 3, 2, -1).permute(2, 0, 3, 1, 4).unbind(0)
    att = F.softmax(q @ k.transpose(-1, -2) * 0.5, dim=-1)
    y = (att @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
    return (y * y).sum() + h.sum()


@needs_cc
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_attention_block_uses_native_kernels_and_matches_eager_and_torch(dtype):
    suanli.set_default_dtype(getattr(suanli, dtype))
    try:
        rng = np.random.default_rng(0)
        xs, ws, ls = rng.standard_normal((3, 5, 8)), rng.standard_normal((8, 24)) * 0.3, rng.standard_normal(8)
        x, w, lw = (suanli.tensor(a.astype(dtype), requires_grad=True) for a in (xs, ws, ls))

        def step(x):
            loss = _attention_block(x, w, lw)
            loss.backward()
            return loss

        compiled = suanli.compile(step)
        got = compiled(x).item()
        got_grads = [t.grad.numpy().copy() for t in (x, w, lw)]
        for t in (x, w, lw):
            t.grad = None
        want = step(x).item()
        _close(got, want, dtype)
        for t, gg in zip((x, w, lw), got_grads):
            _close(gg, t.grad.numpy(), dtype)
        ops = [n.attrs.get("ops", "") for n in compiled.last_plan.graph.nodes if n.op == "fused"]
        assert any(o.startswith("softmax[native]") for o in ops) and any(o.startswith("softmax_grad") for o in ops)
        assert any(o.startswith("standardize[native]") for o in ops)
        assert any(o.startswith("standardize_grad+weight_grad[native]") for o in ops)
        assert any(o.startswith("stack[3]") for o in ops)
        assert any(o.startswith("matmul[native]") for o in ops)      # h @ w (15 rows; the per-head ones have 5)
        assert not any(n.op in ("softmax", "standardize", "index_put") for n in compiled.last_plan.graph.nodes)
        tx, tw, tl = (torch.tensor(a.astype(dtype), requires_grad=True) for a in (xs, ws, ls))
        h = torch.nn.functional.layer_norm(tx, (8,), tl, None)
        q, k, v = (h @ tw).reshape(3, 5, 3, 2, -1).permute(2, 0, 3, 1, 4).unbind(0)
        ty = (torch.softmax(q @ k.transpose(-1, -2) * 0.5, -1) @ v).transpose(1, 2).reshape(3, 5, -1)
        tloss = (ty * ty).sum() + h.sum()
        tloss.backward()
        _close(got, tloss.item(), dtype)
        for gg, t in zip(got_grads, (tx, tw, tl)):
            _close(gg, t.grad.numpy(), dtype)
    finally:
        suanli.set_default_dtype(suanli.float32)


def _scatter_sum_graph(fill_value=0.0, slots=(0, 1, 2)):
    g = Graph()
    pieces = [g.add_input((2, 3), np.float64) for _ in slots]
    total = None
    for k, p in zip(slots, pieces):
        z = g.add_node("constant", [], {"value": np.full((3, 2, 3), fill_value)}, shape=(3, 2, 3), dtype=np.float64)
        s = g.add_node("index_put", [z, p], {"basic": (k,), "adv": (), "accumulate": False},
                       shape=(3, 2, 3), dtype=np.float64)
        total = s if total is None else g.add_node("add", [total, s], shape=(3, 2, 3), dtype=np.float64)
    g.outputs = [g.add_node("permute", [total], {"perm": (1, 0, 2)}, shape=(2, 3, 3), dtype=np.float64)]
    return g


def test_fuse_stack_rewrites_zero_scatter_sums_exactly():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 3)) for _ in range(3)]
    g = _scatter_sum_graph()
    want = interpret(g, *arrays)[0]
    fused = fuse_stack(g)
    assert [n.op for n in fused.nodes] == ["fused"] and fused.nodes[0].attrs["ops"].startswith("stack[3]+permute")
    got = interpret(fused, *arrays)[0]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, np.stack(arrays).transpose(1, 0, 2))
    assert got.flags.c_contiguous
    assert StackKernel((3, 2, 3), np.float64, None)(*arrays)[0].tolist() == np.stack(arrays).tolist()


@pytest.mark.parametrize("fill,slots", [(1.0, (0, 1, 2)), (0.0, (0, 1, 1))])
def test_fuse_stack_leaves_other_scatters_alone(fill, slots):
    g = _scatter_sum_graph(fill, slots)      # not zeros / a slot missing: the sum is not a stack
    ops = [n.op for n in g.nodes]
    assert [n.op for n in fuse_stack(g).nodes] == ops


def test_lower_native_ops_skips_other_axes():
    g = Graph()
    x = g.add_input((4, 5), np.float64)
    g.outputs = [g.add_node("softmax", [x], {"dim": 0, "causal": False}, shape=(4, 5), dtype=np.float64)]
    assert [n.op for n in lower_native_ops(g).nodes] == ["softmax"]


# ------------------------------------------------------------------------------ batched matmul
def _views(dtype):
    """q, k^T, v as attention makes them: strided slices of one permuted qkv array."""
    qkv = np.random.default_rng(2).standard_normal((3, 5, 3, 2, 4)).astype(dtype).transpose(2, 0, 3, 1, 4)
    return qkv[0], qkv[1].transpose(0, 1, 3, 2), qkv[2]


@needs_cc
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batched_gemm_kernel_on_strided_views_matches_numpy_and_torch(dtype, threads):
    from suanli.compiler.gemm import GemmKernel
    q, kt, v = _views(dtype)
    cases = [(q, kt), (np.ascontiguousarray(q), kt), (q @ kt, v), ((q @ kt).transpose(0, 1, 3, 2), q),
             (q[:, 0], kt[:, 1]), (q[:, :, ::2], kt), (q[..., ::-1], kt[..., ::-1, :])]  # 3-d; strides
    for a, b in cases:
        k = GemmKernel(a.shape, b.shape, dtype)
        assert k.native
        got = k(a, b)[0]
        _close(got, np.matmul(a.astype(np.float64), b.astype(np.float64)), dtype)
        _close(got, (torch.tensor(a.copy()) @ torch.tensor(b.copy())).numpy(), dtype)
        assert got.flags.c_contiguous and got.dtype == np.dtype(dtype)


@needs_cc
def test_batched_gemm_kernel_heads_last_layout():
    from suanli.compiler.gemm import GemmKernel
    q, kt, v = _views("float64")
    k = GemmKernel(q.shape, kt.shape, "float64", heads_last=True)
    want = np.ascontiguousarray(np.matmul(q, kt).transpose(0, 2, 1, 3))
    got = k(q, kt)[0]
    assert got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@needs_cc
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape,axes", [((3, 70, 16), (2,)), ((2, 3, 4, 5), (2, 3)), ((5, 3), (1,))])
def test_layer_norm_backward_kernel_matches_numpy_and_torch(dtype, shape, axes):
    from suanli.compiler.codegen_rows import LayerNormGradKernel
    x, g = _rand(shape, dtype) + 1, _rand(shape, dtype, 1)
    w = _rand(shape[len(shape) - len(axes):], dtype, 2)
    attrs = {"axes": axes, "eps": 1e-5}
    y = run_primitive("standardize", [x], attrs)
    lead = tuple(range(len(shape) - len(axes)))
    dw_shape = (1,) * len(lead) + w.shape
    results = []
    old = kernels.PARALLEL_MIN_ELEMENTS
    try:
        kernels.PARALLEL_MIN_ELEMENTS = 1
        for nt in (1, 2, 3):
            kernels.set_num_threads(nt)
            results.append(LayerNormGradKernel(shape, dtype, axes, 1e-5, dw_shape)(x, y, g, w))
    finally:
        kernels.PARALLEL_MIN_ELEMENTS = old
        kernels.set_num_threads(None)
    for r in results[1:]:                                    # same bits at any thread count
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)
    gx, dw = results[0]
    _close(gx, run_primitive("standardize_grad", [x, y, g * w], attrs), dtype)
    _close(dw, (g * y).sum(axis=lead, keepdims=True), dtype)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.layer_norm(tx, w.shape, tw, None, eps=1e-5).backward(torch.tensor(g))
    _close(gx, tx.grad.numpy(), dtype)
    _close(dw.reshape(w.shape), tw.grad.numpy(), dtype)


@needs_cc
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_pool_works_in_a_forked_child():
    import os
    x = _rand((64, 64), "float64")
    k = RowKernel("softmax", x.shape, "float64", {"dim": 1, "causal": False})
    old, kernels.PARALLEL_MIN_ELEMENTS = kernels.PARALLEL_MIN_ELEMENTS, 1
    kernels.set_num_threads(2)
    try:
        want = k(x)[0]                        # the parent's pool has a worker now
        pid = os.fork()
        if pid == 0:                          # the child has no workers: the pool must start afresh
            ok = np.array_equal(k(x)[0], want)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        kernels.PARALLEL_MIN_ELEMENTS = old
        kernels.set_num_threads(None)


@needs_cc
def test_blas_on_pool_gives_numpys_bits():
    """While a plan runs, OpenBLAS's parallel jobs run on the kernels' pool: same partition of the
    work, so the same bits as NumPy's own threads; afterwards OpenBLAS uses its own threads again."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((300, 700)), rng.standard_normal((700, 500))
    want = a @ b
    kernels.set_num_threads(2)
    monkey = pytest.MonkeyPatch()
    monkey.setenv("SUANLI_BLAS_POOL", "1")
    kernels._blas_hook.cache_clear()
    try:
        with kernels.blas_on_pool():
            inside = a @ b
            inside32 = a.astype(np.float32) @ b.astype(np.float32)
    finally:
        kernels.set_num_threads(None)
        monkey.undo()
        kernels._blas_hook.cache_clear()
    np.testing.assert_array_equal(inside, want)
    np.testing.assert_array_equal(inside32, a.astype(np.float32) @ b.astype(np.float32))
    np.testing.assert_array_equal(a @ b, want)


@needs_cc
def test_compiled_big_matmul_chain_matches_eager():
    rng = np.random.default_rng(6)
    x = suanli.tensor(rng.standard_normal((256, 384)).astype(np.float32), requires_grad=True)
    w = suanli.tensor(rng.standard_normal((384, 512)).astype(np.float32) * 0.05, requires_grad=True)

    def step(x):
        loss = F.gelu(x @ w).square().mean()
        loss.backward()
        return loss

    kernels.set_num_threads(2)
    try:
        got = suanli.compile(step)(x).item()
        got_grads = [x.grad.numpy().copy(), w.grad.numpy().copy()]
        x.grad = w.grad = None
        want = step(x).item()
    finally:
        kernels.set_num_threads(None)
    _close(got, want, "float32")
    for g, t in zip(got_grads, (x, w)):
        _close(g, t.grad.numpy(), "float32")


# ============================================================================ the native GEMM
@needs_cc
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a_shape,k,n,transposed", [((96, 7), 7, 5, False), ((200, 33), 33, 17, False),
                                                    ((4, 50, 16), 16, 40, False), ((300, 64), 64, 65, True),
                                                    ((130, 600), 600, 70, True), ((2, 3, 7, 9), 9, 33, False),
                                                    ((1, 1), 1, 1, False)])
def test_gemm_kernel_matches_numpy(dtype, a_shape, k, n, transposed):
    from suanli.compiler.gemm import GemmKernel
    rng = np.random.default_rng(0)
    a = rng.standard_normal(a_shape).astype(dtype)
    b = rng.standard_normal((n, k)).astype(dtype).T if transposed else rng.standard_normal((k, n)).astype(dtype)
    if transposed:                                  # a transposed view too (a weight gradient's X^T)
        a = np.ascontiguousarray(a.T).T
    kernel = GemmKernel(a.shape, b.shape, dtype)
    assert kernel.native
    got = kernel(a, b)[0]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert got.shape == a_shape[:-1] + (n,)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64), rtol=tol, atol=tol * k)


@needs_cc
def test_gemm_kernel_is_bit_identical_at_any_thread_count():
    from suanli.compiler.gemm import GemmKernel
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((333, 520)).astype(np.float32), rng.standard_normal((520, 97)).astype(np.float32)
    results = []
    for nt in (1, 2, 3):
        kernels.set_num_threads(nt)
        try:
            results.append(GemmKernel(a.shape, b.shape, np.float32)(a, b)[0])
        finally:
            kernels.set_num_threads(None)
    assert all(np.array_equal(results[0], r) for r in results[1:])


@needs_cc
def test_gemm_tiling_balances_threads():
    from suanli.compiler.gemm import tiling
    mt, nct = tiling(1, 128, 512, 2048, 4, 2)          # a weight gradient: 2 even tiles
    tiles = -(-128 // mt) * -(-512 // nct)
    assert mt % 6 == 0 and nct % 32 == 0 and tiles % 2 == 0
    mt, nct = tiling(1, 2048, 384, 128, 4, 1)          # one thread: big row strips, whole width
    assert mt >= 48 and nct >= 384


@pytest.mark.parametrize("nt", [1, 2])
def test_gemm_lowering_matches_eager(nt):
    kernels.set_num_threads(nt)
    try:
        suanli.manual_seed(0)
        lin1, lin2 = suanli.nn.Linear(32, 64).double(), suanli.nn.Linear(64, 10).double()

        def step(x, y):
            loss = suanli.nn.functional.cross_entropy(lin2(lin1(x).relu()), y)
            loss.backward()
            return loss
        x, y = suanli.randn(128, 32, dtype=suanli.float64), suanli.randint(0, 10, (128,))
        f = suanli.compile(step)
        got = f(x, y).item()
        grads = [p.grad.numpy().copy() for p in (*lin1.parameters(), *lin2.parameters())]
        ops = [n.attrs.get("ops", "") for n in f.last_plan.graph.nodes if n.op == "fused"]
        if suanli.native.enabled() and suanli.native.compiler():
            assert sum(o.startswith("matmul[native]") for o in ops) >= 3, ops      # forward and weight gradients
        for p in (*lin1.parameters(), *lin2.parameters()):
            p.grad = None
        want = step(x, y).item()
        assert abs(got - want) <= 1e-12 * abs(want)
        for g, p in zip(grads, (*lin1.parameters(), *lin2.parameters())):
            np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-10, atol=1e-13)
    finally:
        kernels.set_num_threads(None)


@needs_cc
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,n", [((128, 1, 384), 384, 1152), ((3, 7), 7, 65), ((2, 5, 40), 40, 33)])
def test_gemm_kernel_with_a_packed_weight_and_bias_matches_linear(dtype, shape, k, n, threads):
    from suanli.compiler.gemm import GemmKernel
    from suanli.graph.interpret import run_primitive
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    w = np.ascontiguousarray(rng.standard_normal((n, k)).astype(dtype).T)
    b = rng.standard_normal(n).astype(dtype)
    x_view = x.transpose(1, 0, 2) if x.ndim == 3 else x      # rows at one stride, not contiguous
    kernel = GemmKernel(x_view.shape, w.shape, dtype, weight=w)
    got = kernel(x_view, b)[0]
    want = run_primitive("linear", [np.ascontiguousarray(x_view), w, b], {})
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * k)
    np.testing.assert_allclose(kernel(x_view)[0], x_view @ w, rtol=tol, atol=tol * k)   # no bias


def test_session_runs_linear_layers_on_packed_weights():
    from suanli.inference import Session
    suanli.manual_seed(0)
    net = suanli.nn.Sequential(suanli.nn.Linear(64, 96), suanli.nn.GELU(), suanli.nn.Linear(96, 10))
    x = suanli.randn(5, 7, 64)
    sess = Session(net, (x,))
    labels = [n.attrs["ops"] for n in sess.graph.nodes if n.op == "fused"]
    if suanli.native.enabled() and suanli.native.compiler():
        assert sum("packed weight" in o for o in labels) == 2, labels
        assert not any(n.op in ("matmul", "linear") for n in sess.graph.nodes)
    with suanli.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(sess(x.numpy())[0], want, rtol=1e-5, atol=1e-6)


@needs_cc
def test_matmul_read_by_a_head_permute_is_written_in_that_layout():
    q, k = suanli.randn(2, 3, 8, 4, dtype=suanli.float64), suanli.randn(2, 3, 4, 8, dtype=suanli.float64)
    f = suanli.compile(lambda a, b: (a @ b).permute(0, 2, 1, 3).reshape(2, 8, 24))
    got = f(q, k).numpy()
    ops = [n.attrs.get("ops", "") for n in f.last_plan.graph.nodes if n.op == "fused"]
    assert any(o == "matmul[native]+permute(0, 2, 1, 3)" for o in ops), ops
    want = (q.numpy() @ k.numpy()).transpose(0, 2, 1, 3).reshape(2, 8, 24)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@needs_cc
def test_gemm_kernel_rejects_arguments_it_was_not_built_for():
    from suanli.compiler.gemm import GemmKernel
    from suanli.errors import ShapeError
    k = GemmKernel((4, 3), (3, 5), np.float32)
    a, b = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32)
    for bad in [(np.ones((4, 4), np.float32), b), (a, np.ones((3, 6), np.float32)), (a.astype(np.float64), b),
                (a, b, np.ones(4, np.float32))]:
        with pytest.raises(ShapeError, match=r"(?s)GemmKernel.*a \(4, 3\) float32, b \(3, 5\)"):
            k(*bad)
    assert k(a, b, np.ones(5, np.float32))[0][0, 0] == 4.0


def test_row_kernels_reject_arguments_they_were_not_built_for():
    from suanli.compiler.codegen_rows import LayerNormGradKernel
    from suanli.errors import ShapeError
    from suanli.graph.interpret import run_primitive
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    k = RowKernel("softmax_grad", (4, 6), np.float32, {"dim": 1})
    for bad in [(x, x[:, :5]), (x, x.astype(np.float64)), (x,), (x, x, x)]:
        with pytest.raises(ShapeError, match=r"(?s)RowKernel softmax_grad.*y \(4, 6\) float32, g \(4, 6\)"):
            k(*bad)
    np.testing.assert_allclose(k(x, x)[0], run_primitive("softmax_grad", [x, x], {"dim": 1}), rtol=1e-6)
    ln = LayerNormGradKernel((4, 6), np.float32, (1,), 1e-5, (6,))
    w = np.ones(6, np.float32)
    for bad in [(x, x, x, np.ones(5, np.float32)), (x, x, x[:3], w), (x, x, x, w.astype(np.float64))]:
        with pytest.raises(ShapeError, match=r"(?s)LayerNormGradKernel.*w \(6,\) float32"):
            ln(*bad)
    assert [o.shape for o in ln(x, x, x, w)] == [(4, 6), (6,)]

