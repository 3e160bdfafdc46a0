"""suanli.nn.functional: values and gradients vs torch (float64 tight, float32 loose), option matrices
for the losses, batch-norm running statistics, attention masks, dropout statistics and determinism,
float64 finite differences incl. double backward, forward vs reverse mode, and error messages."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import suanli
import suanli.nn.functional as F
from oracles import check_fd, check_jvp_vjp, check_torch, rand

DTYPES = ["float64", "float32"]


def S(a):
    """A suanli constant from a NumPy array (no grad)."""
    return suanli.tensor(a)


def N(t):
    """A suanli tensor's values as a NumPy array."""
    return t.detach().numpy()


def T(a):
    """A torch constant from a NumPy array (no grad)."""
    return torch.tensor(a)


# ============================================================================== linear / bilinear
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape", [(4, 3), (2, 5, 3), (3,)])
def test_linear(dtype, xshape):
    x, w, b = rand(xshape, dtype), rand((6, 3), dtype, seed=1), rand((6,), dtype, seed=2)
    check_torch(F.linear, TF.linear, [x, w, b])
    check_torch(F.linear, TF.linear, [x, w])


def test_linear_1d_weight_and_errors():
    x, w = rand((4, 3)), rand((3,), seed=1)
    check_torch(F.linear, TF.linear, [x, w])
    with pytest.raises(suanli.ShapeError, match=r"linear: input features .*\n.*\n.*input \(4, 3\), weight \(6, 2\)"):
        F.linear(S(x), S(rand((6, 2))))
    with pytest.raises(suanli.DTypeError, match=r"same dtype(.|\n)*float32"):
        F.linear(S(x), S(rand((6, 3), "float32")))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bilinear(dtype):
    x1, x2 = rand((2, 4, 3), dtype), rand((2, 4, 5), dtype, seed=1)
    w, b = rand((6, 3, 5), dtype, seed=2), rand((6,), dtype, seed=3)
    check_torch(F.bilinear, TF.bilinear, [x1, x2, w, b])
    check_torch(F.bilinear, TF.bilinear, [x1[0], x2[0], w])


def test_linear_bilinear_fd():
    check_fd(F.linear, [rand((2, 3)), rand((4, 3), seed=1), rand((4,), seed=2)])
    check_fd(F.bilinear, [rand((2, 3)), rand((2, 2), seed=1), rand((2, 3, 2), seed=2)])


# ============================================================================== softmax family
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family(dtype, name, dim):
    x = rand((3, 4, 5), dtype, low=-5, high=5)
    check_torch(lambda t: getattr(F, name)(t, dim), lambda t: getattr(TF, name)(t, dim), [x])


def test_softmax_large_logits_and_dtype_arg():
    x = rand((3, 4), low=-1, high=1) * 1000          # exp() alone would overflow
    for name in ("softmax", "log_softmax"):
        out = check_torch(lambda t: getattr(F, name)(t, 1), lambda t: getattr(TF, name)(t, 1), [x])[0]
        assert np.isfinite(N(out)).all()
    x32 = rand((3, 4), "float32")
    check_torch(lambda t: F.softmax(t, -1, dtype=suanli.float64), lambda t: TF.softmax(t, -1, dtype=torch.float64),
                [x32])
    check_torch(lambda t: F.log_softmax(t, 0, dtype=suanli.float64),
                lambda t: TF.log_softmax(t, 0, dtype=torch.float64), [x32])


def test_softmax_inf_entries_and_implicit_dim():
    x = rand((2, 3))
    x[0, 1] = -np.inf
    check_torch(lambda t: F.softmax(t, 1), lambda t: TF.softmax(t, 1), [x])
    check_torch(lambda t: F.log_softmax(t, 1), lambda t: TF.log_softmax(t, 1), [x], grad=False)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        y = F.softmax(S(rand((2, 3))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = TF.softmax(T(rand((2, 3))))
    np.testing.assert_allclose(y.numpy(), expected.numpy())


def test_softmax_tensor_methods():
    x = rand((2, 3))
    check_torch(lambda t: t.softmax(-1), lambda t: t.softmax(-1), [x])
    check_torch(lambda t: t.log_softmax(0), lambda t: t.log_softmax(0), [x])
    check_torch(lambda t: t.softmax(1, dtype=suanli.float32), lambda t: t.softmax(1, dtype=torch.float32), [x],
                rtol=1e-6, atol=1e-7)


def test_softmax_0d():
    x = np.array(0.7)
    check_torch(lambda t: F.softmax(t, 0), lambda t: TF.softmax(t, 0), [x])
    check_torch(lambda t: F.log_softmax(t, -1), lambda t: TF.log_softmax(t, -1), [x])


def test_softmax_half_precision():
    x = rand((4, 8), "float32").astype(suanli.float16)
    out = F.softmax(S(x), 1)
    assert out.dtype == suanli.float16
    np.testing.assert_allclose(out.numpy().astype(np.float32), TF.softmax(T(x).float(), 1).numpy(),
                               rtol=2e-3, atol=1e-3)


def test_softmax_fd_and_jvp():
    x = rand((3, 4))
    for fn in (lambda t: F.softmax(t, 1), lambda t: F.log_softmax(t, 0), lambda t: F.softmin(t, -1)):
        check_fd(fn, [x])
        check_jvp_vjp(fn, [x])


def test_softmax_int_input_error():
    with pytest.raises(suanli.DTypeError, match=r"softmax: expects a floating-point tensor(.|\n)*dtype="):
        F.softmax(suanli.tensor([1, 2]), 0)


def test_glu():
    x = rand((2, 6, 3))
    check_torch(lambda t: F.glu(t, 1), lambda t: TF.glu(t, 1), [x])
    check_torch(F.glu, TF.glu, [rand((3, 4), "float32")])
    check_fd(lambda t: F.glu(t, 1), [x])
    with pytest.raises(suanli.ShapeError, match="even size"):
        F.glu(S(rand((3, 5))))


# ============================================================================== normalization
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,norm", [((4, 6), (6,)), ((2, 3, 4, 5), (4, 5)), ((3, 5), 5)])
def test_layer_norm(dtype, shape, norm):
    x = rand(shape, dtype)
    ns = (norm,) if isinstance(norm, int) else norm
    w, b = rand(ns, dtype, seed=1), rand(ns, dtype, seed=2)
    check_torch(lambda t, w, b: F.layer_norm(t, norm, w, b), lambda t, w, b: TF.layer_norm(t, ns, w, b),
                [x, w, b])
    check_torch(lambda t: F.layer_norm(t, ns, eps=1e-3), lambda t: TF.layer_norm(t, ns, eps=1e-3), [x])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [None, 1e-3])
def test_rms_norm(dtype, eps):
    x = rand((3, 4, 5), dtype)
    w = rand((4, 5), dtype, seed=1)
    check_torch(lambda t, w: F.rms_norm(t, (4, 5), w, eps), lambda t, w: TF.rms_norm(t, (4, 5), w, eps), [x, w])
    check_torch(lambda t: F.rms_norm(t, [5], eps=eps), lambda t: TF.rms_norm(t, [5], eps=eps), [x])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_group_norm(dtype, groups):
    x = rand((2, 6, 3, 2), dtype)
    w, b = rand((6,), dtype, seed=1), rand((6,), dtype, seed=2)
    check_torch(lambda t, w, b: F.group_norm(t, groups, w, b), lambda t, w, b: TF.group_norm(t, groups, w, b),
                [x, w, b])
    check_torch(lambda t: F.group_norm(t, groups), lambda t: TF.group_norm(t, groups), [x[..., 0]])


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_norms_half_precision_keep_dtype(half):
    x = rand((4, 3, 2), "float32").astype(suanli.dtypes.as_dtype(half))
    for y in (F.layer_norm(S(x), (2,)), F.batch_norm(S(x), None, None, training=True), F.group_norm(S(x), 3),
              F.rms_norm(S(x), (3, 2)), F.log_softmax(S(x), 1)):
        assert str(y.dtype) == half
    small = S((x.astype(np.float32) * 1e-2).astype(x.dtype))              # eps=None: float32's eps
    torch_small = torch.tensor(small.numpy().astype(np.float32)).to(getattr(torch, half))
    np.testing.assert_allclose(F.rms_norm(small, (3, 2)).numpy().astype(np.float32),
                               TF.rms_norm(torch_small, (3, 2)).float().numpy(), rtol=1e-2)
    expected = TF.layer_norm(T(x.astype(np.float32)), (2,)).numpy()
    np.testing.assert_allclose(F.layer_norm(S(x), (2,)).numpy().astype(np.float32), expected, atol=2e-2)


def test_norms_fd_and_jvp():
    x = rand((2, 4, 3))
    w, b = rand((4,), seed=1), rand((4,), seed=2)
    check_fd(lambda t, w, b: F.layer_norm(t, (3,), w[:3], b[:3]), [x, w, b])
    check_fd(lambda t, w: F.rms_norm(t, (4, 3), w.reshape(4, 1).expand(4, 3)), [x, w])
    check_fd(lambda t, w, b: F.group_norm(t, 2, w, b), [x, w, b])
    check_fd(lambda t, w, b: F.batch_norm(t, None, None, w, b, training=True), [x, w, b])
    check_jvp_vjp(lambda t, w, b: F.layer_norm(t, (3,), w[:3], b[:3]), [x, w, b])
    check_jvp_vjp(lambda t: F.batch_norm(t, None, None, training=True), [x])
    check_jvp_vjp(lambda t: F.instance_norm(t), [x])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (2, 3, 4, 5)])
def test_batch_norm_training_three_steps(dtype, shape):
    """Outputs and gradients match in every step; running stats equal torch's after 3 steps."""
    c = shape[1]
    rm, rv = suanli.zeros(c, dtype=dtype), suanli.ones(c, dtype=dtype)
    trm, trv = torch.zeros(c, dtype=getattr(torch, dtype)), torch.ones(c, dtype=getattr(torch, dtype))
    w, b = rand((c,), dtype, seed=10), rand((c,), dtype, seed=11)
    for step in range(3):
        x = rand(shape, dtype, seed=step, low=-1 + step, high=2 + step)
        check_torch(lambda t, w, b: F.batch_norm(t, rm, rv, w, b, training=True, momentum=0.2),
                    lambda t, w, b: TF.batch_norm(t, trm, trv, w, b, training=True, momentum=0.2), [x, w, b])
    r, a = (1e-10, 1e-12) if dtype == "float64" else (1e-5, 1e-6)
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=r, atol=a)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=r, atol=a)
    assert rm._version == 3 and not rm.requires_grad
    # eval mode with the accumulated statistics
    x = rand(shape, dtype, seed=7)
    check_torch(lambda t, w, b: F.batch_norm(t, rm, rv, w, b, training=False),
                lambda t, w, b: TF.batch_norm(t, trm, trv, w, b, training=False), [x, w, b])
    check_torch(lambda t: F.batch_norm(t, rm, rv), lambda t: TF.batch_norm(t, trm, trv), [x])


def test_batch_norm_no_running_stats_and_errors():
    x = rand((4, 3, 2))
    check_torch(lambda t: F.batch_norm(t, None, None, training=True),
                lambda t: TF.batch_norm(t, None, None, training=True), [x])
    with pytest.raises(ValueError, match=r"more than 1 value per channel(.|\n)*\(1, 3\)"):
        F.batch_norm(S(rand((1, 3))), suanli.zeros(3), suanli.ones(3), training=True)
    with pytest.raises(ValueError, match="must be defined in evaluation mode"):
        F.batch_norm(S(x), None, None, training=False)
    with pytest.raises(suanli.ShapeError, match=r"'running_mean' has the wrong shape(.|\n)*\(3,\)(.|\n)*\(4,\)"):
        F.batch_norm(S(x), suanli.zeros(4), suanli.ones(4), training=True)
    with pytest.raises(TypeError, match="momentum must be a number(.|\n)*num_batches_tracked"):
        F.batch_norm(S(x), suanli.zeros(3, dtype="float64"), suanli.ones(3, dtype="float64"), training=True,
                     momentum=None)


@pytest.mark.parametrize("use_input_stats", [True, False])
def test_instance_norm(use_input_stats):
    x = rand((2, 3, 4, 2))
    w, b = rand((3,), seed=1), rand((3,), seed=2)
    rm, rv = S(rand((3,), seed=3)), S(rand((3,), seed=4, low=0.5, high=2))
    trm, trv = T(rm.numpy()), T(rv.numpy())
    check_torch(lambda t, w, b: F.instance_norm(t, rm, rv, w, b, use_input_stats=use_input_stats),
                lambda t, w, b: TF.instance_norm(t, trm, trv, w, b, use_input_stats=use_input_stats), [x, w, b])
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-10)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-10)
    check_torch(lambda t: F.instance_norm(t), lambda t: TF.instance_norm(t), [rand((2, 3, 5), "float32")])


def test_normalize_and_distances():
    x1, x2 = rand((4, 5)), rand((4, 5), seed=1)
    check_torch(lambda t: F.normalize(t), lambda t: TF.normalize(t), [x1])
    check_torch(lambda t: F.normalize(t, p=1.0, dim=0), lambda t: TF.normalize(t, p=1.0, dim=0), [x1])
    check_torch(F.cosine_similarity, TF.cosine_similarity, [x1, x2])
    check_torch(lambda a, b: F.cosine_similarity(a, b, dim=-1), lambda a, b: TF.cosine_similarity(a, b, dim=-1),
                [rand((3, 1, 5), "float32"), rand((4, 5), "float32", seed=1)])
    check_torch(F.pairwise_distance, TF.pairwise_distance, [x1, x2])
    check_torch(lambda a, b: F.pairwise_distance(a, b, p=1.0, keepdim=True),
                lambda a, b: TF.pairwise_distance(a, b, p=1.0, keepdim=True), [x1, x2])
    check_fd(F.cosine_similarity, [x1[:2, :3], x2[:2, :3]])


def test_norm_errors():
    with pytest.raises(suanli.ShapeError, match=r"layer_norm: normalized_shape must match(.|\n)*input \(2, 3\), "
                                                r"normalized_shape \[4\]"):
        F.layer_norm(S(rand((2, 3))), (4,))
    with pytest.raises(suanli.ShapeError, match=r"layer_norm: 'weight' has the wrong shape"):
        F.layer_norm(S(rand((2, 3))), (3,), S(rand((2,))))
    with pytest.raises(suanli.ShapeError, match=r"group_norm: .*divisible by num_groups(.|\n)*num_groups=4"):
        F.group_norm(S(rand((2, 6, 3))), 4)
    with pytest.raises(suanli.ShapeError, match=r"batch_norm: expects an input of shape \(N, C, \*\)"):
        F.batch_norm(S(rand((3,))), None, None, training=True)
    with pytest.raises(suanli.DTypeError, match="layer_norm: 'input' must be a floating-point tensor"):
        F.layer_norm(suanli.tensor([[1, 2]]), (2,))


# ============================================================================== dropout
def test_dropout_identity_cases():
    x = S(rand((3, 4)))
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.7, training=False) is x
    assert F.dropout2d(x[None, ..., None], 0.3, training=False).shape == (1, 3, 4, 1)
    z = F.dropout(x, 1.0)
    assert (z.numpy() == 0).all() and z.shape == x.shape


def test_dropout_statistics_and_gradient():
    x = suanli.ones(200, 100, dtype="float64", requires_grad=True)
    y = F.dropout(x, 0.3)
    kept = N(y) != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(N(y)[kept], 1 / 0.7)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), N(y))        # gradient is the scaled mask
    assert abs(N(y).mean() - 1.0) < 0.02                 # inverted dropout keeps the mean


def test_dropout_determinism_and_generator():
    x = S(rand((8, 16)))
    suanli.manual_seed(123)
    a = F.dropout(x, 0.5)
    suanli.manual_seed(123)
    b = F.dropout(x, 0.5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    g1, g2 = suanli.Generator(7), suanli.Generator(7)
    np.testing.assert_array_equal(F.dropout(x, 0.5, generator=g1).numpy(), F.dropout(x, 0.5, generator=g2).numpy())
    assert not np.array_equal(F.dropout(x, 0.5, generator=g1).numpy(), a.numpy())


def test_dropout_inplace_and_feature_dropout():
    x = S(rand((4, 5), low=1, high=2))
    before = x.numpy().copy()
    y = F.dropout(x, 0.5, inplace=True)
    assert y is x and x._version == 1
    np.testing.assert_allclose(x.numpy()[x.numpy() != 0], before[x.numpy() != 0] * 2)
    cases = ((F.dropout1d, (3, 40, 5), 2), (F.dropout2d, (3, 40, 2, 2), 2), (F.dropout3d, (2, 40, 2, 1, 2), 2),
             (F.dropout2d, (40, 2, 2), 1), (F.dropout1d, (40, 3), 1))        # lead = dims with one mask value
    for fn, shape, lead in cases:
        y = fn(suanli.ones(*shape), 0.5).numpy()
        planes = y.reshape(int(np.prod(shape[:lead])), -1)
        assert ((planes == 0).all(1) | (planes == 2).all(1)).all(), "whole channels are dropped or kept"
        assert 0 < (planes[:, 0] == 0).mean() < 1


def test_dropout_errors():
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        F.dropout(S(rand((2,))), 1.5)
    with pytest.raises(suanli.ShapeError, match=r"dropout2d: expects a 3-d \(unbatched\) or 4-d"):
        F.dropout2d(S(rand((2, 3))), 0.5)


# ============================================================================== embedding / one_hot
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("freq", [False, True])
def test_embedding(padding_idx, freq):
    idx = np.array([[0, 2, 4, 2], [1, 2, 0, 4]])
    w = rand((5, 3))
    check_torch(lambda w: F.embedding(S(idx), w, padding_idx, scale_grad_by_freq=freq),
                lambda w: TF.embedding(T(idx), w, padding_idx, scale_grad_by_freq=freq), [w])
    check_torch(lambda w: F.embedding(S(idx), w, padding_idx), lambda w: TF.embedding(T(idx), w, padding_idx),
                [w.astype(np.float32)])


def test_embedding_repeated_grad_max_norm_and_fd():
    w = suanli.tensor(rand((4, 2)), requires_grad=True)
    F.embedding(suanli.tensor([1, 1, 1, 3]), w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [[0, 0], [3, 3], [0, 0], [1, 1]])
    wn, tw = S(rand((5, 3), low=-3, high=3)), T(rand((5, 3), low=-3, high=3))
    idx = np.array([0, 3, 3])
    np.testing.assert_allclose(F.embedding(S(idx), wn, max_norm=1.0).numpy(),
                               TF.embedding(T(idx), tw, max_norm=1.0).numpy(), rtol=1e-10)
    np.testing.assert_allclose(wn.numpy(), tw.numpy(), rtol=1e-10)      # renormalized in place
    # (padding_idx deliberately has zero gradient though the value depends on the row: no FD check)
    check_fd(lambda w: F.embedding(S(np.array([[0, 1], [1, 1]])), w), [rand((3, 2))])


def test_embedding_errors():
    w = S(rand((5, 3)))
    with pytest.raises(suanli.DTypeError, match=r"embedding: 'input' must hold integer(.|\n)*float64"):
        F.embedding(S(rand((2,))), w)
    with pytest.raises(IndexError, match=r"index 5 is out of bounds(.|\n)*\[0, 4\]"):
        F.embedding(suanli.tensor([0, 5]), w)
    with pytest.raises(ValueError, match="padding_idx must be within num_embeddings"):
        F.embedding(suanli.tensor([0]), w, padding_idx=5)


def test_one_hot():
    idx = np.array([[0, 3], [2, 1]])
    np.testing.assert_array_equal(F.one_hot(S(idx)).numpy(), TF.one_hot(T(idx)).numpy())
    out = F.one_hot(S(idx), 6)
    assert out.dtype == suanli.int64 and out.shape == (2, 2, 6)
    np.testing.assert_array_equal(out.numpy(), TF.one_hot(T(idx), 6).numpy())
    with pytest.raises(ValueError, match="smaller than num_classes"):
        F.one_hot(S(idx), 3)
    with pytest.raises(ValueError, match="non-negative"):
        F.one_hot(suanli.tensor([-1, 0]))
    with pytest.raises(suanli.DTypeError, match="int64"):
        F.one_hot(suanli.tensor([0, 1], dtype="int32"))


# ============================================================================== cross entropy / nll
def _targets(shape, c, ignore, seed=0):
    t = np.random.default_rng(seed).integers(0, c, size=shape)
    if ignore is not None and t.size > 1:
        t.flat[::3] = ignore
    return t


CE_LAYOUTS = [("N", (6, 4), (6,)), ("NK", (3, 4, 2, 3), (3, 2, 3)), ("unbatched", (5,), ())]


@pytest.mark.parametrize("layout", CE_LAYOUTS, ids=lambda l: l[0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore", [None, -100, 1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_cross_entropy_class_indices(layout, reduction, ignore, weighted, smoothing):
    _, xshape, tshape = layout
    c = xshape[0] if len(xshape) == 1 else xshape[1]
    x = rand(xshape, low=-3, high=3)
    t = _targets(tshape, c, None if len(tshape) == 0 else ignore)
    w = rand((c,), low=0.2, high=2.0, seed=5) if weighted else None
    kw = dict(reduction=reduction, label_smoothing=smoothing, ignore_index=ignore if ignore is not None else -100)
    check_torch(lambda x: F.cross_entropy(x, S(t), None if w is None else S(w), **kw),
                lambda x: TF.cross_entropy(x, T(t), None if w is None else T(w), **kw), [x])


@pytest.mark.parametrize("layout", CE_LAYOUTS, ids=lambda l: l[0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probabilities(layout, reduction, weighted, smoothing):
    _, xshape, _ = layout
    cdim = 0 if len(xshape) == 1 else 1
    c = xshape[cdim]
    x = rand(xshape, low=-3, high=3)
    p = np.exp(rand(xshape, seed=3))
    p = p / p.sum(cdim, keepdims=True)
    w = rand((c,), low=0.2, high=2.0, seed=5) if weighted else None
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    check_torch(lambda x, p: F.cross_entropy(x, p, None if w is None else S(w), **kw),
                lambda x, p: TF.cross_entropy(x, p, None if w is None else T(w), **kw), [x, p])


def test_cross_entropy_float32_and_uint8_targets():
    x = rand((8, 5), "float32", low=-4, high=4)
    t = _targets((8,), 5, -100)
    check_torch(lambda x: F.cross_entropy(x, S(t), label_smoothing=0.1),
                lambda x: TF.cross_entropy(x, T(t), label_smoothing=0.1), [x])
    t8 = np.array([0, 4, 1, 2, 3, 3, 0, 1], dtype=np.uint8)
    check_torch(lambda x: F.cross_entropy(x, S(t8)), lambda x: TF.cross_entropy(x, T(t8)), [x])


def test_cross_entropy_all_ignored_is_nan_like_torch():
    x = rand((3, 4))
    t = np.full((3,), -100)
    for ls in (0.0, 0.2):          # the loss is NaN but the gradient is zero, not NaN
        check_torch(lambda x: F.cross_entropy(x, S(t), label_smoothing=ls),
                    lambda x: TF.cross_entropy(x, T(t), label_smoothing=ls), [x])
        check_torch(lambda x: F.cross_entropy(x, S(t), S(np.ones(4)), label_smoothing=ls),
                    lambda x: TF.cross_entropy(x, T(t), T(np.ones(4)), label_smoothing=ls), [x])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore", [-100, 2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("layout", CE_LAYOUTS, ids=lambda l: l[0])
def test_nll_loss(reduction, ignore, weighted, layout):
    _, xshape, tshape = layout
    c = xshape[0] if len(xshape) == 1 else xshape[1]
    x = rand(xshape)
    t = _targets(tshape, c, ignore if tshape else None, seed=1)
    w = rand((c,), low=0.2, high=2.0, seed=5) if weighted else None
    kw = dict(reduction=reduction, ignore_index=ignore)
    check_torch(lambda x: F.nll_loss(x, S(t), None if w is None else S(w), **kw),
                lambda x: TF.nll_loss(x, T(t), None if w is None else T(w), **kw), [x])


def test_ce_nll_fd_and_jvp():
    x = rand((4, 3))
    t = S(np.array([0, 2, -100, 1]))
    w = S(rand((3,), low=0.5, high=1.5, seed=2))
    check_fd(lambda x: F.cross_entropy(x, t, w, label_smoothing=0.2), [x])
    check_fd(lambda x, p: F.cross_entropy(x, p), [x, np.abs(rand((4, 3), seed=1))])
    check_fd(lambda x: F.nll_loss(x, t, reduction="none"), [x])
    check_jvp_vjp(lambda x: F.cross_entropy(x, t, w, label_smoothing=0.2), [x])


def test_legacy_size_average_reduce():
    x, t = rand((4, 3)), np.array([0, 1, 2, 1])
    for sa, rd in ((False, None), (None, False), (True, True)):
        with pytest.warns(UserWarning, match="size_average and reduce"):
            a = F.cross_entropy(S(x), S(t), size_average=sa, reduce=rd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = TF.cross_entropy(T(x), T(t), size_average=sa, reduce=rd)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


def test_cross_entropy_errors():
    x = S(rand((5, 4)))
    with pytest.raises(suanli.ShapeError,
                       match=r"cross_entropy: target shape does not match the input\n"
                             r"  Expect: class indices: int64 target of shape \(5,\) .*"
                             r"or class probabilities: float target of shape \(5, 4\).*\n"
                             r"  Actual: input \(5, 4\) float64, target \(3,\) int64"):
        F.cross_entropy(x, suanli.tensor([0, 1, 2]))
    with pytest.raises(suanli.DTypeError, match=r"target dtype does not match(.|\n)*target \(5,\) int32(.|\n)*\.long\(\)"):
        F.cross_entropy(x, suanli.tensor([0, 1, 2, 3, 0], dtype="int32"))
    with pytest.raises(suanli.ShapeError, match=r"target shape(.|\n)*target \(5, 3\) float64"):
        F.cross_entropy(x, S(rand((5, 3))))
    with pytest.raises(IndexError, match=r"nll_loss: index 4 is out of bounds(.|\n)*\[0, 3\]"):
        F.cross_entropy(x, suanli.tensor([0, 1, 2, 4, 0]))
    with pytest.raises(ValueError, match="ignore_index is not supported for floating point target"):
        F.cross_entropy(x, S(rand((5, 4))), ignore_index=0)
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        F.cross_entropy(x, suanli.tensor([0, 1, 2, 3, 0]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"'avg' is not a valid value for reduction(.|\n)*'none' \| 'mean' \| 'sum'"):
        F.cross_entropy(x, suanli.tensor([0, 1, 2, 3, 0]), reduction="avg")
    with pytest.raises(suanli.ShapeError, match=r"weight must hold one value per class(.|\n)*\(4,\)"):
        F.cross_entropy(x, suanli.tensor([0, 1, 2, 3, 0]), weight=suanli.ones(3, dtype="float64"))
    with pytest.raises(suanli.ShapeError, match=r"nll_loss: target shape(.|\n)*class indices"):
        F.nll_loss(x, S(rand((5, 4))))


# ============================================================================== regression losses
REG_CASES = [
    ("mse", F.mse_loss, TF.mse_loss, {}),
    ("l1", F.l1_loss, TF.l1_loss, {}),
    ("smooth_l1", F.smooth_l1_loss, TF.smooth_l1_loss, {}),
    ("smooth_l1_beta", F.smooth_l1_loss, TF.smooth_l1_loss, {"beta": 0.5}),
    ("smooth_l1_beta0", F.smooth_l1_loss, TF.smooth_l1_loss, {"beta": 0.0}),
    ("huber", F.huber_loss, TF.huber_loss, {}),
    ("huber_delta", F.huber_loss, TF.huber_loss, {"delta": 0.3}),
]


@pytest.mark.parametrize("case", REG_CASES, ids=lambda c: c[0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_losses(case, reduction, dtype):
    _, fn, tfn, kw = case
    x, y = rand((4, 5), dtype, away_from=[0]), rand((4, 5), dtype, seed=1)
    y[0, :2] = x[0, :2] + np.array([0.2, -0.3], dtype=x.dtype)     # some residuals inside beta/delta
    check_torch(lambda a, b: fn(a, b, reduction=reduction, **kw), lambda a, b: tfn(a, b, reduction=reduction, **kw),
                [x, y])


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_weight(name, reduction):
    x, y, w = rand((3, 4)), rand((3, 4), seed=1), rand((3, 4), low=0.1, high=1.0, seed=2)
    check_torch(lambda a, b, w: getattr(F, name)(a, b, reduction=reduction, weight=w),
                lambda a, b, w: getattr(TF, name)(a, b, reduction=reduction, weight=w), [x, y, w])


def test_regression_broadcast_warning_and_errors():
    with pytest.warns(UserWarning, match=r"target size \(1, 3\) that is different to the input size \(2, 3\)\."):
        F.mse_loss(S(rand((2, 3))), S(rand((1, 3))))
    with pytest.raises(ValueError, match="Weights and input must have the same size"):
        F.mse_loss(S(rand((2, 3))), S(rand((2, 3))), weight=S(rand((3,))))
    with pytest.raises(ValueError, match="negative values for beta"):
        F.smooth_l1_loss(S(rand((2,))), S(rand((2,))), beta=-1.0)


def test_regression_fd():
    x, y = rand((3, 2), away_from=[0]), rand((3, 2), seed=1)
    y[0, 0] = x[0, 0] + 0.3
    check_fd(F.mse_loss, [x, y])
    check_fd(lambda a, b: F.smooth_l1_loss(a, b, reduction="sum"), [x, y])
    check_fd(lambda a, b: F.huber_loss(a, b, delta=0.5), [x, y])
    check_jvp_vjp(F.mse_loss, [x, y])


# ============================================================================== binary / KL
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy(reduction, dtype):
    p, t, w = rand((4, 3), dtype, low=0.02, high=0.98), rand((4, 3), dtype, low=0, high=1, seed=1), \
        rand((3,), dtype, low=0.5, high=1.5, seed=2)
    check_torch(lambda p, t: F.binary_cross_entropy(p, t, reduction=reduction),
                lambda p, t: TF.binary_cross_entropy(p, t, reduction=reduction), [p, t])
    check_torch(lambda p, t: F.binary_cross_entropy(p, t, S(w), reduction=reduction),   # torch: no weight grad
                lambda p, t: TF.binary_cross_entropy(p, t, T(w), reduction=reduction), [p, t])


def test_binary_cross_entropy_edges():
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    t = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    check_torch(lambda p: F.binary_cross_entropy(p, S(t), reduction="none"),
                lambda p: TF.binary_cross_entropy(p, T(t), reduction="none"), [p], grad=False)
    x = suanli.tensor(p, requires_grad=True)
    F.binary_cross_entropy(x, S(t)).backward()
    assert not np.isnan(x.grad.numpy()).any()
    with pytest.raises(ValueError, match="between 0 and 1(.|\n)*with_logits"):
        F.binary_cross_entropy(S(np.array([1.5])), S(np.array([1.0])))
    with pytest.raises(ValueError, match=r"target size \(2,\) that is different to the input size \(1,\)"):
        F.binary_cross_entropy(S(np.array([0.5])), S(np.array([1.0, 0.0])))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_weight", [False, True])
@pytest.mark.parametrize("with_pos", [False, True])
def test_bce_with_logits(reduction, dtype, with_weight, with_pos):
    x, t = rand((5, 3), dtype, low=-30, high=30), rand((5, 3), dtype, low=0, high=1, seed=1)
    x[0] = [0.0, 80.0, -80.0]                            # the kink at 0 and far tails
    w = rand((5, 1), dtype, low=0.5, high=1.5, seed=2) if with_weight else None
    pw = rand((3,), dtype, low=0.5, high=3, seed=3) if with_pos else None

    def call(mod, wrap):                                  # torch has no gradient for weight/pos_weight
        def fn(x, t):
            return mod.binary_cross_entropy_with_logits(x, t, None if w is None else wrap(w), reduction=reduction,
                                                        pos_weight=None if pw is None else wrap(pw))
        return fn
    check_torch(call(F, S), call(TF, T), [x, t])


def test_bce_with_logits_fd_and_errors():
    x, t = rand((3, 2)), rand((3, 2), low=0, high=1, seed=1)
    check_fd(lambda x, t, pw: F.binary_cross_entropy_with_logits(x, t, pos_weight=pw), [x, t, rand((2,), seed=2)])
    check_fd(lambda p, t: F.binary_cross_entropy(p, t), [rand((3, 2), low=0.1, high=0.9), t])
    check_jvp_vjp(lambda x, t: F.binary_cross_entropy_with_logits(x, t), [x, t])
    with pytest.raises(ValueError, match=r"Target size \(3,\) must be the same as input size \(3, 2\)"):
        F.binary_cross_entropy_with_logits(S(x), S(t[:, 0]))


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none", "mean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    x = np.log(np.abs(rand((4, 5))) + 0.1)
    t = np.abs(rand((4, 5), seed=1)) + 0.05
    if log_target:
        t = np.log(t)
    kw = dict(reduction=reduction, log_target=log_target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # torch and suanli both warn about 'mean'
        check_torch(lambda x, t: F.kl_div(x, t, **kw), lambda x, t: TF.kl_div(x, t, **kw), [x, t])
        if not log_target:                              # 0 * log 0 = 0 (the target's own gradient
            t[0, 0] = 0.0                               # there is -inf in torch; not compared)
            check_torch(lambda x: F.kl_div(x, S(t), **kw), lambda x: TF.kl_div(x, T(t), **kw), [x])


def test_kl_div_fd_and_warning():
    x, t = rand((3, 4)), np.abs(rand((3, 4), seed=1)) + 0.1
    check_fd(lambda x, t: F.kl_div(x, t, reduction="batchmean"), [x, t])
    check_fd(lambda x, t: F.kl_div(x, t, reduction="sum", log_target=True), [x, rand((3, 4), seed=2)])
    with pytest.warns(UserWarning, match="batchmean"):
        F.kl_div(S(x), S(t))
    with pytest.raises(ValueError, match="'batch' is not a valid value for reduction(.|\n)*'batchmean'"):
        F.kl_div(S(x), S(t), reduction="batch")


# ============================================================================== attention
def _sdpa_pair(**kw):
    return (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kw),
            lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, **kw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("L,S_", [(4, 4), (3, 5), (5, 2)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_sdpa_plain_causal_scale(dtype, L, S_, causal, scale):
    q, k, v = rand((2, 3, L, 4), dtype), rand((2, 3, S_, 4), dtype, seed=1), rand((2, 3, S_, 6), dtype, seed=2)
    s, t = _sdpa_pair(is_causal=causal, scale=scale)
    check_torch(s, t, [q, k, v])


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_masks(causal):
    """bool mask keeps where True, float mask is added; with is_causal both apply (torch's math path
    does this; some torch kernels refuse the combination, so torch gets the causal part folded in)."""
    q, k, v = rand((2, 2, 3, 4)), rand((2, 2, 5, 4), seed=1), rand((2, 2, 5, 3), seed=2)
    bool_mask = np.random.default_rng(3).random((2, 1, 3, 5)) > 0.3
    bool_mask[..., 0] = True                              # no fully masked row here
    float_mask = rand((3, 5), seed=4)
    tril = np.tril(np.ones((3, 5), dtype=bool))
    for mask_np in (bool_mask, float_mask):
        if not causal:
            torch_mask = mask_np
        elif mask_np.dtype == bool:
            torch_mask = mask_np & tril
        else:
            torch_mask = np.where(tril, mask_np, -np.inf)
        check_torch(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, S(mask_np), is_causal=causal),
                    lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, T(torch_mask)), [q, k, v])
    # float mask with gradient flowing into the mask itself (a learned bias)
    check_torch(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m),
                lambda q, k, v, m: TF.scaled_dot_product_attention(q, k, v, m), [q, k, v, float_mask])


def test_sdpa_fully_masked_rows_give_zeros():
    q, k, v = rand((1, 3, 4)), rand((1, 5, 4), seed=1), rand((1, 5, 2), seed=2)
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    fmask = np.where(mask, 0.0, -np.inf)
    for m in (mask, fmask):
        out = check_torch(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, S(m)),
                          lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, T(m)), [q, k, v])[0]
        assert (N(out)[:, 1] == 0).all()


def test_sdpa_gqa_fd_and_dropout():
    q, k, v = rand((1, 4, 3, 2)), rand((1, 2, 3, 2), seed=1), rand((1, 2, 3, 2), seed=2)
    check_torch(*_sdpa_pair(enable_gqa=True), [q, k, v])
    check_fd(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), [q[:, :2], k, v])
    check_jvp_vjp(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, S(rand((3, 3), seed=5))),
                  [q[:, :2], k, v])
    # dropout: deterministic under a seed, identity at p=0, and the expectation is preserved
    qs, ks, vs = S(rand((1, 1, 64, 8))), S(rand((1, 1, 64, 8), seed=1)), S(rand((1, 1, 64, 8), seed=2))
    suanli.manual_seed(5)
    a = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=0.4)
    suanli.manual_seed(5)
    b = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=0.4)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    plain = F.scaled_dot_product_attention(qs, ks, vs)
    assert not np.allclose(a.numpy(), plain.numpy())
    mean = np.mean([F.scaled_dot_product_attention(qs, ks, vs, dropout_p=0.4).numpy() for _ in range(30)], 0)
    assert np.abs(mean - plain.numpy()).mean() < 0.1 * np.abs(plain.numpy()).mean() + 0.05


def test_sdpa_errors():
    q, k, v = S(rand((2, 3, 4))), S(rand((2, 5, 4))), S(rand((2, 5, 6)))
    with pytest.raises(suanli.ShapeError, match=r"shapes do not fit(.|\n)*key \(2, 5, 3\)"):
        F.scaled_dot_product_attention(q, S(rand((2, 5, 3))), v)
    with pytest.raises(suanli.DTypeError, match=r"attn_mask must be bool or have the query's dtype(.|\n)*float32"):
        F.scaled_dot_product_attention(q, k, v, S(rand((3, 5), "float32")))
    with pytest.raises(suanli.ShapeError, match="multiple of the key/value heads"):
        F.scaled_dot_product_attention(S(rand((1, 3, 2, 4))), S(rand((1, 2, 2, 4))), S(rand((1, 2, 2, 4))),
                                       enable_gqa=True)


# ============================================================================== the F namespace
REEXPORTED = ["relu", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "softplus", "elu", "hardtanh", "relu6",
              "conv1d", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "pad"]


def test_namespace_and_reexports():
    for name in F.__all__:
        assert callable(getattr(F, name)), name
    for name in REEXPORTED:
        if hasattr(suanli.ops, name):
            assert getattr(F, name) is getattr(suanli.ops, name)
            assert name in F.__all__ and name in dir(F)
    with pytest.raises(AttributeError, match="no attribute 'not_a_function'"):
        F.not_a_function
    x = rand((3, 4), away_from=[0])
    check_torch(lambda t: F.relu(t), lambda t: TF.relu(t), [x])
    check_torch(lambda t: F.softplus(t), lambda t: TF.softplus(t), [x])


def test_softmax_bad_dim_names_softmax():
    import pytest
    with pytest.raises(IndexError, match=r"softmax: dimension out of range[\s\S]*dim=2 for a 1-d tensor"):
        suanli.ones(3).softmax(2)
    with pytest.raises(IndexError, match="log_softmax: dimension out of range"):
        suanli.ones(2, 3).log_softmax(-3)
