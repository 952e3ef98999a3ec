"""Tests of support.activations: the one table of activations, their functions and gains."""

import math

import pytest
import torch

from support import activations as act

REFERENCE = {
    "linear": lambda z: z,
    "tanh": torch.tanh,
    "relu": torch.nn.ReLU(),
    "leaky_relu": torch.nn.LeakyReLU(0.01),
    "selu": torch.nn.SELU(),
    "gelu": torch.nn.GELU(),
    "sine": lambda z: torch.sin(30.0 * z),
}


def test_the_table_lists_the_papers_seven_activations():
    assert set(act.ACTIVATIONS) == set(REFERENCE)


@pytest.mark.parametrize("name", act.ACTIVATIONS)
def test_activations_match_torch_modules(name):
    z = torch.linspace(-3, 3, 101)
    assert torch.allclose(act.activate(z, name), REFERENCE[name](z))


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu", "leaky_relu", "linear"])
def test_gain_keeps_the_second_moment_through_a_layer(name):
    """With weights of variance gain^2/fan_in, E[act(z)^2] gain^2 ~ E[z^2] for z ~ N(0, 1) (exact for
    ReLU-type activations and linear; the usual approximations for tanh and GELU)."""
    z = torch.randn(
        2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    second_moment = float((act.activate(z, name) ** 2).mean()) * act.gain(name) ** 2
    tolerance = 0.01 if name in ("relu", "leaky_relu", "linear") else 0.35
    assert second_moment == pytest.approx(1.0, abs=tolerance)


def test_gains_of_the_paper_choices():
    assert act.gain("selu") == 1.0 and act.gain("tanh") == pytest.approx(5 / 3)
    assert act.gain("leaky_relu") == pytest.approx(
        math.sqrt(2 / (1 + act.LEAKY_SLOPE**2))
    )


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="activation"):
        act.activate(torch.zeros(3), "swish")
    with pytest.raises(ValueError, match="own initialisation"):
        act.gain("sine")
