"""Weight decay on the collapsed weight (support.train.collapsed_weight_penalty and
TrainConfig.weight_decay_on), against independent references."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import TINY, tiny_config
from torch import nn

from support import train
from support.expand import collapse, expand, factors

pytestmark = pytest.mark.usefixtures("one_thread")
WD = 5e-3


def _net(depth: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)
    ).double()
    return expand(net, depth=depth)


def test_penalty_is_the_plain_networks_penalty_on_the_collapsed_weight():
    for depth in (2, 3):
        net = _net(depth)
        plain = collapse(net)
        reference = (
            0.5
            * WD
            * sum(
                m.weight.square().sum() for m in plain.modules() if hasattr(m, "weight")
            )
        )
        assert train.collapsed_weight_penalty(net, WD).item() == pytest.approx(
            reference.item(), rel=1e-12
        )
    assert train.collapsed_weight_penalty(_net(1), WD).item() == 0.0


def test_penalty_gradient_on_two_linear_factors_matches_the_closed_form():
    torch.manual_seed(1)
    layer = expand(nn.Linear(6, 4, bias=False).double(), depth=2)
    (w1, w2), _ = factors(layer)
    train.collapsed_weight_penalty(layer, WD).backward()
    with torch.no_grad():
        effective = w2 @ w1  # W_e = W2 W1; d/dW2 = wd W_e W1^T, d/dW1 = wd W2^T W_e
        torch.testing.assert_close(w2.grad, WD * effective @ w1.T, rtol=1e-12, atol=0)
        torch.testing.assert_close(w1.grad, WD * w2.T @ effective, rtol=1e-12, atol=0)


def test_explicit_penalty_trains_like_sgd_weight_decay_on_a_plain_network():
    """The mechanism (a loss term wd/2 ||W||^2) is SGD's weight decay: on a plain network, SGD
    without decay plus the explicit term follows SGD with decay to rounding, step by step."""
    torch.manual_seed(2)
    x, y = torch.randn(16, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (16,))
    nets = [_net(1, seed=3), _net(1, seed=3)]
    weights = [[p for p in n.parameters() if p.ndim >= 2] for n in nets]
    biases = [[p for p in n.parameters() if p.ndim < 2] for n in nets]
    sgd = torch.optim.SGD(
        [{"params": weights[0], "weight_decay": WD}, {"params": biases[0]}],
        lr=0.1,
        momentum=0.9,
    )
    explicit = torch.optim.SGD(nets[1].parameters(), lr=0.1, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    for _ in range(5):
        for net, opt in ((nets[0], sgd), (nets[1], explicit)):
            opt.zero_grad()
            objective = loss(net(x), y)
            if opt is explicit:
                objective = objective + 0.5 * WD * sum(
                    w.square().sum() for w in weights[1]
                )
            objective.backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_decay_modes_in_training(tiny_data):
    """Depth 1: "collapsed" is the same recipe as "factors", bit for bit. Depth 2: the factors
    leave SGD's decay group and the run differs from decay on the factors."""
    base = tiny_config(epochs=1, weight_decay=1e-2)
    finals = {}
    for depth in (1, 2):
        for mode in ("factors", "collapsed"):
            model = train.build_model("plain", 10, depth=depth, model_kwargs=TINY)
            config = dataclasses.replace(base, weight_decay_on=mode)
            result = train.train(model, tiny_data, config, device="cpu")
            finals[depth, mode] = [
                p.detach().clone() for p in result.model.parameters()
            ]
    for a, b in zip(finals[1, "factors"], finals[1, "collapsed"]):
        assert torch.equal(a, b)
    differs = [
        not torch.equal(a, b)
        for a, b in zip(finals[2, "factors"], finals[2, "collapsed"])
    ]
    assert any(differs)
    model = train.build_model("plain", 10, depth=2, model_kwargs=TINY)
    groups = train._optimizer(
        model, dataclasses.replace(base, weight_decay_on="collapsed")
    )
    decayed = {id(p) for p in groups.param_groups[0]["params"]}
    assert all(
        id(w) not in decayed
        for layer in train.expanded_layers(model).values()
        for w in factors(layer)[0]
    )
    assert np.isfinite(result.final["train_loss"])


def test_weight_decay_on_is_validated():
    with pytest.raises(ValueError, match="weight_decay_on must be one of"):
        train.TrainConfig(weight_decay_on="everything")


def test_collapsed_decay_refuses_an_expansion_without_a_composite_weight():
    net = expand(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), depth=2, batch_norm=True)
    with pytest.raises(
        ValueError, match="needs layers trained through their composite"
    ):
        train.collapsed_weight_penalty(net, WD)
