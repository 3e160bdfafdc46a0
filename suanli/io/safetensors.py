"""Our own reader and writer of the safetensors format (no pickle, no eval, no dependency).

Layout of a file (https://github.com/huggingface/safetensors)::

    8 bytes    N, the header length, unsigned little-endian
    N bytes    UTF-8 JSON: {"__metadata__": {str: str},
                            "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
               padded with spaces so that the data starts at an 8-byte boundary
    rest       the byte buffer; each tensor is C-ordered little-endian bytes at [begin, end) of it

Every byte of the buffer belongs to exactly one tensor (no gaps, no overlaps), which the reader checks,
together with everything else a damaged or hostile file could get wrong; errors name the file and the
problem. Files we write are read by the ``safetensors`` library and vice versa (tested).

>>> import os, tempfile, numpy as np, suanli
>>> from suanli.io import save_file, load_file, read_metadata
>>> path = os.path.join(tempfile.mkdtemp(), "weights.safetensors")
>>> save_file({"w": suanli.ones(2, 3), "step": np.array(7)}, path, metadata={"note": "demo"})
>>> loaded = load_file(path)
>>> loaded["w"].shape, loaded["w"].dtype, loaded["step"].item()
((2, 3), dtype('float32'), 7)
>>> read_metadata(path)
{'note': 'demo'}
"""
from __future__ import annotations

import io
import json
import os
import struct
from typing import IO, Any, Mapping, NamedTuple

import ml_dtypes
import numpy as np

from .. import dtypes as _dt
from ..creation import from_numpy
from ..errors import SuanliError
from ..tensor import Tensor
from .atomic import atomic_write

__all__ = ["save_file", "load_file", "load_numpy", "read_metadata", "read_header", "save", "load",
           "TensorInfo", "SafetensorsError", "DTYPES"]

#: safetensors dtype name -> NumPy dtype (all little-endian on disk)
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES: dict[np.dtype, str] = {d.newbyteorder("="): name for name, d in DTYPES.items()}
# the reference writer's file order: dtypes by this rank, descending (so larger itemsizes first), then name
_RANK = {name: i for i, name in enumerate(["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                                           "BF16", "I32", "U32", "F32", "F64", "I64", "U64"])}

_HEADER_LIMIT = 100_000_000     # the reference implementation refuses larger headers, so do we
_ALIGN = 8


class SafetensorsError(SuanliError, ValueError):
    """A file that is not valid safetensors, or values that cannot be written as safetensors."""


class TensorInfo(NamedTuple):
    """One header entry: dtype name (``'F32'``...), shape, and ``[begin, end)`` in the byte buffer."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _fail(source: str, problem: str, hint: str | None = None) -> SafetensorsError:
    msg = f"safetensors: {source}: {problem}"
    if hint:
        msg += f"\n  help: {hint}"
    return SafetensorsError(msg)


# ---------------------------------------------------------------------------------------- writing
def _as_array(name: Any, value: Any) -> np.ndarray:
    if not isinstance(name, str):
        raise SafetensorsError(f"safetensors: tensor names must be str, got {name!r} "
                               f"({type(name).__name__})")
    if name == "__metadata__":
        raise SafetensorsError("safetensors: '__metadata__' is reserved for the metadata; "
                               "rename that tensor")
    if isinstance(value, Tensor):
        arr = np.asarray(value)        # the storage (no copy), even when it requires grad
    elif isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
    else:
        raise SafetensorsError(f"safetensors: tensor {name!r} must be a suanli.Tensor or a NumPy array, "
                               f"got {type(value).__name__}")
    key = arr.dtype.newbyteorder("=") if arr.dtype.byteorder in "<>" else arr.dtype
    if key not in _NAMES:
        raise SafetensorsError(f"safetensors: tensor {name!r} has dtype {arr.dtype}, which safetensors "
                               f"cannot store; supported: {sorted(str(d) for d in _NAMES)}")
    target = DTYPES[_NAMES[key]]
    if arr.dtype != target:                      # big-endian input -> little-endian bytes on disk
        arr = arr.astype(target)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")   # (ascontiguousarray makes 0-d 1-d)


def _check_metadata(metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise SafetensorsError(f"safetensors: metadata must be a dict of str -> str, got "
                               f"{type(metadata).__name__}")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SafetensorsError(f"safetensors: metadata must map str -> str, but {k!r} -> {v!r} "
                                   f"({type(v).__name__}); encode other values first, e.g. json.dumps(v)")
    return dict(metadata)


def _prepare(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None
             ) -> tuple[bytes, list[np.ndarray]]:
    """Header bytes (length prefix included) and the arrays in file order."""
    if not isinstance(tensors, Mapping):
        raise SafetensorsError(f"safetensors: expected a dict of name -> tensor, got {type(tensors).__name__}")
    arrays = {name: _as_array(name, value) for name, value in tensors.items()}
    # the reference's order (larger itemsizes first, then by name): every tensor then starts at a
    # multiple of its own itemsize, and our files are byte-identical to the reference writer's
    order = sorted(arrays, key=lambda n: (-_RANK[_NAMES[arrays[n].dtype.newbyteorder("=")]], n))
    header: dict[str, Any] = {}
    meta = _check_metadata(metadata)
    if meta:
        header["__metadata__"] = meta
    offset = 0
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": _NAMES[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % _ALIGN)
    return struct.pack("<Q", len(raw)) + raw, [arrays[n] for n in order]


def _write_tensor_bytes(f: IO[bytes], array: np.ndarray) -> None:
    """Write one array's bytes (a module-level seam so tests can interrupt a write half way)."""
    f.write(array.reshape(-1).view(np.uint8).data)


def _write(f: IO[bytes], tensors: Mapping[str, Any], metadata: Mapping[str, str] | None) -> None:
    header, arrays = _prepare(tensors, metadata)
    f.write(header)
    for a in arrays:
        _write_tensor_bytes(f, a)


def save_file(tensors: Mapping[str, Tensor | np.ndarray], path: str | os.PathLike[str],
              metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (name -> Tensor or ndarray) to ``path`` atomically, with optional str metadata."""
    header, arrays = _prepare(tensors, metadata)     # validate everything before touching the disk
    with atomic_write(path, "wb") as f:
        f.write(header)
        for a in arrays:
            _write_tensor_bytes(f, a)


def save(tensors: Mapping[str, Tensor | np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (like ``safetensors.numpy.save``).

    >>> import numpy as np
    >>> data = save({"x": np.arange(3, dtype=np.int32)})
    >>> n = int.from_bytes(data[:8], "little")      # header length, padded to a multiple of 8
    >>> n % 8, len(data) == 8 + n + 3 * 4
    (0, True)
    >>> load(data)["x"].tolist()
    [0, 1, 2]
    """
    buf = io.BytesIO()
    _write(buf, tensors, metadata)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------- reading
def _parse_header(f: IO[bytes], size: int, source: str) -> tuple[dict[str, str], dict[str, TensorInfo], int]:
    """Read and validate the header; returns (metadata, infos in buffer order, data start offset)."""
    if size < 8:
        raise _fail(source, f"file too short ({size} bytes): a safetensors file starts with an 8-byte "
                            f"header length", "the file is empty or truncated; write it again")
    (n,) = struct.unpack("<Q", f.read(8))
    if 8 + n > size:
        raise _fail(source, f"header length {n} exceeds the file size ({size} bytes, so at most "
                            f"{size - 8} header bytes)",
                    "the file is truncated, or it is not a safetensors file")
    if n > _HEADER_LIMIT:
        raise _fail(source, f"header length {n} is larger than the limit of {_HEADER_LIMIT} bytes")
    raw = f.read(n)
    if len(raw) != n:
        raise _fail(source, f"could read only {len(raw)} of the {n} header bytes (file truncated?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(source, f"header is not valid UTF-8 ({exc})", "the file is corrupt") from None
    if not text.startswith("{"):
        raise _fail(source, f"header does not start with '{{' (starts with {text[:20]!r}): not JSON",
                    "the file is corrupt or not a safetensors file")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise _fail(source, f"header names {dup} more than once")
        return dict(pairs)

    try:
        header = json.loads(text, object_pairs_hook=no_duplicates,
                            parse_constant=lambda c: _raise(_fail(source, f"header contains {c}")))
    except json.JSONDecodeError as exc:
        raise _fail(source, f"header is not valid JSON ({exc})", "the file is corrupt") from None
    except RecursionError:
        raise _fail(source, "header JSON is nested too deeply", "the file is corrupt or hostile") from None
    if not isinstance(header, dict):
        raise _fail(source, f"header must be a JSON object, got {type(header).__name__}")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _fail(source, "'__metadata__' must be an object mapping str -> str")

    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        infos[name] = _check_entry(source, name, entry)
    _check_offsets(source, infos, size - 8 - n)
    order = sorted(infos, key=lambda k: (infos[k].begin, infos[k].end))
    return metadata, {k: infos[k] for k in order}, 8 + n


def _raise(exc: Exception) -> Any:
    raise exc


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_entry(source: str, name: str, entry: Any) -> TensorInfo:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise _fail(source, f"tensor {name!r}: header entry must be an object with 'dtype', 'shape' "
                            f"and 'data_offsets', got {entry!r}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPES:
        raise _fail(source, f"tensor {name!r}: unknown dtype {dtype!r}; suanli reads {sorted(DTYPES)}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _fail(source, f"tensor {name!r}: shape must be a list of non-negative ints, got {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]):
        raise _fail(source, f"tensor {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end, "
                            f"got {offsets!r}")
    numel = 1
    for d in shape:
        numel *= d
    nbytes = numel * DTYPES[dtype].itemsize
    if nbytes != offsets[1] - offsets[0]:
        raise _fail(source, f"tensor {name!r}: shape {shape} x {dtype} ({DTYPES[dtype].itemsize} bytes "
                            f"each) needs {nbytes} bytes, but data_offsets {offsets} span "
                            f"{offsets[1] - offsets[0]}")
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])


def _check_offsets(source: str, infos: dict[str, TensorInfo], buffer_len: int) -> None:
    """Tensors must tile the byte buffer exactly: no gap, no overlap, nothing past its end."""
    expected = 0
    for name, info in sorted(infos.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if info.end > buffer_len:
            raise _fail(source, f"tensor {name!r}: data_offsets [{info.begin}, {info.end}] run past the end "
                                f"of the data buffer ({buffer_len} bytes)",
                        "the file is truncated; write it again")
        if info.begin < expected:
            raise _fail(source, f"tensor {name!r}: data_offsets [{info.begin}, {info.end}] overlap the "
                                f"previous tensor, which ends at {expected}")
        if info.begin > expected:
            raise _fail(source, f"tensor {name!r}: data_offsets [{info.begin}, {info.end}] leave a gap of "
                                f"{info.begin - expected} unused bytes at {expected}")
        expected = info.end
    if expected != buffer_len:
        raise _fail(source, f"the tensors cover {expected} bytes but the data buffer has {buffer_len}: "
                            f"{buffer_len - expected} trailing bytes belong to no tensor",
                    "the file is corrupt (or was appended to)")


def _read_arrays(f: IO[bytes], size: int, source: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    metadata, infos, start = _parse_header(f, size, source)
    arrays: dict[str, np.ndarray] = {}
    for name, info in infos.items():
        arr = np.empty(info.shape, DTYPES[info.dtype])      # on-disk (little-endian) layout
        if info.end > info.begin:
            f.seek(start + info.begin)
            got = f.readinto(arr.reshape(-1).view(np.uint8).data)
            if got != info.end - info.begin:
                raise _fail(source, f"tensor {name!r}: could read only {got} of {info.end - info.begin} "
                                    f"bytes (the file changed or is truncated)")
        if not arr.dtype.isnative:                          # big-endian host
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if info.dtype == "BOOL" and arr.size and int(arr.view(np.uint8).max()) > 1:
            raise _fail(source, f"tensor {name!r}: BOOL bytes must be 0 or 1")
        arrays[name] = arr
    return arrays, metadata


def _open(path: str | os.PathLike[str]) -> tuple[IO[bytes], int, str]:
    source = os.fspath(path)
    try:
        f = open(source, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"safetensors: {source}: no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"safetensors: {source}: is a directory, expected a .safetensors file") from None
    return f, os.fstat(f.fileno()).st_size, source


def load_numpy(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every tensor of ``path`` as a NumPy array (each in its own fresh, aligned memory)."""
    f, size, source = _open(path)
    with f:
        return _read_arrays(f, size, source)[0]


def _tensors(arrays: dict[str, np.ndarray], source: str) -> dict[str, Tensor]:
    for name, a in arrays.items():
        if a.dtype not in _dt.ALL:
            raise _fail(source, f"tensor {name!r} has dtype {_NAMES[a.dtype]}, which suanli tensors do not "
                                f"support (they hold {[str(d) for d in _dt.ALL]})",
                        "read it with suanli.io.load_numpy(path) and convert")
    return {k: from_numpy(v) for k, v in arrays.items()}


def load_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read every tensor of ``path`` as a :class:`suanli.Tensor` (file order)."""
    return _tensors(load_numpy(path), os.fspath(path))


def load(data: bytes, *, as_numpy: bool = False) -> dict[str, Any]:
    """Parse the bytes of a safetensors file (like ``safetensors.numpy.load``)."""
    arrays, _ = _read_arrays(io.BytesIO(data), len(data), "<bytes>")
    return arrays if as_numpy else _tensors(arrays, "<bytes>")


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, TensorInfo]]:
    """``(metadata, {name: TensorInfo})`` without reading tensor data (the file is still validated)."""
    f, size, source = _open(path)
    with f:
        metadata, infos, _ = _parse_header(f, size, source)
    return metadata, infos


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` dict of ``path`` (empty when the file has none)."""
    return read_header(path)[0]
