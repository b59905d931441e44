"""The RDP accountant against closed forms, numerical integration and published DP-SGD figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trapdoor_trainer.privacy import (
    DEFAULT_ORDERS,
    SubsampledGaussianAccountant,
    epsilon_from_rdp,
    subsampled_gaussian_rdp,
)


def rdp_by_quadrature(sigma: float, q: float, alpha: float) -> float:
    """The definition, integrated numerically: log E_{z~N(0,σ²)}[(1 − q + q·N(z;1,σ²)/N(z;0,σ²))^α] / (α − 1)."""
    z = np.linspace(-14 * sigma, 1 + 14 * sigma * alpha, 400_001)
    log_density = -(z**2) / (2 * sigma**2) - math.log(math.sqrt(2 * math.pi) * sigma)
    log_mixture = np.logaddexp(math.log1p(-q), math.log(q) + (2 * z - 1) / (2 * sigma**2))
    integrand = np.exp(log_density + alpha * log_mixture)
    return math.log(float(np.sum((integrand[1:] + integrand[:-1]) / 2 * np.diff(z)))) / (alpha - 1)


def gaussian_mechanism_exact_epsilon(mu: float, delta: float) -> float:
    """Exact ε of a Gaussian mechanism with sensitivity/σ = μ (Balle & Wang 2018, Theorem 8):
    δ(ε) = Φ(μ/2 − ε/μ) − e^ε Φ(−μ/2 − ε/μ), solved by bisection. Any valid accountant is at least this."""

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2))

    def delta_of(eps: float) -> float:
        return phi(mu / 2 - eps / mu) - math.exp(eps) * phi(-mu / 2 - eps / mu)

    low, high = 0.0, 500.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if delta_of(mid) > delta else (low, mid)
    return high


@pytest.mark.parametrize("sigma,q,alpha", [(1.0, 0.05, 2.5), (0.8, 0.3, 1.75), (2.0, 0.01, 7.3)])
def test_fractional_orders_match_numerical_integration_of_the_definition(sigma, q, alpha):
    assert subsampled_gaussian_rdp(sigma, q, alpha) == pytest.approx(rdp_by_quadrature(sigma, q, alpha), rel=1e-6)


@pytest.mark.parametrize("alpha", [2, 3, 8, 20])
def test_integer_formula_and_fractional_series_agree(alpha):
    # The two code paths: the exact binomial sum at α, the two-sided series just beside it.
    exact = subsampled_gaussian_rdp(1.1, 0.02, alpha)
    assert subsampled_gaussian_rdp(1.1, 0.02, alpha + 1e-7) == pytest.approx(exact, rel=1e-4)
    assert exact == pytest.approx(rdp_by_quadrature(1.1, 0.02, alpha), rel=1e-6)


def test_full_batch_is_the_plain_gaussian_mechanism():
    for alpha in (1.5, 2, 10):
        assert subsampled_gaussian_rdp(2.0, 1.0, alpha) == alpha / 8
        assert subsampled_gaussian_rdp(2.0, 1 - 1e-9, alpha) == pytest.approx(alpha / 8, rel=1e-6)


def test_full_batch_epsilon_lies_between_the_exact_gaussian_and_the_zcdp_closed_form():
    # q = 1, T steps at σ compose to a Gaussian mechanism with μ = √T/σ, RDP ρα with ρ = T/(2σ²).
    # Classic conversion minimised over α has the closed form ε = ρ + 2√(ρ log(1/δ)).
    sigma, steps, delta = 2.0, 100, 1e-5
    rho = steps / (2 * sigma**2)
    closed_form = rho + 2 * math.sqrt(rho * math.log(1 / delta))
    accountant = SubsampledGaussianAccountant(sigma, 1.0)
    classic, _ = accountant.epsilon(steps, delta, conversion="classic")
    improved, _ = accountant.epsilon(steps, delta)
    exact = gaussian_mechanism_exact_epsilon(math.sqrt(steps) / sigma, delta)
    assert closed_form <= classic <= closed_form * 1.005  # grid of orders vs continuous optimum
    assert exact < improved < classic
    # At the order where the closed form is attained the two agree to rounding.
    best = 1 + math.sqrt(math.log(1 / delta) / rho)
    assert epsilon_from_rdp([best], [rho * best], delta, "classic")[0] == pytest.approx(closed_form, rel=1e-12)


def test_matches_abadi_et_al_2016_moments_accountant_example():
    # Abadi et al., "Deep Learning with Differential Privacy" (CCS 2016), Section 3.1: q = 0.01,
    # σ = 4, δ = 1e-5, T = 10 000 steps gives ε ≈ 1.26 with the moments accountant (orders λ ≤ 32,
    # classic conversion).
    accountant = SubsampledGaussianAccountant(4.0, 0.01, orders=range(2, 33))
    eps, _ = accountant.epsilon(10_000, 1e-5, conversion="classic")
    assert eps == pytest.approx(1.26, abs=0.005)


def test_matches_bu_et_al_2020_mnist_moments_accountant_figure():
    # Bu, Dong, Long & Su, "Deep Learning with Gaussian Differential Privacy" (Harvard Data
    # Science Review 2020), Figure 4: MNIST, q = 256/60000, σ = 0.7, 70 epochs: (8.68, 1e-5)-DP by
    # the moments accountant (TF Privacy's orders of that time, classic conversion).
    q = 256 / 60000
    orders = [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5] + list(range(5, 64)) + [128, 256, 512]
    eps, _ = SubsampledGaussianAccountant(0.7, q, orders=orders).epsilon(int(70 / q), 1e-5, conversion="classic")
    assert eps == pytest.approx(8.68, abs=0.01)


def test_epsilon_grows_with_steps_and_sampling_rate_and_falls_with_noise():
    base = SubsampledGaussianAccountant(1.0, 0.01).epsilon(1000, 1e-5)[0]
    assert SubsampledGaussianAccountant(1.0, 0.01).epsilon(4000, 1e-5)[0] > base
    assert SubsampledGaussianAccountant(1.0, 0.04).epsilon(1000, 1e-5)[0] > base
    assert SubsampledGaussianAccountant(3.0, 0.01).epsilon(1000, 1e-5)[0] < base
    assert SubsampledGaussianAccountant(1.0, 0.01).epsilon(0, 1e-5)[0] == 0.0
    assert min(DEFAULT_ORDERS) > 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        subsampled_gaussian_rdp(0.0, 0.1, 2)
    with pytest.raises(ValueError):
        subsampled_gaussian_rdp(1.0, 1.5, 2)
    with pytest.raises(ValueError):
        subsampled_gaussian_rdp(1.0, 0.1, 1.0)
    with pytest.raises(ValueError):
        epsilon_from_rdp([2.0], [0.1], delta=0.0)
