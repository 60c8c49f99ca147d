"""Student t and noncentral t distributions without scipy (the toolkit does not depend on it).

- :func:`betainc`: the regularised incomplete beta I_x(a, b), by the continued fraction of
  Numerical Recipes (modified Lentz), using the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where
  the fraction converges slowly. Relative accuracy ~1e-12 for the a, b of a t distribution.
- :func:`t_cdf`: P(T <= t) for Student t with ``df`` degrees of freedom (df > 0, real: Welch's
  df is not an integer): 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t > 0.
- :func:`t_ppf`: its inverse, by bisection on :func:`t_cdf` (monotone, so bisection is safe).
- :func:`nct_cdf`: the noncentral t, T = (Z + nc) / S with S = sqrt(V / df), V ~ chi^2_df:
  P(T <= t) = E_S[Phi(t S - nc)], integrated numerically (Simpson) over the density of S.
  Accurate to ~1e-6, enough for power.
- :func:`t_test_power`: two-sided power of a t test whose estimate has noncentrality
  delta / se and ``df`` degrees of freedom (both tails counted).
"""
from __future__ import annotations

import math

import numpy as np

_ERF = np.frompyfunc(math.erf, 1, 1)


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for x={x}, a={a}, b={b}")


def betainc(x: float, a: float, b: float) -> float:
    """Regularised incomplete beta I_x(a, b) for 0 <= x <= 1, a, b > 0."""
    if not 0.0 <= x <= 1.0 or a <= 0 or b <= 0:
        raise ValueError(f"betainc needs 0 <= x <= 1 and a, b > 0 (got x={x}, a={a}, b={b})")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def t_cdf(t: float, df: float) -> float:
    if df <= 0:
        raise ValueError(f"t distribution needs df > 0 (got {df})")
    tail = 0.5 * betainc(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The p quantile of Student t with ``df`` degrees of freedom (0 < p < 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_ppf needs 0 < p < 1 (got {p})")
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > p:
        lo *= 2.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


def nct_cdf(t: float, df: float, nc: float, points: int = 4001) -> float:
    """P(T <= t) for the noncentral t with ``df`` degrees of freedom and noncentrality ``nc``."""
    if df <= 0:
        raise ValueError(f"t distribution needs df > 0 (got {df})")
    # S = sqrt(chi^2_df / df): mean ~1, sd ~1/sqrt(2 df); its density is negligible past top
    top = 1.0 + 12.0 / math.sqrt(df) + (10.0 if df < 3 else 0.0)
    s = np.linspace(0.0, top, points if points % 2 else points + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        power_of_s = np.where(s > 0, (df - 1.0) * np.log(s), 0.0 if df == 1 else -np.inf if df > 1 else np.inf)
    log_f = (math.log(2.0) + (df / 2.0) * math.log(df / 2.0) - math.lgamma(df / 2.0)
             + power_of_s - df * s * s / 2.0)
    dens = np.exp(log_f)
    dens[0] = dens[0] if np.isfinite(dens[0]) else 0.0  # df < 1: an integrable spike at 0, left out
    phi = 0.5 * (1.0 + _ERF((t * s - nc) / math.sqrt(2.0)).astype(np.float64))
    w = np.ones_like(s)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return float(min(1.0, max(0.0, (s[1] - s[0]) / 3.0 * np.sum(w * dens * phi))))


def t_test_power(delta: float, se: float, df: float, alpha: float = 0.05) -> float:
    """Power of the two-sided level-``alpha`` t test when the true difference is ``delta`` and
    its estimate has standard error ``se`` on ``df`` degrees of freedom."""
    crit = t_ppf(1.0 - alpha / 2.0, df)
    nc = delta / se
    return 1.0 - nct_cdf(crit, df, nc) + nct_cdf(-crit, df, nc)


def detectable_difference(se: float, df: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true difference a two-sided level-``alpha`` t test finds with ``power``,
    given the standard error of the estimate and its df (noncentral t, by bisection)."""
    if se <= 0:
        return 0.0
    lo, hi = 0.0, se
    while t_test_power(hi, se, df, alpha) < power:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if t_test_power(mid, se, df, alpha) < power:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
