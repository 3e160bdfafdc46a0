"""matmul (all rank combinations, broadcasting) and einsum against torch; FD; errors; no hidden copies.

The second half widens the coverage: more rank/broadcast combinations (and a hypothesis property),
int and half dtypes, a spy proving matmul hands NumPy the stored arrays (and transposed views in
backward), double backward, mm/bmm/mv/dot/outer/tensordot, einsum with ellipsis, implicit output,
size-1 broadcasting and diagonals (with gradients), and error messages."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import suanli
from oracles import check_fd, check_jvp_vjp, check_torch, rand
from suanli import DTypeError, ShapeError
from suanli.ops import linalg

MATMUL_SHAPES = [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
                 ((2, 3), (5, 3, 4)), ((2, 1, 3, 4), (5, 4, 2)), ((3,), (2, 3, 4)), ((2, 2, 3), (3,)),
                 ((1, 3), (3, 1)), ((0, 3), (3, 2)), ((2, 0), (0, 3))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_matches_torch(sa, sb, dtype):
    a, b = rand(sa, dtype, seed=1), rand(sb, dtype, seed=2)
    check_torch(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])


@pytest.mark.parametrize("sa,sb", [s for s in MATMUL_SHAPES if 0 not in s[0] + s[1]])
def test_matmul_finite_differences(sa, sb):
    a, b = rand(sa, seed=1), rand(sb, seed=2)
    check_fd(lambda x, y: x @ y, [a, b])
    check_jvp_vjp(lambda x, y: x @ y, [a, b])


def test_matmul_variants_match_torch():
    a, b, v = rand((3, 4)), rand((4, 2)), rand((4,))
    check_torch(lambda x, y: x.mm(y), lambda x, y: x.mm(y), [a, b])
    check_torch(lambda x, y: x.mv(y), lambda x, y: x.mv(y), [a, v])
    check_torch(lambda x, y: x.dot(y), lambda x, y: x.dot(y), [v, v])
    check_torch(lambda x, y: suanli.outer(x, y), lambda x, y: torch.outer(x, y), [v, rand((3,))])
    check_torch(lambda x, y: x.bmm(y), lambda x, y: x.bmm(y), [rand((2, 3, 4)), rand((2, 4, 5))])
    check_torch(lambda x, y: suanli.tensordot(x, y, 1), lambda x, y: torch.tensordot(x, y, 1), [a, b])
    check_torch(lambda x, y: suanli.tensordot(x, y, ([0], [1])), lambda x, y: torch.tensordot(x, y, ([0], [1])),
                [a, rand((2, 3))])


def test_matmul_int_and_mixed_dtypes():
    a, b = rand((2, 3), "int64", low=-3, high=3), rand((3, 2), "int64", low=-3, high=3)
    check_torch(lambda x, y: x @ y, lambda x, y: x @ y, [a, b], grad=False)
    check_torch(lambda x, y: x @ y, lambda x, y: x @ y, [rand((2, 3), "float16"), rand((3, 2), "float16")],
                grad=False)


def test_matmul_float32_stays_float32_and_reads_inputs_in_place():
    x = suanli.randn(64, 32)
    w = suanli.randn(32, 16)
    out = x @ w
    assert out.dtype == suanli.float32
    np.testing.assert_allclose(out.numpy(), x.numpy() @ w.numpy(), rtol=1e-6)
    # the transposed operand of the backward is a view, not a copy
    xt = x.mT
    assert np.shares_memory(xt.numpy(), x.numpy())


def test_matmul_errors_name_op_and_shapes():
    with pytest.raises(ValueError, match=r"matmul: the inner dimensions differ[\s\S]*\(2, 3\) @ \(4, 5\)"):
        suanli.ones(2, 3) @ suanli.ones(4, 5)
    with pytest.raises(ValueError, match=r"matmul: shapes cannot be broadcast[\s\S]*\(2,\) vs \(3,\)"):
        suanli.ones(2, 1, 3) @ suanli.ones(3, 3, 4)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        suanli.tensor(1.0) @ suanli.ones(2)
    with pytest.raises(ValueError, match="mm: mat2 must be 2-D"):
        suanli.ones(2, 3).mm(suanli.ones(3))


EINSUM_CASES = [("ij,jk->ik", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
                ("i,j->ij", [(3,), (4,)]), ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
                ("ij->", [(3, 4)]), ("ij->j", [(3, 4)]), ("ij,ij->i", [(3, 4), (3, 4)]),
                ("...ij,jk", [(2, 3, 4), (4, 2)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
                ("ij,k->ijk", [(2, 3), (4,)]), ("ii->i", [(3, 3)])]


@pytest.mark.parametrize("eq,shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_einsum_matches_torch(eq, shapes):
    arrays = [rand(s, seed=i) for i, s in enumerate(shapes)]
    grad = "ii" not in eq
    check_torch(lambda *xs: suanli.einsum(eq, *xs), lambda *xs: torch.einsum(eq, *xs), arrays, grad=grad)
    if grad:
        check_fd(lambda *xs: suanli.einsum(eq, *xs), arrays)
        check_jvp_vjp(lambda *xs: suanli.einsum(eq, *xs), arrays)


def test_einsum_errors():
    with pytest.raises(ValueError, match="einsum: the equation names 2 operands but 1"):
        suanli.einsum("ij,jk->ik", suanli.ones(2, 3))
    with pytest.raises(ValueError, match="subscripts 'ij' do not match an operand of 3 dims"):
        suanli.einsum("ij->i", suanli.ones(2, 3, 4))
    with pytest.raises(ValueError, match="einsum: subscript 'j' has sizes 3 and 4"):
        suanli.einsum("ij,jk->ik", suanli.ones(2, 3), suanli.ones(4, 5))


# ==================================================================================================
# wider coverage
# ==================================================================================================
S = suanli

# more rank combinations (with MATMUL_SHAPES above: every case torch.matmul accepts)
MORE_MATMUL_SHAPES = [
    ((3,), (5, 3, 2)),            # 1-d @ batched
    ((5, 2, 3), (3,)),            # batched @ 1-d
    ((4, 2, 3), (3, 5)),          # batched @ 2-d (weight): batch folded in backward
    ((2, 3), (4, 3, 5)),          # 2-d @ batched
    ((2, 1, 3, 4), (5, 4, 2)),    # broadcast batch dims
    ((1, 2, 3), (4, 1, 3, 2)),
    ((6, 1, 2), (6, 2, 1)),
    ((0, 2, 3), (3, 4)),          # empty batch
    ((2, 3, 0), (0, 4)),          # empty inner dim, batched @ 2-d (folded backward)
    ((2, 3, 4), (4, 0)),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sa,sb", MORE_MATMUL_SHAPES)
def test_matmul_vs_torch(dtype, sa, sb):
    a, b = rand(sa, dtype, seed=1), rand(sb, dtype, seed=2)
    check_torch(S.matmul, torch.matmul, [a, b])
    check_torch(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])


@pytest.mark.parametrize("sa,sb", [s for s in MORE_MATMUL_SHAPES if 0 not in s[0] + s[1]])
def test_matmul_fd_more_shapes(sa, sb):
    a, b = rand(sa, seed=1), rand(sb, seed=2)
    check_fd(S.matmul, [a, b])
    check_fd(lambda x, y: S.matmul(x, y), [a, b], nondiff=[1], order=1)
    check_jvp_vjp(S.matmul, [a, b])


@pytest.mark.parametrize("dtype", ["int64", "int32", "float16", "bfloat16"])
def test_matmul_other_dtypes(dtype):
    a, b = rand((2, 3, 4), dtype, low=-3, high=3, seed=1), rand((4, 2), dtype, low=-3, high=3, seed=2)
    check_torch(S.matmul, torch.matmul, [a, b], grad=dtype.startswith(("float", "bfloat")))


def test_matmul_keeps_float32_and_does_not_copy(monkeypatch):
    a, b = S.randn(64, 32), S.randn(32, 16)
    a.requires_grad_(True)
    b.requires_grad_(True)
    seen = []
    impl = linalg.MATMUL.impl

    def spy(x, y):
        seen.append((x, y))
        return impl(x, y)

    monkeypatch.setattr(linalg.MATMUL, "impl", spy)
    out = a @ b
    assert out.dtype == S.float32
    assert seen[0][0] is a._data and seen[0][1] is b._data          # the stored arrays themselves
    out.backward(S.ones(64, 16))
    # backward: g @ b.T and a.T @ g multiply transposed *views* of the saved inputs
    views = [arr for pair in seen[1:] for arr in pair if arr.base is not None]
    assert any(np.shares_memory(v, b._data) for v in views)
    assert any(np.shares_memory(v, a._data) for v in views)
    assert a.grad.dtype == S.float32 and b.grad.dtype == S.float32
    # a transposed (non-contiguous) operand goes to NumPy as it is, not copied first
    seen.clear()
    S.matmul(b.detach().T, a.detach().T)
    assert np.shares_memory(seen[0][0], b._data) and np.shares_memory(seen[0][1], a._data)


def test_matmul_double_backward_vs_torch():
    a, b = rand((3, 2, 4), seed=1), rand((4, 5), seed=2)
    x, y = S.tensor(a, requires_grad=True), S.tensor(b, requires_grad=True)
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    gx, gy = S.autograd.grad((x @ y).sin().sum(), (x, y), create_graph=True)
    tgx, tgy = torch.autograd.grad((tx @ ty).sin().sum(), (tx, ty), create_graph=True)
    hx, hy = S.autograd.grad((gx * gx).sum() + gy.sum(), (x, y))
    thx, thy = torch.autograd.grad((tgx * tgx).sum() + tgy.sum(), (tx, ty))
    np.testing.assert_allclose(hx.numpy(), thx.numpy(), rtol=1e-10)
    np.testing.assert_allclose(hy.numpy(), thy.numpy(), rtol=1e-10)


@given(st.integers(0, 3), st.integers(0, 3), st.data())
def test_matmul_broadcasting_property(nda, ndb, data):
    """Random batch ranks and size-1 dims: shape, values and gradients agree with torch."""
    batch = data.draw(st.lists(st.integers(1, 3), min_size=3, max_size=3))
    ba = tuple(data.draw(st.sampled_from([1, n])) for n in batch[3 - nda:])
    bb = tuple(data.draw(st.sampled_from([1, n])) for n in batch[3 - ndb:])
    sa = ba + (2, 3) if nda or data.draw(st.booleans()) else (3,)
    sb = bb + (3, 2) if ndb or data.draw(st.booleans()) else (3,)
    check_torch(S.matmul, torch.matmul, [rand(sa, seed=1), rand(sb, seed=2)])


def test_rmatmul_and_methods():
    a, b = rand((2, 3)), rand((3, 4), seed=2)
    out = S.tensor(b).__rmatmul__(S.tensor(a))
    np.testing.assert_allclose(out.numpy(), a @ b)
    check_torch(lambda x, y: x.mm(y), lambda x, y: x.mm(y), [a, b])
    check_torch(lambda x, y: x.matmul(y), lambda x, y: x.matmul(y), [a, b])


def test_mm_bmm_mv_dot_outer_vs_torch():
    check_torch(S.mm, torch.mm, [rand((2, 3)), rand((3, 4), seed=2)])
    check_torch(S.bmm, torch.bmm, [rand((5, 2, 3)), rand((5, 3, 4), seed=2)])
    check_torch(S.mv, torch.mv, [rand((2, 3)), rand((3,), seed=2)])
    check_torch(S.dot, torch.dot, [rand((3,)), rand((3,), seed=2)])
    check_torch(S.outer, torch.outer, [rand((3,)), rand((4,), seed=2)])
    check_torch(S.outer, torch.outer, [rand((3,), "int64"), rand((4,), "float32", seed=2)])
    check_fd(S.bmm, [rand((2, 2, 3)), rand((2, 3, 2), seed=2)])
    check_fd(S.outer, [rand((3,)), rand((2,), seed=2)])


def test_matmul_error_messages():
    with pytest.raises(ShapeError, match=r"(?s)matmul: the inner dimensions differ.*Actual: \(2, 3\) @ \(4, 5\)"):
        S.ones(2, 3) @ S.ones(4, 5)
    with pytest.raises(ShapeError, match=r"(?s)Expect: a.shape\[-1\] == b.shape\[0\].*\(2, 3\) @ \(4,\)"):
        S.matmul(S.ones(2, 3), S.ones(4))
    with pytest.raises(ShapeError, match=r"(?s)matmul: shapes cannot be broadcast.*\(2, 2, 3\) @ \(3, 3, 4\)"):
        S.ones(2, 2, 3) @ S.ones(3, 3, 4)
    with pytest.raises(ShapeError, match="matmul: both arguments need at least 1 dimension"):
        S.matmul(S.tensor(2.0), S.ones(2))
    with pytest.raises(DTypeError, match=r"(?s)matmul: operands must have the same dtype.*float32.*float64.*help"):
        S.ones(2, 3) @ S.ones(3, dtype=S.float64)
    with pytest.raises(DTypeError, match="matmul: does not support bool"):
        S.ones(2, 2).bool() @ S.ones(2, 2).bool()
    with pytest.raises(ShapeError, match=r"(?s)mm: input must be 2-D.*input \(2, 3, 4\), mat2 \(4, 2\)"):
        S.mm(S.ones(2, 3, 4), S.ones(4, 2))
    with pytest.raises(ShapeError, match="bmm: batch sizes must match"):
        S.bmm(S.ones(2, 2, 3), S.ones(3, 3, 4))
    with pytest.raises(ShapeError, match="mv: vec must be 1-D"):
        S.mv(S.ones(2, 3), S.ones(3, 1))
    with pytest.raises(ShapeError, match="dot: the two vectors must have the same length"):
        S.dot(S.ones(2), S.ones(3))
    with pytest.raises(ShapeError, match="outer: expects two 1-d tensors"):
        S.outer(S.ones(2, 1), S.ones(3))


# ------------------------------------------------------------------------------------ einsum
MORE_EINSUM_CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("ij->", [(2, 3)]),
    ("ij->ji", [(2, 3)]),
    ("ij,jk", [(2, 3), (3, 4)]),                 # implicit output
    ("ba,a", [(2, 3), (3,)]),
    ("...ij,...jk->...ik", [(2, 1, 2, 3), (4, 3, 2)]),
    ("...ij->...ji", [(2, 3, 4)]),
    ("...ij->ij", [(4, 2, 3)]),                  # ellipsis dims summed out
    ("i,i->", [(4,), (4,)]),
    ("ij,ij->i", [(2, 1), (2, 3)]),              # size-1 broadcast of a labelled dim
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),  # three operands
    ("ijk->k", [(2, 3, 4)]),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("eq,shapes", MORE_EINSUM_CASES)
def test_einsum_vs_torch(dtype, eq, shapes):
    arrays = [rand(s, dtype, seed=i) for i, s in enumerate(shapes)]
    check_torch(lambda *xs: S.einsum(eq, *xs), lambda *xs: torch.einsum(eq, *xs), arrays)


@pytest.mark.parametrize("eq,shapes", MORE_EINSUM_CASES)
def test_einsum_finite_differences(eq, shapes):
    arrays = [rand(s, seed=i) for i, s in enumerate(shapes)]
    check_fd(lambda *xs: S.einsum(eq, *xs), arrays)
    check_jvp_vjp(lambda *xs: S.einsum(eq, *xs), arrays)


@pytest.mark.parametrize("eq,shapes", [("ii->i", [(3, 3)]), ("ii->", [(3, 3)]), ("iij,j->i", [(3, 3, 2), (2,)]),
                                       ("bii->bi", [(2, 3, 3)])])
def test_einsum_diagonals(eq, shapes):
    """Repeated letters in one term (diagonals): forward, and gradients via identity matrices."""
    arrays = [rand(s, seed=i) for i, s in enumerate(shapes)]
    check_torch(lambda *xs: S.einsum(eq, *xs), lambda *xs: torch.einsum(eq, *xs), arrays)
    check_fd(lambda *xs: S.einsum(eq, *xs), arrays)


def test_einsum_forms_and_result_ownership():
    a = S.tensor(rand((3, 3)))
    np.testing.assert_allclose(S.einsum("ij,jk", [a, a]).numpy(), a.numpy() @ a.numpy())
    d = S.einsum("ii->i", a)
    assert not np.shares_memory(d.numpy(), a.numpy())      # NumPy returns a view; we copy
    assert S.einsum("i j , j k -> i k", a, a).shape == (3, 3)
    assert S.einsum("ij,jk->ik", S.ones(2, 3), S.ones(3, 4)).dtype == S.float32
    check_torch(lambda x, y: S.einsum("ij,jk->ik", x, y), lambda x, y: torch.einsum("ij,jk->ik", x, y),
                [rand((2, 3), "float16"), rand((3, 2), "float16", seed=1)])


def test_einsum_error_messages():
    a = S.ones(2, 3)
    with pytest.raises(ShapeError, match=r"einsum: the equation names 1 operands but 2 were given"):
        S.einsum("ij->i", a, a)
    with pytest.raises(ShapeError, match=r"(?s)einsum: subscript 'j' has sizes 3 and 4.*operand 0: 3, operand 1: 4"):
        S.einsum("ij,jk->ik", a, S.ones(4, 2))
    with pytest.raises(ShapeError, match=r"einsum: subscripts 'i' do not match an operand of 2 dims"):
        S.einsum("i->i", a)
    with pytest.raises(ShapeError, match=r"einsum: subscripts must be letters"):
        S.einsum("i1,j->", a, a)
    with pytest.raises(ShapeError, match=r"einsum: every output letter must appear in an input"):
        S.einsum("ij->k", a)
    with pytest.raises(ShapeError, match=r"einsum: an output letter appears more than once"):
        S.einsum("ij->ii", a)
    with pytest.raises(DTypeError, match=r"einsum: operands must have the same dtype"):
        S.einsum("ij,ij->", a, S.ones(2, 3, dtype=S.float64))
    with pytest.raises(ShapeError, match=r"letter 'i' repeated in one term needs equal sizes"):
        S.einsum("ii->i", a)


def test_inner_vdot_vs_torch():
    check_torch(S.inner, torch.inner, [rand((2, 3)), rand((4, 5, 3), seed=2)])
    check_torch(S.inner, torch.inner, [rand((3,)), rand((3,), seed=2)])
    check_torch(S.inner, torch.inner, [rand(()), rand((2, 3), seed=2)])
    check_torch(S.vdot, torch.vdot, [rand((3,)), rand((3,), seed=2)])
    check_fd(S.inner, [rand((2, 3)), rand((4, 3), seed=2)])


def test_tensordot_vs_torch():
    a, b = rand((2, 3, 4)), rand((3, 4, 5), seed=2)
    check_torch(lambda x, y: S.tensordot(x, y), lambda x, y: torch.tensordot(x, y), [a, b])
    check_torch(lambda x, y: S.tensordot(x, y, 0), lambda x, y: torch.tensordot(x, y, 0),
                [rand((2,)), rand((3,), seed=2)])
    check_torch(lambda x, y: S.tensordot(x, y, ([1, 0], [0, 2])), lambda x, y: torch.tensordot(x, y, ([1, 0], [0, 2])),
                [rand((3, 2, 4)), rand((2, 5, 3), seed=2)])
    check_fd(lambda x, y: S.tensordot(x, y, 1), [rand((2, 3)), rand((3, 2), seed=2)])
    with pytest.raises(ShapeError, match=r"tensordot: contracted dimensions must have the same size"):
        S.tensordot(S.ones(2, 3), S.ones(4, 2), 1)
