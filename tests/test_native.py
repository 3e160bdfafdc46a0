"""Native kernels agree with the NumPy paths they replace (values, NaN/inf, 0-d and empty inputs),
and the NumPy paths stay available when native kernels are off."""
import numpy as np
import pytest
import torch

import suanli
import suanli.nn.functional as F
from suanli import native

needs_native = pytest.mark.skipif(native.load("gelu") is None, reason="no working C compiler here")

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -30.0, 30.0, 3.9, 4.1, -4.1], np.float32)


def _inputs(n=5000, seed=0):
    x = (np.random.default_rng(seed).standard_normal(n) * 4).astype(np.float32)
    return np.concatenate([SPECIAL, x])


def _gelu_fwd_bwd(x, g):
    t = suanli.tensor(x, requires_grad=True)
    y = F.gelu(t)
    y.backward(suanli.tensor(g))
    return y.detach().numpy(), t.grad.numpy()


@needs_native
def test_native_gelu_and_erf_match_the_numpy_path():
    x = _inputs()
    g = np.random.default_rng(1).standard_normal(x.size).astype(np.float32)
    y_native, gx_native = _gelu_fwd_bwd(x, g)
    erf_native = suanli.erf(suanli.tensor(x)).numpy()
    with native.disabled():
        y_numpy, gx_numpy = _gelu_fwd_bwd(x, g)
        erf_numpy = suanli.erf(suanli.tensor(x)).numpy()
    for a, b in ((y_native, y_numpy), (gx_native, gx_numpy), (erf_native, erf_numpy)):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)   # 1 + erf cancels for x << 0


@needs_native
def test_native_gelu_matches_torch_including_shapes_and_layouts():
    x = np.random.default_rng(2).standard_normal((3, 4, 5)).astype(np.float32)
    for arr in (x, x.transpose(2, 0, 1), x[0, 0, 0], x[:0]):             # strided, 0-d, empty
        t = suanli.tensor(arr, requires_grad=True)
        tt = torch.tensor(np.array(arr), requires_grad=True)
        y, yt = F.gelu(t), torch.nn.functional.gelu(tt)
        np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
        if arr.size:
            y.sum().backward()
            yt.sum().backward()
            np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_disabled_switch_gives_the_numpy_path():
    with native.disabled():
        assert native.kernel("gelu", "gelu_f32") is None
        x = suanli.tensor([0.5, -1.0])
        np.testing.assert_allclose(F.gelu(x).numpy(), torch.nn.functional.gelu(torch.tensor([0.5, -1.0])).numpy(),
                                   rtol=1e-6)


@needs_native
def test_loading_fast_math_kernels_keeps_denormals():
    # a library linked with -ffast-math would switch the whole process to flush-to-zero
    native.kernel("gelu_grad", "gelu_grad_f32")
    tiny64 = np.float64(1e-310)
    assert tiny64 * np.float64(0.5) > 0
    tiny32 = np.array([1e-40], np.float32)
    assert (tiny32 * np.float32(0.5))[0] > 0
