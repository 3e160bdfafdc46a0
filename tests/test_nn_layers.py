"""Every layer against torch: torch's weights are copied in through ``load_state_dict``, then forward
outputs, input gradients, parameter gradients and buffers are compared in float64 (tight) and float32
(loose). Default initialisation is compared as a distribution (two-sample Kolmogorov-Smirnov), and the
``nn.init`` functions against torch's."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn as tnn

import suanli
from suanli import nn
from suanli.errors import ShapeError
from oracles import TORCH_DTYPE

TOL = {"float64": (1e-9, 1e-11), "float32": (2e-4, 2e-5)}


def _tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _close(a: Any, b: Any, dtype: str, what: str, tol: tuple[float, float] | None = None) -> None:
    rtol, atol = tol or TOL[dtype]
    an = a.detach().numpy() if isinstance(a, suanli.Tensor) else np.asarray(a)
    bn = b.detach().numpy()
    assert an.shape == bn.shape, f"{what}: shape {an.shape} != torch {bn.shape}"
    np.testing.assert_allclose(an.astype(np.float64), bn.astype(np.float64), rtol=rtol, atol=atol,
                               equal_nan=True, err_msg=what)


def check_layer(make: Callable, inputs: Callable, dtype: str = "float64", *, train: bool = True, steps: int = 1,
                call: Callable | None = None, grad_args: tuple[int, ...] | None = None,
                tol: tuple[float, float] | None = None) -> tuple:
    """Build ``make(torch.nn)`` and ``make(suanli.nn)``, copy torch's state into suanli, then for ``steps``
    fresh inputs compare outputs, input/parameter gradients, and finally the whole state dict."""
    t = make(tnn).to(TORCH_DTYPE[dtype])
    s = make(nn).to(getattr(suanli, dtype))
    res = s.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    assert not (res.missing_keys or res.unexpected_keys or res.mismatched_keys), res
    t.train(train)
    s.train(train)
    call = call or (lambda m, *a: m(*a))
    rng = np.random.default_rng(0)
    for step in range(steps):
        arrays = inputs(rng, dtype)
        wants = [a.dtype.kind == "f" and (grad_args is None or i in grad_args) for i, a in enumerate(arrays)]
        xs = [suanli.tensor(a, requires_grad=w) for a, w in zip(arrays, wants)]
        ts = [torch.tensor(a, requires_grad=w) for a, w in zip(arrays, wants)]
        s.zero_grad()
        t.zero_grad()
        outs = [o for o in _tuple(call(s, *xs)) if o is not None]
        touts = [o for o in _tuple(call(t, *ts)) if o is not None]
        assert len(outs) == len(touts)
        for i, (o, to) in enumerate(zip(outs, touts)):
            _close(o, to, dtype, f"step {step} output {i}")
            assert str(o.dtype) == str(to.dtype).replace("torch.", "")
        diff = [(o, to) for o, to in zip(outs, touts) if to.requires_grad]
        if not diff:
            continue
        cots = [rng.standard_normal(to.shape) for _, to in diff]
        sum(((o * suanli.tensor(c).to(o.dtype)).sum() for (o, _), c in zip(diff, cots))).backward()
        sum(((to * torch.tensor(c).to(to.dtype)).sum() for (_, to), c in zip(diff, cots))).backward()
        for i, (x, tx) in enumerate(zip(xs, ts)):
            if tx.grad is not None:
                _close(x.grad, tx.grad, dtype, f"step {step} grad of input {i}", tol)
        tparams = dict(t.named_parameters())
        for name, p in s.named_parameters():
            tp = tparams[name]
            assert (p.grad is None) == (tp.grad is None), f"{name}: grad presence differs"
            if tp.grad is not None:
                _close(p.grad, tp.grad, dtype, f"step {step} grad of {name}")
    tsd = t.state_dict()
    for name, v in s.state_dict().items():
        _close(v, tsd[name], dtype, f"state {name}")
    return s, t


def randn(*shape: int) -> Callable:
    return lambda rng, dtype: [rng.standard_normal(shape).astype(dtype)]


def randn_many(*shapes: tuple[int, ...]) -> Callable:
    return lambda rng, dtype: [rng.standard_normal(sh).astype(dtype) for sh in shapes]


# --------------------------------------------------------------------------- layers with parameters
LAYERS = {
    "linear": (lambda L: L.Linear(5, 3), randn(4, 5)),
    "linear_3d_nobias": (lambda L: L.Linear(5, 3, bias=False), randn(2, 4, 5)),
    "bilinear": (lambda L: L.Bilinear(3, 4, 2), randn_many((5, 3), (5, 4))),
    "conv1d": (lambda L: L.Conv1d(4, 6, 3, stride=2, padding=1), randn(2, 4, 9)),
    "conv1d_groups_dil": (lambda L: L.Conv1d(4, 6, 3, dilation=2, groups=2, bias=False), randn(2, 4, 11)),
    "conv1d_same_circ": (lambda L: L.Conv1d(3, 3, 4, padding="same", padding_mode="circular"), randn(2, 3, 8)),
    "conv2d": (lambda L: L.Conv2d(3, 4, 3), randn(2, 3, 7, 6)),
    "conv2d_stride_groups": (lambda L: L.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), randn(2, 4, 8, 7)),
    "conv2d_dil_rect": (lambda L: L.Conv2d(2, 4, (3, 2), dilation=(2, 1), padding=(2, 1)), randn(1, 2, 7, 6)),
    "conv2d_same_even": (lambda L: L.Conv2d(2, 3, 4, padding="same"), randn(2, 2, 6, 5)),
    "conv2d_valid": (lambda L: L.Conv2d(2, 3, 3, padding="valid", bias=False), randn(2, 2, 6, 5)),
    "conv2d_same_reflect": (lambda L: L.Conv2d(2, 3, 3, padding="same", dilation=2, padding_mode="reflect"),
                            randn(2, 2, 7, 6)),
    "conv2d_reflect": (lambda L: L.Conv2d(2, 3, 3, padding=(1, 2), padding_mode="reflect"), randn(2, 2, 6, 5)),
    "conv2d_replicate": (lambda L: L.Conv2d(2, 3, 3, stride=2, padding=2, padding_mode="replicate"),
                         randn(2, 2, 6, 7)),
    "conv2d_circular": (lambda L: L.Conv2d(2, 3, (3, 2), padding=1, padding_mode="circular"), randn(2, 2, 5, 6)),
    "conv2d_depthwise": (lambda L: L.Conv2d(4, 4, 3, padding=1, groups=4), randn(2, 4, 5, 5)),
    "convT1d": (lambda L: L.ConvTranspose1d(4, 2, 3, stride=2, padding=1, output_padding=1), randn(2, 4, 5)),
    "convT2d": (lambda L: L.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
                randn(2, 4, 4, 3)),
    "convT2d_dil_nobias": (lambda L: L.ConvTranspose2d(3, 2, (2, 3), dilation=2, bias=False), randn(1, 3, 4, 4)),
    "layernorm": (lambda L: L.LayerNorm((4, 5)), randn(3, 4, 5)),
    "layernorm_nobias": (lambda L: L.LayerNorm(5, bias=False), randn(3, 5)),
    "layernorm_noaffine": (lambda L: L.LayerNorm(5, elementwise_affine=False), randn(2, 3, 5)),
    "groupnorm": (lambda L: L.GroupNorm(2, 6), randn(3, 6, 4)),
    "groupnorm_4d": (lambda L: L.GroupNorm(3, 6, eps=1e-3), randn(2, 6, 3, 3)),
    "groupnorm_nobias": (lambda L: L.GroupNorm(2, 4, bias=False), randn(2, 4, 3)),
    "rmsnorm": (lambda L: L.RMSNorm(5), randn(3, 5)),
    "rmsnorm_eps": (lambda L: L.RMSNorm((2, 5), eps=1e-3), randn(3, 2, 5)),
    "instancenorm": (lambda L: L.InstanceNorm2d(3), randn(2, 3, 4, 5)),
    "instancenorm_affine": (lambda L: L.InstanceNorm2d(3, affine=True), randn(2, 3, 4, 5)),
    "instancenorm_unbatched": (lambda L: L.InstanceNorm2d(3), randn(3, 4, 5)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_torch(name, dtype):
    make, inputs = LAYERS[name]
    check_layer(make, inputs, dtype)


# --------------------------------------------------------------------------- batch norm and running statistics
BATCHNORM = {
    "bn1d_2d": (lambda L: L.BatchNorm1d(4), randn(6, 4)),
    "bn1d_3d": (lambda L: L.BatchNorm1d(4, momentum=0.3), randn(3, 4, 5)),
    "bn2d": (lambda L: L.BatchNorm2d(3), randn(4, 3, 3, 2)),
    "bn2d_cma": (lambda L: L.BatchNorm2d(3, momentum=None), randn(2, 3, 3, 3)),
    "bn2d_noaffine": (lambda L: L.BatchNorm2d(3, affine=False), randn(2, 3, 2, 2)),
    "bn2d_nobias": (lambda L: L.BatchNorm2d(3, bias=False), randn(2, 3, 2, 2)),
    "bn1d_nostats": (lambda L: L.BatchNorm1d(4, track_running_stats=False), randn(5, 4)),
    "in_running": (lambda L: L.InstanceNorm2d(3, affine=True, track_running_stats=True), randn(2, 3, 4, 4)),
    "in_momentum_none": (lambda L: L.InstanceNorm2d(3, momentum=None, track_running_stats=True),
                         randn(2, 3, 4, 4)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(BATCHNORM))
def test_batchnorm_train_then_eval(name, dtype):
    """Several training steps (running stats and num_batches_tracked compared after), then eval."""
    make, inputs = BATCHNORM[name]
    s, t = check_layer(make, inputs, dtype, steps=3)
    if name.startswith("bn") and "nostats" not in name:     # torch's InstanceNorm leaves it at 0
        assert int(s.state_dict()["num_batches_tracked"].item()) == 3
    # continue in eval mode from the trained state: running statistics are used and left alone
    sd = {k: v.detach().numpy() for k, v in t.state_dict().items()}
    check_layer(lambda L: _loaded(L, make, sd, L is nn), inputs, dtype, train=False, steps=2)


def _loaded(lib, make, sd, is_suanli):
    m = make(lib)
    m.load_state_dict(sd if is_suanli else {k: torch.tensor(v) for k, v in sd.items()})
    return m


def test_batchnorm_momentum_none_is_cumulative_average():
    bn = nn.BatchNorm1d(2, momentum=None).double()
    batches = [suanli.randn(8, 2, dtype=suanli.float64) for _ in range(4)]
    for b in batches:
        bn(b)
    means = np.mean([b.numpy().mean(0) for b in batches], axis=0)
    np.testing.assert_allclose(bn.running_mean.numpy(), means, rtol=1e-12)
    assert int(bn.num_batches_tracked.item()) == 4


def test_batchnorm_input_checks():
    with pytest.raises(ShapeError, match=r"BatchNorm2d: expected a 4-D input[\s\S]*Actual: shape \(2, 3\)"):
        nn.BatchNorm2d(3)(suanli.zeros(2, 3))
    with pytest.raises(ShapeError, match="num_features"):
        nn.BatchNorm1d(0)


# --------------------------------------------------------------------------- embedding
def _ids(rng, dtype):
    return [rng.integers(0, 10, size=(3, 4))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding(dtype, padding_idx):
    s, _ = check_layer(lambda L: L.Embedding(10, 4, padding_idx=padding_idx), _ids, dtype)
    if padding_idx is not None:
        assert float(s.weight[padding_idx].abs().sum()) == 0.0     # zero row (torch's init)


def test_embedding_padding_row_gets_no_gradient():
    emb = nn.Embedding(5, 3, padding_idx=0)
    emb(suanli.tensor([[0, 1, 0, 2]])).sum().backward()
    assert emb.weight.grad[0].tolist() == [0.0, 0.0, 0.0] and emb.weight.grad[1].tolist() == [1.0] * 3


@pytest.mark.parametrize("freeze", [True, False])
def test_embedding_from_pretrained(freeze):
    w = np.arange(12.0).reshape(4, 3)
    s = nn.Embedding.from_pretrained(suanli.tensor(w), freeze=freeze, padding_idx=1)
    t = tnn.Embedding.from_pretrained(torch.tensor(w), freeze=freeze, padding_idx=1)
    assert s.weight.requires_grad == t.weight.requires_grad == (not freeze)
    assert repr(s) == repr(t)
    idx = [[1, 3], [0, 1]]
    np.testing.assert_array_equal(s(suanli.tensor(idx)).detach().numpy(), t(torch.tensor(idx)).detach().numpy())
    with pytest.raises(ShapeError, match="2-D"):
        nn.Embedding.from_pretrained(suanli.zeros(3))


def test_embedding_max_norm_renormalises_weight_like_torch():
    check_layer(lambda L: L.Embedding(10, 4, max_norm=1.0), _ids, "float64")


# --------------------------------------------------------------------------- parameter-free layers
FREE = {
    "maxpool2d": (lambda L: L.MaxPool2d(2), randn(2, 3, 6, 5)),
    "maxpool2d_pad": (lambda L: L.MaxPool2d(3, stride=2, padding=1), randn(2, 2, 7, 6)),
    "maxpool2d_ceil_dil": (lambda L: L.MaxPool2d((2, 3), stride=2, dilation=(1, 2), ceil_mode=True),
                           randn(1, 2, 7, 9)),
    "maxpool1d": (lambda L: L.MaxPool1d(3, stride=2), randn(2, 3, 9)),
    "avgpool2d": (lambda L: L.AvgPool2d(2), randn(2, 3, 6, 5)),
    "avgpool2d_pad_nocount": (lambda L: L.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                                   count_include_pad=False), randn(2, 2, 6, 7)),
    "avgpool2d_divisor": (lambda L: L.AvgPool2d(2, stride=1, divisor_override=3), randn(1, 2, 4, 4)),
    "avgpool1d": (lambda L: L.AvgPool1d(3, stride=2, padding=1), randn(2, 3, 8)),
    "adaptiveavg2d": (lambda L: L.AdaptiveAvgPool2d((3, 2)), randn(2, 3, 7, 5)),
    "adaptiveavg2d_1": (lambda L: L.AdaptiveAvgPool2d(1), randn(2, 3, 4, 4)),
    "adaptiveavg1d": (lambda L: L.AdaptiveAvgPool1d(3), randn(2, 3, 7)),
    "adaptivemax2d": (lambda L: L.AdaptiveMaxPool2d((2, 3)), randn(2, 3, 5, 7)),
    "flatten": (lambda L: L.Flatten(), randn(2, 3, 4)),
    "flatten_range": (lambda L: L.Flatten(0, 1), randn(2, 3, 4)),
    "unflatten": (lambda L: L.Unflatten(1, (2, 3)), randn(4, 6, 2)),
    "identity": (lambda L: L.Identity(3, unused=True), randn(2, 3)),
    "softmax": (lambda L: L.Softmax(dim=1), randn(3, 4, 2)),
    "log_softmax": (lambda L: L.LogSoftmax(dim=-1), randn(3, 4)),
    "softmin": (lambda L: L.Softmin(dim=0), randn(3, 4)),
    "dropout_eval": (lambda L: L.Dropout(0.5), randn(3, 4)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(FREE))
def test_parameter_free_layer_matches_torch(name, dtype):
    make, inputs = FREE[name]
    check_layer(make, inputs, dtype, train="dropout" not in name)


ACTIVATIONS = [
    ("ReLU", {}), ("ReLU6", {}), ("LeakyReLU", {"negative_slope": 0.2}), ("ELU", {"alpha": 0.7}), ("SELU", {}),
    ("CELU", {"alpha": 1.5}), ("GELU", {}), ("GELU", {"approximate": "tanh"}), ("SiLU", {}), ("Mish", {}),
    ("Sigmoid", {}), ("Tanh", {}), ("Softplus", {"beta": 2.0, "threshold": 1.0}), ("Softsign", {}),
    ("Hardtanh", {"min_val": -0.5, "max_val": 0.8}), ("Hardsigmoid", {}), ("Hardswish", {}), ("LogSigmoid", {}),
    ("GLU", {"dim": 1}),
]


def _away_from_kinks(rng, dtype):
    x = rng.uniform(-4, 4, size=(3, 6))
    for k in (-3.0, -1.0, -0.5, 0.0, 0.5, 0.8, 1.0, 3.0, 6.0):   # kinks of relu6/hardtanh/hard*/softplus
        near = np.abs(x - k) < 0.05
        x[near] += 0.1
    return [x.astype(dtype)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,kwargs", ACTIVATIONS, ids=[f"{n}{i}" for i, (n, _) in enumerate(ACTIVATIONS)])
def test_activation_matches_torch(name, kwargs, dtype):
    # torch's CPU hardsigmoid backward multiplies by the float literal 1.0f/6 even in float64 (a 3e-8
    # relative error); suanli's gradient is exact, so that one comparison is looser
    tol = (1e-7, 1e-11) if (name == "Hardsigmoid" and dtype == "float64") else None
    check_layer(lambda L: getattr(L, name)(**kwargs), _away_from_kinks, dtype, tol=tol)


@pytest.mark.parametrize("name", ["ReLU", "SiLU", "ELU", "Hardtanh", "LeakyReLU"])
def test_inplace_activation_writes_input(name):
    x = suanli.tensor([-1.0, 0.5, 2.0])
    y = getattr(nn, name)(inplace=True)(x)
    tx = torch.tensor([-1.0, 0.5, 2.0])
    getattr(tnn, name)(inplace=True)(tx)
    np.testing.assert_allclose(x.numpy(), tx.numpy(), rtol=1e-6)
    assert y is x or np.shares_memory(y._data, x._data)


# --------------------------------------------------------------------------- dropout
def test_dropout_train_vs_eval():
    p = 0.25
    # (layer, input shape, number of independently dropped units)
    for cls, shape, units in ((nn.Dropout, (200, 100), 20000), (nn.Dropout1d, (40, 100, 5), 4000),
                              (nn.Dropout2d, (40, 100, 2, 3), 4000)):
        x = suanli.ones(*shape)
        drop = cls(p)
        y = drop(x).numpy()
        np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-7)
        assert abs((y == 0).mean() - p) < 5 * math.sqrt(p * (1 - p) / units), cls.__name__   # 5 sigma
        drop.eval()
        np.testing.assert_array_equal(drop(x).numpy(), x.numpy())
    x = suanli.ones(20, 10)
    assert float(nn.Dropout(1.0)(x).abs().sum()) == 0.0
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())
    y2 = nn.Dropout2d(0.5)(suanli.ones(4, 3, 8, 8)).numpy()
    assert all(len(np.unique(y2[n, c])) == 1 for n in range(4) for c in range(3))   # whole channels
    with pytest.raises(ShapeError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_gradient_uses_same_mask():
    x = suanli.ones(50, 20, requires_grad=True)
    y = nn.Dropout(0.5)(x)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.detach().numpy())


# --------------------------------------------------------------------------- multi-head attention
def _qkv(L: int, S: int, N: int, E: int, kd: int, vd: int, batch_first: bool, batched: bool = True):
    def shp(n, e):
        if not batched:
            return (n, e)
        return (N, n, e) if batch_first else (n, N, e)

    return lambda rng, dtype: [rng.standard_normal(shp(L, E)).astype(dtype),
                               rng.standard_normal(shp(S, kd)).astype(dtype),
                               rng.standard_normal(shp(S, vd)).astype(dtype)]


def _bool_or_float(mask: np.ndarray, lib, as_float: bool, dtype: str):
    if as_float:
        f = np.where(mask, -np.inf, 0.0).astype(dtype) + 0.1 * np.arange(mask.shape[-1], dtype=dtype)
        return torch.tensor(f) if lib is torch else suanli.tensor(f)
    return torch.tensor(mask) if lib is torch else suanli.tensor(mask)


MHA = {
    "self": ({}, dict(L=4, S=4, self_attn=True), {}),
    "cross": ({}, dict(L=4, S=5), {}),
    "batch_first": ({"batch_first": True}, dict(L=3, S=5), {}),
    "kdim_vdim": ({"kdim": 3, "vdim": 5}, dict(L=4, S=5), {}),
    "bias_kv_zero_attn": ({"add_bias_kv": True, "add_zero_attn": True}, dict(L=4, S=5), {"kpm": True}),
    "nobias_masks": ({"bias": False}, dict(L=4, S=5), {"kpm": True, "attn": "2d"}),
    "float_masks_per_head": ({}, dict(L=4, S=5), {"kpm": True, "attn": "3d", "float": True,
                                                  "average_attn_weights": False}),
    "causal": ({}, dict(L=4, S=4, self_attn=True), {"attn": "causal", "is_causal": True}),
    "unbatched": ({}, dict(L=4, S=5, batched=False), {"kpm": True}),
}


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(MHA))
def test_multihead_attention_matches_torch(name, dtype, need_weights):
    ctor, shape, opts = MHA[name]
    E, H, N = 8, 2, 3
    L, S = shape["L"], shape["S"]
    batched = shape.get("batched", True)
    inputs = _qkv(L, S, N, E, ctor.get("kdim", E), ctor.get("vdim", E), ctor.get("batch_first", False), batched)
    kpm = np.zeros((N, S) if batched else (S,), dtype=bool)
    if batched:                       # no query row loses every key (torch's weights path gives NaN there)
        kpm[0, -2:] = True
        kpm[1, 1] = True
    else:
        kpm[-1] = True
    attn = None
    if opts.get("attn") in ("2d", "causal"):
        attn = np.triu(np.ones((L, S), dtype=bool), 1)
    elif opts.get("attn") == "3d":
        attn = np.random.default_rng(1).random((N * H, L, S)) < 0.3

    def call(m, q, k, v):
        lib = torch if isinstance(m, tnn.Module) else suanli
        if shape.get("self_attn"):
            k = v = q
        kw = {"need_weights": need_weights, "average_attn_weights": opts.get("average_attn_weights", True),
              "is_causal": opts.get("is_causal", False)}
        if opts.get("kpm"):
            kw["key_padding_mask"] = _bool_or_float(kpm, lib, opts.get("float", False), dtype)
        if attn is not None:
            kw["attn_mask"] = _bool_or_float(attn, lib, opts.get("float", False), dtype)
        return m(q, k, v, **kw)

    grad_args = (0,) if shape.get("self_attn") else None
    check_layer(lambda Lb: Lb.MultiheadAttention(E, H, **ctor), inputs, dtype, call=call, grad_args=grad_args)


def test_multihead_attention_parameters_match_torch_layout():
    for kw in ({}, {"kdim": 3, "vdim": 5}, {"add_bias_kv": True, "bias": False}):
        s, t = nn.MultiheadAttention(8, 4, **kw), tnn.MultiheadAttention(8, 4, **kw)
        assert [(n, tuple(p.shape)) for n, p in s.named_parameters()] == \
               [(n, tuple(p.shape)) for n, p in t.named_parameters()]
        assert list(s.state_dict()) == list(t.state_dict())
        assert repr(s) == repr(t)


def test_multihead_attention_causal_without_mask_and_dropout():
    mha = nn.MultiheadAttention(8, 2, dropout=0.5)
    x = suanli.randn(5, 2, 8)
    mask = suanli.tensor(np.triu(np.ones((5, 5), dtype=bool), 1))
    mha.eval()
    a, wa = mha(x, x, x, is_causal=True)                    # torch requires attn_mask; suanli builds it
    b, wb = mha(x, x, x, attn_mask=mask)
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6, atol=1e-7)
    assert np.all(np.triu(wa.detach().numpy()[0], 1) == 0)
    c, _ = mha(x, x, x, is_causal=True, need_weights=False)
    np.testing.assert_allclose(c.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)
    mha.train()
    d, wd = mha(x, x, x)
    assert d.shape == (5, 2, 8) and np.any(wd.detach().numpy() == 0)


def test_multihead_attention_fully_masked_row_gives_zeros_not_nan():
    mha = nn.MultiheadAttention(4, 2).double()
    x = suanli.randn(3, 1, 4, dtype=suanli.float64, requires_grad=True)
    kpm = suanli.tensor([[True, False, False]])
    causal = suanli.tensor(np.triu(np.ones((3, 3), dtype=bool), 1))   # row 0 sees only key 0, padded
    for need_weights in (True, False):
        out, w = mha(x, x, x, key_padding_mask=kpm, attn_mask=causal, need_weights=need_weights)
        assert np.all(np.isfinite(out.detach().numpy()))
        out.sum().backward()
        assert np.all(np.isfinite(x.grad.numpy()))
        x.grad = None
        if need_weights:
            assert w.detach().numpy()[0, 0].tolist() == [0.0, 0.0, 0.0]
    ref = tnn.MultiheadAttention(4, 2).double()
    ref.load_state_dict({k: torch.tensor(v.numpy()) for k, v in mha.state_dict().items()})
    tout, _ = ref(*(torch.tensor(x.detach().numpy()),) * 3, key_padding_mask=torch.tensor(kpm.numpy()),
                  attn_mask=torch.tensor(causal.numpy()), need_weights=False)
    # rows that keep a key agree with torch; the dead row is the output bias there
    np.testing.assert_allclose(out.detach().numpy()[1:], tout.detach().numpy()[1:], rtol=1e-10)


def test_multihead_attention_errors():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(10, 3)
    mha = nn.MultiheadAttention(8, 2)
    with pytest.raises(ShapeError, match=r"query's last dim must equal embed_dim[\s\S]*Actual: query \(4, 2, 6\)"):
        mha(suanli.zeros(4, 2, 6), suanli.zeros(4, 2, 8), suanli.zeros(4, 2, 8))
    with pytest.raises(ShapeError, match="batch_first=True"):
        mha(suanli.zeros(4, 2, 8), suanli.zeros(5, 3, 8), suanli.zeros(5, 3, 8))
    with pytest.raises(ShapeError, match=r"2-D attn_mask has the wrong shape[\s\S]*\(4, 5\)"):
        mha(suanli.zeros(4, 2, 8), suanli.zeros(5, 2, 8), suanli.zeros(5, 2, 8), attn_mask=suanli.zeros(4, 4))
    with pytest.raises(ShapeError, match="key_padding_mask"):
        mha(suanli.zeros(4, 2, 8), suanli.zeros(5, 2, 8), suanli.zeros(5, 2, 8),
            key_padding_mask=suanli.zeros(2, 4, dtype=suanli.bool))


# --------------------------------------------------------------------------- loss modules
def _cls_inputs(probs: bool = False):
    def f(rng, dtype):
        x = rng.standard_normal((6, 5)).astype(dtype)
        if probs:
            p = rng.random((6, 5))
            return [x, (p / p.sum(1, keepdims=True)).astype(dtype)]
        t = rng.integers(0, 5, size=6)
        t[2] = 1 if f.ignore else t[2]
        return [x, t]
    f.ignore = False
    return f


def _logp_inputs(rng, dtype):
    x = rng.standard_normal((2, 4, 3))
    x = x - np.log(np.exp(x).sum(1, keepdims=True))
    return [x.astype(dtype), rng.integers(0, 4, size=(2, 3))]


def _pair(rng, dtype):
    return [rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal((4, 3)).astype(dtype)]


def _probs(rng, dtype):
    return [rng.uniform(0.05, 0.95, (4, 3)).astype(dtype), rng.uniform(0, 1, (4, 3)).astype(dtype)]


def _logits_binary(rng, dtype):
    return [rng.standard_normal((4, 3)).astype(dtype), (rng.random((4, 3)) < 0.5).astype(dtype)]


def _kl(rng, dtype):
    x = rng.standard_normal((3, 4))
    x = x - np.log(np.exp(x).sum(1, keepdims=True))
    p = rng.random((3, 4))
    return [x.astype(dtype), (p / p.sum(1, keepdims=True)).astype(dtype)]


def _w(lib, values, dtype="float64"):
    return torch.tensor(values, dtype=TORCH_DTYPE[dtype]) if lib is tnn else suanli.tensor(values, dtype=dtype)


LOSSES = {
    "ce": (lambda L: L.CrossEntropyLoss(), _cls_inputs(), None),
    "ce_weight_smooth_sum": (lambda L: L.CrossEntropyLoss(weight=_w(L, [1.0, 2.0, 0.5, 1.0, 3.0]),
                                                          label_smoothing=0.1, reduction="sum"), _cls_inputs(), None),
    "ce_ignore_none": (lambda L: L.CrossEntropyLoss(ignore_index=1, reduction="none"), _cls_inputs(), None),
    "ce_probs": (lambda L: L.CrossEntropyLoss(), _cls_inputs(probs=True), (0,)),
    "nll": (lambda L: L.NLLLoss(), _logp_inputs, None),
    "nll_weight": (lambda L: L.NLLLoss(weight=_w(L, [0.5, 1.0, 2.0, 1.0]), ignore_index=0), _logp_inputs, None),
    "mse": (lambda L: L.MSELoss(), _pair, None),
    "mse_none": (lambda L: L.MSELoss(reduction="none"), _pair, None),
    "l1_sum": (lambda L: L.L1Loss(reduction="sum"), _pair, None),
    "smooth_l1": (lambda L: L.SmoothL1Loss(beta=0.5), _pair, None),
    "huber": (lambda L: L.HuberLoss(delta=0.7), _pair, None),
    "bce": (lambda L: L.BCELoss(), _probs, (0,)),
    "bce_weight": (lambda L: L.BCELoss(weight=_w(L, [1.0, 2.0, 3.0]), reduction="sum"), _probs, (0,)),
    "bce_logits": (lambda L: L.BCEWithLogitsLoss(), _logits_binary, None),
    "bce_logits_posw": (lambda L: L.BCEWithLogitsLoss(pos_weight=_w(L, [1.0, 3.0, 0.5])), _logits_binary, None),
    "kl_batchmean": (lambda L: L.KLDivLoss(reduction="batchmean"), _kl, None),
    "kl_logtarget": (lambda L: L.KLDivLoss(reduction="sum", log_target=True),
                     lambda rng, dt: [a if i == 0 else np.log(a) for i, a in enumerate(_kl(rng, dt))], None),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_module_matches_torch(name, dtype):
    make, inputs, grad_args = LOSSES[name]
    check_layer(make, inputs, dtype, grad_args=grad_args)


def test_loss_module_buffers_and_legacy_args():
    s = nn.CrossEntropyLoss(weight=suanli.ones(3))
    assert list(s.state_dict()) == list(tnn.CrossEntropyLoss(weight=torch.ones(3)).state_dict()) == ["weight"]
    assert list(nn.BCEWithLogitsLoss(pos_weight=suanli.ones(2)).state_dict()) == ["pos_weight"]
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert nn.MSELoss(size_average=False).reduction == "sum"
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        nn.L1Loss(reduction="avg")(suanli.zeros(2), suanli.zeros(2))


# --------------------------------------------------------------------------- default initialisation
def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(a.ravel()), np.sort(b.ravel())
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, "right") / a.size
                               - np.searchsorted(b, grid, "right") / b.size)))


def _ks_limit(n: int, m: int) -> float:
    # the two-sample KS critical value at significance 1e-6: sqrt(-ln(alpha/2)/2) * sqrt((n+m)/(n*m))
    return math.sqrt(-math.log(0.5e-6) / 2) * math.sqrt((n + m) / (n * m))


def assert_same_distribution(s: np.ndarray, t: np.ndarray, what: str) -> None:
    """Same shape; constant tensors equal exactly; random ones pass a KS test at alpha = 1e-6 and have
    the same bound (|max| within 2%) when the draw is uniform, and std within 5%."""
    s, t = np.asarray(s, dtype=np.float64), np.asarray(t, dtype=np.float64)
    assert s.shape == t.shape, what
    if np.all(t == t.ravel()[0]):
        np.testing.assert_array_equal(s, t, err_msg=what)
        return
    ks = _ks(s, t)
    assert ks < _ks_limit(s.size, t.size), f"{what}: KS statistic {ks:.4f}"
    assert abs(s.std() / t.std() - 1) < 0.05, f"{what}: std {s.std()} vs torch {t.std()}"
    if np.abs(t).max() < 2 * t.std():        # a bounded (uniform) draw: the same bound, to within 2%
        assert abs(np.abs(s).max() / np.abs(t).max() - 1) < (0.02 if s.size > 4000 else 0.2), what


INIT_LAYERS = {
    "Linear": lambda L: L.Linear(256, 8192),
    "Bilinear": lambda L: L.Bilinear(32, 16, 4096),
    "Conv1d": lambda L: L.Conv1d(16, 4096, 5),
    "Conv2d": lambda L: L.Conv2d(8, 4096, 3, groups=2),
    "ConvTranspose2d": lambda L: L.ConvTranspose2d(4096, 16, 3),
    "ConvTranspose1d": lambda L: L.ConvTranspose1d(64, 4096, 4),
    "Embedding": lambda L: L.Embedding(4096, 32, padding_idx=3),
    "MultiheadAttention": lambda L: L.MultiheadAttention(512, 8, add_bias_kv=True),
    "MultiheadAttention_kv": lambda L: L.MultiheadAttention(256, 4, kdim=64, vdim=128),
    "BatchNorm2d": lambda L: L.BatchNorm2d(16),
    "LayerNorm": lambda L: L.LayerNorm(16),
    "GroupNorm": lambda L: L.GroupNorm(4, 16),
    "RMSNorm": lambda L: L.RMSNorm(16),
    "InstanceNorm2d": lambda L: L.InstanceNorm2d(16, affine=True, track_running_stats=True),
}


@pytest.mark.parametrize("name", list(INIT_LAYERS))
def test_default_init_matches_torch_distribution(name):
    torch.manual_seed(0)
    t = INIT_LAYERS[name](tnn)
    s = INIT_LAYERS[name](nn)
    tsd = t.state_dict()
    sd = s.state_dict()
    assert list(sd) == list(tsd)
    for key, value in sd.items():
        assert str(value.dtype) == str(tsd[key].dtype).replace("torch.", ""), key
        assert_same_distribution(value.numpy(), tsd[key].numpy(), f"{name}.{key}")


def test_init_ks_test_detects_a_wrong_bound():
    """The statistical test has teeth: a 10% wider uniform fails it."""
    rng = np.random.default_rng(0)
    with pytest.raises(AssertionError):
        assert_same_distribution(rng.uniform(-1.1, 1.1, 100_000), rng.uniform(-1, 1, 100_000), "wide")


INIT_FUNCS = [
    ("kaiming_uniform_", {}), ("kaiming_uniform_", {"a": 0.1, "mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal_", {}), ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "tanh"}),
    ("xavier_uniform_", {}), ("xavier_uniform_", {"gain": 2.0}), ("xavier_normal_", {"gain": 0.5}),
    ("trunc_normal_", {}), ("trunc_normal_", {"mean": 1.0, "std": 0.5, "a": 0.0, "b": 1.5}),
    ("normal_", {"mean": 2.0, "std": 3.0}), ("uniform_", {"a": -2.0, "b": 5.0}),
]


@pytest.mark.parametrize("shape", [(300, 200), (64, 32, 3, 3)])
@pytest.mark.parametrize("fn,kwargs", INIT_FUNCS, ids=[f"{f}{i}" for i, (f, _) in enumerate(INIT_FUNCS)])
def test_init_function_matches_torch(fn, kwargs, shape):
    torch.manual_seed(0)
    t = getattr(tnn.init, fn)(torch.empty(shape), **kwargs)
    w = suanli.empty(*shape)
    out = getattr(nn.init, fn)(w, **kwargs)
    assert out is w
    assert_same_distribution(w.numpy(), t.numpy(), fn)
    if fn == "trunc_normal_":
        lo, hi = kwargs.get("a", -2.0), kwargs.get("b", 2.0)
        assert w.numpy().min() >= lo and w.numpy().max() <= hi


def test_init_constant_functions_and_fans():
    w = suanli.empty(3, 4, dtype=suanli.float64)
    assert nn.init.zeros_(w).tolist() == [[0.0] * 4] * 3
    assert nn.init.ones_(w).tolist() == [[1.0] * 4] * 3
    assert nn.init.constant_(w, 2.5).tolist() == [[2.5] * 4] * 3
    np.testing.assert_array_equal(nn.init.eye_(w).numpy(), np.eye(3, 4))
    for shape in [(5, 3), (6, 4, 3), (8, 2, 3, 5)]:
        assert nn.init._calculate_fan_in_and_fan_out(suanli.empty(*shape)) == \
            tnn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    with pytest.raises(ShapeError, match="at least 2 dimensions"):
        nn.init.xavier_uniform_(suanli.empty(3))
    with pytest.raises(ShapeError, match="fan_in"):
        nn.init.kaiming_uniform_(suanli.empty(3, 3), mode="fan_avg")
    p = nn.Parameter(suanli.zeros(3, 3))
    v0 = p._version
    nn.init.normal_(p)                                # in place on a leaf that requires grad
    assert p._version > v0 and p.requires_grad and p.grad is None


@pytest.mark.parametrize("shape,gain", [((6, 10), 1.0), ((10, 6), 2.0), ((4, 3, 2, 2), 0.5), ((8, 8), 1.0)])
def test_orthogonal(shape, gain):
    w = nn.init.orthogonal_(suanli.empty(*shape, dtype=suanli.float64), gain=gain).numpy()
    flat = w.reshape(shape[0], -1) / gain
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-12)
    with pytest.raises(ShapeError, match="2 or more"):
        nn.init.orthogonal_(suanli.empty(4))


@pytest.mark.parametrize("nonlinearity,param", [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None), ("conv_transpose1d", None),
    ("conv_transpose2d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 1), ("selu", None)])
def test_calculate_gain_matches_torch(nonlinearity, param):
    assert nn.init.calculate_gain(nonlinearity, param) == pytest.approx(tnn.init.calculate_gain(nonlinearity, param),
                                                                         rel=1e-15)


def test_calculate_gain_errors():
    with pytest.raises(ShapeError, match="unsupported nonlinearity 'swish'"):
        nn.init.calculate_gain("swish")
    with pytest.raises(ShapeError, match="not a number"):
        nn.init.calculate_gain("leaky_relu", "x")


def test_init_is_reproducible_with_manual_seed():
    suanli.manual_seed(3)
    a = nn.Linear(4, 4).weight.detach().numpy().copy()
    suanli.manual_seed(3)
    b = nn.Linear(4, 4).weight.detach().numpy()
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- layer constructor errors
def test_layer_constructor_errors_are_clear():
    with pytest.raises(ShapeError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ShapeError, match="padding_mode 'mirror'"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ShapeError, match="strided convolutions"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ShapeError, match="kernel_size must be an int or a tuple of 2 ints"):
        nn.Conv2d(3, 4, (3, 3, 3))
    with pytest.raises(ShapeError, match="in_features must be a non-negative int"):
        nn.Linear(-1, 3)
    with pytest.raises(ShapeError, match="divisible"):
        nn.GroupNorm(3, 4)
    with pytest.raises(ShapeError, match=r"padding_idx 7 is outside"):
        nn.Embedding(5, 2, padding_idx=7)
    with pytest.raises(ShapeError, match=r"InstanceNorm2d: expected a 3-D \(unbatched\) or 4-D input"):
        nn.InstanceNorm2d(3)(suanli.zeros(2, 3))


def test_linear_forward_error_names_the_shapes():
    with pytest.raises(ShapeError) as info:
        nn.Linear(4, 2)(suanli.zeros(3, 5))
    assert "(3, 5)" in str(info.value) and "(2, 4)" in str(info.value)
