"""A volatility filter specification: one process x one distribution.

``FilterSpec(Garch(), StudentT())`` composes the parameter vector (the process's parameters, then
the distribution's shape parameters), its bounds, linear constraints and starting grid from the
two components; ``FilterSpec.from_names("gjr", "t")`` builds it from the names ``fhs_garch``
uses (``vol`` in ``PROCESSES``, ``dist`` in ``DISTRIBUTIONS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .distributions import DISTRIBUTIONS, Distribution, Normal
from .processes import PROCESSES, Ewma, Garch, VolatilityProcess

__all__ = ["FilterSpec"]


@dataclass(frozen=True)
class FilterSpec:
    """Volatility process x innovation distribution.

    Parameters
    ----------
    process : VolatilityProcess
        :class:`~.processes.Garch` (default), :class:`~.processes.GjrGarch`,
        :class:`~.processes.Ewma` or :class:`~.processes.Egarch`.
    distribution : Distribution
        :class:`~.distributions.Normal` (default), :class:`~.distributions.StudentT` or
        :class:`~.distributions.SkewStudentT`.
    """

    process: VolatilityProcess = field(default_factory=Garch)
    distribution: Distribution = field(default_factory=Normal)

    def __post_init__(self) -> None:
        if not isinstance(self.process, VolatilityProcess):
            raise ValueError(f"FilterSpec: process must be a VolatilityProcess, got {type(self.process).__name__}")
        if not isinstance(self.distribution, Distribution):
            raise ValueError(f"FilterSpec: distribution must be a Distribution, got "
                             f"{type(self.distribution).__name__}")

    @classmethod
    def from_names(cls, vol: str = "garch", dist: str = "normal", lam: float = 0.94) -> FilterSpec:
        """Spec from names: ``vol`` in {"garch", "gjr", "ewma", "egarch"}, ``dist`` in {"normal", "t", "skewt"}.

        ``lam`` is EWMA's λ (ignored by the other processes).
        """
        if vol not in PROCESSES:
            raise ValueError(f"vol must be one of {sorted(PROCESSES)}, got {vol!r}")
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"dist must be one of {sorted(DISTRIBUTIONS)}, got {dist!r}")
        process = Ewma(lam) if vol == "ewma" else PROCESSES[vol]()
        return cls(process, DISTRIBUTIONS[dist]())

    # names as fhs_garch spells them
    @property
    def vol(self) -> str:
        """Name of the process ("garch", "gjr", "ewma", "egarch")."""
        return self.process.name

    @property
    def dist(self) -> str:
        """Name of the distribution ("normal", "t", "skewt")."""
        return self.distribution.name

    @property
    def lam(self) -> float | None:
        """EWMA's λ (None for the other processes)."""
        return getattr(self.process, "lam", None)

    @property
    def k_vol(self) -> int:
        """Number of process parameters (the first ``k_vol`` entries of the parameter vector)."""
        return len(self.process.parameter_names)

    def parameter_names(self) -> list[str]:
        """Names of the estimated parameters, in order (process, then distribution)."""
        return list(self.process.parameter_names) + list(self.distribution.parameter_names)

    def fixed(self) -> np.ndarray:
        """Fixed constants of the process (EWMA: ``[lam]``)."""
        return self.process.fixed()

    def unit_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds at unit sample variance (the kernels scale them)."""
        return (np.concatenate((self.process.unit_lower, self.distribution.lower)),
                np.concatenate((self.process.unit_upper, self.distribution.upper)))

    def bounds(self, var: float) -> list[tuple[float, float]]:
        """Box bounds at sample variance ``var`` (percent squared)."""
        return self.process.bounds(var) + self.distribution.bounds()

    def constraints(self) -> tuple[np.ndarray, np.ndarray]:
        """Linear constraints ``A @ theta >= b`` (the process's; zero columns for the shape parameters)."""
        a, b = self.process.constraints()
        k_dist = len(self.distribution.parameter_names)
        return np.hstack((a, np.zeros((a.shape[0], k_dist)))), b

    def persistence_coefficients(self) -> np.ndarray:
        """Coefficients c of the stationarity constraint c @ theta <= 1, whole parameter vector (zeros: none)."""
        return np.concatenate((self.process.persistence_coefficients,
                               np.zeros(len(self.distribution.parameter_names))))

    def unit_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Starting grid at unit sample variance (process rows, each with the distribution's start) and its scale."""
        rows = self.process.unit_grid
        start = np.tile(np.asarray(self.distribution.start, dtype=float), (rows.shape[0], 1))
        return np.hstack((rows, start)), self.process.grid_scale

    def starting_grid(self, var: float) -> np.ndarray:
        """Starting values at sample variance ``var``, a row per point."""
        rows = self.process.starting_grid(var)
        start = np.tile(np.asarray(self.distribution.start, dtype=float), (rows.shape[0], 1))
        return np.hstack((rows, start))

    def starting_values(self, var: float) -> list[np.ndarray]:
        """:meth:`starting_grid` as a list of rows."""
        return list(self.starting_grid(var))
