"""Generated fused kernels agree with the NumPy reference (each primitive's registry impl): random
DAGs with broadcasting, size-1 and empty dims, both float dtypes, reductions, GEMM/conv epilogues;
the disk cache is hit on a second build; the fallbacks (no compiler, failed build) give the same
results with a DEBUG note / one warning."""
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli import _config, native
from suanli.compiler import kernels
from suanli.compiler.group import FusedGroup
from suanli.compiler.kernels import build, epilogue, set_num_threads

needs_cc = pytest.mark.skipif(native.compile_source("probe", "int probe(void) { return 1; }") is None,
                              reason="no working C compiler here")
DTYPES = ["float32", "float64"]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 0.5, -3.0, 3.9, 4.1, -30.0, 88.0, 1e4]


def assert_close(got, ref, dtype, scale=1.0):
    """float64 to ~1e-14 relative, float32 to a few ulp; ``atol`` covers cancellation (1 + erf(x) at
    x << 0) and is relative to the inputs' magnitude. NaN and inf patterns must match exactly."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref))
    eps = np.finfo(dtype).eps
    finite = np.isfinite(ref)
    rtol = 64 * eps if dtype == "float64" else 16 * eps
    np.testing.assert_allclose(got[finite], ref[finite], rtol=rtol, atol=64 * eps * scale)


def run_both(group, *arrays):
    kernel = build(group)
    assert kernel.native
    return kernel(*arrays), group.reference(*arrays)


# ------------------------------------------------------------------------------ every op
UNARY = [("neg", {}), ("exp", {}), ("log", {}), ("log1p", {}), ("expm1", {}), ("tanh", {}), ("sigmoid", {}),
         ("relu", {}), ("gelu", {"approximate": "none"}), ("gelu", {"approximate": "tanh"}), ("silu", {}),
         ("erf", {}), ("sqrt", {}), ("rsqrt", {}), ("reciprocal", {}), ("abs", {}), ("sin", {}), ("cos", {}),
         ("leaky_relu", {"negative_slope": 0.01})]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "clamp_min", "clamp_max"]
COMPARE = ["eq", "ne", "lt", "le", "gt", "ge"]


def _special_inputs(dtype, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([SPECIAL, rng.standard_normal(n) * 4, rng.uniform(-9, 9, n)]).astype(dtype)
    return x, rng.permutation(x)


@needs_cc
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_unary_op_matches_its_registry_impl(dtype):
    x, _ = _special_inputs(dtype)
    g = FusedGroup("unary")
    v = g.input(x.shape, dtype)
    g.output(*[g.call(op, v, **attrs) for op, attrs in UNARY])
    for (op, _), got, ref in zip(UNARY, *run_both(g, x)):
        big = np.abs(x[np.isfinite(x)]).max() if op in ("gelu",) else 1.0
        try:
            assert_close(got, ref, dtype, scale=big)
        except AssertionError as exc:
            raise AssertionError(f"{op} ({dtype}): {exc}") from None


@needs_cc
@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_comparison_where_pow_cast_logical(dtype):
    x, y = _special_inputs(dtype, seed=1)
    y[::7] = x[::7]                                   # ties for maximum/minimum/comparisons
    g = FusedGroup("binary")
    a, b = g.input(x.shape, dtype), g.input(y.shape, dtype)
    outs = [g.call(op, a, b) for op in BINARY + COMPARE]
    outs += [g.call("where", g.call("gt", a, b), a, 0.25), g.call("logical_not", g.call("lt", a, 0.0)),
             g.call("logical_and", g.call("gt", a, 0.0), g.call("lt", b, 1.0)),
             g.call("logical_or", g.call("eq", a, a), g.call("ne", b, b))]
    outs += [g.call("pow", a, e) for e in (2, 3, 0.5, -0.5, -1, -2, 1.7, 0)]
    other = "float64" if dtype == "float32" else "float32"
    outs += [g.call("cast", g.call("cast", a, dtype=other), dtype=dtype), g.call("cast", a, dtype="bool"),
             g.call("cast", g.call("gt", a, b), dtype=dtype)]
    g.output(*outs)
    for got, ref in zip(*run_both(g, x, y)):
        if ref.dtype == np.bool_:
            np.testing.assert_array_equal(got, ref)
        else:
            assert_close(got, ref, dtype)


def test_pow_needs_a_constant_exponent_and_unknown_ops_are_named():
    g = FusedGroup("bad")
    a, b, c = g.input((3,), "float32"), g.input((3,), "float32"), g.input((4,), "float32")
    with pytest.raises(ValueError, match=r"codegen\[bad\]: pow is lowered for a constant exponent"):
        g.call("pow", a, b)
    with pytest.raises(ValueError, match=r"'matmul' cannot be lowered.*\n.*\n.*supported: abs, add"):
        g.call("matmul", a, b)
    with pytest.raises(Exception, match=r"(?s)add: shapes cannot be broadcast.*\(3,\) vs \(4,\)"):   # the registry's own broadcast error
        g.call("add", a, c)
    with pytest.raises(Exception, match="float64"):                      # ... and its dtype rule
        g.call("add", a, g.call("cast", b, dtype="float64"))
    with pytest.raises(ValueError, match="declare every input before the first call"):
        g.input((3,), "float32")


# ------------------------------------------------------------------------------ random DAGs (hypothesis)
_UNARY_POOL = ["neg", "exp", "tanh", "sigmoid", "relu", "gelu", "gelu_tanh", "silu", "abs", "sqrt_abs", "erf",
               "log1p_abs", "square"]
_BINARY_POOL = ["add", "sub", "mul", "div_safe", "maximum", "minimum", "where_gt", "scale"]


def _apply_random(g, op, a, b):
    if op == "gelu_tanh":
        return g.call("gelu", a, approximate="tanh")
    if op == "gelu":
        return g.call("gelu", a, approximate="none")
    if op == "sqrt_abs":
        return g.call("sqrt", g.call("abs", a))
    if op == "log1p_abs":
        return g.call("log1p", g.call("abs", a))
    if op == "square":
        return g.call("pow", a, 2)
    if op == "div_safe":                      # bounded away from 0: no cancellation blow-up
        return g.call("div", a, g.call("add", g.call("abs", b), 1.0))
    if op == "where_gt":
        return g.call("where", g.call("gt", a, b), a, b)
    if op == "scale":
        return g.call("add", g.call("mul", a, 0.75), -0.5)
    if op in _BINARY_POOL:
        return g.call(op, a, b)
    return g.call(op, a)


@st.composite
def random_groups(draw):
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.integers(0, 3))
    domain = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3, 5, 17, 40]), min_size=ndim, max_size=ndim)))
    if draw(st.booleans()):                    # mostly non-empty domains
        domain = tuple(max(d, 1) for d in domain)
    shapes = [domain]
    for _ in range(draw(st.integers(0, 2))):   # broadcast inputs: some dims 1, some leading dims dropped
        keep = draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
        shape = tuple(d if k else 1 for d, k in zip(domain, keep))
        shapes.append(shape[draw(st.integers(0, ndim)):])
    g = FusedGroup("fuzz")
    values = [g.input(s, dtype) for s in shapes]
    for _ in range(draw(st.integers(1, 7))):
        op = draw(st.sampled_from(_UNARY_POOL + _BINARY_POOL))
        a, b = draw(st.sampled_from(values)), draw(st.sampled_from(values))
        values.append(_apply_random(g, op, a, b))
    last = g.call("add", values[-1], values[0]) if values[-1].shape != domain else values[-1]
    outs = [last] + [v for v in values[len(shapes):-1] if v.shape == domain][:2]
    g.output(*outs)
    reduction = draw(st.sampled_from([None, "sum", "max", "mean"]))
    axis = draw(st.sampled_from(["last", "all"])) if ndim else "all"
    empty = any(domain[a] == 0 for a in (range(ndim) if axis == "all" else [ndim - 1])) if ndim else False
    if reduction and not (reduction == "max" and empty):
        g.output(g.reduce(reduction, last, axis=axis, keepdims=draw(st.booleans())))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arrays = [np.asarray(rng.standard_normal(s) * 2, dtype) for s in shapes]
    return g, arrays


@needs_cc
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(random_groups())
def test_random_dags_match_the_reference(case):
    g, arrays = case
    got, ref = run_both(g, *arrays)
    dtype = g.inputs[0].dtype.name
    for o, r in zip(got, ref):
        scale = max(1.0, float(np.abs(r[np.isfinite(r)]).max())) if r.size and np.isfinite(r).any() else 1.0
        n = max(1, int(np.prod(g.domain)))
        # sums: error grows like log(n) * eps * sum|x|; bound it with n * eps * scale
        assert_close(o, r, dtype, scale=scale * (1 if o.shape == g.domain else 4 * n))


# ------------------------------------------------------------------------------ reductions, sizes, threads
@needs_cc
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((3, 9000), "last"), ((20001,), "all"), ((7, 3, 1300), "all"),
                                        ((5000, 3), "last"), ((0, 4), "last"), ((4, 0), "last"), ((0,), "all")])
def test_reductions_across_blocks_are_thread_count_independent(dtype, shape, axis):
    x = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    g = FusedGroup("softmax_stats")
    v = g.input(shape, dtype)
    e = g.call("exp", v)
    outs = [g.reduce("sum", e, axis=axis), g.reduce("mean", v, axis=axis, keepdims=True)]
    if x.size and (axis == "all" or shape[-1]):
        outs.append(g.reduce("max", v, axis=axis))
    g.output(e, *outs)
    kernel = build(g)
    results = []
    for nt in (1, 2):
        set_num_threads(nt)
        kernels.PARALLEL_MIN_ELEMENTS, old = 1, kernels.PARALLEL_MIN_ELEMENTS
        try:
            results.append(kernel(x))
        finally:
            kernels.PARALLEL_MIN_ELEMENTS = old
            set_num_threads(None)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)                   # deterministic: same bits at 1 and 2 threads
    ref = g.reference(x)
    n = shape[-1] if axis == "last" else x.size
    for got, r in zip(results[0], ref):
        assert_close(got, r, dtype, scale=1.0 if got.shape == shape else max(1, n) * 4)
    if x.size:                                               # and the oracle is torch's
        tx = torch.from_numpy(x)
        dims = -1 if axis == "last" else tuple(range(x.ndim))
        np.testing.assert_allclose(results[0][1], torch.exp(tx).sum(dims).numpy(), rtol=1e-5 if dtype == "float32" else 1e-12)


@needs_cc
def test_max_reduction_propagates_nan_like_numpy():
    x = np.array([[1.0, np.nan, 3.0], [-np.inf, -np.inf, -np.inf], [2.0, 5.0, np.inf]])
    for axis in ("last", "all"):
        g = FusedGroup("max")
        v = g.input(x.shape, "float64")
        g.output(g.reduce("max", v, axis=axis))
        got, ref = run_both(g, x)
        np.testing.assert_array_equal(got[0], ref[0])           # NaN where NumPy has NaN
        assert np.isnan(got[0]).any()


def test_reduction_errors_are_clear():
    g = FusedGroup("r")
    v = g.input((4, 0), "float32")
    with pytest.raises(Exception, match=r"codegen\[r\]: max over a zero-size axis has no identity"):
        g.reduce("max", v)
    g = FusedGroup("r2")
    v = g.input((4, 3), "float32")
    s = g.reduce("sum", v)
    with pytest.raises(ValueError, match=r"codegen\[r2\]: a reduction must be terminal"):
        g.call("exp", s)
    g.reduce("sum", v, axis="all")
    g.output(s)
    with pytest.raises(ValueError, match="all reductions of one group use the same axis"):
        g.validate()


@needs_cc
def test_wrong_arguments_name_the_group_and_shapes():
    g = FusedGroup("bias")
    v, b = g.input((2, 3), "float32"), g.input((3,), "float32")
    g.output(g.call("add", v, b))
    kernel = build(g)
    with pytest.raises(Exception, match=re.escape("codegen[bias]: argument 1 must be a (3,) float32 array")):
        kernel(np.zeros((2, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(Exception, match="float64"):
        kernel(np.zeros((2, 3), np.float64), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="takes 2 arrays"):
        kernel(np.zeros((2, 3), np.float32))


@needs_cc
def test_non_contiguous_inputs_are_read_correctly():
    x = np.random.default_rng(4).standard_normal((6, 8))
    g = FusedGroup("t")
    v = g.input((8, 6), "float64")
    g.output(g.call("tanh", v))
    got, ref = run_both(g, x.T)
    assert_close(got[0], np.tanh(x.T), "float64")


# ------------------------------------------------------------------------------ epilogues
@needs_cc
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_matmul_bias_gelu_epilogue_in_place_matches_torch(dtype, approximate):
    rng = np.random.default_rng(5)
    a, w, bias = (rng.standard_normal(s).astype(dtype) for s in ((33, 64), (64, 48), (48,)))
    g = FusedGroup("linear_gelu", inplace=True)
    y, b = g.input((33, 48), dtype), g.input((48,), dtype)
    g.output(g.call("gelu", g.call("add", y, b), approximate=approximate))
    kernel = build(g)
    out = epilogue("matmul", [a, w], kernel, bias)[0]
    ref = torch.nn.functional.gelu(torch.from_numpy(a).double() @ torch.from_numpy(w).double()
                                   + torch.from_numpy(bias).double(), approximate=approximate).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5 if dtype == "float32" else 1e-12)
    c = a @ w                                             # in place: the output is the GEMM buffer
    res = kernel(c, bias)[0]
    assert np.shares_memory(res, c)


@needs_cc
def test_conv_bias_relu_epilogue():
    rng = np.random.default_rng(6)
    x, w, bias = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((4, 1, 1))
    g = FusedGroup("conv_relu", inplace=True)
    y, b = g.input((2, 4, 7, 7), "float64"), g.input((4, 1, 1), "float64")
    g.output(g.call("relu", g.call("add", y, b)))
    out = epilogue("conv2d", [x, w], build(g), bias, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
                   groups=1)[0]
    ref = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias.ravel())))
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-12, atol=1e-12)


def test_inplace_group_rules():
    g = FusedGroup("bad_inplace", inplace=True)
    y = g.input((3,), "float32")
    g.output(g.reduce("sum", y))
    with pytest.raises(ValueError, match="inplace needs input 0"):
        g.validate()


# ------------------------------------------------------------------------------ cache and fallbacks
def _small_group(name="fallback"):
    g = FusedGroup(name)
    x, b = g.input((4, 5), "float32"), g.input((5,), "float32")
    g.output(g.call("sigmoid", g.call("add", x, b)))
    args = (np.linspace(-3, 3, 20, dtype=np.float32).reshape(4, 5), np.arange(5, dtype=np.float32))
    return g, args


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUANLI_CACHE_DIR", str(tmp_path))
    native._reset()
    yield tmp_path
    native._reset()


@needs_cc
def test_second_build_hits_the_disk_cache(fresh_cache, monkeypatch):
    calls = []
    real_run = native._run
    monkeypatch.setattr(native, "_run", lambda cmd: calls.append(cmd) or real_run(cmd))
    g, args = _small_group("cached")
    first = build(g)
    assert first.native and len(calls) == 2                    # compile + link
    assert len(list((fresh_cache / "native").glob("fused_cached_*.so"))) == 1
    native._reset()                                            # forget the loaded library, keep the disk
    second = build(g)
    assert second.native and len(calls) == 2                   # no recompile
    np.testing.assert_array_equal(first(*args)[0], second(*args)[0])


def test_no_compiler_falls_back_with_a_debug_note(fresh_cache, monkeypatch, capsys):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setattr(_config.state, "debug", 1)
    g, args = _small_group()
    kernel = build(g)
    assert not kernel.native
    np.testing.assert_array_equal(kernel(*args)[0], g.reference(*args)[0])
    out = capsys.readouterr().out
    assert "no C compiler found" in out and "runs the NumPy reference" in out


@needs_cc
def test_bad_flags_warn_once_naming_the_command_then_fall_back(fresh_cache, monkeypatch):
    monkeypatch.setenv("SUANLI_CFLAGS", "-fno-such-flag-xyz")
    g, args = _small_group("badflags")
    with pytest.warns(RuntimeWarning, match=r"(?s)building fused_badflags.*-fno-such-flag-xyz.*SUANLI_NATIVE=0"):
        kernel = build(g)
    assert not kernel.native
    np.testing.assert_array_equal(kernel(*args)[0], g.reference(*args)[0])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                         # the same build does not warn again
        assert not build(g).native


@needs_cc
def test_missing_header_warns_and_returns_none(fresh_cache):
    with pytest.warns(RuntimeWarning, match=r"(?s)no_such_header\.h.*SUANLI_NATIVE=0"):
        assert native.compile_source("hdr", "#include <no_such_header.h>\nint f(void) { return 0; }") is None


def test_native_disabled_gives_the_reference(monkeypatch):
    g, args = _small_group("disabled")
    with native.disabled():
        kernel = build(g)
        assert not kernel.native
        np.testing.assert_array_equal(kernel(*args)[0], g.reference(*args)[0])


def test_inplace_fallback_still_writes_into_input_zero(monkeypatch):
    g = FusedGroup("ip", inplace=True)
    y = g.input((3,), "float64")
    g.output(g.call("mul", y, 2.0))
    with native.disabled():
        buf = np.array([1.0, 2.0, 3.0])
        out = build(g)(buf)[0]
    assert np.shares_memory(out, buf) and buf.tolist() == [2.0, 4.0, 6.0]


@needs_cc
def test_debug_codegen_prints_the_source(monkeypatch, capsys):
    monkeypatch.setenv("SUANLI_DEBUG_CODEGEN", "1")
    g, _ = _small_group("printed")
    build(g)
    out = capsys.readouterr().out
    assert "codegen: source of printed" in out and "void kernel(" in out and "sigmoid_float32" in out


@needs_cc
def test_scalar_libm_build_matches_too():
    """Without libmvec (vector_math=False) the loops call scalar libm: same results within tolerance."""
    x, _ = _special_inputs("float64", n=500)
    g = FusedGroup("scalar_libm")
    v = g.input(x.shape, "float64")
    g.output(*[g.call(op, v) for op in ("exp", "tanh", "log1p", "sin", "sigmoid")])
    kernel = build(g, vector_math=False)
    assert kernel.native and "declare simd" not in kernel.source
    for got, ref in zip(kernel(x), g.reference(x)):
        assert_close(got, ref, "float64")
