"""suanli.amp: the autocast policy against torch.autocast("cpu"), gradients to float32 master weights,
GradScaler against torch.amp.GradScaler("cpu") (scale trajectory, skipped steps, state_dict), mixed
precision training tracking its float32 loss curve, and the tensor-statistics monitor on crafted
tensors."""
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import suanli
import suanli.nn.functional as F
from suanli import nn, optim
from suanli.amp import GradScaler, PrecisionWarning, TensorStats, autocast, policy, register_stat_hooks
from suanli.ops.registry import apply, registry

LOW = ["bfloat16", "float16"]
# (rtol, atol) for values computed in a 16-bit type: a couple of ulps at magnitude ~1
TOL = {"bfloat16": (2e-2, 2e-2), "float16": (4e-3, 2e-3)}


@pytest.fixture(autouse=True)
def _no_autocast_leak():
    yield
    assert suanli._state.autocast is None, "a test left an autocast region open"
    suanli._state.autocast = None


def S(a):
    return suanli.tensor(a)


def T(a):
    return torch.tensor(a)


def N(t):
    """suanli or torch tensor -> float64 NumPy array."""
    return t.detach().float().numpy().astype(np.float64)


def tdtype(name):
    return getattr(torch, name)


def sdtype(name):
    return getattr(suanli, name)


def data(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return dict(x=f(4, 8), w=f(5, 8), b=f(5), img=f(2, 3, 8, 8), k=f(4, 3, 3, 3), kb=f(4),
                g=f(5), t=rng.integers(0, 5, 4), q=f(2, 3, 6, 8))


# ======================================================================================= policy table
def test_policy_classifies_every_primitive():
    missing = policy.unclassified()
    assert not missing, (f"primitives without an autocast policy: {missing}; add each to one of the lists in "
                         "suanli/amp/policy.py (lower / float32 / promote)")
    stale = sorted(set(policy.POLICY) - set(registry.names()))
    assert not stale, f"policy entries for primitives that no longer exist: {stale}"
    assert set(policy.POLICY.values()) <= set(policy.KINDS)
    assert policy.kind_of("no_such_primitive") == policy.PROMOTE          # the documented default


def test_policy_table_text():
    text = policy.table()
    assert text.splitlines()[0].startswith("lower   : ") and "matmul" in text.splitlines()[0]
    assert "softmax" in text.splitlines()[1] and "relu" in text.splitlines()[2]


# =========================================================================== dtypes and values vs torch
# Composites whose output dtype and value under autocast must equal torch.autocast("cpu")'s.
MATCHING = {
    "matmul": lambda m, F, d: d["x"] @ d["w"].T,
    "linear_nobias": lambda m, F, d: F.linear(d["x"], d["w"]),
    "conv2d_nobias": lambda m, F, d: F.conv2d(d["img"], d["k"], padding=1),
    "einsum": lambda m, F, d: m.einsum("ij,kj->ik", d["x"], d["w"]),
    "softmax": lambda m, F, d: F.softmax(F.linear(d["x"], d["w"]), -1),
    "log_softmax": lambda m, F, d: F.log_softmax(F.linear(d["x"], d["w"]), -1),
    "layer_norm": lambda m, F, d: F.layer_norm(F.linear(d["x"], d["w"]), (5,), d["g"], d["b"]),
    "cross_entropy": lambda m, F, d: F.cross_entropy(F.linear(d["x"], d["w"]), d["t"]),
    "nll_loss": lambda m, F, d: F.nll_loss(F.log_softmax(F.linear(d["x"], d["w"]), 1), d["t"]),
    "mse_loss": lambda m, F, d: F.mse_loss(F.linear(d["x"], d["w"]), d["x"][:, :5]),
    "l1_loss": lambda m, F, d: F.l1_loss(F.linear(d["x"], d["w"]), d["x"][:, :5]),
    "bce_with_logits": lambda m, F, d: F.binary_cross_entropy_with_logits(F.linear(d["x"], d["w"]),
                                                                           d["x"][:, :5].sigmoid()),
    "binary_cross_entropy": lambda m, F, d: F.binary_cross_entropy(F.linear(d["x"], d["w"]).sigmoid(),
                                                                    d["x"][:, :5].sigmoid()),
    "kl_div": lambda m, F, d: F.kl_div(F.log_softmax(F.linear(d["x"], d["w"]), 1), d["x"][:, :5].softmax(1),
                                       reduction="batchmean"),
    "smooth_l1_loss": lambda m, F, d: F.smooth_l1_loss(F.linear(d["x"], d["w"]), d["x"][:, :5]),
    "huber_loss": lambda m, F, d: F.huber_loss(F.linear(d["x"], d["w"]), d["x"][:, :5], delta=0.5),
    "mean": lambda m, F, d: F.linear(d["x"], d["w"]).mean(),
    "prod": lambda m, F, d: F.linear(d["x"], d["w"])[0].prod(),
    "logsumexp": lambda m, F, d: F.linear(d["x"], d["w"]).logsumexp(-1),
    "relu": lambda m, F, d: F.relu(F.linear(d["x"], d["w"])),
    "gelu": lambda m, F, d: F.gelu(F.linear(d["x"], d["w"])),
    "add_f32": lambda m, F, d: F.linear(d["x"], d["w"]) + d["x"][:, :5],         # promotion: float32
    "sdpa": lambda m, F, d: F.scaled_dot_product_attention(d["q"], d["q"], d["q"]),
    "max_pool2d": lambda m, F, d: F.max_pool2d(F.conv2d(d["img"], d["k"]), 2),
    # a float32 softmax times a low-precision value: matmul casts both before its same-dtype check
    "matmul_mixed": lambda m, F, d: m.matmul(F.softmax(F.linear(d["x"], d["w"]), -1), F.linear(d["w"], d["x"])),
}
# Weight layers with a bias: torch casts the bias too, so the layer's output is in the low dtype.
LAYERS = {
    "linear": lambda m, F, d: F.linear(d["x"], d["w"], d["b"]),
    "conv2d": lambda m, F, d: F.conv2d(d["img"], d["k"], d["kb"], padding=1),
    "linear_half_input": lambda m, F, d: F.linear(F.linear(d["x"], d["img"].reshape(-1)[:64].reshape(8, 8)),
                                                  d["w"], d["b"]),
}


def _run_both(fn, dt, d):
    sd = {k: S(v) for k, v in d.items()}
    td = {k: T(v) for k, v in d.items()}
    with torch.autocast("cpu", dtype=tdtype(dt)):
        r = fn(torch, TF, td)
    with autocast("cpu", dtype=sdtype(dt)):
        s = fn(suanli, F, sd)
    return s, r


def _assert_matches(s, r, dt, name):
    assert str(s.dtype) == str(r.dtype).replace("torch.", ""), f"{name}: dtype {s.dtype} != torch {r.dtype}"
    rtol, atol = TOL[dt]
    np.testing.assert_allclose(N(s), N(r), rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("dt", LOW)
@pytest.mark.parametrize("name", sorted(MATCHING))
def test_autocast_matches_torch(name, dt):
    s, r = _run_both(MATCHING[name], dt, data())
    _assert_matches(s, r, dt, name)


@pytest.mark.parametrize("dt", LOW)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_weight_layers_match_torch(name, dt):
    s, r = _run_both(LAYERS[name], dt, data())
    _assert_matches(s, r, dt, name)


# Primitives we run in float32 where torch's CPU autocast keeps the low dtype (torch's CUDA autocast
# returns float32 for these too): the value must be torch's float32 op on the same 16-bit input.
FLOAT32_OPS = {
    "sum": (lambda x: x.sum(), True),
    "sum_dim": (lambda x: x.sum(1), True),
    "exp": (lambda x: x.exp(), True),
    "log": (lambda x: x.abs().log(), True),
    "pow": (lambda x: x ** 2, True),
    "cumsum": (lambda x: x.cumsum(1), True),
    "prod": (lambda x: x[:, :4].prod(1), False),      # torch's CPU autocast also returns float32 here
}


@pytest.mark.parametrize("dt", LOW)
@pytest.mark.parametrize("name", sorted(FLOAT32_OPS))
def test_float32_ops(name, dt):
    fn, torch_cpu_keeps_low = FLOAT32_OPS[name]
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    xs, xt = S(x).to(sdtype(dt)), T(x).to(tdtype(dt))
    with autocast(dtype=sdtype(dt)):
        s = fn(xs)
    with torch.autocast("cpu", dtype=tdtype(dt)):
        r_cpu = fn(xt)
    assert s.dtype == suanli.float32, f"{name}: {s.dtype}"
    np.testing.assert_allclose(N(s), N(fn(xt.float())), rtol=1e-5, atol=1e-6)   # float32 on the 16-bit input
    np.testing.assert_allclose(N(s), N(r_cpu), rtol=TOL[dt][0], atol=TOL[dt][1])
    assert (r_cpu.dtype == tdtype(dt)) == torch_cpu_keeps_low       # documents the departure


def test_float16_exp_and_sum_do_not_overflow():
    """Why the float32 list exists: float16 tops out at 65504."""
    x = suanli.full((4096,), 20.0, dtype=suanli.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # NumPy's "overflow encountered in cast"
        assert np.isinf(N(x.sum())) and np.isinf(N(suanli.tensor([12.0], dtype=suanli.float16).exp())).all()
    with autocast(dtype=suanli.float16):
        assert x.sum().item() == 81920.0
        assert suanli.tensor([12.0], dtype=suanli.float16).exp().item() == pytest.approx(np.exp(12.0), rel=1e-6)


def test_promote_casts_mixed_inputs_to_widest():
    a, b = suanli.ones(3, dtype=suanli.float16), suanli.ones(3)
    with pytest.raises(Exception):              # primitives are strict without autocast
        apply(registry["add"], a, b)
    with autocast(dtype=suanli.float16):
        out = apply(registry["add"], a, b)
        assert out.dtype == suanli.float32
        bf = apply(registry["add"], a, suanli.ones(3, dtype=suanli.bfloat16))
        assert bf.dtype == suanli.float32                 # float16 + bfloat16 -> float32, as torch


def test_float64_and_integers_are_not_cast():
    x = suanli.ones(3, 3, dtype=suanli.float64)
    i = suanli.arange(6).reshape(2, 3)
    with autocast(dtype=suanli.bfloat16):
        assert (x @ x).dtype == suanli.float64
        assert x.sum().dtype == suanli.float64
        assert (i @ suanli.ones(3, 2, dtype=suanli.int64)).dtype == suanli.int64
        assert i.sum().dtype == suanli.int64
        assert (suanli.ones(2, 3) @ suanli.ones(3, dtype=suanli.float32)).dtype == suanli.bfloat16
        assert suanli.ones(2, 3).argmax().dtype == suanli.int64


def test_no_autocast_path_unaffected():
    a, w = suanli.ones(2, 3), suanli.ones(3, 2)
    h = suanli.ones(5, dtype=suanli.float16)
    assert suanli._state.autocast is None
    with autocast(dtype=suanli.float16):
        pass
    assert suanli._state.autocast is None
    assert (a @ w).dtype == suanli.float32
    assert h.sum().dtype == suanli.float16 and h.exp().dtype == suanli.float16     # no float32 policy outside
    assert (h @ h).dtype == suanli.float16


# ============================================================================ gradients and autograd
def _mlp_params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) * 0.5 for s in ((16, 8), (16,), (5, 16), (5,))]


@pytest.mark.parametrize("dt", LOW)
def test_gradients_reach_float32_leaves_like_torch(dt):
    d = data()
    ps = _mlp_params()
    sp = [S(p).requires_grad_() for p in ps]
    tp = [T(p).requires_grad_() for p in ps]

    def fwd(m, F, p, x, t):
        h = F.relu(x @ p[0].T + p[1])
        return F.cross_entropy(h @ p[2].T + p[3], t)

    with autocast(dtype=sdtype(dt)):
        loss = fwd(suanli, F, sp, S(d["x"]), S(d["t"]))
    with torch.autocast("cpu", dtype=tdtype(dt)):
        tloss = fwd(torch, TF, tp, T(d["x"]), T(d["t"]))
    loss.backward()
    tloss.backward()
    assert loss.dtype == suanli.float32
    for s, t in zip(sp, tp):
        assert s.grad.dtype == suanli.float32
        scale = np.abs(N(t.grad)).max()
        np.testing.assert_allclose(N(s.grad), N(t.grad), rtol=0, atol=3 * TOL[dt][0] * scale)


def test_casts_are_differentiable_and_backward_inside_region():
    w = suanli.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    x = suanli.tensor([[0.5, -1.0]])
    with autocast(dtype=suanli.float16):
        for _ in range(2):                       # two forward/backward passes inside one region
            y = x @ w
            assert y.dtype == suanli.float16 and y.grad_fn is not None
            y.float().sum().backward()
    np.testing.assert_array_equal(N(w.grad), 2 * np.array([[0.5, 0.5], [-1.0, -1.0]]))
    assert w.grad.dtype == suanli.float32


def test_no_stale_weight_after_in_place_update():
    w = suanli.ones(2, 2)
    x = suanli.ones(1, 2)
    with autocast(dtype=suanli.float16):
        first = x @ w
        w.mul_(3.0)
        second = x @ w
    assert first.tolist() == [[2.0, 2.0]] and second.tolist() == [[6.0, 6.0]]


def test_autocast_forms_nesting_and_decorator():
    a = suanli.ones(2, 2)
    assert suanli.autocast is autocast
    with autocast(device_type="cpu", dtype=suanli.float16) as ctx:
        assert suanli.amp.is_autocast_enabled() and suanli.amp.get_autocast_dtype() == suanli.float16
        assert ctx.fast_dtype == suanli.float16
        with autocast(suanli.bfloat16):
            assert (a @ a).dtype == suanli.bfloat16
            with autocast(enabled=False):
                assert (a @ a).dtype == suanli.float32
            assert (a @ a).dtype == suanli.bfloat16
        assert (a @ a).dtype == suanli.float16
    assert not suanli.amp.is_autocast_enabled()
    with autocast():                                   # torch's CPU default: bfloat16
        assert (a @ a).dtype == suanli.bfloat16
    with pytest.raises(ZeroDivisionError):             # an exception still closes the region
        with autocast(dtype="float16"):
            1 / 0
    assert suanli._state.autocast is None

    region = autocast(dtype=suanli.float16)

    @region
    def depth(n):
        assert (a @ a).dtype == suanli.float16
        return 0 if n == 0 else 1 + depth(n - 1)       # the same instance re-entered recursively

    assert depth(3) == 3 and suanli._state.autocast is None
    assert depth.__name__ == "depth"


@pytest.mark.parametrize("bad, exc, pattern", [
    (dict(dtype=suanli.int8), suanli.DTypeError, r"autocast: dtype int8 is not a lower-precision(.|\n)*float16"),
    (dict(dtype=suanli.float32), suanli.DTypeError, r"dtype float32 is not a lower-precision"),
    (dict(dtype="fp8"), suanli.DTypeError, r"autocast: unknown dtype 'fp8'"),
    (dict(device_type="cuda"), ValueError, r"device_type 'cuda' is not supported(.|\n)*CPU"),
    (dict(device_type="float16"), ValueError, r"did you mean dtype="),
])
def test_autocast_errors(bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        autocast(**bad)


# ============================================================================================ GradScaler
def _optimizer(params, lr, momentum=0.0):
    return optim.SGD(params, lr=lr, momentum=momentum)


def test_scaler_matches_torch_on_a_grad_sequence_with_infs():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(6).astype(np.float32)
    sp, tp = S(p0).requires_grad_(), T(p0).requires_grad_()
    sopt, topt = _optimizer([sp], lr=0.1, momentum=0.9), torch.optim.SGD([tp], lr=0.1, momentum=0.9)
    kw = dict(init_scale=2.0 ** 10, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    ss, ts = GradScaler(**kw), torch.amp.GradScaler("cpu", **kw)
    bad = {2: np.inf, 3: np.nan, 9: -np.inf, 10: np.inf, 11: np.inf}
    ts.scale(torch.tensor(1.0))               # torch creates its scale lazily, in the first scale()
    scales, skipped = [], []
    for step in range(20):
        g = rng.standard_normal(6).astype(np.float32)
        if step in bad:
            g[step % 6] = bad[step]
        before = N(sp).copy()
        sp.grad = S(g * np.float32(ss.get_scale()))
        tp.grad = T(g * np.float32(ts.get_scale()))
        ss.step(sopt)
        ts.step(topt)
        skipped.append(bool(np.array_equal(N(sp), before)))
        ss.update()
        ts.update()
        assert ss.get_scale() == ts.get_scale(), f"step {step}"
        np.testing.assert_allclose(N(sp), N(tp), rtol=1e-5, atol=1e-6, err_msg=f"step {step}")
        scales.append(ss.get_scale())
    assert skipped == [s in bad for s in range(20)]
    assert scales[:5] == [1024.0, 1024.0, 512.0, 256.0, 256.0]      # halves on inf and on NaN
    assert ss.state_dict() == ts.state_dict()


def _tiny_problem(seed=0):
    suanli.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = suanli.randn(8, 3)
    return model, x


def test_injected_overflow_is_skipped_and_scale_halves():
    model, x = _tiny_problem()
    opt = _optimizer(model.parameters(), lr=0.1, momentum=0.9)
    scaler = GradScaler(init_scale=1024.0)
    with autocast(dtype=suanli.float16):
        loss = model(x).float().pow(2).mean()
    scaler.scale(loss).backward()
    params = [p.detach().numpy().copy() for p in model.parameters()]
    model[0].weight.grad[1, 2] = float("inf")           # an overflow in one gradient
    assert scaler.step(opt) is None
    scaler.update()
    assert scaler.get_scale() == 512.0
    for before, p in zip(params, model.parameters()):
        np.testing.assert_array_equal(before, p.detach().numpy())      # bit for bit unchanged
    assert len(getattr(opt, "state", {})) == 0          # no momentum buffer was created either


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_real_float16_overflow_skips_until_scale_fits():
    """init_scale 2**40 makes float16 activation gradients overflow: steps are skipped, the scale
    halves each time, parameters stay put, then training proceeds."""
    model, x = _tiny_problem()
    opt = _optimizer(model.parameters(), lr=0.05)
    scaler = GradScaler(init_scale=2.0 ** 40)
    start = [p.detach().numpy().copy() for p in model.parameters()]
    skipped = 0
    for _ in range(30):
        with autocast(dtype=suanli.float16):
            loss = model(x).float().pow(2).mean()
        before = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if scaler.get_scale() < before:
            skipped += 1
            assert scaler.get_scale() == before / 2
            if skipped == 1:
                for s, p in zip(start, model.parameters()):
                    np.testing.assert_array_equal(s, p.detach().numpy())
        opt.zero_grad()
    assert skipped >= 10 and scaler.get_scale() <= 2.0 ** 30
    assert not all(np.array_equal(s, p.detach().numpy()) for s, p in zip(start, model.parameters()))


def test_growth_after_growth_interval_clean_steps():
    p = suanli.tensor([1.0], requires_grad=True)
    opt = _optimizer([p], lr=0.0)
    scaler = GradScaler(init_scale=4.0, growth_interval=4)
    scales = []
    for _ in range(9):
        scaler.scale((p * 2.0).sum()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        scales.append(scaler.get_scale())
    assert scales == [4.0, 4.0, 4.0, 8.0, 8.0, 8.0, 8.0, 16.0, 16.0]
    assert scaler.state_dict()["_growth_tracker"] == 1


def test_scaler_growth_never_overflows_float32():
    p = suanli.tensor([1.0], requires_grad=True)
    opt = _optimizer([p], lr=0.0)
    scaler = GradScaler(init_scale=2.0 ** 127, growth_interval=1)
    scaler.scale(p.sum()).backward()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2.0 ** 127              # 2**128 is inf in float32: kept


def test_unscale_gives_true_gradients_for_clipping():
    model, x = _tiny_problem()
    loss = model(x).pow(2).mean()
    loss.backward(retain_graph=True)
    true = [p.grad.detach().numpy().copy() for p in model.parameters()]
    model.zero_grad()
    opt = _optimizer(model.parameters(), lr=0.1)
    scaler = GradScaler(init_scale=2.0 ** 12)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    for t, p in zip(true, model.parameters()):
        np.testing.assert_allclose(p.grad.detach().numpy(), t, rtol=1e-6, atol=1e-9)
    before = [p.detach().numpy().copy() for p in model.parameters()]
    scaler.step(opt)                                     # does not unscale a second time
    scaler.update()
    for b, t, p in zip(before, true, model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), b - 0.1 * t, rtol=1e-6, atol=1e-7)


def test_scaler_misuse_errors():
    p = suanli.tensor([1.0], requires_grad=True)
    opt = _optimizer([p], lr=0.1)
    scaler = GradScaler()
    with pytest.raises(RuntimeError, match="No inf checks were recorded for this optimizer"):
        scaler.step(opt)                                # no gradients at all
    scaler = GradScaler()
    with pytest.raises(RuntimeError, match="No inf checks were recorded prior to update"):
        scaler.update()
    scaler.scale(p.sum()).backward()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match=r"unscale_\(\) has already been called on this optimizer since the last update"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match=r"step\(\) has already been called since the last update"):
        scaler.step(opt)
    with pytest.raises(RuntimeError, match=r"unscale_\(\) is being called after step"):
        scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="Closure use is not currently supported"):
        scaler.step(opt, closure=lambda: 0.0)
    scaler.update()
    h = suanli.tensor([1.0], dtype=suanli.float16, requires_grad=True)
    h.grad = suanli.tensor([1.0], dtype=suanli.float16)
    with pytest.raises(ValueError, match=r"Attempting to unscale FP16 gradients(.|\n)*float32"):
        scaler.unscale_(_optimizer([h], lr=0.1))
    for kwargs, pattern in ((dict(growth_factor=1.0), "growth factor must be > 1.0"),
                            (dict(backoff_factor=1.0), "backoff factor must be < 1.0"),
                            (dict(growth_interval=0), "growth_interval must be a positive integer"),
                            (dict(init_scale=-1.0), "init_scale must be a positive, finite number"),
                            (dict(device="cuda"), "device 'cuda' is not supported")):
        with pytest.raises(ValueError, match=pattern):
            GradScaler(**kwargs)
    with pytest.raises(TypeError, match="param_groups"):
        GradScaler().unscale_([p])


def test_scale_dtype_and_structures_like_torch():
    scaler, tscaler = GradScaler(init_scale=4.0), torch.amp.GradScaler("cpu", init_scale=4.0)
    half = scaler.scale(suanli.tensor(3.0, dtype=suanli.float16))
    assert half.dtype == suanli.float32 and half.item() == 12.0          # 0-d float16 * 0-d float32 scale
    assert str(tscaler.scale(torch.tensor(3.0, dtype=torch.float16)).dtype) == "torch.float32"
    assert scaler.scale(suanli.ones(2, dtype=suanli.float16)).dtype == suanli.float16
    a, b = scaler.scale([suanli.tensor(1.0), suanli.tensor(2.0)])
    assert (a.item(), b.item()) == (4.0, 8.0)
    assert GradScaler("cpu").get_scale() == 65536.0
    with pytest.raises(ValueError, match="outputs must be a Tensor"):
        scaler.scale(1.0)


def test_scaler_state_dict_round_trip():
    p = suanli.tensor([1.0, -1.0], requires_grad=True)
    opt = _optimizer([p], lr=0.1)
    scaler = GradScaler(init_scale=256.0, growth_factor=3.0, backoff_factor=0.25, growth_interval=5)
    for step in range(7):
        scaler.scale(p.sum()).backward()
        if step == 1:
            p.grad[0] = float("nan")
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
    sd = scaler.state_dict()
    assert sd == {"scale": 64.0 * 3.0, "growth_factor": 3.0, "backoff_factor": 0.25, "growth_interval": 5,
                  "_growth_tracker": 0}
    restored = GradScaler()
    restored.load_state_dict(json.loads(json.dumps(sd)))
    assert restored.state_dict() == sd
    tscaler = torch.amp.GradScaler("cpu")                       # torch reads ours, we read torch's
    tscaler.load_state_dict(sd)
    assert tscaler.state_dict() == sd
    restored.load_state_dict(tscaler.state_dict())
    assert restored.state_dict() == sd
    with pytest.raises(RuntimeError, match="The source state dict is empty"):
        GradScaler().load_state_dict(GradScaler(enabled=False).state_dict())
    with pytest.raises(KeyError, match="missing keys"):
        GradScaler().load_state_dict({"scale": 2.0})


def test_disabled_scaler_is_a_pass_through():
    p = suanli.tensor([1.0], requires_grad=True)
    opt = _optimizer([p], lr=0.5)
    scaler = GradScaler(enabled=False)
    loss = (p * 2.0).sum()
    assert scaler.scale(loss) is loss and not scaler.is_enabled() and scaler.get_scale() == 1.0
    loss.backward()
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    assert p.item() == 0.0 and scaler.state_dict() == {}


# ============================================================================= training end to end
def _classification(n=512, d=20, c=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d)) * 0.35
    y = rng.integers(0, c, n)
    x = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    return S(x), S(y)


OPTIMIZERS = {"sgd": lambda ps: optim.SGD(ps, lr=0.02, momentum=0.9), "adam": lambda ps: optim.Adam(ps, lr=1e-3)}


def _train(dtype, x, y, opt_name="sgd", steps=100, batch=64):
    suanli.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = OPTIMIZERS[opt_name](model.parameters())
    scaler = GradScaler(enabled=dtype is not None)
    losses = []
    for i in range(steps):
        lo = (i * batch) % x.shape[0]
        with autocast(dtype=dtype or suanli.float16, enabled=dtype is not None):
            loss = F.cross_entropy(model(x[lo:lo + batch]), y[lo:lo + batch])
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        losses.append(loss.item())
    return np.array(losses), model


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dt, tol", [("float16", 5e-3), ("bfloat16", 2e-2)])
def test_mixed_precision_training_tracks_float32(dt, tol, opt_name):
    """100 steps (SGD with momentum, or Adam) of an MLP classifier: the autocast+GradScaler loss curve
    stays within ``tol`` of the float32 curve at every step (measured max gaps: float16 2.5e-4 SGD /
    9.3e-4 Adam, bfloat16 1.3e-3 SGD / 1.1e-3 Adam)."""
    x, y = _classification()
    ref, _ = _train(None, x, y, opt_name)
    got, model = _train(sdtype(dt), x, y, opt_name)
    assert ref[-10:].mean() < 0.7 * ref[:10].mean()              # it learns
    assert np.abs(got - ref).max() < tol, np.abs(got - ref).max()
    assert all(p.dtype == suanli.float32 for p in model.parameters())


@pytest.mark.parametrize("dt, tol", [("float16", 5e-3), ("bfloat16", 3e-2)])
def test_gpt_forward_backward_under_autocast(dt, tol):
    """A whole GPT (attention with a float32 softmax feeding a low-precision matmul) runs under autocast;
    its loss stays near the float32 loss and gradients reach the float32 weights."""
    from suanli.models.gpt import GPT, GPTConfig
    suanli.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=32))
    idx = suanli.randint(0, 11, (2, 16))
    tgt = suanli.randint(0, 11, (2, 16))
    _, ref = model(idx, tgt)
    with autocast(dtype=sdtype(dt)):
        logits, loss = model(idx, tgt)
    assert str(logits.dtype) == dt and loss.dtype == suanli.float32
    assert abs(loss.item() - ref.item()) < tol * ref.item()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == suanli.float32 and np.isfinite(g.numpy()).all() for g in grads)


# ================================================================================= tensor statistics
CRAFTED = np.array([7e4, -1e5, 65504.0, 1.0, -2.0, 1e-8, -3e-8, 1e-5, -6e-5, 0.0, np.nan, np.inf], dtype=np.float64)


def test_stats_counts_on_crafted_tensor():
    mon = TensorStats(warn=False)
    st = mon.observe("crafted", S(CRAFTED))
    assert st.overflow == 3                        # 7e4, -1e5, inf (65504 itself fits)
    assert st.underflow == 2                       # 1e-8, -3e-8 < 2**-24
    assert st.below_normal == 4                    # those, 1e-5 and -6e-5 < 2**-14
    assert st.nonfinite == 2 and st.nonzero == 10 and st.numel == 12
    finite = CRAFTED[np.isfinite(CRAFTED)]
    assert st.min == finite.min() and st.max == finite.max() and st.absmax == np.inf
    assert st.mean == pytest.approx(finite.mean())
    assert {a.reason for a in mon.alerts} == {"overflow", "nonfinite"}
    bf = TensorStats(dtype=suanli.bfloat16, warn=False).observe("crafted", S(CRAFTED))
    assert (bf.overflow, bf.underflow, bf.below_normal) == (1, 0, 0)     # bfloat16 has float32's range
    st2 = mon.observe("crafted", S(np.array([1.0, 2.0])))
    assert st2.calls == 2 and st2.overflow == 3 and list(st2.history)[-1] == 2.0


def test_stats_hooks_record_layers_and_gradients():
    suanli.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = suanli.randn(5, 4)
    mon = register_stat_hooks(model, warn=False)
    out = model(x)
    hidden = model[0](x)                            # a second call of layer 0 (also recorded)
    out.retain_grad()
    (out * suanli.tensor([1.0, -2.0, 3.0])).sum().backward()
    assert mon.names() == ["0", "1", "2"]
    assert mon.get("0").calls == 2 and mon.get("2").calls == 1
    assert mon.get("2").absmax == pytest.approx(np.abs(out.detach().numpy()).max())
    assert mon.get("0").absmax == pytest.approx(np.abs(hidden.detach().numpy()).max())
    g = mon.get("2", "gradient")
    assert g.calls == 1 and g.max == 3.0 and g.min == -2.0 and g.absmax == 3.0
    assert mon.get("0", "gradient").calls == 1      # the second call of layer 0 was never backpropagated
    text = mon.summary()
    assert text.splitlines()[0].split()[:3] == ["layer", "kind", "calls"] and len(text.splitlines()) == 7
    mon.remove()


def test_stats_warns_early_on_range_drift():
    suanli.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with suanli.no_grad():
        model[1].bias.fill_(1e4)                        # outputs ~ 10^4: 1/8 of 65504 passed, none overflows
    mon = TensorStats(model)
    with pytest.warns(PrecisionWarning, match=r"layer '1' activations: absmax .* of float16's max 65504"):
        model(suanli.ones(2, 4) * 2.0)
    assert [(a.name, a.kind, a.reason) for a in mon.alerts] == [("1", "activation", "range")]
    assert mon.alerts[0].value > 65504 / 8 and mon.get("1").overflow == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # warned once per layer and reason
        model(suanli.ones(2, 4) * 2.0)
    assert mon.alerts[0].count == 2
    mon.remove()


def test_stats_gradient_underflow_warning_and_loss_scaling_fixes_it():
    suanli.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    x = suanli.randn(32, 8)
    mon = TensorStats(model, warn=False)
    with autocast(dtype=suanli.float16):
        loss = model(x).float().mean() * 1e-4       # small loss: float16 gradients sink below 2**-14
    loss.backward(retain_graph=True)
    under = [a for a in mon.alerts if a.reason == "underflow"]
    assert under and under[0].kind == "gradient"
    assert mon.get("0", "gradient").below_normal > 0
    mon.reset()
    GradScaler().scale(loss).backward()              # x 65536: back in float16's normal range
    assert not [a for a in mon.alerts if a.reason == "underflow"]
    assert mon.get("0", "gradient").below_normal == 0
    mon.remove()


def test_stats_remove_removes_every_hook():
    suanli.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with TensorStats(model, warn=False) as mon:
        pending = model(suanli.randn(2, 3)).sum()     # forward seen; its gradient hooks are pending
        assert mon.get("0").calls == 1
    pending.backward()                                  # after remove(): nothing recorded
    model(suanli.randn(2, 3))
    assert mon.get("0").calls == 1 and ("0", "gradient") not in mon.stats
    assert all(not m._forward_hooks for m in model.modules())


def test_stats_non_module_api_and_errors():
    mon = TensorStats(warn=False)
    w = suanli.tensor([1.0, 2.0], requires_grad=True)
    y = mon.watch("y", w * 3.0)
    (y * 1e-9).sum().backward()
    assert mon.get("y").absmax == 6.0 and mon.get("y", "gradient").absmax == pytest.approx(1e-9)
    assert [a.reason for a in mon.alerts] == ["underflow"]
    with pytest.raises(TypeError, match="expected a suanli.nn.Module(.|\n)*observe"):
        mon.attach(lambda x: x)
    with pytest.raises(KeyError, match="nothing recorded for 'z'"):
        mon.get("z")
    with pytest.raises(ValueError, match="warn_fraction"):
        TensorStats(warn_fraction=2.0)
