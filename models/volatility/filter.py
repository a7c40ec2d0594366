r"""Fitting a volatility filter to a window of returns: :func:`fit_filter` -> :class:`FilterFit`.

Maximum likelihood (:mod:`.likelihood`) over the box bounds and linear constraints of the spec.

* **Cold fit** (no previous parameters): SLSQP with the analytic gradient and the analytic
  Jacobian of the linear constraints (stationarity, e.g. α + γ/2 + β <= 1 with the boundary
  allowed, and GJR's α + γ >= 0) from the three best points of the spec's starting grid.
* **Warm (daily) fit**: one compiled call (:func:`_daily_fit`) — backcast, bounds and grid at the
  window's variance, the grid ranked by log-likelihood, projected BFGS (:mod:`.optimize`) from
  yesterday's parameters with yesterday's inverse Hessian (to ``FIT_TOL``) and from the three
  best grid points with the inverse BHHH start (to ``RESTART_TOL``, a run stopping once it
  reaches the basin of an optimum already found, ``MERGE_TOL``); a restart that beats the warm
  run by more than 1e-9 relative wins and is polished to ``FIT_TOL``. Restarts are there because
  the likelihood is multimodal on some dates (BTC, GARCH-normal: October 2022, April 2024).
  If no run converges, SLSQP runs from yesterday's parameters and the best grid point.
* **EWMA**: λ fixed; only shape parameters are estimated (projected BFGS, warm-started daily).

A failed optimisation keeps the previous parameters (``status="failed"``); a fit whose persistence
is within ``BOUNDARY_TOL`` of 1 is flagged ``"boundary"``.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import optimize

from .._numba import njit, specialise
from .likelihood import (
    _backcast,
    backcast,
    conditional_variance,
    kernel_array,
    likelihood_kernels,
    loglik_and_grad,
    mean_square,
)
from .optimize import scale_to_face
from .spec import FilterSpec

__all__ = ["FilterFit", "fit_filter", "simulate_paths", "bfgs_fit", "BOUNDARY_TOL", "FIT_TOL", "RESTART_TOL",
           "MERGE_TOL"]

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


@dataclass
class FilterFit:
    """Result of one filter fit on a window of returns (percent).

    ``sigma2`` and ``std_resids`` have the window's length (n,); ``sigma2_next`` is the one-step-ahead
    variance; ``backcast`` the initial variance. ``status`` is "ok", "boundary" (persistence within
    ``BOUNDARY_TOL`` of 1), "failed" (previous parameters kept), "reused" (``refit=False``) or
    "fixed" (EWMA). ``inv_hessian`` is the optimiser's inverse-Hessian approximation, passed to the
    next day's fit: shape (k, k), or (k - 1, k - 1) for a fit on the stationarity face (the problem
    with the last process parameter eliminated there).
    """

    spec: FilterSpec
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
        """Persistence of the variance (GARCH family α + γ/2 + β; EGARCH β; EWMA 1)."""
        return self.spec.process.persistence(self.params)


# --------------------------------------------------------------------------- compiled pieces of a fit

@njit(cache=True)
def _rank(values):
    """Indices that sort ``values`` in decreasing order, ties in index order (a stable insertion sort)."""
    order = np.empty(values.size, np.int64)
    for i in range(values.size):
        j = i
        while j > 0 and values[order[j - 1]] < values[i]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = i
    return order


# global names the templates call; specialise() binds them to one pair's kernels
multi_start = grid_loglik = prepare = process_scale_bounds = process_scale_grid = None


def _prepare(r, fixed, unit_grid, grid_scale, lower_unit, upper_unit):
    """Backcast, sample variance, bounds and starting grid at that variance, grid rows by decreasing likelihood.

    Returns (backcast, variance, lower, upper, grid, order).
    """
    bc = _backcast(r)
    var = mean_square(r)
    lower = lower_unit.copy()
    upper = upper_unit.copy()
    process_scale_bounds(lower, upper, var)
    grid = unit_grid.copy()
    process_scale_grid(grid, grid_scale, var)
    order = _rank(grid_loglik(grid, (r, bc, fixed)))
    return bc, var, lower, upper, grid, order


def _daily_fit(r, warm, warm_h, use_h, warm_on_face, fixed, unit_grid, grid_scale, lower_unit, upper_unit, cons, b,
               max_iter, fit_tol, restart_tol, merge_tol):
    """One day's warm-started fit (see the module docstring), in one compiled call.

    ``warm_on_face``: yesterday's fit lies on the stationarity face and ``warm_h`` (top-left block)
    is the inverse Hessian of the problem there. Returns (backcast, variance, theta, loglik,
    iterations, converged, inverse Hessian, has one, it is the face problem's, index of the best
    grid point).
    """
    k = warm.size
    bc, var, lower, upper, grid, order = prepare(r, fixed, unit_grid, grid_scale, lower_unit, upper_unit)
    data = (r, bc, fixed)
    hscale = float(r.size)
    # round 0: yesterday's optimum (to fit_tol) and the three best grid points (to restart_tol);
    # round 1: the winning restart, if one won, polished to fit_tol
    starts = np.empty((4, k))
    h0s = np.zeros((4, k, k))
    use_h0 = np.zeros(4, np.bool_)
    on_face = np.zeros(4, np.bool_)
    tols = np.full(4, restart_tol)
    for i in range(k):
        starts[0, i] = warm[i]
        for j in range(3):
            starts[j + 1, i] = grid[order[j], i]
        if use_h:
            for j in range(k):
                h0s[0, i, j] = warm_h[i, j]
    use_h0[0] = use_h
    on_face[0] = warm_on_face
    tols[0] = fit_tol
    theta, ll, nit, ok, h, hh, hf = np.empty(k), 0.0, 0, False, np.empty((k, k)), False, False
    for rnd in range(2):
        xs, lls, its, oks, hs, has_h, h_face = multi_start(starts, h0s, use_h0, on_face, tols, data, lower, upper,
                                                           cons, b, hscale, max_iter, merge_tol)
        if rnd == 1:
            nit += its[0]
            if oks[0] and math.isfinite(lls[0]) and lls[0] >= ll:
                theta, ll, ok, h, hh, hf = xs[0].copy(), lls[0], oks[0], hs[0].copy(), has_h[0], h_face[0]
            break
        best = 0
        nit = its[0]
        for j in range(1, 4):  # the three best grid points, as for a cold fit
            nit += its[j]
            ll = lls[best]
            better = not oks[best] or not math.isfinite(ll) or lls[j] > ll + 1e-9 * abs(ll)
            if oks[j] and math.isfinite(lls[j]) and better:
                best = j
        theta, ll, ok, h, hh, hf = xs[best].copy(), lls[best], oks[best], hs[best].copy(), has_h[best], h_face[best]
        if best == 0:
            break
        starts = np.empty((1, k))
        h0s = np.empty((1, k, k))
        for i in range(k):
            starts[0, i] = theta[i]
            for j in range(k):
                h0s[0, i, j] = h[i, j]
        use_h0 = np.full(1, hh)
        on_face = np.full(1, hf)
        tols = np.full(1, fit_tol)
    return bc, var, theta, ll, nit, ok, h, hh, hf, order[0]


class _PairFit(NamedTuple):
    """A pair's compiled ``prepare`` and ``daily_fit`` and its constant arrays (never written to)."""

    prepare: object
    daily_fit: object
    unit_grid: np.ndarray
    grid_scale: np.ndarray
    lower_unit: np.ndarray
    upper_unit: np.ndarray
    cons: np.ndarray


@functools.cache
def _fit_kernels(process_cls: type, dist_cls: type) -> _PairFit:
    """:func:`_prepare` and :func:`_daily_fit` specialised to a pair, with its constants (cached per pair)."""
    lk = likelihood_kernels(process_cls, dist_cls)
    name = f"{process_cls.name}_{dist_cls.name}"
    prep = specialise(_prepare, name, grid_loglik=lk.grid_loglik, process_scale_bounds=process_cls.kernels.scale_bounds,
                      process_scale_grid=process_cls.kernels.scale_grid)
    daily = specialise(_daily_fit, name, multi_start=lk.problem.kernels.multi_start_inline, prepare=prep)
    spec = FilterSpec(process_cls(), dist_cls())
    return _PairFit(prep, daily, *spec.unit_grid(), *spec.unit_bounds(), spec.persistence_coefficients())


# --------------------------------------------------------------------------- Python drivers

def _finish(spec: FilterSpec, theta, resids, bc, ll, status, iterations) -> FilterFit:
    v = conditional_variance(resids, spec, theta, bc)
    sigma2 = v[:-1]
    return FilterFit(spec=spec, params=np.asarray(theta, float), loglik=float(ll), sigma2=sigma2,
                     std_resids=resids / np.sqrt(sigma2), sigma2_next=float(v[-1]), backcast=bc, status=status,
                     iterations=iterations)


def _project(spec: FilterSpec, theta: np.ndarray) -> np.ndarray:
    """Move a point slightly outside the linear constraints onto them (no clipping to the box)."""
    th = np.array(theta, dtype=float)
    spec.process.kernels.feasible(th)
    scale_to_face(th, spec.persistence_coefficients(), spec.process.eliminated, False)
    return th


def _fit_shape_only(spec: FilterSpec, r: np.ndarray, bc: float, warm_start, refit: bool, warm_hessian) -> FilterFit:
    """A process without parameters (EWMA): estimate the distribution's shape parameters only.

    Projected BFGS from yesterday's shape parameters and inverse Hessian (else from the
    distribution's starting values, BHHH start); status "fixed" (λ is), "reused" without refit,
    "failed" (previous parameters kept) when the run does not converge.
    """
    lk = likelihood_kernels(type(spec.process), type(spec.distribution))
    fixed, bc = spec.fixed(), float(bc)
    k = len(spec.parameter_names())
    lower, upper = spec.unit_bounds()
    theta, status, iterations, inv_h = np.array([], dtype=float), "fixed", 0, None
    if k and warm_start is not None and not refit:
        theta, status, inv_h = np.clip(np.asarray(warm_start, float), lower, upper), "reused", warm_hessian
    elif k:
        start = np.asarray(spec.distribution.start if warm_start is None else np.clip(warm_start, lower, upper),
                           dtype=float)
        use_h = warm_hessian is not None and np.shape(warm_hessian) == (k, k)
        res = lk.problem.minimize(start, (r, bc, fixed), lower, upper, tol=FIT_TOL, hscale=float(r.size),
                                  inv_hessian=warm_hessian if use_h else None)
        theta, iterations, inv_h = res.x, res.iterations, res.inv_hessian
        if not (res.converged and np.isfinite(res.fun)):
            status = "failed"
            if warm_start is not None:
                theta = np.asarray(warm_start, float)
    fit = _finish(spec, theta, r, bc, lk.value(r, theta, fixed, bc)[0], status, iterations)
    fit.inv_hessian = inv_h
    return fit


def fit_filter(resids, spec: FilterSpec, warm_start: np.ndarray | None = None, refit: bool = True,
               warm_hessian: np.ndarray | None = None) -> FilterFit:
    """Fit ``spec`` to zero-mean returns ``resids`` (percent) by maximum likelihood.

    Parameters
    ----------
    resids : ndarray of shape (n,)
        Returns in percent, n >= 10, finite.
    spec : FilterSpec
    warm_start : ndarray, optional
        Previous parameters: the daily fit starts there (and from the grid); on failure they are
        kept (``status="failed"``).
    refit : bool
        False re-runs the filter with ``warm_start`` parameters without optimising.
    warm_hessian : ndarray of shape (k, k), optional
        The previous fit's ``inv_hessian``.

    Returns
    -------
    FilterFit
    """
    r = kernel_array(resids)
    if r.size < 10 or not np.all(np.isfinite(r)):
        raise ValueError(f"fit_filter: need at least 10 finite returns, got {r.size}")
    k = len(spec.parameter_names())
    process = spec.process
    if not process.parameter_names:
        return _fit_shape_only(spec, r, backcast(r), warm_start, refit, warm_hessian)
    prepare, daily, unit_grid, grid_scale, lower_unit, upper_unit, cons = _fit_kernels(type(process),
                                                                                       type(spec.distribution))
    if warm_start is not None and refit:
        # yesterday's inverse Hessian: of the full problem (k x k), or on the stationarity face ((k-1) x (k-1))
        shape = np.shape(warm_hessian) if warm_hessian is not None else ()
        use_h = shape in ((k, k), (k - 1, k - 1))
        warm_h = np.zeros((k, k))
        if use_h:
            warm_h[:shape[0], :shape[0]] = warm_hessian
        bc, var, theta, ll, nit, ok, inv_h, has_h, on_face, grid_arg = daily(
            r, kernel_array(warm_start), warm_h, use_h, use_h and shape[0] == k - 1, spec.fixed(), unit_grid,
            grid_scale, lower_unit, upper_unit, cons, process.eliminated, 300, FIT_TOL, RESTART_TOL, MERGE_TOL)
        if ok and np.isfinite(ll):
            fit = _finish(spec, theta, r, bc, ll, "ok", int(nit))
            fit.inv_hessian = (inv_h[:k - 1, :k - 1].copy() if on_face else inv_h) if has_h else None
            if fit.persistence > 1.0 - BOUNDARY_TOL:
                fit.status = "boundary"
            return fit
        bounds = spec.bounds(var)
        starts = [np.clip(np.asarray(warm_start, float), [b[0] for b in bounds], [b[1] for b in bounds]),
                  spec.starting_grid(var)[grid_arg]]
    else:
        bc, var, lower, upper, grid, order = prepare(r, spec.fixed(), unit_grid, grid_scale, lower_unit, upper_unit)
        bounds = list(zip(lower.tolist(), upper.tolist(), strict=True))
        if warm_start is not None:  # and not refit
            theta = np.clip(np.asarray(warm_start, float), lower, upper)
            ll = loglik_and_grad(theta, r, spec, bc)[0]
            fit = _finish(spec, theta, r, bc, ll, "reused", 0)
            fit.inv_hessian = warm_hessian
            return fit
        starts = [grid[j] for j in order[:3]]  # the three best grid points
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
        if warm_start is None:  # a cold fit: projected BFGS from the same starts before giving up
            run = _bfgs_from(spec, r, bc, bounds, starts)
            if run is not None:
                fit = _finish(spec, run.x, r, bc, -run.fun, "ok", int(best.nit) + run.iterations)
                fit.inv_hessian = run.inv_hessian
                if fit.persistence > 1.0 - BOUNDARY_TOL:
                    fit.status = "boundary"
                return fit
        else:
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


def _bfgs_from(spec: FilterSpec, r: np.ndarray, bc: float, bounds, starts):
    """The best converged projected-BFGS run (BHHH start, ``FIT_TOL``) from each of ``starts``, or None."""
    lower, upper = (np.array(b, dtype=float) for b in zip(*bounds, strict=True))
    problem = likelihood_kernels(type(spec.process), type(spec.distribution)).problem
    runs = problem.multi_start(np.array(starts, dtype=float), (r, float(bc), spec.fixed()), lower, upper,
                               spec.persistence_coefficients(), spec.process.eliminated, tol=FIT_TOL,
                               merge_tol=MERGE_TOL, hscale=float(r.size))
    done = [run for run in runs if run.converged and np.isfinite(run.fun)]
    return min(done, key=lambda run: run.fun) if done else None


def bfgs_fit(theta0, resids, spec: FilterSpec, bounds, bc: float, max_iter: int = 300, tol: float = FIT_TOL,
             inv_hessian: np.ndarray | None = None):
    """Projected BFGS maximum likelihood from ``theta0`` (on the stationarity boundary too).

    Starts from ``inv_hessian`` (else the inverse BHHH matrix). Returns ``(theta, loglik,
    iterations, converged, inv_hessian)``.
    """
    r = np.ascontiguousarray(resids, dtype=float)
    lower = np.array([b[0] for b in bounds], dtype=float)
    upper = np.array([b[1] for b in bounds], dtype=float)
    problem = likelihood_kernels(type(spec.process), type(spec.distribution)).problem
    res = problem.minimize(theta0, (r, float(bc), spec.fixed()), lower, upper, spec.persistence_coefficients(),
                           spec.process.eliminated, tol=tol, max_iter=max_iter, inv_hessian=inv_hessian,
                           hscale=float(r.size))
    return res.x, -res.fun, res.iterations, res.converged, res.inv_hessian


def simulate_paths(fits: list[FilterFit], std_resids: np.ndarray, draws: np.ndarray) -> np.ndarray:
    r"""FHS cumulative returns (percent) over h steps, variance propagated through each asset's recursion.

    Parameters
    ----------
    fits : list of FilterFit, one per asset
    std_resids : ndarray of shape (n_window, n_assets)
        Joint standardised residual vectors (rows are dates).
    draws : ndarray of int, shape (n_paths, h)
        Row indices into ``std_resids`` (the same rows for every asset).

    Returns
    -------
    ndarray of shape (n_paths, n_assets): h-step cumulative returns in percent,
    :math:`\sum_{j<h}\sigma_{t+1+j} z_{u_j}` with :math:`\sigma^2` updated by the process after each step.
    """
    n_paths, h = draws.shape
    out = np.zeros((n_paths, len(fits)))
    d = np.ascontiguousarray(draws)
    for a, fit in enumerate(fits):
        lk = likelihood_kernels(type(fit.spec.process), type(fit.spec.distribution))
        lk.simulate(np.ascontiguousarray(fit.params, dtype=float), fit.spec.fixed(), float(fit.sigma2_next),
                    np.ascontiguousarray(std_resids[:, a], dtype=float), d, out, a)
    return out
