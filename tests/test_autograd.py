"""The reverse-mode engine, grad modes, hooks, custom Functions, forward mode and transforms."""
import gc
import subprocess
import sys

import numpy as np
import pytest
import torch

import suanli
from suanli.autograd import forward_ad as fwAD
from suanli.autograd.functional import hessian, jacobian, jvp, vjp
from oracles import assert_close


def t64(a, grad=True):
    return suanli.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def test_fan_out_accumulates_like_torch():
    a = np.array([0.3, -1.2, 2.0])
    x, tx = t64(a), torch.tensor(a, requires_grad=True)
    y = x * x.exp() + x * 3.0 + (x * x).exp() / x
    ty = tx * tx.exp() + tx * 3.0 + (tx * tx).exp() / tx
    y.sum().backward()
    ty.sum().backward()
    assert_close(x.grad, tx.grad, 1e-12, 1e-12)


def test_grad_accumulates_across_backward_calls():
    x = t64([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3 + 2, 3 + 4])


def test_broadcast_gradients_sum_back_to_input_shape():
    x = t64(np.ones((3, 1)))
    y = t64(np.arange(4.0))
    (x * y).sum().backward()
    assert x.grad.shape == (3, 1) and y.grad.shape == (4,)
    np.testing.assert_allclose(x.grad.numpy(), np.full((3, 1), 6.0))
    np.testing.assert_allclose(y.grad.numpy(), np.full(4, 3.0))


def test_chain_of_100k_ops_backward_and_free():
    x = suanli.tensor(1.5, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad.item() == 1.0
    del y
    gc.collect()
    # building and dropping an unreleased chain must not overflow the C stack either
    z = x
    for _ in range(100_000):
        z = z * 1.0
    del z


def test_backward_twice_without_retain_graph_is_a_clear_error():
    x = t64([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = t64([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_backward_on_non_scalar_without_gradient_says_so():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        (x * 2.0).backward()
    (x * 2.0).backward(suanli.tensor([1.0, 1.0], dtype=suanli.float64))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_backward_on_tensor_without_grad_says_so():
    with pytest.raises(RuntimeError, match="does not require grad"):
        suanli.tensor([1.0]).sum().backward()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        suanli.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match=r"\.float\(\)"):
        suanli.tensor([1, 2]).requires_grad_()


def test_inplace_on_saved_output_is_detected():
    x = t64([1.0, 2.0])
    y = x.exp()          # exp saves its output
    z = y * 2.0
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_inplace_on_saved_input_is_detected():
    x = t64([1.0, 2.0])
    a = x * 1.0
    w = t64([3.0, 4.0])
    y = a * w            # needs a for w's gradient
    a.mul_(2.0)
    with pytest.raises(RuntimeError, match="version 1; expected version 0"):
        y.sum().backward()


def test_inplace_not_needed_by_backward_is_fine_and_matches_torch():
    a = np.array([1.0, -2.0, 3.0])
    x, tx = t64(a), torch.tensor(a, requires_grad=True)
    y, ty = x * 2.0, tx * 2.0
    y.add_(1.0)
    ty.add_(1.0)
    y.mul_(3.0)
    ty.mul_(3.0)
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    assert_close(y.detach(), ty, 1e-12, 1e-12)
    assert_close(x.grad, tx.grad, 1e-12, 1e-12)


def test_inplace_on_leaf_requiring_grad_is_an_error_but_allowed_under_no_grad():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        x.add_(1.0)
    with suanli.no_grad():
        x.add_(1.0)
    np.testing.assert_allclose(x.detach().numpy(), [2.0, 3.0])
    assert x._version == 1


def test_inplace_int_result_type_error():
    x = suanli.tensor([1, 2])
    with pytest.raises(TypeError, match="can't be cast"):
        x.add_(1.5)


def test_detach_shares_storage_and_version():
    x = t64([1.0, 2.0])
    d = x.detach()
    with suanli.no_grad():
        d.mul_(2.0)
    np.testing.assert_allclose(x.detach().numpy(), [2.0, 4.0])
    assert x._version == d._version == 1
    assert not d.requires_grad


def test_no_grad_enable_grad_set_grad_enabled_inference_mode():
    x = t64([1.0])
    with suanli.no_grad():
        assert not (x * 2.0).requires_grad
        with suanli.enable_grad():
            assert (x * 2.0).requires_grad
    with suanli.set_grad_enabled(False):
        assert not (x * 2.0).requires_grad
    assert suanli.is_grad_enabled()
    with suanli.inference_mode():
        assert not (x * 2.0).requires_grad
        assert suanli.autograd.is_inference_mode_enabled()

    @suanli.no_grad()
    def f(t):
        return t * 2.0

    assert not f(x).requires_grad
    assert (x * 2.0).requires_grad


def test_tensor_hooks_modify_gradients_like_torch():
    a = np.array([1.0, 2.0])
    x, tx = t64(a), torch.tensor(a, requires_grad=True)
    y, ty = x * 3.0, tx * 3.0
    y.register_hook(lambda g: g * 10.0)
    ty.register_hook(lambda g: g * 10.0)
    h = x.register_hook(lambda g: g + 1.0)
    tx.register_hook(lambda g: g + 1.0)
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    assert_close(x.grad, tx.grad, 1e-12, 1e-12)
    h.remove()
    x.grad = None
    (x * 1.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_retain_grad_on_non_leaf():
    x = t64([1.0, 2.0])
    y = x * 3.0
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [6.0, 12.0])


def test_autograd_grad_does_not_touch_dot_grad_and_handles_unused():
    x, z = t64([1.0, 2.0]), t64([5.0])
    y = (x * x).sum()
    (g,) = suanli.autograd.grad(y, x, retain_graph=True)
    assert x.grad is None
    np.testing.assert_allclose(g.numpy(), [2.0, 4.0])
    with pytest.raises(RuntimeError, match="allow_unused"):
        suanli.autograd.grad(y, [x, z], retain_graph=True)
    gx, gz = suanli.autograd.grad(y, [x, z], allow_unused=True)
    assert gz is None


def test_grad_wrt_non_leaf():
    x = t64([1.0, 2.0])
    h = x * 2.0
    y = (h * h).sum()
    (gh,) = suanli.autograd.grad(y, h)
    np.testing.assert_allclose(gh.numpy(), [4.0, 8.0])


def test_double_and_triple_backward_match_torch():
    a = np.array([0.5, -1.0, 2.0])
    x, tx = t64(a), torch.tensor(a, requires_grad=True)
    f = lambda v: (v * v * v * v.exp()).sum()  # noqa: E731
    g1 = suanli.autograd.grad(f(x), x, create_graph=True)[0]
    g2 = suanli.autograd.grad(g1.sum(), x, create_graph=True)[0]
    g3 = suanli.autograd.grad(g2.sum(), x)[0]
    t1 = torch.autograd.grad(f(tx), tx, create_graph=True)[0]
    t2 = torch.autograd.grad(t1.sum(), tx, create_graph=True)[0]
    t3 = torch.autograd.grad(t2.sum(), tx)[0]
    for s, t in ((g1, t1), (g2, t2), (g3, t3)):
        assert_close(s.detach(), t, 1e-12, 1e-12)


def test_create_graph_backward_builds_graph_on_grad():
    x = t64([2.0])
    y = (x * x * x).sum()
    y.backward(create_graph=True)
    gx = x.grad
    assert gx.requires_grad
    (h,) = suanli.autograd.grad(gx.sum(), x)
    np.testing.assert_allclose(h.numpy(), [12.0])


class Cube(suanli.autograd.Function):
    @staticmethod
    def forward(ctx, x, k):
        ctx.save_for_backward(x)
        ctx.k = k
        return x * x * x * k

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x * x * (3.0 * ctx.k), None

    @staticmethod
    def jvp(ctx, tx, tk):
        return tx * 0.0 + tx * ctx.k * 3.0 * ctx.saved_tensors[0] * ctx.saved_tensors[0]


def test_custom_function_backward_double_backward_and_forward_mode():
    x = t64([1.0, 2.0])
    y = Cube.apply(x, 2.0)
    np.testing.assert_allclose(y.detach().numpy(), [2.0, 16.0])
    (g,) = suanli.autograd.grad(y.sum(), x, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), [6.0, 24.0])
    (h,) = suanli.autograd.grad(g.sum(), x)   # backward was written with suanli ops: differentiable
    np.testing.assert_allclose(h.numpy(), [12.0, 24.0])
    _, tan = jvp(lambda v: Cube.apply(v, 2.0), suanli.tensor([1.0, 2.0], dtype=suanli.float64),
                 suanli.tensor([1.0, 1.0], dtype=suanli.float64))
    np.testing.assert_allclose(tan.numpy(), [6.0, 24.0])


def test_custom_function_saved_tensor_modified_is_detected():
    x = t64([1.0, 2.0])
    a = x * 1.0
    y = Cube.apply(a, 1.0)
    a.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


def test_forward_ad_dual_numbers():
    x = suanli.tensor([0.5, 1.5], dtype=suanli.float64)
    with fwAD.dual_level():
        d = fwAD.make_dual(x, suanli.tensor([1.0, 0.0], dtype=suanli.float64))
        out = (d * d).exp()
        p, t = fwAD.unpack_dual(out)
    np.testing.assert_allclose(t.numpy(), [2 * 0.5 * np.exp(0.25), 0.0])
    assert out._tangent is None      # cleared when the level exits


def test_forward_ad_errors():
    with pytest.raises(RuntimeError, match="dual_level"):
        fwAD.make_dual(suanli.tensor([1.0]), suanli.tensor([1.0]))
    with fwAD.dual_level():
        with pytest.raises(ValueError, match="tangent shape"):
            fwAD.make_dual(suanli.tensor([1.0]), suanli.tensor([1.0, 2.0]))


def test_functional_vjp_jvp_jacobian_hessian_match_torch():
    a = np.array([0.3, -0.7, 1.1])
    f_s = lambda v: (v * v).exp() * v  # noqa: E731
    f_t = lambda v: (v * v).exp() * v  # noqa: E731
    x, tx = suanli.tensor(a), torch.tensor(a)
    v = np.array([1.0, 2.0, -1.0])
    _, sv = vjp(f_s, x, suanli.tensor(v))
    _, tv = torch.autograd.functional.vjp(f_t, tx, torch.tensor(v))
    assert_close(sv, tv, 1e-12, 1e-12)
    _, sj = jvp(f_s, x, suanli.tensor(v))
    _, tj = torch.autograd.functional.jvp(f_t, tx, torch.tensor(v))
    assert_close(sj, tj, 1e-12, 1e-12)
    J_t = torch.autograd.functional.jacobian(f_t, tx)
    for strategy in ("reverse-mode", "forward-mode"):
        assert_close(jacobian(f_s, x, strategy=strategy), J_t, 1e-12, 1e-12)
    g_s = lambda v: (v * v * v).exp().sum()  # noqa: E731
    H_t = torch.autograd.functional.hessian(lambda v: (v * v * v).exp().sum(), tx)
    assert_close(hessian(g_s, x), H_t, 1e-10, 1e-10)
    assert_close(hessian(g_s, x, outer_jacobian_strategy="forward-mode"), H_t, 1e-10, 1e-10)


def test_jacobian_tuple_inputs_and_outputs():
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0])
    f_s = lambda x, y: (x.sum() * y, x * 2.0)  # noqa: E731
    f_t = lambda x, y: (x.sum() * y, x * 2.0)  # noqa: E731
    J = jacobian(f_s, (suanli.tensor(a), suanli.tensor(b)))
    Jt = torch.autograd.functional.jacobian(f_t, (torch.tensor(a), torch.tensor(b)))
    for i in range(2):
        for j in range(2):
            assert_close(J[i][j], Jt[i][j], 1e-12, 1e-12)


def test_func_grad_transform_nests_for_higher_orders():
    f = lambda x: (x * x * x).sum()  # noqa: E731
    g = suanli.autograd.functional.grad(f)
    x = suanli.tensor([1.0, 2.0], dtype=suanli.float64)
    np.testing.assert_allclose(g(x).numpy(), [3.0, 12.0])
    gg = suanli.autograd.functional.grad(lambda v: g(v).sum())
    np.testing.assert_allclose(gg(x).numpy(), [6.0, 12.0])


def test_jvp_matches_vjp_contraction():
    from oracles import check_jvp_vjp
    check_jvp_vjp(lambda x, y: (x * y).exp() / (y * y + 1.0), [np.array([0.1, 0.2, -0.3]), np.array([1.0, 2.0, 0.5])])


def test_gradcheck_and_gradgradcheck():
    x = suanli.randn(3, dtype=suanli.float64, requires_grad=True)
    y = suanli.randn(3, dtype=suanli.float64, requires_grad=True)
    assert suanli.autograd.gradcheck(lambda a, b: (a * b).exp() / (b * b + 1.0), (x, y))
    assert suanli.autograd.gradgradcheck(lambda a, b: (a * b).exp() / (b * b + 1.0), (x, y))


def test_gradcheck_catches_a_wrong_rule():
    class Wrong(suanli.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * x

        @staticmethod
        def backward(ctx, g):
            return g * 3.0

    x = suanli.randn(3, dtype=suanli.float64, requires_grad=True)
    with pytest.raises(AssertionError, match="Jacobian mismatch"):
        suanli.autograd.gradcheck(Wrong.apply, (x,), check_forward_ad=False)
    assert not suanli.autograd.gradcheck(Wrong.apply, (x,), check_forward_ad=False, raise_exception=False)


def test_gradcheck_requires_float64():
    x = suanli.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="float64"):
        suanli.autograd.gradcheck(lambda a: a * 2.0, (x,))


def test_grad_fn_repr_and_next_functions():
    x = t64([1.0])
    y = (x * 2.0).exp()
    assert repr(y.grad_fn) == "<ExpBackward>"
    assert repr(y.grad_fn.next_functions[0][0]) == "<MulBackward>"
    assert "grad_fn=<ExpBackward>" in repr(y)


def test_determinism_same_seed_same_gradients():
    def run():
        suanli.manual_seed(123)
        w = suanli.randn(4, 3, dtype=suanli.float64, requires_grad=True)
        x = suanli.randn(5, 4, dtype=suanli.float64)
        ((x.reshape(5, 4, 1) * w).sum(1).exp()).sum().backward()
        return w.grad.numpy().copy()
    np.testing.assert_array_equal(run(), run())


def test_leaf_grads_never_alias_each_other_or_the_callers_gradient():
    a = suanli.tensor([1.0, 2.0], requires_grad=True)
    b = suanli.tensor([1.0, 2.0], requires_grad=True)
    (a + b).sum().backward()            # add hands the same cotangent to both leaves
    with suanli.no_grad():
        a.grad.add_(1.0)
    assert b.grad.tolist() == [1.0, 1.0]
    g = suanli.tensor([5.0, 6.0])
    c = suanli.tensor([1.0, 2.0], requires_grad=True)
    (c * 1.0).backward(g)
    c.grad.add_(1.0)
    assert g.tolist() == [5.0, 6.0]
    d = suanli.tensor([3.0], requires_grad=True)
    d.backward(g[:1])                   # a leaf root receives the caller's gradient directly
    d.grad.add_(1.0)
    assert g.tolist() == [5.0, 6.0]
