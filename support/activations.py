"""The activations of the book's networks, in one table: names, functions and initialisation gains.

The paper's Observation 2 trains multilayer perceptrons with seven activations (linear, tanh,
ReLU, leaky ReLU, SELU, GELU and SIREN's sine); its Observation 1 samples random linear and ReLU
networks. The chapters *Non-linear networks* (trained networks, ``support.mlp_training``) and
*Finite-width simulations* (random networks, ``support.simulate``) both take an activation by
name from ``ACTIVATIONS`` and apply it with :func:`activate`.

* ``"sine"`` is SIREN's ``sin(SIREN_OMEGA * z)`` (Sitzmann et al., 2020); its networks use their
  own uniform initialisation (``support.mlp_training.init_mlp``), not a gain.
* ``"leaky_relu"`` has negative slope ``LEAKY_SLOPE``.
* :func:`gain` is the factor ``g`` of the usual initialisation variance ``g^2 / fan_in`` that
  keeps the activations' scale through depth: 1 for linear and SELU (the self-normalising
  choice), 5/3 for tanh, sqrt(2) for ReLU and GELU, sqrt(2 / (1 + slope^2)) for leaky ReLU.
"""

from __future__ import annotations

import math

import torch

SIREN_OMEGA = 30.0
"""Frequency of SIREN's sine activation, ``sin(SIREN_OMEGA * z)``."""

LEAKY_SLOPE = 0.01
"""Negative slope of the leaky ReLU."""

_FUNCTIONS = {
    "linear": lambda z: z,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, LEAKY_SLOPE),
    "selu": torch.selu,
    "gelu": torch.nn.functional.gelu,
    "sine": lambda z: torch.sin(SIREN_OMEGA * z),
}

ACTIVATIONS = tuple(_FUNCTIONS)
"""Names of the activations, in the order of the paper's Observation 2 figure."""

_GAINS = {
    "linear": 1.0,
    "tanh": 5.0 / 3.0,
    "relu": math.sqrt(2.0),
    "gelu": math.sqrt(2.0),
    "leaky_relu": math.sqrt(2.0 / (1.0 + LEAKY_SLOPE**2)),
    "selu": 1.0,
}


def check_activation(name: str) -> str:
    """``name`` if it is one of ``ACTIVATIONS``; ValueError naming the choices otherwise."""
    if name not in _FUNCTIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return name


def activate(z: torch.Tensor, name: str) -> torch.Tensor:
    """Apply the activation ``name`` elementwise to ``z``."""
    return _FUNCTIONS[check_activation(name)](z)


def gain(name: str) -> float:
    """Initialisation gain of ``name`` (weights of variance ``gain^2 / fan_in``).

    SIREN (``"sine"``) has no gain: its networks use their own uniform initialisation.
    """
    check_activation(name)
    if name not in _GAINS:
        raise ValueError(f"activation {name!r} has its own initialisation, not a gain")
    return _GAINS[name]
