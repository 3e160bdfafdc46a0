"""Atomic file writes: a reader sees either the old file or the complete new one, never a torn one.

Every file suanli writes goes through :func:`atomic_write`. The data goes to a temporary file in the
*same directory* (so the final ``os.replace`` is a rename within one file system, which POSIX makes
atomic), is flushed and ``fsync``-ed, and only then renamed over the target. If the writer raises, the
temporary file is removed and the target is untouched. If the process is killed (SIGKILL, power loss)
the target is still the old file; at worst a stale ``.<name>.<random>.tmp`` file is left behind, which
never affects later writes because every write picks a fresh, unique temporary name.

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> path = os.path.join(d, "hello.txt")
>>> with atomic_write(path, "w") as f:
...     _ = f.write("hello")
>>> open(path).read()
'hello'
>>> try:
...     with atomic_write(path, "w") as f:
...         _ = f.write("half a file")
...         raise RuntimeError("writer crashed")
... except RuntimeError:
...     pass
>>> open(path).read(), sorted(os.listdir(d))
('hello', ['hello.txt'])
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Any, Iterator

__all__ = ["atomic_write", "temp_prefix"]

_MODES = {"w": "w", "wt": "w", "wb": "wb"}


def temp_prefix(path: str | os.PathLike[str]) -> str:
    """The name prefix of the temporary files :func:`atomic_write` uses for ``path`` (for cleanup tools).

    >>> temp_prefix("/tmp/model.safetensors")
    '.model.safetensors.'
    """
    return f".{os.path.basename(os.fspath(path))}."


def _default_mode() -> int:
    """Permission bits a plain ``open(path, 'w')`` would give (0o666 minus the umask).

    ``mkstemp`` creates files with 0o600; we widen to what the user expects. The umask is read from
    /proc (reading it with ``os.umask`` would briefly change it for every thread).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None,
                 fsync: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it atomically replaces ``path``.

    ``mode`` is ``'wb'`` (binary, default) or ``'w'``/``'wt'`` (text, UTF-8 unless ``encoding`` is
    given). ``fsync=False`` skips the flush to disk (faster, still atomic against crashes of this
    process, not against power loss). An existing file keeps its permission bits.
    """
    if mode not in _MODES:
        raise ValueError(f"atomic_write: mode must be one of {sorted(_MODES)} (write, whole file), "
                         f"got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"atomic_write: cannot write {path!r}: directory {directory!r} does not "
                                f"exist (create it first, e.g. os.makedirs(..., exist_ok=True))")
    if os.path.isdir(path):
        raise IsADirectoryError(f"atomic_write: cannot write {path!r}: it is a directory")
    try:
        perms = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        perms = _default_mode()
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=directory)
    try:
        text = _MODES[mode] == "w"
        with os.fdopen(fd, _MODES[mode], encoding=(encoding or "utf-8") if text else None) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, perms)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(directory)
