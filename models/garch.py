"""Compatibility shim: the volatility filters now live in :mod:`marginlab.models.volatility`.

``GarchSpec(vol, dist, lam)`` builds a :class:`~marginlab.models.volatility.FilterSpec` from names;
``garch_recursion`` is the GJR-GARCH variance recursion (γ = 0: GARCH). New code should import from
``marginlab.models.volatility``.
"""

from __future__ import annotations

import numpy as np

from .volatility import (
    BOUNDARY_TOL,
    FIT_TOL,
    MERGE_TOL,
    RESTART_TOL,
    FilterFit,
    FilterSpec,
    GjrGarch,
    backcast,
    bfgs_fit,
    conditional_variance,
    fit_filter,
    loglik_and_grad,
    simulate_paths,
)

__all__ = ["GarchSpec", "FilterFit", "backcast", "garch_recursion", "loglik_and_grad", "bfgs_fit", "fit_filter",
           "simulate_paths", "BOUNDARY_TOL", "FIT_TOL", "RESTART_TOL", "MERGE_TOL"]


def GarchSpec(vol: str = "garch", dist: str = "normal", lam: float = 0.94) -> FilterSpec:  # noqa: N802 - old class name
    """``FilterSpec.from_names(vol, dist, lam)``."""
    return FilterSpec.from_names(vol, dist, lam)


def garch_recursion(resids, omega, alpha, gamma, beta, bc) -> np.ndarray:
    """Conditional variances σ²_t of the GJR recursion (γ = 0: GARCH), shape (n,)."""
    theta = np.array([omega, alpha, gamma, beta], dtype=float)
    return conditional_variance(resids, FilterSpec(GjrGarch()), theta, bc)[:-1]
