"""nn.transfer: LeNet-5 weights into a LeNet-6 (one more hidden layer), wrapper prefixes from torch
checkpoints (DataParallel/DDP's ``module.``, torch.compile's ``_orig_mod.``), safetensors files, the
report, and the example script."""
from __future__ import annotations

import os
import runpy

import numpy as np
import pytest
import torch
import torch.nn as tnn

import suanli
from suanli import nn

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "transfer_lenet.py")
LENET = runpy.run_path(EXAMPLE)            # the example's LeNet6 (and LeNet5 from suanli.models)
LeNet5, LeNet6 = LENET["LeNet5"], LENET["LeNet6"]


class TorchLeNet5(tnn.Module):
    """The same LeNet-5 in torch, attribute for attribute."""

    def __init__(self):
        super().__init__()
        self.c1, self.s2 = tnn.Conv2d(1, 6, 5), tnn.AvgPool2d(2)
        self.c3, self.s4 = tnn.Conv2d(6, 16, 5), tnn.AvgPool2d(2)
        self.c5, self.f6, self.output = tnn.Conv2d(16, 120, 5), tnn.Linear(120, 84), tnn.Linear(84, 10)

    def forward(self, x):
        x = self.s4(self.c3(self.s2(self.c1(x).tanh())).tanh())
        return self.output(self.f6(self.c5(x).tanh().flatten(1)).tanh())


def _f6_activations(model: nn.Module, x: suanli.Tensor) -> np.ndarray:
    """What the model computes up to and including f6 (captured with a forward hook)."""
    seen = []
    with model.f6.register_forward_hook(lambda m, args, out: seen.append(out.tanh().detach().numpy())):
        model(x)
    return seen[0]


def test_lenet5_into_lenet6():
    src, dst = LeNet5(), LeNet6()
    report = nn.transfer(dst, src.state_dict())
    assert report.loaded == [f"{n}.{p}" for n in ("c1", "c3", "c5", "f6") for p in ("weight", "bias")]
    assert report.missing == ["f7.weight", "f7.bias"]
    assert report.skipped_shape == {"output.weight": ((10, 84), (10, 42)), "output.bias": ((10,), (10,))}
    assert report.unexpected == [] and not report.complete
    for name in ("c1", "c3", "c5", "f6"):
        for p in ("weight", "bias"):
            a, b = getattr(getattr(src, name), p), getattr(getattr(dst, name), p)
            np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
            assert not np.shares_memory(a._data, b._data)          # copied, not aliased
    # the first four layers compute the same function in both networks
    x = suanli.randn(3, 1, 32, 32)
    np.testing.assert_array_equal(_f6_activations(dst, x), _f6_activations(src, x))
    text = str(report)
    assert text.splitlines()[0] == "transfer into LeNet6: 8 loaded, 2 skipped (shape), 2 missing, 0 unexpected"
    assert "output.weight  shape    (10, 84)         (10, 42)" in text
    assert "f7.weight      missing  -                (42, 84)" in text
    assert "output.bias    layer" in text


def test_by_layer_false_loads_matching_siblings():
    dst = LeNet6()
    report = nn.transfer(dst, LeNet5().state_dict(), by_layer=False)
    assert "output.bias" in report.loaded and list(report.skipped_shape) == ["output.weight"]


def test_transfer_never_raises_on_shapes_and_strict_load_does():
    dst = LeNet6()
    with pytest.raises(suanli.ShapeError, match=r"output.weight: checkpoint shape \(10, 84\), model shape \(10, 42\)"):
        dst.load_state_dict(LeNet5().state_dict())
    report = nn.transfer(dst, {"c1.weight": np.zeros((3, 3)), "c1.bias": np.zeros(6)})
    assert report.skipped_shape == {"c1.weight": ((3, 3), (6, 1, 5, 5)), "c1.bias": ((6,), (6,))}
    assert report.loaded == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")     # torch.compile's imports
@pytest.mark.parametrize("wrap", ["plain", "dataparallel", "compile", "both"])
def test_torch_checkpoint_with_wrapper_prefixes(tmp_path, wrap):
    torch.manual_seed(0)
    ref = TorchLeNet5()
    wrapped = ref
    if wrap in ("dataparallel", "both"):
        wrapped = tnn.DataParallel(wrapped)          # keys 'module.*' (as DistributedDataParallel)
    if wrap in ("compile", "both"):
        wrapped = torch.compile(wrapped)             # keys '_orig_mod.*' (nothing is compiled here)
    path = tmp_path / "lenet5.pt"
    torch.save(wrapped.state_dict(), path)
    state = torch.load(path)
    assert all(k.startswith({"plain": "", "dataparallel": "module.", "compile": "_orig_mod.",
                             "both": "_orig_mod.module."}[wrap]) for k in state)
    model = LeNet5()
    report = nn.transfer(model, state)
    assert report.complete and len(report.loaded) == 10
    assert (report.renamed == {}) == (wrap == "plain")
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model(suanli.tensor(x)).detach().numpy(), expected, rtol=1e-4, atol=1e-5)
    if wrap != "plain":
        assert " <- " in str(report)                  # the table shows the source name
        off = nn.transfer(LeNet5(), state, strip_prefixes=())
        assert off.loaded == [] and len(off.unexpected) == 10 and len(off.missing) == 10


def test_safetensors_path_and_prefix_map(tmp_path):
    io = pytest.importorskip("suanli.io")
    src = LeNet5()
    path = tmp_path / "backbone.safetensors"
    io.save_file({f"backbone.{k}": v for k, v in src.state_dict().items()}, str(path))
    dst = LeNet6()
    report = nn.transfer(dst, path, prefix_map={"backbone.": ""})
    assert len(report.loaded) == 8 and report.renamed["c1.weight"] == "backbone.c1.weight"
    np.testing.assert_array_equal(dst.c3.weight.detach().numpy(), src.c3.weight.detach().numpy())
    # a longer prefix wins over a shorter one
    report = nn.transfer(LeNet6(), {"a.b.f6.weight": np.zeros((84, 120)), "a.c1.bias": np.zeros(6)},
                         prefix_map={"a.": "", "a.b.": ""})
    assert report.loaded == ["c1.bias", "f6.weight"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        nn.transfer(dst, str(tmp_path / "nope.safetensors"))


def test_sources_of_every_kind_and_bad_input(capsys):
    model = nn.Linear(3, 2)
    weight = np.arange(6.0).reshape(2, 3)
    report = nn.transfer(model, {"weight": suanli.tensor(weight), "bias": [1.0, 2.0], "extra": np.zeros(1)},
                         verbose=True)
    assert report.loaded == ["weight", "bias"] and report.unexpected == ["extra"]
    np.testing.assert_array_equal(model.weight.detach().numpy(), weight.astype(np.float32))
    assert model.weight.dtype == suanli.float32                    # converted to the model's dtype
    assert "extra   unexpected  (1,)" in capsys.readouterr().out
    with pytest.raises(TypeError, match="state dict"):
        nn.transfer(model, [("weight", weight)])
    with pytest.raises(TypeError, match="Module"):
        nn.transfer({"weight": weight}, model.state_dict())


def test_batchnorm_layer_is_all_or_nothing():
    src = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    dst = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(16))
    report = nn.transfer(dst, src.state_dict())
    assert report.loaded == ["0.weight", "0.bias"]
    assert "1.num_batches_tracked" in report.skipped_shape          # not loaded alone


def test_example_script_runs():
    result = LENET["main"](steps=3, verbose=False)
    assert result["report"].missing == ["f7.weight", "f7.bias"]
    assert os.path.exists(result["path"])
    assert all(not getattr(result["lenet6"], n).weight.requires_grad for n in ("c1", "c3", "c5", "f6"))
