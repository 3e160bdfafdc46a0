"""Convolution and pooling: values and gradients vs torch (float64 tight, float32 loose), float64
finite differences incl. double backward and forward mode, forward vs reverse consistency, batch
chunking of the kernels, and error messages."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import suanli
from oracles import check_fd, check_jvp_vjp, check_torch, rand
from suanli.ops import conv as conv_module

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

DTYPES = ["float64", "float32"]
F32_TOL = dict(rtol=1e-4, atol=1e-5)    # float32 sums of up to a few hundred products


def _tol(dtype):
    return F32_TOL if dtype == "float32" else {}


# ============================================================================ conv2d vs torch
# (id, input shape, weight shape, keyword arguments)
CONV2D_CASES = [
    ("basic", (2, 3, 7, 6), (4, 3, 3, 3), {}),
    ("stride2_pad1", (2, 3, 8, 7), (4, 3, 3, 3), dict(stride=2, padding=1)),
    ("nonsquare_kernel", (2, 3, 6, 9), (5, 3, 2, 4), dict(stride=(2, 1), padding=(1, 0))),
    ("dilation2", (1, 2, 9, 8), (3, 2, 3, 3), dict(dilation=2, padding=2)),
    ("dilation_stride_w", (2, 2, 7, 11), (3, 2, 2, 3), dict(dilation=(1, 2), stride=(1, 2))),
    ("stride3_pad2", (2, 2, 10, 9), (3, 2, 4, 3), dict(stride=3, padding=2)),
    ("stride_gt_kernel", (2, 2, 9, 9), (2, 2, 2, 2), dict(stride=3)),
    ("groups2", (2, 4, 6, 6), (6, 2, 3, 3), dict(groups=2, padding=1)),
    ("groups3_strided", (2, 6, 7, 8), (3, 2, 3, 2), dict(groups=3, stride=2)),
    ("depthwise", (2, 4, 6, 6), (4, 1, 3, 3), dict(groups=4, padding=1)),
    ("depthwise_multiplier", (2, 3, 6, 5), (6, 1, 3, 3), dict(groups=3)),
    ("same_odd", (2, 3, 6, 7), (4, 3, 3, 5), dict(padding="same")),
    ("same_even_dilated", (2, 2, 7, 6), (3, 2, 2, 4), dict(padding="same", dilation=(2, 1))),
    ("valid", (2, 3, 6, 6), (2, 3, 3, 3), dict(padding="valid")),
    ("batch1_channel1", (1, 1, 5, 5), (1, 1, 3, 3), {}),
    ("kernel_is_input", (2, 3, 4, 5), (2, 3, 4, 5), {}),
    ("pointwise", (2, 5, 4, 3), (3, 5, 1, 1), {}),
    ("pointwise_stride2", (2, 5, 5, 4), (3, 5, 1, 1), dict(stride=2)),
    ("pointwise_stride_hw", (2, 3, 6, 7), (4, 3, 1, 1), dict(stride=(2, 3))),
    ("kernel_is_input_lenet_c5", (3, 4, 5, 5), (6, 4, 5, 5), {}),
    ("unbatched", (3, 6, 6), (4, 3, 3, 3), dict(padding=1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV2D_CASES, ids=[c[0] for c in CONV2D_CASES])
def test_conv2d_matches_torch(case, dtype):
    _, xs, ws, kw = case
    x, w, b = rand(xs, dtype, seed=1), rand(ws, dtype, seed=2), rand(ws[:1], dtype, seed=3)
    check_torch(lambda x, w: suanli.conv2d(x, w, **kw), lambda x, w: TF.conv2d(x, w, **kw), [x, w], **_tol(dtype))
    check_torch(lambda x, w, b: suanli.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw),
                [x, w, b], **_tol(dtype))


def test_conv2d_batch_chunks_match_one_chunk(monkeypatch):
    """The kernels split the batch so the im2col columns fit a budget; a tiny budget (one sample
    per chunk) gives the same values and gradients, incl. the wide-column reads across samples."""
    for xs, ws, kw in [((5, 3, 7, 6), (4, 3, 3, 3), dict(padding=1)),
                       ((4, 4, 8, 7), (6, 2, 3, 2), dict(stride=(2, 1), dilation=(1, 2), groups=2))]:
        x, w = rand(xs, seed=4), rand(ws, seed=5)
        monkeypatch.setattr(conv_module, "COLS_BYTES", 1)
        check_torch(lambda x, w: suanli.conv2d(x, w, **kw), lambda x, w: TF.conv2d(x, w, **kw), [x, w])
        check_torch(lambda x, w: suanli.conv_transpose2d(x, w, **kw),
                    lambda x, w: TF.conv_transpose2d(x, w, **kw),
                    [rand((xs[0], ws[0], 3, 3), seed=6), w])
        monkeypatch.undo()


def test_conv2d_results_do_not_alias_the_workspace():
    x, w = suanli.tensor(rand((2, 3, 6, 6), "float32")), suanli.tensor(rand((4, 3, 3, 3), "float32"))
    first = suanli.conv2d(x, w)
    kept = first.numpy().copy()
    suanli.conv2d(x * 2, w)
    suanli.conv2d(suanli.tensor(rand((3, 3, 8, 8), "float32")), w)
    np.testing.assert_array_equal(first.numpy(), kept)
    conv_module.clear_workspace()
    np.testing.assert_array_equal(suanli.conv2d(x, w).numpy(), kept)


def test_conv2d_half_precision_matches_torch():
    x, w = rand((2, 3, 6, 6), "float32", seed=1), rand((4, 3, 3, 3), "float32", seed=2)
    for name, tdt in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        s = suanli.conv2d(suanli.tensor(x).to(name), suanli.tensor(w).to(name), padding=1)
        t = TF.conv2d(torch.tensor(x).to(tdt), torch.tensor(w).to(tdt), padding=1)
        assert str(s.dtype) == name
        np.testing.assert_allclose(s.float().numpy(), t.float().numpy(), rtol=3e-2, atol=5e-2)


def test_conv2d_zero_batch_and_zero_grad_shapes():
    x = suanli.zeros(0, 3, 5, 5, requires_grad=True)
    w = suanli.tensor(rand((2, 3, 3, 3), "float32"), requires_grad=True)
    y = suanli.conv2d(x, w)
    assert y.shape == (0, 2, 3, 3)
    y.sum().backward()
    assert x.grad.shape == (0, 3, 5, 5) and np.all(w.grad.numpy() == 0)


# ================================================================================== conv1d
CONV1D_CASES = [
    ("basic", (2, 3, 9), (4, 3, 3), {}),
    ("stride_pad_dil", (2, 2, 11), (3, 2, 3), dict(stride=2, padding=2, dilation=2)),
    ("same_even", (2, 2, 8), (3, 2, 4), dict(padding="same")),
    ("groups", (2, 4, 7), (6, 2, 3), dict(groups=2)),
    ("unbatched", (3, 8), (2, 3, 2), dict(padding=1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV1D_CASES, ids=[c[0] for c in CONV1D_CASES])
def test_conv1d_matches_torch(case, dtype):
    _, xs, ws, kw = case
    x, w, b = rand(xs, dtype, seed=1), rand(ws, dtype, seed=2), rand(ws[:1], dtype, seed=3)
    check_torch(lambda x, w, b: suanli.conv1d(x, w, b, **kw), lambda x, w, b: TF.conv1d(x, w, b, **kw),
                [x, w, b], **_tol(dtype))


# ========================================================================= conv_transpose2d
# (id, input shape, weight shape (C_in, C_out/groups, kh, kw), keyword arguments)
CONVT2D_CASES = [
    ("basic", (2, 3, 4, 5), (3, 2, 3, 3), {}),
    ("stride2", (2, 3, 4, 4), (3, 2, 3, 3), dict(stride=2)),
    ("stride_pad_outpad", (2, 2, 4, 5), (2, 3, 3, 2), dict(stride=(2, 3), padding=1, output_padding=(1, 2))),
    ("groups", (2, 4, 3, 4), (4, 3, 3, 3), dict(groups=2, stride=2, padding=1)),
    ("dilation", (1, 2, 4, 4), (2, 2, 3, 3), dict(dilation=2, padding=1)),
    ("outpad_ge_stride", (2, 2, 3, 4), (2, 2, 3, 2), dict(dilation=3, output_padding=(2, 1), stride=(1, 2))),
    ("depthwise", (2, 3, 5, 5), (3, 1, 3, 3), dict(groups=3, stride=2, output_padding=1)),
    ("unbatched", (3, 4, 4), (3, 2, 2, 2), dict(stride=2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONVT2D_CASES, ids=[c[0] for c in CONVT2D_CASES])
def test_conv_transpose2d_matches_torch(case, dtype):
    _, xs, ws, kw = case
    groups = kw.get("groups", 1)
    x, w, b = rand(xs, dtype, seed=1), rand(ws, dtype, seed=2), rand((ws[1] * groups,), dtype, seed=3)
    check_torch(lambda x, w, b: suanli.conv_transpose2d(x, w, b, **kw),
                lambda x, w, b: TF.conv_transpose2d(x, w, b, **kw), [x, w, b], **_tol(dtype))


def test_conv_transpose1d_matches_torch():
    x, w, b = rand((2, 3, 6)), rand((3, 2, 3), seed=2), rand((2,), seed=3)
    kw = dict(stride=2, padding=1, output_padding=1, groups=1, dilation=2)
    check_torch(lambda x, w, b: suanli.conv_transpose1d(x, w, b, **kw),
                lambda x, w, b: TF.conv_transpose1d(x, w, b, **kw), [x, w, b])
    check_torch(lambda x, w: suanli.conv_transpose1d(x, w, groups=3), lambda x, w: TF.conv_transpose1d(x, w, groups=3),
                [rand((3, 5)), rand((3, 1, 2), seed=2)])


def test_conv_double_backward_matches_torch():
    """Second derivatives through the conv triangle against torch's create_graph."""
    x, w = rand((2, 3, 6, 5), seed=1), rand((4, 3, 3, 2), seed=2)

    def run(lib, conv, X, W):
        y = conv(X, W, stride=(2, 1), padding=1)
        gx, gw = lib.autograd.grad((y * y).sum(), (X, W), create_graph=True)
        return (gx * gx).sum() + (gw ** 3).sum()

    sx, sw = suanli.tensor(x, requires_grad=True), suanli.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    s, t = run(suanli, suanli.conv2d, sx, sw), run(torch, TF.conv2d, tx, tw)
    np.testing.assert_allclose(s.item(), t.item(), rtol=1e-10)
    for a, b in zip(suanli.autograd.grad(s, (sx, sw)), torch.autograd.grad(t, (tx, tw))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-9)


# =============================================================================== max pooling
# (id, input shape, keyword arguments)
MAXPOOL_CASES = [
    ("k2", (2, 3, 6, 6), dict(kernel_size=2)),
    ("tiles_ragged", (2, 3, 7, 9), dict(kernel_size=(2, 3))),
    ("tiles_unbatched", (3, 4, 4), dict(kernel_size=2)),
    ("k3_s2_p1", (2, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1)),
    ("k3_s1_overlap", (1, 2, 5, 6), dict(kernel_size=3, stride=1)),
    ("nonsquare", (2, 2, 7, 9), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0))),
    ("dilation", (2, 2, 9, 9), dict(kernel_size=3, stride=2, dilation=2, padding=1)),
    ("ceil", (2, 2, 7, 7), dict(kernel_size=2, ceil_mode=True)),
    ("ceil_pad", (1, 2, 8, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("ceil_dil", (1, 1, 10, 9), dict(kernel_size=2, stride=3, dilation=2, ceil_mode=True)),
    ("unbatched", (3, 6, 5), dict(kernel_size=2, stride=1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=[c[0] for c in MAXPOOL_CASES])
def test_max_pool2d_matches_torch(case, dtype):
    _, xs, kw = case
    x = rand(xs, dtype, seed=1)
    check_torch(lambda x: suanli.max_pool2d(x, **kw), lambda x: TF.max_pool2d(x, **kw), [x])
    s_out, s_idx = suanli.max_pool2d(suanli.tensor(x), return_indices=True, **kw)
    t_out, t_idx = TF.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(s_out.numpy(), t_out.numpy())
    assert s_idx.dtype == suanli.int64
    np.testing.assert_array_equal(s_idx.numpy(), t_idx.numpy())


def test_max_pool2d_ties_nan_and_all_minus_inf_follow_torch():
    """First maximum of each window wins; a NaN wins; an all -inf window points at its first
    in-bounds position (never at padding)."""
    x = np.array([[[[1, 3, 3, 0], [3, 2, 3, 3], [0, 0, 0, 0], [1, 1, 1, 1]]]], dtype=np.float64)
    y = x.copy()
    y[0, 0, 0, 0] = np.nan
    z = np.full((1, 1, 4, 4), -np.inf)
    for arr in (x, y, z):
        for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                   dict(kernel_size=2, stride=1, padding=1, dilation=2)):
            s_out, s_idx = suanli.max_pool2d(suanli.tensor(arr), return_indices=True, **kw)
            t_out, t_idx = TF.max_pool2d(torch.tensor(arr), return_indices=True, **kw)
            np.testing.assert_array_equal(s_out.numpy(), t_out.numpy())
            np.testing.assert_array_equal(s_idx.numpy(), t_idx.numpy())
    # gradients with ties go to the first maximum, like torch's
    check_torch(lambda t: suanli.max_pool2d(t, 2, stride=1), lambda t: TF.max_pool2d(t, 2, stride=1), [x])


def test_max_pool1d_and_adaptive_max_pool_match_torch():
    x = rand((2, 3, 11), seed=1)
    check_torch(lambda t: suanli.max_pool1d(t, 3, stride=2, padding=1, ceil_mode=True),
                lambda t: TF.max_pool1d(t, 3, stride=2, padding=1, ceil_mode=True), [x])
    check_torch(lambda t: suanli.max_pool1d(t, 2, return_indices=True),
                lambda t: TF.max_pool1d(t, 2, return_indices=True), [x[0]])
    x2 = rand((2, 2, 7, 9), seed=2)
    for size in [(3, 4), 1, (7, 9), (None, 2), (5, 10)]:
        check_torch(lambda t: suanli.adaptive_max_pool2d(t, size, return_indices=True),
                    lambda t: TF.adaptive_max_pool2d(t, size, return_indices=True), [x2])
    check_torch(lambda t: suanli.adaptive_max_pool2d(t, 2), lambda t: TF.adaptive_max_pool2d(t, 2), [x2[0]])
    check_torch(lambda t: suanli.adaptive_max_pool1d(t, 4, return_indices=True),
                lambda t: TF.adaptive_max_pool1d(t, 4, return_indices=True), [x])


# =============================================================================== avg pooling
AVGPOOL_CASES = [
    ("k2", (2, 3, 6, 6), dict(kernel_size=2)),
    ("tiles_ragged", (2, 3, 7, 9), dict(kernel_size=(2, 3))),
    ("tiles_unbatched", (3, 4, 4), dict(kernel_size=2)),
    ("k3_s2_p1", (2, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1)),
    ("exclude_pad", (2, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("ceil", (1, 2, 7, 7), dict(kernel_size=2, ceil_mode=True)),
    ("ceil_pad", (1, 2, 8, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("ceil_pad_exclude", (1, 2, 8, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                            count_include_pad=False)),
    ("nonsquare", (2, 2, 7, 9), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0))),
    ("divisor_override", (2, 2, 6, 6), dict(kernel_size=3, stride=1, padding=1, divisor_override=5)),
    ("unbatched", (3, 6, 5), dict(kernel_size=2, stride=1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVGPOOL_CASES, ids=[c[0] for c in AVGPOOL_CASES])
def test_avg_pool2d_matches_torch(case, dtype):
    _, xs, kw = case
    check_torch(lambda x: suanli.avg_pool2d(x, **kw), lambda x: TF.avg_pool2d(x, **kw), [rand(xs, dtype)],
                **_tol(dtype))


def test_avg_pool1d_matches_torch():
    x = rand((2, 3, 10))
    for kw in (dict(kernel_size=3), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)):
        check_torch(lambda t: suanli.avg_pool1d(t, **kw), lambda t: TF.avg_pool1d(t, **kw), [x])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,size", [((2, 3, 8, 6), (4, 3)), ((2, 3, 7, 9), (3, 4)), ((2, 2, 5, 5), 1),
                                     ((2, 2, 5, 7), (None, 3)), ((3, 4, 5), (2, 2)), ((1, 2, 3, 4), (5, 6))])
def test_adaptive_avg_pool2d_matches_torch(xs, size, dtype):
    check_torch(lambda x: suanli.adaptive_avg_pool2d(x, size), lambda x: TF.adaptive_avg_pool2d(x, size),
                [rand(xs, dtype)], **_tol(dtype))


def test_adaptive_avg_pool1d_matches_torch():
    for xs, size in [((2, 3, 10), 4), ((3, 7), 3)]:
        check_torch(lambda x: suanli.adaptive_avg_pool1d(x, size), lambda x: TF.adaptive_avg_pool1d(x, size),
                    [rand(xs)])


# ============================================== finite differences (incl. double backward), fwd vs rev
FD_CASES = [
    ("conv2d", lambda x, w: suanli.conv2d(x, w, stride=(2, 1), padding=1), [(2, 2, 5, 5), (3, 2, 3, 2)]),
    ("conv2d_groups_dilation", lambda x, w: suanli.conv2d(x, w, groups=2, dilation=2, padding="same"),
     [(1, 4, 6, 5), (4, 2, 3, 2)]),
    ("conv1d", lambda x, w: suanli.conv1d(x, w, stride=2, padding=1), [(2, 2, 7), (3, 2, 3)]),
    ("conv_transpose2d", lambda x, w: suanli.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
     [(2, 2, 3, 3), (2, 3, 3, 3)]),
    ("avg_pool2d", lambda x: suanli.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True,
                                               count_include_pad=False), [(2, 2, 6, 7)]),
    ("adaptive_avg_pool2d", lambda x: suanli.adaptive_avg_pool2d(x, (3, 2)), [(2, 2, 7, 5)]),
    ("avg_pool2d_tiles_ragged", lambda x: suanli.avg_pool2d(x * x, 2), [(2, 2, 5, 7)]),
    ("conv2d_pointwise_strided", lambda x, w: suanli.conv2d(x * x, w, stride=2), [(2, 3, 5, 4), (2, 3, 1, 1)]),
    ("conv2d_full_window", lambda x, w: suanli.conv2d(x * x, w), [(2, 3, 3, 2), (4, 3, 3, 2)]),
    # continuous random inputs: no ties, so max pooling is differentiable at them
    ("max_pool2d", lambda x: suanli.max_pool2d(x, 3, stride=2, padding=1, dilation=1), [(2, 2, 6, 7)]),
    ("max_pool2d_overlap_squared", lambda x: suanli.max_pool2d(x * x, 2, stride=1), [(1, 2, 4, 5)]),
    ("adaptive_max_pool2d", lambda x: suanli.adaptive_max_pool2d(x * x, (2, 3)), [(1, 2, 5, 7)]),
]


@pytest.mark.parametrize("case", FD_CASES, ids=[c[0] for c in FD_CASES])
def test_finite_differences_and_double_backward(case):
    _, fn, shapes = case
    arrays = [rand(s, seed=i + 1) for i, s in enumerate(shapes)]
    check_fd(fn, arrays)
    check_jvp_vjp(fn, arrays)


def test_adjoint_primitives_have_their_own_derivatives():
    """conv2d_input_grad / conv2d_weight_grad called directly: fd (incl. 2nd order) and jvp/vjp."""
    from suanli.ops import apply, registry
    attrs = dict(stride=(2, 1), padding=((1, 0), (1, 1)), dilation=(1, 2), groups=2)
    x, w = rand((2, 4, 6, 5), seed=1), rand((4, 2, 2, 2), seed=2)
    geo = conv_module.conv_geometry("t", x.shape, w.shape, **attrs)
    g = rand(geo.out_shape, seed=3)

    def input_grad(g, w):
        return apply(registry["conv2d_input_grad"], g, w, input_size=x.shape[2:], **attrs)

    def weight_grad(x, g):
        return apply(registry["conv2d_weight_grad"], x, g, kernel_size=w.shape[2:], **attrs)
    for fn, arrays in ((input_grad, [g, w]), (weight_grad, [x, g])):
        check_fd(fn, arrays)
        check_jvp_vjp(fn, arrays)
    # adjointness: <conv2d(x, w), g> == <x, input_grad(g, w)> == <w, weight_grad(x, g)>
    y = apply(registry["conv2d"], suanli.tensor(x), suanli.tensor(w), **attrs).numpy()
    a = float(np.sum(y * g))
    b = float(np.sum(x * input_grad(suanli.tensor(g), suanli.tensor(w)).numpy()))
    c = float(np.sum(w * weight_grad(suanli.tensor(x), suanli.tensor(g)).numpy()))
    assert abs(a - b) < 1e-10 * abs(a) and abs(a - c) < 1e-10 * abs(a)


def test_registry_has_the_conv_family():
    from suanli.ops import registry
    for name in ("conv2d", "conv2d_input_grad", "conv2d_weight_grad", "max_pool2d", "max_pool2d_scatter",
                 "max_pool2d_gather", "adaptive_avg_pool2d", "adaptive_avg_pool2d_grad"):
        assert registry[name].has_vjp and registry[name].has_jvp, name
    assert not registry["max_pool2d_indices"].differentiable


# ==================================================================================== errors
def S(a):
    return suanli.tensor(a)


def test_conv_errors_name_shapes_and_remedy():
    x = S(rand((2, 3, 5, 5)))
    with pytest.raises(suanli.ShapeError, match=r"(?s)conv2d: input channels do not match the weight.*"
                                                r"input \(2, 3, 5, 5\), weight \(4, 2, 3, 3\), groups=1.*help"):
        suanli.conv2d(x, S(rand((4, 2, 3, 3))))
    with pytest.raises(suanli.ShapeError, match=r"(?s)input \(2, 3, 5, 5\), weight \(4, 1, 3, 3\), groups=2"):
        suanli.conv2d(x, S(rand((4, 1, 3, 3))), groups=2)
    with pytest.raises(suanli.ShapeError, match=r"(?s)kernel size can't be greater than the padded input.*"
                                                r"dilated kernel \(7, 7\) <= padded input \(5, 5\)"):
        suanli.conv2d(x, S(rand((4, 3, 7, 7))))
    with pytest.raises(suanli.ShapeError, match=r"dilated kernel \(7, 7\) <= padded input \(5, 5\)"):
        suanli.conv2d(x, S(rand((4, 3, 3, 3))), dilation=3)
    with pytest.raises(suanli.ShapeError, match=r"conv2d: expects a 3-d or 4-d input(.|\n)*\(5, 5\)"):
        suanli.conv2d(S(rand((5, 5))), S(rand((4, 3, 3, 3))))
    with pytest.raises(suanli.ShapeError, match=r"conv2d: expects a 4-d weight(.|\n)*\(4, 3, 3\)"):
        suanli.conv2d(x, S(rand((4, 3, 3))))
    with pytest.raises(suanli.ShapeError, match=r"conv1d: input channels do not match(.|\n)*input \(2, 3, 5\)"):
        suanli.conv1d(S(rand((2, 3, 5))), S(rand((4, 2, 3))))
    with pytest.raises(suanli.DTypeError, match=r"input and weight must have the same dtype(.|\n)*float32"):
        suanli.conv2d(x, S(rand((4, 3, 3, 3), "float32")))
    with pytest.raises(suanli.DTypeError, match="floating-point"):
        suanli.conv2d(S(np.ones((1, 1, 3, 3), np.int64)), S(np.ones((1, 1, 2, 2), np.int64)))
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        suanli.conv2d(x, S(rand((4, 3, 3, 3))), stride=2, padding="same")
    with pytest.raises(ValueError, match="invalid padding string"):
        suanli.conv2d(x, S(rand((4, 3, 3, 3))), padding="full")
    with pytest.raises(suanli.ShapeError, match=r"(?s)bias must be 1-d.*bias \(3,\)"):
        suanli.conv2d(x, S(rand((4, 3, 3, 3))), S(rand((3,))))


def test_conv_transpose_and_pool_errors():
    x = S(rand((2, 3, 5, 5)))
    with pytest.raises(suanli.ShapeError, match=r"(?s)conv_transpose2d: input channels do not match.*"
                                                r"input \(2, 3, 5, 5\), weight \(2, 3, 3, 3\), groups=1"):
        suanli.conv_transpose2d(x, S(rand((2, 3, 3, 3))))
    with pytest.raises(ValueError, match="output padding must be smaller than either stride or dilation"):
        suanli.conv_transpose2d(x, S(rand((3, 2, 3, 3))), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="pad should be at most half of effective kernel size"):
        suanli.max_pool2d(x, 2, padding=2)
    with pytest.raises(suanli.ShapeError, match=r"(?s)max_pool2d: output size is too small.*input \(2, 3, 5, 5\)"):
        suanli.max_pool2d(x, 7)
    with pytest.raises(suanli.ShapeError, match=r"avg_pool2d: expects a 3-d or 4-d input(.|\n)*\(5,\)"):
        suanli.avg_pool2d(S(rand((5,))), 2)
    with pytest.raises(suanli.ShapeError, match="adaptive_avg_pool2d: expects a 3-d or 4-d input"):
        suanli.adaptive_avg_pool2d(S(rand((5, 5))), 2)
    with pytest.raises(ValueError, match="output_size must be an int or a tuple of 2"):
        suanli.adaptive_avg_pool2d(x, (1, 2, 3))
