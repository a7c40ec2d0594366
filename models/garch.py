r"""Volatility filters: GARCH(1,1), GJR-GARCH(1,1,1) and EWMA, with normal or Student-t innovations.

Zero-mean returns :math:`\epsilon_t` (scaled to percent, ``scale=100``) follow
:math:`\epsilon_t = \sigma_t z_t` with

* GARCH(1,1) (Bollerslev 1986): :math:`\sigma^2_t = \omega + \alpha\epsilon^2_{t-1} + \beta\sigma^2_{t-1}`;
* GJR-GARCH(1,1,1) (Glosten, Jagannathan and Runkle 1993):
  :math:`\sigma^2_t = \omega + (\alpha + \gamma 1[\epsilon_{t-1}<0])\epsilon^2_{t-1} + \beta\sigma^2_{t-1}`;
* EWMA (RiskMetrics 1996): :math:`\sigma^2_t = \lambda\sigma^2_{t-1} + (1-\lambda)\epsilon^2_{t-1}`, λ fixed.

The recursion starts from arch's backcast, :math:`\hat\sigma^2_0 = \sum_{i<\tau} w_i\epsilon_i^2`
with :math:`w_i \propto 0.94^i`, τ = min(75, n), used for both the lagged
variance and the lagged squared shock (half of it for the asymmetric term), so
log-likelihoods are comparable with ``arch.arch_model(..., mean="Zero")``.
:math:`z_t` is standard normal or standardised Student-t with ν > 2 degrees of freedom.

Estimation is maximum likelihood with the **analytic gradient** of the
log-likelihood (derivatives of the variance recursion carried alongside it):
cold fits by SLSQP with the analytic Jacobian of the linear constraints
:math:`\alpha + \gamma/2 + \beta \le 1` (stationarity, boundary allowed: crypto
Student-t fits often sit on it) and :math:`\alpha + \gamma \ge 0`; warm (daily) fits
by a projected-BFGS kernel from the previous parameters (previous inverse Hessian) and
from the three best grid points (inverse BHHH matrix of Berndt, Hall, Hall and Hausman
1974 as the starting inverse Hessian), keeping the best. The
recursion and gradient are ``@njit(cache=True)`` kernels with plain-Python twins
(``MARGINLAB_DISABLE_NUMBA=1`` forces the twins); tests assert they agree and
that estimates match ``arch``.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from .pricing import NUMBA_ENABLED

__all__ = ["GarchSpec", "FilterFit", "backcast", "garch_recursion", "loglik_and_grad", "bfgs_fit", "fit_filter",
           "simulate_paths"]

if NUMBA_ENABLED:
    from numba import njit
else:  # pragma: no cover
    def njit(*args, **kwargs):
        def wrap(f):
            return f
        return wrap

BOUNDARY_TOL = 1e-6  # persistence within this of 1 counts as "on the stationarity boundary"
#: BFGS convergence: scaled projected gradient <= FIT_TOL x (1 + |loglik|); the log-likelihood is then
#: within ~1e-12 relative of its limit (tighter tolerances move it by less than that)
FIT_TOL = 1e-7
#: grid-started restarts stop at this looser tolerance (log-likelihood within ~1e-7 relative, enough
#: to rank the optima they reach); the winning restart is then polished to FIT_TOL
RESTART_TOL = 1e-5
#: a grid restart whose iterate comes within this (scaled, max-norm) distance of an optimum already
#: found that day, at no higher log-likelihood, is in that optimum's basin: it stops there
MERGE_TOL = 1e-2
NU_BOUNDS = (2.05, 500.0)
#: the likelihood passes sum log sigma2_t (and log(1 + z_t^2/(nu-2))) as logs of products of this
#: many terms: one log per block (a log costs as much as ~5 observations of the gradient pass)
_LOG_BLOCK = 32
_LOG_BLOCK_MASK = _LOG_BLOCK - 1


@dataclass(frozen=True)
class GarchSpec:
    """Which filter: ``vol`` in {"garch", "gjr", "ewma"}, ``dist`` in {"normal", "t"}, EWMA ``lam``."""

    vol: str = "garch"
    dist: str = "normal"
    lam: float = 0.94

    def __post_init__(self) -> None:
        if self.vol not in ("garch", "gjr", "ewma"):
            raise ValueError(f"vol must be 'garch', 'gjr' or 'ewma', got {self.vol!r}")
        if self.dist not in ("normal", "t"):
            raise ValueError(f"dist must be 'normal' or 't', got {self.dist!r}")
        if not 0.0 < self.lam < 1.0:
            raise ValueError(f"lam (EWMA lambda) must be in (0, 1), got {self.lam!r}")

    def parameter_names(self) -> list[str]:
        """Names of the estimated parameters, in order."""
        names = {"garch": ["omega", "alpha", "beta"], "gjr": ["omega", "alpha", "gamma", "beta"],
                 "ewma": []}[self.vol]
        return names + (["nu"] if self.dist == "t" else [])

    def bounds(self, var: float) -> list[tuple[float, float]]:
        """Box bounds (as arch: omega in [1e-6 var, 10 var], alpha, beta in [0, 1], gamma in [-1, 2])."""
        b = {"garch": [(1e-6 * var, 10 * var), (0.0, 1.0), (0.0, 1.0)],
             "gjr": [(1e-6 * var, 10 * var), (0.0, 1.0), (-1.0, 2.0), (0.0, 1.0)], "ewma": []}[self.vol]
        return b + ([NU_BOUNDS] if self.dist == "t" else [])

    def constraints(self) -> tuple[np.ndarray, np.ndarray]:
        """Linear constraints ``A @ theta >= b``."""
        k = len(self.parameter_names())
        rows, rhs = [], []
        if self.vol == "garch":
            r = np.zeros(k)
            r[1:3] = -1.0  # -alpha - beta >= -1
            rows.append(r)
            rhs.append(-1.0)
        elif self.vol == "gjr":
            r = np.zeros(k)
            r[1], r[2], r[3] = -1.0, -0.5, -1.0
            rows.append(r)
            rhs.append(-1.0)
            r2 = np.zeros(k)
            r2[1], r2[2] = 1.0, 1.0  # alpha + gamma >= 0
            rows.append(r2)
            rhs.append(0.0)
        return np.array(rows).reshape(len(rows), k), np.array(rhs)

    def starting_values(self, var: float) -> list[np.ndarray]:
        """A small grid of starting values: persistence in {0.5, 0.7, 0.9, 0.98} x alpha in {0.01, 0.05, 0.15}.

        omega = var (1 - persistence); GJR: gamma = 0.05, beta = persistence - alpha - 0.025;
        Student-t: nu = 8. Low alpha catches the second mode of bimodal fits.
        """
        return list(self.starting_grid(var))

    def starting_grid(self, var: float) -> np.ndarray:
        """:meth:`starting_values` as one array (a row per point)."""
        grid, one_minus_persistence = _unit_grid(self.vol, self.dist)
        if self.vol == "ewma":
            return grid.copy()
        return _scaled_grid_k(grid, one_minus_persistence, float(var))


_BACKCAST_WEIGHTS = 0.94 ** np.arange(75)


@functools.cache
def _unit_grid(vol: str, dist: str) -> tuple[np.ndarray, np.ndarray]:
    rows, scale = [], []
    for persistence in (0.50, 0.70, 0.90, 0.98):
        for alpha in (0.01, 0.05, 0.15):
            beta = persistence - alpha
            base = {"garch": [0.0, alpha, beta], "gjr": [0.0, alpha, 0.05, beta - 0.025], "ewma": []}[vol]
            rows.append(base + ([8.0] if dist == "t" else []))
            scale.append(1 - persistence)
    grid = np.array(rows, dtype=float).reshape(len(rows), -1)
    grid.setflags(write=False)
    return grid, np.array(scale)


def backcast(resids: np.ndarray) -> float:
    """Arch's exponential-smoothing backcast of the initial variance.

    sigma2_0 = sum_{i < tau} w_i e_i^2 with w_i = 0.94^i / sum_{j < tau} 0.94^j and tau = min(75, n)
    (arch's ``backcast`` of its GARCH volatility process).
    """
    return float(_backcast_k(np.ascontiguousarray(resids, dtype=float)))


def _backcast_py(resids):
    tau = min(75, resids.size)
    wsum = 0.0
    for i in range(tau):
        wsum += _BACKCAST_WEIGHTS[i]
    s = 0.0
    for i in range(tau):
        s += resids[i] * resids[i] * (_BACKCAST_WEIGHTS[i] / wsum)
    return s


def _mean_square_py(resids):
    s = 0.0
    for i in range(resids.size):
        s += resids[i] * resids[i]
    return s / resids.size


# --------------------------------------------------------------------------- kernels

def _recursion_py(resids, omega, alpha, gamma, beta, bc):
    n = resids.size
    sigma2 = np.empty(n)
    sigma2[0] = omega + (alpha + 0.5 * gamma + beta) * bc
    for t in range(1, n):
        e2 = resids[t - 1] * resids[t - 1]
        neg = 1.0 if resids[t - 1] < 0 else 0.0
        sigma2[t] = omega + (alpha + gamma * neg) * e2 + beta * sigma2[t - 1]
    return sigma2


def _loglik_pass_py(resids, omega, alpha, gamma, beta, nu, bc, student, gjr, blocked):
    """One pass of the likelihood: the variance recursion with its derivatives d sigma2_t / d theta.

    With ``blocked`` the sums of log sigma2_t and log(1 + z_t) are logs of products over blocks
    of ``_LOG_BLOCK`` = 32 terms (one log per block, |error| ~ 32 ulp per block); returns
    ``ok=False`` when a product leaves [1e-280, 1e280] (absurd parameters only) so the caller can redo the pass
    with one log per term.
    """
    n = resids.size
    s2 = omega + (alpha + 0.5 * gamma + beta) * bc
    d0, d1, d2, d3 = 1.0, bc, 0.5 * bc, bc
    g0 = g1 = g2 = g3 = 0.0
    sum_log_s2 = 0.0
    sum_log_q = 0.0
    sum_u = 0.0
    sum_zq = 0.0
    p_s2 = 1.0
    p_q = 1.0
    inv_nu2 = 1.0 / (nu - 2.0) if student else 0.0
    for t in range(n):
        if t > 0:
            e2 = resids[t - 1] * resids[t - 1]
            d0 = 1.0 + beta * d0
            d1 = e2 + beta * d1
            d3 = s2 + beta * d3
            if gjr:
                neg = 1.0 if resids[t - 1] < 0 else 0.0
                d2 = e2 * neg + beta * d2
                s2 = omega + (alpha + gamma * neg) * e2 + beta * s2
            else:
                s2 = omega + alpha * e2 + beta * s2
        inv = 1.0 / s2
        u = resids[t] * resids[t] * inv
        if student:
            q = 1.0 + u * inv_nu2
            zq = u * inv_nu2 / q
            sum_zq += zq
            dl = 0.5 * inv * ((nu + 1.0) * zq - 1.0)
            if blocked:
                p_q *= q
            else:
                sum_log_q += math.log(q)
        else:
            sum_u += u
            dl = 0.5 * inv * (u - 1.0)
        if blocked:
            p_s2 *= s2
            if (t & _LOG_BLOCK_MASK) == _LOG_BLOCK_MASK or t == n - 1:
                if not (1e-280 < p_s2 < 1e280 and p_q < 1e280):
                    return False, 0.0, np.zeros(4), 0.0
                sum_log_s2 += math.log(p_s2)
                sum_log_q += math.log(p_q)
                p_s2 = 1.0
                p_q = 1.0
        else:
            sum_log_s2 += math.log(s2)
        g0 += dl * d0
        g1 += dl * d1
        if gjr:
            g2 += dl * d2
        g3 += dl * d3
    if student:
        ll = -0.5 * sum_log_s2 - 0.5 * (nu + 1.0) * sum_log_q
        dnu = -0.5 * sum_log_q + 0.5 * (nu + 1.0) * inv_nu2 * sum_zq
    else:
        ll = -0.5 * (sum_log_s2 + sum_u)
        dnu = 0.0
    return True, ll, np.array([g0, g1, g2, g3]), dnu


def _loglik_value_py(resids, omega, alpha, gamma, beta, nu, bc, student):
    """Log-likelihood sum without constants or gradient (the starting grid's pass).

    Same terms as :func:`_loglik_pass_py` (logs of 32-term products, per-term logs when a
    product leaves [1e-280, 1e280]) without the derivative recursions.
    """
    n = resids.size
    inv_nu2 = 1.0 / (nu - 2.0) if student else 0.0
    for blocked in (True, False):
        s2 = omega + (alpha + 0.5 * gamma + beta) * bc
        sum_log_s2 = 0.0
        sum_log_q = 0.0
        sum_u = 0.0
        p_s2 = 1.0
        p_q = 1.0
        ok = True
        for t in range(n):
            if t > 0:
                e = resids[t - 1]
                s2 = omega + (alpha + (gamma if e < 0 else 0.0)) * e * e + beta * s2
            u = resids[t] * resids[t] / s2
            if student:
                q = 1.0 + u * inv_nu2
                if blocked:
                    p_q *= q
                else:
                    sum_log_q += math.log(q)
            else:
                sum_u += u
            if blocked:
                p_s2 *= s2
                if (t & _LOG_BLOCK_MASK) == _LOG_BLOCK_MASK or t == n - 1:
                    if not (1e-280 < p_s2 < 1e280 and p_q < 1e280):
                        ok = False
                        break
                    sum_log_s2 += math.log(p_s2)
                    sum_log_q += math.log(p_q)
                    p_s2 = 1.0
                    p_q = 1.0
            else:
                sum_log_s2 += math.log(s2)
        if ok:
            if student:
                return -0.5 * sum_log_s2 - 0.5 * (nu + 1.0) * sum_log_q
            return -0.5 * (sum_log_s2 + sum_u)
    return -np.inf


def _loglik_grad_py(resids, omega, alpha, gamma, beta, nu, bc, student):
    """Log-likelihood sum, its gradient w.r.t. (omega, alpha, gamma, beta) and the per-t part of d/dnu."""
    gjr = gamma != 0.0
    with np.errstate(over="ignore", under="ignore"):  # a block product out of range: redone with per-term logs
        ok, ll, g, dnu = _loglik_pass_py(resids, omega, alpha, gamma, beta, nu, bc, student, gjr, True)
    if not ok:
        ok, ll, g, dnu = _loglik_pass_py(resids, omega, alpha, gamma, beta, nu, bc, student, gjr, False)
    return ll, g, dnu


if NUMBA_ENABLED:
    _recursion_nb = njit(cache=True)(_recursion_py)
    _loglik_value_nb = njit(cache=True)(_loglik_value_py)
    _loglik_pass_nb = njit(cache=True)(_loglik_pass_py)

    def _compiled_pass(student, gjr):
        # flags as closure constants: numba compiles one specialised loop per (student, gjr)
        @njit(cache=True)
        def loglik_pass(resids, omega, alpha, gamma, beta, nu, bc, blocked):  # pragma: no cover - compiled
            return _loglik_pass_nb(resids, omega, alpha, gamma, beta, nu, bc, student, gjr, blocked)
        return loglik_pass

    _PASSES = (_compiled_pass(False, False), _compiled_pass(False, True), _compiled_pass(True, False),
               _compiled_pass(True, True))
    _pass_n, _pass_n_gjr, _pass_t, _pass_t_gjr = _PASSES

    @njit(cache=True)
    def _loglik_grad_nb(resids, omega, alpha, gamma, beta, nu, bc, student):  # pragma: no cover - compiled
        ok = False
        for blocked in (True, False):
            if student:
                if gamma != 0.0:
                    ok, ll, g, dnu = _pass_t_gjr(resids, omega, alpha, gamma, beta, nu, bc, blocked)
                else:
                    ok, ll, g, dnu = _pass_t(resids, omega, alpha, gamma, beta, nu, bc, blocked)
            elif gamma != 0.0:
                ok, ll, g, dnu = _pass_n_gjr(resids, omega, alpha, gamma, beta, nu, bc, blocked)
            else:
                ok, ll, g, dnu = _pass_n(resids, omega, alpha, gamma, beta, nu, bc, blocked)
            if ok:
                break
        return ll, g, dnu


def _lgamma_py(x):
    """Log Gamma(x), x > 0, by recurrence to x >= 10 and Stirling's series (|error| < 1e-13).

    Written out rather than ``math.lgamma`` so that the numba kernel and its Python twin
    round identically (numba's lgamma and CPython's differ in the last bits).
    """
    p = 1.0
    while x < 10.0:
        p *= x
        x += 1.0
    f = 1.0 / (x * x)
    series = (1.0 / 12 - f * (1.0 / 360 - f * (1.0 / 1260 - f * (1.0 / 1680 - f / 1188.0)))) / x
    return (x - 0.5) * math.log(x) - x + 0.5 * math.log(2.0 * math.pi) + series - math.log(p)


def _digamma_py(x):
    """Digamma by recurrence to x >= 10 and the asymptotic series (|error| < 1e-13)."""
    r = 0.0
    while x < 10.0:
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return r + math.log(x) - 0.5 / x - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240
                                                                                          - f / 132.0))))


def _loglik_constant_py(n, nu, student):
    """Constant part of the log-likelihood of n observations.

    Student-t: n (lgamma((nu+1)/2) - lgamma(nu/2) - log(pi (nu-2)) / 2); normal: -n log(2 pi) / 2.
    """
    if student:
        return n * (_lgamma_py(0.5 * (nu + 1)) - _lgamma_py(0.5 * nu) - 0.5 * math.log(math.pi * (nu - 2)))
    return -0.5 * n * math.log(2 * math.pi)


def _nu_score_constant_py(nu):
    """Per-observation constant of d loglik / d nu: psi((nu+1)/2)/2 - psi(nu/2)/2 - 1/(2(nu-2))."""
    return 0.5 * _digamma_py(0.5 * (nu + 1.0)) - 0.5 * _digamma_py(0.5 * nu) - 0.5 / (nu - 2.0)


def _expand_py(theta, vol_code, reduced):
    """Full parameter vector from a reduced one (beta = 1 - alpha - gamma/2 on the boundary)."""
    if not reduced:
        return theta.copy()
    b = 2 if vol_code == 0 else 3
    full = np.empty(theta.size + 1)
    full[:b] = theta[:b]
    full[b + 1:] = theta[b:]
    full[b] = 1.0 - theta[1] - (0.5 * theta[2] if vol_code == 1 else 0.0)
    return full


def _objective_py(theta_in, resids, vol_code, student, bc, loglik_grad, reduced=False):
    """Negative log-likelihood and gradient for the packed parameter vector (kernel-level twin).

    With ``reduced`` the parameters exclude beta, fixed on the stationarity boundary.
    """
    theta = _expand_py(theta_in, vol_code, reduced)
    k = theta.size
    omega, alpha = theta[0], theta[1]
    if vol_code == 0:
        gamma, beta = 0.0, theta[2]
    else:
        gamma, beta = theta[2], theta[3]
    nu = theta[k - 1] if student else 0.0
    ll, g, dnu = loglik_grad(resids, omega, alpha, gamma, beta, nu, bc, student)
    n = resids.size
    grad = np.empty(k)
    grad[0] = g[0]
    grad[1] = g[1]
    if vol_code == 0:
        grad[2] = g[3]
    else:
        grad[2] = g[2]
        grad[3] = g[3]
    ll += _loglik_constant_py(n, nu, student)
    if student:
        grad[k - 1] = dnu + n * _nu_score_constant_py(nu)
    if reduced:
        return -ll, -_reduce_grad_py(grad, vol_code)
    return -ll, -grad


def _reduce_grad_py(grad, vol_code):
    b = 2 if vol_code == 0 else 3
    red = np.empty(grad.size - 1)
    red[:b] = grad[:b]
    red[b:] = grad[b + 1:]
    red[1] -= grad[b]
    if vol_code == 1:
        red[2] -= 0.5 * grad[b]
    return red


def _project_py(theta, lower, upper, vol_code):
    x = np.minimum(np.maximum(theta, lower), upper)
    if vol_code == 1 and x[1] + x[2] < 0.0:
        x[2] = -x[1]
    if vol_code == 0:
        pers = x[1] + x[2]
        if pers > 1.0:
            x[1] /= pers
            x[2] /= pers
    else:
        pers = x[1] + 0.5 * x[2] + x[3]
        if pers > 1.0:
            x[1] /= pers
            x[2] /= pers
            x[3] /= pers
    return x


def _held_at_bound_py(xi, gi, lo, up):
    """True when a variable sits at a bound (within 1e-12) and the gradient of f pushes it out."""
    return (xi <= lo + 1e-12 and gi > 0.0) or (xi >= up - 1e-12 and gi < 0.0)


def _diagonal_scaling_py(x, n):
    """The default inverse Hessian: diag(max(|x_i|, 1e-2)^2 / n)."""
    k = x.size
    h = np.zeros((k, k))
    for i in range(k):
        h[i, i] = max(abs(x[i]), 1e-2) ** 2 / n
    return h


def _bfgs_update_py(h, s, y):
    """BFGS update of the inverse Hessian with step s and gradient change y.

    Nocedal and Wright (2006), eq. 6.17; H is kept when s'y <= 1e-300.
    """
    sy = _dot_k(s, y)
    if sy > 1e-300:
        rho = 1.0 / sy
        hy = _matvec_k(h, y)
        return h - rho * (np.outer(s, hy) + np.outer(hy, s)) + (rho * rho * _dot_k(y, hy) + rho) * np.outer(s, s)
    return h


def _scaled_step_norm(x, g, lower, upper):
    """Largest |g_i| x scale_i over components not held at a bound by the gradient's sign."""
    worst = 0.0
    for i in range(x.size):
        if _held_at_bound_k(x[i], g[i], lower[i], upper[i]):
            continue
        v = abs(g[i]) * max(abs(x[i]), 1e-2)
        if v > worst:
            worst = v
    return worst


def _dot_py(a, b):
    """Dot product as an explicit loop (same rounding in the numba kernel and its twin)."""
    s = 0.0
    for i in range(a.size):
        s += a[i] * b[i]
    return s


def _matvec_py(h, v):
    out = np.empty(v.size)
    for i in range(v.size):
        s = 0.0
        for j in range(v.size):
            s += h[i, j] * v[j]
        out[i] = s
    return out


def _direction_py(h, g, x, lower, upper):
    """Quasi-Newton direction -H g on the free variables.

    A variable held at a bound by the gradient's sign gets no step, and its row and column of H
    are dropped (projected quasi-Newton: Bertsekas 1982, "Projected Newton methods for
    optimization problems with simple constraints", SIAM J. Control Optim. 20(2)). Without
    this, the step into the bound is clipped by the projection and the run stalls short of
    the optimum (BTC GARCH-normal, Sep 2023: alpha = 0 with the log-likelihood 7e-4 short).
    """
    k = g.size
    free = np.empty(k, np.bool_)
    for i in range(k):
        free[i] = not _held_at_bound_k(x[i], g[i], lower[i], upper[i])
    d = np.zeros(k)
    for i in range(k):
        if free[i]:
            acc = 0.0
            for j in range(k):
                if free[j]:
                    acc += h[i, j] * g[j]
            d[i] = -acc
    return d


# the helpers the twins share, compiled when numba is on (the Python twin calls the compiled ones too)
if NUMBA_ENABLED:
    _dot_k, _matvec_k = njit(cache=True)(_dot_py), njit(cache=True)(_matvec_py)
    _held_at_bound_k = njit(cache=True)(_held_at_bound_py)
    _diagonal_scaling_k = njit(cache=True)(_diagonal_scaling_py)
    _bfgs_update_k = njit(cache=True)(_bfgs_update_py)
else:  # pragma: no cover
    _dot_k, _matvec_k, _held_at_bound_k = _dot_py, _matvec_py, _held_at_bound_py
    _diagonal_scaling_k, _bfgs_update_k = _diagonal_scaling_py, _bfgs_update_py


def _backtrack_factor_py(f, fn, slope):
    """Next step as a fraction of the rejected one: minimiser of the quadratic through f, slope and fn.

    Safeguarded to [0.1, 0.5] (Nocedal and Wright 2006, section 3.5); halving when fn is not finite.
    """
    den = 2.0 * (fn - f - slope)
    if not math.isfinite(fn) or den <= 0.0:
        return 0.5
    return min(0.5, max(0.1, -slope / den))


def _merged_with(x, f, known, known_f, merge_tol):
    """Index of the first known optimum whose basin ``x`` has reached; -1 if none.

    Reached: max over i of |x_i - k_i| / max(|k_i|, 1e-2) <= ``merge_tol`` and the objective ``f``
    not below that optimum's: the distance filter of multistart methods (Ugray et al. 2007,
    "Scatter search and local NLP solvers", INFORMS J. Computing 19(3)), applied to the iterates.
    """
    for q in range(known.shape[0]):
        if f < known_f[q]:
            continue
        worst = 0.0
        for i in range(x.size):
            v = abs(x[i] - known[q, i]) / max(abs(known[q, i]), 1e-2)
            if v > worst:
                worst = v
        if worst <= merge_tol:
            return q
    return -1


def _bfgs_generic(theta0, resids, lower, upper, vol_code, student, bc, max_iter, tol, reduced, h0, known, known_f,
                  merge_tol, objective, project, step_norm, merged_with):
    """Projected BFGS with Armijo backtracking and restarts (feasible set: bounds and GARCH constraints).

    Converged when the scaled gradient (components pushing against a bound excluded) is below
    ``tol`` x (1 + |f|), or when f stops changing over three steps. An accepted iterate within
    ``merge_tol`` of a row of ``known`` (optima found earlier from other starts, objectives
    ``known_f``) with f >= that objective stops the run there: it is in that optimum's basin.
    Returns (theta, f, iterations, converged, inverse Hessian, index of the merged optimum or -1).
    """
    k = theta0.size
    x = project(theta0.copy(), lower, upper, vol_code)
    f, g = objective(x, resids, vol_code, student, bc, reduced)
    n = resids.size
    h = _diagonal_scaling_k(x, n)
    if h0.shape[0] == k and h0[0, 0] > 0.0:
        h = h0.copy()
    small = 0
    fresh = True
    for it in range(max_iter):
        if step_norm(x, g, lower, upper) <= tol * (1.0 + abs(f)):
            return x, f, it, True, h, -1
        d = _direction_py(h, g, x, lower, upper)
        if _dot_py(g, d) >= 0.0:
            h = _diagonal_scaling_k(x, n)
            d = _direction_py(h, g, x, lower, upper)
            fresh = True
        step = 1.0
        accepted = False
        xn = x
        fn = f
        gn = g
        while step > 1e-14:
            xn = project(x + step * d, lower, upper, vol_code)
            fn, gn = objective(xn, resids, vol_code, student, bc, reduced)
            slope = _dot_py(g, xn - x)
            if math.isfinite(fn) and fn <= f + 1e-4 * slope:
                accepted = True
                break
            step *= _backtrack_factor_py(f, fn, slope)
        if not accepted:
            if fresh:
                return x, f, it, False, h, -1
            h = _diagonal_scaling_k(x, n)
            fresh = True
            continue
        fresh = False
        h = _bfgs_update_k(h, xn - x, gn - g)
        if abs(f - fn) <= 1e-15 * (1.0 + abs(f)):
            small += 1
        else:
            small = 0
        x, f, g = xn, fn, gn
        q = merged_with(x, f, known, known_f, merge_tol)
        if q >= 0:
            return known[q].copy(), known_f[q], it + 1, True, h, q
        if small >= 3:
            return x, f, it + 1, True, h, -1
    return x, f, max_iter, False, h, -1


def _project_reduced_py(theta, lower, upper, vol_code):
    """Projection for the boundary problem (beta eliminated): bounds, alpha + gamma >= 0, beta in [0, 1]."""
    x = np.minimum(np.maximum(theta, lower), upper)
    if vol_code == 1 and x[1] + x[2] < 0.0:
        x[2] = -x[1]
    lin = x[1] + (0.5 * x[2] if vol_code == 1 else 0.0)
    if lin > 1.0:
        x[1] /= lin
        if vol_code == 1:
            x[2] /= lin
    return x


if NUMBA_ENABLED:
    _digamma_nb = njit(cache=True)(_digamma_py)
    _lgamma_nb = njit(cache=True)(_lgamma_py)

    @njit(cache=True)
    def _loglik_constant_nb(n, nu, student):  # pragma: no cover - compiled twin of _loglik_constant_py
        if student:
            return n * (_lgamma_nb(0.5 * (nu + 1)) - _lgamma_nb(0.5 * nu) - 0.5 * math.log(math.pi * (nu - 2)))
        return -0.5 * n * math.log(2 * math.pi)

    @njit(cache=True)
    def _nu_score_constant_nb(nu):  # pragma: no cover - compiled twin of _nu_score_constant_py
        return 0.5 * _digamma_nb(0.5 * (nu + 1.0)) - 0.5 * _digamma_nb(0.5 * nu) - 0.5 / (nu - 2.0)
    _dot_nb, _matvec_nb = _dot_k, _matvec_k
    _project_nb = njit(cache=True)(_project_py)

    _expand_nb = njit(cache=True)(_expand_py)
    _reduce_grad_nb = njit(cache=True)(_reduce_grad_py)

    @njit(cache=True)
    def _objective_nb(theta_in, resids, vol_code, student, bc, reduced):  # pragma: no cover - compiled
        theta = _expand_nb(theta_in, vol_code, reduced)
        k = theta.size
        omega, alpha = theta[0], theta[1]
        if vol_code == 0:
            gamma, beta = 0.0, theta[2]
        else:
            gamma, beta = theta[2], theta[3]
        nu = theta[k - 1] if student else 0.0
        ll, g, dnu = _loglik_grad_nb(resids, omega, alpha, gamma, beta, nu, bc, student)
        n = resids.size
        grad = np.empty(k)
        grad[0] = g[0]
        grad[1] = g[1]
        if vol_code == 0:
            grad[2] = g[3]
        else:
            grad[2] = g[2]
            grad[3] = g[3]
        ll += _loglik_constant_nb(n, nu, student)
        if student:
            grad[k - 1] = dnu + n * _nu_score_constant_nb(nu)
        if reduced:
            return -ll, -_reduce_grad_nb(grad, vol_code)
        return -ll, -grad

    _project_reduced_nb = njit(cache=True)(_project_reduced_py)
    _scaled_step_norm_nb = njit(cache=True)(_scaled_step_norm)
    _backtrack_factor_nb = njit(cache=True)(_backtrack_factor_py)
    _merged_with_nb = njit(cache=True)(_merged_with)
    _direction_nb = njit(cache=True)(_direction_py)
    @njit(cache=True)
    def _project_any_nb(theta, lower, upper, vol_code, reduced):  # pragma: no cover - compiled
        if reduced:
            return _project_reduced_nb(theta, lower, upper, vol_code)
        return _project_nb(theta, lower, upper, vol_code)

    @njit(cache=True)
    def _bfgs_kernel(theta0, resids, lower, upper, vol_code, student, bc, max_iter, tol, reduced, h0, known, known_f,
                     merge_tol):  # noqa: E501  # pragma: no cover
        """Compiled twin of :func:`_bfgs_generic` (same steps, fixed objective and projection)."""
        k = theta0.size
        x = _project_any_nb(theta0.copy(), lower, upper, vol_code, reduced)
        f, g = _objective_nb(x, resids, vol_code, student, bc, reduced)
        n = resids.size
        h = _diagonal_scaling_k(x, n)
        if h0.shape[0] == k and h0[0, 0] > 0.0:
            h = h0.copy()
        small = 0
        fresh = True
        for it in range(max_iter):
            if _scaled_step_norm_nb(x, g, lower, upper) <= tol * (1.0 + abs(f)):
                return x, f, it, True, h, -1
            d = _direction_nb(h, g, x, lower, upper)
            if _dot_nb(g, d) >= 0.0:
                h = _diagonal_scaling_k(x, n)
                d = _direction_nb(h, g, x, lower, upper)
                fresh = True
            step = 1.0
            accepted = False
            xn = x
            fn = f
            gn = g
            while step > 1e-14:
                xn = _project_any_nb(x + step * d, lower, upper, vol_code, reduced)
                fn, gn = _objective_nb(xn, resids, vol_code, student, bc, reduced)
                slope = _dot_nb(g, xn - x)
                if math.isfinite(fn) and fn <= f + 1e-4 * slope:
                    accepted = True
                    break
                step *= _backtrack_factor_nb(f, fn, slope)
            if not accepted:
                if fresh:
                    return x, f, it, False, h, -1
                h = _diagonal_scaling_k(x, n)
                fresh = True
                continue
            fresh = False
            h = _bfgs_update_k(h, xn - x, gn - g)
            if abs(f - fn) <= 1e-15 * (1.0 + abs(f)):
                small += 1
            else:
                small = 0
            x, f, g = xn, fn, gn
            q = _merged_with_nb(x, f, known, known_f, merge_tol)
            if q >= 0:
                return known[q].copy(), known_f[q], it + 1, True, h, q
            if small >= 3:
                return x, f, it + 1, True, h, -1
        return x, f, max_iter, False, h, -1



def _opg_py(theta, resids, vol_code, student, bc, c_nu):
    """Outer product of the per-observation scores of the log-likelihood at ``theta`` (BHHH matrix).

    Scores in the packed parameter order; ``c_nu`` is the per-observation constant of the
    nu-score, psi((nu+1)/2)/2 - psi(nu/2)/2 - 1/(2(nu-2)). Its inverse is the starting
    inverse Hessian of grid-started fits (Berndt, Hall, Hall and Hausman 1974).
    """
    k = theta.size
    omega, alpha = theta[0], theta[1]
    if vol_code == 0:
        gamma, beta = 0.0, theta[2]
    else:
        gamma, beta = theta[2], theta[3]
    nu = theta[k - 1] if student else 0.0
    n = resids.size
    s2 = omega + (alpha + 0.5 * gamma + beta) * bc
    d0, d1, d2, d3 = 1.0, bc, 0.5 * bc, bc
    m = np.zeros((k, k))
    sc = np.empty(k)
    for t in range(n):
        if t > 0:
            e2 = resids[t - 1] * resids[t - 1]
            neg = 1.0 if resids[t - 1] < 0 else 0.0
            d0 = 1.0 + beta * d0
            d1 = e2 + beta * d1
            d2 = e2 * neg + beta * d2
            d3 = s2 + beta * d3
            s2 = omega + (alpha + gamma * neg) * e2 + beta * s2
        inv = 1.0 / s2
        u = resids[t] * resids[t] * inv
        if student:
            inv_nu2 = 1.0 / (nu - 2.0)
            q = 1.0 + u * inv_nu2
            zq = u * inv_nu2 / q
            dl = 0.5 * inv * ((nu + 1.0) * zq - 1.0)
            sc[k - 1] = c_nu - 0.5 * math.log(q) + 0.5 * (nu + 1.0) * zq * inv_nu2
        else:
            dl = 0.5 * inv * (u - 1.0)
        sc[0] = dl * d0
        sc[1] = dl * d1
        if vol_code == 0:
            sc[2] = dl * d3
        else:
            sc[2] = dl * d2
            sc[3] = dl * d3
        for i in range(k):
            for j in range(k):
                m[i, j] += sc[i] * sc[j]
    return m


def _spd_inverse_py(m):
    """Inverse of a symmetric positive-definite matrix by Cholesky; ``(False, ...)`` if not numerically SPD."""
    k = m.shape[0]
    low = np.zeros((k, k))
    for j in range(k):
        s = m[j, j]
        for p in range(j):
            s -= low[j, p] * low[j, p]
        if not s > 1e-12 * abs(m[j, j]) or not math.isfinite(s):
            return False, np.zeros((k, k))
        low[j, j] = math.sqrt(s)
        for i in range(j + 1, k):
            s = m[i, j]
            for p in range(j):
                s -= low[i, p] * low[j, p]
            low[i, j] = s / low[j, j]
    linv = np.zeros((k, k))  # inverse of the lower factor by forward substitution
    for j in range(k):
        linv[j, j] = 1.0 / low[j, j]
        for i in range(j + 1, k):
            s = 0.0
            for p in range(j, i):
                s -= low[i, p] * linv[p, j]
            linv[i, j] = s / low[i, i]
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            s = 0.0
            for p in range(max(i, j), k):
                s += linv[p, i] * linv[p, j]
            out[i, j] = s
    return True, out


def _opg_start_py(theta, resids, vol_code, student, bc):
    """Starting inverse Hessian for a cold BFGS run: the inverse BHHH matrix, or empty if singular."""
    c_nu = _nu_score_constant_py(theta[theta.size - 1]) if student else 0.0
    ok, h = _spd_inverse_py(_opg_py(theta, resids, vol_code, student, bc, c_nu))
    return h if ok else np.zeros((0, 0))


if NUMBA_ENABLED:
    _opg_nb = njit(cache=True)(_opg_py)
    _spd_inverse_nb = njit(cache=True)(_spd_inverse_py)

    @njit(cache=True)
    def _opg_start_nb(theta, resids, vol_code, student, bc):  # pragma: no cover - compiled
        c_nu = _nu_score_constant_nb(theta[theta.size - 1]) if student else 0.0
        ok, h = _spd_inverse_nb(_opg_nb(theta, resids, vol_code, student, bc, c_nu))
        if ok:
            return h
        return np.zeros((0, 0))

    @njit(cache=True)
    def _multi_fit_nb(starts, h0s, use_h0, tols, resids, lower, upper, vol_code, student, bc, max_iter, merge_tol):  # noqa: E501  # pragma: no cover
        """BFGS fits from several starts (start j to tolerance ``tols[j]``).

        A start that reaches the basin of an optimum found by an earlier one (``merge_tol``) stops there.
        """
        m, k = starts.shape
        xs = np.empty((m, k))
        lls = np.empty(m)
        its = np.empty(m, np.int64)
        oks = np.empty(m, np.bool_)
        hs = np.zeros((m, k, k))
        has_h = np.zeros(m, np.bool_)
        empty = np.zeros((0, 0))
        b = 2 if vol_code == 0 else 3
        keep = np.empty(k - 1, np.int64)
        j = 0
        for i in range(k):
            if i != b:
                keep[j] = i
                j += 1
        known = np.empty((m, k))
        known_f = np.empty(m)
        n_known = 0
        none_known = np.empty((0, k - 1))
        for j in range(m):
            h0 = h0s[j].copy() if use_h0[j] else _opg_start_nb(starts[j], resids, vol_code, student, bc)
            # same steps as bfgs_fit: BFGS, then the reduced problem on the stationarity boundary
            # (one call site of the kernel, so that numba compiles it into this function once)
            x, f, it, ok, h = starts[j].copy(), 0.0, 0, False, h0
            for phase in range(2):
                reduced = phase == 1
                x_in, lo, up, h_in = (x[keep], lower[keep], upper[keep], empty) if reduced else (x, lower, upper, h0)
                kn, kf = (none_known, known_f[:0]) if reduced else (known[:n_known], known_f[:n_known])
                xa, fa, ita, oka, ha, merged = _bfgs_kernel(x_in, resids, lo, up, vol_code, student, bc, max_iter,
                                                            tols[j], reduced, h_in, kn, kf, merge_tol)
                if not reduced:
                    x, f, it, ok, h = xa, fa, ita, oka, ha
                    if merged >= 0:
                        break
                    pers = x[1] + x[2] if vol_code == 0 else x[1] + 0.5 * x[2] + x[3]
                    if pers <= 1.0 - 1e-9:
                        break
                else:
                    full = _expand_nb(xa, vol_code, True)
                    _, g_full = _objective_nb(full, resids, vol_code, student, bc, False)
                    if oka and fa < f or (oka and g_full[b] <= 0.0 and fa <= f):
                        x, f, it, h = full, fa, it + ita, empty
                        ok = bool(g_full[b] <= 0.0)  # else better on the boundary but the optimum is inside
            if ok and merged < 0:
                known[n_known] = x
                known_f[n_known] = f
                n_known += 1
            xs[j] = x
            lls[j] = -f
            its[j] = it
            oks[j] = ok
            if h.shape[0] == k:
                hs[j] = h
                has_h[j] = True
        return xs, lls, its, oks, hs, has_h


def _multi_fit(starts, h0s, use_h0, resids, spec, lower, upper, bc, max_iter=300, tol=FIT_TOL, use_numba=None,
               merge_tol=None):
    """BFGS fits from each row of ``starts``, in order.

    Row j starts from the inverse Hessian ``h0s[j]`` when ``use_h0[j]``, else from the inverse
    BHHH matrix at the start; ``tol`` is one tolerance or one per row. A row whose iterate reaches
    the basin of an optimum found by an earlier row (``merge_tol``, see :func:`_bfgs_generic`)
    returns that optimum (``merge_tol`` None: ``MERGE_TOL``; 0: never). Returns a list of
    ``(theta, loglik, iterations, converged, inv_hessian or None)``.
    """
    vol_code = 0 if spec.vol == "garch" else 1
    student = spec.dist == "t"
    merge_tol = MERGE_TOL if merge_tol is None else merge_tol
    tols = np.full(starts.shape[0], tol, dtype=float) if np.ndim(tol) == 0 else np.asarray(tol, dtype=float)
    use = NUMBA_ENABLED if use_numba is None else (use_numba and NUMBA_ENABLED)
    if use:
        xs, lls, its, oks, hs, has_h = _multi_fit_nb(starts, h0s, use_h0, tols, resids, lower, upper, vol_code,
                                                     student, float(bc), int(max_iter), float(merge_tol))
    else:
        xs, lls, its, oks, hs, has_h = _multi_fit_arrays_py(starts, h0s, use_h0, tols, resids, lower, upper, vol_code,
                                                            student, float(bc), int(max_iter), float(merge_tol))
    return [(xs[j], float(lls[j]), int(its[j]), bool(oks[j]), hs[j] if has_h[j] else None)
            for j in range(starts.shape[0])]


def _multi_fit_arrays_py(starts, h0s, use_h0, tols, resids, lower, upper, vol_code, student, bc, max_iter, merge_tol):
    """Python twin of ``_multi_fit_nb`` (same arguments and arrays returned)."""
    m, k = starts.shape
    xs, lls, its = np.empty((m, k)), np.empty(m), np.empty(m, np.int64)
    oks, hs, has_h = np.empty(m, bool), np.zeros((m, k, k)), np.zeros(m, bool)
    known, known_f = [], []
    for j in range(m):
        h0 = h0s[j] if use_h0[j] else _opg_start_py(starts[j], resids, vol_code, student, bc)
        theta, ll, it, ok, h, merged = _bfgs_fit_py(starts[j], resids, lower, upper, vol_code, student, bc, max_iter,
                                                    tols[j], h0, np.array(known).reshape(-1, k), np.array(known_f),
                                                    merge_tol)
        if ok and merged < 0:
            known.append(theta)
            known_f.append(-ll)
        xs[j], lls[j], its[j], oks[j] = theta, ll, it, ok
        if h is not None and h.shape == (k, k):
            hs[j], has_h[j] = h, True
    return xs, lls, its, oks, hs, has_h


def bfgs_fit(theta0, resids, spec: GarchSpec, bounds, bc: float, max_iter: int = 300, tol: float = FIT_TOL,
             use_numba: bool | None = None, inv_hessian: np.ndarray | None = None):
    """Projected BFGS maximum likelihood from ``theta0`` (used for warm starts).

    Returns ``(theta, loglik, iterations, converged, inv_hessian)``; passing the
    returned inverse-Hessian approximation to the next day's fit (``inv_hessian``)
    cuts its iterations. The numba kernel and its Python twin
    (``use_numba=False``) follow the same steps.
    """
    lower = np.array([b[0] for b in bounds], dtype=float)
    upper = np.array([b[1] for b in bounds], dtype=float)
    vol_code = 0 if spec.vol == "garch" else 1
    student = spec.dist == "t"
    r = np.ascontiguousarray(resids, dtype=float)
    x0 = np.asarray(theta0, dtype=float)
    use = NUMBA_ENABLED if use_numba is None else (use_numba and NUMBA_ENABLED)
    h0 = np.zeros((0, 0)) if inv_hessian is None else np.ascontiguousarray(inv_hessian, dtype=float)
    if use:
        k = x0.size
        h0s = h0.reshape(1, k, k) if h0.shape == (k, k) else np.zeros((1, k, k))  # zeros: the default start
        xs, lls, its, oks, hs, has_h = _multi_fit_nb(x0.reshape(1, k).copy(), h0s, np.ones(1, dtype=bool),
                                                     np.full(1, float(tol)), r, lower, upper, vol_code, student,
                                                     float(bc), int(max_iter), 0.0)
        return xs[0], float(lls[0]), int(its[0]), bool(oks[0]), (hs[0] if has_h[0] else None)
    return _bfgs_fit_py(x0, r, lower, upper, vol_code, student, float(bc), int(max_iter), float(tol), h0,
                        np.zeros((0, x0.size)), np.zeros(0), 0.0)[:5]


def _bfgs_fit_py(x0, r, lower, upper, vol_code, student, bc, max_iter, tol, h0, known, known_f, merge_tol):
    """Python twin of one start of ``_multi_fit_nb``: BFGS, then the reduced problem on the stationarity boundary.

    Returns ``(theta, loglik, iterations, converged, inv_hessian or None, merged index or -1)``.
    """
    def objective(th, rr, vc, st, b, red):
        return _objective_py(th, rr, vc, st, b, _loglik_grad_py, red)

    project, project_red, norm, run = _project_py, _project_reduced_py, _scaled_step_norm, _bfgs_generic
    args = (vol_code, student, float(bc), int(max_iter), float(tol))
    x, f, it, ok, h, merged = run(x0, r, lower, upper, *args, False, h0, known, known_f, merge_tol, objective,
                                  project, norm, _merged_with)
    if merged >= 0:
        return np.asarray(x), -float(f), int(it), bool(ok), np.asarray(h), merged
    b = 2 if vol_code == 0 else 3
    pers = x[1] + x[2] if vol_code == 0 else x[1] + 0.5 * x[2] + x[3]
    if pers > 1.0 - 1e-9:
        # on (or stalled at) the stationarity boundary: optimise on it (beta eliminated), then check the
        # KKT sign: d(-loglik)/d(beta) <= 0 means the constraint is active there
        keep = np.array([i for i in range(x.size) if i != b])
        xr, fr, it2, ok2, _, _ = run(np.asarray(x)[keep], r, lower[keep], upper[keep], *args, True,
                                     np.zeros((0, 0)), np.zeros((0, keep.size)), np.zeros(0), 0.0, objective,
                                     project_red, norm, _merged_with)
        full = _expand_py(np.asarray(xr), vol_code, True)
        _, g_full = objective(full, r, vol_code, student, float(bc), False)
        if ok2 and g_full[b] <= 0.0 and fr <= f:
            return full, -float(fr), int(it + it2), True, None, -1
        if ok2 and fr < f:
            # better on the boundary but the KKT sign says the optimum is inside: not converged
            return full, -float(fr), int(it + it2), False, None, -1
    return np.asarray(x), -float(f), int(it), bool(ok), np.asarray(h), -1


def _grid_ll_py(grid, resids, vol_code, student, bc):
    """Log-likelihood (with constants) at each row of ``grid``; -inf where not finite."""
    out = np.empty(grid.shape[0])
    n = resids.size
    k = grid.shape[1]
    for j in range(grid.shape[0]):
        th = grid[j]
        gamma, beta = (0.0, th[2]) if vol_code == 0 else (th[2], th[3])
        nu = th[k - 1] if student else 0.0
        ll = _loglik_value_k(resids, th[0], th[1], gamma, beta, nu, bc, student) + _loglik_constant_k(n, nu, student)
        out[j] = ll if math.isfinite(ll) else -np.inf
    return out


def _scaled_grid_py(unit_grid, grid_scale, var):
    """The starting grid at sample variance ``var``: omega = var (1 - persistence) in column 0."""
    grid = unit_grid.copy()
    for j in range(grid.shape[0]):
        grid[j, 0] = var * grid_scale[j]
    return grid


def _warm_fit_py(r, warm, warm_h, use_h, unit_grid, grid_scale, lower_unit, upper_unit, vol_code, student, max_iter,
                 fit_tol, restart_tol, merge_tol):
    """One day's warm-started fit (see :func:`fit_filter`), in one call; compiled as ``_warm_fit_nb``.

    Backcast and sample variance; bounds and starting grid scaled by the variance; the grid ranked
    by log-likelihood; BFGS from the previous optimum (to ``fit_tol``) and from the three best grid
    points (to ``restart_tol``, merged into optima already found within ``merge_tol``); a restart
    that beats the warm run by more than 1e-9 relative wins and is polished to ``fit_tol``.
    Returns (backcast, variance, theta, loglik, iterations, converged, inverse Hessian, has one,
    index of the best grid point).
    """
    k = warm.size
    bc = _backcast_k(r)
    var = _mean_square_k(r)
    lower = lower_unit.copy()
    upper = upper_unit.copy()
    lower[0] = lower_unit[0] * var
    upper[0] = upper_unit[0] * var
    grid = _scaled_grid_k(unit_grid, grid_scale, var)
    order = np.argsort(-_grid_ll_k(grid, r, vol_code, student, bc), kind="mergesort")
    starts = np.empty((4, k))
    starts[0] = warm
    for j in range(3):
        starts[j + 1] = grid[order[j]]
    h0s = np.zeros((4, k, k))
    use_h0 = np.zeros(4, np.bool_)
    if use_h:
        h0s[0] = warm_h
        use_h0[0] = True
    tols = np.full(4, restart_tol)
    tols[0] = fit_tol
    xs, lls, its, oks, hs, has_h = _multi_fit_k(starts, h0s, use_h0, tols, r, lower, upper, vol_code, student, bc,
                                                max_iter, merge_tol)
    best = 0
    nit = its[0]
    for j in range(1, 4):  # the three best grid points, as for a cold fit
        nit += its[j]
        ll = lls[best]
        better = not oks[best] or not math.isfinite(ll) or lls[j] > ll + 1e-9 * abs(ll)
        if oks[j] and math.isfinite(lls[j]) and better:
            best = j
    theta, ll, ok, h, hh = xs[best].copy(), lls[best], oks[best], hs[best].copy(), has_h[best]
    if best > 0:
        px, pl, pi, po, ph, phh = _multi_fit_k(theta.reshape(1, k).copy(), h.reshape(1, k, k).copy(),
                                               np.full(1, hh), np.full(1, fit_tol), r, lower, upper, vol_code,
                                               student, bc, max_iter, merge_tol)
        nit += pi[0]
        if po[0] and math.isfinite(pl[0]) and pl[0] >= ll:
            theta, ll, ok, h, hh = px[0].copy(), pl[0], po[0], ph[0].copy(), phh[0]
    return bc, var, theta, ll, nit, ok, h, hh, order[0]


# the kernels the one-source functions above call: compiled ones when numba is on
if NUMBA_ENABLED:
    _backcast_k = njit(cache=True)(_backcast_py)
    _mean_square_k = njit(cache=True)(_mean_square_py)
    _loglik_value_k, _loglik_constant_k, _multi_fit_k = _loglik_value_nb, _loglik_constant_nb, _multi_fit_nb
    _nu_score_constant_k = _nu_score_constant_nb
    _grid_ll_k = njit(cache=True)(_grid_ll_py)
    _scaled_grid_k = njit(cache=True)(_scaled_grid_py)
    _warm_fit_nb = njit(cache=True)(_warm_fit_py)
else:  # pragma: no cover
    _backcast_k, _mean_square_k, _grid_ll_k = _backcast_py, _mean_square_py, _grid_ll_py
    _scaled_grid_k = _scaled_grid_py
    _loglik_value_k, _loglik_constant_k, _multi_fit_k = _loglik_value_py, _loglik_constant_py, _multi_fit_arrays_py
    _nu_score_constant_k = _nu_score_constant_py
    _warm_fit_nb = _warm_fit_py


@functools.cache
def _unit_bounds(vol: str, dist: str) -> tuple[np.ndarray, np.ndarray]:
    bounds = GarchSpec(vol, dist).bounds(1.0)
    lower, upper = (np.array(b, dtype=float) for b in zip(*bounds, strict=True))
    lower.setflags(write=False)
    upper.setflags(write=False)
    return lower, upper



def garch_recursion(resids, omega, alpha, gamma, beta, bc, use_numba: bool | None = None) -> np.ndarray:
    """Conditional variances σ²_t of the GJR recursion (γ = 0: GARCH), shape (n,)."""
    r = np.ascontiguousarray(resids, dtype=float)
    use = NUMBA_ENABLED if use_numba is None else (use_numba and NUMBA_ENABLED)
    f = _recursion_nb if use else _recursion_py
    return f(r, float(omega), float(alpha), float(gamma), float(beta), float(bc))


def _grid_order(grid: np.ndarray, resids: np.ndarray, spec: GarchSpec, bc: float) -> np.ndarray:
    """Rows of ``grid`` sorted by decreasing log-likelihood."""
    lls = _grid_ll_k(np.ascontiguousarray(grid, dtype=float), resids, 0 if spec.vol == "garch" else 1,
                     spec.dist == "t", float(bc))
    return np.argsort(-lls, kind="stable")


def loglik_and_grad(theta: np.ndarray, resids: np.ndarray, spec: GarchSpec, bc: float,
                    use_numba: bool | None = None) -> tuple[float, np.ndarray]:
    """Log-likelihood and its analytic gradient w.r.t. ``theta`` (order of ``spec.parameter_names()``)."""
    r = np.ascontiguousarray(resids, dtype=float)
    student = spec.dist == "t"
    nu = float(theta[-1]) if student else 0.0
    if spec.vol == "garch":
        omega, alpha, gamma, beta = theta[0], theta[1], 0.0, theta[2]
    else:
        omega, alpha, gamma, beta = theta[0], theta[1], theta[2], theta[3]
    use = NUMBA_ENABLED if use_numba is None else (use_numba and NUMBA_ENABLED)
    f = _loglik_grad_nb if use else _loglik_grad_py
    ll, g, dnu = f(r, float(omega), float(alpha), float(gamma), float(beta), nu, float(bc), student)
    ll += _loglik_constant_k(r.size, nu, student)
    grad = [g[0], g[1], g[3]] if spec.vol == "garch" else [g[0], g[1], g[2], g[3]]
    if student:
        grad.append(dnu + r.size * _nu_score_constant_k(nu))
    return float(ll), np.array(grad, dtype=float)


@dataclass
class FilterFit:
    """Result of one filter fit on a window of returns (percent).

    ``sigma2`` and ``std_resids`` have the window's length; ``sigma2_next`` is
    the one-step-ahead variance. ``status`` is "ok", "boundary" (persistence
    within 1e-6 of 1), "failed" (previous parameters kept) or "fixed" (EWMA).
    """

    spec: GarchSpec
    params: np.ndarray
    loglik: float
    sigma2: np.ndarray = field(repr=False)
    std_resids: np.ndarray = field(repr=False)
    sigma2_next: float = float("nan")
    backcast: float = float("nan")
    status: str = "ok"
    iterations: int = 0
    inv_hessian: np.ndarray | None = field(default=None, repr=False)

    @property
    def param_dict(self) -> dict[str, float]:
        """Parameters by name."""
        return dict(zip(self.spec.parameter_names(), (float(x) for x in self.params), strict=True))

    @property
    def persistence(self) -> float:
        """α + γ/2 + β (1 for EWMA)."""
        if self.spec.vol == "ewma":
            return 1.0
        _, alpha, gamma, beta = _unpack(self.spec, self.params)
        return float(alpha + 0.5 * gamma + beta)


def _unpack(spec: GarchSpec, theta: np.ndarray) -> tuple[float, float, float, float]:
    if spec.vol == "garch":
        return theta[0], theta[1], 0.0, theta[2]
    return theta[0], theta[1], theta[2], theta[3]


def _project(spec: GarchSpec, theta: np.ndarray) -> np.ndarray:
    """Move a point within 1e-4 of the feasible set onto it (alpha + gamma >= 0, persistence <= 1)."""
    th = np.array(theta, dtype=float)
    if spec.vol == "gjr" and th[1] + th[2] < 0:
        th[2] = -th[1]
    omega, alpha, gamma, beta = _unpack(spec, th)
    persistence = alpha + 0.5 * gamma + beta
    if persistence > 1.0:
        idx = [1, 2] if spec.vol == "garch" else [1, 2, 3]
        th[idx] = th[idx] / persistence
    return th


def _finish(spec, theta, resids, bc, ll, status, iterations) -> FilterFit:
    if spec.vol == "ewma":
        lam = spec.lam
        sigma2 = garch_recursion(resids, 0.0, 1 - lam, 0.0, lam, bc)
        last = lam * sigma2[-1] + (1 - lam) * resids[-1] ** 2
    else:
        omega, alpha, gamma, beta = _unpack(spec, theta)
        sigma2 = garch_recursion(resids, omega, alpha, gamma, beta, bc)
        neg = 1.0 if resids[-1] < 0 else 0.0
        last = omega + (alpha + gamma * neg) * resids[-1] ** 2 + beta * sigma2[-1]
    return FilterFit(spec=spec, params=np.asarray(theta, float), loglik=float(ll), sigma2=sigma2,
                     std_resids=resids / np.sqrt(sigma2), sigma2_next=float(last), backcast=bc, status=status,
                     iterations=iterations)


def fit_filter(resids, spec: GarchSpec, warm_start: np.ndarray | None = None, refit: bool = True,
               warm_hessian: np.ndarray | None = None) -> FilterFit:
    """Fit ``spec`` to zero-mean returns ``resids`` (percent) by ML.

    Parameters
    ----------
    resids : ndarray of shape (n,)
    spec : GarchSpec
    warm_start : ndarray, optional
        Previous parameters: the optimiser starts there (no starting-value grid);
        on failure they are kept (``status="failed"``).
    refit : bool
        False re-runs the filter with ``warm_start`` parameters without optimising.
    """
    r = np.ascontiguousarray(resids, dtype=float)
    if r.size < 10 or not np.all(np.isfinite(r)):
        raise ValueError(f"fit_filter: need at least 10 finite returns, got {r.size}")
    k = len(spec.parameter_names())
    if spec.vol != "ewma" and warm_start is not None and refit:
        # fast path, one numba call (_warm_fit_py): projected BFGS from the previous parameters (with the
        # previous inverse Hessian) and, to escape a local optimum of a multimodal likelihood, from the
        # three best points of the starting grid (inverse BHHH start, to RESTART_TOL; a restart stops
        # once it reaches the basin of an optimum already found, MERGE_TOL); the best converged one
        # wins (a restart is then polished to FIT_TOL), else SLSQP runs from the previous parameters
        # and the best grid point
        use_h = warm_hessian is not None and np.shape(warm_hessian) == (k, k)
        warm_h = np.ascontiguousarray(warm_hessian, dtype=float) if use_h else np.zeros((k, k))
        unit_grid, grid_scale = _unit_grid(spec.vol, spec.dist)
        lower_unit, upper_unit = _unit_bounds(spec.vol, spec.dist)
        bc, var, theta, ll, nit, ok, inv_h, has_h, grid_arg = _warm_fit_nb(
            r, np.ascontiguousarray(warm_start, dtype=float), warm_h, use_h, unit_grid, grid_scale, lower_unit,
            upper_unit, 0 if spec.vol == "garch" else 1, spec.dist == "t", 300, FIT_TOL, RESTART_TOL, MERGE_TOL)
        if ok and np.isfinite(ll):
            fit = _finish(spec, theta, r, bc, ll, "ok", int(nit))
            fit.inv_hessian = inv_h if has_h else None
            if fit.persistence > 1.0 - BOUNDARY_TOL:
                fit.status = "boundary"
            return fit
        bounds = spec.bounds(var)
        starts = [np.clip(np.asarray(warm_start, float), [b[0] for b in bounds], [b[1] for b in bounds]),
                  spec.starting_grid(var)[grid_arg]]
    else:
        bc = backcast(r)
        var = float(_mean_square_k(r))
        if spec.vol == "ewma":
            theta = np.array([], dtype=float)
            fixed = [0.0, 1 - spec.lam, spec.lam]
            if spec.dist == "t":
                res = optimize.minimize_scalar(
                    lambda nu: -loglik_and_grad(np.array(fixed + [nu]), r, GarchSpec("garch", "t"), bc)[0],
                    bounds=NU_BOUNDS, method="bounded")
                theta = np.array([res.x])
            ll = loglik_and_grad(np.concatenate((fixed, theta)), r, GarchSpec("garch", spec.dist), bc)[0]
            return _finish(spec, theta, r, bc, ll, "fixed", 0)
        bounds = spec.bounds(var)
        if warm_start is not None:  # and not refit
            theta = np.clip(np.asarray(warm_start, float), [b[0] for b in bounds], [b[1] for b in bounds])
            ll = loglik_and_grad(theta, r, spec, bc)[0]
            fit = _finish(spec, theta, r, bc, ll, "reused", 0)
            fit.inv_hessian = warm_hessian
            return fit
        grid = spec.starting_values(var)
        starts = [grid[j] for j in _grid_order(np.array(grid), r, spec, bc)[:3]]  # the three best grid points
    a_mat, b_vec = spec.constraints()
    cons = [{"type": "ineq", "fun": lambda th, a=a_mat[i], b=b_vec[i]: float(a @ th - b),
             "jac": lambda th, a=a_mat[i]: a} for i in range(len(b_vec))]

    def neg(th):
        ll, g = loglik_and_grad(th, r, spec, bc)
        if not np.isfinite(ll):
            return 1e100, np.zeros_like(th)
        return -ll, -g

    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for s in starts:
            res = optimize.minimize(neg, s, jac=True, method="SLSQP", bounds=bounds, constraints=cons,
                                    options={"maxiter": 500, "ftol": 1e-11})
            if best is None or (np.isfinite(res.fun) and res.fun < best.fun):
                best = res
    if np.all(np.isfinite(best.x)) and np.all(a_mat @ best.x - b_vec >= -1e-4):
        best.x = _project(spec, best.x)  # SLSQP may overshoot the boundary by ~1e-8: project back onto it
        best.fun = -loglik_and_grad(best.x, r, spec, bc)[0]
    feasible = bool(np.all(a_mat @ best.x - b_vec >= -1e-12)) if len(b_vec) else True
    # SLSQP exit 8 ("positive directional derivative in linesearch") means no further
    # progress at machine precision: accepted like success when the point is finite and feasible.
    converged = best.success or best.status == 8
    if not (converged and np.all(np.isfinite(best.x)) and np.isfinite(best.fun) and feasible):
        if warm_start is not None:
            theta = np.asarray(warm_start, float)
            ll = loglik_and_grad(theta, r, spec, bc)[0]
            return _finish(spec, theta, r, bc, ll, "failed", int(best.nit))
        raise RuntimeError(f"fit_filter: optimisation failed ({best.message}, status {best.status}, "
                           f"x={best.x}, feasible={feasible}) without previous parameters")
    theta = best.x
    fit = _finish(spec, theta, r, bc, -best.fun, "ok", int(best.nit))
    if fit.persistence > 1.0 - BOUNDARY_TOL:
        fit.status = "boundary"
    return fit


def simulate_paths(fits: list[FilterFit], std_resids: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """FHS cumulative returns (percent) over h steps, variance propagated through each asset's recursion.

    Parameters
    ----------
    fits : list of FilterFit, one per asset
    std_resids : ndarray of shape (n_window, n_assets)
        Joint standardised residual vectors (rows are dates).
    draws : ndarray of int, shape (n_paths, h)
        Row indices into ``std_resids`` (the same rows for every asset).

    Returns
    -------
    ndarray of shape (n_paths, n_assets): h-step cumulative returns in percent.
    """
    n_paths, h = draws.shape
    out = np.zeros((n_paths, len(fits)))
    for a, fit in enumerate(fits):
        s2 = np.full(n_paths, fit.sigma2_next)
        if fit.spec.vol == "ewma":
            omega, alpha, gamma, beta = 0.0, 1 - fit.spec.lam, 0.0, fit.spec.lam
        else:
            omega, alpha, gamma, beta = _unpack(fit.spec, fit.params)
        for j in range(h):
            eps = np.sqrt(s2) * std_resids[draws[:, j], a]
            out[:, a] += eps
            if j + 1 < h:
                s2 = omega + (alpha + gamma * (eps < 0)) * (eps * eps) + beta * s2
    return out
