"""Test-wide settings: every eager op also checks its shape/dtype rule (SUANLI_CHECK_SHAPES)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))   # `from oracles import ...`

import suanli  # noqa: E402

try:
    from hypothesis import settings
    settings.register_profile("suanli", deadline=None, max_examples=40, derandomize=True)
    settings.load_profile("suanli")
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(autouse=True)
def _strict_mode():
    """Shape rules checked on every op; grad mode and default dtype restored after each test."""
    st = suanli._state
    prev = (st.check_shapes, st.grad_enabled, suanli.get_default_dtype())
    st.check_shapes = True
    suanli.manual_seed(0)
    yield
    st.check_shapes, st.grad_enabled = prev[0], prev[1]
    suanli.set_default_dtype(prev[2])


@pytest.fixture
def torch_single_thread():
    """The torch oracle on one thread: with tiny ops its thread pool only spins, and under a loaded
    machine (parallel test runs) that made a 20-step BabyGPT run take 30 s instead of 1 s. Modules
    whose oracles are small use it with ``pytestmark = pytest.mark.usefixtures("torch_single_thread")``."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
