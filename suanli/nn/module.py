"""Module: the base class of every layer and model, with PyTorch's conventions.

Registration is explicit and cheap: assigning a :class:`Parameter`, a :class:`Module` or an existing
buffer name goes through ``__setattr__`` once, and the value also lives in the instance ``__dict__`` so
*reading* ``self.weight`` is a plain attribute lookup (no ``__getattr__`` on the hot path, unlike torch).

>>> import suanli
>>> from suanli import nn
>>> class TwoLayer(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.fc1 = nn.Linear(4, 8)
...         self.fc2 = nn.Linear(8, 2)
...     def forward(self, x):
...         return self.fc2(self.fc1(x).relu())
>>> net = TwoLayer()
>>> [name for name, _ in net.named_parameters()]
['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
>>> net(suanli.randn(3, 4)).shape
(3, 2)
"""
from __future__ import annotations

import itertools
import warnings
from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError, SuanliError
from ..tensor import Tensor
from .parameter import Buffer, Parameter

__all__ = ["Module", "RemovableHandle", "IncompatibleKeys"]


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` could not match (torch's ``_IncompatibleKeys`` plus shape mismatches)."""

    missing_keys: list[str]
    unexpected_keys: list[str]
    mismatched_keys: list[str] = []

    def __repr__(self) -> str:
        if not (self.missing_keys or self.unexpected_keys or self.mismatched_keys):
            return "<All keys matched successfully>"
        return (f"IncompatibleKeys(missing_keys={self.missing_keys}, "
                f"unexpected_keys={self.unexpected_keys}, mismatched_keys={self.mismatched_keys})")


class RemovableHandle:
    """Returned by ``register_*_hook``; ``handle.remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks: dict) -> None:
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _no_forward(self: Module, *args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError(f"{type(self).__name__}: Module subclasses must define forward(...)")


class Module:
    """Base class for layers and models: holds parameters, buffers and submodules by name."""

    training: bool
    forward: Callable[..., Any] = _no_forward
    _optional_state: tuple[str, ...] = ()      # state_dict keys load_state_dict may find absent

    def __init__(self) -> None:
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_non_persistent"] = set()
        d["_modules"] = {}
        d["_forward_pre_hooks"] = {}
        d["_forward_hooks"] = {}

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if "_parameters" not in d:
            raise SuanliError(f"{type(self).__name__}: cannot assign {name!r} before Module.__init__() "
                              f"is called; call super().__init__() first in your __init__")
        # Re-assigning a name of the same kind keeps its slot, so state_dict order stays torch's
        # (e.g. tying ``self.head.weight = self.emb.weight`` does not move ``head.weight`` last).
        if isinstance(value, Parameter):
            self._forget(name, keep="_parameters")
            d["_parameters"][name] = value
        elif isinstance(value, Module):
            self._forget(name, keep="_modules")
            d["_modules"][name] = value
        elif isinstance(value, Buffer):
            self._forget(name, keep="_buffers")
            self.register_buffer(name, value, persistent=value.persistent)
            return
        elif name in d["_parameters"]:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} as parameter "
                                f"{name!r} (suanli.nn.Parameter or None expected); wrap it: "
                                f"nn.Parameter(tensor)")
            d["_parameters"][name] = None
        elif name in d["_modules"]:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} as child "
                                f"module {name!r} (Module or None expected)")
            d["_modules"][name] = None
        elif name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} as buffer "
                                f"{name!r} (Tensor or None expected)")
            d["_buffers"][name] = value
        d[name] = value

    def __delattr__(self, name: str) -> None:
        self._forget(name)
        object.__delattr__(self, name)

    def _forget(self, name: str, keep: str = "") -> None:
        """Drop ``name`` from every registration table except ``keep`` (whose slot order is kept)."""
        d = self.__dict__
        for table in ("_parameters", "_modules", "_buffers"):
            if table != keep:
                d[table].pop(name, None)
        if keep != "_buffers":
            d["_non_persistent"].discard(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a ``None`` placeholder, as a bias-free layer does)."""
        self._check_name("register_parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a suanli.nn.Parameter or None, "
                            f"got {type(param).__name__}; wrap it: nn.Parameter(tensor)")
        if param is not None and param._node is not None:
            raise ValueError(f"register_parameter: {name!r} is not a leaf tensor (it has a grad_fn); "
                             f"parameters must be leaves — use .detach()")
        self._forget(name, keep="_parameters")
        self.__dict__["_parameters"][name] = param
        self.__dict__[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add state that is not learned (running statistics, masks); ``persistent`` ones are saved."""
        self._check_name("register_buffer", name)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}")
        self._forget(name, keep="_buffers")
        self.__dict__["_buffers"][name] = tensor
        if persistent:
            self.__dict__["_non_persistent"].discard(name)
        else:
            self.__dict__["_non_persistent"].add(name)
        self.__dict__[name] = tensor

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under ``name`` (what attribute assignment does)."""
        self._check_name("add_module", name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got {type(module).__name__}")
        self._forget(name, keep="_modules")
        self.__dict__["_modules"][name] = module
        self.__dict__[name] = module

    register_module = add_module

    def _check_name(self, where: str, name: str) -> None:
        if "_parameters" not in self.__dict__:
            raise SuanliError(f"{where}: call Module.__init__() (super().__init__()) before registering")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{where}: name must be a non-empty string without '.', got {name!r}")
        if name in self.__dict__ and not (name in self._parameters or name in self._buffers
                                          or name in self._modules):
            raise KeyError(f"{where}: attribute {name!r} already exists on {type(self).__name__}")

    # ------------------------------------------------------------------ calling
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not (self._forward_pre_hooks or self._forward_hooks):
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_pre_hook(self, hook: Callable[[Module, tuple], Any]) -> RemovableHandle:
        """``hook(module, args)`` runs before forward; returning a value replaces the args."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> RemovableHandle:
        """``hook(module, args, output)`` runs after forward; returning a value replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------ traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """Every module in the tree, depth first, this one first with name ``prefix``."""
        memo = set() if memo is None else memo
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if remove_duplicate:
                if id(module) in memo:
                    continue
                memo.add(id(module))
            yield name, module
            kids = [(f"{name}.{k}" if name else k, m) for k, m in module._modules.items() if m is not None]
            stack.extend(reversed(kids))

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def _named_members(self, table: str, prefix: str, recurse: bool,
                       remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for mod_name, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{mod_name}.{name}" if mod_name else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(dotted_name, parameter)`` pairs; a parameter shared by two layers appears once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)  # type: ignore[return-value]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        """The module at dotted path ``target`` ('' is this module)."""
        module = self
        for part in target.split(".") if target else []:
            child = module._modules.get(part)
            if child is None:
                raise AttributeError(f"get_submodule: {type(module).__name__} has no submodule {part!r} "
                                     f"(looking up {target!r}); children: {list(module._modules)}")
            module = child
        return module

    def get_parameter(self, target: str) -> Parameter:
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        if name not in module._parameters:
            raise AttributeError(f"get_parameter: {type(module).__name__} has no parameter {name!r}")
        return module._parameters[name]

    # ------------------------------------------------------------------ modes and bulk changes
    def train(self, mode: bool = True) -> Module:
        """Set training mode here and in every submodule (dropout, batch-norm statistics)."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be a bool, got {mode!r}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every submodule (children first) then on self, like torch."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad._data[...] = 0

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """``module.to(dtype)`` converts floating parameters and buffers in place (same objects)."""
        dtype = kwargs.get("dtype")
        for a in args:
            if isinstance(a, str):
                if a != "cpu":
                    raise ValueError(f"Module.to: device {a!r} is not available; suanli runs on the CPU")
            else:
                dtype = a
        if dtype is None:
            return self
        dtype = _dt.as_dtype(dtype)
        if dtype not in _dt.FLOATING:
            raise TypeError(f"Module.to: only floating dtypes are supported, got {dtype}")
        for t in itertools.chain(self.parameters(), self.buffers()):
            if t._data.dtype in _dt.FLOATING and t._data.dtype != dtype:
                t._data = t._data.astype(dtype)
                t._vc[0] += 1
                if t.grad is not None:
                    t.grad = Tensor(t.grad._data.astype(dtype))
        return self

    def float(self) -> Module:
        return self.to(_dt.float32)

    def double(self) -> Module:
        return self.to(_dt.float64)

    def half(self) -> Module:
        return self.to(_dt.float16)

    def bfloat16(self) -> Module:
        return self.to(_dt.bfloat16)

    def cpu(self) -> Module:
        return self

    # ------------------------------------------------------------------ state dict
    def state_dict(self, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> OrderedDict[str, Tensor]:
        """Parameters and persistent buffers by dotted name (tensors share storage, detached)."""
        out: OrderedDict[str, Tensor] = OrderedDict() if destination is None else destination
        for mod_name, module in self.named_modules(prefix=prefix.rstrip("."), remove_duplicate=False):
            base = f"{mod_name}." if mod_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    out[base + name] = p if keep_vars else p.detach()
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    out[base + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> IncompatibleKeys:
        """Copy values from ``state_dict`` into this module's parameters and persistent buffers.

        ``strict=True`` raises one error naming every missing, unexpected and shape-mismatched key.
        ``strict=False`` never raises for those: it loads what matches and reports the rest in the
        returned ``IncompatibleKeys`` (``mismatched_keys`` lists shape mismatches that were skipped).
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a mapping of name -> tensor, got "
                            f"{type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        optional = {f"{name}.{key}" if name else key
                    for name, m in self.named_modules(remove_duplicate=False) for key in m._optional_state}
        # keys a layer can do without (BatchNorm's num_batches_tracked, absent from old checkpoints, as
        # torch allows) keep their current value instead of being reported missing
        missing = [k for k in own if k not in state_dict and k not in optional]
        unexpected = [k for k in state_dict if k not in own]
        mismatched: list[str] = []
        details: list[str] = []
        matched: list[tuple[Tensor, np.ndarray]] = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            array = value._data if isinstance(value, Tensor) else np.asarray(value)
            if array.shape != target._data.shape:
                mismatched.append(key)
                details.append(f"  {key}: checkpoint shape {tuple(array.shape)}, "
                               f"model shape {tuple(target._data.shape)}")
                continue
            matched.append((target, array))
        if strict and (missing or unexpected or mismatched):
            lines = [f"load_state_dict: error(s) loading the state dict into {type(self).__name__}:"]
            if mismatched:
                lines.append("size mismatch for:")
                lines.extend(details)
            if missing:
                lines.append(f"missing keys: {missing}")
            if unexpected:
                lines.append(f"unexpected keys: {unexpected}")
            lines.append("hint: pass strict=False to load what matches, or use suanli.nn.transfer(...) "
                         "for a report of what was loaded")
            raise (ShapeError if mismatched else SuanliError)("\n".join(lines))
        if mismatched:
            warnings.warn("load_state_dict(strict=False): skipped keys whose shapes differ:\n"
                          + "\n".join(details), stacklevel=2)
        for target, array in matched:
            if assign:
                target._data = np.array(array, dtype=array.dtype, copy=True)
            else:
                target._data[...] = array.astype(target._data.dtype, copy=False)
            target._vc[0] += 1
        return IncompatibleKeys(missing, unexpected, mismatched)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """One line of constructor arguments shown in ``repr`` (override in layers)."""
        return ""

    def __repr__(self) -> str:
        # torch's layout: extra_repr alone on the head line when there are no children, otherwise
        # one line per extra_repr line and per child, each indented by two spaces
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [_indent(f"({name}): {m!r}") for name, m in self._modules.items()]
        return _layout(type(self).__name__, extra_lines, child_lines)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()))


def _indent(text: str, spaces: int = 2) -> str:
    """Indent every line but the first (torch's ``_addindent``)."""
    return text.replace("\n", "\n" + " " * spaces)


def _layout(name: str, extra_lines: list[str], child_lines: list[str]) -> str:
    lines = extra_lines + child_lines
    if not lines:
        return name + "()"
    if len(extra_lines) == 1 and not child_lines:
        return f"{name}({extra_lines[0]})"
    return name + "(\n  " + "\n  ".join(lines) + "\n)"
