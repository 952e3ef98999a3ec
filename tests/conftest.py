"""Fixtures shared by the unit tests. Each one restores the torch global state it changes."""

import pytest
import torch
from helpers import tiny_data as _tiny_data


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster on the shared cores; restored afterwards.

    Test modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tf32_off():
    """Full float32 matmuls and convolutions on GPUs (TF32 off) for one test; restored afterwards."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.fixture(autouse=True)
def _torch_global_state_is_restored():
    """Every test leaves the thread count, default dtype and grad mode as it found them."""
    before = (
        torch.get_num_threads(),
        torch.get_default_dtype(),
        torch.is_grad_enabled(),
    )
    yield
    torch.set_num_threads(before[0])
    torch.set_default_dtype(before[1])
    torch.set_grad_enabled(before[2])


@pytest.fixture(scope="module")
def tiny_data():
    """The 4-class synthetic stand-in for CIFAR of ``helpers.tiny_data``."""
    return _tiny_data()
