"""Native kernels: C source compiled at run time by the system C compiler, cached on disk.

Kernels are single-threaded SIMD loops (``-fopenmp-simd``, no OpenMP runtime): an OpenMP thread
pool spin-waiting between calls was measured to steal both cores from OpenBLAS (a GPT step went
from 0.11 s to 1.5 s).

``kernel(file, symbol)`` compiles ``kernels/<file>.c`` once per (source, compiler, flags) into the
cache directory (``$SUANLI_CACHE_DIR`` or ``~/.cache/suanli``) and returns a Python callable, or
``None`` when no compiler works or ``SUANLI_NATIVE=0`` -- callers then take their NumPy path (and
say so under ``DEBUG=1``). A kernel file may ask for extra flags on its first line:
``/* suanli-flags: -ffast-math */``.

Calling convention: every kernel takes its arrays (C-contiguous, already the right dtype) and then
the element count, e.g. ``gelu_f32(x, out, n)``.

>>> import numpy as np
>>> from suanli import native
>>> gelu = native.kernel("gelu", "gelu_f32")
>>> x = np.array([0.0, 1.0], np.float32)
>>> out = np.empty_like(x)
>>> if gelu is not None: gelu(x, out)
>>> gelu is None or abs(float(out[1]) - 0.8413447) < 1e-6
True
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .._config import debug_note

__all__ = ["kernel", "load", "cache_dir", "enabled", "disabled"]

_KERNELS = Path(__file__).parent / "kernels"
_BASE_FLAGS = (["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno"], ["-O3", "-fopenmp-simd"], ["-O3"])
_RECIPE = "compile-then-link"   # part of the cache key: change it when the build steps change
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}


def enabled() -> bool:
    """False when ``SUANLI_NATIVE=0`` asks for the NumPy paths everywhere."""
    return os.environ.get("SUANLI_NATIVE", "1") != "0"


def cache_dir() -> Path:
    root = os.environ.get("SUANLI_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "suanli")
    return Path(root) / "native"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _extra_flags(source: str) -> list[str]:
    first = source.splitlines()[0] if source else ""
    match = re.match(r"/\*\s*suanli-flags:(.*)\*/", first)
    return match.group(1).split() if match else []


def _compile(name: str, source: str, cc: str) -> ctypes.CDLL | None:
    out_dir = cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    for base in _BASE_FLAGS:
        flags = base + _extra_flags(source)
        key = hashlib.sha256("\0".join([_RECIPE, source, cc, *flags]).encode()).hexdigest()[:16]
        target = out_dir / f"{name}-{key}.so"
        if not target.exists():
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
            os.close(fd)
            src, obj = Path(tmp).with_suffix(".c"), Path(tmp).with_suffix(".o")
            src.write_text(source)
            try:
                # compile and link separately: linking with -ffast-math would pull in crtfastmath,
                # which turns on flush-to-zero for the whole process when the library loads
                steps = ([cc, *flags, "-fPIC", "-c", "-o", str(obj), str(src)],
                         [cc, "-shared", "-o", tmp, str(obj), "-lm"])
                proc = None
                for cmd in steps:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                    if proc.returncode != 0:
                        break
                if proc is None or proc.returncode != 0:
                    debug_note(1, f"native: {cc} {' '.join(flags)} failed for {name}: "
                                  f"{proc.stderr[-300:] if proc else ''}")
                    continue
                os.replace(tmp, target)          # atomic: a concurrent process sees all or nothing
            except (OSError, subprocess.SubprocessError) as exc:
                debug_note(1, f"native: compiling {name} failed ({exc})")
                continue
            finally:
                src.unlink(missing_ok=True)
                obj.unlink(missing_ok=True)
                if os.path.exists(tmp):
                    os.unlink(tmp)
        try:
            return ctypes.CDLL(str(target))
        except OSError as exc:
            debug_note(1, f"native: loading {target} failed ({exc})")
    return None


def load(name: str) -> ctypes.CDLL | None:
    """The compiled library of ``kernels/<name>.c``, or ``None`` if native kernels are unavailable."""
    with _lock:
        if name in _loaded:
            return _loaded[name]
        lib = None
        if not enabled():
            debug_note(1, f"native: SUANLI_NATIVE=0, {name} uses the NumPy path")
        else:
            cc = _compiler()
            if cc is None:
                debug_note(1, f"native: no C compiler found, {name} uses the NumPy path")
            else:
                lib = _compile(name, (_KERNELS / f"{name}.c").read_text(), cc)
        _loaded[name] = lib
        return lib


@functools.lru_cache(maxsize=None)
def kernel(name: str, symbol: str) -> Callable[..., None] | None:
    """``symbol`` of ``kernels/<name>.c`` as ``f(*arrays)`` (the element count of the first array is
    appended), or ``None``."""
    lib = load(name)
    if lib is None:
        return None
    fn = getattr(lib, symbol)

    def call(*arrays: np.ndarray) -> None:
        fn(*[ctypes.c_void_p(a.ctypes.data) for a in arrays], ctypes.c_long(arrays[0].size))

    call.__name__ = symbol
    return call


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the NumPy paths inside the block (tests compare both paths with it)."""
    old = os.environ.get("SUANLI_NATIVE")
    os.environ["SUANLI_NATIVE"] = "0"
    _reset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SUANLI_NATIVE", None)
        else:
            os.environ["SUANLI_NATIVE"] = old
        _reset()


def _reset() -> None:
    with _lock:
        _loaded.clear()
    kernel.cache_clear()
