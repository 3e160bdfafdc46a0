"""User-defined differentiable functions: subclass :class:`Function` with forward and backward.

>>> import suanli
>>> class Cube(suanli.autograd.Function):
...     @staticmethod
...     def forward(ctx, x):
...         ctx.save_for_backward(x)
...         return x ** 3
...     @staticmethod
...     def backward(ctx, g):
...         (x,) = ctx.saved_tensors
...         return 3 * x ** 2 * g
>>> x = suanli.tensor(2.0, requires_grad=True)
>>> Cube.apply(x).backward(); x.grad
tensor(12.)
"""
from __future__ import annotations

from typing import Any

from .._config import state
from ..errors import AutogradError
from ..ops.registry import Node, Primitive, Spec
from ..tensor import Tensor


class FunctionCtx:
    """The ``ctx`` handed to forward/backward: saved tensors and which inputs need gradients."""

    def __init__(self, needs_input_grad: tuple[bool, ...]) -> None:
        self.needs_input_grad = needs_input_grad
        self._saved: tuple[Tensor, ...] = ()
        self._versions: tuple[int, ...] = ()
        self.materialize_grads = True

    def save_for_backward(self, *tensors: Tensor) -> None:
        self._saved = tensors
        self._versions = tuple(t._vc[0] if isinstance(t, Tensor) else 0 for t in tensors)

    @property
    def saved_tensors(self) -> tuple[Tensor, ...]:
        for t, v in zip(self._saved, self._versions):
            if isinstance(t, Tensor) and t._vc[0] != v:
                raise AutogradError("custom Function: a tensor saved with save_for_backward was modified "
                                    f"in place (version {t._vc[0]}, saved at {v}); clone() it first")
        return self._saved

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = value

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        pass  # single-output functions: the caller simply gets no gradient for integer outputs


class Function:
    """Base class for custom autograd ops (``forward``/``backward`` static methods, optional ``jvp``)."""

    _prim: Primitive | None = None

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any, **kwargs: Any) -> Tensor:
        raise NotImplementedError("Function subclasses must implement forward(ctx, *args)")

    @staticmethod
    def backward(ctx: FunctionCtx, *grad_outputs: Tensor) -> Any:
        raise NotImplementedError("Function subclasses must implement backward(ctx, *grads)")

    @classmethod
    def _primitive(cls) -> Primitive:
        if cls.__dict__.get("_prim") is None:
            def vjp(node: Node, g: Tensor) -> tuple:
                ctx: FunctionCtx = node.attrs["ctx"]
                grads = cls.backward(ctx, g)
                grads = grads if isinstance(grads, tuple) else (grads,)
                positions = node.attrs["positions"]
                if len(grads) < len(ctx.needs_input_grad):
                    raise AutogradError(f"{cls.__name__}.backward returned {len(grads)} gradients; "
                                        f"forward took {len(ctx.needs_input_grad)} inputs")
                return tuple(grads[i] for i in positions)

            def jvp(jctx: Any, tangents: list) -> Tensor:
                if "jvp" not in cls.__dict__:
                    raise AutogradError(f"{cls.__name__}: define a static jvp(ctx, *tangents) to use "
                                        "forward-mode AD through this Function")
                return cls.jvp(jctx.attrs["ctx"], *tangents)

            def infer(*specs: Spec, **attrs: Any) -> Spec:
                raise AutogradError(f"{cls.__name__}: custom Functions have no shape rule (not traceable)")

            cls._prim = Primitive(cls.__name__, _no_impl, infer, vjp=vjp, jvp=jvp, save_inputs=False)
        return cls.__dict__["_prim"]

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        tensors = tuple(args[i] for i in positions)
        ctx = FunctionCtx(tuple(isinstance(a, Tensor) and a._requires_grad for a in args))
        prev_grad, prev_fwd = state.grad_enabled, state.forward_level
        state.grad_enabled, state.forward_level = False, 0
        try:
            out = cls.forward(ctx, *args, **kwargs)
        finally:
            state.grad_enabled, state.forward_level = prev_grad, prev_fwd
        if isinstance(out, tuple):
            raise AutogradError(f"{cls.__name__}.forward returned {len(out)} outputs; custom Functions "
                                "support one output tensor (return several via separate Functions)")
        if not isinstance(out, Tensor):
            raise TypeError(f"{cls.__name__}.forward must return a Tensor, got {type(out).__name__}")
        if any(t is out for t in tensors):
            from ..ops.elementwise import clone
            with_grad, state.grad_enabled = state.grad_enabled, False
            out = clone(out)
            state.grad_enabled = with_grad
        prim = cls._primitive()
        if state.grad_enabled and any(t._requires_grad for t in tensors) and out.is_floating_point():
            out._node = Node(prim, tensors, {"ctx": ctx, "positions": positions}, out)
            out._requires_grad = True
        if state.forward_level and any(t._tangent is not None for t in tensors):
            from ..ops.registry import _JvpCtx
            from .forward_ad import _attach_tangent
            level, state.forward_level = state.forward_level, 0
            try:
                tan = prim.jvp(_JvpCtx(prim, tensors, {"ctx": ctx}, out),
                               [args[i]._tangent if i in positions else None for i in range(len(args))])
            finally:
                state.forward_level = level
            _attach_tangent(out, tan)
        return out


def _no_impl(*arrays: Any, **attrs: Any) -> None:
    raise AutogradError("custom Functions run through Function.apply, not the primitive impl")
