"""Random number generation: a seeded default generator and explicit :class:`Generator` objects.

Same seed, same numbers, bit for bit (NumPy's PCG64 underneath). The stream differs from torch's.

>>> import suanli
>>> _ = suanli.manual_seed(0); a = suanli.rand(3)
>>> _ = suanli.manual_seed(0); b = suanli.rand(3)
>>> bool((a == b).all())
True
"""
from __future__ import annotations

from typing import Any

import numpy as np


class Generator:
    """A random stream; pass as ``generator=`` to creation ops, dropout and DataLoader."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = 0 if seed is None else int(seed)
        self._rng = np.random.Generator(np.random.PCG64(self._seed))

    def manual_seed(self, seed: int) -> Generator:
        self._seed = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(self._seed))
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict[str, Any]:
        """A JSON-able snapshot (for checkpoints): restore with :meth:`set_state`."""
        st = self._rng.bit_generator.state
        return {"seed": self._seed, "bit_generator": st["bit_generator"],
                "state": {k: int(v) for k, v in st["state"].items()},
                "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("bit_generator") != "PCG64":
            raise ValueError(f"Generator.set_state: expected a PCG64 state, got {state.get('bit_generator')!r}")
        self._seed = int(state.get("seed", 0))
        self._rng.bit_generator.state = {"bit_generator": "PCG64", "state": dict(state["state"]),
                                         "has_uint32": state["has_uint32"], "uinteger": state["uinteger"]}

    @property
    def numpy(self) -> np.random.Generator:
        """The underlying NumPy generator."""
        return self._rng


default_generator = Generator(0)


def manual_seed(seed: int) -> Generator:
    """Reseed the default generator (what ``torch.manual_seed`` does)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    s = int(np.random.SeedSequence().entropy % (2 ** 63))
    default_generator.manual_seed(s)
    return s


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict[str, Any]:
    return default_generator.get_state()


def set_rng_state(state: dict[str, Any]) -> None:
    default_generator.set_state(state)


def rng(generator: Generator | None) -> np.random.Generator:
    """The NumPy generator to draw from (the default one unless ``generator`` is given)."""
    if generator is None:
        return default_generator._rng
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a suanli.Generator, got {type(generator).__name__}")
    return generator._rng
