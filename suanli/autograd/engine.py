"""The reverse-mode engine: an iterative topological walk over recorded nodes.

No recursion (a chain of 100,000 ops works), fan-out gradients accumulate per node, broadcast
gradients are summed back to the input's shape in one place (:func:`_fit`), the tape is freed after
backward unless ``retain_graph``, and in-place edits of saved tensors are detected by version.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .._config import state
from ..errors import AutogradError, op_error
from ..tensor import Tensor, _wrap


class RemovableHandle:
    """Returned by ``register_hook``; ``.remove()`` unregisters the hook."""

    def __init__(self, hooks: list, hook: Callable) -> None:
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def register_hook(t: Tensor, hook: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
    if not t._requires_grad:
        raise AutogradError("register_hook: cannot register a hook on a tensor that does not require grad")
    if t._node is None:
        if t._hooks is None:
            t._hooks = []
        hooks = t._hooks
    else:
        if t._node.hooks is None:
            t._node.hooks = []
        hooks = t._node.hooks
    hooks.append(hook)
    return RemovableHandle(hooks, hook)


def retain_grad(t: Tensor) -> None:
    if not t._requires_grad:
        raise AutogradError("retain_grad: cannot retain the grad of a tensor that does not require grad")
    if t._node is not None:
        import weakref
        t._node.retain = weakref.ref(t)


def _as_tuple(x: Any) -> tuple:
    if x is None:
        return ()
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _check_root(root: Tensor, grad: Tensor | None, where: str) -> Tensor:
    if not isinstance(root, Tensor):
        raise TypeError(f"{where}: outputs must be Tensors, got {type(root).__name__}")
    if not root._requires_grad:
        raise AutogradError(f"{where}: element 0 of tensors does not require grad and does not have a "
                            "grad_fn (did you forget requires_grad=True, or compute it under no_grad?)")
    if grad is None:
        if root._data.size != 1:
            raise AutogradError(f"{where}: grad can be implicitly created only for scalar outputs; "
                                f"the output has shape {root._data.shape}. Pass gradient=... of that "
                                "shape (e.g. torch-style y.backward(suanli.ones_like(y))) or reduce first")
        return _wrap(np.ones_like(root._data))
    if not isinstance(grad, Tensor):
        from ..ops._helpers import as_tensor
        grad = as_tensor(grad, root._data.dtype)
    if grad._data.shape != root._data.shape:
        raise op_error(where, "gradient has the wrong shape", expect=f"{root._data.shape}",
                       actual=f"{grad._data.shape}")
    return grad


def _fit(g: Tensor, t: Tensor, prim_name: str) -> Tensor:
    """Sum a broadcast cotangent back to ``t``'s shape and cast to its dtype."""
    if g._data.shape != t._data.shape:
        from ..ops._helpers import sum_to
        try:
            g = sum_to(g, t._data.shape)
        except Exception as exc:  # noqa: BLE001
            raise AutogradError(f"{prim_name}: VJP produced a gradient of shape {g._data.shape} for an "
                                f"input of shape {t._data.shape} (a bug in the rule)") from exc
    if g._data.dtype != t._data.dtype:
        from ..ops.elementwise import cast
        g = cast(g, t._data.dtype)
    return g


def _check_versions(node: Any) -> None:
    for vc, version, idx in node.saved:
        if vc[0] != version:
            if idx >= 0:
                t = node.inputs[idx]
                what = f"input {idx} of '{node.prim.name}' (shape {t._data.shape}, {t._data.dtype})"
            else:
                what = f"the output of '{node.prim.name}'"
            raise AutogradError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: {what} is at version {vc[0]}; expected version {version} instead.\n"
                "  help: clone() the tensor before modifying it, or use the out-of-place op")


def _freed_error() -> AutogradError:
    return AutogradError("Trying to backward through the graph a second time (or directly access "
                         "saved tensors after they have already been freed). Saved intermediate values "
                         "of the graph are freed when you call .backward() or autograd.grad(). Specify "
                         "retain_graph=True if you need to backward through the graph a second time.")


def run_backward(roots: Sequence[Tensor], grads: Sequence[Tensor], *, retain_graph: bool,
                 create_graph: bool, inputs: Sequence[Tensor] | None = None,
                 accumulate: bool = True) -> list[Tensor | None] | None:
    """Propagate ``grads`` from ``roots`` to leaves.

    ``accumulate=True``: add into ``.grad`` of leaves (of ``inputs`` only, if given).
    ``accumulate=False``: return the gradients of ``inputs`` (``autograd.grad``), touching no ``.grad``.
    """
    # 1. reachable nodes and, per node, how many consumer edges point at it
    deps: dict[Any, int] = {}
    stack = []
    for r in roots:
        if r._node is not None and r._node not in deps:
            deps[r._node] = 0
            stack.append(r._node)
    while stack:
        node = stack.pop()
        if node.inputs is None:
            raise _freed_error()
        for n in node.input_nodes:
            if n is not None:
                if n in deps:
                    deps[n] += 1
                else:
                    deps[n] = 1
                    stack.append(n)

    wanted: dict[int, int] = {}            # id(tensor) -> position in `inputs`
    wanted_nodes: dict[Any, int] = {}      # non-leaf inputs are captured at their node
    results: list[Tensor | None] = []
    if inputs is not None:
        results = [None] * len(inputs)
        for i, t in enumerate(inputs):
            if t._node is not None:
                wanted_nodes[t._node] = i
            else:
                wanted[id(t)] = i

    node_grads: dict[Any, Tensor] = {}
    # arrays that must never become a leaf's .grad without a copy: the caller's root gradients, and
    # any array already handed to one leaf (add's VJP gives the same cotangent to both inputs)
    claimed: set[int] = {id(g._data) for g in grads}
    leaf_grads: dict[int, tuple[Tensor, Tensor]] = {}

    def to_leaf(t: Tensor, g: Tensor) -> None:
        key = id(t)
        if key in leaf_grads:
            leaf_grads[key] = (t, leaf_grads[key][1] + g)
        else:
            leaf_grads[key] = (t, g)

    for r, g in zip(roots, grads):
        if r._node is None:
            to_leaf(r, g)
        elif r._node in node_grads:
            node_grads[r._node] = node_grads[r._node] + g
        else:
            node_grads[r._node] = g

    prev_mode = state.grad_enabled
    state.grad_enabled = create_graph
    try:
        ready = [n for n, d in deps.items() if d == 0]
        while ready:
            node = ready.pop()
            g = node_grads.pop(node, None)
            inputs_of_node = node.inputs
            if g is not None:
                if node.hooks:
                    for hook in node.hooks:
                        new = hook(g)
                        if new is not None:
                            g = new
                if node.retain is not None:
                    owner = node.retain()
                    if owner is not None:
                        owner.grad = g if create_graph else g.detach()
                if node in wanted_nodes:
                    results[wanted_nodes[node]] = g
                _check_versions(node)
                in_grads = node.prim.vjp(node, g)
                if len(in_grads) != len(inputs_of_node):
                    raise AutogradError(f"{node.prim.name}: VJP returned {len(in_grads)} gradients for "
                                        f"{len(inputs_of_node)} inputs")
            else:
                in_grads = (None,) * len(inputs_of_node)
            for t, n, gi, need in zip(inputs_of_node, node.input_nodes, in_grads, node.needs):
                if gi is not None and need:
                    gi = _fit(gi, t, node.prim.name)
                    if n is None:
                        if t._requires_grad:
                            to_leaf(t, gi)
                    elif n in node_grads:
                        node_grads[n] = node_grads[n] + gi
                    else:
                        node_grads[n] = gi
                if n is not None:
                    deps[n] -= 1
                    if deps[n] == 0:
                        ready.append(n)
            if not retain_graph:
                node.inputs = None   # free the tape: saved tensors go with it
                node.saved = ()
                node._out_data = None
        # leaves: hooks, then accumulate or return
        for key, (t, g) in leaf_grads.items():
            if t._hooks:
                for hook in t._hooks:
                    new = hook(g)
                    if new is not None:
                        g = new
            if inputs is not None:
                if key in wanted:
                    results[wanted[key]] = g
                    if accumulate:
                        _accumulate(t, g, create_graph, claimed)
            elif accumulate:
                _accumulate(t, g, create_graph, claimed)
    finally:
        state.grad_enabled = prev_mode
    return results if inputs is not None else None


def _accumulate(t: Tensor, g: Tensor, create_graph: bool, claimed: set[int]) -> None:
    """``t.grad += g``; without create_graph the stored grad owns its memory (never aliases another
    tensor): a fresh, unshared engine array is taken as is, anything else is copied."""
    if create_graph or state.tracer is not None:   # (tracing: .grad must stay a recorded value)
        t.grad = g if t.grad is None else t.grad + g
        return
    old = t.grad
    if old is None:
        data = g._data
        if (data.base is not None or not data.flags.writeable or not data.flags.c_contiguous
                or id(data) in claimed or data is t._data):
            data = np.array(data, copy=True, order="C")
        claimed.add(id(data))
        t.grad = _wrap(data)
    elif old._data.flags.writeable and old._data.shape == g._data.shape and old._node is None:
        np.add(old._data, g._data, out=old._data, casting="unsafe")
    else:
        t.grad = _wrap(old._data + g._data)


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs: Any = None) -> None:
    """Accumulate gradients of ``tensors`` into the ``.grad`` of the leaves (torch semantics)."""
    roots = _as_tuple(tensors)
    gs = _as_tuple(grad_tensors) or (None,) * len(roots)
    if len(gs) != len(roots):
        raise AutogradError(f"backward: got {len(roots)} tensors but {len(gs)} gradients")
    grads = [_check_root(r, g, "backward") for r, g in zip(roots, gs)]
    if retain_graph is None:
        retain_graph = create_graph
    ins = _as_tuple(inputs) or None
    run_backward(roots, grads, retain_graph=retain_graph, create_graph=create_graph, inputs=ins,
                 accumulate=True)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool | None = None,
         materialize_grads: bool = False) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` w.r.t. ``inputs``, returned (``.grad`` is not touched).

    >>> import suanli
    >>> x = suanli.tensor(3.0, requires_grad=True)
    >>> (dx,) = suanli.autograd.grad(x ** 3, x, create_graph=True)
    >>> dx, suanli.autograd.grad(dx, x)[0]
    (tensor(27., grad_fn=<MulBackward>), tensor(18.))
    """
    outs = _as_tuple(outputs)
    ins = _as_tuple(inputs)
    for t in ins:
        if not isinstance(t, Tensor) or not t._requires_grad:
            raise AutogradError("grad: every input must be a Tensor that requires grad; got "
                                f"{'a tensor that does not require grad' if isinstance(t, Tensor) else type(t).__name__}")
    gs = _as_tuple(grad_outputs) or (None,) * len(outs)
    if len(gs) != len(outs):
        raise AutogradError(f"grad: got {len(outs)} outputs but {len(gs)} grad_outputs")
    grads = [_check_root(r, g, "grad") for r, g in zip(outs, gs)]
    if retain_graph is None:
        retain_graph = create_graph
    res = run_backward(outs, grads, retain_graph=retain_graph, create_graph=create_graph,
                       inputs=ins, accumulate=False)
    assert res is not None
    out = []
    for t, g in zip(ins, res):
        if g is None:
            if materialize_grads:
                g = _wrap(np.zeros_like(t._data))
            elif not allow_unused:
                raise AutogradError("grad: one of the differentiated Tensors appears to not have been "
                                    f"used in the graph (shape {t._data.shape}); set allow_unused=True "
                                    "if this is the desired behavior")
        elif not create_graph:
            g = g.detach()
        out.append(g)
    return tuple(out)
