"""suanli.onnx.load: models from files and protos, compared with onnxruntime; and every kind of bad input
(malformed/truncated/non-ONNX files, unsupported ops, wrong input names/shapes/dtypes, wrong declared outputs)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import suanli
from suanli.onnx import OnnxError, OnnxInputError, OnnxOutputError, UnsupportedOpError

ort = pytest.importorskip("onnxruntime")


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    w2 = rng.standard_normal((8, 3)).astype(np.float32)
    return _model(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"), helper.make_node("Add", ["h", "b1"], ["hb"]),
         helper.make_node("Tanh", ["hb"], ["t"]), helper.make_node("MatMul", ["t", "w2"], ["y"], name="mm2")],
        [helper.make_tensor_value_info("x", T.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")])


def _ort(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_load_file_matches_onnxruntime(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), path)
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    m = suanli.onnx.load(path)
    assert m.input_names == ["x"] and m.output_names == ["y"]
    np.testing.assert_allclose(m(x).numpy(), _ort(_mlp(), {"x": x})[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m(x=suanli.tensor(x)).numpy(), _ort(_mlp(), {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_control_flow_matches_onnxruntime():
    """Loop with a carried value and a scan output, and If on a computed condition."""
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "step"], ["acc_out"]), helper.make_node("Identity", ["c_in"], ["c_out"]),
         helper.make_node("Mul", ["acc_out", "acc_out"], ["sq"])], "body",
        [helper.make_tensor_value_info("i", T.INT64, []), helper.make_tensor_value_info("c_in", T.BOOL, []),
         helper.make_tensor_value_info("acc_in", T.FLOAT, [2])],
        [helper.make_tensor_value_info("c_out", T.BOOL, []), helper.make_tensor_value_info("acc_out", T.FLOAT, [2]),
         helper.make_tensor_value_info("sq", T.FLOAT, [2])])
    then_g = helper.make_graph([helper.make_node("Neg", ["acc"], ["r"])], "then", [],
                               [helper.make_tensor_value_info("r", T.FLOAT, [2])])
    else_g = helper.make_graph([helper.make_node("Abs", ["acc"], ["r2"])], "else", [],
                               [helper.make_tensor_value_info("r2", T.FLOAT, [2])])
    model = _model(
        [helper.make_node("Loop", ["n", "", "x"], ["acc", "sqs"], body=body),
         helper.make_node("ReduceSum", ["acc"], ["s"], keepdims=0),
         helper.make_node("Greater", ["s", "zero"], ["pos"]),
         helper.make_node("If", ["pos"], ["y"], then_branch=then_g, else_branch=else_g)],
        [helper.make_tensor_value_info("n", T.INT64, []), helper.make_tensor_value_info("x", T.FLOAT, [2]),
         helper.make_tensor_value_info("step", T.FLOAT, [2])],
        [helper.make_tensor_value_info("y", T.FLOAT, [2]), helper.make_tensor_value_info("sqs", T.FLOAT, [None, 2])],
        [numpy_helper.from_array(np.array(0, np.float32), "zero")])
    for step in ([1.0, 2.0], [-3.0, 0.5]):
        feeds = {"n": np.array(3, np.int64), "x": np.array([0.5, -1.0], np.float32),
                 "step": np.array(step, np.float32)}
        ours = suanli.onnx.load(model).run(feeds)
        for a, b in zip(ours, _ort(model, feeds)):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-6)


# ------------------------------------------------------------------------------ bad files
def test_missing_file_names_it(tmp_path):
    with pytest.raises(OnnxError, match="nope.onnx: no such file"):
        suanli.onnx.load(tmp_path / "nope.onnx")


@pytest.mark.parametrize("content", [b"", b"\x08\x07\x12\x03\xff\xff\xff\xff garbage", b"PK\x03\x04 a zip file"])
def test_non_onnx_file_names_it(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(OnnxError, match=r"bad\.onnx: .*(empty|not a valid ONNX|no ONNX graph)"):
        suanli.onnx.load(path)


def test_truncated_file_names_it(tmp_path):
    data = _mlp().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxError, match=r"cut\.onnx: .*not a valid ONNX model") as info:
        suanli.onnx.load(path)
    assert "bytes" in str(info.value)


# ------------------------------------------------------------------------------ unsupported ops
def test_unsupported_ops_all_listed_before_running():
    sub = helper.make_graph([helper.make_node("FancyOp", ["a"], ["b"], name="inner")], "sub", [],
                            [helper.make_tensor_value_info("b", T.FLOAT, [1])])
    model = _model(
        [helper.make_node("Relu", ["x"], ["a"]),
         helper.make_node("MyCustom", ["a"], ["c"], name="custom1", domain="com.acme"),
         helper.make_node("FancyOp", ["c"], ["d"], name="fancy1"),
         helper.make_node("FancyOp", ["d"], ["e"], name="fancy2"),
         helper.make_node("If", ["cond"], ["y"], then_branch=sub, else_branch=sub, name="branch")],
        [helper.make_tensor_value_info("x", T.FLOAT, [1]), helper.make_tensor_value_info("cond", T.BOOL, [])],
        [helper.make_tensor_value_info("y", T.FLOAT, [1])])
    model.opset_import.append(helper.make_opsetid("com.acme", 3))
    with pytest.raises(UnsupportedOpError) as info:
        suanli.onnx.load(model)
    msg = str(info.value)
    assert "2 unsupported op type(s)" in msg
    assert "ai.onnx::FancyOp (opset 17)" in msg and all(n in msg for n in ("'fancy1'", "'fancy2'", "'inner'"))
    assert "com.acme::MyCustom (opset 3)" in msg and "'custom1'" in msg


# ------------------------------------------------------------------------------ wrong inputs
def test_wrong_input_name():
    with pytest.raises(OnnxInputError, match=r"unknown input name\(s\) \['X'\]") as info:
        suanli.onnx.load(_mlp())(X=np.zeros((2, 4), np.float32))
    assert "Expect: one of ['x']" in str(info.value)


def test_wrong_input_dtype():
    with pytest.raises(OnnxInputError, match="input 'x' has the wrong dtype") as info:
        suanli.onnx.load(_mlp())(np.zeros((2, 4), np.float64))
    assert "Expect: float32" in str(info.value) and "Actual: float64 with shape (2, 4)" in str(info.value)


def test_wrong_input_shape():
    with pytest.raises(OnnxInputError, match="input 'x' has the wrong shape") as info:
        suanli.onnx.load(_mlp())(np.zeros((2, 5), np.float32))
    assert "Expect: ('batch', 4)" in str(info.value) and "Actual: (2, 5)" in str(info.value)


def test_missing_input():
    with pytest.raises(OnnxInputError, match="missing inputs"):
        suanli.onnx.load(_mlp()).run({})


def test_declared_output_shape_disagrees():
    model = _model([helper.make_node("Transpose", ["x"], ["y"])], [helper.make_tensor_value_info("x", T.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", T.FLOAT, [2, 3])])
    with pytest.raises(OnnxOutputError, match="output 'y' has the wrong shape") as info:
        suanli.onnx.load(model)(np.zeros((2, 3), np.float32))
    assert "Expect: (2, 3)" in str(info.value) and "Actual: (3, 2)" in str(info.value)


def test_symbolic_dims_must_agree_between_input_and_output():
    model = _model([helper.make_node("Concat", ["x", "x"], ["y"], axis=0)],
                   [helper.make_tensor_value_info("x", T.FLOAT, ["n", 2])],
                   [helper.make_tensor_value_info("y", T.FLOAT, ["n", 2])])
    with pytest.raises(OnnxOutputError, match="wrong shape") as info:
        suanli.onnx.load(model)(np.zeros((3, 2), np.float32))
    assert "'n': 3" in str(info.value)


def test_failing_node_is_named():
    model = _model([helper.make_node("Add", ["x", "z"], ["y"], name="the_add")],
                   [helper.make_tensor_value_info("x", T.FLOAT, [2]), helper.make_tensor_value_info("z", T.FLOAT, [3])],
                   [helper.make_tensor_value_info("y", T.FLOAT, [2])])
    with pytest.raises(OnnxError, match=r"Add node 'the_add' \(opset 17\): failed") as info:
        suanli.onnx.load(model)(np.zeros(2, np.float32), np.zeros(3, np.float32))
    assert "cannot be broadcast" in str(info.value)
