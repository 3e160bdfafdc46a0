"""suanli.models against torch twins written here: same architecture, same state-dict names.

Each test builds the torch model, saves its state dict as safetensors (``safetensors.torch``), loads
the file with suanli's own reader (``suanli.io.load_file``) into the suanli model with
``strict=True``, and compares logits, the loss and gradients of a few parameters: float64 tightly,
float32 loosely. Sizes are small (32x32 images, widths of 16-64) so the whole file runs in seconds.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from safetensors.torch import save_file as torch_save_file

import suanli
import suanli.nn.functional as F
from suanli import io as sio
from suanli.errors import ShapeError
from suanli.models import (GPT, GPTConfig, LeNet5, ViT, ViTConfig, bit_resnet_v2, resnet18, resnet34)

TOL = {"float64": dict(rtol=1e-9, atol=1e-11), "float32": dict(rtol=2e-4, atol=2e-5)}
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32}


pytestmark = pytest.mark.usefixtures("torch_single_thread")   # see conftest.py


# ================================================================================== torch twins
class TorchGPT(tnn.Module):
    """nanoGPT's model.py (flash-attention path), condensed."""

    class Attn(tnn.Module):
        def __init__(self, c: GPTConfig) -> None:
            super().__init__()
            self.c_attn = tnn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
            self.c_proj = tnn.Linear(c.n_embd, c.n_embd, bias=c.bias)
            self.attn_dropout, self.resid_dropout = tnn.Dropout(c.dropout), tnn.Dropout(c.dropout)
            self.n_head, self.n_embd, self.dropout = c.n_head, c.n_embd, c.dropout

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            y = TF.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0,
                                                is_causal=True)
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.resid_dropout(self.c_proj(y))

    class MLP(tnn.Module):
        def __init__(self, c: GPTConfig) -> None:
            super().__init__()
            self.c_fc = tnn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
            self.gelu = tnn.GELU()
            self.c_proj = tnn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
            self.dropout = tnn.Dropout(c.dropout)

        def forward(self, x):
            return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    class Block(tnn.Module):
        def __init__(self, c: GPTConfig) -> None:
            super().__init__()
            self.ln_1 = tnn.LayerNorm(c.n_embd, bias=c.bias)
            self.attn = TorchGPT.Attn(c)
            self.ln_2 = tnn.LayerNorm(c.n_embd, bias=c.bias)
            self.mlp = TorchGPT.MLP(c)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.config = c
        self.transformer = tnn.ModuleDict(dict(
            wte=tnn.Embedding(c.vocab_size, c.n_embd), wpe=tnn.Embedding(c.block_size, c.n_embd),
            drop=tnn.Dropout(c.dropout), h=tnn.ModuleList([TorchGPT.Block(c) for _ in range(c.n_layer)]),
            ln_f=tnn.LayerNorm(c.n_embd, bias=c.bias)))
        self.lm_head = tnn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets=None):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            return logits, TF.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return self.lm_head(x[:, [-1], :]), None


class TorchLeNet5(tnn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.c1, self.s2 = tnn.Conv2d(1, 6, 5), tnn.AvgPool2d(2)
        self.c3, self.s4 = tnn.Conv2d(6, 16, 5), tnn.AvgPool2d(2)
        self.c5 = tnn.Conv2d(16, 120, 5)
        self.f6, self.output = tnn.Linear(120, 84), tnn.Linear(84, num_classes)

    def forward(self, x):
        x = self.s2(torch.tanh(self.c1(x)))
        x = self.s4(torch.tanh(self.c3(x)))
        x = torch.tanh(self.c5(x)).flatten(1)
        return self.output(torch.tanh(self.f6(x)))


class TorchBasicBlock(tnn.Module):
    """torchvision.models.resnet.BasicBlock."""

    def __init__(self, inplanes, planes, stride=1, downsample=None) -> None:
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TorchResNet(tnn.Module):
    """torchvision.models.resnet.ResNet with BasicBlock."""

    def __init__(self, layers, num_classes=1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(512, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = tnn.Sequential(tnn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                        tnn.BatchNorm2d(planes))
        layers = [TorchBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [TorchBasicBlock(planes, planes) for _ in range(1, blocks)]
        return tnn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TorchStdConv2d(tnn.Conv2d):
    """big_transfer's bit_pytorch/models.py StdConv2d."""

    def forward(self, x):
        w = self.weight
        v, m = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
        w = (w - m) / torch.sqrt(v + 1e-10)
        return TF.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class TorchPreActBottleneck(tnn.Module):
    def __init__(self, cin, cout, cmid, stride=1, g=32) -> None:
        super().__init__()
        self.gn1, self.conv1 = tnn.GroupNorm(g, cin), TorchStdConv2d(cin, cmid, 1, bias=False)
        self.gn2, self.conv2 = tnn.GroupNorm(g, cmid), TorchStdConv2d(cmid, cmid, 3, stride, 1, bias=False)
        self.gn3, self.conv3 = tnn.GroupNorm(g, cmid), TorchStdConv2d(cmid, cout, 1, bias=False)
        self.relu = tnn.ReLU(inplace=True)
        if stride != 1 or cin != cout:
            self.downsample = TorchStdConv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = self.relu(self.gn1(x))
        residual = self.downsample(out) if hasattr(self, "downsample") else x
        out = self.conv1(out)
        out = self.conv2(self.relu(self.gn2(out)))
        out = self.conv3(self.relu(self.gn3(out)))
        return out + residual


class TorchPreActBasic(tnn.Module):
    def __init__(self, cin, cout, cmid, stride=1, g=32) -> None:
        super().__init__()
        self.gn1, self.conv1 = tnn.GroupNorm(g, cin), TorchStdConv2d(cin, cout, 3, stride, 1, bias=False)
        self.gn2, self.conv2 = tnn.GroupNorm(g, cout), TorchStdConv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = tnn.ReLU(inplace=True)
        if stride != 1 or cin != cout:
            self.downsample = TorchStdConv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = self.relu(self.gn1(x))
        residual = self.downsample(out) if hasattr(self, "downsample") else x
        out = self.conv1(out)
        return self.conv2(self.relu(self.gn2(out))) + residual


class TorchResNetV2(tnn.Module):
    """big_transfer's ResNetV2, with the unit type and width factor as parameters."""

    def __init__(self, block_units, wf, head_size, bottleneck, g=32) -> None:
        super().__init__()
        unit, exp = (TorchPreActBottleneck, 4) if bottleneck else (TorchPreActBasic, 1)
        w = int(64 * wf)
        self.root = tnn.Sequential(OrderedDict([
            ("conv", TorchStdConv2d(3, w, 7, 2, 3, bias=False)), ("pad", tnn.ConstantPad2d(1, 0)),
            ("pool", tnn.MaxPool2d(3, 2, 0))]))
        stages, cin = [], w
        for i, n in enumerate(block_units):
            cmid = w * 2 ** i
            cout = cmid * exp
            stages.append((f"block{i + 1}", tnn.Sequential(OrderedDict(
                [(f"unit{j + 1:02d}", unit(cin if j == 0 else cout, cout, cmid, (1 if i == 0 else 2) if j == 0 else 1, g))
                 for j in range(n)]))))
            cin = cout
        self.body = tnn.Sequential(OrderedDict(stages))
        self.head = tnn.Sequential(OrderedDict([
            ("gn", tnn.GroupNorm(g, cin)), ("relu", tnn.ReLU(inplace=True)),
            ("avg", tnn.AdaptiveAvgPool2d(1)), ("conv", tnn.Conv2d(cin, head_size, 1, bias=True))]))

    def forward(self, x):
        return self.head(self.body(self.root(x)))[..., 0, 0]


class TorchViT(tnn.Module):
    """A ViT with timm's names and the ViT-22B switches, written independently of suanli's."""

    def __init__(self, c: ViTConfig) -> None:
        super().__init__()
        self.c = c
        self.patch_embed = tnn.Module()
        self.patch_embed.proj = tnn.Conv2d(c.in_channels, c.dim, c.patch_size, c.patch_size)
        self.cls_token = tnn.Parameter(torch.randn(1, 1, c.dim) * 0.02)
        self.pos_embed = tnn.Parameter(torch.randn(1, c.num_patches + 1, c.dim) * 0.02)
        hd = c.dim // c.num_heads
        self.blocks = tnn.ModuleList()
        for _ in range(c.depth):
            b = tnn.Module()
            b.norm1 = tnn.LayerNorm(c.dim, eps=c.norm_eps)
            b.attn = tnn.Module()
            b.attn.qkv = tnn.Linear(c.dim, 3 * c.dim, bias=c.qkv_bias)
            if c.qk_layernorm:
                b.attn.q_norm = tnn.LayerNorm(hd, eps=c.norm_eps)
                b.attn.k_norm = tnn.LayerNorm(hd, eps=c.norm_eps)
            b.attn.proj = tnn.Linear(c.dim, c.dim)
            if not c.parallel_block:
                b.norm2 = tnn.LayerNorm(c.dim, eps=c.norm_eps)
            b.mlp = tnn.Module()
            b.mlp.fc1 = tnn.Linear(c.dim, int(c.mlp_ratio * c.dim))
            b.mlp.fc2 = tnn.Linear(int(c.mlp_ratio * c.dim), c.dim)
            self.blocks.append(b)
        self.norm = tnn.LayerNorm(c.dim, eps=c.norm_eps)
        self.head = tnn.Linear(c.dim, c.num_classes)
        with torch.no_grad():          # non-trivial affine parameters, so they are tested too
            for name, p in self.named_parameters():
                if "norm" in name:
                    p.add_(torch.randn_like(p) * 0.1)

    def _attn(self, a, x):
        B, N, C = x.shape
        H = self.c.num_heads
        q, k, v = a.qkv(x).reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)
        if self.c.qk_layernorm:
            q, k = a.q_norm(q), a.k_norm(k)
        y = TF.scaled_dot_product_attention(q, k, v)
        return a.proj(y.transpose(1, 2).reshape(B, N, C))

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for b in self.blocks:
            mlp = (lambda h: b.mlp.fc2(TF.gelu(b.mlp.fc1(h))))
            if self.c.parallel_block:
                h = b.norm1(x)
                x = x + self._attn(b.attn, h) + mlp(h)
            else:
                x = x + self._attn(b.attn, b.norm1(x))
                x = x + mlp(b.norm2(x))
        return self.head(self.norm(x)[:, 0])


# ================================================================================== helpers
def transfer(torch_model: tnn.Module, model: suanli.nn.Module, tmp_path) -> None:
    """torch state dict -> safetensors file -> suanli.io.load_file -> load_state_dict(strict=True)."""
    path = str(tmp_path / "weights.safetensors")
    # clone: safetensors refuses tensors that share memory (GPT's tied wte/lm_head)
    torch_save_file({k: v.detach().clone().contiguous() for k, v in torch_model.state_dict().items()}, path)
    model.load_state_dict(sio.load_file(path), strict=True)


def close(actual, expected, dtype: str, what: str) -> None:
    a = actual.detach().numpy() if isinstance(actual, suanli.Tensor) else np.asarray(actual)
    e = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != torch {e.shape}"
    scale = max(1.0, float(np.abs(e).max())) if e.size else 1.0
    tol = TOL[dtype]
    np.testing.assert_allclose(a, e, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what)


def compare_grads(model, torch_model, names, dtype) -> None:
    for name in names:
        g, tg = model.get_parameter(name).grad, torch_model.get_parameter(name).grad
        assert g is not None, f"no gradient for {name}"
        close(g, tg, dtype, f"grad of {name}")


def randn(shape, dtype: str, seed: int = 0):
    """The same standard-normal input for suanli (in ``dtype``) and torch (always float64, see below)."""
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return suanli.tensor(a), torch.tensor(a.astype(np.float64))


def prepared(build_torch, build_suanli, dtype: str, tmp_path):
    """(suanli model in ``dtype``, torch twin in float64) with the same weights.

    The torch oracle always runs in float64: for a float32 suanli model the weights are written to the
    file in float32 and the twin is widened afterwards (exactly), so the float32 comparison measures
    suanli's rounding error alone (torch's own float32 error was the larger one for BiT's gradients).
    """
    torch.manual_seed(0)
    t_model = build_torch().to(TORCH_DTYPE[dtype])
    model = build_suanli()
    if dtype == "float64":
        model.double()
    transfer(t_model, model, tmp_path)
    return model, t_model.double()


# ================================================================================== GPT
GPT_CASES = {
    "babygpt": GPTConfig.babygpt(),
    "bias": GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(GPT_CASES))
def test_gpt_matches_nanogpt(case, dtype, tmp_path):
    cfg = GPT_CASES[case]
    model, t_model = prepared(lambda: TorchGPT(cfg), lambda: GPT(cfg), dtype, tmp_path)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, cfg.vocab_size, (3, cfg.block_size))
    tgt = rng.integers(0, cfg.vocab_size, (3, cfg.block_size))
    tgt[0, 0] = -1                                              # ignored position, as nanoGPT
    logits, loss = model(suanli.tensor(idx), suanli.tensor(tgt))
    t_logits, t_loss = t_model(torch.tensor(idx), torch.tensor(tgt))
    close(logits, t_logits, dtype, "logits")
    close(loss, t_loss, dtype, "loss")
    loss.backward()
    t_loss.backward()
    compare_grads(model, t_model, ["transformer.wte.weight", "transformer.wpe.weight",
                                   "transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_proj.weight",
                                   "transformer.ln_f.weight"], dtype)
    # inference path: only the last position
    last, none = model(suanli.tensor(idx[:, :-1]))
    t_last, _ = t_model(torch.tensor(idx[:, :-1]))
    assert none is None and last.shape == (3, 1, cfg.vocab_size)
    close(last, t_last, dtype, "last-position logits")


def test_gpt_layout_and_init():
    cfg = GPTConfig(block_size=8, vocab_size=50, n_layer=3, n_head=2, n_embd=64, bias=True)
    model, t_model = GPT(cfg), TorchGPT(cfg)
    assert list(model.state_dict()) == list(t_model.state_dict())           # names and order
    assert all(tuple(v.shape) == tuple(t_model.state_dict()[k].shape) for k, v in model.state_dict().items())
    assert model.lm_head.weight is model.transformer.wte.weight            # weight tying
    proj = np.concatenate([b.attn.c_proj.weight.detach().numpy().ravel() for b in model.transformer.h]
                          + [b.mlp.c_proj.weight.detach().numpy().ravel() for b in model.transformer.h])
    fc = np.concatenate([b.mlp.c_fc.weight.detach().numpy().ravel() for b in model.transformer.h])
    assert abs(proj.std() - 0.02 / math.sqrt(2 * cfg.n_layer)) < 0.1 * 0.02 / math.sqrt(6)
    assert abs(fc.std() - 0.02) < 0.002 and abs(model.transformer.wpe.weight.detach().numpy().std() - 0.02) < 0.003
    assert not model.transformer.h[0].attn.c_attn.bias.detach().numpy().any()
    n_all = sum(p.numel() for p in model.parameters())
    assert model.get_num_params() == n_all - 8 * 64 == sum(p.numel() for p in t_model.parameters()) - 8 * 64
    decay, no_decay = model.param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == n_all


def test_gpt_presets():
    b = GPTConfig.babygpt()
    assert (b.block_size, b.vocab_size, b.n_layer, b.n_head, b.n_embd, b.dropout, b.bias) == (3, 2, 4, 4, 16, 0.0, False)
    s = GPTConfig.benchmark()
    assert (s.n_layer, s.n_head, s.n_embd, s.block_size, s.vocab_size) == (4, 4, 128, 64, 65)
    assert GPTConfig.shakespeare_char(vocab_size=70).vocab_size == 70


def test_gpt_errors():
    model = GPT(GPTConfig.babygpt())
    with pytest.raises(ShapeError, match=r"(?s)length 5: block_size is only 3.*idx\[:, -3:\]"):
        model(suanli.zeros(1, 5, dtype=suanli.int64))
    with pytest.raises(ShapeError, match="int64 tensor of token ids"):
        model(suanli.zeros(1, 3))
    with pytest.raises(ShapeError, match="targets must have idx's shape"):
        model(suanli.zeros(2, 3, dtype=suanli.int64), suanli.zeros(2, 2, dtype=suanli.int64))
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(suanli.zeros(1, 1, dtype=suanli.int64), 1, temperature=0.0)


def test_gpt_generate(tmp_path):
    cfg = GPTConfig(block_size=4, vocab_size=7, n_layer=1, n_head=2, n_embd=8, bias=False)
    model, t_model = prepared(lambda: TorchGPT(cfg), lambda: GPT(cfg), "float64", tmp_path)
    start = np.array([[1], [5]])
    out = model.generate(suanli.tensor(start), 6, top_k=1)                   # greedy
    assert out.shape == (2, 7) and out.dtype == suanli.int64
    t_idx = torch.tensor(start)
    with torch.no_grad():
        for _ in range(6):                                                  # greedy in torch, context cropped
            logits, _ = t_model(t_idx[:, -cfg.block_size:])
            t_idx = torch.cat([t_idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert out.tolist() == t_idx.tolist()
    a = model.generate(suanli.tensor(start), 20, temperature=2.0, generator=suanli.Generator(3))
    b = model.generate(suanli.tensor(start), 20, temperature=2.0, generator=suanli.Generator(3))
    assert a.tolist() == b.tolist() and len(set(a[0].tolist())) > 1           # reproducible, not constant
    c = model.generate(suanli.tensor(start), 30, top_k=2, generator=suanli.Generator(1))
    assert c.numpy().min() >= 0 and c.numpy().max() < 7
    assert suanli.is_grad_enabled()                                         # generate left grad mode alone
    model.crop_block_size(2)                                                # shorter context, same weights
    assert model.transformer.wpe.weight.shape == (2, 8)
    assert model.generate(suanli.tensor(start), 3, top_k=1).tolist()[0][:3] == out.tolist()[0][:3]
    with pytest.raises(ShapeError, match="block_size is only 2"):
        model(suanli.tensor([[1, 2, 3]]))


def test_gpt_dropout_modes():
    cfg = GPTConfig(block_size=6, vocab_size=9, n_layer=2, n_head=2, n_embd=16, dropout=0.3, bias=False)
    model = GPT(cfg)
    idx = suanli.tensor(np.random.default_rng(0).integers(0, 9, (2, 6)))
    a, b = model(idx, idx)[1].item(), model(idx, idx)[1].item()
    assert a != b                                                           # dropout active in training
    model.eval()
    assert model(idx, idx)[1].item() == model(idx, idx)[1].item()


def test_babygpt_adamw_training_matches_torch(tmp_path):
    """Karpathy's BabyGPT recipe (full batch, AdamW lr 1e-3, wd 0.1 on matrices) for 20 steps, float64."""
    cfg = GPTConfig.babygpt()
    model, t_model = prepared(lambda: TorchGPT(cfg), lambda: GPT(cfg), "float64", tmp_path)
    seq = [int(c) for c in "111101111011110"]
    x = np.array([seq[i:i + 3] for i in range(len(seq) - 3)])
    y = np.array([seq[i + 1:i + 4] for i in range(len(seq) - 3)])
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3)
    t_params = [p for p in t_model.parameters()]
    t_opt = torch.optim.AdamW([{"params": [p for p in t_params if p.dim() >= 2], "weight_decay": 0.1},
                               {"params": [p for p in t_params if p.dim() < 2], "weight_decay": 0.0}],
                              lr=1e-3, betas=(0.9, 0.95))
    losses, t_losses = [], []
    for _ in range(20):
        opt.zero_grad()
        _, loss = model(suanli.tensor(x), suanli.tensor(y))
        loss.backward()
        opt.step()
        t_opt.zero_grad()
        _, t_loss = t_model(torch.tensor(x), torch.tensor(y))
        t_loss.backward()
        t_opt.step()
        losses.append(loss.item())
        t_losses.append(t_loss.item())
    np.testing.assert_allclose(losses, t_losses, rtol=1e-10)
    assert losses[-1] < losses[0]


# ================================================================================== LeNet-5
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lenet5_matches_torch(dtype, tmp_path):
    model, t_model = prepared(TorchLeNet5, LeNet5, dtype, tmp_path)
    x, tx = randn((4, 1, 32, 32), dtype)
    labels = np.array([0, 3, 9, 3])
    loss = F.cross_entropy(model(x), suanli.tensor(labels))
    t_loss = TF.cross_entropy(t_model(tx), torch.tensor(labels))
    close(loss, t_loss, dtype, "loss")
    close(model(x), t_model(tx), dtype, "logits")
    loss.backward()
    t_loss.backward()
    compare_grads(model, t_model, ["c1.weight", "c3.bias", "c5.weight", "f6.weight", "output.bias"], dtype)


def test_lenet5_layout_and_errors():
    model = LeNet5(num_classes=7)
    assert [n for n, _ in model.named_children()] == ["c1", "s2", "c3", "s4", "c5", "f6", "output"]
    assert list(model.state_dict()) == list(TorchLeNet5(7).state_dict())
    assert sum(p.numel() for p in LeNet5().parameters()) == 61706
    assert model(suanli.zeros(1, 1, 32, 32)).shape == (1, 7)
    with pytest.raises(ShapeError, match=r"(?s)\(N, 1, 32, 32\), got \(2, 1, 28, 28\).*pad"):
        model(suanli.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="num_classes"):
        LeNet5(0)


# ================================================================================== ResNet
def randomize_norms(torch_model: tnn.Module) -> tnn.Module:
    """Non-trivial BatchNorm/GroupNorm affine parameters and running statistics (so eval mode and the
    loading of buffers are really tested)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, (tnn.BatchNorm2d, tnn.GroupNorm)):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return torch_model


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_resnet18_matches_torchvision_layout(dtype, tmp_path):
    model, t_model = prepared(lambda: randomize_norms(TorchResNet([2, 2, 2, 2], 10)),
                              lambda: resnet18(num_classes=10), dtype, tmp_path)
    labels = np.array([1, 7, 3, 0])
    params = ["conv1.weight", "bn1.weight", "layer2.0.downsample.0.weight", "layer3.1.bn2.bias", "fc.weight"]
    # eval mode: running statistics (loaded from the file)
    model.eval()
    t_model.eval()
    x, tx = randn((2, 3, 32, 32), dtype)
    logits, t_logits = model(x), t_model(tx)
    close(logits, t_logits, dtype, "logits (eval mode)")
    F.cross_entropy(logits, suanli.tensor(labels[:2])).backward()
    TF.cross_entropy(t_logits, torch.tensor(labels[:2])).backward()
    compare_grads(model, t_model, params, dtype)
    if dtype == "float32":      # batch statistics over layer4's few values are ill-conditioned in float32
        return
    # training mode: batch statistics (4 samples: layer4's maps are 1x1, BatchNorm sees 4 values each)
    model.train()
    t_model.train()
    model.zero_grad()
    t_model.zero_grad()
    x, tx = randn((4, 3, 32, 32), dtype, seed=1)
    logits, t_logits = model(x), t_model(tx)
    close(logits, t_logits, dtype, "logits (train mode)")
    F.cross_entropy(logits, suanli.tensor(labels)).backward()
    TF.cross_entropy(t_logits, torch.tensor(labels)).backward()
    compare_grads(model, t_model, params, dtype)
    for name in ("bn1.running_mean", "layer4.1.bn2.running_var", "layer2.0.downsample.1.num_batches_tracked"):
        close(model.state_dict()[name], t_model.state_dict()[name], dtype, name)


def test_resnet_layout_and_init():
    model = resnet34(num_classes=5)
    t_keys = list(TorchResNet([3, 4, 6, 3], 5).state_dict())
    assert list(model.state_dict()) == t_keys
    w = model.layer3[0].conv1.weight.detach().numpy()
    assert abs(w.std() - math.sqrt(2.0 / (256 * 9))) < 0.05 * math.sqrt(2.0 / (256 * 9))   # fan_out Kaiming
    assert model.layer1[0].bn1.weight.detach().numpy().tolist() == [1.0] * 64
    assert not model.layer1[0].bn2.bias.detach().numpy().any()
    assert not resnet18(zero_init_residual=True).layer2[1].bn2.weight.detach().numpy().any()
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        model(suanli.zeros(1, 1, 32, 32))


BIT_CASES = {   # (depth, width_factor, GroupNorm groups, dtype): narrow models keep the test fast
    "R18-basic-f64": (18, 0.25, 8, "float64"),
    "R18-basic-f32": (18, 0.25, 8, "float32"),
    "R50-bottleneck-f64": (50, 0.25, 8, "float64"),
    "R18-32groups-f32": (18, 0.5, 32, "float32"),
}


@pytest.mark.parametrize("case", list(BIT_CASES))
def test_bit_resnet_v2_matches_big_transfer(case, tmp_path):
    depth, wf, groups, dtype = BIT_CASES[case]
    units, bottleneck = {18: ([2, 2, 2, 2], False), 50: ([3, 4, 6, 3], True)}[depth]
    model, t_model = prepared(lambda: randomize_norms(TorchResNetV2(units, wf, 10, bottleneck, groups)),
                              lambda: bit_resnet_v2(depth, num_classes=10, width_factor=wf, num_groups=groups),
                              dtype, tmp_path)
    x, tx = randn((2, 3, 32, 32), dtype)
    logits, t_logits = model(x), t_model(tx)
    close(logits, t_logits, dtype, "logits")
    (logits * logits).sum().backward()
    (t_logits * t_logits).sum().backward()
    compare_grads(model, t_model, ["root.conv.weight", "body.block1.unit01.gn1.weight",
                                   "body.block2.unit01.downsample.weight", "body.block4.unit02.conv2.weight",
                                   "head.gn.bias", "head.conv.bias"], dtype)


def test_bit_resnet_v2_options_and_errors():
    model = bit_resnet_v2(18, num_classes=10, width_factor=0.5)
    assert model.body.block1.unit01.conv1.eps == 1e-10                     # big_transfer's eps
    assert model.body.block1.unit01.gn1.num_groups == 32
    assert [n for n, _ in model.named_parameters()][:3] == ["root.conv.weight", "body.block1.unit01.gn1.weight",
                                                             "body.block1.unit01.gn1.bias"]
    zero = bit_resnet_v2(18, num_classes=3, width_factor=0.5, zero_head=True)
    assert not zero.head.conv.weight.detach().numpy().any()
    with pytest.raises(ValueError, match="multiple of num_groups=32"):
        bit_resnet_v2(18, width_factor=0.25)
    with pytest.raises(ValueError, match="depth must be one of"):
        bit_resnet_v2(20)


# ================================================================================== ViT
VIT_SWITCHES = {
    "original": dict(),
    "parallel": dict(parallel_block=True),
    "qk_layernorm": dict(qk_layernorm=True, qkv_bias=False),
    "vit22b": dict(parallel_block=True, qk_layernorm=True, qkv_bias=False),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("switches", list(VIT_SWITCHES))
def test_vit_matches_torch(switches, dtype, tmp_path):
    cfg = ViTConfig(image_size=16, patch_size=4, num_classes=10, dim=32, depth=2, num_heads=4,
                    **VIT_SWITCHES[switches])
    model, t_model = prepared(lambda: TorchViT(cfg), lambda: ViT(cfg), dtype, tmp_path)
    assert list(model.state_dict()) == list(t_model.state_dict())
    x, tx = randn((2, 3, 16, 16), dtype)
    logits, t_logits = model(x), t_model(tx)
    close(logits, t_logits, dtype, "logits")
    labels = np.array([2, 9])
    F.cross_entropy(logits, suanli.tensor(labels)).backward()
    TF.cross_entropy(t_logits, torch.tensor(labels)).backward()
    names = ["cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
             "blocks.1.mlp.fc1.bias", "blocks.1.norm1.weight", "norm.bias"]
    if cfg.qk_layernorm:
        names += ["blocks.0.attn.q_norm.weight", "blocks.1.attn.k_norm.bias"]
    compare_grads(model, t_model, names, dtype)


def test_vit_layout_and_errors():
    model = ViT(ViTConfig(image_size=16, patch_size=8, num_classes=3, dim=16, depth=1, num_heads=2,
                          parallel_block=True, qk_layernorm=True, qkv_bias=False))
    names = [n for n, _ in model.named_parameters()]
    assert "blocks.0.norm2.weight" not in names and "blocks.0.attn.qkv.bias" not in names
    assert "blocks.0.attn.q_norm.weight" in names and model.pos_embed.shape == (1, 5, 16)
    with pytest.raises(ValueError, match=r"(?s)image_size 30 is not divisible by patch_size 16.*image_size=16 or 32"):
        ViTConfig(image_size=30, patch_size=16)
    with pytest.raises(ShapeError, match=r"\(B, 3, 16, 16\), got \(1, 3, 24, 24\)"):
        model(suanli.zeros(1, 3, 24, 24))
    big = ViTConfig.vit22b()
    assert (big.dim, big.depth, big.num_heads, big.parallel_block, big.qk_layernorm, big.qkv_bias) == \
        (6144, 48, 48, True, True, False)
