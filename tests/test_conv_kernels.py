"""Native convolution kernels (suanli.inference.conv_kernels): Winograd F(4x4, 3x3), direct depthwise and
direct small-channel convolution,
forward and both gradients, against torch in float64 and against suanli's im2col + GEMM path; the
routing of conv2d through them; the per-layer policy; and their error messages."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import suanli
import suanli.nn.functional as F
from suanli import native
from suanli.errors import DTypeError, ShapeError
from suanli.inference import conv_kernels as ck

needs_native = pytest.mark.skipif(native.load("conv_winograd") is None or native.load("conv_depthwise") is None
                                  or native.load("conv_direct") is None, reason="no working C compiler here")


def _torch_conv_and_grads(x, w, g, stride, padding, dilation, groups):
    """torch's float64 conv2d of the (explicitly padded) input and its two gradients for cotangent g."""
    (pt, pb), (pl, pr) = padding
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    ty = TF.conv2d(TF.pad(tx, (pl, pr, pt, pb)), tw, stride=stride, dilation=dilation, groups=groups)
    if g is None:
        return ty.detach().numpy(), None, None
    ty.backward(torch.tensor(g, dtype=torch.float64))
    return ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()


def _out_shape(x_shape, w_shape, stride, padding, dilation):
    (pt, pb), (pl, pr) = padding
    Ho = (x_shape[2] + pt + pb - dilation[0] * (w_shape[2] - 1) - 1) // stride[0] + 1
    Wo = (x_shape[3] + pl + pr - dilation[1] * (w_shape[3] - 1) - 1) // stride[1] + 1
    return (x_shape[0], w_shape[0], Ho, Wo)


def _close(actual, expected, dtype):
    """Errors relative to the result's scale: Winograd's transforms scale values by up to ~100 and
    back, so float32 carries a few 1e-6 of the largest entry (measured ~3e-6); a wrong index or
    coefficient gives errors of order 1."""
    scale = float(np.abs(expected).max()) or 1.0
    tol = 3e-5 if dtype == np.float32 else 1e-12
    assert actual.shape == expected.shape and actual.dtype == dtype
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


def _data(x_shape, w_shape, g_shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, g_shape))


# ==================================================================================== Winograd
WINOGRAD_CASES = [
    # (input shape, output channels, padding)
    ((2, 3, 9, 11), 5, ((1, 1), (1, 1))),          # partial tiles in both directions
    ((1, 4, 5, 6), 2, ((0, 2), (2, 0))),           # asymmetric padding, 0 and 2
    ((3, 8, 16, 16), 8, ((1, 1), (1, 1))),         # whole tiles
    ((1, 2, 3, 3), 3, ((0, 0), (0, 0))),           # one output pixel
    ((2, 5, 7, 70), 4, ((2, 1), (1, 2))),          # wide rows: full 16-tile SIMD blocks + a border block
    ((1, 6, 70, 6), 3, ((1, 1), (0, 0))),          # tall
]


@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, O, padding", WINOGRAD_CASES)
def test_winograd_forward_and_gradients_match_torch(x_shape, O, padding, dtype):
    w_shape = (O, x_shape[1], 3, 3)
    g_shape = _out_shape(x_shape, w_shape, (1, 1), padding, (1, 1))
    x, w, g = _data(x_shape, w_shape, g_shape, dtype)
    y_ref, dx_ref, dw_ref = _torch_conv_and_grads(x, w, g, (1, 1), padding, (1, 1), 1)
    _close(ck.winograd_conv2d(x, w, padding), y_ref, dtype)
    _close(ck.winograd_conv2d_input_grad(g, w, x_shape[2:], padding), dx_ref, dtype)
    _close(ck.winograd_conv2d_weight_grad(x, g, padding), dw_ref, dtype)


@needs_native
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_winograd_batch_chunks_and_thread_splits_agree(monkeypatch, threads):
    """Several batch chunks (tiny V_BYTES) and channel ranges split over threads give the same result."""
    x_shape, w_shape, padding = (5, 7, 10, 9), (6, 7, 3, 3), ((1, 1), (1, 1))
    g_shape = _out_shape(x_shape, w_shape, (1, 1), padding, (1, 1))
    x, w, g = _data(x_shape, w_shape, g_shape, np.float64, seed=1)
    y_ref, dx_ref, dw_ref = _torch_conv_and_grads(x, w, g, (1, 1), padding, (1, 1), 1)
    old = ck.num_threads()
    monkeypatch.setattr(ck, "V_BYTES", 1)
    try:
        ck.set_num_threads(threads)
        _close(ck.winograd_conv2d(x, w, padding), y_ref, np.float64)
        _close(ck.winograd_conv2d_input_grad(g, w, x_shape[2:], padding), dx_ref, np.float64)
        _close(ck.winograd_conv2d_weight_grad(x, g, padding), dw_ref, np.float64)
    finally:
        ck.set_num_threads(old)


@needs_native
def test_winograd_results_do_not_alias_the_scratch_buffers():
    x, w, _ = _data((2, 4, 8, 8), (4, 4, 3, 3), (1,), np.float32)
    first = ck.winograd_conv2d(x, w, ((1, 1), (1, 1)))
    kept = first.copy()
    ck.winograd_conv2d(x * 3, w, ((1, 1), (1, 1)))
    ck.winograd_conv2d_weight_grad(x, first, ((1, 1), (1, 1)))
    np.testing.assert_array_equal(first, kept)


# =================================================================================== depthwise
DEPTHWISE_CASES = [
    # (input shape, multiplier, kernel, stride, padding, dilation)
    ((2, 4, 9, 11), 1, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 4, 9, 11), 2, (3, 5), (2, 1), ((0, 2), (1, 2)), (1, 2)),
    ((1, 3, 14, 14), 1, (5, 5), (2, 2), ((2, 2), (2, 2)), (1, 1)),
    ((2, 5, 8, 40), 1, (7, 7), (1, 1), ((3, 3), (3, 3)), (1, 1)),
    ((1, 2, 6, 6), 3, (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((1, 2, 7, 7), 1, (3, 3), (3, 3), ((4, 4), (4, 4)), (2, 2)),     # padding wider than the kernel
]


@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, m, kernel, stride, padding, dilation", DEPTHWISE_CASES)
def test_depthwise_forward_and_gradients_match_torch(x_shape, m, kernel, stride, padding, dilation, dtype):
    C = x_shape[1]
    w_shape = (C * m, 1, *kernel)
    g_shape = _out_shape(x_shape, w_shape, stride, padding, dilation)
    x, w, g = _data(x_shape, w_shape, g_shape, dtype)
    y_ref, dx_ref, dw_ref = _torch_conv_and_grads(x, w, g, stride, padding, dilation, C)
    tol = {np.float32: 2e-6, np.float64: 1e-13}[dtype]
    for actual, expected in ((ck.depthwise_conv2d(x, w, stride, padding, dilation), y_ref),
                             (ck.depthwise_conv2d_input_grad(g, w, x_shape, stride, padding, dilation), dx_ref),
                             (ck.depthwise_conv2d_weight_grad(x, g, kernel, stride, padding, dilation), dw_ref)):
        assert actual.shape == expected.shape and actual.dtype == dtype
        np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * float(np.abs(expected).max()))


# ====================================================================================== direct
DIRECT_CASES = [
    # (input shape, output channels, kernel, stride, padding, dilation)
    ((2, 3, 9, 11), 4, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((1, 1, 7, 7), 2, (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),         # batch 1, one channel
    ((3, 6, 14, 14), 16, (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),      # LeNet C3: 6 + 6 + 4 row blocks
    ((2, 2, 8, 5), 7, (2, 3), (2, 1), ((1, 2), (0, 1)), (2, 1)),         # stride, asymmetric pad, dilation
    ((1, 5, 6, 6), 9, (1, 1), (1, 1), ((1, 0), (0, 2)), (1, 1)),         # padded 1x1
    ((2, 3, 7, 9), 5, (3, 3), (3, 2), ((4, 4), (4, 4)), (2, 2)),         # padding wider than the kernel
    ((1, 2, 5, 70), 3, (1, 7), (1, 1), ((0, 0), (3, 3)), (1, 1)),        # long rows: many vector blocks
    ((2, 64, 6, 6), 16, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),       # O*K > 8192: per-chunk reduction
    ((3, 2, 9, 9), 3, (3, 3), (2, 2), ((0, 0), (0, 0)), (3, 3)),         # odd sizes, stride and dilation 2/3
]


@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, O, kernel, stride, padding, dilation", DIRECT_CASES)
def test_direct_forward_and_gradients_match_torch(x_shape, O, kernel, stride, padding, dilation, dtype):
    w_shape = (O, x_shape[1], *kernel)
    g_shape = _out_shape(x_shape, w_shape, stride, padding, dilation)
    x, w, g = _data(x_shape, w_shape, g_shape, dtype)
    y_ref, dx_ref, dw_ref = _torch_conv_and_grads(x, w, g, stride, padding, dilation, 1)
    tol = {np.float32: 2e-6, np.float64: 1e-13}[dtype]      # sums of <= 600 products, relative to the max
    for actual, expected in ((ck.direct_conv2d(x, w, stride, padding, dilation), y_ref),
                             (ck.direct_conv2d_input_grad(g, w, x_shape, stride, padding, dilation), dx_ref),
                             (ck.direct_conv2d_weight_grad(x, g, kernel, stride, padding, dilation), dw_ref)):
        assert actual.shape == expected.shape and actual.dtype == dtype
        np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * float(np.abs(expected).max()))


@needs_native
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_direct_batch_pieces_and_threads_agree(monkeypatch, threads):
    """Batch pieces over 1-3 threads, several weight-gradient chunks per piece (17 samples of ~12 KiB
    with one thread), and an odd batch: the same values as torch, y and dx bit-identical across
    thread counts."""
    monkeypatch.setattr(ck, "DIRECT_MIN_SPLIT", 0)       # split even this small problem
    x_shape, w_shape, stride, padding = (17, 8, 16, 16), (4, 8, 3, 3), (1, 1), ((1, 1), (1, 1))
    g_shape = _out_shape(x_shape, w_shape, stride, padding, (1, 1))
    x, w, g = _data(x_shape, w_shape, g_shape, np.float64, seed=1)
    refs = _torch_conv_and_grads(x, w, g, stride, padding, (1, 1), 1)
    old = ck.num_threads()
    try:
        results = []
        for n in (1, threads):
            ck.set_num_threads(n)
            results.append((ck.direct_conv2d(x, w, stride, padding, (1, 1)),
                            ck.direct_conv2d_input_grad(g, w, x_shape, stride, padding, (1, 1)),
                            ck.direct_conv2d_weight_grad(x, g, (3, 3), stride, padding, (1, 1))))
    finally:
        ck.set_num_threads(old)
    for a, b, ref in zip(*results, refs):
        _close(a, ref, np.float64)
        if threads == 1 or a.shape != w_shape:
            np.testing.assert_array_equal(a, b)   # y and dx: per-sample work, whatever the split


@needs_native
def test_direct_gradients_pass_gradcheck_in_float64():
    """Finite differences through conv2d routed to the direct kernel (and its double backward)."""
    rng = np.random.default_rng(4)
    x = suanli.tensor(rng.standard_normal((2, 3, 6, 7)), requires_grad=True)
    w = suanli.tensor(rng.standard_normal((4, 3, 3, 2)), requires_grad=True)
    assert ck.choose_conv_kernel((2, 3, 6, 7), (4, 3, 3, 2), (1, 1), ((1, 1), (0, 0)), (2, 1), 1) == "direct"
    def conv(x, w):
        return F.conv2d(x, w, padding=(1, 0), dilation=(2, 1))

    assert suanli.autograd.gradcheck(conv, (x, w))
    # the input-gradient primitive (a transposed convolution), differentiated in its cotangent and weight
    g = suanli.tensor(rng.standard_normal((2, 4, 4, 6)), requires_grad=True)
    assert suanli.autograd.gradcheck(
        lambda g, w: F.conv_transpose2d(g, w, padding=(1, 0), dilation=(2, 1)), (g, w))


# ======================================================================= routing through conv2d
def _train_step(x, w, g, **kw):
    sx, sw = suanli.tensor(x, requires_grad=True), suanli.tensor(w, requires_grad=True)
    y = F.conv2d(sx, sw, **kw)
    y.backward(suanli.tensor(g))
    return y.detach().numpy(), sx.grad.numpy(), sw.grad.numpy()


ROUTED = [
    # (input, weight, conv2d keywords, the kernel the policy must pick for all three passes)
    ((2, 64, 14, 32), (64, 64, 3, 3), dict(padding=1), "winograd"),
    ((2, 8, 34, 32), (16, 1, 3, 3), dict(padding=1, stride=2, groups=8), "depthwise"),
    ((4, 6, 14, 14), (16, 6, 5, 5), dict(padding=0), "direct"),                       # LeNet C3
    ((3, 3, 9, 10), (5, 3, 3, 3), dict(padding=2, dilation=2), "direct"),
]


@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kw, kernel", ROUTED)
def test_conv2d_routes_to_the_policy_kernel_and_matches_the_numpy_path(monkeypatch, x_shape, w_shape, kw,
                                                                       kernel, dtype):
    pad = kw["padding"]
    stride = kw.get("stride", 1)
    padding, strides = ((pad, pad), (pad, pad)), (stride, stride)
    dilation = (kw.get("dilation", 1),) * 2
    for which in ("forward", "input_grad", "weight_grad"):
        assert ck.choose_conv_kernel(x_shape, w_shape, strides, padding, dilation, kw.get("groups", 1),
                                     which=which) == kernel
    calls = []
    for name in ("winograd_conv2d", "winograd_conv2d_input_grad", "winograd_conv2d_weight_grad",
                 "depthwise_conv2d", "depthwise_conv2d_input_grad", "depthwise_conv2d_weight_grad",
                 "direct_conv2d", "direct_conv2d_input_grad", "direct_conv2d_weight_grad"):
        real = getattr(ck, name)
        monkeypatch.setattr(ck, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    g_shape = _out_shape(x_shape, w_shape, strides, padding, dilation)
    x, w, g = _data(x_shape, w_shape, g_shape, dtype)
    routed = _train_step(x, w, g, **kw)
    assert sorted(calls) == sorted(f"{kernel}_conv2d{s}" for s in ("", "_input_grad", "_weight_grad"))
    with native.disabled():
        numpy_path = _train_step(x, w, g, **kw)
    refs = _torch_conv_and_grads(x, w, g, strides, padding, dilation, kw.get("groups", 1))
    for a, b, ref in zip(routed, numpy_path, refs):
        _close(a, ref, dtype)
        _close(b, ref, dtype)


@needs_native
def test_conv2d_double_backward_through_winograd_matches_torch():
    """The routed kernels are the primitives' impls, so higher derivatives go through them too."""
    x, w, _ = _data((2, 64, 16, 32), (64, 64, 3, 3), (1,), np.float64, seed=3)
    sx, sw = suanli.tensor(x, requires_grad=True), suanli.tensor(w, requires_grad=True)
    (gx,) = suanli.autograd.grad((F.conv2d(sx, sw, padding=1) ** 2).sum(), [sx], create_graph=True)
    (ggw,) = suanli.autograd.grad((gx ** 2).sum(), [sw])
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    (tgx,) = torch.autograd.grad((TF.conv2d(tx, tw, padding=1) ** 2).sum(), [tx], create_graph=True)
    (tggw,) = torch.autograd.grad((tgx ** 2).sum(), [tw])
    _close(gx.detach().numpy(), tgx.detach().numpy(), np.float64)
    _close(ggw.numpy(), tggw.numpy(), np.float64)


def test_kernels_return_none_without_native_code_and_conv2d_falls_back():
    x, w, _ = _data((2, 32, 16, 32), (32, 32, 3, 3), (1,), np.float32)
    with native.disabled():
        assert ck.winograd_conv2d(x, w, ((1, 1), (1, 1))) is None
        assert ck.depthwise_conv2d(x, w[:, :1], (1, 1), ((1, 1), (1, 1)), (1, 1)) is None
        assert ck.direct_conv2d(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1)) is None
        assert ck.direct_conv2d_weight_grad(x, x, (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)) is None
        y = F.conv2d(suanli.tensor(x), suanli.tensor(w), padding=1).numpy()
    ref, _, _ = _torch_conv_and_grads(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    _close(y, ref, np.float32)


# ====================================================================================== policy
RESNET18 = [  # (input, weight, stride, padding, expected at batch 1, expected at batch 8)
    ((3, 224, 224), (64, 3, 7, 7), 2, 3, "im2col", "im2col"),
    ((64, 56, 56), (64, 64, 3, 3), 1, 1, "winograd", "winograd"),
    ((128, 28, 28), (128, 128, 3, 3), 1, 1, "winograd", "winograd"),
    ((256, 14, 14), (256, 256, 3, 3), 1, 1, "direct", "winograd"),      # too few tiles at batch 1
    ((512, 7, 7), (512, 512, 3, 3), 1, 1, "direct", "winograd"),
    ((64, 56, 56), (128, 64, 3, 3), 2, 1, "im2col", "im2col"),
    ((64, 56, 56), (128, 64, 1, 1), 2, 0, "im2col", "im2col"),
]


@pytest.mark.parametrize("x_chw, w_shape, stride, pad, at1, at8", RESNET18)
def test_policy_picks_winograd_for_wide_3x3_layers_only(x_chw, w_shape, stride, pad, at1, at8):
    for n, expected in ((1, at1), (8, at8)):
        got = ck.choose_conv_kernel((n, *x_chw), w_shape, (stride, stride), ((pad, pad), (pad, pad)),
                                    (1, 1), 1)
        assert got == expected, (n, x_chw, w_shape)


def test_policy_depthwise_and_small_layers():
    pads = ((1, 1), (1, 1))
    assert ck.choose_conv_kernel((8, 32, 112, 112), (32, 1, 3, 3), (1, 1), pads, (1, 1), 32) == "depthwise"
    assert ck.choose_conv_kernel((1, 512, 14, 14), (512, 1, 3, 3), (1, 1), pads, (1, 1), 512) == "im2col"
    assert ck.choose_conv_kernel((1, 512, 14, 14), (512, 1, 3, 3), (1, 1), pads, (1, 1), 512,
                                 which="input_grad") == "depthwise"
    for which in ("forward", "input_grad", "weight_grad"):
        assert ck.choose_conv_kernel((64, 6, 14, 14), (16, 6, 5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1), 1,
                                     which=which) == "direct"
    assert ck.choose_conv_kernel((8, 16, 64, 64), (16, 16, 3, 3), (1, 1), pads, (1, 1), 1) == "direct"
    assert ck.choose_conv_kernel((1, 64, 24, 32), (64, 64, 3, 3), (1, 1), pads, (1, 1), 1,
                                 which="weight_grad") == "winograd"   # 6 x 8 = 48 tiles
    assert ck.choose_conv_kernel((1, 64, 20, 24), (64, 64, 3, 3), (1, 1), pads, (1, 1), 1) == "direct"  # 30
    assert ck.choose_conv_kernel((1, 32, 64, 64), (32, 32, 3, 3), (1, 1), pads, (1, 1), 1) == "direct"
    assert ck.choose_conv_kernel((8, 64, 56, 56), (64, 64, 3, 3), (1, 1), pads, (2, 2), 1) == "direct"
    assert ck.choose_conv_kernel((8, 64, 56, 56), (64, 32, 3, 3), (1, 1), pads, (1, 1), 2) == "im2col"
    # strided layers stay on im2col (the direct kernel would do stride**2 the work); so do weight
    # gradients of large weights (O*C*kh*kw > 8192)
    assert ck.choose_conv_kernel((8, 16, 32, 32), (16, 16, 3, 3), (2, 2), pads, (1, 1), 1) == "im2col"
    assert ck.choose_conv_kernel((1, 512, 7, 7), (512, 512, 3, 3), (1, 1), pads, (1, 1), 1,
                                 which="weight_grad") == "im2col"
    assert ck.choose_conv_kernel((1, 512, 7, 7), (512, 512, 3, 3), (1, 1), pads, (1, 1), 1,
                                 which="input_grad") == "direct"


# ====================================================================================== errors
def test_errors_name_the_kernel_the_shapes_and_a_remedy():
    x = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(ShapeError, match=r"(?s)winograd_conv2d: needs a 3x3 stride-1.*weight \(4, 4, 5, 5\)"):
        ck.winograd_conv2d(x, np.zeros((4, 4, 5, 5), np.float32), ((1, 1), (1, 1)))
    with pytest.raises(ShapeError, match="choose_conv_kernel"):
        ck.winograd_conv2d(x, np.zeros((4, 4, 3, 3), np.float32), ((3, 3), (3, 3)))
    with pytest.raises(DTypeError, match=r"(?s)float32 or float64.*float16"):
        ck.winograd_conv2d(x.astype(np.float16), np.zeros((4, 4, 3, 3), np.float16), ((1, 1), (1, 1)))
    with pytest.raises(DTypeError, match="one dtype"):
        ck.depthwise_conv2d(x, np.zeros((4, 1, 3, 3)), (1, 1), ((1, 1), (1, 1)), (1, 1))
    with pytest.raises(ShapeError, match=r"(?s)depthwise_conv2d: not a valid depthwise.*weight \(4, 2, 3, 3\)"):
        ck.depthwise_conv2d(x, np.zeros((4, 2, 3, 3), np.float32), (1, 1), ((1, 1), (1, 1)), (1, 1))
    with pytest.raises(ShapeError, match=r"(?s)winograd_conv2d_input_grad: the cotangent.*g \(1, 4, 5, 5\)"):
        ck.winograd_conv2d_input_grad(np.zeros((1, 4, 5, 5), np.float32), np.zeros((4, 4, 3, 3), np.float32),
                                      (8, 8), ((1, 1), (1, 1)))
    with pytest.raises(ShapeError, match=r"(?s)winograd_conv2d_weight_grad: the cotangent.*g \(2, 4, 8, 8\)"):
        ck.winograd_conv2d_weight_grad(x, np.zeros((2, 4, 8, 8), np.float32), ((1, 1), (1, 1)))
    with pytest.raises(ShapeError, match=r"(?s)depthwise_conv2d_input_grad: the cotangent.*Expect: g of shape"):
        ck.depthwise_conv2d_input_grad(np.zeros((1, 4, 5, 5), np.float32), np.zeros((4, 1, 3, 3), np.float32),
                                       (1, 4, 8, 8), (1, 1), ((1, 1), (1, 1)), (1, 1))
    with pytest.raises(ShapeError, match=r"(?s)direct_conv2d: not a valid ungrouped conv.*weight \(4, 2, 3, 3\)"):
        ck.direct_conv2d(x, np.zeros((4, 2, 3, 3), np.float32), (1, 1), ((1, 1), (1, 1)), (1, 1))
    with pytest.raises(ShapeError, match=r"(?s)direct_conv2d_input_grad: the cotangent.*Expect: g of shape"):
        ck.direct_conv2d_input_grad(np.zeros((1, 4, 5, 5), np.float32), np.zeros((4, 4, 3, 3), np.float32),
                                    (1, 4, 8, 8), (1, 1), ((1, 1), (1, 1)), (1, 1))
    with pytest.raises(ShapeError, match=r"(?s)direct_conv2d_weight_grad: the cotangent.*g \(2, 4, 8, 8\)"):
        ck.direct_conv2d_weight_grad(x, np.zeros((2, 4, 8, 8), np.float32), (3, 3), (1, 1), ((1, 1), (1, 1)),
                                     (1, 1))
    with pytest.raises(DTypeError, match="one dtype"):
        ck.direct_conv2d(x, np.zeros((4, 4, 3, 3)), (1, 1), ((1, 1), (1, 1)), (1, 1))
    with pytest.raises(ValueError, match="choose_conv_kernel: unknown pass 'backward'"):
        ck.choose_conv_kernel((1, 4, 8, 8), (4, 4, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1, which="backward")
    with pytest.raises(ValueError, match="at least one thread"):
        ck.set_num_threads(0)
    with pytest.raises(ValueError, match=r"run_pass: no kernel 'im2col' for pass 'forward'"):
        ck.run_pass("im2col", "forward", x, x, x_shape=x.shape, kernel_size=(3, 3), stride=(1, 1),
                    padding=((0, 0), (0, 0)), dilation=(1, 1))
