"""Reductions against torch (values, dtypes, gradients), finite differences, forward vs reverse."""
import numpy as np
import pytest
import torch

import suanli
from oracles import check_fd, check_jvp_vjp, check_torch, rand

SHAPES_DIMS = [((3, 4), None), ((3, 4), 0), ((3, 4), -1), ((2, 3, 4), (0, 2)), ((5,), 0), ((1, 3), 0),
               ((2, 1, 3), 1), ((), None)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape,dim", SHAPES_DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean", "amax", "amin", "logsumexp", "prod"])
def test_reductions_match_torch(op, shape, dim, keepdim, dtype):
    if op == "logsumexp" and dim is None:
        dim = tuple(range(len(shape)))
    if op in ("amax", "amin") and dim is None:
        dim = ()
    if op == "prod" and dim is not None and not isinstance(dim, int):
        pytest.skip("torch.prod reduces one dim or all")
    a = rand(shape, dtype, seed=len(op) + len(shape), low=0.5, high=1.5)

    def call(lib, x):
        fn = getattr(lib, op)
        return fn(x) if dim is None else fn(x, dim, keepdim=keepdim)

    check_torch(lambda x: call(suanli, x), lambda x: call(torch, x), [a])


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2)])
@pytest.mark.parametrize("correction", [0, 1, 2])
@pytest.mark.parametrize("dim", [None, 0, -1])
def test_var_std_match_torch(shape, correction, dim):
    n = int(np.prod(shape)) if dim is None else shape[dim]
    if correction >= n:
        pytest.skip("degenerate (N - correction <= 0): torch gives inf gradients, we give nan")
    a = rand(shape, "float64", seed=3)
    for op in ("var", "std"):
        check_torch(lambda x: getattr(suanli, op)(x, dim, correction=correction),
                    lambda x: getattr(torch, op)(x, dim, correction=correction), [a])
    check_torch(lambda x: x.var(dim, unbiased=False, keepdim=True),
                lambda x: x.var(dim, unbiased=False, keepdim=True), [a])


def test_sum_dtypes_follow_torch():
    for dt in ("int32", "uint8", "bool", "int8"):
        a = rand((3, 2), dt, low=0, high=5)
        check_torch(lambda x: x.sum(0), lambda x: x.sum(0), [a], grad=False)
        check_torch(lambda x: x.cumsum(0), lambda x: x.cumsum(0), [a], grad=False)
        check_torch(lambda x: x.prod(), lambda x: x.prod(), [a], grad=False)
    check_torch(lambda x: x.sum(dtype=suanli.float64), lambda x: x.sum(dtype=torch.float64),
                [rand((3,), "float32")])


def test_mean_of_int_is_a_clear_error():
    with pytest.raises(TypeError, match="mean: .*not floating point"):
        suanli.tensor([1, 2]).mean()


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_with_dim_values_indices_and_grad(dim, keepdim):
    a = rand((4, 5), "float64", seed=7)
    for op in ("max", "min"):
        check_torch(lambda x: tuple(getattr(x, op)(dim, keepdim)), lambda x: tuple(getattr(x, op)(dim, keepdim)), [a])
    check_torch(lambda x: x.argmax(dim, keepdim), lambda x: x.argmax(dim, keepdim), [a], grad=False)
    check_torch(lambda x: x.argmin(dim), lambda x: x.argmin(dim), [a], grad=False)


def test_ties_split_gradient_like_torch():
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    check_torch(lambda x: x.max(), lambda x: x.max(), [a])
    check_torch(lambda x: x.amax(1), lambda x: x.amax(1), [a])
    check_torch(lambda x: x.amin(0), lambda x: x.amin(0), [a])
    check_torch(lambda x: x.max(1).values, lambda x: x.max(1).values, [a])   # goes to one index
    check_torch(lambda x: x.argmax(), lambda x: x.argmax(), [a], grad=False)


@pytest.mark.parametrize("zeros", [[], [1], [1, 3], [0, 1, 2, 3]])
def test_prod_gradient_with_zeros_matches_torch(zeros):
    a = rand((4,), "float64", seed=1, low=0.5, high=2)
    a[zeros] = 0.0
    check_torch(lambda x: x.prod(), lambda x: x.prod(), [a])
    b = np.stack([a, a[::-1]])
    check_torch(lambda x: x.prod(1), lambda x: x.prod(1), [b])


@pytest.mark.parametrize("p", [2, "fro", 1, 3, 0.5, float("inf"), float("-inf"), 0])
@pytest.mark.parametrize("dim", [None, 1])
def test_norm_matches_torch(p, dim):
    a = rand((3, 4), "float64", seed=11, away_from=[0])
    check_torch(lambda x: suanli.norm(x, p, dim), lambda x: torch.norm(x, p, dim), [a], grad=p != 0)


def test_norm_gradient_at_zero_is_zero_like_torch():
    check_torch(lambda x: x.norm(), lambda x: x.norm(), [np.zeros(3)])
    check_torch(lambda x: x.norm(dim=1), lambda x: x.norm(dim=1), [np.zeros((2, 3))])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumsum_matches_torch(dim):
    check_torch(lambda x: x.cumsum(dim), lambda x: x.cumsum(dim), [rand((3, 4), "float64")])
    check_torch(lambda x: x.cumsum(dim), lambda x: x.cumsum(dim), [rand((3, 4), "float32")])


def test_all_any_count_nonzero():
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    for fn in (lambda x: x.all(), lambda x: x.any(1), lambda x: x.all(0, keepdim=True),
               lambda x: torch.count_nonzero(x) if isinstance(x, torch.Tensor) else suanli.count_nonzero(x)):
        check_torch(fn, fn, [a], grad=False)


def test_empty_reductions():
    e = np.zeros((0, 3))
    check_torch(lambda x: x.sum(0), lambda x: x.sum(0), [e])
    check_torch(lambda x: x.sum(), lambda x: x.sum(), [e])
    check_torch(lambda x: x.prod(0), lambda x: x.prod(0), [e], grad=False)
    with pytest.raises(ValueError, match="amax: cannot reduce over a zero-size dimension"):
        suanli.tensor(e).amax(0)


FD_CASES = [
    ("sum", lambda x: x.sum(1)), ("mean", lambda x: x.mean((0, 1))), ("var", lambda x: x.var(0)),
    ("std", lambda x: x.std(1)), ("amax", lambda x: x.amax(1)), ("max_dim", lambda x: x.max(0).values),
    ("logsumexp", lambda x: x.logsumexp(1)), ("prod", lambda x: x.prod(1)), ("cumsum", lambda x: x.cumsum(1)),
    ("norm2", lambda x: x.norm(dim=1)), ("norm3", lambda x: x.norm(3, dim=0)), ("norm1", lambda x: x.norm(1)),
]


@pytest.mark.parametrize("name,fn", FD_CASES, ids=[c[0] for c in FD_CASES])
def test_finite_differences_and_double_backward(name, fn):
    a = rand((3, 4), "float64", seed=5, low=0.3, high=2.0)
    check_fd(fn, [a])
    check_jvp_vjp(fn, [a])
