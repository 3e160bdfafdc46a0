"""Error types with messages that name the op, what was expected, what was given, and a remedy."""
from __future__ import annotations


class SuanliError(Exception):
    """Base class of every error suanli raises on purpose."""


class ShapeError(SuanliError, ValueError):
    """Shapes that do not fit an op (broadcasting, matmul, conv, reshape, ...)."""


class DTypeError(SuanliError, TypeError):
    """A dtype an op does not accept."""


class AutogradError(SuanliError, RuntimeError):
    """Misuse of autograd: backward twice, in-place on saved tensors, non-scalar roots..."""


def op_error(op: str, message: str, *, expect: str | None = None, actual: str | None = None,
             hint: str | None = None, cls: type[SuanliError] = ShapeError) -> SuanliError:
    """Build an error in the house format::

        matmul: inner dimensions differ
          Expect: a.shape[-1] == b.shape[-2]
          Actual: a (2, 3) @ b (4, 5)
          help: transpose one operand or check the layer sizes
    """
    lines = [f"{op}: {message}"]
    if expect:
        lines.append(f"  Expect: {expect}")
    if actual:
        lines.append(f"  Actual: {actual}")
    if hint:
        lines.append(f"  help: {hint}")
    err = cls("\n".join(lines))
    err.suanli_clear = True    # marks a deliberate, user-facing error even when cls is a builtin
    return err


def is_clear_error(exc: BaseException) -> bool:
    """True for errors suanli raised on purpose (SuanliError or built by :func:`op_error`)."""
    return isinstance(exc, SuanliError) or getattr(exc, "suanli_clear", False)
