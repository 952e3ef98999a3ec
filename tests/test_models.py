"""Tests of support.models: shapes, whitening, FLOP counts, and exact expand/collapse of every model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from support import models
from support.expand import collapse, count_parameters, expand

SMALL = {
    "fast": {"widths": (8, 16, 16)},
    "resnet18": {"width": 4},
    "plain": {"widths": (8, 16)},
}


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_shapes_and_features(name):
    torch.manual_seed(0)
    model = models.build(name, num_classes=7, **SMALL[name]).eval()
    x = torch.randn(3, 3, 32, 32)
    feats = model.features(x)
    assert feats.ndim == 2 and feats.shape[0] == 3
    assert model(x).shape == (3, 7)
    torch.testing.assert_close(
        model.head(feats) * getattr(model, "logit_scale", 1.0), model(x)
    )


def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError, match="model name"):
        models.build("vgg")
    with pytest.raises(ValueError, match="widths"):
        models.build("fast", widths=(8, 16))
    with pytest.raises(ValueError, match="width"):
        models.build("resnet18", width=0)
    with pytest.raises(TypeError, match="FastCNN"):
        models.init_whitening(models.build("plain"), torch.zeros(2, 3, 8, 8))


def test_whitening_decorrelates_patches():
    torch.manual_seed(0)
    mix = torch.randn(3, 3)
    # correlated
    images = (
        torch.einsum("ij,njhw->nihw", mix, torch.randn(64, 3, 16, 16)).cumsum(-1) / 4
    )
    model = models.build("fast", widths=(8, 8, 8))
    models.init_whitening(model, images, eps=0.0)
    assert not model.whiten.weight.requires_grad
    # first 12 filters, no bias
    out = nn.functional.conv2d(images, model.whiten.weight[:12])
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    flat = flat - flat.mean(0)
    cov = flat.T @ flat / len(flat)
    torch.testing.assert_close(
        cov, torch.eye(12, dtype=torch.float64), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(model.whiten.weight[12:], -model.whiten.weight[:12])


def test_count_flops_matches_hand_count():
    model = models.PlainCNN(num_classes=10, widths=(4, 6))
    # conv 3->4 at 32x32, conv 4->6 at 16x16, linear 6->10; 2 FLOPs per multiply-accumulate
    macs = 4 * 3 * 9 * 32 * 32 + 6 * 4 * 9 * 16 * 16 + 6 * 10
    assert models.count_flops(model) == 2 * macs
    assert model.training  # mode restored


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("depth", [2, 4])
def test_every_model_expands_and_collapses_exactly(name, depth):
    torch.manual_seed(1)
    base = models.build(name, num_classes=5, **SMALL[name]).double()
    layers = lambda n, m: (
        isinstance(m, (nn.Conv2d, nn.Linear)) and n not in models.WHITENING_LAYERS
    )
    expanded = expand(
        models.build(name, num_classes=5, **SMALL[name]).double(),
        depth=depth,
        layers=layers,
    )
    assert count_parameters(expanded) > count_parameters(base)
    expanded.eval()
    collapsed = collapse(expanded).eval()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(collapsed(x), expanded(x), atol=1e-10, rtol=1e-8)
    assert count_parameters(collapsed) == count_parameters(base)
    assert models.count_flops(collapsed) == models.count_flops(base)
    # the original architecture
    assert set(collapsed.state_dict()) == set(base.state_dict())
