"""Rényi-DP accountant for DP-SGD: the Poisson-subsampled Gaussian mechanism, composed over steps.

One DP-SGD step with sampling rate q and noise multiplier σ (noise std σ·C on a sum of gradients
clipped to norm C) is (α, ε_α)-RDP with (Mironov, Talwar & Zhang 2019, "Rényi Differential
Privacy of the Sampled Gaussian Mechanism")

    ε_α = log(A_α) / (α − 1),   A_α = E_{z ~ N(0, σ²)} [ (1 − q + q·r(z))^α ],
    r(z) = exp((2z − 1) / (2σ²))   (the density ratio N(1, σ²) / N(0, σ²)).

Integer α: expand the power binomially; every term is a Gaussian moment in closed form.
Fractional α: the binomial series of (1 − q + q·r)^α converges only where q·r < 1 − q, i.e. below
z0 = σ²·log(1/q − 1) + 1/2; above z0 expand in powers of (1 − q)/(q·r) instead. Each term is then
a Gaussian tail integral (an erfc), and the two series together give A_α.

RDP adds up over steps; (ε, δ) comes from the best order, by Canonne, Kamath & Steinke 2020
("The Discrete Gaussian for Differential Privacy", Prop. 12):
    ε = ε_α + log((α − 1)/α) − (log δ + log α)/(α − 1),
or the classic conversion ε = ε_α + log(1/δ)/(α − 1) (Mironov 2017, Prop. 3).

All sums run in log space: with small q and large σ the terms span hundreds of orders of
magnitude.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

# Orders searched for the tightest (ε, δ): fine steps where large-ε runs find their optimum,
# integers above, a few large ones for strongly private (large σ) runs.
DEFAULT_ORDERS: tuple = tuple(1 + i / 8 for i in range(1, 80)) + tuple(float(a) for a in range(11, 65)) + (80.0, 96.0, 128.0, 256.0, 512.0)

CONVERSIONS = ("improved", "classic")

# A series stops once its terms fall this many nats below the running sum (~1e-13 relative).
_SERIES_TOLERANCE_NATS = 30.0
_MAX_SERIES_TERMS = 1_000_000


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))


def _log_sub(a: float, b: float) -> float:
    """log(exp(a) − exp(b)) for a >= b."""
    if b == -math.inf:
        return a
    if b > a:
        raise ArithmeticError("log of a negative number")
    if b == a:
        return -math.inf
    return a + math.log(-math.expm1(b - a))


def _log_erfc(x: float) -> float:
    """log(erfc(x)), accurate where erfc underflows (x beyond ~26)."""
    if x < 20.0:
        return math.log(math.erfc(x))
    # Asymptotic series: erfc(x) = exp(−x²)/(x√π) · (1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶) + ...).
    inv = 1.0 / (x * x)
    return -x * x - math.log(x * math.sqrt(math.pi)) + math.log1p(-0.5 * inv + 0.75 * inv**2 - 1.875 * inv**3)


def _log_a_integer(sigma: float, q: float, alpha: int) -> float:
    """log A_α for integer α: Σ_k C(α,k) (1−q)^(α−k) q^k exp((k² − k)/(2σ²))."""
    total = -math.inf
    for k in range(alpha + 1):
        log_binom = math.lgamma(alpha + 1) - math.lgamma(k + 1) - math.lgamma(alpha - k + 1)
        term = log_binom + k * math.log(q) + (alpha - k) * math.log1p(-q) + (k * k - k) / (2 * sigma**2)
        total = _log_add(total, term)
    return total


def _log_a_fractional(sigma: float, q: float, alpha: float) -> float:
    """log A_α for fractional α: the two binomial series split at z0 (see the module docstring).

    Below z0, term k is C(α,k) q^k (1−q)^(α−k) ∫_{−∞}^{z0} N(z; 0,σ²) r(z)^k dz, and
    N(z; 0,σ²) r(z)^k = exp((k² − k)/(2σ²)) N(z; k,σ²), so the integral is that factor times
    ½·erfc((k − z0)/(σ√2)). Above z0, term k is the same with j = α − k powers of q·r:
    C(α,k) q^j (1−q)^k exp((j² − j)/(2σ²)) ½·erfc((z0 − j)/(σ√2)).
    Binomial coefficients of a fractional α change sign once k > α, so positive and negative
    terms are summed separately.
    """
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    root2_sigma = math.sqrt(2) * sigma
    log_q, log_1mq = math.log(q), math.log1p(-q)
    positive, negative = -math.inf, -math.inf
    log_binom, sign = 0.0, 1.0  # C(α, 0) = 1
    for k in range(_MAX_SERIES_TERMS):
        j = alpha - k
        below = log_binom + k * log_q + j * log_1mq + (k * k - k) / (2 * sigma**2) + math.log(0.5) + _log_erfc((k - z0) / root2_sigma)
        above = log_binom + j * log_q + k * log_1mq + (j * j - j) / (2 * sigma**2) + math.log(0.5) + _log_erfc((z0 - j) / root2_sigma)
        if sign > 0:
            positive = _log_add(positive, _log_add(below, above))
        else:
            negative = _log_add(negative, _log_add(below, above))
        if k > alpha and max(below, above) < positive - _SERIES_TOLERANCE_NATS:
            return _log_sub(positive, negative)
        # C(α, k+1) = C(α, k)·(α − k)/(k + 1)
        log_binom += math.log(abs(alpha - k)) - math.log(k + 1)
        sign *= 1.0 if alpha - k > 0 else -1.0
    raise ArithmeticError(f"RDP series did not converge (sigma={sigma}, q={q}, alpha={alpha})")


def subsampled_gaussian_rdp(noise_multiplier: float, sample_rate: float, order: float) -> float:
    """RDP ε_α of ONE step of the Poisson-subsampled Gaussian mechanism (sensitivity 1)."""
    sigma, q, alpha = noise_multiplier, sample_rate, order
    if sigma <= 0:
        raise ValueError("noise_multiplier must be positive")
    if not 0 <= q <= 1:
        raise ValueError("sample_rate must be in [0, 1]")
    if alpha <= 1:
        raise ValueError("RDP orders must be above 1")
    if q == 0:
        return 0.0
    if q == 1:
        return alpha / (2 * sigma**2)  # the plain Gaussian mechanism
    if float(alpha).is_integer():
        log_a = _log_a_integer(sigma, q, int(alpha))
    else:
        log_a = _log_a_fractional(sigma, q, float(alpha))
    return max(log_a, 0.0) / (alpha - 1)


def epsilon_from_rdp(orders: Sequence[float], rdp: Sequence[float], delta: float, conversion: str = "improved") -> tuple[float, float]:
    """The smallest ε over `orders` for which RDP values `rdp` imply (ε, δ)-DP; returns (ε, order)."""
    if not 0 < delta < 1:
        raise ValueError("delta must be in (0, 1)")
    if conversion not in CONVERSIONS:
        raise ValueError(f"conversion must be one of {CONVERSIONS}")
    best = (math.inf, math.nan)
    for alpha, value in zip(orders, rdp):
        if conversion == "improved":
            eps = value + math.log1p(-1 / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)
        else:
            eps = value + math.log(1 / delta) / (alpha - 1)
        if eps < best[0]:
            best = (eps, alpha)
    return max(best[0], 0.0), best[1]


class SubsampledGaussianAccountant:
    """DP-SGD's privacy spend: per-step RDP computed once per order, composed for any step count."""

    def __init__(self, noise_multiplier: float, sample_rate: float, orders: Sequence[float] = DEFAULT_ORDERS):
        self.noise_multiplier = noise_multiplier
        self.sample_rate = sample_rate
        self.orders = tuple(orders)
        self.rdp_per_step = tuple(subsampled_gaussian_rdp(noise_multiplier, sample_rate, a) for a in self.orders)

    def epsilon(self, steps: int, delta: float, conversion: str = "improved") -> tuple[float, Optional[float]]:
        """(ε, best order) after `steps` steps: RDP composes additively. No steps, no order."""
        if steps <= 0:
            return 0.0, None
        return epsilon_from_rdp(self.orders, [steps * r for r in self.rdp_per_step], delta, conversion)
