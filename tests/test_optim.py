"""suanli.optim against torch.optim: parameter trajectories, state dicts (both ways), half precision,
EMA against torch's AveragedModel, gradient clipping against torch.nn.utils, and clear errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import suanli
from suanli import optim
from suanli.nn.utils import clip_grad_norm_, clip_grad_value_

# ----------------------------------------------------------------------------------------------------
# a small nonconvex problem: a tanh MLP regression, gradients by each library's own autograd
# ----------------------------------------------------------------------------------------------------

_rng = np.random.default_rng(1234)
X = _rng.normal(size=(10, 4))
Y = _rng.normal(size=(10, 3))
INIT = [_rng.normal(scale=0.7, size=s) for s in ((4, 6), (6,), (6, 3), (3,))]


def loss_suanli(ps: list[suanli.Tensor]) -> suanli.Tensor:
    w1, b1, w2, b2 = ps
    x, y = suanli.tensor(X, dtype=w1.dtype), suanli.tensor(Y, dtype=w1.dtype)
    out = suanli.tanh(x @ w1 + b1) @ w2 + b2
    return ((out - y) ** 2).mean() + 0.1 * suanli.sin(3 * w1).sum()


def loss_torch(ps: list[torch.Tensor]) -> torch.Tensor:
    w1, b1, w2, b2 = ps
    x, y = torch.tensor(X, dtype=w1.dtype), torch.tensor(Y, dtype=w1.dtype)
    out = torch.tanh(x @ w1 + b1) @ w2 + b2
    return ((out - y) ** 2).mean() + 0.1 * torch.sin(3 * w1).sum()


def make_params(dtype: str = "float64", init=INIT):
    ours = [suanli.tensor(a, dtype=dtype, requires_grad=True) for a in init]
    theirs = [torch.tensor(a, dtype=getattr(torch, dtype), requires_grad=True) for a in init]
    return ours, theirs


def groups(ps, second: dict) -> list[dict]:
    """Two parameter groups: the first layer with the defaults, the second with its own settings."""
    return [{"params": ps[:2]}, {"params": ps[2:], **second}]


def train(opt, ps, loss_fn, steps: int) -> list[np.ndarray]:
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(ps).backward()
        opt.step()
    return [np.array(p.detach().numpy(), dtype=np.float64) for p in ps]


def assert_params_close(a, b, rtol, atol):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# (name, defaults, second group's overrides)
CASES = [
    ("SGD", {"lr": 0.05}, {"lr": 0.02}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, {"lr": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, {"lr": 0.02, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}, {"lr": 0.02}),
    ("SGD", {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.05, "maximize": True}, {"lr": 0.005}),
    ("Adam", {"lr": 0.01}, {"lr": 0.003}),
    ("Adam", {"lr": 0.01, "amsgrad": True}, {"lr": 0.02}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.003, "weight_decay": 0.0}),
    ("Adam", {"lr": 0.005, "maximize": True, "betas": (0.8, 0.99)}, {"lr": 0.002}),
    ("Adam", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-3, "amsgrad": True, "weight_decay": 0.05},
     {"lr": 0.02, "betas": (0.95, 0.999)}),
    ("AdamW", {"lr": 0.01}, {"lr": 0.003}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.2, "amsgrad": True}, {"lr": 0.02, "weight_decay": 0.0}),
    ("AdamW", {"lr": 0.005, "maximize": True}, {"lr": 0.002, "betas": (0.7, 0.9)}),
    ("RMSprop", {"lr": 0.01}, {"lr": 0.003}),
    ("RMSprop", {"lr": 0.01, "centered": True}, {"lr": 0.003}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.9}, {"lr": 0.002, "alpha": 0.9}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.5, "centered": True, "weight_decay": 0.1}, {"lr": 0.01}),
    ("RMSprop", {"lr": 0.002, "alpha": 0.9, "eps": 1e-4, "maximize": True}, {"lr": 0.001}),
    ("Adagrad", {"lr": 0.05}, {"lr": 0.02}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.01}, {"lr": 0.1}),
    ("Adagrad", {"lr": 0.05, "weight_decay": 0.1, "initial_accumulator_value": 0.1}, {"lr": 0.02}),
    ("Adagrad", {"lr": 0.02, "eps": 1e-5, "maximize": True}, {"lr": 0.01, "lr_decay": 0.1}),
]


def _ids(case):
    name, kw, second = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in kw.items() if k != "lr")


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_trajectory_matches_torch_float64(case):
    name, kw, second = case
    ours, theirs = make_params("float64")
    opt = getattr(optim, name)(groups(ours, second), **kw)
    topt = getattr(torch.optim, name)(groups(theirs, second), **kw)
    for _ in range(5):                                   # 5 x 10 = 50 steps, compared along the way
        a = train(opt, ours, loss_suanli, 10)
        b = train(topt, theirs, loss_torch, 10)
        assert_params_close(a, b, rtol=1e-10, atol=1e-10)
    assert not np.allclose(a[0], INIT[0])                # it moved


@pytest.mark.parametrize("name,kw", [("SGD", {"lr": 0.05, "momentum": 0.9}), ("Adam", {"lr": 0.01}),
                                     ("AdamW", {"lr": 0.01, "amsgrad": True}),
                                     ("RMSprop", {"lr": 0.005, "centered": True, "momentum": 0.5}),
                                     ("Adagrad", {"lr": 0.05})])
def test_trajectory_matches_torch_float32(name, kw):
    ours, theirs = make_params("float32")
    opt = getattr(optim, name)(groups(ours, {"lr": kw["lr"] / 2}), **kw)
    topt = getattr(torch.optim, name)(groups(theirs, {"lr": kw["lr"] / 2}), **kw)
    a = train(opt, ours, loss_suanli, 50)
    b = train(topt, theirs, loss_torch, 50)
    assert_params_close(a, b, rtol=1e-4, atol=1e-5)
    assert all(p.dtype == suanli.float32 for p in ours)
    assert all(t.dtype == suanli.float32 for s in opt.state.values() for t in s.values()
               if isinstance(t, suanli.Tensor))


def test_update_functions_are_pure_numpy():
    """The maths is usable on plain arrays (what the classes call), e.g. adam_update in place."""
    p, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    m, v = np.zeros(2), np.zeros(2)
    optim.adam_update(p, g, m, v, None, 1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01,
                      decoupled_weight_decay=True)
    tp = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    tp.grad = torch.tensor([0.5, 0.25], dtype=torch.float64)
    torch.optim.AdamW([tp], lr=0.1, weight_decay=0.01).step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(g, [0.5, 0.25])          # the gradient is only read


# ----------------------------------------------------------------------------------------------------
# step mechanics
# ----------------------------------------------------------------------------------------------------

def test_step_bumps_version_skips_missing_grads_and_zero_grad():
    a = suanli.tensor([1.0, 2.0], requires_grad=True)
    b = suanli.tensor([3.0], requires_grad=True)
    opt = optim.Adam([a, b], lr=0.1)
    (a * a).sum().backward()
    va, vb = a._version, b._version
    opt.step()
    assert a._version == va + 1 and b._version == vb        # b has no gradient: untouched, no state
    assert b not in opt.state and opt.state[a]["step"] == 1
    assert b.tolist() == [3.0]
    opt.zero_grad(set_to_none=False)
    assert a.grad.tolist() == [0.0, 0.0] and b.grad is None
    opt.zero_grad()
    assert a.grad is None


def test_version_bump_catches_use_of_updated_parameter_in_backward():
    """An update between forward and backward must be detected like any in-place op."""
    w = suanli.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    w.grad = suanli.tensor([1.0, 1.0])
    y = (w.exp()).sum()                 # exp saves its output, mul saves w
    z = (w * w).sum()
    opt.step()
    y.backward()                        # exp's saved output is not w: fine
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()


def test_closure_is_called_with_grad_and_its_loss_returned():
    w = suanli.tensor([1.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.5)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with suanli.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 1.0 and w.item() == 0.0


def test_named_parameters_add_param_group_and_hooks():
    a = suanli.zeros(2, requires_grad=True)
    b = suanli.zeros(3, requires_grad=True)
    opt = optim.SGD([("a", a)], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [b], "lr": 0.5})
    assert opt.param_groups[0]["param_names"] == ["a"]
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.5
    calls = []
    h1 = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    a.grad, b.grad = suanli.ones(2), suanli.ones(3)
    opt.step()
    h1.remove()
    opt.step()
    assert calls == ["pre", "post", "post"]
    assert b.tolist() == pytest.approx([-0.5 - 0.5 * 1.9] * 3)
    assert "Parameter Group 1" in repr(opt) and "lr: 0.5" in repr(opt)


# ----------------------------------------------------------------------------------------------------
# state dicts: our round trip through JSON, and torch -> suanli -> torch
# ----------------------------------------------------------------------------------------------------

SD_CASES = [("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
            ("Adam", {"lr": 0.01, "amsgrad": True, "betas": (0.8, 0.99)}),
            ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
            ("RMSprop", {"lr": 0.005, "momentum": 0.5, "centered": True}),
            ("Adagrad", {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1})]


def through_json(state_dict):
    """What a safetensors checkpoint does: tensors to arrays, everything else to JSON text and back.
    Fails if the state dict holds anything but tensors, numbers, bools, None, strings, lists, dicts."""
    arrays = []

    def strip(x):
        if isinstance(x, suanli.Tensor):
            arrays.append(np.array(x.numpy(), copy=True))
            return {"__tensor__": len(arrays) - 1}
        if isinstance(x, dict):
            return {str(k): strip(v) for k, v in x.items()}
        if isinstance(x, list):
            return [strip(v) for v in x]
        assert x is None or isinstance(x, (bool, int, float, str)), f"not JSON-able: {type(x)}"
        return x

    def restore(x):
        if isinstance(x, dict):
            if "__tensor__" in x:
                return suanli.tensor(arrays[x["__tensor__"]])
            return {k: restore(v) for k, v in x.items()}
        if isinstance(x, list):
            return [restore(v) for v in x]
        return x

    return restore(json.loads(json.dumps(strip(state_dict))))


@pytest.mark.parametrize("name,kw", SD_CASES, ids=[c[0] for c in SD_CASES])
def test_state_dict_round_trip_is_exact(name, kw):
    second = {"lr": kw["lr"] / 2}
    ours, _ = make_params()
    opt = getattr(optim, name)(groups(ours, second), **kw)
    straight = train(opt, ours, loss_suanli, 50)

    ours, _ = make_params()
    opt = getattr(optim, name)(groups(ours, second), **kw)
    train(opt, ours, loss_suanli, 20)
    saved = through_json(opt.state_dict())
    values = [p.detach().numpy().copy() for p in ours]
    fresh, _ = make_params(init=values)
    opt2 = getattr(optim, name)(groups(fresh, {"lr": 123.0}), **kw)   # hyper-parameters come from the state
    opt2.load_state_dict(saved)
    assert opt2.param_groups[1]["lr"] == kw["lr"] / 2
    resumed = train(opt2, fresh, loss_suanli, 30)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def _to_suanli(x):
    if isinstance(x, torch.Tensor):
        return suanli.tensor(x.detach().numpy())
    if isinstance(x, dict):
        return {k: _to_suanli(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_suanli(v) for v in x)
    return x


def _to_torch(x):
    if isinstance(x, suanli.Tensor):
        return torch.tensor(np.array(x.numpy()))
    if isinstance(x, dict):
        return {k: _to_torch(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_to_torch(v) for v in x]
    return x


@pytest.mark.parametrize("name,kw", SD_CASES, ids=[c[0] for c in SD_CASES])
def test_torch_state_dict_loads_and_ours_loads_into_torch(name, kw):
    second = {"lr": kw["lr"] / 2}
    _, theirs = make_params()
    topt = getattr(torch.optim, name)(groups(theirs, second), **kw)
    train(topt, theirs, loss_torch, 20)
    ours, _ = make_params(init=[t.detach().numpy().copy() for t in theirs])
    opt = getattr(optim, name)(groups(ours, second), **kw)
    opt.load_state_dict(_to_suanli(topt.state_dict()))
    assert sorted(opt.state_dict()["param_groups"][0]) == sorted(topt.state_dict()["param_groups"][0])
    a = train(opt, ours, loss_suanli, 15)
    b = train(topt, theirs, loss_torch, 15)
    assert_params_close(a, b, rtol=1e-10, atol=1e-10)

    # and back: torch continues from our state
    _, theirs2 = make_params(init=a)
    topt2 = getattr(torch.optim, name)(groups(theirs2, second), **kw)
    topt2.load_state_dict(_to_torch(opt.state_dict()))
    a = train(opt, ours, loss_suanli, 15)
    b = train(topt2, theirs2, loss_torch, 15)
    assert_params_close(a, b, rtol=1e-10, atol=1e-10)


def test_load_state_dict_errors():
    ours, _ = make_params()
    opt = optim.Adam(groups(ours, {"lr": 0.1}))
    train(opt, ours, loss_suanli, 1)
    sd = opt.state_dict()
    one_group = optim.Adam(ours)
    with pytest.raises(ValueError, match=r"the state dict has 2 parameter group\(s\), this optimizer has 1"):
        one_group.load_state_dict(sd)
    fewer = optim.Adam([{"params": ours[:1]}, {"params": ours[2:]}])
    with pytest.raises(ValueError, match=r"parameter group 0 has 2 parameter\(s\) in the state dict, 1 in"):
        fewer.load_state_dict(sd)
    swapped = optim.Adam([{"params": ours[1::-1]}, {"params": ours[2:]}])     # (6,) where (4, 6) was
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(4, 6\), but the "
                                         r"parameter has shape \(6,\)"):
        swapped.load_state_dict(sd)
    with pytest.raises(ValueError, match="expected a dict with keys 'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    bad = through_json(sd)
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="Adam: lr must be >= 0, got -1.0"):
        opt.load_state_dict(bad)


# ----------------------------------------------------------------------------------------------------
# low precision: float32 state and maths for float16/bfloat16 parameters
# ----------------------------------------------------------------------------------------------------

def _adam_reference(p0: np.ndarray, grads: list[np.ndarray], half, lr: float, eps: float) -> np.ndarray:
    """Adam with float32 state and maths, the parameter rounded to ``half`` after every step."""
    p = p0.astype(half)
    m = np.zeros(p.shape, np.float32)
    v = np.zeros(p.shape, np.float32)
    b1, b2 = 0.9, 0.999
    for t, g in enumerate(grads, 1):
        g = g.astype(half).astype(np.float32)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v) / np.float32(math.sqrt(1 - b2 ** t)) + np.float32(eps)
        p = (p.astype(np.float32) - np.float32(lr / (1 - b1 ** t)) * m / denom).astype(half)
    return p


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_adam_keeps_eps(dtype):
    half = suanli.dtypes.as_dtype(dtype)
    grads = [np.full(4, 1e-7 * (k + 1), np.float32) for k in range(5)]    # v ~ 1e-14: 0 in float16
    w = suanli.tensor(np.ones(4), dtype=dtype, requires_grad=True)
    opt = optim.Adam([w], lr=1e-2)
    for g in grads:
        w.grad = suanli.tensor(g, dtype=dtype)
        opt.step()
    assert w.dtype == half
    assert opt.state[w]["exp_avg"].dtype == suanli.float32 and opt.state[w]["exp_avg_sq"].dtype == suanli.float32
    got = np.array(w.detach().numpy(), dtype=np.float32)
    want = _adam_reference(np.ones(4, np.float32), grads, half, 1e-2, 1e-8).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got).all() and (got < 1).all()
    # eps is visible: without it the step would be a full lr per step
    no_eps = _adam_reference(np.ones(4, np.float32), grads, half, 1e-2, 0.0).astype(np.float32)
    assert not np.array_equal(got, no_eps)
    if dtype == "float16":   # torch does the maths in float16: v underflows, eps rounds to 0 -> not finite
        tw = torch.ones(4, dtype=torch.float16, requires_grad=True)
        topt = torch.optim.Adam([tw], lr=1e-2)
        for g in grads:
            tw.grad = torch.tensor(g).half()
            topt.step()
        assert not torch.isfinite(tw).all()


def test_half_precision_sgd_momentum_state_is_float32():
    w = suanli.tensor([1.0, 2.0], dtype="bfloat16", requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    for _ in range(3):
        w.grad = suanli.tensor([1e-3, 1e-3], dtype="bfloat16")
        opt.step()
    assert opt.state[w]["momentum_buffer"].dtype == suanli.float32
    assert w.dtype == suanli.bfloat16
    sd = through_json(opt.state_dict())            # float32 state survives a round trip
    opt2 = optim.SGD([w], lr=0.1, momentum=0.9)
    opt2.load_state_dict(sd)
    assert opt2.state[w]["momentum_buffer"].dtype == suanli.float32


# ----------------------------------------------------------------------------------------------------
# bad input: clear errors
# ----------------------------------------------------------------------------------------------------

def test_bad_hyper_parameters():
    w = suanli.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"^Adam: lr must be >= 0, got -1$"):
        optim.Adam([w], lr=-1)
    with pytest.raises(ValueError, match=r"Adam: betas\[1\] must be in \[0, 1\), got 1.0"):
        optim.Adam([w], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"AdamW: betas\[0\] must be in \[0, 1\), got -0.1"):
        optim.AdamW([w], betas=(-0.1, 0.9))
    with pytest.raises(ValueError, match="Adam: betas must be a pair"):
        optim.Adam([w], betas=(0.9,))
    with pytest.raises(ValueError, match="SGD: nesterov momentum requires a momentum > 0 and zero dampening"):
        optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="SGD: momentum must be >= 0, got -0.5"):
        optim.SGD([w], momentum=-0.5)
    with pytest.raises(ValueError, match="RMSprop: alpha must be >= 0, got -1"):
        optim.RMSprop([w], alpha=-1)
    with pytest.raises(ValueError, match="Adagrad: lr_decay must be >= 0"):
        optim.Adagrad([w], lr_decay=-1)
    with pytest.raises(ValueError, match="Adam: eps must be a number, got '1e-8'"):
        optim.Adam([w], eps="1e-8")
    with pytest.raises(ValueError, match="Adam: lr must be >= 0, got -0.1"):      # a group's own value
        optim.Adam([{"params": [w], "lr": -0.1}])
    with pytest.raises(ValueError, match="differentiable=True is not supported"):
        optim.Adam([w], differentiable=True)
    with pytest.raises(ValueError, match="SGD: lr must be a Python number"):
        optim.SGD([w], lr=suanli.tensor(0.1))


def test_bad_parameters():
    w = suanli.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="SGD: got an empty parameter list"):
        optim.SGD([], lr=0.1)
    gen = (p for p in [w])
    list(gen)
    with pytest.raises(ValueError, match="a generator can only be consumed once"):
        optim.Adam(gen)
    with pytest.raises(ValueError, match="Adam: can't optimize a non-leaf Tensor"):
        optim.Adam([w * 2])
    with pytest.raises(TypeError, match="params should be an iterable of Tensors or dicts, but got a Tensor"):
        optim.Adam(w)
    with pytest.raises(TypeError, match="can only optimize Tensors, but parameter 1 of the group is a ndarray"):
        optim.Adam([w, np.zeros(2)])
    with pytest.raises(TypeError, match="can only optimize floating-point tensors"):
        optim.Adam([suanli.tensor([1, 2])])
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optim.Adam([{"params": [w]}, {"params": [w]}])
    with pytest.raises(ValueError, match="contains the same parameter twice"):
        optim.Adam([w, w])
    with pytest.raises(TypeError, match="use a list"):
        optim.Adam({w})


# ----------------------------------------------------------------------------------------------------
# EMA against torch.optim.swa_utils.AveragedModel(get_ema_multi_avg_fn)
# ----------------------------------------------------------------------------------------------------

def test_ema_matches_torch_averaged_model():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    rng = np.random.default_rng(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()
    model = suanli.nn.Sequential(suanli.nn.Linear(3, 4), suanli.nn.BatchNorm1d(4)).double()
    tparams = list(tmodel.parameters()) + [b for b in tmodel.buffers() if b.is_floating_point()]
    params = [p for _, p in model.named_parameters()] + [b for _, b in model.named_buffers()
                                                         if b.is_floating_point()]
    assert [tuple(p.shape) for p in params] == [tuple(p.shape) for p in tparams]

    def set_all(values):
        with torch.no_grad():
            for tp, p, v in zip(tparams, params, values):
                tp.copy_(torch.tensor(v))
                p._data[...] = v

    set_all([rng.normal(size=tuple(p.shape)) for p in params])
    averaged = AveragedModel(tmodel, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema = optim.EMA(model, decay=0.9)
    for _ in range(6):
        set_all([rng.normal(size=tuple(p.shape)) for p in params])
        averaged.update_parameters(tmodel)
        ema.update()
    want = list(averaged.module.parameters()) + [b for b in averaged.module.buffers() if b.is_floating_point()]
    got = [s for s, t in zip(ema.shadow, ema.tensors) if t.is_floating_point()]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.detach().numpy(), rtol=1e-14, atol=1e-15)

    # state dict round trip, copy_to and the swap-in context
    ema2 = optim.EMA(model, decay=0.5)
    ema2.load_state_dict(through_json(ema.state_dict()))
    assert ema2.decay == 0.9 and ema2.num_updates == 6
    before = [np.array(p.detach().numpy()) for p in params]
    with ema2.average_parameters():
        np.testing.assert_array_equal(model[0].weight.detach().numpy(), got[0].numpy())
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.detach().numpy(), b)
    fresh = suanli.nn.Sequential(suanli.nn.Linear(3, 4), suanli.nn.BatchNorm1d(4)).double()
    ema2.copy_to(fresh)
    np.testing.assert_array_equal(fresh[1].running_mean.numpy(), got[-2].numpy())


def test_ema_plain_tensors_half_precision_and_errors():
    w = suanli.tensor([1.0, 2.0], dtype="float16", requires_grad=True)
    ema = optim.EMA([w], decay=0.999)
    assert ema.shadow[0].dtype == suanli.float32           # averages of half tensors kept in float32
    avg = None
    for k in range(4):
        with suanli.no_grad():
            w.add_(0.25)
        ema.update()
        x = w.detach().numpy().astype(np.float32)
        avg = x if avg is None else avg + np.float32(0.001) * (x - avg)
    np.testing.assert_array_equal(ema.shadow[0].numpy(), avg)     # in float16 the 1e-3 steps would be lost
    assert not np.array_equal(avg.astype(np.float16).astype(np.float32), ema.shadow[0].numpy())
    with pytest.raises(ValueError, match=r"EMA: decay must be in \[0, 1\], got 1.5"):
        optim.EMA([w], decay=1.5)
    with pytest.raises(ValueError, match="EMA.load_state_dict: the state has 2 averages, this EMA tracks 1"):
        ema.load_state_dict({"shadow": [suanli.zeros(2), suanli.zeros(2)]})
    with pytest.raises(ValueError, match=r"average #0 has shape \(3,\), the tracked tensor has shape \(2,\)"):
        ema.load_state_dict({"shadow": [suanli.zeros(3)]})


# ----------------------------------------------------------------------------------------------------
# gradient clipping against torch.nn.utils
# ----------------------------------------------------------------------------------------------------

def _grads_pair(dtype="float64", scale=1.0):
    rng = np.random.default_rng(7)
    gs = [rng.normal(size=s) * scale for s in ((3, 4), (5,), (2, 2, 2))]
    ours = [suanli.zeros(g.shape, dtype=dtype, requires_grad=True) for g in gs]
    theirs = [torch.zeros(g.shape, dtype=getattr(torch, dtype), requires_grad=True) for g in gs]
    for p, t, g in zip(ours, theirs, gs):
        p.grad = suanli.tensor(g, dtype=dtype)
        t.grad = torch.tensor(g, dtype=getattr(torch, dtype))
    no_grad = suanli.zeros(2, requires_grad=True)               # ignored: no gradient
    return ours + [no_grad], theirs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(dtype, norm_type, max_norm):
    ours, theirs = _grads_pair(dtype)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    rtol = 1e-12 if dtype == "float64" else 1e-6
    assert total.dtype == suanli.dtypes.as_dtype(dtype) and total.shape == ()
    np.testing.assert_allclose(total.item(), ttotal.item(), rtol=rtol)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=1e-7)


def test_clip_grad_norm_nonfinite_and_value():
    ours, theirs = _grads_pair()
    ours[0].grad._data[0, 0] = np.nan
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from `parameters` is "
                                           "non-finite, so it cannot be clipped"):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    total = clip_grad_norm_(ours, 1.0)                        # torch: everything becomes NaN
    assert math.isnan(total.item()) and np.isnan(ours[1].grad.numpy()).all()
    assert clip_grad_norm_([suanli.zeros(2, requires_grad=True)], 1.0).item() == 0.0

    ours, theirs = _grads_pair()
    v0 = ours[0].grad._version
    clip_grad_value_(ours, 0.3)
    torch.nn.utils.clip_grad_value_(theirs, 0.3)
    for p, t in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())
    assert ours[0].grad._version == v0 + 1
    with pytest.raises(ValueError, match="clip_value must be >= 0"):
        clip_grad_value_(ours, -1.0)


def test_clip_grad_norm_half_precision_norm_in_float32():
    w = suanli.zeros(3, dtype="float16", requires_grad=True)
    w.grad = suanli.tensor([6e4, 6e4, 6e4], dtype="float16")      # squares overflow float16
    total = clip_grad_norm_([w], 1.0)
    assert total.dtype == suanli.float32 and total.item() == pytest.approx(math.sqrt(3) * 6e4, rel=1e-3)
    assert w.grad.dtype == suanli.float16
    np.testing.assert_allclose(w.grad.numpy().astype(np.float32), [1 / math.sqrt(3)] * 3, rtol=1e-3)
