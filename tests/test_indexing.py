"""Indexing: getitem/setitem with a wide set of keys, index_put, gather/scatter, index_select,
masked ops -- values and gradients vs torch, finite differences, forward vs reverse, view
semantics and error messages."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import suanli
from oracles import check_fd, check_jvp_vjp, check_torch, rand

DTYPES = ["float64", "float32"]
MASK = rand((3, 4), "bool", seed=7)
MASK3 = rand((4,), "bool", seed=8)


def _key(k, lib):
    """Build a key for suanli (lib='s') or torch (lib='t'): np arrays become library tensors."""
    def conv(e):
        if isinstance(e, np.ndarray):
            return suanli.tensor(e) if lib == "s" else torch.tensor(e)
        return e
    return tuple(conv(e) for e in k) if isinstance(k, tuple) else conv(k)


# keys for a (3, 4, 5) tensor
KEYS = [
    ("int", 1), ("neg_int", -1), ("int_int", (2, -3)), ("all_int", (0, 1, 2)),
    ("slice", slice(1, None)), ("slice_step", (slice(None), slice(None, None, 2))),
    ("slice_step_start", (slice(1, 3), slice(-3, None, 2), slice(None, 4, 3))),
    ("slice_empty", slice(2, 1)), ("slice_out_of_range", slice(-10, 10)),
    ("none", None), ("none_mid", (slice(None), None, 1)), ("ellipsis", Ellipsis),
    ("ellipsis_int", (Ellipsis, 2)), ("ellipsis_mid", (0, Ellipsis, slice(1, 3))),
    ("ellipsis_none", (None, Ellipsis, None)), ("empty_tuple", ()),
    ("list", [0, 2]), ("list_repeat", [1, 1, 0, 1]), ("list_neg", [-1, 0]),
    ("array_2d", np.array([[0, 1], [2, 2]])), ("two_lists", ([0, 2, 2], [1, 3, 1])),
    ("list_slice", (slice(None), [3, 0, 3])), ("list_slice_list", ([0, 1], slice(None), [0, 4])),
    ("int_slice_list", (0, slice(None), [1, 2])), ("list_int_list", ([0, 1], 2, [4, 3])),
    ("broadcast_lists", (np.array([[0], [2]]), np.array([1, 3, 3]))), ("list_ellipsis", (Ellipsis, [4, 0, 4])),
    ("list_none_list", ([0, 1], None, [0, 1])), ("empty_list", ([],)), ("0d_tensor", np.array(2)),
    ("mask_2d", MASK), ("mask_1d", np.array([True, False, True])), ("mask_mid", (slice(None), MASK3)),
    ("mask_and_list", (np.array([True, False, True]), slice(None), [1, 4])),
    ("mask_none_true", np.zeros((3, 4), bool)), ("mask_last", (Ellipsis, np.array([1, 0, 1, 1, 0], bool))),
    ("bool_true", True), ("bool_false", False), ("int_bool", (0, True)),
    ("step_on_list", ([2, 0], slice(None, None, 3))), ("bool_list", [True, False, True]),
]
KEY_IDS = [k[0] for k in KEYS]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key", KEYS, ids=KEY_IDS)
def test_getitem_matches_torch(key, dtype):
    k = key[1]
    check_torch(lambda x: x[_key(k, "s")], lambda x: x[_key(k, "t")], [rand((3, 4, 5), dtype)])


@pytest.mark.parametrize("key", KEYS, ids=KEY_IDS)
def test_getitem_fd_and_jvp(key):
    k = key[1]
    fn = lambda x: x[_key(k, "s")]  # noqa: E731
    a = rand((3, 4, 5))
    out = fn(suanli.tensor(a))
    if out.numel():
        check_fd(fn, [a])
    check_jvp_vjp(fn, [a])


@pytest.mark.parametrize("shape,key", [((), ()), ((), None), ((), Ellipsis), ((0, 3), 0 if False else slice(None)),
                                       ((0, 3), (Ellipsis, 1)), ((4,), [3, 3, 3]), ((1, 1), (0, 0)),
                                       ((2, 0, 3), (1, Ellipsis, [0, 2]))])
def test_getitem_edge_shapes(shape, key):
    check_torch(lambda x: x[key], lambda x: x[key], [rand(shape)])


def test_repeated_indices_accumulate():
    x = suanli.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 0, 2, 0]].sum().backward()
    assert x.grad.tolist() == [3.0, 0.0, 1.0]


def test_sequence_of_lists_is_a_tuple_like_torch():
    a = rand((3, 4, 5))
    with pytest.warns(UserWarning):
        ref = torch.tensor(a)[[[0, 1], [1, 2]]]
    np.testing.assert_array_equal(suanli.tensor(a)[[[0, 1], [1, 2]]].numpy(), ref.numpy())


# ------------------------------------------------------------------------------- setitem
SET_CASES = [
    ("int", 1, (4, 5)), ("int_broadcast", 1, (5,)), ("scalar", (0, 1, 2), ()), ("slice", slice(0, 2), (1, 4, 5)),
    ("slice_step", (slice(None), slice(None, None, 2)), (3, 2, 1)), ("ellipsis", (Ellipsis, 1), (3, 4)),
    ("none", (None, 0), (1, 4, 5)), ("list", [2, 0], (2, 4, 5)), ("list_broadcast", ([0, 2], slice(1, 3)), (2, 1)),
    ("two_lists", ([0, 2], [3, 1]), (5,)), ("mask", MASK, (1,)), ("mask_values", MASK, (int(MASK.sum()), 5)),
    ("int_slice_list", (0, slice(None), [1, 2]), (4, 2)), ("leading_ones", 0, (1, 1, 4, 5)),
    ("list_none_list", ([0, 1], None, [0, 1]), (2, 1, 5)),
]
SET_IDS = [c[0] for c in SET_CASES]


def _setter(k, lib):
    key = _key(k, lib)

    def f(y, v):
        x = y.clone()
        x[key] = v
        return x * 1.0
    return f


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SET_CASES, ids=SET_IDS)
def test_setitem_matches_torch(case, dtype):
    _, k, vshape = case
    check_torch(_setter(k, "s"), _setter(k, "t"), [rand((3, 4, 5), dtype), rand(vshape, dtype, seed=5)])


@pytest.mark.parametrize("case", SET_CASES, ids=SET_IDS)
def test_setitem_fd_and_jvp(case):
    _, k, vshape = case
    arrays = [rand((3, 4, 5)), rand(vshape, seed=5)]
    fn = lambda y, v: suanli.ops.indexing.setitem(y, _key(k, "s"), v)  # noqa: E731
    check_fd(fn, arrays)
    check_jvp_vjp(fn, arrays)


def test_setitem_python_scalar_and_int_tensor():
    x = suanli.zeros(2, 3, dtype=suanli.int64)
    x[0, 1:] = 7
    x[1] = suanli.tensor([1.9, 2.0, 3.0])          # cast to the tensor's dtype, like torch
    assert x.tolist() == [[0, 7, 7], [1, 2, 3]]


# ------------------------------------------------------------------------------ view semantics
def test_basic_slice_is_a_view_and_inplace_changes_base():
    x = suanli.arange(12.0).reshape(3, 4)
    v = x[1:, ::2]
    assert np.shares_memory(v.numpy(), x.numpy())
    assert v._vc is x._vc
    v.mul_(10.0)
    assert x.tolist() == [[0, 1, 2, 3], [40, 5, 60, 7], [80, 9, 100, 11]]
    assert x._version == 1
    row = x[0]
    row[2] = -1.0                       # setitem on a view writes into the base
    assert x[0, 2].item() == -1.0
    x[..., 3] = 0.0
    assert v.numpy()[:, -1].tolist() == [60.0, 100.0] and row.numpy()[3] == 0.0


def test_advanced_index_is_a_copy():
    x = suanli.arange(6.0)
    y = x[[0, 1]]
    y.add_(5.0)
    assert x.tolist() == [0, 1, 2, 3, 4, 5]
    m = x[suanli.tensor([True] * 6)]
    assert not np.shares_memory(m.numpy(), x.numpy())


def test_setitem_keeps_gradient_of_earlier_uses():
    y = suanli.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = y.clone()
    z = x.exp()
    x[0] = 5.0                          # exp did not save x: fine
    (z.sum() + x.sum()).backward()
    np.testing.assert_allclose(y.grad.numpy(), np.exp([1.0, 2.0, 3.0]) + [0, 1, 1], rtol=1e-6)


def test_setitem_on_leaf_requiring_grad_is_refused():
    x = suanli.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor"):
        x[0] = 1.0


# ----------------------------------------------------------------- gather / scatter / index ops
IDX = np.array([[0, 2, 1, 2], [1, 1, 0, 0]])
IDX_DIM1 = np.array([[3, 0], [1, 1], [0, 2]])
PERM0 = np.array([[2, 0, 1, 1], [0, 1, 2, 0]])     # no repeated target in a column (scatter is ambiguous otherwise)
PERM1 = np.array([[3, 0], [1, 2], [0, 3]])
I1 = np.array([2, 0, 2])

OP_CASES = [
    ("gather0", lambda x: x.gather(0, suanli.tensor(IDX)), lambda x: x.gather(0, torch.tensor(IDX)), [(3, 4)]),
    ("gather1", lambda x: suanli.gather(x, -1, suanli.tensor(IDX_DIM1)),
     lambda x: torch.gather(x, -1, torch.tensor(IDX_DIM1)), [(3, 5)]),
    ("gather_small", lambda x: x.gather(1, suanli.tensor([[1], [0]])), lambda x: x.gather(1, torch.tensor([[1], [0]])),
     [(3, 4)]),
    ("gather_0d", lambda x: x.gather(0, suanli.tensor(0)), lambda x: x.gather(0, torch.tensor(0)), [()]),
    ("scatter_add", lambda x, s: x.scatter_add(0, suanli.tensor(IDX), s),
     lambda x, s: x.scatter_add(0, torch.tensor(IDX), s), [(3, 4), (2, 4)]),
    ("scatter_add_big_src", lambda x, s: suanli.scatter_add(x, 1, suanli.tensor(IDX_DIM1), s),
     lambda x, s: torch.scatter_add(x, 1, torch.tensor(IDX_DIM1), s), [(3, 4), (4, 3)]),
    ("scatter", lambda x, s: x.scatter(0, suanli.tensor(PERM0[:1]), s),
     lambda x, s: x.scatter(0, torch.tensor(PERM0[:1]), s), [(3, 4), (2, 4)]),
    ("scatter_dim1", lambda x, s: suanli.scatter(x, 1, suanli.tensor(PERM1[:, :1]), s),
     lambda x, s: torch.scatter(x, 1, torch.tensor(PERM1[:, :1]), s), [(3, 4), (3, 3)]),
    ("scatter_value", lambda x: x.scatter(1, suanli.tensor(PERM1), 2.5),
     lambda x: x.scatter(1, torch.tensor(PERM1), 2.5), [(3, 4)]),
    ("scatter_reduce_add", lambda x, s: x.scatter(0, suanli.tensor(IDX), s, reduce="add"),
     lambda x, s: x.scatter_add(0, torch.tensor(IDX), s), [(3, 4), (2, 4)]),
    ("index_select", lambda x: x.index_select(1, suanli.tensor(I1)), lambda x: x.index_select(1, torch.tensor(I1)),
     [(2, 3, 4)]),
    ("index_select_0d", lambda x: suanli.index_select(x, 0, suanli.tensor(1)),
     lambda x: torch.index_select(x, 0, torch.tensor(1)), [(3, 2)]),
    ("index_add", lambda x, s: x.index_add(0, suanli.tensor(I1), s), lambda x, s: x.index_add(0, torch.tensor(I1), s),
     [(3, 2), (3, 2)]),
    ("index_add_alpha", lambda x, s: suanli.index_add(x, -1, suanli.tensor(I1), s, alpha=2.0),
     lambda x, s: torch.index_add(x, -1, torch.tensor(I1), s, alpha=2.0), [(2, 4), (2, 3)]),
    ("index_fill", lambda x: x.index_fill(1, suanli.tensor(I1), -2.0), lambda x: x.index_fill(1, torch.tensor(I1), -2.0),
     [(2, 3)]),
    ("index_fill_tensor", lambda x, v: x.index_fill(0, suanli.tensor(I1), v),
     lambda x, v: x.index_fill(0, torch.tensor(I1), v), [(3, 2), ()]),
    ("index_put", lambda x, v: x.index_put((suanli.tensor([0, 2]), suanli.tensor([1, 1])), v),
     lambda x, v: x.index_put((torch.tensor([0, 2]), torch.tensor([1, 1])), v), [(3, 4), (2,)]),
    ("index_put_acc", lambda x, v: suanli.index_put(x, (suanli.tensor([0, 0, 2]),), v, accumulate=True),
     lambda x, v: torch.index_put(x, (torch.tensor([0, 0, 2]),), v, accumulate=True), [(3, 4), (3, 4)]),
    ("index_put_acc_mask", lambda x, v: x.index_put((suanli.tensor(MASK),), v, accumulate=True),
     lambda x, v: x.index_put((torch.tensor(MASK),), v, accumulate=True), [(3, 4), ()]),
    ("take", lambda x: x.take(suanli.tensor([[0, -1], [5, 5]])), lambda x: x.take(torch.tensor([[0, -1], [5, 5]])),
     [(2, 3)]),
    ("take_along_dim", lambda x: x.take_along_dim(suanli.tensor([[0], [2]]), 1),
     lambda x: x.take_along_dim(torch.tensor([[0], [2]]), 1), [(2, 3)]),
    ("take_along_dim_bcast", lambda x: suanli.take_along_dim(x, suanli.tensor([[[2, -1]]]), -1),
     lambda x: torch.take_along_dim(x, torch.tensor([[[2, -1]]]), -1), [(2, 3, 4)]),
    ("take_along_dim_none", lambda x: x.take_along_dim(suanli.tensor([5, 0, 5])),
     lambda x: x.take_along_dim(torch.tensor([5, 0, 5])), [(2, 3)]),
    ("masked_fill", lambda x: x.masked_fill(suanli.tensor(MASK), 0.5), lambda x: x.masked_fill(torch.tensor(MASK), 0.5),
     [(3, 4)]),
    ("masked_fill_bcast", lambda x: suanli.masked_fill(x, suanli.tensor(MASK3), -1.0),
     lambda x: torch.masked_fill(x, torch.tensor(MASK3), -1.0), [(2, 3, 4)]),
    ("masked_fill_bcast_mask", lambda x: x.masked_fill(suanli.tensor(MASK), 2.0),
     lambda x: x.masked_fill(torch.tensor(MASK), 2.0), [(4,)]),
    ("masked_fill_tensor", lambda x, v: x.masked_fill(suanli.tensor(MASK), v),
     lambda x, v: x.masked_fill(torch.tensor(MASK), v), [(3, 4), ()]),
    ("masked_select", lambda x: x.masked_select(suanli.tensor(MASK)), lambda x: x.masked_select(torch.tensor(MASK)),
     [(3, 4)]),
    ("masked_select_bcast", lambda x: suanli.masked_select(x, suanli.tensor(MASK3)),
     lambda x: torch.masked_select(x, torch.tensor(MASK3)), [(2, 1, 4)]),
]
OP_IDS = [c[0] for c in OP_CASES]


# torch's own scatter/scatter_add backward rejects a src larger than the index ("invalid gradient
# at index 1"): for those only values are compared with torch; finite differences check our grads.
TORCH_NO_GRAD = {"scatter_add_big_src", "scatter", "scatter_dim1"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", OP_CASES, ids=OP_IDS)
def test_ops_match_torch(case, dtype):
    name, fn, tfn, shapes = case
    check_torch(fn, tfn, [rand(s, dtype, seed=i) for i, s in enumerate(shapes)], grad=name not in TORCH_NO_GRAD)


@pytest.mark.parametrize("case", OP_CASES, ids=OP_IDS)
def test_ops_fd_and_jvp(case):
    _, fn, _, shapes = case
    arrays = [rand(s, seed=i) for i, s in enumerate(shapes)]
    check_fd(fn, arrays)
    check_jvp_vjp(fn, arrays)


def test_inplace_variants():
    x = suanli.zeros(3)
    x.index_put_((suanli.tensor([0, 0]),), suanli.tensor(1.0), accumulate=True)
    x.scatter_(0, suanli.tensor([2]), suanli.tensor([5.0]))
    x.index_add_(0, suanli.tensor([1]), suanli.tensor([3.0]))
    x.masked_fill_(suanli.tensor([False, False, True]), 9.0)
    x.scatter_add_(0, suanli.tensor([1, 1]), suanli.tensor([1.0, 1.0]))
    x.index_fill_(0, suanli.tensor([0]), -1.0)
    assert x.tolist() == [-1.0, 5.0, 9.0]
    assert x._version == 6


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int64", "int8", "bool"])
def test_other_dtypes(dtype):
    a = rand((3, 4), dtype, low=-3, high=3)
    ta = torch.tensor(a.astype(np.float32)).to(torch.bfloat16) if dtype == "bfloat16" else torch.tensor(a)
    x = suanli.tensor(a)
    i = np.array([[0, 2, 1, 0]])
    ops = [
        (lambda v: v[[0, 0, 2], 1:], lambda v: v[[0, 0, 2], 1:]),
        (lambda v: v[suanli.tensor(MASK)], lambda v: v[torch.tensor(MASK)]),
        (lambda v: v.gather(0, suanli.tensor(i)), lambda v: v.gather(0, torch.tensor(i))),
        (lambda v: v.scatter_add(0, suanli.tensor(i), v[:1]), lambda v: v.scatter_add(0, torch.tensor(i), v[:1])),
        (lambda v: v.masked_fill(suanli.tensor(MASK), 1), lambda v: v.masked_fill(torch.tensor(MASK), 1)),
        (lambda v: v.index_put((suanli.tensor([1, 1]),), v[0], accumulate=True),
         lambda v: v.index_put((torch.tensor([1, 1]),), v[0], accumulate=True)),
    ]
    for mine, ref in ops:
        out, expected = mine(x), ref(ta)
        assert str(out.dtype) == str(expected.dtype).replace("torch.", "")
        np.testing.assert_allclose(out.numpy().astype(np.float64), expected.double().numpy(), rtol=1e-2)


def test_index_tensor_is_copied():
    x = suanli.tensor([1.0, 2.0, 3.0], requires_grad=True)
    i = suanli.tensor([0, 1])
    y = x[i]
    i.numpy()[:] = 2                   # changing the index afterwards must not change the gradient
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0]


def test_index_put_none_means_whole_dim():
    x = suanli.zeros(2, 3)
    out = x.index_put((None, suanli.tensor([1])), suanli.tensor(4.0))
    assert out.tolist() == [[0.0, 4.0, 0.0], [0.0, 4.0, 0.0]]     # (torch's Python API refuses None here)


def test_nonzero_and_argwhere():
    a = np.array([[0, 1.5, 0], [2, 0, -1]])
    for t in [a, a[0], np.array(3.0), np.zeros((0, 2))]:
        x, tt = suanli.tensor(t), torch.tensor(t)
        np.testing.assert_array_equal(x.nonzero().numpy(), tt.nonzero().numpy())
        for mine, ref in zip(suanli.nonzero(x, as_tuple=True), torch.nonzero(tt, as_tuple=True)):
            np.testing.assert_array_equal(mine.numpy(), ref.numpy())
        assert suanli.argwhere(x).dtype == suanli.int64
    np.testing.assert_array_equal(suanli.argwhere(suanli.tensor(a)).numpy(), torch.argwhere(torch.tensor(a)).numpy())


def test_gather_backward_is_scatter_add_with_accumulation():
    x = suanli.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    x.gather(1, suanli.tensor([[1, 1, 1], [0, 1, 0]])).sum().backward()
    assert x.grad.tolist() == [[0.0, 3.0], [2.0, 1.0]]


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), st.data())
def test_getitem_random_keys_match_numpy(shape, data):
    a = rand(shape, seed=9)
    key = []
    length = data.draw(st.integers(1, 3))     # index lists must broadcast together
    for n in shape:
        kind = data.draw(st.sampled_from(["int", "slice", "list"]))
        if kind == "int":
            key.append(data.draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            key.append(slice(data.draw(st.integers(-n - 1, n + 1)), data.draw(st.integers(-n - 1, n + 1)),
                             data.draw(st.integers(1, 3))))
        else:
            key.append(data.draw(st.lists(st.integers(-n, n - 1), min_size=length, max_size=length)))
    key = tuple(key)
    expected = torch.tensor(a)[key].numpy()
    np.testing.assert_array_equal(suanli.tensor(a)[key].numpy(), expected)
    expected_set = torch.tensor(a)
    expected_set[key] = 7.0
    out = suanli.ops.indexing.setitem(suanli.tensor(a), key, 7.0)
    np.testing.assert_array_equal(out.numpy(), expected_set.numpy())


# ---------------------------------------------------------------------------------- errors
def _raises(exc, match, fn):
    with pytest.raises(exc, match=match):
        fn()


def test_index_errors():
    x = suanli.zeros(3, 4)
    _raises(IndexError, r"getitem: index 3 is out of bounds for dimension 0 with size 3", lambda: x[3])
    _raises(IndexError, r"getitem: index -5 is out of bounds for dimension 1 with size 4", lambda: x[0, -5])
    _raises(IndexError, r"getitem: index 7 is out of bounds for dimension 1 with size 4", lambda: x[:, [0, 7]])
    _raises(IndexError, r"setitem: index 4 is out of bounds for dimension 0 with size 3",
            lambda: x.__setitem__([4], 1.0))
    _raises(TypeError, r"tensors used as indices must be long, int, byte or bool",
            lambda: x[suanli.tensor([0.0, 1.0])])
    _raises(IndexError, r"tensors used as indices must be long, int, byte or bool",
            lambda: x[suanli.tensor([0.0, 1.0])])
    _raises(TypeError, r"valid indices \(got float\)", lambda: x[1.0])
    _raises(IndexError, r"too many indices for tensor of dimension 2", lambda: x[0, 0, 0])
    _raises(IndexError, r"single ellipsis", lambda: x[..., ...])
    _raises(ValueError, r"(?s)step must be greater than zero.*flip", lambda: x[::-1])
    _raises(IndexError, r"the shape of the mask \[4\] at index 0 does not match the shape of the indexed tensor \[3, 4\]",
            lambda: x[suanli.tensor([True, False, True, False])])
    _raises(IndexError, r"(?s)indexing tensors could not be broadcast.*\(2,\), \(3,\)", lambda: x[[0, 1], [0, 1, 2]])
    _raises(ValueError, r"(?s)setitem: shape mismatch.*broadcastable to \(4,\)",
            lambda: x.__setitem__(0, suanli.zeros(3)))


def test_op_errors():
    x = suanli.zeros(3, 4)
    _raises(IndexError, r"gather: index 3 is out of bounds for dimension 0 with size 3",
            lambda: x.gather(0, suanli.tensor([[3]])))
    _raises(IndexError, r"gather: index -1 is out of bounds", lambda: x.gather(0, suanli.tensor([[-1]])))
    _raises(TypeError, r"gather: index tensors must be integer", lambda: x.gather(0, suanli.tensor([[0.0]])))
    _raises(ValueError, r"(?s)gather: index \(and src\) must have as many dims.*input \(3, 4\), index \(2,\)",
            lambda: x.gather(0, suanli.tensor([0, 1])))
    _raises(ValueError, r"(?s)gather: index.size\(d\) must be <= input.size\(d\)",
            lambda: x.gather(0, suanli.zeros(1, 5, dtype=suanli.int64)))
    _raises(ValueError, r"scatter_add: index.size\(d\) must be <= src.size\(d\)",
            lambda: x.scatter_add(0, suanli.zeros(2, 2, dtype=suanli.int64), suanli.zeros(1, 2)))
    _raises(IndexError, r"index_select: index 4 is out of bounds for dimension 1 with size 4",
            lambda: x.index_select(1, suanli.tensor([4])))
    _raises(IndexError, r"index_select: index must be a 0-d or 1-d", lambda: x.index_select(1, suanli.tensor([[0]])))
    _raises(TypeError, r"masked_fill: only supports boolean masks", lambda: x.masked_fill(suanli.tensor([1, 0, 1, 0]), 1.0))
    _raises(ValueError, r"masked_fill: only supports a 0-dimensional value tensor",
            lambda: x.masked_fill(suanli.tensor([True, False, True, False]), suanli.zeros(4)))
    _raises(ValueError, r"(?s)index_add: source must match.*\(3, 2\)",
            lambda: x.index_add(1, suanli.tensor([0, 1]), suanli.zeros(3, 3)))
    _raises(ValueError, r"scatter: reduce='multiply' is not supported",
            lambda: x.scatter(0, suanli.zeros(1, 1, dtype=suanli.int64), 1.0, reduce="multiply"))


# ------------------------------------------------------------- second order through products
G34 = np.array([[3, 0, 0, 1], [2, 2, 1, 0], [0, 1, 3, 3]])
NONLINEAR = [
    ("index_product", lambda x: x[[0, 0, 2]] * x[[1, 1, 0]], [(3, 4)]),
    ("basic_product", lambda x: x[1:, ::2] * x[:2, 1::2], [(3, 4)]),
    ("gather_product", lambda x: x.gather(1, suanli.tensor(G34)) * x, [(3, 4)]),
    ("setitem_product", lambda x, v: suanli.ops.indexing.setitem(x, (slice(None), [0, 2]), v * v) * x,
     [(3, 4), (3, 2)]),
    ("masked_fill_product", lambda x, v: x.masked_fill(suanli.tensor(MASK), v) * x * v, [(3, 4), ()]),
    ("scatter_add_product", lambda x, s: x.scatter_add(0, suanli.tensor(IDX), s * s) * x, [(3, 4), (2, 4)]),
    ("scatter_product", lambda x, s: x.scatter(0, suanli.tensor(PERM0[:1]), s * x[:1]) * x, [(3, 4), (1, 4)]),
    ("index_add_product", lambda x, s: x.index_add(0, suanli.tensor(I1), s * x) * x, [(3, 4), (3, 4)]),
    ("index_put_acc_product", lambda x, v: x.index_put((suanli.tensor([1, 1]),), v * x[0], accumulate=True) * v,
     [(3, 4), (4,)]),
]


@pytest.mark.parametrize("case", NONLINEAR, ids=[c[0] for c in NONLINEAR])
def test_double_backward_through_products(case):
    _, fn, shapes = case
    arrays = [rand(s, seed=i) for i, s in enumerate(shapes)]
    check_fd(fn, arrays)
    check_jvp_vjp(fn, arrays)


def test_accumulating_many_rows_matches_add_at_and_torch():
    # >= 64 rows take the sort + reduceat path (embedding / index_select gradients)
    gen = np.random.default_rng(0)
    idx = gen.integers(-10, 10, 300)
    values = gen.standard_normal((300, 3))
    out = suanli.zeros(10, 3, dtype=suanli.float64).index_put((suanli.tensor(idx),), suanli.tensor(values),
                                                             accumulate=True)
    ref = np.zeros((10, 3))
    np.add.at(ref, idx, values)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)
    w = suanli.tensor(gen.standard_normal((7, 4)), requires_grad=True)
    wt = torch.tensor(w.detach().numpy(), requires_grad=True)
    rows = gen.integers(0, 7, 200)
    g = gen.standard_normal((200, 4))
    suanli.index_select(w, 0, suanli.tensor(rows)).backward(suanli.tensor(g))
    torch.index_select(wt, 0, torch.tensor(rows)).backward(torch.tensor(g))
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-12, atol=1e-12)
