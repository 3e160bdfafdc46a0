"""suanli.inference.Session: optimized inference graphs give the eager model's outputs; BN is
folded, kernels are chosen per layer and reported by profile(); bad feeds get clear errors."""
import numpy as np
import pytest

import suanli
from suanli import nn
from suanli.inference.session import Session, SessionError
from suanli.models import GPT, GPTConfig, LeNet5, ViT, ViTConfig, resnet18


def _randomize_bn(model):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(suanli.randn(*m.running_mean.shape) * 0.1)
            m.running_var.copy_(suanli.rand(*m.running_var.shape) + 0.5)
            m.weight.data.copy_(suanli.rand(*m.weight.shape) + 0.5)
            m.bias.data.copy_(suanli.randn(*m.bias.shape) * 0.1)
    return model


CASES = {
    "resnet18": (lambda: _randomize_bn(resnet18(num_classes=10)), lambda: suanli.randn(2, 3, 32, 32)),
    "lenet5": (LeNet5, lambda: suanli.randn(3, 1, 32, 32)),
    "vit": (lambda: ViT(ViTConfig(image_size=16, patch_size=4, num_classes=5, dim=32, depth=2, num_heads=4,
                                  qk_layernorm=True)), lambda: suanli.randn(2, 3, 16, 16)),
    "gpt": (lambda: GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=16)),
            lambda: suanli.randint(0, 11, (2, 8))),
}


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("name", sorted(CASES))
def test_session_matches_eager(name, dtype, tol):
    suanli.manual_seed(0)
    make, data = CASES[name]
    model = make().eval()
    if dtype == "float64":
        model = model.double()
    x = data()
    if x.dtype.kind == "f":
        x = x.to(getattr(suanli, dtype))
    with suanli.no_grad():
        ref = model(x)
    ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()
    sess = Session(model, (x,))
    got = sess.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    x2 = data()                                   # another input: nothing was frozen from the example
    if x2.dtype.kind == "f":
        x2 = x2.to(getattr(suanli, dtype))
    with suanli.no_grad():
        ref2 = model(x2)
    ref2 = (ref2[0] if isinstance(ref2, tuple) else ref2).numpy()
    np.testing.assert_allclose(sess(x2.numpy())[0], ref2, rtol=tol, atol=tol)


def test_resnet_session_folds_batchnorm_and_profiles_kernels():
    suanli.manual_seed(0)
    model = CASES["resnet18"][0]().eval()
    x = suanli.randn(8, 3, 56, 56)
    sess = Session(model, (x,))
    ops = [n.op for n in sess.graph.nodes]
    assert "rsqrt" not in ops and "standardize" not in ops and ops.count("conv2d") + ops.count("conv2d_nchwc") == 20
    assert len(sess.graph.nodes) < len(sess.traced_graph.nodes) / 2
    prof = sess.profile({"input": x.numpy()}, runs=2)
    kernels = {r.kernel for r in prof.rows}
    from suanli.inference import conv_kernels      # two kernel threads: Winograd layers go blocked too
    assert "Winograd F(4x4,3x3)" in kernels or not suanli.native.enabled() or conv_kernels.num_threads() > 1
    if suanli.native.enabled():          # blocked layout through the conv chain
        assert {"direct NCHW16c", "blocked max pool"} <= kernels, kernels
    text = str(prof)
    assert "conv2d" in text and "total" in text and len(prof.rows) > 20
    assert "memory plan" in sess.explain()


def test_unoptimized_session_is_the_traced_graph():
    model = LeNet5().eval()
    x = suanli.randn(2, 1, 32, 32)
    sess = Session(model, (x,), optimize=False)
    assert len(sess.graph.nodes) == len(sess.traced_graph.nodes)
    np.testing.assert_allclose(sess(x.numpy())[0], model(x).detach().numpy(), rtol=1e-6)


def test_session_input_errors():
    model = LeNet5()
    sess = Session(model, (suanli.randn(2, 1, 32, 32),), input_names=["images"])
    assert [i.name for i in sess.get_inputs()] == ["images"] and sess.get_outputs()[0].shape == (2, 10)
    with pytest.raises(SessionError, match=r"(?s)input names do not match.*missing \['images'\]"):
        sess.run(None, {"x": np.zeros((2, 1, 32, 32), np.float32)})
    with pytest.raises(SuanliErrorLike, match="wrong dtype or rank"):
        sess.run(None, {"images": np.zeros((2, 1, 32, 32), np.float64)})
    with pytest.raises(SuanliErrorLike, match="wrong shape"):
        sess.run(None, {"images": np.zeros((3, 1, 32, 32), np.float32)})
    with pytest.raises(SessionError, match="unknown output names"):
        sess.run(["nope"], {"images": np.zeros((2, 1, 32, 32), np.float32)})
    with pytest.raises(SessionError, match="needs example_inputs"):
        Session(model)
    with pytest.raises(SessionError, match="expected an nn.Module"):
        Session(42, ())


SuanliErrorLike = suanli.SuanliError


def test_session_from_an_onnx_file_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    suanli.manual_seed(0)
    model = CASES["resnet18"][0]().eval()
    x = suanli.randn(2, 3, 32, 32)
    path = tmp_path / "resnet18.onnx"
    suanli.onnx.export(model, (x,), str(path), input_names=["images"])
    sess = Session(str(path))
    assert [i.name for i in sess.get_inputs()] == ["images"]
    assert "rsqrt" not in [n.op for n in sess.graph.nodes]
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(sess.run(None, {"images": x.numpy()})[0], want, rtol=1e-4, atol=1e-4)


def test_blas_thread_policy_follows_where_the_flops_are():
    """Conv nets and Linear layers run in suanli's own kernels (OpenBLAS single-threaded during run,
    so its spinning workers leave our second thread a core); graphs whose GEMMs stay OpenBLAS's
    (here: no passes, so nothing is lowered) keep OpenBLAS's threads."""
    from suanli.inference.session import flop_split
    suanli.manual_seed(0)
    conv = Session(CASES["resnet18"][0]().eval(), (suanli.randn(1, 3, 32, 32),))
    ours, blas = flop_split(conv.graph)
    assert conv.blas_single_threaded == (ours > blas) and (ours > blas or not suanli.native.enabled())
    net = suanli.nn.Sequential(suanli.nn.Linear(64, 256), suanli.nn.ReLU(), suanli.nn.Linear(256, 8))
    flops = 2 * 16 * (64 * 256 + 256 * 8)
    mlp = Session(net, (suanli.randn(16, 64),))
    native = suanli.native.enabled() and suanli.native.compiler() is not None
    assert flop_split(mlp.graph) == ((flops, 0) if native else (0, flops))
    assert mlp.blas_single_threaded == native
    plain = Session(net, (suanli.randn(16, 64),), passes=[])
    assert flop_split(plain.graph) == (0, flops) and not plain.blas_single_threaded
    assert "OpenBLAS keeps its threads" in plain.explain()


def test_blas_threads_restores_the_thread_count():
    funcs = suanli.native._blas_thread_functions()
    if not funcs:
        pytest.skip("NumPy's OpenBLAS was not found in this process")
    before = [get() for get, _ in funcs]
    with suanli.native.blas_threads(1):
        assert all(get() == 1 for get, _ in funcs)
    assert [get() for get, _ in funcs] == before


def test_overlapping_blas_blocks_restore_the_outer_setting():
    funcs = suanli.native._blas_thread_functions()
    if not funcs:
        pytest.skip("NumPy's OpenBLAS was not found in this process")
    before = [get() for get, _ in funcs]
    outer, inner = suanli.native.blas_threads(1), suanli.native.blas_threads(1)
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)          # the first one out must not restore while another is inside
    assert all(get() == 1 for get, _ in funcs)
    inner.__exit__(None, None, None)
    assert [get() for get, _ in funcs] == before
