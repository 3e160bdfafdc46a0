"""`suanli info/run/bench/convert` on ONNX models, through suanli.cli.main and temporary files;
onnxruntime and the eager model are the oracles for what `run` and `convert` produce."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import suanli
import suanli.onnx as so
from suanli import cli
from suanli.graph import interpret
from suanli.models import LeNet5
from suanli.onnx.convert import load_graph, save_graph

ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def lenet(tmp_path):
    suanli.manual_seed(0)
    model = LeNet5().eval()
    x = suanli.randn(2, 1, 32, 32)
    path = tmp_path / "lenet.onnx"
    so.export(model, (x,), path, dynamic_batch=True)
    with suanli.no_grad():
        expected = model(x).numpy()
    return path, x.numpy(), expected


def test_info_model(lenet, capsys):
    path, _, _ = lenet
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "input" in out and "float32 [batch, 1, 32, 32]" in out and "float32 [batch, 10]" in out
    assert "parameters: 61,706" in out          # LeNet-5's documented count
    # FLOPs: C1 (6x28x28, 25 taps), C3 (16x10x10, 150), C5 (120, 400), F6 (84x120), out (10x84); batch 1
    report = cli.onnx_info(str(path))
    macs = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 120 * 400 + 84 * 120 + 10 * 84
    assert report["ops"]["Conv"] == 3 and report["params"] == 61706
    assert report["flops"] == 2 * macs and not report["flops_unknown"]     # the symbolic batch counts as 1


def test_info_flops_with_fixed_shapes(tmp_path):
    model = suanli.nn.Sequential(suanli.nn.Conv2d(3, 4, 3, padding=1), suanli.nn.Flatten(), suanli.nn.Linear(4 * 8 * 8, 5))
    path = tmp_path / "m.onnx"
    so.export(model, (suanli.randn(2, 3, 8, 8),), path)
    report = cli.onnx_info(str(path))
    assert report["flops"] == 2 * (2 * 4 * 8 * 8 * 3 * 9 + 2 * 5 * 256)
    assert report["params"] == 4 * 27 + 4 + 256 * 5 + 5


def test_info_without_argument_still_prints_registry(capsys):
    assert cli.main(["info"]) == 0
    assert "matmul" in capsys.readouterr().out


def test_run_writes_outputs(lenet, tmp_path):
    path, x, expected = lenet
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["run", str(path), "--input", f"input={tmp_path / 'x.npy'}", "--out", str(tmp_path / "o")]) == 0
    got = np.load(tmp_path / "o" / "output.npy")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, ort.InferenceSession(str(path)).run(None, {"input": x})[0], rtol=1e-4, atol=1e-5)


def test_run_bad_inputs(lenet, tmp_path, capsys):
    path, x, _ = lenet
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "bad_shape.npy", x[:, :, :16])
    np.save(tmp_path / "bad_dtype.npy", x.astype(np.float64))
    cases = {f"nope={tmp_path / 'x.npy'}": "unknown input name",
             f"input={tmp_path / 'bad_shape.npy'}": "wrong shape",
             f"input={tmp_path / 'bad_dtype.npy'}": "wrong dtype",
             f"input={tmp_path / 'missing.npy'}": "no such file",
             "input": "expected NAME=FILE.npy"}
    for spec, message in cases.items():
        assert cli.main(["run", str(path), "--input", spec, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert message in err and "suanli run: error:" in err, (spec, err)
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    assert cli.main(["run", str(tmp_path / "junk.onnx"), "--input", f"input={tmp_path / 'x.npy'}"]) == 2
    assert "junk.onnx" in capsys.readouterr().err


def test_bench(lenet, capsys):
    path, _, _ = lenet
    assert cli.main(["bench", str(path), "--runs", "3", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "suanli" in out and "onnxruntime" in out and "p99 ms" in out
    results = cli.bench_onnx(str(path), runs=3)
    for r in results.values():
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]


def test_convert_round_trip(lenet, tmp_path):
    path, x, expected = lenet
    dst = tmp_path / "lenet.suanli"
    assert cli.main(["convert", str(path), str(dst)]) == 0
    graph = load_graph(dst)
    np.testing.assert_allclose(interpret(graph, x[:1])[0], expected[:1], rtol=1e-5, atol=1e-6)
    back = tmp_path / "back.onnx"
    assert cli.main(["convert", str(dst), str(back)]) == 0
    onnx.checker.check_model(str(back))
    got = ort.InferenceSession(str(back)).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert back.read_bytes()[:0] == b"" and not list(tmp_path.glob(".*.tmp"))


def test_convert_errors(lenet, tmp_path, capsys):
    path, _, _ = lenet
    assert cli.main(["convert", str(path), str(tmp_path / "x.txt")]) == 2
    assert "cannot convert" in capsys.readouterr().err
    from suanli.io import save_file
    save_file({"w": np.zeros(2, np.float32)}, tmp_path / "plain.suanli")
    assert cli.main(["convert", str(tmp_path / "plain.suanli"), str(tmp_path / "o.onnx")]) == 2
    err = capsys.readouterr().err
    assert "plain.suanli" in err and "not a suanli graph file" in err
    (tmp_path / "trunc.suanli").write_bytes((tmp_path / "plain.suanli").read_bytes()[:20])
    assert cli.main(["convert", str(tmp_path / "trunc.suanli"), str(tmp_path / "o.onnx")]) == 2
    assert "trunc.suanli" in capsys.readouterr().err


def test_saved_graph_keeps_attributes_exactly(tmp_path):
    fn = lambda x: (x.softmax(1) + x.amax(1, keepdim=True) + x[:, 1:3].sum() + (x > 0).float()  # noqa: E731
                    + suanli.clamp(x, -float("inf"), 0.5))
    traced = suanli.graph.trace(fn, (suanli.randn(3, 4),))
    save_graph(traced.graph, tmp_path / "g.suanli")
    g = load_graph(tmp_path / "g.suanli")
    assert [(n.op, n.attrs if n.op != "constant" else None) for n in g.nodes] == \
           [(n.op, n.attrs if n.op != "constant" else None) for n in traced.graph.nodes]
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(interpret(g, x)[0], interpret(traced.graph, x)[0])
