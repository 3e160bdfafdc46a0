"""Native kernels: C source compiled at run time by the system C compiler, cached on disk.

Kernels are single-threaded SIMD loops (``-fopenmp-simd``, no OpenMP runtime): an OpenMP thread
pool spin-waiting between calls was measured to steal both cores from OpenBLAS (a GPT step went
from 0.11 s to 1.5 s).

``kernel(file, symbol)`` compiles ``kernels/<file>.c`` once per (source, compiler, flags) into the
cache directory (``$SUANLI_CACHE_DIR`` or ``~/.cache/suanli``) and returns a Python callable, or
``None`` when no compiler works or ``SUANLI_NATIVE=0`` -- callers then take their NumPy path (and
say so under ``DEBUG=1``). A kernel file may ask for extra flags on its first line:
``/* suanli-flags: -ffast-math */``.

``compile_source(name, source, openmp=...)`` builds generated C (``suanli.compiler.codegen``) the
same way, with the exact flags asked for: a failed build (bad flags, missing headers) warns once,
naming the compiler command, and returns ``None``. ``SUANLI_CFLAGS`` appends flags to those builds.
OpenMP libraries are loaded with ``OMP_WAIT_POLICY=passive`` (unless the user set it): libgomp reads
it once when it loads, and its default spin-wait between parallel regions stole the cores OpenBLAS
needed (see ``docs/design.md``).

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
import shlex
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .._config import debug_note

__all__ = ["kernel", "load", "compile_source", "default_flags", "compiler", "cache_dir", "enabled",
           "disabled", "default_threads", "address", "KERNEL_SUFFIX", "openblas_libs", "blas_threads"]

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
    cc = os.environ.get("CC")
    if cc:                                   # CC=/nonexistent means: no compiler here
        return shutil.which(shlex.split(cc)[0]) and cc
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def compiler() -> str | None:
    """The C compiler command native code is built with (``$CC`` or cc/gcc/clang), or ``None``."""
    return _compiler()


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    """One compiler invocation (a seam: tests count the calls to prove cache hits)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


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
                    proc = _run(cmd)
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


def default_flags(openmp: bool = False) -> list[str]:
    """Flags of :func:`compile_source`: ``-O3 -march=native``, no errno (lets loops vectorize), no FMA
    contraction (so ``a * b + c`` rounds twice, as NumPy does), OpenMP if asked, then ``$SUANLI_CFLAGS``."""
    flags = ["-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off"]
    if openmp:
        flags.append("-fopenmp")
    return flags + shlex.split(os.environ.get("SUANLI_CFLAGS", ""))


_built: dict[str, ctypes.CDLL | None] = {}      # cache key -> library (None: that build failed)


def compile_source(name: str, source: str, *, flags: list[str] | None = None, openmp: bool = False,
                   libs: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """Compile ``source`` into a shared library (cached on disk by a hash of source, compiler and
    flags) and load it; ``None`` when native code is off, no compiler exists, or the build fails.

    A failed build warns once (``RuntimeWarning`` naming the command and ``SUANLI_NATIVE=0``);
    ``SUANLI_NATIVE=0`` and a missing compiler are notes under ``DEBUG=1``.

    >>> from suanli import native
    >>> lib = native.compile_source("doc_twice", "double twice(double x) { return 2 * x; }")
    >>> import ctypes
    >>> if lib is not None: lib.twice.restype, lib.twice.argtypes = ctypes.c_double, [ctypes.c_double]
    >>> lib is None or lib.twice(1.5) == 3.0
    True
    """
    if not enabled():
        debug_note(1, f"native: SUANLI_NATIVE=0, {name} uses the NumPy path")
        return None
    cc = _compiler()
    if cc is None:
        debug_note(1, f"native: no C compiler found (CC={os.environ.get('CC', '')!r}), {name} uses the NumPy path")
        return None
    flags = default_flags(openmp) if flags is None else list(flags)
    link = (["-fopenmp"] if openmp else []) + [f"-l{lib}" for lib in libs] + ["-lm"]
    key = hashlib.sha256("\0".join([_RECIPE, _host(), source, cc, *flags, "|", *link]).encode()).hexdigest()[:16]
    with _lock:
        if key in _built:
            return _built[key]
        out_dir = cache_dir()
        target = out_dir / f"{name}-{key}.so"
        lib = None
        if target.exists() or _build(name, source, cc, flags, link, target):
            lib = _load_library(target, openmp)
        _built[key] = lib
        return lib


@functools.lru_cache(maxsize=1)
def _host() -> str:
    """The CPU's model and feature flags: ``-march=native`` code from one CPU may not run on another
    that shares the cache directory."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    import platform
    return platform.machine() + "".join(lines)


def _build(name: str, source: str, cc: str, flags: list[str], link: list[str], target: Path) -> bool:
    """Compile then link into ``target`` atomically; warn (once per source + flags) on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    src, obj = Path(tmp).with_suffix(".c"), Path(tmp).with_suffix(".o")
    cc_words = shlex.split(cc)
    steps = ([*cc_words, *flags, "-fPIC", "-c", "-o", str(obj), str(src)],
             [*cc_words, "-shared", "-o", tmp, str(obj), *link])
    try:
        src.write_text(source)
        for cmd in steps:
            try:
                proc = _run(cmd)
            except (OSError, subprocess.SubprocessError) as exc:
                failure = str(exc)
            else:
                failure = "" if proc.returncode == 0 else f"exit status {proc.returncode}: {proc.stderr.strip()[-600:]}"
            if failure:
                warnings.warn(f"native: building {name} failed; `{shlex.join(cmd)}` gave {failure}\n"
                              f"suanli falls back to its NumPy implementation (same results, slower). "
                              f"Fix the compiler setup ($CC, $SUANLI_CFLAGS) or set SUANLI_NATIVE=0 to "
                              f"disable native code.", RuntimeWarning, stacklevel=4)
                return False
        os.replace(tmp, target)                  # atomic: a concurrent process sees all or nothing
        return True
    finally:
        src.unlink(missing_ok=True)
        obj.unlink(missing_ok=True)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_library(path: Path, openmp: bool) -> ctypes.CDLL | None:
    # libgomp reads OMP_WAIT_POLICY once, when it loads: passive workers sleep between parallel
    # regions instead of spinning on the cores OpenBLAS is about to use. Set only around the load
    # (the user's own setting wins) so that libraries loaded later see the environment unchanged.
    set_policy = openmp and not os.environ.get("OMP_WAIT_POLICY")
    if set_policy:
        os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        return ctypes.CDLL(str(path))
    except OSError as exc:
        warnings.warn(f"native: loading {path} failed ({exc}); suanli falls back to NumPy. "
                      "Set SUANLI_NATIVE=0 to disable native code.", RuntimeWarning, stacklevel=4)
        return None
    finally:
        if set_policy:
            del os.environ["OMP_WAIT_POLICY"]


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
        _built.clear()
    kernel.cache_clear()


# ============================================================================ threads and OpenBLAS
# the suffix of a kernel's float32 / float64 variant (``gemm_f32``, ``conv_nchwc_f64_b16``, ...)
KERNEL_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}

_char_view = ctypes.c_char.from_buffer
_addressof = ctypes.addressof


def address(a: np.ndarray) -> int:
    """The data address of a contiguous array, for passing to C. Why not ``a.ctypes.data``: that
    builds a ctypes helper object per call (~0.9 us; a small model's decode step passes ~150
    pointers); a ``c_char`` view of the buffer costs ~0.2 us. Read-only arrays (no writable buffer)
    take the ``ctypes.data`` path.

    >>> import numpy as np
    >>> a = np.zeros(3)
    >>> address(a) == a.ctypes.data
    True
    """
    try:
        return _addressof(_char_view(a))
    except (TypeError, ValueError, BufferError):
        return a.ctypes.data


def default_threads() -> int:
    """Threads native kernels use by default: ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` when set
    (suanli never uses more cores than BLAS was allowed, so a 1-thread benchmark is one thread),
    else the cores this process may run on.

    >>> default_threads() >= 1
    True
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        raw = os.environ.get(var, "").split(",")[0]
        if raw.isdigit() and int(raw) > 0:
            return int(raw)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def openblas_libs() -> list[ctypes.CDLL]:
    """The OpenBLAS libraries loaded in this process (NumPy's), found in ``/proc/self/maps``."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return []
    libs = []
    for path in paths:
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            pass
    return libs


@functools.lru_cache(maxsize=1)
def _blas_thread_functions() -> list[tuple[Callable[[], int], Callable[[int], None]]]:
    found = []
    for lib in openblas_libs():
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    found.append((get, set_))
                    break
            else:
                continue
            break
    return found


_blas_lock = threading.Lock()
_blas_depth = 0                 # blocks inside blas_threads, over all threads
_blas_saved: list[int] = []     # OpenBLAS's thread counts before the outermost block


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """OpenBLAS limited to ``n`` threads inside the block (a no-op where OpenBLAS is not found).

    Why: after a parallel call OpenBLAS's workers busy-wait (~0.1 s), taking the core our own
    kernels' second thread needs; a graph whose heavy work is in our kernels runs faster with BLAS on
    one thread (ResNet-18 batch 1 at 2 threads: 21.7 -> 14.7 ms).

    >>> with blas_threads(1):
    ...     pass
    """
    global _blas_depth, _blas_saved
    funcs = _blas_thread_functions()
    with _blas_lock:          # process-wide setting: the outermost block (of any thread) restores it
        if _blas_depth == 0:
            _blas_saved = [get() for get, _ in funcs]
        _blas_depth += 1
        for _, set_ in funcs:
            set_(n)
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                for (_, set_), k in zip(funcs, _blas_saved):
                    set_(k)
