"""matmul (all rank combinations, broadcasting) and einsum against torch; FD; errors; no hidden copies."""
import numpy as np
import pytest
import torch

import suanli
from oracles import check_fd, check_jvp_vjp, check_torch, rand

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
