"""Module semantics against torch: names and order, state_dict round trips and errors, hooks, modes,
dtype conversion, registration errors, repr, and the cost of attribute reads."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn as tnn

import suanli
from suanli import nn
from suanli.errors import ShapeError, SuanliError


# --------------------------------------------------------------------------- one architecture, two libraries
def build(lib):
    """The same model in torch (lib=torch.nn) or suanli (lib=suanli.nn): nested containers, a tied
    weight, bias-free layers, BatchNorm buffers, a persistent and a non-persistent buffer."""
    back = torch if lib is tnn else suanli

    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            self.features = lib.Sequential(lib.Conv2d(3, 4, 3, bias=False), lib.BatchNorm2d(4), lib.ReLU())
            self.blocks = lib.ModuleList([lib.Linear(4, 4), lib.Sequential(lib.Linear(4, 4), lib.Tanh())])
            self.heads = lib.ModuleDict({"a": lib.Linear(4, 2), "b": lib.Linear(4, 3, bias=False)})
            self.tied = lib.Linear(4, 4)
            self.tied.weight = self.blocks[0].weight          # tied: re-assigning keeps the slot
            self.register_buffer("mask", back.ones(4), persistent=False)
            self.register_buffer("scale", back.ones(1))
            self.emb = lib.Embedding(5, 4, padding_idx=0)
            self.shared = self.heads["a"]                      # a module reachable under two names
            self.norm = lib.LayerNorm(4)

        def forward(self, x):
            h = self.features(x).mean((2, 3)) * self.scale
            h = self.blocks[1](self.blocks[0](h))
            return self.heads["a"](self.tied(h)), self.heads["b"](h)

    return Net()


def names(pairs):
    return [n for n, _ in pairs]


@pytest.fixture
def pair():
    return build(nn), build(tnn)


def test_named_members_match_torch(pair):
    s, t = pair
    assert names(s.named_parameters()) == names(t.named_parameters())
    assert names(s.named_buffers()) == names(t.named_buffers())
    assert names(s.named_modules()) == names(t.named_modules())
    assert names(s.named_children()) == names(t.named_children())
    assert names(s.named_parameters(remove_duplicate=False)) == names(t.named_parameters(remove_duplicate=False))
    assert names(s.named_modules(remove_duplicate=False)) == names(t.named_modules(remove_duplicate=False))
    assert names(s.named_parameters(prefix="net")) == names(t.named_parameters(prefix="net"))
    assert names(s.features.named_parameters(recurse=False)) == []
    assert names(s.named_buffers(recurse=False)) == names(t.named_buffers(recurse=False)) == ["mask", "scale"]
    assert len(list(s.parameters())) == len(list(t.parameters()))


def test_state_dict_keys_and_shapes_match_torch(pair):
    s, t = pair
    sd, td = s.state_dict(), t.state_dict()
    assert list(sd) == list(td)                      # order too (tied weight stays in its slot)
    assert "mask" not in sd                          # non-persistent buffer
    for k in td:
        assert tuple(sd[k].shape) == tuple(td[k].shape), k
        assert str(sd[k].dtype) == str(td[k].dtype).replace("torch.", ""), k
    assert list(s.state_dict(prefix="m.")) == list(t.state_dict(prefix="m."))
    assert not sd["tied.weight"].requires_grad       # detached, but shares storage
    assert np.shares_memory(sd["tied.weight"]._data, s.tied.weight._data)
    assert s.state_dict(keep_vars=True)["tied.weight"] is s.tied.weight


def test_torch_state_dict_loads_and_forward_matches(pair):
    s, t = pair
    t.double().eval()
    s.double().eval()
    with torch.no_grad():
        for b in t.buffers():
            if b.is_floating_point():
                b.uniform_(0.5, 1.5)
    result = s.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    assert repr(result) == "<All keys matched successfully>"
    assert s.tied.weight is s.blocks[0].weight       # loading keeps the tie
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    for a, b in zip(s(suanli.tensor(x)), t(torch.tensor(x))):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-12)
    # and back: suanli's state_dict loads into torch
    t2 = build(tnn).double()
    t2.load_state_dict({k: torch.tensor(v.numpy()) for k, v in s.state_dict().items()})


def test_strict_load_names_every_mismatch_with_both_shapes(pair):
    s, _ = pair
    sd = {k: v.numpy().copy() for k, v in s.state_dict().items()}
    sd["heads.a.weight"] = np.zeros((3, 4))
    sd["features.0.weight"] = np.zeros((4, 3, 5, 5))
    del sd["norm.bias"]
    sd["norm.weight"] = np.zeros(4)
    sd["extra.weight"] = np.zeros(2)
    with pytest.raises(ShapeError) as info:
        s.load_state_dict(sd)
    msg = str(info.value)
    assert "heads.a.weight: checkpoint shape (3, 4), model shape (2, 4)" in msg
    assert "features.0.weight: checkpoint shape (4, 3, 5, 5), model shape (4, 3, 3, 3)" in msg
    assert "norm.bias" in msg and "extra.weight" in msg and "strict=False" in msg
    # nothing was written by the failed strict load
    assert s.norm.weight.tolist() == [1.0] * 4


def test_strict_load_missing_and_unexpected(pair):
    s, _ = pair
    sd = dict(s.state_dict())
    del sd["emb.weight"]
    sd["bogus"] = suanli.zeros(1)
    with pytest.raises(SuanliError, match=r"missing keys: \['emb.weight'\][\s\S]*unexpected keys: \['bogus'\]"):
        s.load_state_dict(sd)
    res = s.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["emb.weight"] and res.unexpected_keys == ["bogus"] and res.mismatched_keys == []
    assert res == (["emb.weight"], ["bogus"], [])  # a NamedTuple, like torch's _IncompatibleKeys


def test_non_strict_load_skips_shape_mismatch_and_warns(pair):
    s, _ = pair
    before = s.heads.b.weight.detach().numpy().copy()
    sd = {k: v.numpy() + 1.0 if v.dtype.kind == "f" else v.numpy() for k, v in s.state_dict().items()}
    sd["heads.b.weight"] = np.zeros((7, 4))
    with pytest.warns(UserWarning, match=r"heads.b.weight: checkpoint shape \(7, 4\), model shape \(3, 4\)"):
        res = s.load_state_dict(sd, strict=False)
    assert res.mismatched_keys == ["heads.b.weight"] and res.missing_keys == [] and res.unexpected_keys == []
    np.testing.assert_array_equal(s.heads.b.weight.detach().numpy(), before)
    np.testing.assert_array_equal(s.heads.a.bias.detach().numpy(), sd["heads.a.bias"])   # the rest loaded


def test_checkpoint_without_num_batches_tracked_loads_like_torch(pair):
    s, t = pair
    sd = {k: v.numpy() for k, v in s.state_dict().items() if not k.endswith("num_batches_tracked")}
    s.features[1].num_batches_tracked.fill_(5)
    assert repr(s.load_state_dict(sd)) == "<All keys matched successfully>"
    assert int(s.features[1].num_batches_tracked.item()) == 5        # kept
    t.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})   # torch accepts it too


def test_load_converts_dtype_and_bumps_version():
    lin = nn.Linear(2, 2)
    v0 = lin.weight._version
    lin.load_state_dict({"weight": np.ones((2, 2), dtype=np.float64), "bias": [1, 2]})
    assert lin.weight.dtype == suanli.float32 and lin.weight._version > v0
    assert lin.bias.tolist() == [1.0, 2.0]
    with pytest.raises(TypeError, match="mapping"):
        lin.load_state_dict([("weight", np.ones((2, 2)))])


# --------------------------------------------------------------------------- hooks
def test_forward_pre_and_post_hooks_modify_and_remove():
    lin = nn.Linear(3, 2)
    x = suanli.ones(1, 3)
    calls = []

    def pre(module, args):
        calls.append("pre")
        return (args[0] * 2,)

    def post(module, args, output):
        calls.append("post")
        assert module is lin and args[0].tolist() == (x * 2).tolist()   # post sees the modified args
        return output + 100

    h1 = lin.register_forward_pre_hook(pre)
    h2 = lin.register_forward_hook(post)
    expected = lin.forward(x * 2) + 100
    np.testing.assert_allclose(lin(x).detach().numpy(), expected.detach().numpy())
    assert calls == ["pre", "post"]
    h1.remove()
    h2.remove()
    h2.remove()                                           # removing twice is harmless
    np.testing.assert_allclose(lin(x).detach().numpy(), lin.forward(x).detach().numpy())
    assert calls == ["pre", "post"]
    # a pre-hook may return a bare tensor; a hook returning None changes nothing; context manager removal
    with lin.register_forward_pre_hook(lambda m, a: a[0] * 0):
        with lin.register_forward_hook(lambda m, a, o: None):
            np.testing.assert_allclose(lin(x).detach().numpy(), lin.bias.detach().numpy()[None])
    assert not lin._forward_pre_hooks and not lin._forward_hooks


def test_hooks_run_in_registration_order_like_torch():
    for lib, back in ((nn, suanli), (tnn, torch)):
        m = lib.Identity()
        order = []
        m.register_forward_hook(lambda mod, a, o: order.append(1))
        m.register_forward_hook(lambda mod, a, o: order.append(2))
        m(back.zeros(1))
        assert order == [1, 2]


# --------------------------------------------------------------------------- modes and bulk operations
def test_train_eval_propagate_and_apply(pair):
    s, t = pair
    assert s.eval() is s
    t.eval()
    assert [m.training for m in s.modules()] == [m.training for m in t.modules()]
    assert not any(m.training for m in s.modules())
    s.train()
    assert all(m.training for m in s.modules())
    s.blocks.eval()
    assert not s.blocks[1][1].training and s.features.training
    with pytest.raises(ValueError, match="bool"):
        s.train("no")
    seen_s, seen_t = [], []
    s.apply(lambda m: seen_s.append(type(m).__name__))
    t.apply(lambda m: seen_t.append(type(m).__name__))
    assert seen_s == seen_t                               # children first, then self, dedupe like torch
    s.apply(lambda m: nn.init.zeros_(m.weight) if isinstance(m, nn.Linear) else None)
    assert float(s.heads.a.weight.abs().sum()) == 0.0


def test_dropout_and_batchnorm_follow_mode():
    net = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(3))
    x = suanli.randn(8, 3)
    net.eval()
    np.testing.assert_allclose(net(x).detach().numpy(), x.numpy() / np.sqrt(1 + 1e-5), rtol=1e-6)
    assert int(net[1].num_batches_tracked.item()) == 0
    net.train()
    net(x)
    assert int(net[1].num_batches_tracked.item()) == 1


@pytest.mark.parametrize("dtype", [suanli.float64, suanli.float16, suanli.bfloat16])
def test_to_dtype_keeps_parameter_identity(pair, dtype):
    s, _ = pair
    params = {n: p for n, p in s.named_parameters()}
    s(suanli.randn(1, 3, 5, 5))[0].sum().backward()
    s.to(dtype)
    for n, p in s.named_parameters():
        assert p is params[n] and isinstance(p, nn.Parameter) and p.dtype == dtype and p.requires_grad
        assert p.grad is None or p.grad.dtype == dtype
    assert s.features[1].running_mean.dtype == dtype
    assert s.features[1].num_batches_tracked.dtype == suanli.int64     # integer buffers untouched
    assert s.tied.weight is s.blocks[0].weight
    s.float()
    assert s.heads.a.weight.dtype == suanli.float32
    assert s.to("cpu") is s and s.cpu() is s
    with pytest.raises(ValueError, match="CPU"):
        s.to("cuda")
    with pytest.raises(TypeError, match="floating"):
        s.to(suanli.int32)


def test_double_forward_matches_float64_inputs():
    lin = nn.Linear(3, 2).double()
    out = lin(suanli.randn(4, 3, dtype=suanli.float64))
    assert out.dtype == suanli.float64


def test_zero_grad_and_requires_grad(pair):
    s, _ = pair
    s(suanli.randn(2, 3, 5, 5))[0].sum().backward()
    assert s.heads.a.weight.grad is not None
    s.zero_grad(set_to_none=False)
    assert float(s.heads.a.weight.grad.abs().sum()) == 0.0
    s.zero_grad()
    assert all(p.grad is None for p in s.parameters())
    assert s.requires_grad_(False) is s
    assert not any(p.requires_grad for p in s.parameters())
    out = s(suanli.randn(2, 3, 5, 5))[0]
    assert not out.requires_grad
    s.heads.requires_grad_()
    assert s.heads.a.weight.requires_grad and not s.tied.bias.requires_grad


# --------------------------------------------------------------------------- registration
def test_registration_errors_are_clear():
    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(suanli.zeros(2))
            super().__init__()

    with pytest.raises(SuanliError, match=r"before Module.__init__\(\)[\s\S]*super\(\).__init__\(\)"):
        Early()

    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"cannot assign Tensor as parameter 'weight'.*nn.Parameter"):
        lin.weight = suanli.zeros(2, 2)
    with pytest.raises(TypeError, match="child module"):
        nn.Sequential(nn.ReLU()).__setattr__("0", 3)
    with pytest.raises(TypeError, match="Parameter or None"):
        lin.register_parameter("w2", suanli.zeros(2))
    with pytest.raises(KeyError, match="'.'"):
        lin.register_parameter("a.b", nn.Parameter(suanli.zeros(1)))
    with pytest.raises(KeyError, match="already exists"):
        lin.register_buffer("in_features", suanli.zeros(1))
    with pytest.raises(ValueError, match="leaf"):
        lin.register_parameter("w3", _non_leaf_param())
    with pytest.raises(TypeError, match="Tensor or None"):
        lin.register_buffer("b2", np.zeros(2))
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(1)


def _non_leaf_param():
    q = nn.Parameter(suanli.zeros(1))
    q._node = (nn.Parameter(suanli.zeros(1)) * 2)._node     # forge a history (not reachable by normal use)
    return q


def test_reassignment_and_deletion():
    lin = nn.Linear(2, 3)
    lin.bias = None                                  # torch: None keeps the (empty) slot
    assert names(lin.named_parameters()) == ["weight"] and "bias" in lin._parameters
    lin.bias = nn.Parameter(suanli.zeros(3))
    assert names(lin.named_parameters()) == ["weight", "bias"]
    lin.extra = nn.Linear(1, 1)
    del lin.extra
    assert "extra" not in lin._modules and not hasattr(lin, "extra")
    lin.buf = nn.Buffer(suanli.zeros(1), persistent=False)
    assert names(lin.named_buffers()) == ["buf"] and "buf" not in lin.state_dict()
    lin.buf = suanli.ones(1)                         # plain tensor into an existing buffer slot
    assert lin.buf.tolist() == [1.0] and "buf" not in lin.state_dict()
    lin.register_buffer("buf", suanli.ones(1))       # re-registering as persistent
    assert "buf" in lin.state_dict()
    with pytest.raises(TypeError, match="buffer"):
        lin.buf = [1.0]
    lin.weight = nn.Linear(1, 1)                     # a module replaces a parameter of the same name
    assert "weight" not in lin._parameters and "weight" in lin._modules


def test_get_submodule_and_parameter(pair):
    s, _ = pair
    assert s.get_submodule("blocks.1.0") is s.blocks[1][0]
    assert s.get_parameter("heads.b.weight") is s.heads.b.weight
    with pytest.raises(AttributeError, match="no submodule 'nope'"):
        s.get_submodule("blocks.nope")


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and len(seq[1:]) == 2
    assert names(seq[1:].named_parameters()) == ["2.weight", "2.bias"]
    with pytest.raises(IndexError, match="out of range"):
        seq[3]
    from collections import OrderedDict
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert names(named.named_children()) == ["fc", "act"]
    ml = nn.ModuleList([nn.ReLU()]).extend([nn.Tanh()])
    ml[0] = nn.GELU()
    assert [type(m).__name__ for m in ml] == ["GELU", "Tanh"]
    md = nn.ModuleDict({"x": nn.ReLU()})
    md["y"] = nn.Tanh()
    assert list(md) == ["x", "y"] and "y" in md and len(md) == 2
    pl = nn.ParameterList([suanli.zeros(2), nn.Parameter(suanli.ones(1))])
    assert names(pl.named_parameters()) == ["0", "1"] and all(isinstance(p, nn.Parameter) for p in pl)


# --------------------------------------------------------------------------- repr
def test_repr_equals_torch(pair):
    s, t = pair
    assert repr(s) == repr(t)
    layers = [
        lambda L: L.ModuleList([L.Linear(2, 2), L.Linear(2, 2), L.ReLU(), L.Linear(2, 2)]),
        lambda L: L.ModuleList([]),
        lambda L: L.Conv2d(2, 4, 3, stride=2, padding=1, dilation=2, groups=2, bias=False,
                           padding_mode="reflect"),
        lambda L: L.Conv1d(2, 2, 3, padding="same", padding_mode="circular"),
        lambda L: L.Conv2d(2, 2, 3, padding="valid"),
        lambda L: L.ConvTranspose2d(2, 3, 3, stride=2, output_padding=1),
        lambda L: L.ConvTranspose1d(2, 3, 3, dilation=2, groups=1, bias=False),
        lambda L: L.BatchNorm1d(3, momentum=None, affine=False),
        lambda L: L.BatchNorm2d(3, bias=False, track_running_stats=False),
        lambda L: L.LayerNorm((3, 4), bias=False), lambda L: L.LayerNorm(3, elementwise_affine=False),
        lambda L: L.GroupNorm(2, 4), lambda L: L.GroupNorm(2, 4, affine=False), lambda L: L.RMSNorm(3, eps=1e-6),
        lambda L: L.InstanceNorm2d(3), lambda L: L.InstanceNorm2d(3, affine=True, track_running_stats=True),
        lambda L: L.Embedding(5, 3, padding_idx=-1), lambda L: L.Linear(2, 3, bias=False),
        lambda L: L.Bilinear(2, 3, 4), lambda L: L.Dropout(0.2, inplace=True), lambda L: L.Dropout2d(),
        lambda L: L.MaxPool2d(3, 2, 1, ceil_mode=True), lambda L: L.AvgPool2d(3, 1),
        lambda L: L.AdaptiveAvgPool2d((2, 3)), lambda L: L.AdaptiveAvgPool1d(4), lambda L: L.MaxPool1d(2),
        lambda L: L.Flatten(0), lambda L: L.Unflatten(1, (2, 3)), lambda L: L.Identity(),
        lambda L: L.MultiheadAttention(8, 2), lambda L: L.MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False),
        lambda L: L.CrossEntropyLoss(label_smoothing=0.1), lambda L: L.MSELoss(),
    ]
    for make in layers:
        assert repr(make(nn)) == repr(make(tnn))


ACTIVATIONS = [
    ("ReLU", {}), ("ReLU", {"inplace": True}), ("ReLU6", {}), ("ReLU6", {"inplace": True}),
    ("LeakyReLU", {}), ("LeakyReLU", {"negative_slope": 0.2, "inplace": True}), ("ELU", {"alpha": 0.5}),
    ("ELU", {"inplace": True}), ("SELU", {}), ("SELU", {"inplace": True}), ("CELU", {"alpha": 2.0}),
    ("GELU", {}), ("GELU", {"approximate": "tanh"}), ("SiLU", {}), ("SiLU", {"inplace": True}), ("Mish", {}),
    ("Mish", {"inplace": True}), ("Sigmoid", {}), ("Tanh", {}), ("Softplus", {"beta": 2.0}), ("Softsign", {}),
    ("Hardtanh", {}), ("Hardtanh", {"min_val": -2.0, "max_val": 3.0, "inplace": True}), ("Hardsigmoid", {}),
    ("Hardswish", {"inplace": True}), ("LogSigmoid", {}), ("GLU", {}), ("Softmax", {"dim": 1}), ("Softmax", {}),
    ("LogSoftmax", {"dim": -1}), ("Softmin", {"dim": 0}),
]


@pytest.mark.parametrize("name,kwargs", ACTIVATIONS)
def test_activation_repr_equals_torch(name, kwargs):
    assert repr(getattr(nn, name)(**kwargs)) == repr(getattr(tnn, name)(**kwargs))


# --------------------------------------------------------------------------- copies and speed
def test_deepcopy_keeps_structure_and_ties(pair):
    s, _ = pair
    c = copy.deepcopy(s)
    assert names(c.named_parameters()) == names(s.named_parameters())
    assert c.tied.weight is c.blocks[0].weight and c.tied.weight is not s.tied.weight
    assert isinstance(c.tied.weight, nn.Parameter) and c.tied.weight.requires_grad


def test_attribute_reads_are_plain():
    """No __getattr__ on Module: parameters and submodules live in the instance __dict__."""
    assert "__getattr__" not in vars(nn.Module) and not hasattr(nn.Module, "__getattr__")
    lin = nn.Linear(4, 4)
    assert lin.__dict__["weight"] is lin.weight and lin.__dict__["bias"] is lin.bias
    seq = nn.Sequential(lin)
    assert seq.__dict__["0"] is lin

    # no attribute hook either: a read is the interpreter's own instance-dict lookup (a timing
    # comparison lives in bench/, not in tests: a shared machine makes timed asserts flaky)
    assert type(lin).__getattribute__ is object.__getattribute__
    assert type(seq).__getattribute__ is object.__getattribute__


def test_unknown_attribute_error_is_plain_attribute_error():
    with pytest.raises(AttributeError):
        nn.Linear(2, 2).nope


def test_no_warnings_on_clean_load(pair):
    s, _ = pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.load_state_dict(s.state_dict())
