r"""Volatility processes: GARCH(1,1), GJR-GARCH(1,1,1), EWMA and EGARCH(1,1,1), one class each.

Zero-mean returns :math:`\epsilon_t = \sigma_t z_t` (percent). Each process is a small frozen
dataclass that states its parameters (names, box bounds, the linear stationarity constraint,
a starting grid) and supplies its **numba pieces** — the variance update, its derivative with
respect to the parameters, and how those derivatives enter the score — which the likelihood
pass, the optimiser and the path simulation inline (see :mod:`.likelihood`). Adding a process
is one class here; nothing else changes.

* :class:`Garch` (Bollerslev 1986): :math:`\sigma^2_t = \omega + \alpha\epsilon^2_{t-1} + \beta\sigma^2_{t-1}`;
* :class:`GjrGarch` (Glosten, Jagannathan and Runkle 1993):
  :math:`\sigma^2_t = \omega + (\alpha + \gamma 1[\epsilon_{t-1}<0])\epsilon^2_{t-1} + \beta\sigma^2_{t-1}`;
* :class:`Ewma` (RiskMetrics 1996): :math:`\sigma^2_t = \lambda\sigma^2_{t-1} + (1-\lambda)\epsilon^2_{t-1}`, λ fixed;
* :class:`Egarch` (Nelson 1991, as ``arch``'s ``EGARCH(p=1, o=1, q=1)``):
  :math:`\ln\sigma^2_t = \omega + \alpha(|e_{t-1}| - \sqrt{2/\pi}) + \gamma e_{t-1} + \beta\ln\sigma^2_{t-1}`,
  :math:`e_t = \epsilon_t/\sigma_t`.

The recursions start from ``arch``'s backcast :math:`\hat\sigma^2_0` (:func:`.likelihood.backcast`):
the GARCH family uses it for the lagged variance and the lagged squared shock (half of it for the
asymmetric term), :math:`\sigma^2_0 = \omega + (\alpha + \gamma/2 + \beta)\hat\sigma^2_0`; EGARCH for
the lagged log variance only, :math:`\ln\sigma^2_0 = \omega + \beta\ln\hat\sigma^2_0` (as ``arch``),
so log-likelihoods are comparable with ``arch.arch_model(..., mean="Zero")``.

Numba pieces (one ``@njit(cache=True)`` function each, named ``_<process>_<piece>``)
-----------------------------------------------------------------------------------
``params(theta, fixed)`` -> tuple p of recursion parameters; ``start(p, bc)`` -> state at t = 0;
``step(x, state, p)`` -> next state after the return x; ``variance(state)`` -> σ², ``inverse(state)``
-> 1/σ²;
``from_variance(s2)`` -> a state with variance s2 (path simulation); ``start_d``/``step_d`` the
same with the tuple d of derivatives of the state; ``grad_zero()``, ``grad_add(g, dl, state, d)``
(g += dl · dσ²/dθ with dl = ∂ℓ/∂σ²), ``grad_store(out, g)`` and ``scores(out, dl, state, d)``
(one observation's dl · dσ²/dθ into ``out[:k]``); ``scale_bounds(lower, upper, var)`` and
``scale_grid(grid, scale, var)`` put the sample variance ``var`` into the unit bounds and grid.
The GARCH family's state is σ² itself; EGARCH's is (ln σ², σ², 1/σ) (one ``exp`` per observation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from .._numba import njit

__all__ = ["VolatilityProcess", "Garch", "GjrGarch", "Ewma", "Egarch", "ProcessKernels", "PROCESSES"]


class ProcessKernels(NamedTuple):
    """The numba pieces of one volatility process (see the module docstring)."""

    params: object
    start: object
    step: object
    variance: object
    inverse: object
    from_variance: object
    start_d: object
    step_d: object
    grad_zero: object
    grad_add: object
    grad_store: object
    scores: object
    scale_bounds: object
    scale_grid: object
    feasible: object


@dataclass(frozen=True)
class VolatilityProcess:
    r"""Base class of the volatility processes.

    Class attributes: ``name``; ``parameter_names``; ``kernels`` (:class:`ProcessKernels`);
    ``unit_lower``/``unit_upper`` (box bounds at unit sample variance, scaled by
    ``kernels.scale_bounds``); ``unit_grid``/``grid_scale`` (starting grid, scaled by
    ``kernels.scale_grid``); ``persistence_coefficients`` c and ``eliminated`` b: the
    stationarity constraint :math:`\sum_i c_i\theta_i \le 1` (c = 0: none), solved on its face by
    eliminating parameter b; ``extra_constraints``: further linear constraints ``A θ >= b`` that
    ``kernels``' ``feasible`` enforces in the optimiser.
    """

    name: ClassVar[str] = ""
    parameter_names: ClassVar[tuple[str, ...]] = ()
    kernels: ClassVar[ProcessKernels]
    unit_lower: ClassVar[np.ndarray]
    unit_upper: ClassVar[np.ndarray]
    unit_grid: ClassVar[np.ndarray]
    grid_scale: ClassVar[np.ndarray]
    persistence_coefficients: ClassVar[np.ndarray]
    eliminated: ClassVar[int] = -1
    extra_constraints: ClassVar[tuple[np.ndarray, np.ndarray]]

    def fixed(self) -> np.ndarray:
        """Fixed (not estimated) constants passed to the kernels, e.g. EWMA's λ."""
        return np.empty(0)

    def bounds(self, var: float) -> list[tuple[float, float]]:
        """Box bounds of the parameters at sample variance ``var`` (percent squared)."""
        lower, upper = self.unit_lower.copy(), self.unit_upper.copy()
        self.kernels.scale_bounds(lower, upper, float(var))
        return list(zip(lower.tolist(), upper.tolist(), strict=True))

    def constraints(self) -> tuple[np.ndarray, np.ndarray]:
        """Linear constraints ``A @ theta >= b`` (stationarity first), as arch's ``constraints()``."""
        k = len(self.parameter_names)
        rows, rhs = [], []
        if self.eliminated >= 0:
            rows.append(-self.persistence_coefficients)
            rhs.append(-1.0)
        a_extra, b_extra = self.extra_constraints
        rows.extend(a_extra)
        rhs.extend(b_extra)
        return np.array(rows, dtype=float).reshape(len(rows), k), np.array(rhs, dtype=float)

    def persistence(self, theta: np.ndarray) -> float:
        """Persistence of the variance (GARCH family: α + γ/2 + β)."""
        from .optimize import linear_form

        k = len(self.parameter_names)
        return float(linear_form(self.persistence_coefficients.copy(), np.array(theta[:k], dtype=float)))

    def starting_grid(self, var: float) -> np.ndarray:
        """Starting values at sample variance ``var``, a row per point."""
        grid = self.unit_grid.copy()
        self.kernels.scale_grid(grid, self.grid_scale, float(var))
        return grid


def _frozen(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays if len(arrays) > 1 else arrays[0]


def _garch_family_grid(gjr: bool) -> tuple[np.ndarray, np.ndarray]:
    """Persistence in {0.5, 0.7, 0.9, 0.98} x alpha in {0.01, 0.05, 0.15}; omega = var (1 - persistence).

    GJR: gamma = 0.05, beta = persistence - alpha - 0.025. Low alpha catches the second mode of
    bimodal fits.
    """
    rows, scale = [], []
    for persistence in (0.50, 0.70, 0.90, 0.98):
        for alpha in (0.01, 0.05, 0.15):
            beta = persistence - alpha
            rows.append([0.0, alpha, 0.05, beta - 0.025] if gjr else [0.0, alpha, beta])
            scale.append(1 - persistence)
    return _frozen(np.array(rows, dtype=float), np.array(scale))


# --------------------------------------------------------------------------- shared by the GARCH family

@njit(cache=True, inline="always")
def _omega_scale_bounds(lower, upper, var):
    """Scale the bounds of omega by the sample variance: [1e-6 var, 10 var] (arch's); the others as given."""
    lower[0] = lower[0] * var
    upper[0] = upper[0] * var


@njit(cache=True, inline="always")
def _omega_scale_grid(grid, scale, var):
    """Starting omega = var (1 - persistence) in column 0."""
    for j in range(grid.shape[0]):
        grid[j, 0] = var * scale[j]


@njit(cache=True, inline="always")
def _same_variance(state):
    return state


@njit(cache=True, inline="always")
def _reciprocal(s2):
    return 1.0 / s2


@njit(cache=True, inline="always")
def _no_feasible(x):
    return None


@njit(cache=True, inline="always")
def _store(out, g):
    """out[i] = g[i] for the entries of the tuple g (a gradient into the parameter vector)."""
    for i in range(len(g)):
        out[i] = g[i]


@njit(cache=True, inline="always")
def _scaled_into(out, a, d):
    """out[i] = a d[i] for the entries of the tuple d."""
    for i in range(len(d)):
        out[i] = a * d[i]


@njit(cache=True, inline="always")
def _variance_scores(out, dl, s2, d):
    """One observation's scores dl dσ²/dθ (the GARCH family's state is σ², d its derivatives)."""
    _scaled_into(out, dl, d)


# --------------------------------------------------------------------------- GARCH(1,1)

@njit(cache=True, inline="always")
def _garch_params(theta, fixed):
    return theta[0], theta[1], theta[2]


@njit(cache=True, inline="always")
def _garch_start(p, bc):
    omega, alpha, beta = p
    return omega + (alpha + beta) * bc


@njit(cache=True, inline="always")
def _garch_step(x, s2, p):
    omega, alpha, beta = p
    return omega + alpha * (x * x) + beta * s2


@njit(cache=True, inline="always")
def _garch_start_d(p, bc):
    return _garch_start(p, bc), (1.0, bc, bc)


@njit(cache=True, inline="always")
def _garch_step_d(x, s2, d, p):
    beta = p[2]
    return _garch_step(x, s2, p), (1.0 + beta * d[0], x * x + beta * d[1], s2 + beta * d[2])


@njit(cache=True, inline="always")
def _garch_grad_zero():
    return 0.0, 0.0, 0.0


@njit(cache=True, inline="always")
def _garch_grad_add(g, dl, s2, d):
    return g[0] + dl * d[0], g[1] + dl * d[1], g[2] + dl * d[2]


@dataclass(frozen=True)
class Garch(VolatilityProcess):
    r"""GARCH(1,1) (Bollerslev 1986): :math:`\sigma^2_t = \omega + \alpha\epsilon^2_{t-1} + \beta\sigma^2_{t-1}`.

    Bounds as ``arch``: ω in [1e-6, 10] x sample variance, α, β in [0, 1]; stationarity
    α + β <= 1 (the boundary allowed: crypto Student-t fits often sit on it).
    """

    name: ClassVar[str] = "garch"
    parameter_names: ClassVar[tuple[str, ...]] = ("omega", "alpha", "beta")
    kernels: ClassVar[ProcessKernels] = ProcessKernels(
        params=_garch_params, start=_garch_start, step=_garch_step, variance=_same_variance, inverse=_reciprocal,
        from_variance=_same_variance, start_d=_garch_start_d, step_d=_garch_step_d, grad_zero=_garch_grad_zero,
        grad_add=_garch_grad_add, grad_store=_store, scores=_variance_scores, scale_bounds=_omega_scale_bounds,
        scale_grid=_omega_scale_grid, feasible=_no_feasible)
    unit_lower, unit_upper = _frozen(np.array([1e-6, 0.0, 0.0]), np.array([10.0, 1.0, 1.0]))
    unit_grid, grid_scale = _garch_family_grid(False)
    persistence_coefficients: ClassVar[np.ndarray] = _frozen(np.array([0.0, 1.0, 1.0]))
    eliminated: ClassVar[int] = 2
    extra_constraints: ClassVar[tuple[np.ndarray, np.ndarray]] = (np.empty((0, 3)), np.empty(0))


# --------------------------------------------------------------------------- GJR-GARCH(1,1,1)

@njit(cache=True, inline="always")
def _gjr_params(theta, fixed):
    return theta[0], theta[1], theta[2], theta[3]


@njit(cache=True, inline="always")
def _gjr_start(p, bc):
    omega, alpha, gamma, beta = p
    return omega + (alpha + 0.5 * gamma + beta) * bc


@njit(cache=True, inline="always")
def _gjr_step(x, s2, p):
    omega, alpha, gamma, beta = p
    neg = 1.0 if x < 0 else 0.0
    return omega + (alpha + gamma * neg) * (x * x) + beta * s2


@njit(cache=True, inline="always")
def _gjr_start_d(p, bc):
    return _gjr_start(p, bc), (1.0, bc, 0.5 * bc, bc)


@njit(cache=True, inline="always")
def _gjr_step_d(x, s2, d, p):
    beta = p[3]
    e2 = x * x
    neg = 1.0 if x < 0 else 0.0
    return _gjr_step(x, s2, p), (1.0 + beta * d[0], e2 + beta * d[1], e2 * neg + beta * d[2], s2 + beta * d[3])


@njit(cache=True, inline="always")
def _gjr_grad_zero():
    return 0.0, 0.0, 0.0, 0.0


@njit(cache=True, inline="always")
def _gjr_grad_add(g, dl, s2, d):
    return g[0] + dl * d[0], g[1] + dl * d[1], g[2] + dl * d[2], g[3] + dl * d[3]


@njit(cache=True, inline="always")
def _gjr_feasible(x):
    """Enforce alpha + gamma >= 0 by raising gamma to -alpha (a negative shock's response stays >= 0)."""
    if x[1] + x[2] < 0.0:
        x[2] = -x[1]


@dataclass(frozen=True)
class GjrGarch(VolatilityProcess):
    r"""GJR-GARCH(1,1,1) (Glosten, Jagannathan and Runkle 1993).

    :math:`\sigma^2_t = \omega + (\alpha + \gamma 1[\epsilon_{t-1}<0])\epsilon^2_{t-1} + \beta\sigma^2_{t-1}`;
    bounds as ``arch`` (γ in [-1, 2]); α + γ/2 + β <= 1 and α + γ >= 0.
    """

    name: ClassVar[str] = "gjr"
    parameter_names: ClassVar[tuple[str, ...]] = ("omega", "alpha", "gamma", "beta")
    kernels: ClassVar[ProcessKernels] = ProcessKernels(
        params=_gjr_params, start=_gjr_start, step=_gjr_step, variance=_same_variance, inverse=_reciprocal,
        from_variance=_same_variance, start_d=_gjr_start_d, step_d=_gjr_step_d, grad_zero=_gjr_grad_zero,
        grad_add=_gjr_grad_add, grad_store=_store, scores=_variance_scores, scale_bounds=_omega_scale_bounds,
        scale_grid=_omega_scale_grid, feasible=_gjr_feasible)
    unit_lower, unit_upper = _frozen(np.array([1e-6, 0.0, -1.0, 0.0]), np.array([10.0, 1.0, 2.0, 1.0]))
    unit_grid, grid_scale = _garch_family_grid(True)
    persistence_coefficients: ClassVar[np.ndarray] = _frozen(np.array([0.0, 1.0, 0.5, 1.0]))
    eliminated: ClassVar[int] = 3
    extra_constraints: ClassVar[tuple[np.ndarray, np.ndarray]] = (np.array([[0.0, 1.0, 1.0, 0.0]]), np.array([0.0]))


# --------------------------------------------------------------------------- EWMA

@njit(cache=True, inline="always")
def _ewma_params(theta, fixed):
    return 1.0 - fixed[0], fixed[0]


@njit(cache=True, inline="always")
def _ewma_start(p, bc):
    return (p[0] + p[1]) * bc


@njit(cache=True, inline="always")
def _ewma_step(x, s2, p):
    return p[0] * (x * x) + p[1] * s2


@njit(cache=True, inline="always")
def _ewma_start_d(p, bc):
    return _ewma_start(p, bc), ()


@njit(cache=True, inline="always")
def _ewma_step_d(x, s2, d, p):
    return _ewma_step(x, s2, p), ()


@njit(cache=True, inline="always")
def _ewma_grad_zero():
    return ()


@njit(cache=True, inline="always")
def _ewma_grad_add(g, dl, s2, d):
    return ()


@njit(cache=True, inline="always")
def _ewma_grad_store(out, g):
    return None


@njit(cache=True, inline="always")
def _ewma_scores(out, dl, s2, d):
    return None


@njit(cache=True, inline="always")
def _ewma_scale(a, b, var):
    return None


@dataclass(frozen=True)
class Ewma(VolatilityProcess):
    r"""EWMA (RiskMetrics 1996): :math:`\sigma^2_t = \lambda\sigma^2_{t-1} + (1-\lambda)\epsilon^2_{t-1}`.

    λ (``lam``, in (0, 1), 0.94 by default) is fixed, not estimated; only a distribution's
    shape parameters are.
    """

    lam: float = 0.94
    name: ClassVar[str] = "ewma"
    parameter_names: ClassVar[tuple[str, ...]] = ()
    kernels: ClassVar[ProcessKernels] = ProcessKernels(
        params=_ewma_params, start=_ewma_start, step=_ewma_step, variance=_same_variance, inverse=_reciprocal,
        from_variance=_same_variance, start_d=_ewma_start_d, step_d=_ewma_step_d, grad_zero=_ewma_grad_zero,
        grad_add=_ewma_grad_add, grad_store=_ewma_grad_store, scores=_ewma_scores, scale_bounds=_ewma_scale,
        scale_grid=_ewma_scale, feasible=_no_feasible)
    unit_lower, unit_upper = _frozen(np.empty(0), np.empty(0))
    unit_grid, grid_scale = _frozen(np.empty((1, 0)), np.ones(1))
    persistence_coefficients: ClassVar[np.ndarray] = _frozen(np.empty(0))
    extra_constraints: ClassVar[tuple[np.ndarray, np.ndarray]] = (np.empty((0, 0)), np.empty(0))

    def __post_init__(self) -> None:
        if not 0.0 < self.lam < 1.0:
            raise ValueError(f"lam (EWMA lambda) must be in (0, 1), got {self.lam!r}")

    def fixed(self) -> np.ndarray:
        """``[lam]``."""
        return np.array([float(self.lam)])

    def persistence(self, theta: np.ndarray) -> float:
        """1 (an integrated process)."""
        return 1.0


# --------------------------------------------------------------------------- EGARCH(1,1,1)

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # E|z| of a standard normal
#: log variances are kept in [-LN_VAR_MAX, LN_VAR_MAX] (exp stays finite; arch caps at log(max double) - 0.1)
_LN_VAR_MAX = 700.0


@njit(cache=True, inline="always")
def _egarch_params(theta, fixed):
    return theta[0], theta[1], theta[2], theta[3]


@njit(cache=True, inline="always")
def _egarch_state(h):
    """(ln σ², σ², 1/σ) with ln σ² capped at ±LN_VAR_MAX: one exp (1/σ = exp(-ln σ²/2)), σ² = 1/(1/σ)²."""
    h = min(max(h, -_LN_VAR_MAX), _LN_VAR_MAX)
    q = math.exp(-0.5 * h)
    return h, 1.0 / (q * q), q


@njit(cache=True, inline="always")
def _egarch_start(p, bc):
    omega, alpha, gamma, beta = p
    return _egarch_state(omega + beta * math.log(bc))


@njit(cache=True, inline="always")
def _egarch_step(x, state, p):
    omega, alpha, gamma, beta = p
    e = x * state[2]
    return _egarch_state(omega + alpha * (abs(e) - _SQRT_2_OVER_PI) + gamma * e + beta * state[0])


@njit(cache=True, inline="always")
def _egarch_variance(state):
    return state[1]


@njit(cache=True, inline="always")
def _egarch_inverse(state):
    return state[2] * state[2]


@njit(cache=True, inline="always")
def _egarch_from_variance(s2):
    return math.log(s2), s2, 1.0 / math.sqrt(s2)


@njit(cache=True, inline="always")
def _egarch_start_d(p, bc):
    state = _egarch_start(p, bc)
    if abs(state[0]) >= _LN_VAR_MAX:
        return state, (0.0, 0.0, 0.0, 0.0)
    return state, (1.0, 0.0, 0.0, math.log(bc))


@njit(cache=True, inline="always")
def _egarch_step_d(x, state, d, p):
    """Next state and derivatives: d ln σ²_t/dθ = (1, |e|-c, e, ln σ²_{t-1}) + (β - α|e|/2 - γe/2) d ln σ²_{t-1}/dθ.

    e = x/σ_{t-1}, c = sqrt(2/π).
    """
    alpha, gamma, beta = p[1], p[2], p[3]
    new = _egarch_step(x, state, p)
    if abs(new[0]) >= _LN_VAR_MAX:
        return new, (0.0, 0.0, 0.0, 0.0)
    e = x * state[2]
    ae = abs(e)
    k = beta - 0.5 * (alpha * ae + gamma * e)
    return new, (1.0 + k * d[0], ae - _SQRT_2_OVER_PI + k * d[1], e + k * d[2], state[0] + k * d[3])


@njit(cache=True, inline="always")
def _egarch_grad_add(g, dl, state, d):
    w = dl * state[1]  # dσ²/dθ = σ² d ln σ²/dθ
    return g[0] + w * d[0], g[1] + w * d[1], g[2] + w * d[2], g[3] + w * d[3]


@njit(cache=True, inline="always")
def _egarch_scores(out, dl, state, d):
    _scaled_into(out, dl * state[1], d)


@njit(cache=True, inline="always")
def _egarch_scale_bounds(lower, upper, var):
    """Bounds of omega: ln var ± ln 1e4 (arch's)."""
    lv = math.log(var)
    lower[0] = lv + lower[0]
    upper[0] = lv + upper[0]


@njit(cache=True, inline="always")
def _egarch_scale_grid(grid, scale, var):
    """Starting omega = (1 - beta) ln var (arch's starting values)."""
    lv = math.log(var)
    for j in range(grid.shape[0]):
        grid[j, 0] = lv * scale[j]


def _egarch_grid() -> tuple[np.ndarray, np.ndarray]:
    """Starting grid: beta in {0.5, 0.7, 0.9, 0.98} x (alpha, gamma) in {(0.05, 0), (0.1, -0.05), (0.2, -0.1)}."""
    rows, scale = [], []
    for beta in (0.50, 0.70, 0.90, 0.98):
        for alpha, gamma in ((0.05, 0.0), (0.1, -0.05), (0.2, -0.1)):
            rows.append([0.0, alpha, gamma, beta])
            scale.append(1 - beta)
    return _frozen(np.array(rows, dtype=float), np.array(scale))


@dataclass(frozen=True)
class Egarch(VolatilityProcess):
    r"""EGARCH(1,1,1) (Nelson 1991), as ``arch``'s ``EGARCH(p=1, o=1, q=1)``.

    :math:`\ln\sigma^2_t = \omega + \alpha(|e_{t-1}| - \sqrt{2/\pi}) + \gamma e_{t-1} + \beta\ln\sigma^2_{t-1}`
    with :math:`e_t = \epsilon_t/\sigma_t`, started at :math:`\ln\sigma^2_0 = \omega + \beta\ln\hat\sigma^2_0`
    (``arch``'s backcast, in logs). The variance is positive for any parameters; stationarity is
    |β| < 1. Bounds: ω in ln(sample variance) ± ln 10⁴ and β in [0, 1] (``arch``'s), α and γ in
    [-5, 5] (``arch``: unbounded). Log variances are capped at ±700 (derivatives zero there).
    ``arch`` also clips each σ²_t to data-driven bounds; where those bind (never at an optimum
    in the tests) the log-likelihoods differ.

    Reference: Nelson (1991), "Conditional heteroskedasticity in asset returns: a new approach",
    Econometrica 59(2).
    """

    name: ClassVar[str] = "egarch"
    parameter_names: ClassVar[tuple[str, ...]] = ("omega", "alpha", "gamma", "beta")
    kernels: ClassVar[ProcessKernels] = ProcessKernels(
        params=_egarch_params, start=_egarch_start, step=_egarch_step, variance=_egarch_variance,
        inverse=_egarch_inverse, from_variance=_egarch_from_variance, start_d=_egarch_start_d, step_d=_egarch_step_d,
        grad_zero=_gjr_grad_zero, grad_add=_egarch_grad_add, grad_store=_store, scores=_egarch_scores,
        scale_bounds=_egarch_scale_bounds, scale_grid=_egarch_scale_grid, feasible=_no_feasible)
    unit_lower, unit_upper = _frozen(np.array([-math.log(1e4), -5.0, -5.0, 0.0]),
                                     np.array([math.log(1e4), 5.0, 5.0, 1.0]))
    unit_grid, grid_scale = _egarch_grid()
    persistence_coefficients: ClassVar[np.ndarray] = _frozen(np.zeros(4))
    extra_constraints: ClassVar[tuple[np.ndarray, np.ndarray]] = (np.empty((0, 4)), np.empty(0))

    def persistence(self, theta: np.ndarray) -> float:
        """β (the log variance's autoregressive coefficient)."""
        return float(theta[3])


#: process classes by the name ``fhs_garch(vol=...)`` uses
PROCESSES: dict[str, type[VolatilityProcess]] = {p.name: p for p in (Garch, GjrGarch, Ewma, Egarch)}
