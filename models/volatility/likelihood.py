r"""The likelihood of a volatility filter: one fused pass per (process, distribution).

For returns :math:`\epsilon_1..\epsilon_n` (percent, zero mean) the log-likelihood is
:math:`\ell(\theta) = \sum_t \ell_t(\epsilon_t; \sigma^2_t(\theta), \eta)` with :math:`\sigma^2_t`
from the process's recursion (started from :func:`backcast`) and :math:`\ell_t` the
distribution's log-density (shape parameters η). The **analytic gradient** carries the
derivatives of the recursion alongside it: :math:`\partial\ell/\partial\theta_{vol} =
\sum_t (\partial\ell_t/\partial\sigma^2_t)\,\partial\sigma^2_t/\partial\theta_{vol}` plus the shape
scores.

The templates below are written once and specialised per (process, distribution) with
:func:`~marginlab.models._numba.specialise` (the pieces are the components' numba functions,
see :mod:`.processes` and :mod:`.distributions`); :func:`likelihood_kernels` builds them for a
pair. The pass sums :math:`\ln\sigma^2_t` and the distribution's :math:`\ln q_t` as logs of
products of 32 terms (one ``log`` per 32 observations: a log costs as much as ~5 observations
of the gradient pass) and is redone with one log per term when a product leaves
[1e-280, 1e280] (absurd parameters only).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .._numba import njit, specialise
from .optimize import BoundedProblem
from .spec import FilterSpec

__all__ = ["backcast", "mean_square", "loglik_and_grad", "conditional_variance", "likelihood_kernels",
           "LikelihoodKernels"]

#: the likelihood passes sum logs of products of this many terms
_LOG_BLOCK = 32
_LOG_BLOCK_MASK = _LOG_BLOCK - 1
_BACKCAST_WEIGHTS = 0.94 ** np.arange(75)


@njit(cache=True)
def _backcast(resids):
    tau = min(75, resids.size)
    wsum = 0.0
    for i in range(tau):
        wsum += _BACKCAST_WEIGHTS[i]
    s = 0.0
    for i in range(tau):
        s += resids[i] * resids[i] * (_BACKCAST_WEIGHTS[i] / wsum)
    return s


@njit(cache=True)
def mean_square(resids):
    """Mean of the squared returns (the sample variance about zero)."""
    s = 0.0
    for i in range(resids.size):
        s += resids[i] * resids[i]
    return s / resids.size


def kernel_array(a) -> np.ndarray:
    """``a`` as a writable C-contiguous float64 array (the one array type the kernels are compiled for)."""
    out = np.ascontiguousarray(a, dtype=float)
    return out if out.flags.writeable else out.copy()


def backcast(resids: np.ndarray) -> float:
    r"""``arch``'s exponential-smoothing backcast of the initial variance.

    :math:`\hat\sigma^2_0 = \sum_{i<\tau} w_i\epsilon_i^2` with :math:`w_i = 0.94^i / \sum_{j<\tau} 0.94^j`
    and τ = min(75, n) (``arch``'s ``backcast`` of its GARCH process; EGARCH uses its log).
    """
    return float(_backcast(kernel_array(resids)))


# --------------------------------------------------------------------------- templates
# global names the templates call; specialise() binds them to one process's and one distribution's pieces
process_params = process_start = process_step = process_variance = process_inverse = process_from_variance = None
process_start_d = process_step_d = process_grad_zero = process_grad_add = process_grad_store = None
process_scores = None
dist_shape = dist_obs = dist_acc_zero = dist_acc_add = dist_finish = dist_constant = dist_grad_store = None
dist_scores = loglik_pass = loglik = None
K_VOL = 0  # number of process parameters (the distribution's start at theta[K_VOL])
GRADIENT = True  # the pass carries derivatives


def _pass(resids, theta, fixed, bc, blocked):
    """One pass over the returns: (ok, log-likelihood without constants, process gradient, shape scores).

    ``blocked``: logs of 32-term products (``ok`` False when a product leaves [1e-280, 1e280]);
    else one log per term. Without ``GRADIENT`` the derivatives are not computed (zero). A
    variance that is not positive (parameters outside the feasible set) gives a NaN log-likelihood.
    """
    n = resids.size
    p = process_params(theta, fixed)
    c = dist_shape(theta, K_VOL)
    state, d = process_start_d(p, bc)
    g = process_grad_zero()
    acc = dist_acc_zero()
    sum_log_s2 = 0.0
    sum_log_q = 0.0
    p_s2 = 1.0
    p_q = 1.0
    ok = True
    valid = True
    for t in range(n):
        if t > 0:
            if GRADIENT:
                state, d = process_step_d(resids[t - 1], state, d, p)
            else:
                state = process_step(resids[t - 1], state, p)
        s2 = process_variance(state)
        if not s2 > 0.0:  # parameters outside the feasible set (a trial point of SLSQP): no likelihood
            valid = False
            break
        inv = process_inverse(state)
        q, dl, terms = dist_obs(resids[t], s2, inv, c)
        acc = dist_acc_add(acc, terms)
        if blocked:
            p_s2 *= s2
            p_q *= q
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
            sum_log_q += math.log(q)
        if GRADIENT:
            g = process_grad_add(g, dl, state, d)
    ll, gs = dist_finish(sum_log_s2, sum_log_q, acc, c)
    if not valid:
        ll = np.nan
    return ok, ll, g, gs


def _loglik(resids, theta, fixed, bc):
    """Log-likelihood with constants, process gradient and shape scores (without their constants)."""
    for attempt in range(2):  # logs of 32-term products; one log per term if a product leaves the range
        ok, ll, g, gs = loglik_pass(resids, theta, fixed, bc, attempt == 0)
        if ok:
            break
    return ll + dist_constant(resids.size, dist_shape(theta, K_VOL)), g, gs


def _objective(theta, data, grad):
    """Negative log-likelihood; its gradient into ``grad``; ``data = (resids, backcast, fixed)``."""
    resids, bc, fixed = data
    ll, g, gs = loglik(resids, theta, fixed, bc)
    process_grad_store(grad, g)
    dist_grad_store(grad, K_VOL, gs, resids.size, dist_shape(theta, K_VOL))
    for i in range(grad.size):
        grad[i] = -grad[i]
    return -ll


def _grid_loglik(grid, data):
    """Log-likelihood at each row of ``grid`` (-inf where not finite)."""
    resids, bc, fixed = data
    out = np.empty(grid.shape[0])
    for j in range(grid.shape[0]):
        ll = loglik(resids, grid[j], fixed, bc)[0]
        out[j] = ll if math.isfinite(ll) else -np.inf
    return out


def _scores(theta, data):
    """Outer product of the per-observation scores (BHHH matrix), shape (k, k)."""
    resids, bc, fixed = data
    k = theta.size
    p = process_params(theta, fixed)
    c = dist_shape(theta, K_VOL)
    state, d = process_start_d(p, bc)
    m = np.zeros((k, k))
    sc = np.empty(k)
    for t in range(resids.size):
        if t > 0:
            state, d = process_step_d(resids[t - 1], state, d, p)
        s2 = process_variance(state)
        if not s2 > 0.0:  # not a BHHH matrix: the optimiser starts from the diagonal
            for i in range(k):
                for j in range(k):
                    m[i, j] = np.nan
            break
        inv = process_inverse(state)
        q, dl, terms = dist_obs(resids[t], s2, inv, c)
        process_scores(sc, dl, state, d)
        dist_scores(sc, K_VOL, q, terms, c)
        for i in range(k):
            for j in range(i, k):
                m[i, j] += sc[i] * sc[j]
    for i in range(k):  # symmetric: the same products, summed in the same order
        for j in range(i):
            m[i, j] = m[j, i]
    return m


def _variance(resids, theta, fixed, bc):
    """Conditional variances, shape (n + 1,): sigma2_0..sigma2_{n-1} and the one-step forecast."""
    n = resids.size
    p = process_params(theta, fixed)
    out = np.empty(n + 1)
    state = process_start(p, bc)
    out[0] = process_variance(state)
    for t in range(1, n + 1):
        state = process_step(resids[t - 1], state, p)
        out[t] = process_variance(state)
    return out


def _simulate(theta, fixed, s2_next, z, draws, out, col):
    """h-step FHS returns into ``out[:, col]``: path i uses rows ``draws[i]`` of ``z``, variance propagated."""
    p = process_params(theta, fixed)
    n_paths, h = draws.shape
    for i in range(n_paths):
        state = process_from_variance(s2_next)
        total = 0.0
        for j in range(h):
            eps = math.sqrt(process_variance(state)) * z[draws[i, j]]
            total += eps
            if j + 1 < h:
                state = process_step(eps, state, p)
        out[i, col] = total


# --------------------------------------------------------------------------- kernels of a pair

@dataclass(frozen=True)
class LikelihoodKernels:
    """The compiled kernels of one (process, distribution) pair.

    ``value_pass``/``gradient_pass(resids, theta, fixed, bc, blocked) -> (ok, loglik without constants,
    process gradient, shape scores)``; ``value(resids, theta, fixed, bc) -> (loglik, ...)``;
    ``objective(theta, data, grad) -> -loglik``;
    ``grid_loglik(grid, data)``; ``scores(theta, data)``; ``variance(resids, theta, fixed, bc)``;
    ``simulate(theta, fixed, s2_next, z, draws, out, col)``; ``problem`` the
    :class:`~.optimize.BoundedProblem` of maximising the likelihood (``data = (resids, backcast, fixed)``).
    """

    value_pass: object
    gradient_pass: object
    value: object
    objective: object
    grid_loglik: object
    scores: object
    variance: object
    simulate: object
    problem: BoundedProblem


@functools.cache
def likelihood_kernels(process_cls: type, dist_cls: type) -> LikelihoodKernels:
    """The templates specialised to a process class and a distribution class (compiled on first use).

    Cached per pair: the kernels are code (no data), built once per process.
    """
    pk, dk = process_cls.kernels, dist_cls.kernels
    name = f"{process_cls.name}_{dist_cls.name}"
    pieces = dict(process_params=pk.params, process_start=pk.start, process_step=pk.step,
                  process_variance=pk.variance, process_inverse=pk.inverse, process_start_d=pk.start_d,
                  process_step_d=pk.step_d,
                  process_grad_zero=pk.grad_zero, process_grad_add=pk.grad_add, dist_shape=dk.shape,
                  dist_obs=dk.obs, dist_acc_zero=dk.acc_zero, dist_acc_add=dk.acc_add, dist_finish=dk.finish,
                  K_VOL=len(process_cls.parameter_names))
    value_pass = specialise(_pass, name + "_value", GRADIENT=False, **pieces)
    grad_pass = specialise(_pass, name + "_gradient", GRADIENT=True, **pieces)
    constant = dict(dist_constant=dk.constant, dist_shape=dk.shape, K_VOL=pieces["K_VOL"])
    inline = {"inline": "always"}
    value = specialise(_loglik, name + "_value", inline, loglik_pass=value_pass, **constant)
    gradient = specialise(_loglik, name + "_gradient", inline, loglik_pass=grad_pass, **constant)
    objective = specialise(_objective, name, loglik=gradient, process_grad_store=pk.grad_store,
                           dist_grad_store=dk.grad_store, dist_shape=dk.shape, K_VOL=pieces["K_VOL"])
    scores = specialise(_scores, name, process_params=pk.params, process_start_d=pk.start_d,
                        process_step_d=pk.step_d, process_variance=pk.variance, process_inverse=pk.inverse,
                        process_scores=pk.scores,
                        dist_shape=dk.shape, dist_obs=dk.obs, dist_scores=dk.scores, K_VOL=pieces["K_VOL"])
    grid = specialise(_grid_loglik, name, loglik=value)
    process_only = dict(process_params=pk.params, process_start=pk.start, process_step=pk.step,
                        process_variance=pk.variance)
    variance = specialise(_variance, process_cls.name, **process_only)
    simulate = specialise(_simulate, process_cls.name, process_from_variance=pk.from_variance, **process_only)
    problem = BoundedProblem(f"likelihood_{name}", objective, scores, pk.feasible)
    return LikelihoodKernels(value_pass, grad_pass, value, objective, grid, scores, variance, simulate, problem)


def _kernels(spec: FilterSpec) -> LikelihoodKernels:
    return likelihood_kernels(type(spec.process), type(spec.distribution))


def loglik_and_grad(theta: np.ndarray, resids: np.ndarray, spec: FilterSpec, bc: float) -> tuple[float, np.ndarray]:
    """Log-likelihood of ``resids`` (percent) and its analytic gradient w.r.t. ``theta``.

    ``theta`` in the order of ``spec.parameter_names()``; ``bc`` the backcast (:func:`backcast`).
    """
    theta = kernel_array(theta)
    g = np.empty(theta.size)
    f = _kernels(spec).objective(theta, (kernel_array(resids), float(bc), spec.fixed()), g)
    return float(-f), -g


def conditional_variance(resids: np.ndarray, spec: FilterSpec, theta: np.ndarray, bc: float) -> np.ndarray:
    """Conditional variances σ²_0..σ²_{n-1} and the one-step forecast σ²_n, shape (n + 1,)."""
    return _kernels(spec).variance(kernel_array(resids), kernel_array(theta), spec.fixed(), float(bc))
