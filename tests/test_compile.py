"""suanli.compile: compiled vs eager for every model (forward) and the LeNet-5 / GPT training steps,
plan caching and re-tracing, dynamic batch, passes/executor extension points, explain().

Oracle: the same model run eagerly on the same (fresh, post-trace) inputs; and the reference
interpreter run directly on each plan's graph."""
import numpy as np
import pytest

import suanli
import suanli.nn.functional as F
from suanli.compiler import register_pass
from suanli.graph import Graph, interpret
from suanli.models import GPT, GPTConfig, LeNet5, ViT, ViTConfig, bit_resnet_v2, resnet18

TOL = {"float64": 1e-10, "float32": 1e-5}


def _close(a, b, dtype):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype] * scale)


MODELS = {
    "lenet": (lambda: LeNet5(), lambda b: suanli.randn(b, 1, 32, 32)),
    "resnet18": (lambda: resnet18(num_classes=10), lambda b: suanli.randn(b, 3, 32, 32)),
    "bit_r18": (lambda: bit_resnet_v2(18, num_classes=10, width_factor=0.25, num_groups=8),
                lambda b: suanli.randn(b, 3, 32, 32)),
    "vit": (lambda: ViT(ViTConfig(image_size=16, patch_size=4, num_classes=10, dim=32, depth=2, num_heads=4)),
            lambda b: suanli.randn(b, 3, 16, 16)),
    "gpt": (lambda: GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=16, bias=True)),
            lambda b: suanli.randint(0, 11, (b, 8))),
}


def _logits(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(MODELS))
def test_models_forward_compiled_equals_eager(name, dtype):
    suanli.set_default_dtype(getattr(suanli, dtype))
    make, data = MODELS[name]
    model = make().eval()
    compiled = suanli.compile(model)
    compiled(data(2))                       # trace on one input...
    x = data(2)                             # ...compare on another (nothing frozen from the first)
    with suanli.no_grad():
        want = _logits(model(x)).numpy()
    got = _logits(compiled(x)).numpy()
    assert compiled.stats["traces"] == 1
    _close(got, want, dtype)
    plan = compiled.last_plan                # the reference interpreter on the plan agrees too
    ref = interpret(plan.graph, x.numpy(), *[t.detach().numpy() for t in plan.traced.state])[0]
    _close(ref, want, dtype)


def _grads(model):
    return {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["lenet", "gpt"])
def test_training_step_compiled_equals_eager(name, dtype):
    suanli.set_default_dtype(getattr(suanli, dtype))
    make, data = MODELS[name]
    model = make()
    if name == "lenet":
        def step(x, y):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        batch = lambda: (data(4), suanli.randint(0, 10, (4,)))    # noqa: E731
    else:
        def step(idx, tgt):
            _, loss = model(idx, targets=tgt)
            loss.backward()
            return loss
        batch = lambda: (data(3), suanli.randint(0, 11, (3, 8)))  # noqa: E731
    compiled = suanli.compile(step)
    opt = suanli.optim.SGD(model.parameters(), lr=0.1)
    for i in range(3):      # params change between calls (optimizer outside): the plan must see it
        args = batch()
        model.zero_grad()
        want_loss = step(*args).item()
        want = _grads(model)
        model.zero_grad()
        got_loss = compiled(*args).item()
        got = _grads(model)
        assert set(got) == set(want) == {n for n, _ in model.named_parameters()}
        _close(got_loss, want_loss, dtype)
        for n in want:
            _close(got[n], want[n], dtype)
        if i == 1:          # .grad accumulates across calls, as eagerly
            compiled(*args)
            for n, p in model.named_parameters():
                _close(p.grad.numpy(), 2 * want[n], dtype)
        opt.step()
    assert compiled.stats["traces"] == 1
    g = compiled.last_plan.graph
    assert sum(n.op == "conv2d_weight_grad" for n in g.nodes) == (3 if name == "lenet" else 0)
    assert len(g.outputs) == 1 + len(list(model.parameters()))


def test_grad_of_argument_and_autograd_grad():
    w = suanli.randn(3, 3, dtype=suanli.float64)

    def f(x):
        y = (x @ w).tanh().sum()
        (gx,) = suanli.autograd.grad(y, x)
        return y, gx

    def g(x):
        (x @ w).sin().sum().backward()
        return x * 1

    for fn in (f, g):
        x = suanli.randn(2, 3, dtype=suanli.float64, requires_grad=True)
        want = fn(x)
        want_grad = None if x.grad is None else x.grad.numpy().copy()
        x2 = x.detach().requires_grad_()
        got = suanli.compile(fn)(x2)
        as_tuple = lambda o: o if isinstance(o, tuple) else (o,)   # noqa: E731
        for a, b in zip(as_tuple(got), as_tuple(want)):
            np.testing.assert_allclose(np.asarray(a.detach()), np.asarray(b.detach()), rtol=1e-12)
        if want_grad is not None:
            np.testing.assert_allclose(x2.grad.numpy(), want_grad, rtol=1e-12)


def test_plan_cache_and_retrace():
    f = suanli.compile(lambda x, k: x * k)
    f(suanli.ones(2), 2.0)
    f(suanli.ones(2), 2.0)
    assert f.stats == {"traces": 1, "calls": 2, "cache_hits": 1}
    assert f(suanli.ones(3), 2.0).shape == (3,) and f.stats["traces"] == 2          # new shape
    assert f(suanli.ones(3, dtype=suanli.float64), 2.0).dtype == suanli.float64      # new dtype
    assert f(suanli.ones(3), 3.0).tolist() == [3.0, 3.0, 3.0]                        # static arg
    f(suanli.ones(3, requires_grad=True), 3.0)                                       # requires_grad
    with suanli.no_grad():
        f(suanli.ones(3, requires_grad=True), 3.0)                                   # grad mode
    assert f.stats["traces"] == 6 and len(f.plans) == 6


def test_module_mode_and_rebound_parameter_retrace():
    model = suanli.nn.Sequential(suanli.nn.Linear(3, 2), suanli.nn.Dropout(0.5))
    compiled = suanli.compile(model.eval())
    x = suanli.randn(4, 3)
    compiled(x)
    model[0].weight = suanli.nn.Parameter(suanli.randn(2, 3))       # a new tensor object: re-trace
    with suanli.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(compiled(x).numpy(), want, rtol=1e-6)
    assert compiled.stats["traces"] == 2
    model.train()
    with pytest.raises(suanli.graph.TraceError, match="random numbers"):
        compiled(x)


@pytest.mark.parametrize("name", ["lenet", "gpt"])
def test_dynamic_batch_one_plan(name):
    suanli.set_default_dtype(suanli.float64)
    make, data = MODELS[name]
    model = make().eval()
    compiled = suanli.compile(model, dynamic=True)
    for b in (2, 5, 1, 7):
        x = data(b)
        with suanli.no_grad():
            want = _logits(model(x)).numpy()
        _close(_logits(compiled(x)).numpy(), want, "float64")
    assert len(compiled.plans) == 1 and compiled.last_plan.dynamic
    assert compiled.stats["traces"] == 2      # the call's batch and batch + 1, once
    assert "float64[B," in compiled.explain()


def test_dynamic_training_step_lenet():
    suanli.set_default_dtype(suanli.float64)
    model = LeNet5()

    def step(x, y):
        loss = F.cross_entropy(model(x), y, reduction="sum")
        loss.backward()
        return loss

    compiled = suanli.compile(step, dynamic=True)
    for b in (3, 6):
        x, y = suanli.randn(b, 1, 32, 32), suanli.randint(0, 10, (b,))
        model.zero_grad()
        want = step(x, y).item()
        wg = _grads(model)
        model.zero_grad()
        _close(compiled(x, y).item(), want, "float64")
        for n, g in _grads(model).items():
            _close(g, wg[n], "float64")
    assert len(compiled.plans) == 1


def test_dynamic_falls_back_per_shape_when_not_affine():
    # the divisor 1/B is a constant whose value depends on the batch: not one plan, but still right
    f = suanli.compile(lambda x: x.sum() * (1.0 / x.shape[0]), dynamic=True)
    for b in (2, 4):
        x = suanli.randn(b, 3, dtype=suanli.float64)
        np.testing.assert_allclose(f(x).item(), x.numpy().sum() / b, rtol=1e-12)
    assert len(f.plans) == 2
    assert "one plan per batch size" in f.explain()


def test_passes_executor_and_explain(capsys):
    seen = []

    def rename_nothing(graph: Graph) -> Graph:
        seen.append(len(graph.nodes))
        return graph.copy()

    def executor(graph):
        def run(arrays):
            executor.calls += 1
            return interpret(graph, *arrays)
        return run
    executor.calls = 0

    f = suanli.compile(lambda x: (x * 2).exp(), passes=[("copy", rename_nothing)], executor=executor,
                       explain=True)
    x = suanli.randn(3, dtype=suanli.float64)
    np.testing.assert_allclose(f(x).numpy(), np.exp(2 * x.numpy()), rtol=1e-12)
    out = capsys.readouterr().out
    assert "=== traced ===" in out and "=== after copy ===" in out and "exp(" in out
    assert seen == [3] and executor.calls == 1
    f.last_plan.report["planned peak memory"] = "24 bytes"      # the hook later passes fill in
    assert "=== planned peak memory ===\n24 bytes" in f.explain()


def test_broken_pass_is_reported_by_name():
    def drop_last(graph: Graph) -> Graph:
        g = graph.copy()
        g.nodes.pop(0)             # the output's producer chain now reads an undefined value
        return g

    with pytest.raises(suanli.SuanliError, match="after pass 'drop_last'.*used before it is defined"):
        suanli.compile(lambda x: x.exp().sin(), passes=[drop_last])(suanli.ones(2))
    with pytest.raises(suanli.SuanliError, match="unknown pass 'nope'"):
        suanli.compile(lambda x: x, passes=["nope"])


def test_registered_pass_by_name():
    calls = []
    register_pass("test_count_nodes", lambda g: calls.append(len(g.nodes)) or g)
    suanli.compile(lambda x: x.exp(), passes=["test_count_nodes"])(suanli.ones(2))
    assert calls == [1]


def test_outputs_own_memory_and_structure():
    f = suanli.compile(lambda x, y: {"same": x, "pair": (x + y, None)})
    x = suanli.ones(2)
    out = f(x, suanli.ones(2))
    assert set(out) == {"same", "pair"} and out["pair"][1] is None
    out["same"].numpy()[0] = 5.0          # the result is not the caller's input memory
    assert x.tolist() == [1.0, 1.0] and out["pair"][0].tolist() == [2.0, 2.0]
