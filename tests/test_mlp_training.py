"""Tests of support.mlp_training: batched MLPs, Gram matrices of embeddings, data, training."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from support import arccos_kernels
from support import mlp_training as k
from support.rank import (
    entropy_of_spectrum,
    gram_entropy,
    numerical_rank,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="activation"):
        k.init_mlp(4, 8, 2, 3, "swish", (0,))


def test_mlp_shapes_and_seed_reproducibility():
    net = k.init_mlp(5, 16, 3, 4, "relu", (0, 1, 2))
    assert net.depth == 4
    assert [tuple(w.shape) for w in net.weights] == [
        (3, 16, 5),
        (3, 16, 16),
        (3, 16, 16),
        (3, 3, 16),
    ]
    assert [tuple(b.shape) for b in net.biases] == [(3, 16)] * 3 + [(3, 3)]
    alone = k.init_mlp(5, 16, 3, 4, "relu", (2,))
    assert all(torch.equal(a[2], b[0]) for a, b in zip(net.weights, alone.weights))
    assert not torch.equal(net.weights[1][0], net.weights[1][1])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"depth": 1}, ValueError, "depth must be >= 2"),
        ({"width": 0}, ValueError, "width must be >= 1"),
        ({"seeds": ()}, ValueError, "seeds must name at least one seed"),
        ({"seeds": (0, 0)}, ValueError, "seeds must be distinct"),
        ({"depth": 2.0}, TypeError, "depth must be an integer"),
    ],
)
def test_init_rejects_bad_arguments(kwargs, error, message):
    args = {
        "in_dim": 4,
        "width": 8,
        "out_dim": 2,
        "depth": 3,
        "activation": "relu",
        "seeds": (0,),
    }
    args.update(kwargs)
    with pytest.raises(error, match=message):
        k.init_mlp(**args)


@pytest.mark.parametrize(
    "name, gain",
    [("linear", 1.0), ("tanh", 5 / 3), ("relu", math.sqrt(2)), ("selu", 1.0)],
)
def test_init_variance_follows_the_gain(name, gain):
    net = k.init_mlp(256, 256, 2, 3, name, range(4))
    assert abs(float(net.weights[1].std()) * math.sqrt(256) / gain - 1) < 0.02
    # linear read-out: gain 1
    assert abs(float(net.weights[2].std()) * math.sqrt(256) - 1) < 0.05


def test_init_streams_come_from_the_seeding_helper():
    from support.seeding import torch_generator

    net = k.init_mlp(6, 5, 2, 3, "tanh", (7,))
    expected = (
        torch.randn(5, 5, generator=torch_generator(7, "mlp-init", 1))
        * (5 / 3)
        / math.sqrt(5)
    )
    assert torch.allclose(net.weights[1][0], expected)


def test_siren_init_bounds():
    net = k.init_mlp(64, 64, 2, 3, "sine", (0,))
    assert float(net.weights[0].abs().max()) <= 1 / 64
    assert float(net.weights[1].abs().max()) <= math.sqrt(6 / 64) / 30


def test_forward_matches_a_per_seed_reference():
    net = k.init_mlp(5, 7, 3, 3, "tanh", (0, 1))
    for b in net.biases:
        b.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(11, 5, generator=torch.Generator().manual_seed(2))
    out = k.forward(net, x)
    phi = k.embed(net, x)
    assert out.shape == (2, 11, 3) and phi.shape == (2, 11, 7)
    for s in range(2):
        h = x
        for w, b in zip(net.weights[:-1], net.biases[:-1]):
            h = torch.tanh(h @ w[s].T + b[s])
        assert torch.allclose(phi[s], h, atol=1e-6)
        assert torch.allclose(
            out[s], h @ net.weights[-1][s].T + net.biases[-1][s], atol=1e-6
        )
    with pytest.raises(ValueError, match="x must have shape"):
        k.embed(net, torch.zeros(4, 6))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 12), width=st.integers(1, 12), seed=st.integers(0, 100))
def test_the_kernel_measure_is_the_entropy_of_the_grams_eigenvalues(n, width, seed):
    """The chapters measure rho(K) with support.rank.gram_entropy on embeddings: the entropy of
    K = Phi Phi^T's eigenvalues, raw and centred."""
    phi = torch.randn(
        n, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    kmat = k.gram(phi)
    assert torch.allclose(kmat, kmat.T) and torch.linalg.eigvalsh(kmat).min() > -1e-9
    eig = np.clip(np.linalg.eigvalsh(kmat.numpy()), 0, None)
    assert math.isclose(
        float(gram_entropy(phi)),
        float(entropy_of_spectrum(eig)),
        rel_tol=1e-7,
        abs_tol=1e-7,
    )
    centred = arccos_kernels.centre_gram(kmat.numpy())
    eig_c = np.clip(np.linalg.eigvalsh(centred), 0, None)
    if eig_c.max() > 1e-9:
        assert math.isclose(
            float(gram_entropy(phi, centre=True)),
            float(entropy_of_spectrum(eig_c)),
            rel_tol=1e-6,
            abs_tol=1e-6,
        )


def test_centring_removes_a_shared_mean_embedding():
    noise = torch.randn(
        10, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    phi = torch.ones(10, 4, dtype=torch.float64) + 1e-3 * noise
    assert float(gram_entropy(phi)) < 0.01
    assert float(gram_entropy(phi, centre=True)) > 1.0
    with pytest.raises(ValueError, match="phi must have shape"):
        k.gram(torch.zeros(3))


def test_digits_dataset():
    d = k.load_digits_dataset(0)
    assert d.x_train.shape == (1347, 64) and d.x_test.shape == (450, 64)
    assert d.in_dim == 64 and d.out_dim == 10 and d.task == "classification"
    assert float(d.x_train.mean(0).abs().max()) < 1e-5
    idx = k.class_sorted_subset(d.y_test, 3)
    assert d.y_test[idx].tolist() == [c for c in range(10) for _ in range(3)]
    with pytest.raises(ValueError, match="fewer than per_class"):
        k.class_sorted_subset(d.y_test, 1000)
    with pytest.raises(ValueError, match="test_fraction must lie in"):
        k.load_digits_dataset(0, test_fraction=1.0)


def test_lowrank_dataset_has_the_requested_rank():
    d = k.lowrank_regression_dataset(64, 16, 12, 10, rank=3, seed=1)
    assert (
        d.x_train.shape == (64, 12) and d.y_train.shape == (64, 10) and d.out_dim == 10
    )
    assert int(numerical_rank(d.y_train.double(), rtol=1e-5)) == 3
    assert abs(float((d.y_train**2).mean()) - 1.0) < 0.5
    with pytest.raises(
        ValueError, match="rank must be <= min\\(in_dim, out_dim\\) = 32"
    ):
        k.lowrank_regression_dataset(rank=40)


def test_training_lowers_the_loss_and_seeds_are_independent():
    d = k.lowrank_regression_dataset(128, 32, 8, 8, rank=2, seed=0)
    before = k.evaluate(k.init_mlp(8, 16, 8, 3, "relu", (0, 1)), d)
    both = k.train_mlp(d, 3, "relu", (0, 1), width=16, steps=150, lr=3e-3)
    after = k.evaluate(both, d)
    assert (after["train_loss"] < 0.5 * before["train_loss"]).all()
    alone = k.train_mlp(d, 3, "relu", (1,), width=16, steps=150, lr=3e-3)
    assert all(
        torch.allclose(a[1], b[0], atol=1e-5)
        for a, b in zip(both.weights, alone.weights)
    )
    with pytest.raises(ValueError, match="lr must be positive"):
        k.train_mlp(d, 3, "relu", (0,), lr=0.0)
