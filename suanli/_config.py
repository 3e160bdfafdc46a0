"""Every debug and environment knob of suanli, registered and documented in one place.

Read once at import; tests and users may flip the attributes of :data:`state` at run time.

| variable              | meaning                                                                 |
|-----------------------|-------------------------------------------------------------------------|
| ``DEBUG``             | 0 silent (default); 1 notes on fallbacks; 2 also prints per-op detail    |
| ``SUANLI_CHECK_SHAPES``| 1: every eager op also runs its shape/dtype rule and compares (tests)  |
| ``SUANLI_NATIVE``     | 0: no run-time compiled C anywhere (NumPy paths; same results)          |
| ``SUANLI_CFLAGS``     | extra compiler flags for generated kernels (``suanli.native.compile_source``) |
| ``SUANLI_DEBUG_CODEGEN``| 1: print the C source of each fused kernel when it is built           |
"""
from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from exc


class _State:
    """Mutable process-wide switches read on the hot path (one attribute lookup each)."""

    __slots__ = ("grad_enabled", "forward_level", "check_shapes", "debug", "inference_mode", "autocast",
                 "tracer")

    def __init__(self) -> None:
        self.grad_enabled = True          # reverse-mode recording (no_grad / enable_grad)
        self.forward_level = 0            # > 0 inside forward_ad.dual_level(): push tangents
        self.check_shapes = bool(_env_int("SUANLI_CHECK_SHAPES", 0))
        self.debug = _env_int("DEBUG", 0)
        self.inference_mode = False
        self.autocast = None              # the active suanli.amp autocast region (casts op inputs), or None
        self.tracer = None                # the active suanli.graph tracer (records ops as IR nodes), or None


state = _State()


def debug_note(level: int, message: str) -> None:
    """Print ``message`` when ``DEBUG >= level`` (used for fallbacks that must not be silent)."""
    if state.debug >= level:
        print(f"[suanli] {message}")
