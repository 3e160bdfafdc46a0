"""The one op registry: each primitive carries its shape/dtype rule, NumPy impl, VJP and JVP.

Eager mode, autodiff, forward mode -- and later tracing, ONNX and quantization -- all go through
:func:`apply`. Composite ops (softmax, layer_norm, losses...) are plain functions over primitives and
need no rules of their own.

>>> from suanli.ops import registry
>>> registry["exp"].has_vjp, registry["exp"].has_jvp
(True, True)
>>> "matmul" in registry
True
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from .._config import state
from ..dtypes import HALF, float32
from ..errors import AutogradError, SuanliError, is_clear_error, op_error
from ..tensor import Tensor, _wrap


class Spec(NamedTuple):
    """What a shape/dtype rule sees and returns: a value's shape and dtype, no data."""

    shape: tuple[int, ...]
    dtype: np.dtype


VjpRule = Callable[["Node", Tensor], Sequence[Tensor | None]]
JvpRule = Callable[["Node", Sequence[Tensor | None]], Tensor]


class Primitive:
    """One enumerated operation and all of its rules.

    * ``impl(*arrays, **attrs) -> ndarray`` -- the NumPy reference implementation. Inputs of one
      primitive already share a dtype where that matters; the public function promotes first.
    * ``infer(*specs, **attrs) -> Spec`` -- output shape/dtype; raises a clear error on bad input.
    * ``vjp(ctx, g) -> tuple`` -- one cotangent per input (``None`` for no gradient), written with
      suanli ops so it is itself differentiable. Broadcast inputs may get a broadcast-shaped
      cotangent: the engine sums it back to the input's shape in one place.
    * ``jvp(ctx, tangents) -> Tensor`` -- output tangent from input tangents (``None`` = zero).
    * ``ctx`` is a :class:`Node`: ``ctx.inputs``, ``ctx.out``, ``ctx.attrs``, ``ctx.needs``.
    """

    __slots__ = ("name", "impl", "infer", "vjp", "jvp", "differentiable", "view", "save_output",
                 "saved_inputs", "upcast_half", "lowerings", "doc")

    def __init__(self, name: str, impl: Callable[..., np.ndarray], infer: Callable[..., Spec],
                 vjp: VjpRule | None = None, jvp: JvpRule | None = None, *,
                 differentiable: bool = True, view: bool = False, save_inputs: bool = True,
                 save_output: bool = False,
                 saved_inputs: Callable[[tuple[bool, ...]], Sequence[int]] | None = None,
                 upcast_half: bool = True, doc: str = "") -> None:
        self.name = name
        self.impl = impl
        self.infer = infer
        self.vjp = vjp
        self.jvp = jvp
        self.differentiable = differentiable
        self.view = view                    # output shares memory (and version counter) with input 0
        self.save_output = save_output      # vjp reads ctx.out: in-place edits of it are an error
        # which inputs the vjp reads, given which inputs need grad (guards against in-place edits)
        self.saved_inputs = saved_inputs or (_all_inputs if save_inputs else _no_inputs)
        self.upcast_half = upcast_half      # float16/bfloat16 computed in float32, rounded back
        self.lowerings: dict[str, Any] = {}  # later layers attach 'c', 'onnx', 'int8'... here
        self.doc = doc

    @property
    def has_vjp(self) -> bool:
        return self.vjp is not None

    @property
    def has_jvp(self) -> bool:
        return self.jvp is not None

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


def _all_inputs(needs: tuple[bool, ...]) -> range:
    return range(len(needs))


def _no_inputs(needs: tuple[bool, ...]) -> tuple[int, ...]:
    return ()


def other_inputs(needs: tuple[bool, ...]) -> list[int]:
    """For ops linear in each input (mul, matmul): input i's grad reads only the other inputs."""
    n = len(needs)
    return sorted({j for i in range(n) if needs[i] for j in range(n) if j != i})


class Registry:
    """Name -> :class:`Primitive`; inspectable (``print(registry.table())``)."""

    def __init__(self) -> None:
        self._prims: dict[str, Primitive] = {}

    def register(self, prim: Primitive) -> Primitive:
        if prim.name in self._prims:
            raise ValueError(f"primitive {prim.name!r} is registered twice")
        self._prims[prim.name] = prim
        return prim

    def __getitem__(self, name: str) -> Primitive:
        try:
            return self._prims[name]
        except KeyError:
            raise KeyError(f"no primitive named {name!r}; see suanli.ops.registry.names()") from None

    def __contains__(self, name: object) -> bool:
        return name in self._prims

    def __iter__(self) -> Iterator[Primitive]:
        return iter(self._prims.values())

    def __len__(self) -> int:
        return len(self._prims)

    def names(self) -> list[str]:
        return sorted(self._prims)

    def missing_rules(self) -> list[str]:
        """Differentiable primitives lacking a VJP or JVP rule (must be empty)."""
        return [p.name for p in self if p.differentiable and not (p.has_vjp and p.has_jvp)]

    def table(self) -> str:
        """A text table: each primitive and which rules it has."""
        def mark(flag: bool) -> str:
            return "yes" if flag else "-"

        rows = [f"{'primitive':<24}{'diff':<6}{'vjp':<5}{'jvp':<5}{'view':<6}lowerings"]
        for p in sorted(self, key=lambda p: p.name):
            rows.append(f"{p.name:<24}{mark(p.differentiable):<6}{mark(p.has_vjp):<5}"
                        f"{mark(p.has_jvp):<5}{mark(p.view):<6}{','.join(sorted(p.lowerings)) or '-'}")
        return "\n".join(rows)


registry = Registry()


def defprim(name: str, impl: Callable[..., np.ndarray], infer: Callable[..., Spec], **kwargs: Any) -> Primitive:
    """Create and register a primitive (see :class:`Primitive` for the arguments)."""
    return registry.register(Primitive(name, impl, infer, **kwargs))


# --------------------------------------------------------------------------------------- the tape
class Node:
    """A recorded application of a primitive: what backward needs, and nothing else."""

    __slots__ = ("prim", "inputs", "input_nodes", "attrs", "needs", "_out", "_out_data", "saved", "hooks",
                 "retain", "__weakref__")

    def __init__(self, prim: Primitive, inputs: tuple[Tensor, ...], attrs: dict, out: Tensor) -> None:
        self.prim = prim
        self.inputs: tuple[Tensor, ...] | None = inputs
        self.attrs = attrs
        self.needs = tuple([t._requires_grad for t in inputs])
        # the producers as of now: a later in-place op re-points a tensor's _node, not this edge
        self.input_nodes = tuple([t._node for t in inputs])
        self._out = weakref.ref(out)
        idx = prim.saved_inputs(self.needs)
        saved = [(inputs[i]._vc, inputs[i]._vc[0], i) for i in idx]
        self._out_data = None
        if prim.save_output:
            saved.append((out._vc, out._vc[0], -1))
            self._out_data = out._data   # the output Tensor may be gone by the time backward runs
        self.saved = saved
        self.hooks: list | None = None
        self.retain: Any = None

    @property
    def out(self) -> Tensor:
        """The primal output; if the user dropped it, a stand-in on the same data and node (so
        double backward through ``ctx.out`` still reaches this node's inputs)."""
        out = self._out()
        if out is None:
            if self._out_data is None:
                raise AutogradError(f"{self.prim.name}: its VJP reads ctx.out, so the primitive must be "
                                    "registered with save_output=True")
            out = _wrap(self._out_data)
            out._node, out._requires_grad = self, True
            out._vc = next((vc for vc, _, i in self.saved if i == -1), out._vc)
        return out

    @property
    def name(self) -> str:
        return self.prim.name

    @property
    def next_functions(self) -> tuple:
        """Like torch's ``grad_fn.next_functions``: the nodes that produced the inputs."""
        return tuple((n, 0) for n in self.input_nodes)

    def __repr__(self) -> str:
        return f"<{''.join(w.title() for w in self.prim.name.split('_'))}Backward>"


class _JvpCtx:
    """What a JVP rule sees: the primal inputs, the primal output and the attributes."""

    __slots__ = ("prim", "inputs", "attrs", "out", "needs")

    def __init__(self, prim: Primitive, inputs: tuple, attrs: dict, out: Tensor) -> None:
        self.prim, self.inputs, self.attrs, self.out = prim, inputs, attrs, out
        self.needs = tuple(True for _ in inputs)


# ----------------------------------------------------------------------------------------- apply
def apply(prim: Primitive, *inputs: Tensor, **attrs: Any) -> Tensor:
    """Run ``prim`` eagerly on tensors: impl, then tape node if grad is recorded, then tangents.

    >>> import suanli
    >>> from suanli.ops import registry
    >>> apply(registry["add"], suanli.tensor([1.0]), suanli.tensor([2.0]))
    tensor([3.])
    """
    if state.autocast is not None:    # inside suanli.amp.autocast: cast inputs per the op's policy
        inputs = state.autocast.cast_inputs(prim, inputs)
    if state.tracer is not None:      # inside suanli.compile tracing: run eagerly and record an IR node
        return state.tracer.apply(prim, inputs, attrs)
    try:
        if prim.upcast_half and inputs and inputs[0]._data.dtype in HALF:
            out = _impl_half(prim, inputs, attrs)
        else:
            out = prim.impl(*[t._data for t in inputs], **attrs)
    except Exception as exc:  # a NumPy failure: let the shape rule say what is wrong
        if is_clear_error(exc):
            raise
        raise explain_failure(prim, inputs, attrs, exc) from exc
    if out.__class__ is not np.ndarray:   # ufuncs on 0-d arrays return NumPy scalars
        out = np.asarray(out)
    if state.check_shapes:
        check_infer(prim, inputs, attrs, out)
    result = _wrap(out)
    if prim.view:
        src = inputs[0]
        result._vc = src._vc
        result._base = src if src._base is None else src._base
    if state.grad_enabled and prim.differentiable:
        for t in inputs:
            if t._requires_grad:
                result._node = Node(prim, inputs, attrs, result)
                result._requires_grad = True
                break
    if state.forward_level:
        _push_tangent(prim, inputs, attrs, result)
    return result


def _impl_half(prim: Primitive, inputs: tuple[Tensor, ...], attrs: dict) -> np.ndarray:
    dtype = inputs[0]._data.dtype
    arrays = [t._data.astype(float32) if t._data.dtype in HALF else t._data for t in inputs]
    out = prim.impl(*arrays, **attrs)
    return out.astype(dtype) if out.dtype == float32 else out


def explain_failure(prim: Primitive, inputs: Sequence[Tensor], attrs: dict, exc: Exception) -> SuanliError:
    """Turn a NumPy exception into the primitive's own clear error (from its shape rule)."""
    specs = [Spec(t._data.shape, t._data.dtype) for t in inputs]
    try:
        prim.infer(*specs, **attrs)
    except Exception as clear:  # noqa: BLE001 - a broken rule must not hide the original failure
        if is_clear_error(clear):
            return clear
    shapes = ", ".join(f"{tuple(s.shape)} {s.dtype}" for s in specs)
    return op_error(prim.name, f"failed: {type(exc).__name__}: {exc}",
                    actual=f"inputs {shapes}; attrs {attrs}",
                    hint="check the input shapes/dtypes against the op's documentation",
                    cls=SuanliError)


def check_infer(prim: Primitive, inputs: Sequence[Tensor], attrs: dict, out: np.ndarray) -> None:
    """Debug check (``SUANLI_CHECK_SHAPES=1``): the shape rule must predict what the impl made."""
    spec = prim.infer(*[Spec(t._data.shape, t._data.dtype) for t in inputs], **attrs)
    if tuple(spec.shape) != out.shape or spec.dtype != out.dtype:
        raise AssertionError(f"{prim.name}: shape rule says {tuple(spec.shape)} {spec.dtype}, "
                             f"impl made {out.shape} {out.dtype} (attrs {attrs})")


def _push_tangent(prim: Primitive, inputs: tuple[Tensor, ...], attrs: dict, result: Tensor) -> None:
    tangents = [t._tangent for t in inputs]
    if all(t is None for t in tangents):
        return
    if not prim.differentiable:
        return
    if prim.jvp is None:
        raise AutogradError(f"{prim.name}: no JVP rule, so forward-mode AD cannot pass through it")
    level = state.forward_level
    state.forward_level = 0         # the rule's own ops carry no tangents (one level of duals)
    try:
        tan = prim.jvp(_JvpCtx(prim, inputs, attrs, result), tangents)
    finally:
        state.forward_level = level
    if tan is not None:
        if tan._data.shape != result._data.shape:
            from .shape import expand
            tan = expand(tan, result._data.shape)
        if tan._data.dtype != result._data.dtype:
            from .elementwise import cast
            tan = cast(tan, result._data.dtype)
        from ..autograd.forward_ad import _attach_tangent
        _attach_tangent(result, tan)


# -------------------------------------------------------------------------- helpers for op modules
_METHODS: dict[str, Callable] = {}


def tensor_method(name_or_fn: str | Callable | None = None, *, names: Sequence[str] = ()) -> Any:
    """Decorator: also expose a public op as ``Tensor.<name>`` (bound with the tensor first).

    >>> @tensor_method                     # doctest: +SKIP
    ... def exp(x): ...
    """
    def deco(fn: Callable) -> Callable:
        for n in (names or [name_or_fn if isinstance(name_or_fn, str) else fn.__name__]):
            _METHODS[n] = fn
        return fn
    if callable(name_or_fn):
        return deco(name_or_fn)
    return deco


def install_tensor_methods() -> None:
    """Attach every ``@tensor_method`` function to :class:`Tensor` (called once at import)."""
    for name, fn in _METHODS.items():
        if name not in Tensor.__dict__:
            setattr(Tensor, name, fn)


def spec_str(*specs: Spec) -> str:
    return ", ".join(f"{tuple(s.shape)} {s.dtype}" for s in specs)
