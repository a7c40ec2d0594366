r"""Innovation distributions: normal, Student-t and Hansen's skewed Student-t, one class each.

:math:`z_t = \epsilon_t/\sigma_t` has zero mean and unit variance. Each distribution is a small
frozen dataclass that states its shape parameters (names, bounds, starting values) and supplies
its **numba pieces** — the log-density of one observation as a function of :math:`\sigma^2_t`,
its derivative :math:`\partial\ell_t/\partial\sigma^2_t`, and the scores of its shape parameters —
which the likelihood pass inlines (see :mod:`.likelihood`).

Log-density of :math:`\epsilon_t` given :math:`\sigma^2_t`:

* :class:`Normal`: :math:`-\tfrac12(\ln 2\pi + \ln\sigma^2_t + \epsilon_t^2/\sigma^2_t)`;
* :class:`StudentT` (standardised, ν > 2; Bollerslev 1987):
  :math:`\ln\frac{\Gamma((\nu+1)/2)}{\Gamma(\nu/2)\sqrt{\pi(\nu-2)}} - \tfrac12\ln\sigma^2_t
  - \frac{\nu+1}2\ln\left(1 + \frac{\epsilon_t^2}{(\nu-2)\sigma^2_t}\right)`;
* :class:`SkewStudentT` (Hansen 1994, η > 2, -1 < λ < 1), with :math:`z = \epsilon_t/\sigma_t`:
  :math:`\ln b + \ln c - \tfrac12\ln\sigma^2_t - \frac{\eta+1}2\ln\left(1 + \frac1{\eta-2}
  \left(\frac{bz + a}{1 + \lambda\,\mathrm{sgn}(z + a/b)}\right)^2\right)`,
  :math:`c = \frac{\Gamma((\eta+1)/2)}{\Gamma(\eta/2)\sqrt{\pi(\eta-2)}}`,
  :math:`a = 4\lambda c\frac{\eta-2}{\eta-1}`, :math:`b^2 = 1 + 3\lambda^2 - a^2`
  (λ < 0: a longer left tail), as ``arch``'s ``SkewStudent``.

Numba pieces (one ``@njit(cache=True)`` function each, named ``_<dist>_<piece>``)
--------------------------------------------------------------------------------
``shape(theta, k0)`` -> tuple c of constants from the shape parameters ``theta[k0:]``;
``obs(x, s2, inv, c)`` -> ``(q, dl, terms)`` for one observation x with variance s2 (inv = 1/s2):
q the factor whose log enters with weight -(shape+1)/2 (1 for the normal; the pass sums its logs
by blocks), dl = ∂ℓ/∂σ², ``terms`` what the shape scores need; ``acc_zero()``,
``acc_add(acc, terms)``; ``finish(sum_log_s2, sum_log_q, acc, c)`` -> (log-likelihood without
constants, tuple of shape scores without constants); ``constant(n, c)`` (the constants of n
observations); ``grad_store(out, k0, g, n, c)`` (the shape scores with their constants into
``out[k0:]``); ``scores(out, k0, q, terms, c)`` (one observation's shape scores).

Log Gamma and digamma are computed here by recurrence and series (|error| < 1e-13 against
scipy), so that the constants are one function each, compiled or not.

References: Bollerslev (1987), "A conditionally heteroskedastic time series model for
speculative prices and rates of return", Rev. Econ. Stat. 69(3); Hansen (1994), "Autoregressive
conditional density estimation", International Economic Review 35(3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from .._numba import njit

__all__ = ["Distribution", "Normal", "StudentT", "SkewStudentT", "DistributionKernels", "DISTRIBUTIONS", "lgamma",
           "digamma"]


class DistributionKernels(NamedTuple):
    """The numba pieces of one distribution (see the module docstring)."""

    shape: object
    obs: object
    acc_zero: object
    acc_add: object
    finish: object
    constant: object
    grad_store: object
    scores: object


@dataclass(frozen=True)
class Distribution:
    """Base class of the innovation distributions.

    Class attributes: ``name``, ``parameter_names`` (shape parameters), ``kernels``
    (:class:`DistributionKernels`), ``lower``/``upper`` (bounds), ``start`` (starting values).
    """

    name: ClassVar[str] = ""
    parameter_names: ClassVar[tuple[str, ...]] = ()
    kernels: ClassVar[DistributionKernels]
    lower: ClassVar[tuple[float, ...]] = ()
    upper: ClassVar[tuple[float, ...]] = ()
    start: ClassVar[tuple[float, ...]] = ()

    def bounds(self) -> list[tuple[float, float]]:
        """Bounds of the shape parameters."""
        return list(zip(self.lower, self.upper, strict=True))


# --------------------------------------------------------------------------- special functions

@njit(cache=True, inline="always")
def lgamma(x):
    """Log Gamma(x), x > 0, by recurrence to x >= 10 and Stirling's series (|error| < 1e-13)."""
    p = 1.0
    while x < 10.0:
        p *= x
        x += 1.0
    f = 1.0 / (x * x)
    series = (1.0 / 12 - f * (1.0 / 360 - f * (1.0 / 1260 - f * (1.0 / 1680 - f / 1188.0)))) / x
    return (x - 0.5) * math.log(x) - x + 0.5 * math.log(2.0 * math.pi) + series - math.log(p)


@njit(cache=True, inline="always")
def digamma(x):
    """Digamma by recurrence to x >= 10 and the asymptotic series (|error| < 1e-13)."""
    r = 0.0
    while x < 10.0:
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return r + math.log(x) - 0.5 / x - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240
                                                                                          - f / 132.0))))


@njit(cache=True, inline="always")
def _t_log_constant(nu):
    """Log normalising constant of the standardised t: ln Γ((ν+1)/2) - ln Γ(ν/2) - ln(π(ν-2))/2."""
    return lgamma(0.5 * (nu + 1)) - lgamma(0.5 * nu) - 0.5 * math.log(math.pi * (nu - 2))


@njit(cache=True, inline="always")
def _t_log_constant_score(nu):
    """d/dν of :func:`_t_log_constant`: ψ((ν+1)/2)/2 - ψ(ν/2)/2 - 1/(2(ν-2))."""
    return 0.5 * digamma(0.5 * (nu + 1.0)) - 0.5 * digamma(0.5 * nu) - 0.5 / (nu - 2.0)


# --------------------------------------------------------------------------- normal

@njit(cache=True, inline="always")
def _normal_shape(theta, k0):
    return ()


@njit(cache=True, inline="always")
def _normal_obs(x, s2, inv, c):
    u = x * x * inv
    return 1.0, 0.5 * inv * (u - 1.0), (u,)


@njit(cache=True, inline="always")
def _normal_acc_zero():
    return (0.0,)


@njit(cache=True, inline="always")
def _normal_acc_add(acc, terms):
    return (acc[0] + terms[0],)


@njit(cache=True, inline="always")
def _normal_finish(sum_log_s2, sum_log_q, acc, c):
    return -0.5 * (sum_log_s2 + acc[0]), ()


@njit(cache=True, inline="always")
def _normal_constant(n, c):
    return -0.5 * n * math.log(2 * math.pi)


@njit(cache=True, inline="always")
def _normal_grad_store(out, k0, g, n, c):
    return None


@njit(cache=True, inline="always")
def _normal_scores(out, k0, q, terms, c):
    return None


@dataclass(frozen=True)
class Normal(Distribution):
    """Standard normal innovations (Gaussian quasi-maximum likelihood)."""

    name: ClassVar[str] = "normal"
    kernels: ClassVar[DistributionKernels] = DistributionKernels(
        _normal_shape, _normal_obs, _normal_acc_zero, _normal_acc_add, _normal_finish, _normal_constant,
        _normal_grad_store, _normal_scores)


# --------------------------------------------------------------------------- Student-t

@njit(cache=True, inline="always")
def _t_shape(theta, k0):
    nu = theta[k0]
    return nu, 1.0 / (nu - 2.0), _t_log_constant_score(nu)


@njit(cache=True, inline="always")
def _t_obs(x, s2, inv, c):
    nu, inv_nu2 = c[0], c[1]
    u = x * x * inv
    q = 1.0 + u * inv_nu2
    zq = u * inv_nu2 / q
    return q, 0.5 * inv * ((nu + 1.0) * zq - 1.0), (zq,)


@njit(cache=True, inline="always")
def _t_finish(sum_log_s2, sum_log_q, acc, c):
    nu, inv_nu2 = c[0], c[1]
    ll = -0.5 * sum_log_s2 - 0.5 * (nu + 1.0) * sum_log_q
    return ll, (-0.5 * sum_log_q + 0.5 * (nu + 1.0) * inv_nu2 * acc[0],)


@njit(cache=True, inline="always")
def _t_constant(n, c):
    return n * _t_log_constant(c[0])


@njit(cache=True, inline="always")
def _t_grad_store(out, k0, g, n, c):
    out[k0] = g[0] + n * c[2]


@njit(cache=True, inline="always")
def _t_scores(out, k0, q, terms, c):
    nu, inv_nu2 = c[0], c[1]
    out[k0] = c[2] - 0.5 * math.log(q) + 0.5 * (nu + 1.0) * terms[0] * inv_nu2


@dataclass(frozen=True)
class StudentT(Distribution):
    """Standardised Student-t innovations with ν > 2 degrees of freedom (Bollerslev 1987).

    ν in [2.05, 500] (``arch``'s bounds), started at 8.
    """

    name: ClassVar[str] = "t"
    parameter_names: ClassVar[tuple[str, ...]] = ("nu",)
    kernels: ClassVar[DistributionKernels] = DistributionKernels(
        _t_shape, _t_obs, _normal_acc_zero, _normal_acc_add, _t_finish, _t_constant, _t_grad_store, _t_scores)
    lower: ClassVar[tuple[float, ...]] = (2.05,)
    upper: ClassVar[tuple[float, ...]] = (500.0,)
    start: ClassVar[tuple[float, ...]] = (8.0,)


# --------------------------------------------------------------------------- Hansen's skewed Student-t

@njit(cache=True, inline="always")
def _skewt_shape(theta, k0):
    """Constants of Hansen's density and their derivatives with respect to (η, λ).

    Returns (η, λ, a, b, 1/(η-2), -a/b, a_η, a_λ, b_η, b_λ, d(ln b + ln c)/dη, d ln b/dλ, ln b + ln c,
    1/(1+λ), 1/(1-λ)).
    """
    eta, lam = theta[k0], theta[k0 + 1]
    lc = _t_log_constant(eta)
    lc_eta = _t_log_constant_score(eta)
    c = math.exp(lc)
    r = (eta - 2.0) / (eta - 1.0)
    a = 4.0 * lam * c * r
    b = math.sqrt(1.0 + 3.0 * lam * lam - a * a)
    a_eta = 4.0 * lam * c * (lc_eta * r + 1.0 / ((eta - 1.0) * (eta - 1.0)))
    a_lam = 4.0 * c * r
    b_eta = -a * a_eta / b
    b_lam = (3.0 * lam - a * a_lam) / b
    return (eta, lam, a, b, 1.0 / (eta - 2.0), -a / b, a_eta, a_lam, b_eta, b_lam, b_eta / b + lc_eta, b_lam / b,
            math.log(b) + lc, 1.0 / (1.0 + lam), 1.0 / (1.0 - lam))


@njit(cache=True, inline="always")
def _skewt_obs(x, s2, inv, c):
    eta, a, b, inv_e2, threshold = c[0], c[2], c[3], c[4], c[5]
    z = x * math.sqrt(inv)
    up = z >= threshold  # s = 1 + λ sgn(z + a/b)
    sgn = 1.0 if up else -1.0
    inv_s = c[13] if up else c[14]
    w = (b * z + a) * inv_s
    q = 1.0 + w * w * inv_e2
    rq = 1.0 / q
    wsq = w * inv_s * rq  # w / (s q)
    m = wsq * b * z * inv_e2  # (η+1) m - 1 = 2 σ² dl
    return q, 0.5 * inv * ((eta + 1.0) * m - 1.0), (wsq * z, wsq, w * w * rq, wsq * w * sgn)


@njit(cache=True, inline="always")
def _skewt_acc_zero():
    return 0.0, 0.0, 0.0, 0.0


@njit(cache=True, inline="always")
def _skewt_acc_add(acc, terms):
    return acc[0] + terms[0], acc[1] + terms[1], acc[2] + terms[2], acc[3] + terms[3]


@njit(cache=True, inline="always")
def _skewt_log_q_scores(acc, c):
    """(d/dη, d/dλ) of the sum of ln q over the terms summed in ``acc``."""
    inv_e2, a_eta, a_lam, b_eta, b_lam = c[4], c[6], c[7], c[8], c[9]
    d_eta = 2.0 * inv_e2 * (b_eta * acc[0] + a_eta * acc[1]) - inv_e2 * inv_e2 * acc[2]
    d_lam = 2.0 * inv_e2 * (b_lam * acc[0] + a_lam * acc[1] - acc[3])
    return d_eta, d_lam


@njit(cache=True, inline="always")
def _skewt_finish(sum_log_s2, sum_log_q, acc, c):
    eta = c[0]
    d_eta, d_lam = _skewt_log_q_scores(acc, c)
    ll = -0.5 * sum_log_s2 - 0.5 * (eta + 1.0) * sum_log_q
    return ll, (-0.5 * sum_log_q - 0.5 * (eta + 1.0) * d_eta, -0.5 * (eta + 1.0) * d_lam)


@njit(cache=True, inline="always")
def _skewt_constant(n, c):
    return n * c[12]


@njit(cache=True, inline="always")
def _skewt_grad_store(out, k0, g, n, c):
    out[k0] = g[0] + n * c[10]
    out[k0 + 1] = g[1] + n * c[11]


@njit(cache=True, inline="always")
def _skewt_scores(out, k0, q, terms, c):
    eta = c[0]
    d_eta, d_lam = _skewt_log_q_scores(terms, c)
    out[k0] = c[10] - 0.5 * math.log(q) - 0.5 * (eta + 1.0) * d_eta
    out[k0 + 1] = c[11] - 0.5 * (eta + 1.0) * d_lam


@dataclass(frozen=True)
class SkewStudentT(Distribution):
    """Hansen's (1994) skewed Student-t, standardised, as ``arch``'s ``SkewStudent``.

    Shape η in [2.05, 300] (``arch``'s bounds) and skewness λ in [-0.99, 0.99] (``arch``: (-1, 1));
    started at (8, 0).
    """

    name: ClassVar[str] = "skewt"
    parameter_names: ClassVar[tuple[str, ...]] = ("eta", "lambda")
    kernels: ClassVar[DistributionKernels] = DistributionKernels(
        _skewt_shape, _skewt_obs, _skewt_acc_zero, _skewt_acc_add, _skewt_finish, _skewt_constant, _skewt_grad_store,
        _skewt_scores)
    lower: ClassVar[tuple[float, ...]] = (2.05, -0.99)
    upper: ClassVar[tuple[float, ...]] = (300.0, 0.99)
    start: ClassVar[tuple[float, ...]] = (8.0, 0.0)


#: distribution classes by the name ``fhs_garch(dist=...)`` uses
DISTRIBUTIONS: dict[str, type[Distribution]] = {d.name: d for d in (Normal, StudentT, SkewStudentT)}
