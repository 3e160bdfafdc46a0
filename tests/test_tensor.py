"""Tensor creation, dtypes and PyTorch's promotion rules, conversions, repr, randomness."""
import itertools

import numpy as np
import pytest
import torch

import suanli
from oracles import TORCH_DTYPE

DTYPES = ["float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"]


@pytest.mark.parametrize("a,b", list(itertools.product(DTYPES, DTYPES)))
def test_promote_types_matches_torch(a, b):
    expected = str(torch.promote_types(TORCH_DTYPE[a], TORCH_DTYPE[b])).replace("torch.", "")
    assert str(suanli.promote_types(suanli.dtypes.as_dtype(a), suanli.dtypes.as_dtype(b))) == expected


def _torch_operand(kind, dtype):
    if kind == "tensor":
        return torch.ones(2, dtype=TORCH_DTYPE[dtype])
    if kind == "zerodim":
        return torch.tensor(1, dtype=TORCH_DTYPE[dtype])
    return {"bool": True, "int": 2, "float": 2.5}[dtype]


def _suanli_operand(kind, dtype):
    if kind == "tensor":
        return suanli.ones(2, dtype=dtype)
    if kind == "zerodim":
        return suanli.tensor(1, dtype=dtype)
    return {"bool": True, "int": 2, "float": 2.5}[dtype]


CASES = ([("tensor", a, "tensor", b) for a in DTYPES for b in ["float32", "int32", "uint8", "bool", "float16"]]
         + [("tensor", a, "zerodim", b) for a in DTYPES for b in ["float64", "int64", "int8", "bool"]]
         + [("tensor", a, "scalar", b) for a in DTYPES for b in ["bool", "int", "float"]]
         + [("zerodim", a, "scalar", b) for a in ["int8", "float16", "bool"] for b in ["int", "float"]])


@pytest.mark.parametrize("ka,a,kb,b", CASES)
def test_result_type_and_add_dtype_match_torch(ka, a, kb, b):
    ta, tb = _torch_operand(ka, a), _torch_operand(kb, b)
    sa, sb = _suanli_operand(ka, a), _suanli_operand(kb, b)
    expected = str(torch.result_type(ta, tb)).replace("torch.", "")
    assert str(suanli.result_type(sa, sb)) == expected
    if expected != "bool":
        assert str((sa + sb).dtype) == str((ta + tb).dtype).replace("torch.", "")


def test_creation_dtypes_follow_torch():
    assert suanli.tensor([1.0, 2.0]).dtype == suanli.float32
    assert suanli.tensor([1, 2]).dtype == suanli.int64
    assert suanli.tensor([True]).dtype == suanli.bool_
    assert suanli.tensor(np.array([1.0], dtype=np.float64)).dtype == suanli.float64
    assert suanli.tensor([1, 2], dtype=suanli.bfloat16).dtype == suanli.bfloat16
    assert suanli.zeros(2, 3).dtype == suanli.float32 and suanli.zeros(2, 3).shape == (2, 3)
    assert suanli.ones((2, 3), dtype=suanli.int8).dtype == suanli.int8
    assert suanli.full((2,), 3).dtype == suanli.int64
    assert suanli.full((2,), 3.0).dtype == suanli.float32
    assert suanli.arange(5).dtype == suanli.int64
    assert suanli.arange(0, 1, 0.1).dtype == suanli.float32
    assert suanli.eye(3).dtype == suanli.float32
    assert suanli.randint(0, 5, (3,)).dtype == suanli.int64
    assert suanli.rand(2).dtype == suanli.float32 and suanli.randn(2, dtype=suanli.float64).dtype == suanli.float64


@pytest.mark.parametrize("args", [(5,), (1, 7), (0, 1, 0.1), (1.5, 4.0, 0.5), (10, 0, -3), (0, -1, -0.25)])
def test_arange_matches_torch(args):
    np.testing.assert_allclose(suanli.arange(*args).numpy(), torch.arange(*args).numpy())
    assert str(suanli.arange(*args).dtype) == str(torch.arange(*args).dtype).replace("torch.", "")


def test_linspace_eye_like_match_torch():
    np.testing.assert_allclose(suanli.linspace(-1, 1, 7).numpy(), torch.linspace(-1, 1, 7).numpy(), atol=1e-7)
    np.testing.assert_array_equal(suanli.eye(3, 4).numpy(), torch.eye(3, 4).numpy())
    x = suanli.tensor([[1, 2], [3, 4]], dtype=suanli.int32)
    for fn in ("zeros_like", "ones_like"):
        y = getattr(suanli, fn)(x)
        assert y.dtype == suanli.int32 and y.shape == (2, 2)
    assert suanli.full_like(x, 7).tolist() == [[7, 7], [7, 7]]


def test_tensor_copies_and_from_numpy_shares():
    a = np.array([1.0, 2.0])
    t = suanli.tensor(a)
    a[0] = 9
    assert t.tolist() == [1.0, 2.0]
    s = suanli.from_numpy(a)
    a[1] = 7
    assert s.tolist() == [9.0, 7.0]


def test_conversions():
    x = suanli.tensor([[1.5, 2.5]])
    assert x.item if x.numel() > 1 else True
    assert suanli.tensor([3.5]).item() == 3.5
    assert isinstance(suanli.tensor([3]).item(), int)
    assert x.tolist() == [[1.5, 2.5]]
    assert np.asarray(x).shape == (1, 2)
    assert x.numpy().dtype == np.float32
    assert float(suanli.tensor(2.0)) == 2.0 and int(suanli.tensor(3)) == 3
    assert x.shape == (1, 2) and x.ndim == 2 and x.dim() == 2 and x.numel() == 2 and len(x) == 1
    with pytest.raises(ValueError, match="one-element"):
        x.item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x)
    r = suanli.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        r.numpy()
    assert suanli.tensor([1.0, 2.0], dtype=suanli.bfloat16).tolist() == [1.0, 2.0]
    assert suanli.tensor(1.5, dtype=suanli.float16).item() == 1.5


def test_dtype_conversion_methods_and_grad_through_cast():
    x = suanli.tensor([1.7, -2.2], dtype=suanli.float64, requires_grad=True)
    assert x.float().dtype == suanli.float32
    assert x.half().dtype == suanli.float16 and x.bfloat16().dtype == suanli.bfloat16
    assert x.long().tolist() == [1, -2] and not x.long().requires_grad
    assert x.to(suanli.float32).requires_grad
    (x.float() * 2.0).sum().backward()
    assert x.grad.dtype == suanli.float64
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
    with pytest.raises(Exception, match="cuda"):
        x.to("cuda")


def test_clone_detach_contiguous():
    x = suanli.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    c = x.clone()
    assert c.requires_grad and not np.shares_memory(c.detach().numpy(), x.detach().numpy())
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.numpy(), x.detach().numpy())
    assert x.contiguous() is x
    (c * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 2), 3.0))
    # a permuted tensor becomes C-contiguous, so .view() works on it afterwards (the nanoGPT idiom)
    y = suanli.arange(24.0).reshape(2, 3, 4).transpose(1, 2)
    assert not y.is_contiguous() and y.contiguous().is_contiguous()
    np.testing.assert_array_equal(y.contiguous().view(2, 12).numpy(), y.numpy().reshape(2, 12))


def test_repr_is_readable():
    assert repr(suanli.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(suanli.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(suanli.tensor([1.0], dtype=suanli.float64)) == "tensor([1.], dtype=float64)"
    assert repr(suanli.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert "bfloat16" in repr(suanli.tensor([1.0], dtype=suanli.bfloat16))


def test_bad_data_and_dtype_errors():
    with pytest.raises(TypeError, match="cannot make a tensor"):
        suanli.tensor(["a", "b"])
    with pytest.raises(TypeError, match="unknown dtype"):
        suanli.zeros(2, dtype="float128x")
    with pytest.raises(ValueError, match="non-negative"):
        suanli.zeros(-1)
    with pytest.raises(TypeError, match="cannot use"):
        suanli.tensor([1.0]) + "x"


def test_manual_seed_and_generators_are_deterministic():
    suanli.manual_seed(7)
    a = (suanli.rand(4), suanli.randn(3), suanli.randint(0, 10, (5,)), suanli.randperm(6))
    suanli.manual_seed(7)
    b = (suanli.rand(4), suanli.randn(3), suanli.randint(0, 10, (5,)), suanli.randperm(6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    g1, g2 = suanli.Generator(3), suanli.Generator(3)
    np.testing.assert_array_equal(suanli.randn(5, generator=g1).numpy(), suanli.randn(5, generator=g2).numpy())
    state = g1.get_state()
    first = suanli.rand(3, generator=g1).numpy()
    g1.set_state(state)
    np.testing.assert_array_equal(suanli.rand(3, generator=g1).numpy(), first)
    r = suanli.rand(1000).numpy()
    assert 0 <= r.min() and r.max() < 1 and abs(r.mean() - 0.5) < 0.05
    n = suanli.randn(4000, dtype=suanli.float64).numpy()
    assert abs(n.mean()) < 0.1 and abs(n.std() - 1) < 0.1


def test_numpy_operand_on_the_left_defers_to_tensor():
    out = np.array([1.0, 2.0], dtype=np.float32) + suanli.tensor([1.0, 1.0])
    assert isinstance(out, suanli.Tensor)
    assert out.tolist() == [2.0, 3.0]


def test_ragged_data_and_non_integer_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="tensor: nested sequences must have a regular"):
        suanli.tensor([[1, 2], [3]])
    with pytest.raises(TypeError, match="size: sizes must be integers"):
        suanli.zeros(2.5)
    with pytest.raises(TypeError, match="reshape: sizes must be integers"):
        suanli.ones(4).reshape(2.5, 2)


def test_view_never_copies_and_reshape_copies_only_when_needed():
    x = suanli.arange(6.0).reshape(2, 3)
    v = x.view(3, 2)
    assert np.shares_memory(v.numpy(), x.numpy())
    with pytest.raises(ValueError, match=r"view: the size is not compatible[\s\S]*help: use \.reshape"):
        x.T.view(6)
    r = x.T.reshape(6)
    assert not np.shares_memory(r.numpy(), x.numpy())
    np.testing.assert_array_equal(r.numpy(), x.numpy().T.reshape(6))
