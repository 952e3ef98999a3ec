"""Fault injection against the numerical modules (support/rank.py, rmt.py, simulate.py,
checks.py): extreme scales give exact answers, impossible inputs are refused with the right
exception, and nothing hangs or allocates terabytes."""

import math

import bounded
import numpy as np
import pytest
import torch

from support import checks, rank, rmt, simulate

LOG3 = math.log(3)


@pytest.mark.parametrize(
    "matrix, rho",
    [
        (np.full((3, 3), 1e308), 0.0),
        (torch.full((3, 3), 2e38, dtype=torch.float32), 0.0),
        (1e308 * np.diag([1.0, 1.0, 1.0]), LOG3),
        (2e38 * torch.eye(3, dtype=torch.float32), LOG3),
        (1e-320 * np.eye(3), LOG3),
    ],
)
def test_rank_measures_are_exact_at_the_edges_of_the_float_range(matrix, rho):
    assert float(rank.spectral_entropy(matrix)) == pytest.approx(rho, abs=1e-6)
    assert float(rank.effective_rank(matrix)) == pytest.approx(math.exp(rho), rel=1e-6)
    expected_rank = 1 if rho == 0 else 3
    assert int(rank.numerical_rank(matrix)) == expected_rank
    assert float(rank.stable_rank(matrix)) == pytest.approx(expected_rank, rel=1e-5)


@pytest.mark.parametrize("scale", [1e154, 1e-162, 1e-320, 1e200])
def test_gram_entropy_scales_before_squaring(scale):
    phi = scale * np.diag([1.0, 2.0, 3.0])
    expected = rank.gram_entropy(np.diag([1.0, 2.0, 3.0]))
    assert float(rank.gram_entropy(phi)) == pytest.approx(expected, rel=1e-12)
    assert float(rank.gram_entropy(torch.from_numpy(phi))) == pytest.approx(
        expected, rel=1e-12
    )


@pytest.mark.parametrize(
    "spectrum", [[1.0, -0.5], [1.0, float("nan")], [float("inf"), 1.0]]
)
def test_a_negative_or_nan_spectrum_is_refused(spectrum):
    with pytest.raises(ValueError, match="a spectrum must be finite and >= 0"):
        rank.entropy_of_spectrum(np.array(spectrum))
    with pytest.raises(ValueError, match="a spectrum must be finite and >= 0"):
        rank.entropy_of_spectrum(torch.tensor(spectrum))


def test_entropy_drift_with_chunk_zero_is_refused_not_a_hang():
    out = bounded.run(
        "from support import rmt\n"
        "try:\n"
        "    rmt.entropy_drift([1, .5], 10, chunk=0)\n"
        "except ValueError as e:\n"
        "    print(e)\n",
        timeout_s=60,
    )
    assert "chunk must be >= 1" in out


@pytest.mark.parametrize(
    "call, message",
    [
        ("simulate.sample_product_entropy(2, 1, 10**12)", "needs"),
        ("rmt.lyapunov_qr(10**5, 1)", "needs"),
        ("rmt.gaussian_products(10**5, [1, 2])", "needs"),
        ("rmt.entropy_drift(np.ones((1, 10**5)), 4)", "needs"),
        ("rmt.sample_fuss_catalan(3, 10**13)", "needs"),
        ("rmt.two_by_two_log_ratio_samples([1], 10**13)", "needs"),
        ("simulate.sample_gram_entropy(2, 10**13)", "needs"),
    ],
)
def test_sizes_that_cannot_fit_in_memory_are_refused_before_allocating(call, message):
    out = bounded.run(
        "import numpy as np\n"
        "from support import rmt, simulate\n"
        "try:\n"
        f"    {call}\n"
        "except ValueError as e:\n"
        "    print(e)\n",
        timeout_s=60,
        memory_gib=4,
    )
    assert message in out and "GiB" in out


def test_lyapunov_spectrum_with_a_huge_variance_is_finite():
    lam = rmt.lyapunov_spectrum(3, 1e308)
    expected = 0.5 * (math.log(2) + math.log(1e308)) + 0.5 * rmt.special.digamma(
        np.array([3.0, 2.0, 1.0]) / 2
    )
    np.testing.assert_allclose(lam, expected, rtol=1e-15)


@pytest.mark.parametrize(
    "call, exception, message",
    [
        (lambda: rmt.fuss_catalan_density(float("nan"), 2), ValueError, "phi must lie"),
        (
            lambda: rmt.two_by_two_log_ratio_cdf(
                [1], np.linspace(0, 30, 50), tail_tolerance=float("nan")
            ),
            ValueError,
            "tail_tolerance must be finite",
        ),
        (
            lambda: rmt.lyapunov_spectrum(3, float("nan")),
            ValueError,
            "variance must be",
        ),
        (lambda: rmt.lyapunov_spectrum(3, "1"), TypeError, "variance must be a real"),
        (
            lambda: simulate.sample_product_entropy(
                4, 2, 8, dist="residual", residual_scale=float("nan")
            ),
            ValueError,
            "residual_scale must be finite",
        ),
        (
            lambda: simulate.sample_product_entropy(4, 2.5, 8),
            TypeError,
            "depths must be",
        ),
        (
            lambda: simulate.product_entropy_sweep([2.7], [1], 8),
            TypeError,
            "width must be an integer",
        ),
        (
            lambda: simulate.sample_product_entropy(4, 2, 64, chunk_size=0),
            ValueError,
            "chunk_size must be >= 1",
        ),
        (
            lambda: simulate.volume_fraction([0.1, float("nan")], [0.5]),
            ValueError,
            "1 NaN sample",
        ),
        (lambda: checks.check_seeds([1.7, 2.2]), TypeError, "seed must be an integer"),
        (lambda: checks.check_seeds("12"), TypeError, "got the string"),
        (lambda: checks.check_seeds([]), ValueError, "at least one seed"),
    ],
)
def test_nan_parameters_and_non_integer_counts_are_refused(call, exception, message):
    with pytest.raises(exception, match=message):
        call()


@pytest.mark.parametrize("x", [1e3, 1e15, 1e16, 1e100, 1e308])
def test_the_width_two_transition_does_not_drift_at_huge_log_ratios(x):
    # For x -> inf the law of x' - x converges, so P(x' <= x | x) has a limit, reached long
    # before 1e3; rounding x +- b used to move it (0.27 at 1e15, 0.75 at 1e16).
    limit = rmt.two_by_two_transition_cdf(200.0, 200.0)
    assert rmt.two_by_two_transition_cdf(x, x) == pytest.approx(limit, rel=1e-12)
    assert rmt.two_by_two_entropy_drift(x) == pytest.approx(0.0, abs=1e-12)


def test_numpy_scalars_are_accepted_wherever_python_numbers_are():
    assert checks.check_int(np.int64(3), "n") == 3
    assert checks.check_real(np.float32(0.5), "lr") == 0.5
    assert rmt.lyapunov_spectrum(np.int64(3), np.float32(0.5)).shape == (3,)
    rho = simulate.sample_product_entropy(np.int64(4), np.int32(2), np.int64(8))
    assert rho.shape == (8,)
    for bad in (True, np.bool_(True), "3", 3.0):
        with pytest.raises(TypeError, match="n must be an integer"):
            checks.check_int(bad, "n")


# ------------------------------------------------------------------ the recipes' command lines
@pytest.mark.parametrize(
    "module, argv, message",
    [
        ("finite_width", ["bench", "--n", "0"], "must be at least 1"),
        ("finite_width", ["bench", "--samples", "-1"], "must be at least 1"),
        ("finite_width", ["sweep", "--device", "gpu"], "--device"),
        ("finite_width", ["sweep", "--seed", "x"], "expected a whole number"),
        ("nonlinear_networks", ["train", "--threads", "0"], "must be at least 1"),
        (
            "deep_linear_training",
            ["store", "regression", "--threads", "0"],
            "at least 1",
        ),
        ("rank_volume_theorem", ["store", "--device", "tpu"], "--device"),
    ],
)
def test_bad_recipe_arguments_are_usage_errors_not_tracebacks(
    capsys, module, argv, message
):
    import importlib

    recipe = importlib.import_module(f"support.experiments.{module}")
    with pytest.raises(SystemExit, match="2"):
        recipe.main(argv)
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_mistake_found_while_running_a_recipe_is_one_line(capsys, monkeypatch):
    from support.experiments import finite_width

    def refuse(*args, **kwargs):
        raise ValueError("samples must be >= 1, got 0")

    monkeypatch.setattr(finite_width, "benchmark_record", refuse)
    assert finite_width.main(["bench"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: samples must be >= 1, got 0"]
