"""Elementwise ops and activations: values, gradients and dtypes against torch, float64 finite
differences (incl. double backward and forward mode), torch's gradient conventions at kinks and
ties, dtype promotion, half precision, error messages, and a hypothesis broadcasting property."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from oracles import check_fd, check_jvp_vjp, check_torch, rand

import suanli
from suanli import DTypeError, ShapeError, SuanliError

S = suanli
A = suanli.ops.activation

# ------------------------------------------------------------------------------------ op tables
# name -> (suanli fn, torch fn, rand() keywords keeping inputs inside the domain / away from kinks)
INTEGERS = dict(away_from=[-2, -1, 0, 1, 2])
UNARY = {
    "neg": (S.neg, torch.neg, {}),
    "exp": (S.exp, torch.exp, {}),
    "abs": (S.abs, torch.abs, dict(away_from=[0])),
    "sign": (S.sign, torch.sign, dict(away_from=[0])),
    "log": (S.log, torch.log, dict(low=0.2, high=3.0)),
    "log1p": (S.log1p, torch.log1p, dict(low=-0.8, high=3.0)),
    "expm1": (S.expm1, torch.expm1, {}),
    "sqrt": (S.sqrt, torch.sqrt, dict(low=0.2, high=3.0)),
    "rsqrt": (S.rsqrt, torch.rsqrt, dict(low=0.2, high=3.0)),
    "reciprocal": (S.reciprocal, torch.reciprocal, dict(away_from=[0])),
    "sin": (S.sin, torch.sin, {}),
    "cos": (S.cos, torch.cos, {}),
    "tanh": (S.tanh, torch.tanh, {}),
    "sigmoid": (S.sigmoid, torch.sigmoid, dict(low=-6, high=6)),
    "erf": (S.erf, torch.erf, dict(low=-3, high=3)),
    "square": (S.square, torch.square, {}),
    "floor": (S.floor, torch.floor, INTEGERS),
    "ceil": (S.ceil, torch.ceil, INTEGERS),
    "trunc": (S.trunc, torch.trunc, INTEGERS),
    "round": (S.round, torch.round, dict(away_from=[-1.5, -0.5, 0.5, 1.5])),
    "round_decimals": (lambda x: S.round(x, decimals=1), lambda x: torch.round(x, decimals=1), {}),
    "positive": (S.positive, torch.positive, {}),
    # activations
    "relu": (S.relu, torch.relu, dict(away_from=[0])),
    "relu6": (A.relu6, F.relu6, dict(low=-2, high=8, away_from=[0, 6])),
    "leaky_relu": (lambda x: A.leaky_relu(x, 0.2), lambda x: F.leaky_relu(x, 0.2), dict(away_from=[0])),
    "hardtanh": (lambda x: A.hardtanh(x, -1.0, 0.5), lambda x: F.hardtanh(x, -1.0, 0.5),
                 dict(away_from=[-1, 0.5])),
    "elu": (lambda x: A.elu(x, 0.7), lambda x: F.elu(x, 0.7), dict(away_from=[0])),
    "selu": (A.selu, F.selu, dict(away_from=[0])),
    "celu": (lambda x: A.celu(x, 0.5), lambda x: F.celu(x, 0.5), dict(away_from=[0])),
    "gelu": (A.gelu, F.gelu, dict(low=-4, high=4)),
    "gelu_tanh": (lambda x: A.gelu(x, approximate="tanh"), lambda x: F.gelu(x, approximate="tanh"),
                  dict(low=-4, high=4)),
    "silu": (A.silu, F.silu, dict(low=-5, high=5)),
    "mish": (A.mish, F.mish, dict(low=-5, high=5)),
    "softplus": (A.softplus, F.softplus, dict(low=-5, high=5)),
    "softplus_beta": (lambda x: A.softplus(x, beta=2.0, threshold=1.0),
                      lambda x: F.softplus(x, beta=2.0, threshold=1.0), dict(away_from=[0.5])),
    "logsigmoid": (A.logsigmoid, F.logsigmoid, dict(low=-6, high=6)),
    "hardsigmoid": (A.hardsigmoid, F.hardsigmoid, dict(low=-5, high=5, away_from=[-3, 3])),
    "hardswish": (A.hardswish, F.hardswish, dict(low=-5, high=5, away_from=[-3, 3])),
    "softsign": (A.softsign, F.softsign, dict(away_from=[0])),
    "tanhshrink": (A.tanhshrink, F.tanhshrink, {}),
    "threshold": (lambda x: A.threshold(x, 0.3, -2.0), lambda x: F.threshold(x, 0.3, -2.0),
                  dict(away_from=[0.3])),
    "hardshrink": (A.hardshrink, F.hardshrink, dict(away_from=[-0.5, 0.5])),
    "softshrink": (A.softshrink, F.softshrink, dict(away_from=[-0.5, 0.5])),
}
# torch's float64 hardsigmoid backward multiplies by float32(1/6); suanli uses the exact 1/6
TORCH_FLOAT64_TOL = {"hardsigmoid": dict(rtol=1e-7)}
# piecewise-constant ops: finite differences are zero, and that is what their gradient must be
ZERO_GRAD = {"sign", "floor", "ceil", "trunc", "round", "round_decimals"}

# name -> (suanli fn, torch fn, rand() keywords per input)
BINARY = {
    "add": (S.add, torch.add, [{}, {}]),
    "sub": (S.sub, torch.sub, [{}, {}]),
    "mul": (S.mul, torch.mul, [{}, {}]),
    "div": (S.div, torch.div, [{}, dict(away_from=[0])]),
    "pow": (S.pow, torch.pow, [dict(low=0.3, high=2.0), {}]),
    "maximum": (S.maximum, torch.maximum, [{}, {}]),
    "minimum": (S.minimum, torch.minimum, [{}, {}]),
    "fmod": (S.fmod, torch.fmod, [{}, dict(low=0.5, high=1.5)]),
    "remainder": (S.remainder, torch.remainder, [{}, dict(low=-1.5, high=-0.5)]),
    "add_alpha": (lambda a, b: S.add(a, b, alpha=0.5), lambda a, b: torch.add(a, b, alpha=0.5), [{}, {}]),
    "lerp": (lambda a, b: S.lerp(a, b, 0.3), lambda a, b: torch.lerp(a, b, 0.3), [{}, {}]),
    "clamp_min": (S.clamp_min, torch.clamp_min, [{}, {}]),
    "clamp_max": (S.clamp_max, torch.clamp_max, [{}, {}]),
}
TERNARY = {
    "lerp": (S.lerp, torch.lerp, [{}, {}, dict(low=0, high=1)]),
    "addcmul": (lambda a, b, c: S.addcmul(a, b, c, value=0.5),
                lambda a, b, c: torch.addcmul(a, b, c, value=0.5), [{}, {}, {}]),
    "addcdiv": (lambda a, b, c: S.addcdiv(a, b, c, value=-2), lambda a, b, c: torch.addcdiv(a, b, c, value=-2),
                [{}, {}, dict(low=0.5, high=2.0)]),
    "clamp": (S.clamp, torch.clamp, [{}, dict(low=-2, high=-0.3), dict(low=0.3, high=2)]),
}
COMPARISONS = {"eq": (S.eq, torch.eq), "ne": (S.ne, torch.ne), "lt": (S.lt, torch.lt), "le": (S.le, torch.le),
               "gt": (S.gt, torch.gt), "ge": (S.ge, torch.ge),
               "logical_and": (S.logical_and, torch.logical_and),
               "logical_or": (S.logical_or, torch.logical_or),
               "logical_xor": (S.logical_xor, torch.logical_xor)}

UNARY_SHAPES = [(), (5,), (2, 3), (0, 3), (1, 4)]
BINARY_SHAPES = [((3, 1), (1, 4)), ((2, 3), (3,)), ((), (2, 3)), ((2, 3), ()), ((0, 3), (1, 3)),
                 ((1,), (4,)), ((2, 1, 3), (4, 1))]


def _arrays(shapes, kwargs, dtype, seed=0):
    return [rand(s, dtype, seed=seed + i, **kw) for i, (s, kw) in enumerate(zip(shapes, kwargs))]


# ------------------------------------------------------------------------------------ unary
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_matches_torch(name, shape, dtype):
    fn, tfn, kw = UNARY[name]
    tol = TORCH_FLOAT64_TOL.get(name, {}) if dtype == "float64" else {}
    check_torch(fn, tfn, [rand(shape, dtype, **kw)], **tol)


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_finite_differences(name):
    fn, _, kw = UNARY[name]
    x = rand((2, 3), "float64", seed=3, **kw)
    check_fd(fn, [x])
    check_jvp_vjp(fn, [x])


@pytest.mark.parametrize("name", sorted(ZERO_GRAD))
def test_piecewise_constant_ops_have_zero_gradient(name):
    fn, tfn, _ = UNARY[name]
    x = S.tensor([-1.5, -0.2, 0.0, 0.7, 2.0], dtype=S.float64, requires_grad=True)
    y = fn(x)
    assert y.requires_grad == tfn(torch.zeros(1, dtype=torch.float64, requires_grad=True)).requires_grad
    y.sum().backward()
    assert x.grad is not None and not x.grad.numpy().any()


# ------------------------------------------------------------------------------------ binary
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_matches_torch(name, shapes, dtype):
    fn, tfn, kws = BINARY[name]
    check_torch(fn, tfn, _arrays(shapes, kws, dtype))


@pytest.mark.parametrize("shapes", [((3, 1), (1, 4)), ((2, 3), ())], ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_finite_differences(name, shapes):
    fn, _, kws = BINARY[name]
    arrays = _arrays(shapes, kws, "float64", seed=5)
    check_fd(fn, arrays)
    check_jvp_vjp(fn, arrays)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shapes", [((2, 3), (2, 3), (2, 3)), ((3, 4), (1, 4), ()), ((3, 1), (1, 4), (3, 4)),
                                    ((0, 2), (2,), (1, 2))], ids=str)
@pytest.mark.parametrize("name", list(TERNARY))
def test_ternary_matches_torch(name, shapes, dtype):
    fn, tfn, kws = TERNARY[name]
    if name == "clamp" and shapes[0] != np.broadcast_shapes(*shapes):
        pytest.skip("torch.clamp cannot broadcast its input to a larger bound shape (suanli can)")
    check_torch(fn, tfn, _arrays(shapes, kws, dtype))


@pytest.mark.parametrize("name", list(TERNARY))
def test_ternary_finite_differences(name):
    fn, _, kws = TERNARY[name]
    arrays = _arrays([(3, 1), (1, 4), (3, 4)], kws, "float64", seed=7)
    check_fd(fn, arrays)
    check_jvp_vjp(fn, arrays)


@pytest.mark.parametrize("shapes", [((2, 3), (2, 3), (2, 3)), ((3, 1), (1, 4), ()), ((), (2, 1), (3,)),
                                    ((0, 3), (1, 3), (3,))], ids=str)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_where_matches_torch(shapes, dtype):
    cond = rand(shapes[0], "bool", seed=1)
    x, y = rand(shapes[1], dtype, seed=2), rand(shapes[2], dtype, seed=3)
    check_torch(S.where, torch.where, [cond, x, y])
    if dtype == "float64":
        check_fd(S.where, [cond, x, y])
        check_jvp_vjp(lambda a, b: S.where(S.tensor(cond), a, b), [x, y])


def test_where_scalars_and_method():
    x = S.tensor([-1.0, 2.0, -3.0], requires_grad=True)
    y = S.where(x > 0, x, 0.0)
    assert y.tolist() == [0.0, 2.0, 0.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]
    assert x.where(x > 0, -1).tolist() == [-1.0, 2.0, -1.0]
    assert S.where(S.tensor([True, False]), 1, 0).dtype == S.int64
    idx = S.where(S.tensor([[True, False], [False, True]]))
    assert [i.tolist() for i in idx] == [[0, 1], [0, 1]]


@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(COMPARISONS))
def test_comparisons_and_logical_match_torch(name, shapes):
    fn, tfn = COMPARISONS[name]
    a = np.round(rand(shapes[0], "float64", seed=1))       # rounding makes ties and zeros likely
    b = np.round(rand(shapes[1], "float64", seed=2))
    check_torch(fn, tfn, [a, b], grad=False)
    check_torch(fn, tfn, [a.astype(np.int64), b.astype(np.float32)], grad=False)


def test_comparison_dunders_and_reflected():
    x = S.tensor([1, 2, 3])
    assert (x < 2).tolist() == [True, False, False]
    assert (x <= 2).tolist() == [True, True, False]
    assert (x > 2).tolist() == [False, False, True]
    assert (x >= 2).tolist() == [False, True, True]
    assert (x == 2).tolist() == [False, True, False]
    assert (x != 2).tolist() == [True, False, True]
    assert (2.5 > x).tolist() == [True, True, False]          # reflected through __lt__
    assert (x == None) is False and (x != "a") is True       # noqa: E711 - as torch
    assert (x > 1).requires_grad is False


@pytest.mark.parametrize("op", ["logical_and", "logical_or", "logical_xor"])
def test_logical_ops_accept_mixed_dtypes(op):
    a, b = np.array([0, 1, 2, 0]), np.array([0.0, 0.0, 3.5, 1.0])
    check_torch(getattr(S, op), getattr(torch, op), [a, b], grad=False)
    check_torch(S.logical_not, torch.logical_not, [b], grad=False)


@pytest.mark.parametrize("dtype", ["bool", "int64", "uint8", "int8"])
def test_bitwise_ops_and_dunders(dtype):
    a, b = rand((3, 4), dtype, seed=1, low=-5, high=5), rand((4,), dtype, seed=2, low=0, high=5)
    for fn in (lambda x, y: x & y, lambda x, y: x | y, lambda x, y: x ^ y, lambda x, y: ~x,
               lambda x, y: S.bitwise_and(x, y) if isinstance(x, S.Tensor) else torch.bitwise_and(x, y)):
        check_torch(fn, fn, [a, b], grad=False)
    scalar = True if dtype == "bool" else 3
    check_torch(lambda x: scalar & x, lambda x: scalar & x, [a], grad=False)
    check_torch(lambda x: scalar | x, lambda x: scalar | x, [a], grad=False)
    check_torch(lambda x: x ^ scalar, lambda x: x ^ scalar, [a], grad=False)


# ------------------------------------------------------------------------------------ conventions
KINK_CASES = {
    "abs": (S.abs, torch.abs, [-1.0, 0.0, 2.0]),
    "relu": (S.relu, torch.relu, [-1.0, 0.0, 2.0]),
    "leaky_relu": (lambda x: A.leaky_relu(x, 0.1), lambda x: F.leaky_relu(x, 0.1), [-1.0, 0.0, 2.0]),
    "hardtanh": (A.hardtanh, F.hardtanh, [-2.0, -1.0, 0.0, 1.0, 2.0]),
    "relu6": (A.relu6, F.relu6, [-1.0, 0.0, 3.0, 6.0, 7.0]),
    "hardsigmoid": (A.hardsigmoid, F.hardsigmoid, [-4.0, -3.0, 0.0, 3.0, 4.0]),
    "hardswish": (A.hardswish, F.hardswish, [-4.0, -3.0, 0.0, 3.0, 4.0]),
    "elu": (lambda x: A.elu(x, 0.5), lambda x: F.elu(x, 0.5), [-1.0, 0.0, 1.0]),
    "celu": (lambda x: A.celu(x, 2.0), lambda x: F.celu(x, 2.0), [-1.0, 0.0, 1.0]),
    "clamp": (lambda x: S.clamp(x, -1, 1), lambda x: torch.clamp(x, -1, 1), [-2.0, -1.0, 0.0, 1.0, 2.0]),
    "clamp_empty": (lambda x: S.clamp(x, 1, -1), lambda x: torch.clamp(x, 1, -1), [-2.0, 0.0, 2.0]),
    "clamp_min": (lambda x: S.clamp(x, min=0), lambda x: torch.clamp(x, min=0), [-1.0, 0.0, 1.0]),
    "clamp_max": (lambda x: S.clip(x, max=0), lambda x: torch.clip(x, max=0), [-1.0, 0.0, 1.0]),
    "softplus": (lambda x: A.softplus(x, 2.0, 1.0), lambda x: F.softplus(x, 2.0, 1.0), [0.4, 0.5, 0.6]),
    "threshold": (lambda x: A.threshold(x, 0.0, 3.0), lambda x: F.threshold(x, 0.0, 3.0), [-1.0, 0.0, 1.0]),
    "hardshrink": (A.hardshrink, F.hardshrink, [-0.5, 0.0, 0.5, 0.7]),
    "softshrink": (A.softshrink, F.softshrink, [-0.5, 0.0, 0.5, 0.7]),
    "sqrt": (S.sqrt, torch.sqrt, [0.0, 1.0]),
    "pow_0": (lambda x: x ** 0, lambda x: x ** 0, [0.0, 2.0, -1.0]),
    "pow_half": (lambda x: x ** 0.5, lambda x: x ** 0.5, [0.0, 4.0]),
    "pow_2": (lambda x: x ** 2, lambda x: x ** 2, [0.0, -3.0]),
    "rpow_0": (lambda x: 0.0 ** x, lambda x: 0.0 ** x, [-1.0, 0.0, 2.0]),
    "rpow_2": (lambda x: 2 ** x, lambda x: 2 ** x, [-1.0, 0.0, 2.0]),
    "sign": (S.sign, torch.sign, [-2.0, 0.0, 3.0]),
    "logsigmoid": (A.logsigmoid, F.logsigmoid, [-800.0, -30.0, 0.0, 30.0, 800.0]),
    "sigmoid": (S.sigmoid, torch.sigmoid, [-800.0, -30.0, 0.0, 30.0, 800.0]),
    "softplus_big": (A.softplus, F.softplus, [-800.0, -30.0, 0.0, 19.0, 21.0, 800.0]),
    "silu_big": (A.silu, F.silu, [-800.0, -30.0, 0.0, 30.0, 800.0]),
    "elu_big": (A.elu, F.elu, [-800.0, 0.0, 800.0]),
    "gelu_big": (A.gelu, F.gelu, [-10.0, -6.0, 0.0, 6.0, 10.0]),
    "mish_big": (A.mish, F.mish, [-50.0, 0.0, 50.0]),
}


@pytest.mark.parametrize("name", list(KINK_CASES))
def test_kinks_ties_and_extremes_follow_torch(name):
    fn, tfn, values = KINK_CASES[name]
    check_torch(fn, tfn, [np.array(values, np.float64)], **TORCH_FLOAT64_TOL.get(name, {}))


@pytest.mark.parametrize("fn", [S.sigmoid, A.logsigmoid, A.softplus, A.silu, A.elu, A.gelu, A.mish, S.erf,
                                S.tanh, A.selu], ids=lambda f: f.__name__)
def test_extreme_inputs_are_stable_and_silent(fn):
    x = S.tensor([-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4], dtype=S.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no overflow / invalid-value warnings
        y = fn(x)
        (g,) = S.autograd.grad(y.sum(), x, create_graph=True)
        (gg,) = S.autograd.grad(g.sum(), x)
    assert np.isfinite(y.detach().numpy()).all() and np.isfinite(g.detach().numpy()).all()
    assert np.isfinite(gg.numpy()).all()


NONFINITE = ["sign", "abs", "floor", "round", "sigmoid", "erf", "relu", "relu6", "leaky_relu", "hardtanh", "elu",
             "selu", "celu", "gelu", "gelu_tanh", "silu", "softplus", "logsigmoid", "hardsigmoid", "hardswish",
             "softsign", "tanhshrink", "threshold", "hardshrink", "softshrink"]


@pytest.mark.parametrize("name", NONFINITE)
def test_nan_and_inf_values_and_gradients_follow_torch(name):
    fn, tfn, _ = UNARY[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # inf - inf inside the cotangent sum
        check_torch(fn, tfn, [np.array([np.nan, np.inf, -np.inf, 0.0, 1.25])], **TORCH_FLOAT64_TOL.get(name, {}))


def test_maximum_minimum_split_ties_and_propagate_nan():
    a = np.array([1.0, 2.0, 3.0, np.nan, 1.0])
    b = np.array([1.0, 1.0, 4.0, 0.0, np.nan])
    for fn, tfn in ((S.maximum, torch.maximum), (S.minimum, torch.minimum)):
        check_torch(fn, tfn, [a, b])
    check_jvp_vjp(S.maximum, [a[:3], b[:3]])
    check_jvp_vjp(S.minimum, [a[:3], b[:3]])


def test_pow_conventions_at_zero_base_and_exponent():
    base = np.array([0.0, 0.0, 2.0, 0.0, 3.0, -2.0])
    expo = np.array([0.0, 2.0, 0.0, -1.0, 0.5, 2.0])
    check_torch(S.pow, torch.pow, [base, expo])


def test_clamp_tensor_bounds_gradients_follow_torch():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 0.5, 0.5])
    lo = np.array([-1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 0.5])
    hi = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.5])    # last two: min > max, min == max
    check_torch(S.clamp, torch.clamp, [x, lo, hi])
    check_torch(lambda a, b: S.clamp(a, min=b), lambda a, b: torch.clamp(a, min=b), [x, lo])
    check_torch(lambda a, b: S.clamp(a, max=b), lambda a, b: torch.clamp(a, max=b), [x, hi])


def test_int_division_family_matches_torch():
    a = np.array([-7, -3, 0, 3, 7, 8])
    b = np.array([2, -2, 3, -4, 3, 2])
    for sfn, tfn in ((S.floor_divide, torch.floor_divide), (S.remainder, torch.remainder),
                     (S.fmod, torch.fmod),
                     (lambda x, y: S.div(x, y, rounding_mode="trunc"),
                      lambda x, y: torch.div(x, y, rounding_mode="trunc")),
                     (lambda x, y: x // y, lambda x, y: x // y), (lambda x, y: x % y, lambda x, y: x % y),
                     (lambda x, y: 17 // y, lambda x, y: 17 // y), (lambda x, y: 17 % y, lambda x, y: 17 % y)):
        check_torch(sfn, tfn, [a, b], grad=False)
        check_torch(sfn, tfn, [a.astype(np.float64) + 0.5, b.astype(np.float64)], grad=False)


def test_floor_divide_and_rounded_div_have_zero_gradient():
    x = S.tensor([3.5, -2.5], dtype=S.float64, requires_grad=True)
    (S.div(x, 2.0, rounding_mode="floor") + x // 3).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0]


def test_int_pow_matches_torch():
    a = np.array([-3, -1, 0, 1, 2, 5])
    b = np.array([3, 3, 2, -2, -1, 2])
    check_torch(S.pow, torch.pow, [a, b], grad=False)
    check_torch(lambda x: x ** 3, lambda x: x ** 3, [a], grad=False)
    check_torch(lambda x: 2 ** x, lambda x: 2 ** x, [np.abs(a)], grad=False)


# ------------------------------------------------------------------------------------ dtypes
PROMOTION = {
    "int_tensor+float": lambda m: m.tensor([1, 2]) + 2.5,
    "float+int_tensor": lambda m: 2.5 + m.tensor([1, 2]),
    "uint8+int8": lambda m: m.tensor([200], dtype=m.uint8) + m.tensor([-3], dtype=m.int8),
    "float16*float": lambda m: m.tensor([1.5, 2.0], dtype=m.float16) * 2.5,
    "float16*float64_0d": lambda m: m.tensor([1.5, 2.0], dtype=m.float16) * m.tensor(2.5, dtype=m.float64),
    "bool+bool": lambda m: m.tensor([True, False]) + m.tensor([True, True]),
    "int/int": lambda m: m.tensor([1, 2]) / m.tensor([2, 4]),
    "int_lt_float": lambda m: m.tensor([1, 2]) < m.tensor([1.5, 1.5]),
    "int_eq_float": lambda m: m.tensor([1, 2]) == 1.0,
    "int**float": lambda m: m.tensor([1, 2]) ** 0.5,
    "int**int": lambda m: m.tensor([1, 2]) ** 2,
    "int_rpow": lambda m: 2 ** m.tensor([1, 2]),
    "float_rpow_int": lambda m: 2.5 ** m.tensor([1, 2]),
    "sqrt_int": lambda m: m.sqrt(m.tensor([1, 4])),
    "sigmoid_bool": lambda m: m.sigmoid(m.tensor([True, False])),
    "abs_int": lambda m: m.abs(m.tensor([-1, 2])),
    "square_bool": lambda m: m.square(m.tensor([True, False])),
    "floor_int": lambda m: m.floor(m.tensor([-1, 2])),
    "sign_uint8": lambda m: m.sign(m.tensor([0, 3], dtype=m.uint8)),
    "where_int_float": lambda m: m.where(m.tensor([True, False]), m.tensor([1, 2]), 2.5),
    "clamp_int_float": lambda m: m.clamp(m.tensor([-1, 2]), 0.5),
    "clamp_int_int": lambda m: m.clamp(m.tensor([-1, 2]), 0, 1),
    "clamp_f16": lambda m: m.clamp(m.tensor([0.05, 0.5], dtype=m.float16), 0.1, 0.2),
    "maximum_int_float": lambda m: m.maximum(m.tensor([1, 3]), m.tensor([1.5, 2.5])),
    "int64+int32_0d": lambda m: m.tensor([1, 2]) + m.tensor(3, dtype=m.int32),
    "float32+float64_0d": lambda m: m.tensor([1.0, 2.0]) + m.tensor(3.0, dtype=m.float64),
    "int32+int64_tensor": lambda m: m.tensor([1], dtype=m.int32) + m.tensor([3]),
    "bool&int": lambda m: m.tensor([True, False]) & m.tensor([3, 3]),
    "floordiv_int_float": lambda m: m.tensor([7, -7]) // 2.0,
    "remainder_int": lambda m: m.remainder(m.tensor([-7, 7]), 3),
    "relu_int": lambda m: m.relu(m.tensor([-1, 2])),
    "relu6_int": lambda m: m.nn.functional.relu6(m.tensor([-1, 7])) if m is torch else A.relu6(m.tensor([-1, 7])),
    "hardtanh_int": lambda m: (m.nn.functional if m is torch else A).hardtanh(m.tensor([-3, 0, 3])),
    "softsign_int": lambda m: (m.nn.functional if m is torch else A).softsign(m.tensor([-3, 1])),
    "lerp_0d_weight": lambda m: m.lerp(m.tensor([0.0, 1.0]), m.tensor([2.0, 3.0]), m.tensor(0.5)),
}


@pytest.mark.parametrize("name", list(PROMOTION))
def test_dtype_promotion_matches_torch(name):
    out, ref = PROMOTION[name](suanli), PROMOTION[name](torch)
    assert str(out.dtype) == str(ref.dtype).replace("torch.", ""), f"{out.dtype} vs {ref.dtype}"
    np.testing.assert_allclose(np.asarray(out.tolist(), np.float64), np.asarray(ref.tolist(), np.float64),
                               rtol=1e-6)


HALF_OPS = {
    "add": (lambda a, b: a + b, 2), "mul": (lambda a, b: a * b, 2), "div": (lambda a, b: a / b, 2),
    "maximum": (lambda a, b: S.maximum(a, b) if isinstance(a, S.Tensor) else torch.maximum(a, b), 2),
    "exp": (lambda a: a.exp(), 1), "sigmoid": (lambda a: a.sigmoid(), 1), "tanh": (lambda a: a.tanh(), 1),
    "sqrt": (lambda a: a.abs().sqrt(), 1), "pow": (lambda a: a ** 2, 1), "erf": (lambda a: a.erf(), 1),
    "relu": (lambda a: a.relu(), 1), "clamp": (lambda a: a.clamp(-0.5, 0.5), 1),
    "floor": (lambda a: a.floor(), 1), "lt": (lambda a, b: a < b, 2),
    "gelu": (lambda a: (A if isinstance(a, S.Tensor) else F).gelu(a), 1),
    "silu": (lambda a: (A if isinstance(a, S.Tensor) else F).silu(a), 1),
    "softplus": (lambda a: (A if isinstance(a, S.Tensor) else F).softplus(a), 1),
    "where": (lambda a, b: S.where(a > 0, a, b) if isinstance(a, S.Tensor) else torch.where(a > 0, a, b), 2),
}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", list(HALF_OPS))
def test_half_precision_forward_matches_torch(name, dtype):
    fn, n = HALF_OPS[name]
    arrays = [rand((3, 4), dtype, seed=i) for i in range(n)]
    check_torch(fn, fn, arrays, grad=False)


def test_half_precision_backward_runs_in_dtype():
    x = S.tensor([0.5, -1.0], dtype=S.float16, requires_grad=True)
    A.gelu(x * 2).sum().backward()
    assert x.grad.dtype == S.float16
    tx = torch.tensor([0.5, -1.0], dtype=torch.float16, requires_grad=True)
    F.gelu(tx * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy().astype(np.float32), tx.grad.float().numpy(), rtol=1e-2)


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("op", [S.add, S.mul, S.pow, S.maximum, S.fmod, S.lt, S.logical_and,
                                lambda a, b: S.where(a > 0, a, b), lambda a, b: S.clamp(a, b, b + 1)])
def test_broadcast_error_names_op_and_both_shapes(op):
    with pytest.raises(ShapeError) as info:
        op(S.ones(2, 3), S.ones(4))
    msg = str(info.value)
    assert "(2, 3)" in msg and "(4,)" in msg and "broadcast" in msg
    name = getattr(op, "__name__", "")
    if name != "<lambda>":
        assert msg.startswith(name)


def test_requires_grad_on_int_tensor_is_a_clear_dtype_error():
    with pytest.raises(DTypeError, match="floating-point"):
        S.tensor([1, 2]).requires_grad_()
    with pytest.raises(DTypeError, match="floating-point"):
        S.tensor([1, 2], requires_grad=True)


@pytest.mark.parametrize("call, error, text", [
    (lambda: S.tensor([1.0]) & S.tensor([1.0]), DTypeError, "bitwise_and"),
    (lambda: ~S.tensor([1.0]), DTypeError, "bitwise_not"),
    (lambda: S.where(S.tensor([1.0]), S.tensor([1.0]), 0.0), DTypeError, "condition must be a bool"),
    (lambda: A.gelu(S.tensor([1.0]), approximate="fast"), ValueError, "approximate"),
    (lambda: A.gelu(S.tensor([1, 2])), DTypeError, "floating-point"),
    (lambda: A.hardtanh(S.tensor([1.0]), 1.0, -1.0), ValueError, "max_val"),
    (lambda: S.clamp(S.tensor([1.0])), ValueError, "at least one of min or max"),
    (lambda: S.tensor([2, 3]) ** -1, DTypeError, "negative integer powers"),
    (lambda: S.tensor([2, 3]) // S.tensor([1, 0]), ZeroDivisionError, "division by zero"),
    (lambda: S.remainder(S.tensor([2, 3]), 0), ZeroDivisionError, "division by zero"),
    (lambda: S.relu(S.tensor([True])), DTypeError, "bool"),
    (lambda: S.abs(S.tensor([True])), DTypeError, "bool"),
    (lambda: -S.tensor([True]), DTypeError, "logical_not"),
    (lambda: S.tensor([1.0]) + "a", DTypeError, "str"),
    (lambda: S.div(S.tensor([1.0]), 2, rounding_mode="round"), ValueError, "rounding_mode"),
])
def test_clear_errors(call, error, text):
    with pytest.raises(error, match=text) as info:
        call()
    assert isinstance(info.value, (SuanliError, ValueError))    # never a raw NumPy failure
    assert "numpy" not in str(info.value).lower()


@pytest.mark.parametrize("call", [
    lambda: S.relu(S.tensor([True])), lambda: S.abs(S.tensor([True])), lambda: S.floor(S.tensor([True])),
    lambda: A.gelu(S.tensor([1, 2])), lambda: A.silu(S.tensor([1], dtype=S.uint8)),
    lambda: A.leaky_relu(S.tensor([1])), lambda: A.softplus(S.tensor([1])), lambda: A.elu(S.tensor([1])),
    lambda: A.hardswish(S.tensor([1])), lambda: S.tensor([True]) ** S.tensor([True]),
    lambda: S.clamp(S.tensor([True]), S.tensor(False), S.tensor(True)),
    lambda: S.where(S.tensor([1.0]), S.tensor([1.0]), 0.0),
], ids=lambda f: "")
def test_wrong_dtypes_raise_even_without_shape_checking(call):
    S._state.check_shapes = False           # the fixture restores it
    with pytest.raises(DTypeError):
        call()


# ------------------------------------------------------------------------------------ misc behaviour
def test_erf_kernel_accuracy_against_math_erf():
    x = np.concatenate([np.linspace(-7, 7, 20001), 10.0 ** np.linspace(-300, 0, 301), [0.75, 6.0]])
    ref = np.array([math.erf(v) for v in x])
    got = S.erf(S.tensor(x)).numpy()
    ulps = np.abs(got - ref) / np.spacing(np.abs(ref))
    assert ulps.max() <= 8, ulps.max()
    got32 = S.erf(S.tensor(x, dtype=S.float32)).numpy()
    ref32 = np.array([math.erf(float(v)) for v in x.astype(np.float32)]).astype(np.float32)
    ulps32 = np.abs(got32.astype(np.float64) - ref32) / np.spacing(np.abs(ref32)).astype(np.float64)
    assert ulps32[np.abs(ref32) > 1e-30].max() <= 8
    special = S.erf(S.tensor([np.inf, -np.inf, np.nan, 0.0, -0.0])).tolist()
    assert special[:2] == [1.0, -1.0] and math.isnan(special[2]) and special[3:] == [0.0, 0.0]


def test_unary_float_math_on_ints_and_bools_uses_default_float():
    assert S.exp(S.tensor([0, 1])).dtype == S.float32
    assert S.log(S.tensor([True])).dtype == S.float32
    S.set_default_dtype(S.float64)
    assert S.tanh(S.tensor([1])).dtype == S.float64


def test_tensor_dunders_and_methods():
    x = S.tensor([-1.5, 2.0])
    assert abs(x).tolist() == [1.5, 2.0]
    assert (+x) is x
    assert (x ** 2).tolist() == [2.25, 4.0] and (2 ** S.tensor([3])).tolist() == [8]
    assert (x % 1.5).tolist() == [0.0, 0.5] and (5 % S.tensor([3])).tolist() == [2]
    assert (x // 1).tolist() == [-2.0, 2.0] and (7 // S.tensor([2])).tolist() == [3]
    assert (~S.tensor([True, False])).tolist() == [False, True]
    assert (S.tensor([1, 2]) | 4).tolist() == [5, 6] and (S.tensor([3]) ^ S.tensor([1])).tolist() == [2]
    assert x.clip(-1, 1).tolist() == [-1.0, 1.0] and x.clamp_min(0).tolist() == [0.0, 2.0]
    assert x.relu().tolist() == [0.0, 2.0] and x.sign().tolist() == [-1.0, 1.0]
    assert x.isfinite().tolist() == [True, True] and S.tensor([np.nan]).isnan().tolist() == [True]
    assert S.tensor([np.inf, 1.0]).isinf().tolist() == [True, False]
    assert S.isnan(S.tensor([1, 2])).tolist() == [False, False]
    assert x.maximum(S.tensor(0.0)).tolist() == [0.0, 2.0] and x.minimum(S.tensor(0.0)).tolist() == [-1.5, 0.0]
    assert x.absolute().tolist() == [1.5, 2.0] and x.fix().tolist() == [-1.0, 2.0]


def test_inplace_variants():
    x = S.tensor([-1.5, 0.25, 2.0])
    x.clamp_(-1, 1)
    assert x.tolist() == [-1.0, 0.25, 1.0]
    x.relu_()
    assert x.tolist() == [0.0, 0.25, 1.0]
    y = S.tensor([-2.0, 3.0])
    assert A.relu(y, inplace=True) is y and y.tolist() == [0.0, 3.0]
    z = S.tensor([-2.0, 3.0])
    assert A.leaky_relu(z, 0.5, inplace=True) is z and z.tolist() == [-1.0, 3.0]
    p = S.tensor([1.0, 2.0])
    p.pow_(2)
    assert p.tolist() == [1.0, 4.0]
    w = S.tensor([1.0, -2.0], requires_grad=True)
    v = w * 1
    v.relu_()                                            # relu saves its output: in-place is fine
    v.sum().backward()
    assert w.grad.tolist() == [1.0, 0.0]


def test_double_backward_through_activation_matches_torch():
    xs = np.array([-1.3, -0.2, 0.4, 2.1])
    for sfn, tfn in ((A.gelu, F.gelu), (A.silu, F.silu), (A.softplus, F.softplus), (S.sigmoid, torch.sigmoid),
                     (A.elu, F.elu), (A.mish, F.mish), (A.logsigmoid, F.logsigmoid),
                     (lambda t: t ** 3, lambda t: t ** 3), (S.erf, torch.erf)):
        x = S.tensor(xs, requires_grad=True)
        (g,) = S.autograd.grad(sfn(x).sum(), x, create_graph=True)
        (gg,) = S.autograd.grad(g.sum(), x)
        tx = torch.tensor(xs, requires_grad=True)
        (tg,) = torch.autograd.grad(tfn(tx).sum(), tx, create_graph=True)
        (tgg,) = torch.autograd.grad(tg.sum(), tx)
        np.testing.assert_allclose(g.detach().numpy(), tg.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gg.numpy(), tgg.numpy(), rtol=1e-9, atol=1e-12)


def test_activations_exported_from_ops_and_top_level():
    for name in suanli.ops.activation.__all__:
        assert name in suanli.ops.elementwise.__all__
        assert getattr(suanli, name) is getattr(suanli.ops.activation, name)


# ------------------------------------------------------------------------------------ property
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, max_dims=4, max_side=3), seed=st.integers(0, 10))
def test_broadcasting_property(shapes, seed):
    sa, sb, sc = shapes.input_shapes
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    c = rng.random(sc) < 0.5
    x, y = S.tensor(a, requires_grad=True), S.tensor(b, requires_grad=True)
    cond = S.tensor(c)
    outs = [S.add(x, y), S.mul(x, y), S.where(cond, x, y)]
    for out, ref in zip(outs, [a + b, a * b, np.where(c, a, b)]):
        assert out.shape == ref.shape
        np.testing.assert_array_equal(out.detach().numpy(), ref)
    gs = [rng.standard_normal(o.shape) for o in outs]
    gx, gy = S.autograd.grad(outs, [x, y], [S.tensor(g) for g in gs])
    assert gx.shape == sa and gy.shape == sb
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    touts = [tx + ty, tx * ty, torch.where(torch.tensor(c), tx, ty)]
    tgx, tgy = torch.autograd.grad(touts, [tx, ty], [torch.tensor(g) for g in gs])
    np.testing.assert_allclose(gx.numpy(), tgx.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gy.numpy(), tgy.numpy(), rtol=1e-12, atol=1e-12)
