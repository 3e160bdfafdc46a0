"""Reductions against torch (values, dtypes, gradients), finite differences, forward vs reverse.

The second half widens the coverage: float64 and float32 over keepdim / negative / tuple / size-1 /
empty dims, torch's tie and zero conventions (amax/max ties, prod and cumprod with zeros, std and
norm at zero), double backward with zeros, half precision, and error messages."""
import math

import numpy as np
import pytest
import torch

import suanli
from oracles import check_fd, check_jvp_vjp, check_torch, rand
from suanli import DTypeError, SuanliError

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


# ==================================================================================================
# wider coverage
# ==================================================================================================
S = suanli
FLOATS = ["float64", "float32"]

# (shape, dim, keepdim) cases shared by the dim-reductions; torch accepts each of them
DIM_CASES = [
    ((3, 4), None, False),
    ((3, 4), 0, False),
    ((3, 4), -1, True),
    ((2, 3, 4), (0, 2), False),
    ((2, 3, 4), (-1, 1), True),
    ((2, 1, 4), 1, False),
    ((5,), 0, True),
    ((), None, False),
]
EMPTY_CASES = [((0, 3), 0, False), ((0, 3), 1, True), ((2, 0, 3), (0, 2), False)]


def _kw(dim, keepdim):
    return {} if dim is None else {"dim": dim, "keepdim": keepdim}


# ------------------------------------------------------------------------------------ sum / mean
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,dim,keepdim", DIM_CASES + EMPTY_CASES)
def test_sum_mean_vs_torch(dtype, shape, dim, keepdim):
    a = rand(shape, dtype)
    kw = _kw(dim, keepdim)
    check_torch(lambda x: S.sum(x, **kw), lambda x: torch.sum(x, **kw), [a])
    check_torch(lambda x: x.mean(**kw), lambda x: x.mean(**kw), [a])


@pytest.mark.parametrize("shape,dim,keepdim", DIM_CASES)
def test_sum_mean_finite_differences(shape, dim, keepdim):
    a = rand(shape)
    kw = _kw(dim, keepdim)
    check_fd(lambda x: S.sum(x * x, **kw), [a])
    check_fd(lambda x: S.mean(x * x, **kw), [a])
    check_jvp_vjp(lambda x: S.mean(x, **kw), [a])


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool", "float16", "bfloat16"])
def test_sum_dtypes_like_torch(dtype):
    a = rand((3, 4), dtype, low=0, high=5)
    check_torch(lambda x: x.sum(), lambda x: x.sum(), [a], grad=False)
    check_torch(lambda x: x.sum(1, keepdim=True), lambda x: x.sum(1, keepdim=True), [a], grad=False)
    check_torch(lambda x: S.sum(x, 0, dtype=S.float64), lambda x: torch.sum(x, 0, dtype=torch.float64), [a],
                grad=False)


def test_sum_empty_dim_tuple_means_all():
    a = rand((2, 3))
    check_torch(lambda x: x.sum(dim=()), lambda x: x.sum(dim=()), [a])


def test_mean_dtypes_and_errors():
    check_torch(lambda x: x.mean(dtype=S.float64), lambda x: x.mean(dtype=torch.float64),
                [rand((3,), "int64", low=0, high=9)], grad=False)
    for dt in ("float16", "bfloat16"):
        check_torch(lambda x: x.mean(0), lambda x: x.mean(0), [rand((4, 3), dt)])
    with pytest.raises(DTypeError, match=r"(?s)mean: could not infer.*not floating point.*int64.*help: pass dtype"):
        S.tensor([1, 2]).mean()
    assert math.isnan(S.zeros(0).mean().item())


# ------------------------------------------------------------------------------------ var / std
VAR_CASES = [
    ((3, 4), None, {}),
    ((3, 4), 0, {"correction": 0}),
    ((3, 4), -1, {"correction": 2, "keepdim": True}),
    ((2, 3, 4), (0, 2), {}),
    ((2, 3, 4), 1, {"unbiased": False, "keepdim": True}),
    ((2, 1, 4), 1, {"correction": 0}),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,dim,kw", VAR_CASES)
def test_var_std_vs_torch(dtype, shape, dim, kw):
    a = rand(shape, dtype)
    for name in ("var", "std"):
        check_torch(lambda x: getattr(S, name)(x, dim, **kw), lambda x: getattr(torch, name)(x, dim, **kw), [a])
    check_torch(lambda x: S.var_mean(x, dim, **kw), lambda x: torch.var_mean(x, dim, **kw), [a])
    check_torch(lambda x: S.std_mean(x, dim, **kw), lambda x: torch.std_mean(x, dim, **kw), [a])


@pytest.mark.parametrize("shape,dim,kw", VAR_CASES[:4])
def test_var_std_finite_differences(shape, dim, kw):
    a = rand(shape)
    check_fd(lambda x: S.var(x, dim, **kw), [a])
    check_fd(lambda x: S.std(x, dim, **kw), [a])
    check_jvp_vjp(lambda x: S.std(x, dim, **kw), [a])


def test_var_overloads_match_torch():
    a = rand((3, 4))
    check_torch(lambda x: x.var(True), lambda x: x.var(True), [a])
    check_torch(lambda x: x.var(0, False), lambda x: x.var(0, False), [a])
    check_torch(lambda x: x.std(1, True, True), lambda x: x.std(1, True, True), [a])
    # a single element with correction 1 is NaN, as in torch
    with pytest.warns(UserWarning):   # torch warns about the degrees of freedom
        check_torch(lambda x: x.var(0), lambda x: x.var(0), [rand((1, 3))], grad=False)


def test_std_zero_variance_has_zero_gradient_like_torch():
    a = np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]])
    check_torch(lambda x: x.std(1), lambda x: x.std(1), [a])
    x = S.tensor(a[0], requires_grad=True)
    x.std().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


def test_var_errors():
    with pytest.raises(DTypeError, match=r"var: expects a floating-point input"):
        S.tensor([1, 2, 3]).var()
    with pytest.raises(TypeError, match="either unbiased or correction"):
        S.var(S.ones(3), 0, True, correction=1)


# ------------------------------------------------------------------------------------ prod
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,dim,keepdim", [((3, 4), None, False), ((3, 4), 1, False), ((3, 4), -2, True),
                                               ((2, 1, 3), 1, False), ((), None, False), ((0, 3), 0, False)])
def test_prod_vs_torch(dtype, shape, dim, keepdim):
    a = rand(shape, dtype, low=0.5, high=1.5)
    if dim is None:
        check_torch(lambda x: x.prod(), lambda x: x.prod(), [a])
    else:
        check_torch(lambda x: x.prod(dim, keepdim), lambda x: x.prod(dim, keepdim), [a])


ZEROS = [
    np.array([1.5, 0.0, 2.0, -1.0]),                 # one zero
    np.array([0.0, 2.0, 0.0, 3.0]),                  # two zeros: first derivative 0, second not
    np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0], [1.0, 2.0, 3.0]]),
]


@pytest.mark.parametrize("a", ZEROS)
def test_prod_with_zeros_vs_torch_and_fd(a):
    check_torch(lambda x: x.prod(), lambda x: x.prod(), [a])
    check_torch(lambda x: x.prod(-1), lambda x: x.prod(-1), [a])
    check_torch(lambda x: x.prod(0, True), lambda x: x.prod(0, True), [a])
    check_fd(lambda x: x.prod(), [a])
    check_fd(lambda x: x.prod(-1), [a])
    check_jvp_vjp(lambda x: x.prod(0), [a])


def test_prod_double_backward_with_two_zeros_matches_torch():
    a = np.array([0.0, 2.0, 0.0, 3.0])
    x, t = S.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    (g,) = S.autograd.grad(x.prod(), x, create_graph=True)
    (tg,) = torch.autograd.grad(t.prod(), t, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), tg.detach().numpy())
    np.testing.assert_allclose(S.autograd.grad(g.sum(), x)[0].numpy(), torch.autograd.grad(tg.sum(), t)[0].numpy())


def test_prod_dtypes_and_errors():
    check_torch(lambda x: x.prod(0), lambda x: x.prod(0), [rand((3, 2), "int32", low=1, high=4)], grad=False)
    check_torch(lambda x: x.prod(), lambda x: x.prod(), [rand((3,), "bool")], grad=False)
    with pytest.raises(DTypeError, match="prod: dim must be a single int"):
        S.ones(2, 3).prod((0, 1))


# ------------------------------------------------------------------------------------ cumsum / cumprod
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), 1), ((3, 4), -2), ((2, 3, 4), 1), ((), 0), ((0, 3), 1)])
def test_cumsum_cumprod_vs_torch(dtype, shape, dim):
    a = rand(shape, dtype, low=0.5, high=1.5)
    check_torch(lambda x: x.cumsum(dim), lambda x: x.cumsum(dim), [a])
    check_torch(lambda x: x.cumprod(dim), lambda x: x.cumprod(dim), [a])


@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), 1), ((2, 3, 4), -2)])
def test_cumsum_cumprod_finite_differences(shape, dim):
    a = rand(shape, low=0.5, high=1.5)
    check_fd(lambda x: S.cumsum(x * x, dim), [a])
    check_fd(lambda x: S.cumprod(x, dim), [a])
    check_jvp_vjp(lambda x: S.cumprod(x, dim), [a])


@pytest.mark.parametrize("a", ZEROS)
def test_cumprod_with_zeros(a):
    check_torch(lambda x: x.cumprod(-1), lambda x: x.cumprod(-1), [a])
    check_fd(lambda x: x.cumprod(-1), [a])          # recorded (exact) path, incl. double backward
    check_jvp_vjp(lambda x: x.cumprod(0), [a])      # the O(n) first-order path


def test_cumsum_dtypes():
    for dt in ("bool", "int32", "uint8"):
        check_torch(lambda x: x.cumsum(0), lambda x: x.cumsum(0), [rand((4,), dt, low=0, high=3)], grad=False)
    check_torch(lambda x: x.cumsum(0, dtype=S.float64), lambda x: x.cumsum(0, dtype=torch.float64),
                [rand((4,), "int64", low=0, high=3)], grad=False)


# ------------------------------------------------------------------------------------ amax / amin / max / min
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,dim,keepdim", DIM_CASES + [((0, 3), 1, False)])
def test_amax_amin_vs_torch(dtype, shape, dim, keepdim):
    a = rand(shape, dtype)
    kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
    check_torch(lambda x: x.amax(**kw), lambda x: x.amax(**kw), [a])
    check_torch(lambda x: x.amin(**kw), lambda x: x.amin(**kw), [a])
    if shape:
        check_torch(lambda x: S.aminmax(x, dim=dim if not isinstance(dim, tuple) else None, keepdim=keepdim),
                    lambda x: torch.aminmax(x, dim=dim if not isinstance(dim, tuple) else None, keepdim=keepdim),
                    [a])


@pytest.mark.parametrize("shape,dim,keepdim", DIM_CASES[:5])
def test_amax_finite_differences(shape, dim, keepdim):
    a = rand(shape)
    kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
    check_fd(lambda x: S.amax(x, **kw), [a])
    check_fd(lambda x: S.amin(x * x, **kw), [a])
    check_jvp_vjp(lambda x: S.amax(x, **kw), [a])


TIES = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 5.0, -1.0, 4.0]])


def test_ties_split_evenly_like_torch():
    for fn in ("amax", "amin"):
        check_torch(lambda x: getattr(x, fn)(), lambda x: getattr(x, fn)(), [TIES])
        check_torch(lambda x: getattr(x, fn)(1), lambda x: getattr(x, fn)(1), [TIES])
        check_torch(lambda x: getattr(x, fn)((0, 1), True), lambda x: getattr(x, fn)((0, 1), True), [TIES])
    check_torch(lambda x: x.max(), lambda x: x.max(), [TIES])      # full max: even split
    check_torch(lambda x: x.min(), lambda x: x.min(), [TIES])
    x = S.tensor([[1.0, 3.0, 3.0]], requires_grad=True)
    x.amax().backward()
    assert x.grad.tolist() == [[0.0, 0.5, 0.5]]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("dim,keepdim", [(0, False), (1, True), (-1, False)])
def test_max_min_with_dim_vs_torch(dtype, dim, keepdim):
    for a in (rand((3, 4), dtype), TIES.astype(dtype)):           # ties: first index, grad to it only
        check_torch(lambda x: tuple(S.max(x, dim, keepdim)), lambda x: tuple(torch.max(x, dim, keepdim)), [a])
        check_torch(lambda x: tuple(x.min(dim=dim, keepdim=keepdim)),
                    lambda x: tuple(x.min(dim=dim, keepdim=keepdim)), [a])


def test_max_min_forms():
    a, b = rand((3, 4)), rand((4,), seed=2)
    check_torch(lambda x, y: S.max(x, y), lambda x, y: torch.max(x, y), [a, b])
    check_torch(lambda x, y: x.min(y), lambda x, y: x.min(y), [a, b])
    check_torch(lambda x, y: S.max(x, other=y), lambda x, y: torch.max(x, other=y), [a, b])
    r = S.tensor([[1.0, 5.0], [7.0, 2.0]]).max(1)
    assert r.values.tolist() == [5.0, 7.0] and r.indices.tolist() == [1, 0]
    values, indices = S.tensor(3.0).max(0)
    assert values.shape == () and indices.item() == 0
    check_torch(lambda x: tuple(x.max(1)), lambda x: tuple(x.max(1)), [rand((0, 3))])
    check_torch(lambda x: tuple(x.max(0)), lambda x: tuple(x.max(0)), [rand((3, 2), "int64", low=0, high=3)],
                grad=False)
    check_fd(lambda x: S.max(x, 1).values, [rand((3, 4))])
    check_jvp_vjp(lambda x: S.min(x, 0).values, [rand((3, 4))])


def test_extremum_errors():
    with pytest.raises(IndexError, match=r"(?s)amax: cannot reduce over a zero-size dimension.*\(2, 0\), dim 1"):
        S.zeros(2, 0).amax(1)
    with pytest.raises(IndexError, match="max: cannot reduce"):
        S.zeros(0).max()
    with pytest.raises(IndexError, match="max: dimension out of range"):
        S.zeros(2, 3).max(2)
    with pytest.raises(TypeError, match="max: keepdim needs a dim"):
        S.zeros(2, 3).max(keepdim=True)


# ------------------------------------------------------------------------------------ argmax / argmin
@pytest.mark.parametrize("dim,keepdim", [(None, False), (None, True), (0, False), (-1, True), (1, False)])
def test_argmax_argmin_vs_torch(dim, keepdim):
    for a in (rand((3, 4), "float32"), TIES, rand((3, 4), "int64", low=0, high=3)):
        check_torch(lambda x: x.argmax(dim, keepdim), lambda x: x.argmax(dim, keepdim), [a], grad=False)
        check_torch(lambda x: S.argmin(x, dim=dim, keepdim=keepdim),
                    lambda x: torch.argmin(x, dim=dim, keepdim=keepdim), [a], grad=False)


def test_argmax_edge_cases():
    check_torch(lambda x: x.argmax(0), lambda x: x.argmax(0), [np.array(3.0)], grad=False)
    check_torch(lambda x: x.argmax(1), lambda x: x.argmax(1), [rand((0, 3))], grad=False)
    with pytest.raises(DTypeError, match="argmax: does not support bool"):
        S.tensor([True, False]).argmax()
    with pytest.raises(IndexError, match=r"argmax: cannot take the index of an extremum of an empty tensor"):
        S.zeros(0).argmax()


# ------------------------------------------------------------------------------------ logsumexp
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,dim,keepdim", [((3, 4), 1, False), ((3, 4), (0, 1), True), ((2, 3, 4), -2, False),
                                               ((2, 1, 3), 1, True), ((0, 3), 0, False)])
def test_logsumexp_vs_torch(dtype, shape, dim, keepdim):
    a = rand(shape, dtype, low=-5, high=5)
    check_torch(lambda x: x.logsumexp(dim, keepdim), lambda x: x.logsumexp(dim, keepdim), [a])
    if dtype == "float64" and 0 not in shape:
        check_fd(lambda x: S.logsumexp(x, dim, keepdim), [a])
        check_jvp_vjp(lambda x: S.logsumexp(x, dim, keepdim), [a])


def test_logsumexp_is_stable_and_handles_inf():
    a = np.array([[1000.0, 1000.0, -1000.0], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0]])
    check_torch(lambda x: x.logsumexp(1), lambda x: x.logsumexp(1), [a[:1]])
    check_torch(lambda x: x.logsumexp(1), lambda x: x.logsumexp(1), [a], grad=False)
    check_torch(lambda x: x.logsumexp(0), lambda x: x.logsumexp(0), [rand((3,), "int64", low=0, high=5)],
                grad=False)
    check_torch(lambda x: x.logsumexp(0), lambda x: x.logsumexp(0), [rand((3, 2), "float16")])


# ------------------------------------------------------------------------------------ norm
NORM_CASES = [
    ("fro", None, False), (2, 1, False), (2.0, (0, 1), True), (1, -1, False), (3, 0, False),
    (0.5, 1, True), (float("inf"), 1, False), (float("-inf"), None, False), (None, 0, False),
    ("fro", (0, 1), False),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("p,dim,keepdim", NORM_CASES)
def test_norm_vs_torch(dtype, p, dim, keepdim):
    a = rand((3, 4), dtype, away_from=[0])
    check_torch(lambda x: x.norm(p, dim, keepdim), lambda x: x.norm(p, dim, keepdim), [a])
    if dtype == "float64":
        check_fd(lambda x: S.norm(x, p, dim, keepdim), [a])
        check_jvp_vjp(lambda x: S.norm(x, p, dim, keepdim), [a])


def test_norm_zero_vector_gradient_is_zero_like_torch():
    a = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, -4.0]])
    for p in (2, 3, "fro", float("inf"), 1):
        check_torch(lambda x: x.norm(p, 1), lambda x: x.norm(p, 1), [a])
        x = S.tensor(a, requires_grad=True)
        x.norm(p, 1).sum().backward()
        assert np.all(np.isfinite(x.grad.numpy())) and np.all(x.grad.numpy()[0] == 0)
    # second derivative stays finite too
    x = S.zeros(3, dtype=S.float64, requires_grad=True)
    (g,) = S.autograd.grad(x.norm(), x, create_graph=True)
    (h,) = S.autograd.grad(g.sum(), x)
    assert np.all(np.isfinite(h.numpy()))


def test_norm_p0_and_errors():
    check_torch(lambda x: x.norm(0, 1), lambda x: x.norm(0, 1), [np.array([[0.0, 1.0, -2.0]])], grad=False)
    check_torch(lambda x: S.norm(x, dtype=S.float64), lambda x: torch.norm(x, dtype=torch.float64),
                [rand((3,), "float32")])
    with pytest.raises(DTypeError, match=r"norm: expects a floating-point input"):
        S.tensor([1, 2]).norm()
    with pytest.raises(NotImplementedError, match="nuclear norm"):
        S.ones(2, 2).norm("nuc")
    with pytest.raises(ValueError, match="norm: p='fro' reduces at most 2 dims"):
        S.ones(2, 2, 2).norm("fro", (0, 1, 2))
    check_torch(lambda x: x.norm(2, (0, 1, 2)), lambda x: x.norm(2, (0, 1, 2)), [rand((2, 3, 2))])


# ------------------------------------------------------------------------------------ all / any / count_nonzero
@pytest.mark.parametrize("dtype", ["bool", "int64", "uint8", "float32"])
@pytest.mark.parametrize("dim,keepdim", [(None, False), (0, False), (1, True), ((0, 1), False)])
def test_all_any_count_nonzero_vs_torch(dtype, dim, keepdim):
    a = rand((3, 4), dtype, low=0, high=2) if dtype != "float32" else np.where(rand((3, 4)) > 0, 1.5, 0.0).astype(dtype)
    kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
    check_torch(lambda x: x.all(**kw), lambda x: x.all(**kw), [a], grad=False)
    check_torch(lambda x: S.any(x, **kw), lambda x: torch.any(x, **kw), [a], grad=False)
    kw = {} if dim is None else {"dim": dim}
    check_torch(lambda x: x.count_nonzero(**kw), lambda x: x.count_nonzero(**kw), [a], grad=False)


def test_all_any_empty():
    check_torch(lambda x: x.all(), lambda x: x.all(), [rand((0, 2), "bool")], grad=False)
    check_torch(lambda x: x.any(1), lambda x: x.any(1), [rand((0, 2), "bool")], grad=False)


# ------------------------------------------------------------------------------------ shared checks
def test_half_precision_reductions_follow_torch():
    for dt in ("float16", "bfloat16"):
        a = rand((4, 5), dt)
        check_torch(lambda x: x.sum(1), lambda x: x.sum(1), [a])
        check_torch(lambda x: x.amax(0), lambda x: x.amax(0), [a])
        check_torch(lambda x: x.var(1), lambda x: x.var(1), [a], rtol=2e-2, atol=2e-2)
        check_torch(lambda x: x.norm(dim=1), lambda x: x.norm(dim=1), [a], rtol=2e-2, atol=2e-2)


def test_dim_errors_name_the_op():
    with pytest.raises(IndexError, match=r"(?s)sum: dimension out of range.*dim=2 for a 2-d tensor"):
        S.ones(2, 3).sum(2)
    with pytest.raises(SuanliError, match="mean: a dimension appears more than once"):
        S.ones(2, 3).mean((0, -2))
    with pytest.raises(DTypeError, match="amax: dim must be an int or a tuple"):
        S.ones(2, 3).amax("x")


def test_reductions_are_registered_with_rules():
    from suanli.ops import registry
    for name in ("sum", "prod", "amax", "amin", "cumsum", "cumprod"):
        assert registry[name].has_vjp and registry[name].has_jvp
    for name in ("argmax", "argmin", "all", "any", "count_nonzero"):
        assert not registry[name].differentiable
