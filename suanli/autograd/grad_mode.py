"""Grad modes: ``no_grad``, ``enable_grad``, ``set_grad_enabled``, ``inference_mode``.

Each works as a context manager and as a decorator.

>>> import suanli
>>> x = suanli.tensor([1.0], requires_grad=True)
>>> with suanli.no_grad():
...     y = x * 2
>>> y.requires_grad
False
"""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from .._config import state

F = TypeVar("F", bound=Callable[..., Any])


class _GradMode:
    """Base: set ``state.grad_enabled`` on enter, restore on exit; usable as a decorator."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._prev: list[bool] = []

    def __enter__(self) -> None:
        self._prev.append(state.grad_enabled)
        state.grad_enabled = self._enabled

    def __exit__(self, *exc: Any) -> None:
        state.grad_enabled = self._prev.pop()

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.__class__._fresh(self):
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]

    @staticmethod
    def _fresh(mode: "_GradMode") -> "_GradMode":
        clone = object.__new__(type(mode))
        clone.__dict__.update(mode.__dict__)
        clone._prev = []
        return clone


class no_grad(_GradMode):
    """Do not record operations for backward (saves memory and time in evaluation)."""

    def __init__(self) -> None:
        super().__init__(False)


class enable_grad(_GradMode):
    """Record operations again inside a ``no_grad`` region."""

    def __init__(self) -> None:
        super().__init__(True)


class set_grad_enabled(_GradMode):
    """Enable or disable recording: ``with set_grad_enabled(is_train): ...``.

    Like torch, calling it as a plain function also sets the mode immediately.
    """

    def __init__(self, mode: bool) -> None:
        super().__init__(bool(mode))
        self._prev.append(state.grad_enabled)
        state.grad_enabled = bool(mode)

    def __enter__(self) -> None:  # the mode was already set in __init__
        pass


class inference_mode(_GradMode):
    """``no_grad`` for pure inference; ``inference_mode(False)`` is a no-op region."""

    def __init__(self, mode: bool = True) -> None:
        super().__init__(not mode)
        self._inference = mode

    def __enter__(self) -> None:
        super().__enter__()
        self._prev_inf = state.inference_mode
        state.inference_mode = self._inference or state.inference_mode

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        state.inference_mode = self._prev_inf


def is_grad_enabled() -> bool:
    return state.grad_enabled


def is_inference_mode_enabled() -> bool:
    return state.inference_mode
