"""Volatility filters for FHS: processes x distributions, their likelihood, the optimiser, the daily fit.

Layout (one concept per module):

* :mod:`.processes` — ``Garch``, ``GjrGarch``, ``Ewma``, ``Egarch``: parameters, bounds,
  constraints, starting grid and numba pieces (variance update and its derivative);
* :mod:`.distributions` — ``Normal``, ``StudentT``, ``SkewStudentT``: shape parameters and numba
  pieces (log-density terms, ∂ℓ/∂σ², shape scores);
* :mod:`.spec` — ``FilterSpec`` = process x distribution;
* :mod:`.likelihood` — the fused likelihood pass, gradient, BHHH scores, variance recursion and
  path simulation, written once and specialised per (process, distribution);
* :mod:`.optimize` — projected BFGS with one linear constraint, multi-start with basin merging,
  BHHH start: ``BoundedProblem`` for any smooth bounded fit;
* :mod:`.filter` — ``fit_filter`` -> ``FilterFit`` (cold SLSQP fit, compiled daily warm fit) and
  ``simulate_paths``.
"""

from .distributions import DISTRIBUTIONS, Distribution, Normal, SkewStudentT, StudentT
from .filter import BOUNDARY_TOL, FIT_TOL, MERGE_TOL, RESTART_TOL, FilterFit, bfgs_fit, fit_filter, simulate_paths
from .likelihood import backcast, conditional_variance, loglik_and_grad
from .optimize import BoundedProblem, MinimizeResult
from .processes import PROCESSES, Egarch, Ewma, Garch, GjrGarch, VolatilityProcess
from .spec import FilterSpec

__all__ = ["FilterSpec", "VolatilityProcess", "Garch", "GjrGarch", "Ewma", "Egarch", "PROCESSES", "Distribution",
           "Normal", "StudentT", "SkewStudentT", "DISTRIBUTIONS", "FilterFit", "fit_filter", "simulate_paths",
           "bfgs_fit", "backcast", "loglik_and_grad", "conditional_variance", "BoundedProblem", "MinimizeResult",
           "BOUNDARY_TOL", "FIT_TOL", "RESTART_TOL", "MERGE_TOL"]
