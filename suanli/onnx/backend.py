"""An ``onnx.backend.base.Backend`` over suanli, for the ONNX conformance (backend) tests.

>>> import numpy as np
>>> from onnx import helper, TensorProto as T
>>> g = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "g",
...                       [helper.make_tensor_value_info("x", T.FLOAT, [1])],
...                       [helper.make_tensor_value_info("y", T.FLOAT, [1])])
>>> rep = SuanliBackend.prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
>>> rep.run([np.array([2.0], np.float32)])
(array([-2.], dtype=float32),)
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from ..autograd import no_grad
from ..tensor import Tensor
from .load import OnnxModel


def to_numpy(value: Any) -> Any:
    """Tensors to arrays, sequences to lists of arrays, absent optionals stay ``None``."""
    if isinstance(value, Tensor):
        return value._data
    if isinstance(value, list):
        return [to_numpy(v) for v in value]
    return value


class SuanliRep(BackendRep):
    def __init__(self, model: OnnxModel) -> None:
        self.model = model

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            feeds = dict(zip(self.model.input_names, inputs))
        with no_grad():
            outs = self.model.run(feeds, check_outputs=False)
        return tuple(to_numpy(o) for o in outs)


class SuanliBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> SuanliRep:
        return SuanliRep(OnnxModel(model))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")


prepare = SuanliBackend.prepare
run_model = SuanliBackend.run_model
supports_device = SuanliBackend.supports_device
