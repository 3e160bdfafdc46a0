"""Transfer learning: load whatever fits from a checkpoint into a (different) model, and say what happened.

``transfer(model, source)`` copies every tensor whose name — after stripping wrapper prefixes such as
``module.`` (DistributedDataParallel / DataParallel) and ``_orig_mod.`` (``torch.compile``) and applying
an optional ``prefix_map`` — and shape match one of the model's parameters or persistent buffers. It
never raises for a shape mismatch: those keys are reported in ``skipped_shape`` with both shapes. A layer
is taken whole or not at all (``by_layer=True``): when its weight does not fit, its bias is not loaded
either, even if the bias shape happens to match (a bias trained for another weight is not a good start).

>>> import suanli
>>> from suanli import nn
>>> small = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
>>> big = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 5))        # a new 5-class head
>>> report = nn.transfer(big, small.state_dict())
>>> report.loaded, report.skipped_shape, report.missing
(['0.weight', '0.bias'], {'2.weight': ((3, 8), (5, 8)), '2.bias': ((3,), (5,))}, [])
>>> bool((big[0].weight == small[0].weight).all())
True
>>> print(report)                                              # doctest: +NORMALIZE_WHITESPACE
transfer into Sequential: 2 loaded, 2 skipped (shape), 0 missing, 0 unexpected
  key       status   source shape  model shape
  0.weight  loaded   (8, 4)        (8, 4)
  0.bias    loaded   (8,)          (8,)
  2.weight  shape    (3, 8)        (5, 8)
  2.bias    shape    (3,)          (5,)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import op_error
from ..tensor import Tensor
from .module import Module

__all__ = ["transfer", "TransferReport"]

Shape = tuple[int, ...]


@dataclass
class TransferReport:
    """What :func:`transfer` did, key by key (model names; ``unexpected`` uses the source's names).

    ``loaded``: model keys that were copied. ``skipped_shape``: model key -> (source shape, model shape)
    for names that matched but were not loaded because the shapes differ -- or, with ``by_layer``,
    because another tensor of the same layer's differs (those show status ``layer`` in the table).
    ``missing``: model keys the source has no tensor for.
    ``unexpected``: source keys that match no model key. ``renamed``: model key -> source key where
    prefix stripping or ``prefix_map`` changed the name.
    """

    loaded: list[str] = field(default_factory=list)
    skipped_shape: dict[str, tuple[Shape, Shape]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    model_name: str = "model"
    model_shapes: dict[str, Shape] = field(default_factory=dict, repr=False)
    source_shapes: dict[str, Shape] = field(default_factory=dict, repr=False)

    @property
    def complete(self) -> bool:
        """True when every model key was loaded and every source key was used."""
        return not (self.skipped_shape or self.missing or self.unexpected)

    def __str__(self) -> str:
        rows = [("key", "status", "source shape", "model shape")]
        for key, model_shape in self.model_shapes.items():
            src = self.renamed.get(key, key)
            if key in self.skipped_shape:
                a, b = self.skipped_shape[key]
                status = "shape" if a != b else "layer"
            elif key in self.missing:
                status, src = "missing", None
            else:
                status = "loaded"
            src_shape = "-" if src is None else str(self.source_shapes.get(src, "-"))
            name = key if key not in self.renamed else f"{key} <- {self.renamed[key]}"
            rows.append((name, status, src_shape, str(model_shape)))
        for key in self.unexpected:
            rows.append((key, "unexpected", str(self.source_shapes.get(key, "-")), "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        head = (f"transfer into {self.model_name}: {len(self.loaded)} loaded, {len(self.skipped_shape)} skipped "
                f"(shape), {len(self.missing)} missing, {len(self.unexpected)} unexpected")
        lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        if any(r[1] == "layer" for r in rows):
            lines.append("  (layer: shapes match, but another tensor of the same layer does not fit)")
        return "\n".join([head, *lines])


def transfer(model: Module, source: Mapping[str, Any] | str | os.PathLike, *,
             prefix_map: Mapping[str, str] | None = None,
             strip_prefixes: tuple[str, ...] = ("module.", "_orig_mod."), by_layer: bool = True,
             verbose: bool = False) -> TransferReport:
    """Load every tensor of ``source`` whose (mapped) name and shape match ``model``; report the rest.

    ``source``: a state dict (values: suanli Tensors, NumPy arrays, or anything ``np.asarray`` accepts,
    e.g. CPU torch tensors) or the path of a safetensors file. A source key that is not a model key has
    the ``strip_prefixes`` removed from its front (repeatedly: ``module._orig_mod.fc.weight`` ->
    ``fc.weight``), then the longest matching ``prefix_map`` entry applied (``{"backbone.": "features."}``
    renames ``backbone.0.weight`` to ``features.0.weight``). ``by_layer``: skip every tensor of a layer
    (module) in which one tensor's shape differs. ``verbose`` prints the report.
    """
    if not isinstance(model, Module):
        raise op_error("transfer", f"model must be a suanli.nn.Module, got {type(model).__name__}", cls=TypeError)
    if isinstance(source, (str, os.PathLike)):
        source = _load_file(source)
    if not isinstance(source, Mapping):
        raise op_error("transfer", f"source must be a state dict (name -> tensor) or a safetensors path, got "
                                   f"{type(source).__name__}", hint="pass other_model.state_dict()", cls=TypeError)
    own = model.state_dict()
    report = TransferReport(model_name=type(model).__name__,
                            model_shapes={k: tuple(v.shape) for k, v in own.items()})
    to_load: dict[str, np.ndarray] = {}
    seen: dict[str, str] = {}                                  # model key -> source key that claimed it
    for src_key, value in source.items():
        array = value._data if isinstance(value, Tensor) else np.asarray(value)
        report.source_shapes[src_key] = tuple(array.shape)
        key = _model_key(src_key, own, prefix_map or {}, strip_prefixes)
        if key is None or key in seen:
            report.unexpected.append(src_key)
            continue
        seen[key] = src_key
        if key != src_key:
            report.renamed[key] = src_key
        if tuple(array.shape) != tuple(own[key].shape):
            report.skipped_shape[key] = (tuple(array.shape), tuple(own[key].shape))
        else:
            to_load[key] = array
    if by_layer:                                               # a layer is loaded whole or not at all
        bad_layers = {k.rpartition(".")[0] for k in report.skipped_shape}
        for key in [k for k in to_load if k.rpartition(".")[0] in bad_layers]:
            shape = tuple(to_load.pop(key).shape)
            report.skipped_shape[key] = (shape, shape)
    model.load_state_dict(to_load, strict=False)              # the one place tensors are written
    report.loaded = [k for k in own if k in to_load]
    report.missing = [k for k in own if k not in seen]
    report.skipped_shape = {k: report.skipped_shape[k] for k in own if k in report.skipped_shape}
    if verbose:
        print(report)
    return report


def _model_key(key: str, own: Mapping[str, Any], prefix_map: Mapping[str, str],
               strip_prefixes: tuple[str, ...]) -> str | None:
    """The model key a source key maps to, or None."""
    if key in own and not prefix_map:
        return key
    name = key
    stripped = True
    while stripped:
        stripped = False
        for p in strip_prefixes:
            if p and name.startswith(p) and name not in own:
                name, stripped = name[len(p):], True
    best = max((p for p in prefix_map if name.startswith(p)), key=len, default=None)
    if best is not None:
        name = prefix_map[best] + name[len(best):]
    return name if name in own else None


def _load_file(path: str | os.PathLike) -> Mapping[str, Any]:
    try:
        from ..io import load_file        # imported lazily: suanli.io sits above nn in the stack
    except ImportError as exc:            # pragma: no cover - only while suanli.io is missing
        raise op_error("transfer", "loading from a file needs suanli.io.load_file, which is not available",
                       hint="load the state dict yourself and pass the mapping", cls=ImportError) from exc
    if not os.path.exists(path):
        raise op_error("transfer", f"no such file: {os.fspath(path)!r}", cls=FileNotFoundError)
    return load_file(path)
