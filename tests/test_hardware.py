"""Tests of device choice and description (support/hardware.py)."""

import pytest
import torch

from support import hardware


def test_auto_picks_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert hardware.resolve_device("auto").type == expected
    assert hardware.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_accelerator_is_an_error_not_a_silent_cpu_fallback():
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        hardware.resolve_device("cuda")


def test_descriptions_name_the_hardware():
    cpu = hardware.cpu_description()
    assert cpu.endswith("cores)") and len(cpu) > len(" (1 cores)")
    assert hardware.describe_device("cpu") == cpu


def test_devices_and_dtypes_resolve_in_one_place():
    assert hardware.resolve_device(None) == torch.device("cpu")
    assert hardware.resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(TypeError, match="device must be"):
        hardware.resolve_device(3)
    assert hardware.resolve_dtype() is torch.float64
    assert hardware.resolve_dtype(None, default=torch.float32) is torch.float32
    assert hardware.resolve_dtype(torch.float32) is torch.float32
    with pytest.raises(ValueError, match="dtype must be one of"):
        hardware.resolve_dtype(torch.int32)
    assert (
        hardware.resolve_dtype(torch.bfloat16, allowed=(torch.bfloat16,))
        is torch.bfloat16
    )
