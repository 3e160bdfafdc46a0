"""Shape ops: values and gradients vs torch, finite differences (incl. double backward), forward vs
reverse mode, view semantics, property tests against NumPy, and error messages."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import suanli
from oracles import check_fd, check_jvp_vjp, check_torch, rand

DTYPES = ["float64", "float32"]


def _pad_fn(pad, mode="constant", value=None):
    def s(x):
        return suanli.pad(x, pad, mode=mode, value=value)

    def t(x):
        return F.pad(x, pad, mode=mode, value=value)
    return s, t


# (id, suanli fn, torch fn, input shapes); every fn takes one tensor per shape
CASES = [
    ("reshape", lambda x: x.reshape(4, -1), lambda x: x.reshape(4, -1), [(2, 3, 2)]),
    ("reshape_0d", lambda x: x.reshape(1, 1), lambda x: x.reshape(1, 1), [()]),
    ("view_empty", lambda x: x.view(3, 0), lambda x: x.view(3, 0), [(0, 3)]),
    ("expand", lambda x: x.expand(2, 3, 4), lambda x: x.expand(2, 3, 4), [(3, 1)]),
    ("expand_-1", lambda x: x.expand(5, -1, -1), lambda x: x.expand(5, -1, -1), [(1, 4)]),
    ("broadcast_to", lambda x: suanli.broadcast_to(x, (2, 3)), lambda x: torch.broadcast_to(x, (2, 3)), [(3,)]),
    ("expand_as", lambda x, y: x.expand_as(y) * y, lambda x, y: x.expand_as(y) * y, [(3, 1), (3, 4)]),
    ("view_as", lambda x, y: x.view_as(y) * y, lambda x, y: x.view_as(y) * y, [(2, 6), (3, 4)]),
    ("reshape_as", lambda x, y: x.reshape_as(y), lambda x, y: x.reshape_as(y), [(12,), (3, 4)]),
    ("permute", lambda x: x.permute(2, 0, 1), lambda x: x.permute(2, 0, 1), [(2, 3, 4)]),
    ("permute_neg", lambda x: suanli.permute(x, (-1, 0, -2)), lambda x: torch.permute(x, (-1, 0, -2)), [(2, 3, 4)]),
    ("transpose", lambda x: x.transpose(0, -1), lambda x: x.transpose(0, -1), [(2, 3, 4)]),
    ("swapaxes", lambda x: suanli.swapaxes(x, 1, 2), lambda x: torch.swapaxes(x, 1, 2), [(2, 3, 4)]),
    ("swapdims_1d", lambda x: x.swapdims(0, 0), lambda x: x.swapdims(0, 0), [(3,)]),
    ("movedim", lambda x: x.movedim(0, -1), lambda x: x.movedim(0, -1), [(2, 3, 4)]),
    ("movedim_tuple", lambda x: suanli.movedim(x, (0, 1), (2, 0)), lambda x: torch.movedim(x, (0, 1), (2, 0)), [(2, 3, 4)]),
    ("moveaxis", lambda x: suanli.moveaxis(x, -1, 1), lambda x: torch.moveaxis(x, -1, 1), [(2, 3, 4, 1)]),
    ("T_2d", lambda x: x.T, lambda x: x.T, [(2, 3)]),
    ("T_3d", lambda x: x.T, lambda x: x.permute(2, 1, 0), [(2, 3, 4)]),
    ("mT", lambda x: x.mT, lambda x: x.mT, [(2, 3, 4)]),
    ("t", lambda x: x.t(), lambda x: x.t(), [(2, 3)]),
    ("t_1d", lambda x: suanli.t(x), lambda x: torch.t(x), [(3,)]),
    ("squeeze_all", lambda x: x.squeeze(), lambda x: x.squeeze(), [(1, 3, 1, 2)]),
    ("squeeze_dim", lambda x: x.squeeze(-2), lambda x: x.squeeze(-2), [(1, 3, 1, 2)]),
    ("squeeze_noop", lambda x: x.squeeze(1), lambda x: x.squeeze(1), [(1, 3, 1, 2)]),
    ("squeeze_tuple", lambda x: x.squeeze((0, 2)), lambda x: x.squeeze((0, 2)), [(1, 3, 1, 2)]),
    ("squeeze_0d", lambda x: x.squeeze(), lambda x: x.squeeze(), [()]),
    ("unsqueeze", lambda x: x.unsqueeze(1), lambda x: x.unsqueeze(1), [(2, 3)]),
    ("unsqueeze_neg", lambda x: x.unsqueeze(-1), lambda x: x.unsqueeze(-1), [(2, 3)]),
    ("unsqueeze_0d", lambda x: x.unsqueeze(0), lambda x: x.unsqueeze(0), [()]),
    ("flatten", lambda x: x.flatten(), lambda x: x.flatten(), [(2, 3, 4)]),
    ("flatten_mid", lambda x: x.flatten(1, -2), lambda x: x.flatten(1, -2), [(2, 3, 4, 2)]),
    ("flatten_0d", lambda x: x.flatten(), lambda x: x.flatten(), [()]),
    ("ravel", lambda x: suanli.ravel(x.T), lambda x: torch.ravel(x.T), [(2, 3)]),
    ("unflatten", lambda x: x.unflatten(-1, (2, -1)), lambda x: x.unflatten(-1, (2, -1)), [(3, 8)]),
    ("cat", lambda x, y: suanli.cat([x, y], 1), lambda x, y: torch.cat([x, y], 1), [(2, 3, 4), (2, 1, 4)]),
    ("cat3_neg", lambda x, y, z: suanli.cat((x, y, z), -1), lambda x, y, z: torch.cat((x, y, z), -1),
     [(2, 3), (2, 1), (2, 4)]),
    ("cat_empty", lambda x, y: suanli.concat([x, y]), lambda x, y: torch.concat([x, y]), [(0, 3), (2, 3)]),
    ("cat_legacy_empty", lambda x, y: suanli.cat([x, y]), lambda x, y: torch.cat([x, y]), [(0,), (2, 3)]),
    ("concatenate", lambda x, y: suanli.concatenate([x, y], 0), lambda x, y: torch.concatenate([x, y], 0),
     [(1, 2), (3, 2)]),
    ("stack", lambda x, y: suanli.stack([x, y]), lambda x, y: torch.stack([x, y]), [(2, 3), (2, 3)]),
    ("stack_neg", lambda x, y: suanli.stack([x, y], -1), lambda x, y: torch.stack([x, y], -1), [(2, 3), (2, 3)]),
    ("stack_0d", lambda x, y: suanli.stack([x, y]), lambda x, y: torch.stack([x, y]), [(), ()]),
    ("hstack", lambda x, y: suanli.hstack([x, y]), lambda x, y: torch.hstack([x, y]), [(2, 3), (2, 1)]),
    ("vstack", lambda x, y: suanli.vstack([x, y]), lambda x, y: torch.vstack([x, y]), [(3,), (2, 3)]),
    ("split_int", lambda x: x.split(2, dim=1), lambda x: x.split(2, dim=1), [(2, 5)]),
    ("split_list", lambda x: suanli.split(x, [1, 0, 3], -1), lambda x: torch.split(x, [1, 0, 3], -1), [(2, 4)]),
    ("chunk", lambda x: x.chunk(3), lambda x: x.chunk(3), [(5, 2)]),
    ("chunk_more", lambda x: suanli.chunk(x, 4, 1), lambda x: torch.chunk(x, 4, 1), [(2, 6)]),
    ("unbind", lambda x: x.unbind(1), lambda x: x.unbind(1), [(2, 3, 2)]),
    ("narrow", lambda x: x.narrow(1, 1, 2), lambda x: x.narrow(1, 1, 2), [(2, 4)]),
    ("narrow_neg", lambda x: suanli.narrow(x, -1, -3, 2), lambda x: torch.narrow(x, -1, -3, 2), [(2, 4)]),
    ("pad_const", *_pad_fn((1, 2)), [(2, 3)]),
    ("pad_const_value", *_pad_fn((0, 1, 2, 0), value=1.5), [(2, 3, 2)]),
    ("pad_crop", *_pad_fn((-1, 2, 1, -1)), [(3, 4)]),
    ("pad_reflect", *_pad_fn((2, 1), "reflect"), [(2, 3, 4)]),
    ("pad_reflect2d", *_pad_fn((1, 2, 2, 1), "reflect"), [(1, 2, 3, 4)]),
    ("pad_replicate", *_pad_fn((2, 3, 0, 1), "replicate"), [(2, 3, 4)]),
    ("pad_replicate3d", *_pad_fn((1, 0, 0, 2, 1, 1), "replicate"), [(1, 1, 2, 3, 2)]),
    ("pad_circular", *_pad_fn((2, 3), "circular"), [(2, 3, 4)]),
    ("pad_circular2d", *_pad_fn((1, 1, 2, 0), "circular"), [(1, 2, 3, 3)]),
    ("flip", lambda x: x.flip(0, -1), lambda x: x.flip(0, -1), [(2, 3, 4)]),
    ("flip_tuple", lambda x: suanli.flip(x, (1,)), lambda x: torch.flip(x, (1,)), [(2, 3)]),
    ("fliplr", lambda x: suanli.fliplr(x), lambda x: torch.fliplr(x), [(2, 3)]),
    ("flipud", lambda x: x.flipud(), lambda x: x.flipud(), [(2, 3)]),
    ("roll", lambda x: x.roll(1, 0), lambda x: x.roll(1, 0), [(3, 4)]),
    ("roll_multi", lambda x: suanli.roll(x, (1, -3), (-1, 0)), lambda x: torch.roll(x, (1, -3), (-1, 0)), [(3, 4)]),
    ("roll_flat", lambda x: x.roll(5), lambda x: x.roll(5), [(3, 4)]),
    ("roll_empty", lambda x: x.roll(2, 1), lambda x: x.roll(2, 1), [(0, 3)]),
    ("tril", lambda x: x.tril(), lambda x: x.tril(), [(3, 4)]),
    ("tril_k", lambda x: suanli.tril(x, -1), lambda x: torch.tril(x, -1), [(2, 3, 3)]),
    ("triu", lambda x: x.triu(), lambda x: x.triu(), [(4, 3)]),
    ("triu_k", lambda x: suanli.triu(x, 2), lambda x: torch.triu(x, 2), [(2, 3, 4)]),
    ("repeat", lambda x: x.repeat(2, 3), lambda x: x.repeat(2, 3), [(2, 3)]),
    ("repeat_lead", lambda x: x.repeat(2, 1, 2), lambda x: x.repeat(2, 1, 2), [(3, 2)]),
    ("repeat_zero", lambda x: x.repeat(0, 2), lambda x: x.repeat(0, 2), [(3,)]),
    ("repeat_interleave", lambda x: x.repeat_interleave(2), lambda x: x.repeat_interleave(2), [(2, 3)]),
    ("repeat_interleave_dim", lambda x: suanli.repeat_interleave(x, 3, dim=-1),
     lambda x: torch.repeat_interleave(x, 3, dim=-1), [(2, 3)]),
    ("repeat_interleave_tensor", lambda x: x.repeat_interleave(suanli.tensor([1, 0, 2]), dim=0),
     lambda x: x.repeat_interleave(torch.tensor([1, 0, 2]), dim=0), [(3, 2)]),
    ("tile", lambda x: x.tile((2,)), lambda x: x.tile((2,)), [(2, 3)]),
    ("tile_more", lambda x: suanli.tile(x, (2, 1, 2)), lambda x: torch.tile(x, (2, 1, 2)), [(2, 3)]),
    ("diagonal", lambda x: x.diagonal(), lambda x: x.diagonal(), [(3, 4)]),
    ("diagonal_offset", lambda x: suanli.diagonal(x, 1, -1, 0), lambda x: torch.diagonal(x, 1, -1, 0), [(3, 2, 4)]),
    ("diagonal_neg", lambda x: x.diagonal(-1, 1, 2), lambda x: x.diagonal(-1, 1, 2), [(2, 4, 3)]),
    ("diagonal_far", lambda x: x.diagonal(0, 0, 2), lambda x: x.diagonal(0, 0, 2), [(3, 2, 3)]),
    ("diagonal_empty", lambda x: x.diagonal(5), lambda x: x.diagonal(5), [(3, 3)]),
    ("broadcast_tensors", lambda x, y: suanli.broadcast_tensors(x, y),
     lambda x, y: torch.broadcast_tensors(x, y), [(2, 1), (3,)]),
    ("chain", lambda x: x.permute(1, 0, 2).reshape(3, 8)[1:, ::3].T.flip(0),
     lambda x: x.permute(1, 0, 2).reshape(3, 8)[1:, ::3].T.flip(0), [(2, 3, 4)]),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_torch(case, dtype):
    _, fn, tfn, shapes = case
    arrays = [rand(s, dtype, seed=i) for i, s in enumerate(shapes)]
    check_torch(fn, tfn, arrays)


def _as_sum_of_outputs(fn):
    """Multi-output ops (split, unbind...) as one tensor for the finite-difference oracles."""
    def g(*xs):
        out = fn(*xs)
        if isinstance(out, tuple):
            return suanli.cat([o.reshape(-1) for o in out] + [suanli.zeros(0, dtype=suanli.float64)])
        return out
    return g


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_finite_differences_and_double_backward(case):
    _, fn, _, shapes = case
    arrays = [rand(s, "float64", seed=i) for i, s in enumerate(shapes)]
    if all(np.prod(s) == 0 for s in shapes):
        pytest.skip("no elements to differentiate")
    check_fd(_as_sum_of_outputs(fn), arrays)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_reverse(case):
    _, fn, _, shapes = case
    arrays = [rand(s, "float64", seed=i) for i, s in enumerate(shapes)]
    check_jvp_vjp(_as_sum_of_outputs(fn), arrays)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int64", "bool"])
def test_other_dtypes_move_data_unchanged(dtype):
    a = rand((2, 3, 4), dtype)
    x, t = suanli.tensor(a), torch.tensor(a.astype(np.float32) if dtype == "bfloat16" else a)
    if dtype == "bfloat16":
        t = t.to(torch.bfloat16)
    ops = [lambda v: v.permute(2, 0, 1), lambda v: v.flip(1), lambda v: v.roll(1, 2), lambda v: v.tril(),
           lambda v: v[1:, ::2], lambda v: v.repeat(1, 2, 1), lambda v: v.diagonal(0, 1, 2)]
    for op in ops:
        out, ref = op(x), op(t)
        assert out.dtype == x.dtype
        np.testing.assert_array_equal(out.numpy().astype(np.float64), ref.float().numpy().astype(np.float64))
    c = suanli.cat([x, x], 0)
    assert c.dtype == x.dtype and c.shape == (4, 3, 4)


def test_cat_promotes_dtypes_like_torch():
    pairs = [("int64", "float32"), ("int32", "int64"), ("bool", "int8"), ("float16", "float64"), ("uint8", "int8")]
    for a, b in pairs:
        xa, xb = rand((2,), a, low=0, high=2), rand((3,), b, low=0, high=2)
        out = suanli.cat([suanli.tensor(xa), suanli.tensor(xb)])
        ref = torch.cat([torch.tensor(xa), torch.tensor(xb)])
        assert str(out.dtype) == str(ref.dtype).replace("torch.", "")
        np.testing.assert_array_equal(out.numpy().astype(np.float64), ref.double().numpy())


def test_cat_grad_into_mixed_dtypes():
    x = suanli.tensor([1.0, 2.0], dtype=suanli.float32, requires_grad=True)
    y = suanli.tensor([3.0], dtype=suanli.float64, requires_grad=True)
    out = suanli.cat([x, y])
    assert out.dtype == suanli.float64
    (out * suanli.tensor([1.0, 2.0, 3.0], dtype=suanli.float64)).sum().backward()
    assert x.grad.dtype == suanli.float32 and x.grad.tolist() == [1.0, 2.0]
    assert y.grad.tolist() == [3.0]


# ------------------------------------------------------------------------------ views
def test_views_share_memory_and_version():
    x = suanli.arange(12.0).reshape(3, 4)
    views = [x.permute(1, 0), x.T, x.mT, x[1:], x.unsqueeze(0), x.squeeze(), x.narrow(1, 1, 2),
             x.split(2, 1)[1], x.unbind(0)[2], x.diagonal(), x.expand(2, 3, 4), x.flatten(), x.chunk(2)[0]]
    for v in views:
        assert np.shares_memory(v.numpy(), x.numpy())
        assert v._vc is x._vc
        assert v._base is x._base or v._base is x
    for copy in [x.flip(0), x.roll(1), x.tril(), suanli.cat([x, x]), x.repeat(1, 1), suanli.pad(x, (1, 1))]:
        assert not np.shares_memory(copy.numpy(), x.numpy())


def test_inplace_on_views_changes_base():
    x = suanli.zeros(3, 4)
    x.T[1].add_(1.0)           # column 1
    x.diagonal().add_(10.0)
    x.narrow(0, 2, 1).mul_(2.0)
    expected = np.zeros((3, 4))
    expected[:, 1] += 1
    expected[np.arange(3), np.arange(3)] += 10
    expected[2] *= 2
    np.testing.assert_array_equal(x.numpy(), expected)
    assert x._version == 3


def test_reshape_that_cannot_be_a_view_copies():
    x = suanli.arange(6.0).reshape(2, 3)
    y = x.T.reshape(-1)
    assert not np.shares_memory(y.numpy(), x.numpy()) and y._vc is not x._vc
    y.add_(1.0)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5]] and x._version == 0
    for r in [x.repeat(2, 1), x.repeat(1, 1), x.tile((1,)), x.repeat_interleave(1, 0), x.repeat_interleave(2)]:
        assert not np.shares_memory(r.numpy(), x.numpy())


def test_flip_of_empty_dims_is_a_copy():
    x = suanli.arange(3.0)
    y = x.flip(())
    assert not np.shares_memory(y.numpy(), x.numpy())
    assert y.tolist() == [0.0, 1.0, 2.0]


# ------------------------------------------------------------------------ property tests
_shape = st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple)


@given(_shape, st.randoms(use_true_random=False))
def test_reshape_permute_round_trip(shape, rnd):
    a = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    x = suanli.tensor(a)
    perm = list(range(len(shape)))
    rnd.shuffle(perm)
    y = x.permute(*perm)
    np.testing.assert_array_equal(y.numpy(), np.transpose(a, perm))
    np.testing.assert_array_equal(y.permute(*np.argsort(perm).tolist()).numpy(), a)
    np.testing.assert_array_equal(x.reshape(-1).reshape(shape).numpy(), a)


@given(_shape, st.integers(0, 3), st.integers(1, 4))
def test_split_cat_round_trip(shape, dim, size):
    dim = dim % len(shape)
    a = rand(shape, seed=1)
    x = suanli.tensor(a)
    pieces = x.split(size, dim)
    assert all(p.shape[dim] <= size for p in pieces)
    np.testing.assert_array_equal(suanli.cat(list(pieces), dim).numpy(), a)
    np.testing.assert_array_equal(suanli.stack(x.unbind(dim), dim).numpy(), a) if shape[dim] else None
    np.testing.assert_array_equal(suanli.cat(list(x.chunk(size, dim)), dim).numpy(), a)


_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), st.sampled_from(sorted(_MODES)),
       st.data())
def test_pad_matches_numpy(shape, mode, data):
    k = data.draw(st.integers(1, len(shape)))
    limit = {"reflect": lambda n: n - 1, "circular": lambda n: n}.get(mode, lambda n: 3)
    widths = [(0, 0)] * len(shape)
    pad = []
    for j in range(k):
        n = shape[-1 - j]
        lo, hi = data.draw(st.integers(0, limit(n))), data.draw(st.integers(0, limit(n)))
        widths[-1 - j] = (lo, hi)
        pad += [lo, hi]
    a = rand(shape, seed=2)
    out = suanli.pad(suanli.tensor(a), tuple(pad), mode=mode)
    np.testing.assert_array_equal(out.numpy(), np.pad(a, widths, mode=_MODES[mode]))


@given(_shape, st.data())
def test_flip_roll_match_numpy(shape, data):
    a = rand(shape, seed=3)
    x = suanli.tensor(a)
    dims = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), max_size=len(shape),
                              unique_by=lambda d: d % len(shape)))
    np.testing.assert_array_equal(x.flip(*dims).numpy(), np.flip(a, tuple(dims)))
    shifts = [data.draw(st.integers(-7, 7)) for _ in dims]
    expect = np.roll(a, shifts, tuple(dims)) if dims else a
    np.testing.assert_array_equal(x.roll(tuple(shifts), tuple(dims)).numpy(), expect)
    s = data.draw(st.integers(-9, 9))
    np.testing.assert_array_equal(x.roll(s).numpy(), np.roll(a, s))


@given(_shape, st.data())
def test_repeat_tile_match_numpy(shape, data):
    a = rand(shape, seed=4)
    reps = tuple(data.draw(st.lists(st.integers(0, 3), min_size=len(shape), max_size=len(shape) + 1)))
    np.testing.assert_array_equal(suanli.tensor(a).repeat(*reps).numpy(), np.tile(a, reps))


# ------------------------------------------------------------------------------ errors
def _raises(exc, match, fn):
    with pytest.raises(exc, match=match):
        fn()


def test_error_messages():
    x = suanli.zeros(2, 3)
    _raises(ValueError, r"(?s)cat: sizes of tensors must match.*\(2, 3\), \(3, 2\)",
            lambda: suanli.cat([x, suanli.zeros(3, 2)], 0))
    _raises(ValueError, r"cat: expects a non-empty list", lambda: suanli.cat([]))
    _raises(TypeError, r"cat: expects a list or tuple", lambda: suanli.cat(x))
    _raises(ValueError, r"(?s)cat: zero-dimensional.*stack", lambda: suanli.cat([suanli.tensor(1.0)]))
    _raises(IndexError, r"cat: dimension out of range", lambda: suanli.cat([x, x], 2))
    _raises(ValueError, r"(?s)stack: expects each tensor to be equal size.*\(2, 4\) at entry 1",
            lambda: suanli.stack([x, suanli.zeros(2, 4)]))
    _raises(ValueError, r"(?s)permute: the number of dims.*3 dims", lambda: suanli.zeros(2, 3, 4).permute(0, 1))
    _raises(ValueError, r"permute: dims must be a permutation", lambda: x.permute(0, 0))
    _raises(IndexError, r"transpose: dimension out of range", lambda: x.transpose(0, 2))
    _raises(IndexError, r"unsqueeze: dimension out of range", lambda: x.unsqueeze(4))
    _raises(ValueError, r"flatten: start_dim cannot come after end_dim", lambda: x.flatten(1, 0))
    _raises(ValueError, r"(?s)split: split sizes must.*sum == 3", lambda: x.split([1, 1], 1))
    _raises(ValueError, r"(?s)narrow: start \+ length exceeds", lambda: x.narrow(1, 2, 2))
    _raises(ValueError, r"(?s)pad: the padding tuple must have an even length", lambda: suanli.pad(x, (1,)))
    _raises(ValueError, r"(?s)pad: reflect padding must be smaller.*padding \(3, 0\) at dim 1",
            lambda: suanli.pad(x, (3, 0), mode="reflect"))
    _raises(ValueError, r"(?s)pad: circular padding must not exceed", lambda: suanli.pad(x, (4, 0), mode="circular"))
    _raises(ValueError, r"pad: unknown mode", lambda: suanli.pad(x, (1, 1), mode="mirror"))
    _raises(ValueError, r"(?s)pad: negative padding crops more", lambda: suanli.pad(x, (-2, -2)))
    _raises(ValueError, r"(?s)repeat: the number of repeat dims.*tile", lambda: x.repeat(2))
    _raises(ValueError, r"(?s)roll: shifts and dims must have the same length", lambda: x.roll((1, 2), 0))
    _raises(ValueError, r"(?s)tril/triu: input must have at least 2 dimensions", lambda: suanli.zeros(3).tril())
    _raises(ValueError, r"(?s)mT: expects a tensor with at least 2", lambda: suanli.zeros(3).mT)
    _raises(ValueError, r"(?s)t: expects a tensor with <= 2", lambda: suanli.zeros(1, 2, 3).t())
    _raises(ValueError, r"(?s)expand: shapes cannot be broadcast.*\(2, 3\) vs \(2, 4\)", lambda: x.expand(2, 4))
    _raises(ValueError, r"(?s)reshape: the number of elements must not change", lambda: x.reshape(4, 2))
    _raises(ValueError, r"(?s)diagonal: needs two different dims", lambda: x.diagonal(0, 1, 1))
    _raises(ValueError, r"(?s)unflatten: the number of elements", lambda: x.unflatten(1, (2, 2)))
    _raises(ValueError, r"(?s)movedim: repeated dim", lambda: x.movedim((0, 0), (0, 1)))
    _raises(ValueError, r"(?s)repeat_interleave: repeats must be non-negative integers, one per element",
            lambda: x.repeat_interleave(suanli.tensor([1, 2]), dim=1))


# ------------------------------------------------------------- second order through products
NONLINEAR = [
    ("permute", lambda x: x.permute(1, 0, 2) * x.transpose(0, 1), (2, 3, 4)),
    ("cat", lambda x: suanli.cat([x, x * x], 1) * suanli.cat([x * x, x], 1), (2, 3)),
    ("stack_split", lambda x: suanli.stack(x.split(1, 0)[::-1], 0) * x.unsqueeze(1), (3, 2)),
    ("pad", lambda x: suanli.pad(x, (1, 2)) * suanli.pad(x * x, (2, 1), mode="reflect"), (2, 4)),
    ("pad_circular", lambda x: suanli.pad(x, (1, 1), mode="circular") * suanli.pad(x, (1, 1), mode="replicate"), (2, 3)),
    ("flip_roll", lambda x: x.flip(0) * x.roll(1, 1) * x, (3, 4)),
    ("tril_triu", lambda x: x.tril() * x.triu(-1), (3, 3)),
    ("diagonal", lambda x: x.diagonal(1) * x.diagonal(-1), (3, 3)),
    ("repeat_tile", lambda x: x.repeat(2, 1) * x.tile((2, 1)) * x.repeat_interleave(2, 0), (2, 3)),
    ("expand", lambda x: x.expand(2, 3, 3) * x.T, (3, 3)),
]


@pytest.mark.parametrize("case", NONLINEAR, ids=[c[0] for c in NONLINEAR])
def test_double_backward_through_products(case):
    _, fn, shape = case
    check_fd(fn, [rand(shape)])
    check_jvp_vjp(fn, [rand(shape)])
