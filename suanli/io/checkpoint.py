"""Checkpoints: model + optimizer + scheduler + scaler + RNG + epoch/step in one safetensors file.

Layout. Every tensor of every state dict is a safetensors tensor, named by its path in the state dict
(``model.fc1.weight``, ``optimizer.state.0.exp_avg``, ...). Everything else -- the structure around the
tensors, optimizer ``param_groups`` and scalar state, scheduler and scaler state, RNG states, epoch,
step, user metadata -- is JSON in ``__metadata__`` (one string per section), where each tensor appears
as a reference ``{"__tensor__": "<name>"}``. JSON cannot say "tuple", "int dict key" or "ndarray", so
those are tagged too (``{"__tuple__": [...]}``, ``{"__items__": [[key, value], ...]}``), and a state
dict comes back exactly as it went in. Nothing is pickled; a checkpoint is also a plain safetensors
file that any safetensors reader can open.

Objects are duck-typed: anything with ``state_dict()`` / ``load_state_dict()`` (a plain mapping is also
accepted when saving). Writing is atomic (:mod:`suanli.io.atomic`).

>>> import os, tempfile, suanli
>>> from suanli import nn
>>> from suanli.io import save_checkpoint, load_checkpoint
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
>>> model = nn.Linear(3, 2)
>>> save_checkpoint(path, model=model, epoch=4, step=100, metadata={"lr": 0.1})
>>> fresh = nn.Linear(3, 2)
>>> info = load_checkpoint(path, model=fresh)
>>> info["epoch"], info["step"], info["metadata"]
(4, 100, {'lr': 0.1})
>>> bool((fresh.weight == model.weight).all())
True
"""
from __future__ import annotations

import inspect
import json
import math
import os
import random as _pyrandom
from typing import Any, Mapping

import numpy as np

from .. import random as _random
from ..creation import from_numpy
from ..errors import SuanliError
from ..tensor import Tensor
from .safetensors import SafetensorsError, load_numpy, read_metadata, save_file

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_info", "CheckpointError",
           "FORMAT", "FORMAT_VERSION"]

FORMAT = "suanli.checkpoint"
FORMAT_VERSION = 1
_OBJECTS = ("model", "optimizer", "scheduler", "scaler")
_TAGS = ("__tensor__", "__ndarray__", "__tuple__", "__items__", "__float__")


class CheckpointError(SuanliError, ValueError):
    """A checkpoint that cannot be written or read back (corrupt, incomplete, wrong version...)."""


def _err(path: str, problem: str, hint: str | None = None) -> CheckpointError:
    msg = f"checkpoint {path}: {problem}"
    if hint:
        msg += f"\n  help: {hint}"
    return CheckpointError(msg)


# --------------------------------------------------------------------------------- encode / decode
class _Encoder:
    """Turns a state dict into JSON-able data plus a flat dict of arrays (the tensors)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def _store(self, prefix: str, array: np.ndarray) -> str:
        name, k = prefix, 1
        while name in self.arrays:          # e.g. {"a.b": t} and {"a": {"b": t}} in one checkpoint
            k += 1
            name = f"{prefix}#{k}"
        self.arrays[name] = array
        return name

    def encode(self, obj: Any, prefix: str) -> Any:
        if isinstance(obj, Tensor):
            ref: dict[str, Any] = {"__tensor__": self._store(prefix, np.asarray(obj))}
            if obj.requires_grad:
                ref["requires_grad"] = True
            return ref
        if isinstance(obj, np.ndarray):
            return {"__ndarray__": self._store(prefix, obj)}
        if isinstance(obj, np.generic):
            return {"__ndarray__": self._store(prefix, np.asarray(obj)), "scalar": True}
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            # JSON has no inf/nan; Python's json would write non-standard tokens other readers reject
            return obj if math.isfinite(obj) else {"__float__": repr(obj)}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v, f"{prefix}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.encode(v, f"{prefix}.{i}") for i, v in enumerate(obj)]
        if isinstance(obj, Mapping):
            if all(isinstance(k, str) and k not in _TAGS for k in obj):
                return {k: self.encode(v, f"{prefix}.{k}") for k, v in obj.items()}
            return {"__items__": [[self.encode(k, f"{prefix}.key"), self.encode(v, f"{prefix}.{k}")]
                                  for k, v in obj.items()]}
        raise CheckpointError(f"save_checkpoint: cannot store {prefix!r} of type {type(obj).__name__}; "
                              f"checkpoint values must be tensors, arrays, numbers, strings, None, or "
                              f"lists/tuples/dicts of them")


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], path: str) -> None:
        self.arrays, self.path, self.used = arrays, path, set()

    def _array(self, name: Any, section: str) -> np.ndarray:
        if not isinstance(name, str) or name not in self.arrays:
            raise _err(self.path, f"section {section!r} refers to tensor {name!r}, which is not in the file",
                       "the checkpoint is corrupt or was edited; save it again")
        self.used.add(name)
        return self.arrays[name]

    def decode(self, obj: Any, section: str) -> Any:
        if isinstance(obj, list):
            return [self.decode(v, section) for v in obj]
        if not isinstance(obj, dict):
            return obj
        if "__tensor__" in obj:
            t = from_numpy(self._array(obj["__tensor__"], section))
            if obj.get("requires_grad"):
                t.requires_grad_(True)
            return t
        if "__ndarray__" in obj:
            a = self._array(obj["__ndarray__"], section)
            return a[()] if obj.get("scalar") else a
        if "__tuple__" in obj:
            return tuple(self.decode(v, section) for v in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__items__" in obj:
            return {_hashable(self.decode(k, section)): self.decode(v, section) for k, v in obj["__items__"]}
        return {k: self.decode(v, section) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key


# --------------------------------------------------------------------------------- RNG states
def _rng_state() -> dict[str, Any]:
    """suanli's default generator, Python's ``random`` and NumPy's legacy global state (all JSON-able)."""
    np_state = np.random.get_state(legacy=False)
    return {
        "suanli": _random.get_rng_state(),
        "python": _pyrandom.getstate(),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": [int(v) for v in np_state["state"]["key"]], "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
    }


def _set_rng_state(state: Mapping[str, Any], path: str) -> None:
    try:
        if "suanli" in state:
            _random.set_rng_state(state["suanli"])
        if "python" in state:
            version, internal, gauss = state["python"]
            _pyrandom.setstate((version, tuple(internal), gauss))
        if "numpy" in state:
            s = state["numpy"]
            np.random.set_state({"bit_generator": s["bit_generator"],
                                 "state": {"key": np.asarray(s["key"], dtype=np.uint32), "pos": s["pos"]},
                                 "has_gauss": s["has_gauss"], "gauss": s["gauss"]})
    except (KeyError, TypeError, ValueError) as exc:
        raise _err(path, f"the saved RNG state is malformed ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------- save
def _state_of(obj: Any, section: str) -> Any:
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        return obj
    raise CheckpointError(f"save_checkpoint: {section}= must have a state_dict() method (or be a mapping), "
                          f"got {type(obj).__name__}")


def save_checkpoint(path: str | os.PathLike[str], *, model: Any = None, optimizer: Any = None,
                    scheduler: Any = None, scaler: Any = None, epoch: int | None = None,
                    step: int | None = None, metadata: Any = None, rng: bool = True,
                    extra: Mapping[str, Any] | None = None) -> None:
    """Write one checkpoint file atomically.

    ``model``/``optimizer``/``scheduler``/``scaler`` are objects with ``state_dict()`` (or state dicts
    themselves). ``extra`` maps more names to such objects, e.g. ``{"loader": dataloader}`` to resume a
    shuffled epoch in the middle. ``metadata`` is any JSON-like value of yours (numbers, strings,
    lists, dicts; tensors allowed too). ``rng=True`` stores the state of suanli's default generator,
    Python's ``random`` and NumPy's global legacy generator, so a resumed run draws the same numbers.
    """
    arrays: dict[str, np.ndarray] = {}
    enc = _Encoder(arrays)
    sections: dict[str, Any] = {}
    for section, obj in zip(_OBJECTS, (model, optimizer, scheduler, scaler)):
        if obj is not None:
            sections[section] = enc.encode(_state_of(obj, section), section)
    for name, obj in (extra or {}).items():
        if not isinstance(name, str) or not name or "." in name:
            raise CheckpointError(f"save_checkpoint: extra= keys must be non-empty str without '.', got {name!r}")
        sections[f"extra.{name}"] = enc.encode(_state_of(obj, name) if hasattr(obj, "state_dict") else obj,
                                               f"extra.{name}")
    if rng:
        sections["rng"] = _rng_state()
    for section, value in (("epoch", epoch), ("step", step), ("metadata", metadata)):
        if value is not None:
            sections[section] = enc.encode(value, section)

    header = {"suanli.format": FORMAT, "suanli.format_version": str(FORMAT_VERSION),
              "suanli.sections": json.dumps(list(sections))}
    for section, value in sections.items():
        header[section] = json.dumps(_encode_rng(value) if section == "rng" else value,
                                     separators=(",", ":"), allow_nan=False)
    save_file(arrays, path, metadata=header)


def _encode_rng(state: dict[str, Any]) -> dict[str, Any]:
    # Python's random state is (version, tuple of 625 ints, gauss_next); store as lists
    out = dict(state)
    version, internal, gauss = state["python"]
    out["python"] = [version, list(internal), gauss]
    return out


# --------------------------------------------------------------------------------- load
def _read(path: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, np.ndarray], list[str], str]:
    src = os.fspath(path)
    try:
        meta = read_metadata(src)
    except SafetensorsError as exc:
        raise _err(src, f"not a readable checkpoint:\n{exc}") from None
    fmt = meta.get("suanli.format")
    if fmt != FORMAT:
        raise _err(src, f"not a suanli checkpoint (metadata 'suanli.format' is {fmt!r}, expected {FORMAT!r})",
                   "for a plain safetensors file use suanli.io.load_file(path); for model weights only "
                   "use model.load_state_dict(suanli.io.load_file(path))")
    version = meta.get("suanli.format_version", "")
    if not version.isdigit():
        raise _err(src, f"metadata 'suanli.format_version' is {version!r}, expected an integer")
    if int(version) != FORMAT_VERSION:
        newer = int(version) > FORMAT_VERSION
        raise _err(src, f"checkpoint format version {version}, but this suanli reads version {FORMAT_VERSION}",
                   "upgrade suanli to read it" if newer else "re-save it with the suanli that wrote it")
    try:
        sections = json.loads(meta["suanli.sections"])
    except (KeyError, json.JSONDecodeError):
        raise _err(src, "metadata 'suanli.sections' is missing or not JSON (the checkpoint is corrupt)") from None
    missing = [s for s in sections if s not in meta]
    if missing:
        raise _err(src, f"sections {missing} are listed but missing from the metadata (the checkpoint is corrupt)")
    try:
        arrays = load_numpy(src)
    except SafetensorsError as exc:
        raise _err(src, f"not a readable checkpoint:\n{exc}") from None
    return meta, arrays, sections, src


def _section(meta: dict[str, str], name: str, dec: _Decoder) -> Any:
    try:
        raw = json.loads(meta[name])
    except json.JSONDecodeError as exc:
        raise _err(dec.path, f"section {name!r} is not valid JSON ({exc}); the checkpoint is corrupt") from None
    return dec.decode(raw, name)


def read_checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Every section of a checkpoint decoded (state dicts, ``rng``, ``epoch``...), nothing applied.

    >>> import os, tempfile, suanli
    >>> path = os.path.join(tempfile.mkdtemp(), "c.safetensors")
    >>> save_checkpoint(path, model={"w": suanli.zeros(2)}, step=3, rng=False)
    >>> info = read_checkpoint_info(path)
    >>> sorted(info), info["model"]["w"].shape
    (['format_version', 'model', 'step'], (2,))
    """
    meta, arrays, sections, src = _read(path)
    dec = _Decoder(arrays, src)
    out: dict[str, Any] = {"format_version": int(meta["suanli.format_version"])}
    for s in sections:
        out[s] = _section(meta, s, dec)
    unused = sorted(set(arrays) - dec.used)
    if unused:
        raise _err(src, f"tensors {unused[:5]}{'...' if len(unused) > 5 else ''} belong to no section "
                        f"(the checkpoint is corrupt or was edited)")
    return out


def _call_load(obj: Any, state: Any, section: str, strict: bool) -> Any:
    fn = getattr(obj, "load_state_dict", None)
    if not callable(fn):
        raise CheckpointError(f"load_checkpoint: {section}= must have a load_state_dict() method, got "
                              f"{type(obj).__name__}")
    try:
        takes_strict = "strict" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_strict = False
    return fn(state, strict=strict) if takes_strict else fn(state)


def load_checkpoint(path: str | os.PathLike[str], *, model: Any = None, optimizer: Any = None,
                    scheduler: Any = None, scaler: Any = None, strict: bool = True,
                    restore_rng: bool = True, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into the objects given.

    Each object gets ``load_state_dict(state)`` (the model also ``strict=strict``). With ``strict=True``
    an object whose section the checkpoint lacks is an error; with ``strict=False`` it is skipped and
    named in ``result["skipped"]``. ``restore_rng=True`` restores the random generators saved with it.

    Returns a dict with ``epoch``, ``step``, ``metadata`` (None when not saved), ``format_version``,
    the decoded state dicts ``model``/``optimizer``/``scheduler``/``scaler``/``extra`` (None when not
    saved), ``model_keys`` (what the model's ``load_state_dict`` returned), ``rng_restored`` and
    ``skipped``.
    """
    info = read_checkpoint_info(path)
    src = os.fspath(path)
    result: dict[str, Any] = {"epoch": info.get("epoch"), "step": info.get("step"),
                              "metadata": info.get("metadata"), "format_version": info["format_version"],
                              "model_keys": None, "rng_restored": False, "skipped": []}
    for section in _OBJECTS:
        result[section] = info.get(section)
    result["extra"] = {k.split(".", 1)[1]: v for k, v in info.items() if k.startswith("extra.")}

    targets = [(s, o) for s, o in zip(_OBJECTS, (model, optimizer, scheduler, scaler)) if o is not None]
    targets += [(f"extra.{k}", o) for k, o in (extra or {}).items()]
    present = [s for s in info if s not in ("format_version",)]
    for section, obj in targets:
        if section not in info:
            if strict:
                raise _err(src, f"has no {section!r} section, but {section.split('.')[-1]}= was given "
                                f"(sections present: {present})",
                           "pass strict=False to load the sections that are there")
            result["skipped"].append(section)
            continue
        out = _call_load(obj, info[section], section, strict)
        if section == "model":
            result["model_keys"] = out
    if restore_rng and "rng" in info:
        _set_rng_state(info["rng"], src)
        result["rng_restored"] = True
    return result
