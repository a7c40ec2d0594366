r"""Projected BFGS on a box with one linear inequality, multi-start with basin merging, BHHH start.

A small optimiser for smooth bounded fits (here: volatility-filter likelihoods), compiled with
numba for one problem at a time. A problem (:class:`BoundedProblem`) is

.. math::
    \min_x f(x) \quad\text{s.t.}\quad l \le x \le u,\qquad \sum_i c_i x_i \le 1

with an analytic gradient. ``c = 0`` means no linear constraint. Its kernels
(:attr:`BoundedProblem.kernels`) are the templates below specialised to the problem's
``objective(x, data) -> (f, gradient)`` (``data`` any tuple the objective takes), optional
``scores(x, data) -> sum of per-observation score outer products`` (for the BHHH start) and optional
``feasible(x)`` (an in-place projection onto further constraints, acting on variables before the
eliminated one).

Method
------
* **Projected BFGS** (:func:`_bfgs`): the quasi-Newton direction -H g on the free variables
  (a variable held at a bound by the gradient's sign gets no step and its row and column of H
  are dropped: projected quasi-Newton, Bertsekas 1982, SIAM J. Control Optim. 20(2)), projected
  onto the feasible set (clip to the box, ``feasible``, then scale the constrained variables
  back onto :math:`c'x = 1` when beyond it); Armijo backtracking (sufficient decrease 1e-4)
  with the step cut to the minimiser of the interpolating quadratic, safeguarded to
  [0.1, 0.5] (Nocedal and Wright 2006, §3.5); BFGS update of the inverse Hessian (N&W eq. 6.17),
  reset to diag(max(|x_i|, 1e-2)² / n) when the direction is not a descent direction.
  Converged when the scaled projected gradient :math:`\max_i |g_i| \max(|x_i|, 10^{-2})` is at
  most ``tol`` (1 + |f|), or f stops changing (1e-15 relative) over three steps.
* **On the face** :math:`c'x = 1`: a run whose accepted iterates lie on the face twice in a row
  (or that ends there) goes on with the problem on the face, the variable b eliminated
  (:math:`x_b = 1 - \sum_{i\ne b} c_i x_i`, a box problem in one dimension less, started from the
  inverse of its BHHH matrix :math:`J'MJ`, J the Jacobian of the elimination); its result is
  kept when the KKT sign :math:`\partial f/\partial x_b \le 0` says the constraint is active,
  else the full problem runs again from there (at most four phases). Crawling along the face
  with projected full-space steps instead took ~150 iterations and ~4 objective evaluations
  per iteration on BTC Student-t fits, which sit on α + β = 1 on most dates of 2019-2021.
  A start may also begin on the face, with the inverse Hessian of the face problem (the daily
  fit carries it from one day to the next).
* **Multi-start with basin merging** (:func:`_multi_start`): runs from several starts in
  order; a run whose accepted iterate comes within ``merge_tol`` (scaled max-norm,
  :math:`\max_i |x_i - k_i|/\max(|k_i|, 10^{-2})`) of an optimum found by an earlier run, at an
  objective no lower, stops there: it is in that optimum's basin (the distance filter of
  multistart methods, Ugray et al. 2007, INFORMS J. Computing 19(3), applied to the iterates).
* **BHHH start**: a run without a given inverse Hessian starts from the inverse of the outer
  product of per-observation scores at the start (Berndt, Hall, Hall and Hausman 1974), when the
  problem supplies ``scores`` and the matrix is numerically positive definite; else the diagonal.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._numba import njit, specialise

__all__ = ["BoundedProblem", "ProblemKernels", "MinimizeResult", "linear_form", "scale_to_face", "spd_inverse"]


# --------------------------------------------------------------------------- helpers (plain kernels, in place)

@njit(cache=True)
def linear_form(c, x):
    """sum_i c_i x_i over the non-zero c_i, in index order (0 when c = 0)."""
    s = 0.0
    for i in range(c.size):
        if c[i] != 0.0:
            s += c[i] * x[i]
    return s


@njit(cache=True)
def _dot(a, b):
    """Dot product as an explicit loop."""
    s = 0.0
    for i in range(a.size):
        s += a[i] * b[i]
    return s


@njit(cache=True)
def _copy(dst, src):
    for i in range(src.size):
        dst[i] = src[i]


@njit(cache=True)
def _copy_matrix(dst, src):
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[i, j] = src[i, j]


@njit(cache=True)
def _held_at_bound(xi, gi, lo, up):
    """True when a variable sits at a bound (within 1e-12) and the gradient of f pushes it out."""
    return (xi <= lo + 1e-12 and gi > 0.0) or (xi >= up - 1e-12 and gi < 0.0)


@njit(cache=True)
def _diagonal_scaling(h, x, n):
    """H = diag(max(|x_i|, 1e-2)^2 / n), the default inverse Hessian."""
    k = x.size
    for i in range(k):
        for j in range(k):
            h[i, j] = 0.0
        h[i, i] = max(abs(x[i]), 1e-2) ** 2 / n


@njit(cache=True)
def _bfgs_update(h, s, y, hy):
    """BFGS update of the inverse Hessian H in place with step s and gradient change y (hy: work).

    H+ = H - rho (s (Hy)' + (Hy) s') + (rho^2 y'Hy + rho) s s', rho = 1 / s'y (Nocedal and Wright
    2006, eq. 6.17); H is kept when s'y <= 1e-300.
    """
    sy = _dot(s, y)
    if not sy > 1e-300:
        return
    rho = 1.0 / sy
    k = s.size
    for i in range(k):
        acc = 0.0
        for j in range(k):
            acc += h[i, j] * y[j]
        hy[i] = acc
    c = rho * rho * _dot(y, hy) + rho
    for i in range(k):
        for j in range(k):
            h[i, j] = h[i, j] - rho * (s[i] * hy[j] + hy[i] * s[j]) + c * (s[i] * s[j])


@njit(cache=True)
def _scaled_step_norm(x, g, lower, upper):
    """Largest |g_i| x scale_i over components not held at a bound by the gradient's sign."""
    worst = 0.0
    for i in range(x.size):
        if _held_at_bound(x[i], g[i], lower[i], upper[i]):
            continue
        v = abs(g[i]) * max(abs(x[i]), 1e-2)
        if v > worst:
            worst = v
    return worst


@njit(cache=True)
def _direction(d, h, g, x, lower, upper):
    """Quasi-Newton direction d = -H g on the free variables (held variables: no step, rows of H dropped)."""
    k = g.size
    for i in range(k):
        d[i] = 0.0
        if _held_at_bound(x[i], g[i], lower[i], upper[i]):
            continue
        acc = 0.0
        for j in range(k):
            if not _held_at_bound(x[j], g[j], lower[j], upper[j]):
                acc += h[i, j] * g[j]
        d[i] = -acc


@njit(cache=True)
def _backtrack_factor(f, fn, slope):
    """Next step as a fraction of the rejected one: minimiser of the quadratic through f, slope and fn.

    Safeguarded to [0.1, 0.5] (Nocedal and Wright 2006, section 3.5); halving when fn is not finite.
    """
    den = 2.0 * (fn - f - slope)
    if not math.isfinite(fn) or den <= 0.0:
        return 0.5
    return min(0.5, max(0.1, -slope / den))


@njit(cache=True)
def _merged_with(x, f, known, known_f, n_known, merge_tol):
    """Index of the first known optimum (rows < n_known) whose basin ``x`` has reached; -1 if none.

    Reached: max over i of |x_i - k_i| / max(|k_i|, 1e-2) <= ``merge_tol`` and the objective ``f``
    not below that optimum's.
    """
    for q in range(n_known):
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


@njit(cache=True)
def _expand(full, xr, cons, b):
    """Full vector from the reduced one (x without x_b): x_b = 1 - sum_{i != b} c_i x_i."""
    for i in range(full.size):
        if i != b:
            full[i] = xr[i if i < b else i - 1]
    v = 1.0
    for i in range(full.size):
        if i != b and cons[i] != 0.0:
            v -= cons[i] * full[i]
    full[b] = v


@njit(cache=True)
def _reduce_gradient(red, g, cons, b):
    """Gradient of f(expand(xr)): g_i - c_i g_b for i != b."""
    for i in range(g.size):
        if i != b:
            red[i if i < b else i - 1] = g[i] - cons[i] * g[b] if cons[i] != 0.0 else g[i]


@njit(cache=True)
def _clip(x, lower, upper):
    """Clip to the box in place: x = min(max(x, lower), upper) (NaN stays NaN)."""
    for i in range(x.size):
        if x[i] < lower[i]:
            x[i] = lower[i]
        if x[i] > upper[i]:
            x[i] = upper[i]


@njit(cache=True)
def scale_to_face(x, cons, b, reduced):
    """Scale the constrained variables of x (in place) back onto c'x = 1 when beyond it.

    ``reduced``: x lacks x_b (c_b is skipped).
    """
    s = 0.0
    for i in range(cons.size):
        if cons[i] != 0.0 and not (reduced and i == b):
            s += cons[i] * x[i if not reduced or i < b else i - 1]
    if s > 1.0:
        for i in range(cons.size):
            if cons[i] != 0.0 and not (reduced and i == b):
                x[i if not reduced or i < b else i - 1] /= s


@njit(cache=True)
def spd_inverse(m, out):
    """Inverse of a symmetric positive-definite matrix by Cholesky into ``out``; False if not numerically SPD."""
    k = m.shape[0]
    low = np.zeros((k, k))
    for j in range(k):
        s = m[j, j]
        for p in range(j):
            s -= low[j, p] * low[j, p]
        if not s > 1e-12 * abs(m[j, j]) or not math.isfinite(s):
            return False
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
    for i in range(k):
        for j in range(k):
            s = 0.0
            for p in range(max(i, j), k):
                s += linv[p, i] * linv[p, j]
            out[i, j] = s
    return True


@njit(cache=True)
def _no_feasible(x):
    return None


@njit(cache=True)
def _no_scores(x, data):
    return np.zeros((0, 0))


# --------------------------------------------------------------------------- templates (specialised per problem)
# global names the templates call; specialise() binds them to one problem's kernels
objective = feasible = scores = evaluate = project = bfgs = bhhh_start = None


def _project(x, lower, upper, cons, b, reduced):
    """Onto the feasible set, in place: clip to the box, the problem's ``feasible``, then onto c'x <= 1."""
    _clip(x, lower, upper)
    feasible(x)
    scale_to_face(x, cons, b, reduced)


def _evaluate(x, data, cons, b, reduced, g, full, g_full):
    """Objective at x, its gradient into g (reduced: x without x_b, on the face c'x = 1; full, g_full: work)."""
    if reduced:
        _expand(full, x, cons, b)
        f = objective(full, data, g_full)
        _reduce_gradient(g, g_full, cons, b)
        return f
    return objective(x, data, g)


def _bfgs(x0, data, lower, upper, cons, b, hscale, max_iter, tol, reduced, h0, use_h0, known, known_f, n_known,
          merge_tol, stop_on_face, x, h):
    """Projected BFGS from ``x0`` (see the module docstring); the result into ``x`` and ``h``.

    ``hscale`` divides the default diagonal inverse Hessian (the number of observations); ``h0``
    the starting inverse Hessian when ``use_h0`` and h0[0, 0] > 0. An accepted iterate within
    ``merge_tol`` of a row of ``known[:n_known]`` (objectives ``known_f``) with f >= that objective
    stops the run there (x is then that row; reduced runs compare the full vector). With
    ``stop_on_face`` a run whose accepted iterates lie on the face c'x = 1 twice in a row stops
    there (the caller solves on the face). Returns (f, iterations, converged, index of the merged
    optimum, -1 if none, -2 if stopped on the face).
    """
    k = x0.size
    full = np.empty(cons.size)
    g_full = np.empty(cons.size)
    g = np.empty(k)
    d = np.empty(k)
    xn = np.empty(k)
    gn = np.empty(k)
    s = np.empty(k)
    y = np.empty(k)
    _copy(x, x0)
    project(x, lower, upper, cons, b, reduced)
    f = evaluate(x, data, cons, b, reduced, g, full, g_full)
    _diagonal_scaling(h, x, hscale)
    if use_h0 and h0[0, 0] > 0.0:
        _copy_matrix(h, h0)
    small = 0
    fresh = True
    on_face = 0
    for it in range(max_iter):
        if _scaled_step_norm(x, g, lower, upper) <= tol * (1.0 + abs(f)):
            return f, it, True, -1
        _direction(d, h, g, x, lower, upper)
        if _dot(g, d) >= 0.0:
            _diagonal_scaling(h, x, hscale)
            _direction(d, h, g, x, lower, upper)
            fresh = True
        step = 1.0
        accepted = False
        fn = f
        while step > 1e-14:
            for i in range(k):
                xn[i] = x[i] + step * d[i]
            project(xn, lower, upper, cons, b, reduced)
            fn = evaluate(xn, data, cons, b, reduced, gn, full, g_full)
            for i in range(k):
                s[i] = xn[i] - x[i]
            slope = _dot(g, s)
            if math.isfinite(fn) and fn <= f + 1e-4 * slope:
                accepted = True
                break
            step *= _backtrack_factor(f, fn, slope)
        if not accepted:
            if fresh:
                return f, it, False, -1
            _diagonal_scaling(h, x, hscale)
            fresh = True
            continue
        fresh = False
        for i in range(k):
            y[i] = gn[i] - g[i]
        _bfgs_update(h, s, y, d)
        if abs(f - fn) <= 1e-15 * (1.0 + abs(f)):
            small += 1
        else:
            small = 0
        _copy(x, xn)
        _copy(g, gn)
        f = fn
        q = _merged_with(full if reduced else x, f, known, known_f, n_known, merge_tol)
        if q >= 0:
            return known_f[q], it + 1, True, q
        if small >= 3:
            return f, it + 1, True, -1
        if stop_on_face:
            on_face = on_face + 1 if linear_form(cons, x) >= 1.0 - 1e-9 else 0
            if on_face >= 2:
                return f, it + 1, False, -2
    return f, max_iter, False, -1


def _bhhh_start(x, data, out):
    """The inverse BHHH matrix at x into ``out``; False when it is not numerically positive definite."""
    m = scores(x, data)
    return m.shape[0] == x.size and spd_inverse(m, out)


@njit(cache=True)
def _reduced_bhhh(m, cons, b, keep, out):
    """Inverse of the BHHH matrix of the problem on the face (x_b eliminated) into ``out``; False if not SPD.

    With J the Jacobian of the expansion (rows i != b: the unit vectors, row b: -c), the reduced
    matrix is J' M J: m_jl - c_i m_bi' - c_i' m_ib + c_i c_i' m_bb (i, i' = keep[j], keep[l]).
    """
    kr = keep.size
    mr = np.empty((kr, kr))
    for j in range(kr):
        i = keep[j]
        for q in range(kr):
            ii = keep[q]
            mr[j, q] = m[i, ii] - cons[i] * m[b, ii] - cons[ii] * m[i, b] + cons[i] * cons[ii] * m[b, b]
    return spd_inverse(mr, out)


def _multi_start(starts, h0s, use_h0, on_face, tols, data, lower, upper, cons, b, hscale, max_iter, merge_tol):
    """Projected BFGS from each row of ``starts``, in order (row j to tolerance ``tols[j]``).

    Row j starts from the inverse Hessian ``h0s[j]`` when ``use_h0[j]``, else from the BHHH start;
    with ``on_face[j]`` the start lies on the face c'x = 1 and ``h0s[j][:k-1, :k-1]`` is the inverse
    Hessian of the problem on the face (x_b eliminated). Phases: the full problem (stopped once its
    iterates lie on the face), the problem on the face (BHHH start there), and again the full
    problem when the KKT sign d f / d x_b > 0 says the optimum is inside; at most four phases. A run
    that reaches the basin of an optimum found by an earlier row (``merge_tol``) stops there.
    Returns arrays (x, -f, iterations, converged, inverse Hessian, has one, on the face) with a row
    per start; on the face, the inverse Hessian is the reduced problem's, in the top-left block.
    """
    m, k = starts.shape
    xs = np.empty((m, k))
    lls = np.empty(m)
    its = np.empty(m, np.int64)
    oks = np.empty(m, np.bool_)
    hs = np.zeros((m, k, k))
    has_h = np.zeros(m, np.bool_)
    h_face = np.zeros(m, np.bool_)
    known = np.empty((m, k))
    known_f = np.empty(m)
    n_known = np.int64(0)  # not a literal 0: numba would compile the callee for that literal too
    kr = k - 1 if b >= 0 else k
    keep = np.empty(kr, np.int64)
    j = 0
    for i in range(k):
        if i != b:
            keep[j] = i
            j += 1
    x = np.empty(k)
    x0 = np.empty(k)
    h = np.empty((k, k))
    h0 = np.empty((k, k))
    xr0 = np.empty(kr)
    xr = np.empty(kr)
    lr = np.empty(kr)
    ur = np.empty(kr)
    hr = np.empty((kr, kr))
    hr0 = np.empty((kr, kr))
    g_full = np.empty(k)
    for i in range(kr):
        lr[i] = lower[keep[i]]
        ur[i] = upper[keep[i]]
    for j in range(m):
        face = on_face[j] and b >= 0
        _copy(x, starts[j])
        f, it, ok, merged, has, reduced_h = np.inf, 0, False, -1, False, False
        for phase in range(4):
            # even phases: the full problem, odd phases: on the face (the first phase is on the face
            # for a start there)
            reduced = (phase % 2 == 1) != face
            if reduced:
                for i in range(kr):
                    xr0[i] = x[keep[i]]
                given = False
                if phase == 0 and use_h0[j]:
                    for i in range(kr):
                        for q in range(kr):
                            hr0[i, q] = h0s[j, i, q]
                    given = True
                else:
                    ms = scores(x, data)
                    given = ms.shape[0] == k and _reduced_bhhh(ms, cons, b, keep, hr0)
            else:
                _copy(x0, x)
                if phase == 0 and use_h0[j]:
                    _copy_matrix(h0, h0s[j])
                    given = True
                else:
                    given = bhhh_start(x0, data, h0)
            fa, ita, oka, ma = bfgs(xr0 if reduced else x0, data, lr if reduced else lower, ur if reduced else upper,
                                    cons, b, hscale, max_iter, tols[j], reduced, hr0 if reduced else h0, given, known,
                                    known_f, n_known, merge_tol, phase == 0 and not reduced, xr if reduced else x,
                                    hr if reduced else h)
            it += ita
            if ma >= 0:  # in the basin of an optimum found earlier: that optimum
                merged = ma
                for i in range(k):
                    x[i] = known[ma, i]
                f, ok, has = fa, True, False
                break
            if reduced:
                _expand(x, xr, cons, b)
                f, ok, has, reduced_h = fa, oka, True, True
                objective(x, data, g_full)
                if g_full[b] <= 0.0:  # KKT: the constraint is active, the optimum is on the face
                    break
                ok = False  # the optimum is inside: on with the full problem
            else:
                f, ok, has, reduced_h = fa, oka, True, False
                if ma == -1 and (b < 0 or linear_form(cons, x) <= 1.0 - 1e-9):
                    break  # converged (or failed) inside: no face to solve on
        if ok and merged < 0:
            for i in range(k):
                known[n_known, i] = x[i]
            known_f[n_known] = f
            n_known += 1
        for i in range(k):
            xs[j, i] = x[i]
        lls[j] = -f
        its[j] = it
        oks[j] = ok
        if has:
            if reduced_h:
                for i in range(kr):
                    for q in range(kr):
                        hs[j, i, q] = hr[i, q]
            else:
                _copy_matrix(hs[j], h)
            has_h[j] = True
            h_face[j] = reduced_h
    return xs, lls, its, oks, hs, has_h, h_face


# --------------------------------------------------------------------------- the problem API

@dataclass(frozen=True)
class ProblemKernels:
    """A problem's compiled kernels: ``bfgs`` and ``multi_start`` (signatures as the templates).

    ``bfgs`` (called from one place) is inlined into ``multi_start`` by numba (``inline="always"``):
    it is compiled there, not on its own. ``multi_start_inline`` is ``multi_start`` for a kernel
    that calls it from one place (the daily fit): compiled into that kernel, so that its code is
    not optimised twice (as a kernel of its own and again inside its caller).
    """

    bfgs: Callable
    multi_start: Callable
    multi_start_inline: Callable


@dataclass(frozen=True)
class MinimizeResult:
    """Result of one projected-BFGS run: ``x``, objective ``fun``, ``iterations``, ``converged``, ``inv_hessian``."""

    x: np.ndarray
    fun: float
    iterations: int
    converged: bool
    inv_hessian: np.ndarray | None


@dataclass(frozen=True)
class BoundedProblem:
    r"""A smooth minimisation on a box with at most one linear inequality :math:`c'x \le 1`.

    Parameters
    ----------
    name : str
        Names the compiled kernels (and their numba cache files); one name per problem.
    objective : numba kernel ``(x, data, grad) -> f``
        ``x`` ndarray of shape (k,), ``data`` a tuple of whatever the objective needs; writes the
        gradient into ``grad`` (shape (k,)).
    scores : numba kernel ``(x, data) -> ndarray (k, k)``, optional
        Sum over observations of the outer products of per-observation gradients (BHHH matrix).
    feasible : numba kernel ``(x) -> None``, optional
        In-place projection onto constraints other than the box and c'x <= 1, acting on
        variables before the eliminated one.
    """

    name: str
    objective: Callable
    scores: Callable | None = None
    feasible: Callable | None = None

    @functools.cached_property
    def kernels(self) -> ProblemKernels:
        """The optimiser's templates specialised to this problem (compiled on first use, cached on disk)."""
        inline = {"inline": "always"}  # bfgs is called from one place: compiled once, into multi_start
        evaluate = specialise(_evaluate, self.name, objective=self.objective)
        project = specialise(_project, self.name, feasible=self.feasible or _no_feasible)
        bfgs = specialise(_bfgs, self.name, inline, evaluate=evaluate, project=project)
        bhhh = specialise(_bhhh_start, self.name, inline, scores=self.scores or _no_scores)
        pieces = dict(bfgs=bfgs, objective=self.objective, bhhh_start=bhhh, scores=self.scores or _no_scores)
        return ProblemKernels(bfgs, specialise(_multi_start, self.name, **pieces),
                              specialise(_multi_start, self.name + "_inline", inline, **pieces))

    def minimize(self, x0, data: tuple, lower, upper, constraint=None, eliminated: int = -1, tol: float = 1e-7,
                 max_iter: int = 300, inv_hessian=None, hscale: float = 1.0) -> MinimizeResult:
        r"""Projected BFGS from ``x0`` (on the face c'x = 1 too when it ends there).

        Parameters
        ----------
        x0, lower, upper : array_like of shape (k,)
        data : tuple
            Passed to the objective.
        constraint : array_like of shape (k,), optional
            c of c'x <= 1; ``eliminated`` the index b (c_b = 1) solved for on the face,
            :math:`x_b = 1 - \sum_{i\ne b} c_i x_i`. The projection keeps :math:`x_b \ge 0`
            there, so ``lower[b]`` must be <= 0, and the other constraints must keep
            :math:`x_b` below ``upper[b]`` (GARCH: β = 1 - α <= 1 as α >= 0).
        tol, max_iter : convergence tolerance (scaled projected gradient) and iteration cap.
        inv_hessian : ndarray of shape (k, k), optional
            Starting inverse Hessian (else the BHHH start, else the diagonal).
        hscale : float
            Divisor of the diagonal start diag(max(|x_i|, 1e-2)^2) (the number of observations).
        """
        out = self.multi_start(np.asarray(x0, dtype=float)[None, :], data, lower, upper, constraint, eliminated,
                               tol=tol, max_iter=max_iter, inv_hessians=None if inv_hessian is None
                               else np.asarray(inv_hessian, dtype=float)[None], merge_tol=0.0, hscale=hscale)
        return out[0]

    def multi_start(self, starts, data: tuple, lower, upper, constraint=None, eliminated: int = -1, tol=1e-7,
                    max_iter: int = 300, inv_hessians=None, merge_tol: float = 1e-2,
                    hscale: float = 1.0) -> list[MinimizeResult]:
        """Runs from each row of ``starts`` (shape (m, k)), merged into optima found by earlier rows.

        ``tol`` one tolerance or one per row; ``inv_hessians`` (m, k, k) starting inverse Hessians
        (rows of zeros: the BHHH start). Returns one :class:`MinimizeResult` per row (``fun`` the
        objective; a merged run returns the optimum it reached).
        """
        starts = np.array(starts, dtype=float, ndmin=2)
        m, k = starts.shape
        cons = np.zeros(k) if constraint is None else np.array(constraint, dtype=float)
        lower, upper = np.array(lower, dtype=float), np.array(upper, dtype=float)
        if cons.shape != (k,) or lower.shape != (k,) or upper.shape != (k,):
            raise ValueError(f"{self.name}: constraint, lower and upper must have shape ({k},)")
        if eliminated >= 0 and not (eliminated < k and cons[eliminated] == 1.0 and lower[eliminated] <= 0.0):
            raise ValueError(f"{self.name}: the eliminated variable {eliminated} needs constraint[{eliminated}] == 1 "
                             f"and lower[{eliminated}] <= 0")
        if eliminated < 0 and np.any(cons != 0.0):
            raise ValueError(f"{self.name}: a constraint needs the index of the variable eliminated on its face")
        h0s = np.zeros((m, k, k)) if inv_hessians is None else np.array(inv_hessians, dtype=float)
        use_h0 = np.array([h0s[j, 0, 0] > 0.0 for j in range(m)], dtype=bool)
        tols = np.full(m, tol, dtype=float) if np.ndim(tol) == 0 else np.array(tol, dtype=float)
        on_face = np.zeros(m, dtype=bool)
        xs, fs, its, oks, hs, has_h, h_face = self.kernels.multi_start(
            starts, h0s, use_h0, on_face, tols, data, lower, upper, cons, int(eliminated), float(hscale),
            int(max_iter), float(merge_tol))
        return [MinimizeResult(xs[j], float(-fs[j]), int(its[j]), bool(oks[j]),
                               hs[j] if has_h[j] and not h_face[j] else None) for j in range(m)]
