r"""Coverage and Expected-Shortfall backtests on exception series.

Pure functions usable on any VaR/margin series. Every test returns a frozen
dataclass that unpacks as ``(statistic, pvalue)`` and also carries ``n_obs``,
``n_exceptions``, ``df`` where it applies and what else the test has
(:func:`du_escanciano` returns two, its unconditional and conditional tests).

Conventions
-----------
* ``pnl`` is profit and loss (profit > 0); ``loss = -pnl``.
* ``var`` and ``es`` are positive amounts. A breach (exception) is
  ``loss > var``, **strictly**: a loss equal to VaR is not a breach.
* ``p`` is the tail probability (0.01 for a 99% VaR), in ``(0, 0.5]``.
* Every log-likelihood uses ``0 log 0 = 0`` (``scipy.special.xlogy``), so zero
  and all-exception samples give finite statistics; p-values come from survival
  functions (``chi2.sf``), so tiny p-values keep their precision.
* Likelihood-ratio degrees of freedom: LR_uc 1 (all ``n`` observations),
  LR_ind 1 (the ``n - 1`` transitions), LR_cc = LR_uc + LR_ind with 2.
* ``exact=True`` replaces the chi-square approximation with the exact
  finite-sample distribution of the statistic, computed by enumerating every
  hit sequence class in closed form (no simulation):

  - LR_uc: the Binomial(n, p) distribution of the exception count.
  - LR_ind: conditional on the observed count x, every arrangement of the x
    exceptions is equally likely under independence; the arrangements with r
    runs of exceptions, starting with an exception (f = 1) or not and ending
    with one (l = 1) or not, number
    :math:`\binom{x-1}{r-1}\binom{n-x-1}{r-f-l}`, and (r, f, l) fix every
    transition count (n11 = x - r, n01 = r - f, n10 = r - l). The test is thus
    exact for any unknown exception probability.
  - LR_cc: under H0 (i.i.d. Bernoulli(p)) a sequence with x exceptions has
    probability :math:`p^x (1-p)^{n-x}`; summing over (r, f, l) and over every
    x whose binomial probability exceeds 1e-17 / (n + 1) (the omitted mass is
    below 1e-17) gives the exact law.

* Pairing: functions of two or more series (pnl, var, es, pit, ...) pair
  pandas Series by index label (same labels in another order are aligned;
  different labels raise a ValueError naming the first mismatches) and arrays
  by position (a Series with an array: by position).
* Direction: the two-sided Kupiec test rejects too many breaches
  (under-margining) and too few (over-margining); ``KupiecResult.direction``
  and ``verdict()`` say which. :func:`binomial_upper` is the one-sided exact
  test of too many breaches, P(X >= x).
* Worst window: the largest count in any 250 consecutive observations is
  judged by its probability under H0 (i.i.d. Bernoulli(p) exceptions over the
  same sample), simulated with a fixed seed (:func:`traffic_light`), never by
  the zone of the worst rolling window, which is uncalibrated.
* Monte Carlo p-values: the tests whose asymptotic chi-square over-rejects on
  a few exceptions (Haas TBFI/TBF, the Weibull duration test, Engle-Manganelli
  DQ, Du-Escanciano's conditional test) take ``(1 + #{S* >= S}) / (1 + N)`` over
  N = 2,000 samples simulated under H0 with a fixed seed (Dufour 2006; for the
  Weibull and Du-Escanciano tests N counts the samples the test applies to): iid
  Bernoulli(p) exceptions of the same length (for DQ given the VaR series), iid
  uniform PITs for Du-Escanciano. The nulls that depend only on (n, p) are kept
  per (n, p, N, seed), read-only. The chi-square p-value stays in the note.
* Overlapping windows: for an MPOR of h > 1 days the h-day exceptions overlap
  and are autocorrelated by construction. :func:`backtest` then runs every test
  on each of the h non-overlapping sub-samples (offsets 0..h-1, every h-th
  observation) and combines their p-values with the Bonferroni rule
  ``min(1, h * min_k p_k)``, valid under any dependence between sub-samples;
  the traffic-light zone is the Basel zone of the Bonferroni-combined
  cumulative probability.

References
----------
Kupiec (1995), "Techniques for verifying the accuracy of risk measurement
models", J. Derivatives 3. Christoffersen (1998), "Evaluating interval
forecasts", Int. Econ. Review 39. Haas (2001), "New methods in backtesting".
Christoffersen and Pelletier (2004), "Backtesting value-at-risk: a
duration-based approach", J. Fin. Econometrics 2. Engle and Manganelli (2004),
"CAViaR", JBES 22. Berkowitz (2001), "Testing density forecasts", JBES 19.
McNeil and Frey (2000), J. Empirical Finance 7. Acerbi and Szekely (2014),
"Backtesting expected shortfall", Risk. Du and Escanciano (2017), Management
Science 63. BCBS (1996), "Supervisory framework for the use of backtesting".
Naus (1982), "Approximations for distributions of scan statistics", JASA 77.
Dufour (2006), "Monte Carlo tests with nuisance parameters", J. Econometrics 133.
Berkowitz, Christoffersen and Pelletier (2011), "Evaluating value-at-risk models
with desk-level data", Management Science 57.
CPMI-IOSCO (2015), "Public quantitative disclosure standards for CCPs", 6.5.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

__all__ = [
    "TestResult",
    "KupiecResult",
    "IndependenceResult",
    "ConditionalCoverageResult",
    "BinomialResult",
    "BinomialUpperResult",
    "TrafficLightResult",
    "DurationResult",
    "DQResult",
    "ESTestResult",
    "CoverageReport",
    "exceptions",
    "kupiec_pof",
    "christoffersen_independence",
    "christoffersen_conditional_coverage",
    "binomial",
    "binomial_upper",
    "traffic_light",
    "zone_bands",
    "subsample_offsets",
    "too_many_pvalue",
    "ZONES",
    "ZONE_BOUNDS",
    "tuff",
    "haas_tbf",
    "haas_tbfi",
    "duration_weibull",
    "dynamic_quantile",
    "berkowitz_tail",
    "mcneil_frey",
    "acerbi_szekely",
    "du_escanciano",
    "disclosure_table",
    "backtest",
    "BASEL_PLUS_FACTORS",
    "WEIBULL_SHAPE_BOUNDS",
    "AS_SHAPE_BOUNDS",
]

#: BCBS (1996), Table 2: plus factor by number of exceptions in 250 days at 99%.
BASEL_PLUS_FACTORS = {5: 0.40, 6: 0.50, 7: 0.65, 8: 0.75, 9: 0.85}
_TAIL_MASS = 1e-17
_TOL = 1e-9


# --------------------------------------------------------------------------- results

@dataclass(frozen=True, kw_only=True)
class TestResult:
    """A test statistic and its p-value; unpacks as ``(statistic, pvalue)``."""

    __test__ = False  # not a pytest test class

    name: str
    statistic: float
    pvalue: float
    n_obs: int
    n_exceptions: int
    df: int | None = None
    distribution: str = "chi2"
    note: str = ""

    def __iter__(self):
        return iter((self.statistic, self.pvalue))

    def reject(self, level: float = 0.05) -> bool:
        """Return True if the null hypothesis is rejected at significance ``level``."""
        return bool(self.pvalue < level)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (frames excluded)."""
        return {k: v for k, v in asdict(self).items() if not isinstance(v, pd.DataFrame | pd.Series)}

    def __str__(self) -> str:
        df = f", df={self.df}" if self.df is not None else ""
        return (f"{self.name}: statistic={self.statistic:.6g}, pvalue={self.pvalue:.6g}{df} "
                f"(n={self.n_obs}, exceptions={self.n_exceptions})")


@dataclass(frozen=True, kw_only=True)
class KupiecResult(TestResult):
    """Kupiec POF result; ``pvalue`` is exact when ``exact`` is True.

    The test is two-sided: it rejects both too many breaches (the margin is too
    low: under-margining) and too few (the margin is higher than its stated
    level needs: over-margining). ``direction`` says on which side the observed
    count lies ("too many", "too few" or "as expected" when x = n p exactly)
    and :meth:`verdict` turns a rejection into what it means for the margin.
    """

    p: float
    expected: float
    exception_rate: float
    pvalue_asymptotic: float
    exact: bool = False
    direction: str = "as expected"

    def verdict(self, level: float = 0.05) -> str:
        """What the test says at significance ``level``.

        ``"under-margining"`` (rejected with too many breaches),
        ``"over-margining"`` (rejected with too few breaches) or ``"not rejected"``.
        """
        if not self.reject(level):
            return "not rejected"
        return {"too many": "under-margining", "too few": "over-margining"}.get(self.direction, "not rejected")


@dataclass(frozen=True, kw_only=True)
class BinomialUpperResult(TestResult):
    """One-sided exact binomial test of too many breaches.

    ``statistic`` is the breach count x and ``pvalue`` = P(X >= x) under
    Binomial(n, p); ``log_pvalue`` is its natural log, finite even when the
    p-value is below the smallest double.
    """

    p: float
    expected: float
    exception_rate: float
    log_pvalue: float


@dataclass(frozen=True, kw_only=True)
class IndependenceResult(TestResult):
    """Christoffersen independence result with the 2x2 transition counts."""

    n00: int
    n01: int
    n10: int
    n11: int
    pi01: float
    pi11: float
    pvalue_asymptotic: float
    exact: bool = False


@dataclass(frozen=True, kw_only=True)
class ConditionalCoverageResult(TestResult):
    """Christoffersen conditional coverage: LR_cc = LR_uc + LR_ind."""

    lr_uc: float
    lr_ind: float
    pvalue_asymptotic: float
    exact: bool = False


@dataclass(frozen=True, kw_only=True)
class BinomialResult(TestResult):
    """Binomial test: normal-approximation z and exact binomial p-values."""

    p: float
    expected: float
    pvalue_exact: float
    pvalue_exact_greater: float


@dataclass(frozen=True, kw_only=True)
class TrafficLightResult(TestResult):
    """Basel traffic light on the last window, per block, rolling, and the calibrated worst window.

    ``statistic`` is the number of exceptions in the last window, ``pvalue`` the
    probability of at least that many (the type I error of rejecting).
    ``worst_window_exceptions`` is the largest count in any ``window``
    consecutive observations and ``worst_window_pvalue`` the probability under
    H0 (i.i.d. Bernoulli(p) exceptions over the same n observations) that the
    worst window has at least that many, estimated from ``n_sims`` simulated
    samples (seed ``seed``) with Monte Carlo standard error
    ``worst_window_pvalue_se``. The zone of the worst rolling window is not
    reported: it is uncalibrated (a correct 99% model reaches yellow in some
    250-day window of 1,600 days with probability 0.77).
    """

    zone: str
    cumulative_probability: float
    plus_factor: float
    window: int
    p: float
    blocks: pd.DataFrame = field(repr=False)
    rolling: pd.DataFrame = field(repr=False)
    worst_window_exceptions: int = 0
    worst_window_pvalue: float = 1.0
    worst_window_pvalue_se: float = 0.0
    n_sims: int = 0
    seed: int | None = None


@dataclass(frozen=True, kw_only=True)
class DurationResult(TestResult):
    """Duration-based tests (TUFF, Haas TBF/TBFI, Weibull).

    For the Weibull test, ``censored`` flags each duration that is censored
    (the first when the sample does not start with an exception, the last when
    it does not end with one), ``weibull_b`` is the estimated shape and
    ``at_bound`` is True when it sits at a bound of ``shape_bounds``: the
    likelihood still rises towards the bound, so the statistic depends on
    where the bound is (read the p-value with care). ``n_sims`` and ``seed``
    are those of the Monte Carlo p-value (TBF, TBFI, Weibull).
    """

    durations: tuple[int, ...] = ()
    censored: tuple[bool, ...] = ()
    first_failure: int | None = None
    weibull_b: float | None = None
    shape_bounds: tuple[float, float] | None = None
    at_bound: bool = False
    applicable: bool = True
    n_sims: int = 0
    seed: int | None = None


@dataclass(frozen=True, kw_only=True)
class DQResult(TestResult):
    """Engle–Manganelli dynamic quantile test with the regression coefficients.

    ``n_sims`` and ``seed`` are those of the Monte Carlo p-value.
    """

    lags: int
    coefficients: tuple[float, ...]
    n_sims: int = 0
    seed: int | None = None


@dataclass(frozen=True, kw_only=True)
class ESTestResult(TestResult):
    """Expected-Shortfall backtest result."""

    kind: str = ""
    n_sims: int | None = None


# --------------------------------------------------------------------------- input checks

def _as_array(values, name: str) -> np.ndarray:
    if values is None:
        raise ValueError(f"{name}: no data (None)")
    arr = np.asarray(values.to_numpy() if isinstance(values, pd.Series | pd.Index) else values,
                     dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d series, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty input")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        where = _labels(values, bad)
        raise ValueError(f"{name}: NaN or infinite values at {where}")
    return arr


def _required(values, name: str):
    """Fail with one line when a required series is None (optional ones pass None)."""
    if values is None:
        raise ValueError(f"{name}: no data (None)")
    return values


def _labels(values, positions) -> list:
    positions = list(positions[:5])
    if isinstance(values, pd.Series):
        return [values.index[i] for i in positions]
    return positions


def _as_hits(hits) -> np.ndarray:
    arr = _as_array(hits, "hits")
    if not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError("hits: values must be 0/1 (or booleans)")
    return arr.astype(bool)


def _check_p(p: float) -> float:
    if not isinstance(p, int | float | np.floating) or not (0.0 < float(p) <= 0.5):
        raise ValueError(f"p (tail probability) must be in (0, 0.5], got {p!r}")
    return float(p)


def _same_length(**arrays) -> None:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs have different lengths: {lengths}")


def _label_mismatch(name: str, index: pd.Index, ref_name: str, ref: pd.Index) -> str:
    """One line naming the first labels that differ between two indexes."""
    only_here = index[~index.isin(ref)][:3].tolist()
    only_ref = ref[~ref.isin(index)][:3].tolist()
    parts = []
    if only_ref:
        parts.append(f"{', '.join(map(str, only_ref))} only in {ref_name}")
    if only_here:
        parts.append(f"{', '.join(map(str, only_here))} only in {name}")
    return f"{ref_name} and {name} have different index labels (first mismatches: {'; '.join(parts)})"


def _aligned(**series) -> tuple[dict[str, np.ndarray | None], pd.Index | None]:
    """Check and pair the input series of one test; the one place inputs are paired.

    When two or more inputs are pandas Series (labelled), they are paired by
    index label: each is reordered to the first Series' index when it holds the
    same labels, and a ValueError names the first labels that differ otherwise
    (or the duplicated labels, which make the pairing ambiguous). Arrays, lists
    and pandas Index objects carry no labels and are paired by position with
    the others (lengths must then agree). ``None`` inputs are passed through.

    Returns the 1-d float arrays (NaN/inf rejected, naming the label) keyed by
    input name, and the index of the first Series (None when there is none).
    """
    labelled = {k: v for k, v in series.items() if isinstance(v, pd.Series)}
    ref_name, ref = next(iter(labelled.items()), (None, None))
    out: dict[str, Any] = {}
    for name, values in series.items():
        if values is None:
            out[name] = None
            continue
        if isinstance(values, pd.Series) and name != ref_name and not values.index.equals(ref.index):
            for k, idx in ((ref_name, ref.index), (name, values.index)):
                if not idx.is_unique:
                    dup = idx[idx.duplicated()][:3].tolist()
                    raise ValueError(f"{k}: duplicated index labels {dup}: cannot pair "
                                     f"{ref_name} and {name} by label")
            if len(values.index) != len(ref.index) or not values.index.isin(ref.index).all():
                raise ValueError(_label_mismatch(name, values.index, ref_name, ref.index))
            values = values.reindex(ref.index)
        out[name] = _as_array(values, name)
    present = {k: v for k, v in out.items() if v is not None}
    _same_length(**present)
    return out, (ref.index if ref is not None else None)


def exceptions(pnl, var) -> np.ndarray | pd.Series:
    """Exception indicator ``loss > var`` with ``loss = -pnl`` (strict inequality).

    Parameters
    ----------
    pnl : array-like of shape (n,)
        Realised P&L (profit > 0) over the horizon after each forecast date.
    var : array-like of shape (n,)
        VaR or margin forecast, a positive amount.

    Returns
    -------
    ndarray of bool, or Series of bool with the index of the first Series input.

    Notes
    -----
    Two Series are paired by index label (a ValueError names the first labels
    that differ); a Series and an array, or two arrays, by position.
    """
    arrays, index = _aligned(pnl=pnl, var=var)
    pnl_a, var_a = arrays["pnl"], arrays["var"]
    if (var_a < 0).any():
        where = np.flatnonzero(var_a < 0)[:5]
        raise ValueError(f"var: negative values at {list(index[where]) if index is not None else list(where)} "
                         "(VaR and margin are positive amounts)")
    hits = -pnl_a > var_a
    if index is not None:
        return pd.Series(hits, index=index, name="exception")
    return hits


# --------------------------------------------------------------------------- likelihood ratios

def _lr_uc(x, n, p):
    x = np.asarray(x, dtype=float)
    phat = x / n
    ll0 = special.xlogy(x, p) + special.xlogy(n - x, 1 - p)
    ll1 = special.xlogy(x, phat) + special.xlogy(n - x, 1 - phat)
    return np.maximum(-2.0 * (ll0 - ll1), 0.0)


def _ratio(num, den):
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _lr_ind(n00, n01, n10, n11):
    n00, n01, n10, n11 = (np.asarray(v, dtype=float) for v in (n00, n01, n10, n11))
    pi01 = _ratio(n01, n00 + n01)
    pi11 = _ratio(n11, n10 + n11)
    pi = _ratio(n01 + n11, n00 + n01 + n10 + n11)
    ll0 = special.xlogy(n00 + n10, 1 - pi) + special.xlogy(n01 + n11, pi)
    ll1 = (special.xlogy(n00, 1 - pi01) + special.xlogy(n01, pi01)
           + special.xlogy(n10, 1 - pi11) + special.xlogy(n11, pi11))
    return np.maximum(-2.0 * (ll0 - ll1), 0.0)


def _transitions(hits: np.ndarray) -> tuple[int, int, int, int]:
    prev, cur = hits[:-1], hits[1:]
    n00 = int(np.sum(~prev & ~cur))
    n01 = int(np.sum(~prev & cur))
    n10 = int(np.sum(prev & ~cur))
    n11 = int(np.sum(prev & cur))
    return n00, n01, n10, n11


def _log_comb(n, k):
    n, k = np.asarray(n, float), np.asarray(k, float)
    valid = (k >= 0) & (k <= n) & (n >= 0)
    out = np.full(np.broadcast(n, k).shape, -np.inf)
    nn, kk = np.broadcast_arrays(n, k)
    out[valid] = special.gammaln(nn[valid] + 1) - special.gammaln(kk[valid] + 1) - special.gammaln(
        nn[valid] - kk[valid] + 1)
    return out


def _arrangements(n: int, x: int):
    """Run classes of binary sequences of length n with x ones.

    Returns arrays (log_count, n00, n01, n10, n11), one entry per (r, f, l).
    """
    if x == 0:
        return (np.array([0.0]), np.array([n - 1]), np.array([0]), np.array([0]), np.array([0]))
    if x == n:
        return (np.array([0.0]), np.array([0]), np.array([0]), np.array([0]), np.array([n - 1]))
    m = n - x
    r = np.arange(1, min(x, m + 1) + 1)
    r, first, last = (a.ravel() for a in np.meshgrid(r, [0, 1], [0, 1], indexing="ij"))
    log_count = _log_comb(x - 1, r - 1) + _log_comb(m - 1, r - first - last)
    keep = np.isfinite(log_count)
    r, first, last, log_count = r[keep], first[keep], last[keep], log_count[keep]
    n11 = x - r
    n01 = r - first
    n10 = r - last
    n00 = (n - 1) - n11 - n01 - n10
    return log_count, n00, n01, n10, n11


def _tail_prob(log_weights: np.ndarray, stat: np.ndarray, observed: float) -> float:
    """Sum of exp(log_weights) where stat >= observed (with a relative tolerance)."""
    mask = stat >= observed - _TOL * max(1.0, abs(observed))
    if not mask.any():
        return 0.0
    return float(min(1.0, np.exp(special.logsumexp(log_weights[mask]))))


def kupiec_pof(hits, p: float, exact: bool = False) -> KupiecResult:
    r"""Kupiec (1995) proportion-of-failures (unconditional coverage) test.

    .. math::
        LR_{uc} = -2\ln\frac{(1-p)^{n-x}p^{x}}{(1-\hat\pi)^{n-x}\hat\pi^{x}},
        \qquad \hat\pi = x/n,\quad LR_{uc}\sim\chi^2_1.

    Parameters
    ----------
    hits : array-like of bool, shape (n,)
    p : float
        Tail probability under H0.
    exact : bool
        P-value from the exact Binomial(n, p) law of LR_uc instead of chi2(1).
    """
    h = _as_hits(hits)
    p = _check_p(p)
    n, x = h.size, int(h.sum())
    lr = float(_lr_uc(x, n, p))
    p_asym = float(stats.chi2.sf(lr, 1))
    pvalue = p_asym
    if exact:
        k = np.arange(n + 1)
        pvalue = _tail_prob(stats.binom.logpmf(k, n, p), _lr_uc(k, n, p), lr)
    direction = "too many" if x > n * p else ("too few" if x < n * p else "as expected")
    return KupiecResult(name="Kupiec POF (LR_uc)", statistic=lr, pvalue=pvalue, df=1, n_obs=n,
                        n_exceptions=x, p=p, expected=n * p, exception_rate=x / n,
                        pvalue_asymptotic=p_asym, exact=exact, direction=direction,
                        distribution="exact binomial" if exact else "chi2")


def _binom_upper_tail(x: int, n: int, p: float) -> tuple[float, float]:
    """P(X >= x) under Binomial(n, p) and its natural log, the log without underflow.

    scipy's survival function (regularised incomplete beta) where it is a
    normal double; below that the log is the ``logsumexp`` of ``binom.logpmf``
    over k >= x, which stays finite, and the p-value its exponential.
    """
    if x <= 0:
        return 1.0, 0.0
    if x > n:
        return 0.0, -np.inf
    sf = float(stats.binom.sf(x - 1, n, p))
    if sf > 1e-300:
        return sf, float(np.log(sf))
    k = np.arange(x, n + 1)
    log_sf = float(min(0.0, special.logsumexp(stats.binom.logpmf(k, n, p))))
    return float(np.exp(log_sf)), log_sf


def binomial_upper(hits, p: float) -> BinomialUpperResult:
    r"""One-sided exact binomial test of too many breaches (H1: breach probability > p).

    .. math::
        \text{p-value} = P(X \ge x) = \sum_{k=x}^{n}\binom{n}{k}p^k(1-p)^{n-k},
        \qquad X \sim \text{Binomial}(n, p),

    the test a validator runs against under-margining: a small p-value means
    more breaches than a margin at tail probability p allows. It equals
    ``scipy.stats.binomtest(x, n, p, alternative="greater").pvalue``; the
    log p-value is kept finite when the p-value underflows. Too few breaches
    (over-margining) is the other side of the two-sided :func:`kupiec_pof`.

    Parameters
    ----------
    hits : array-like of bool, shape (n,)
    p : float
        Tail probability under H0.
    """
    h = _as_hits(hits)
    p = _check_p(p)
    n, x = h.size, int(h.sum())
    pvalue, log_p = _binom_upper_tail(x, n, p)
    return BinomialUpperResult(name="Binomial one-sided (too many breaches)", statistic=float(x),
                               pvalue=pvalue, n_obs=n, n_exceptions=x, p=p, expected=n * p,
                               exception_rate=x / n, log_pvalue=log_p,
                               distribution="exact binomial, upper tail")


def christoffersen_independence(hits, exact: bool = False) -> IndependenceResult:
    r"""Christoffersen (1998) independence test on the first-order Markov chain of exceptions.

    .. math::
        LR_{ind} = -2\ln\frac{(1-\hat\pi)^{n_{00}+n_{10}}\hat\pi^{n_{01}+n_{11}}}
        {(1-\hat\pi_{01})^{n_{00}}\hat\pi_{01}^{n_{01}}(1-\hat\pi_{11})^{n_{10}}\hat\pi_{11}^{n_{11}}}
        \sim\chi^2_1

    over the ``n - 1`` transitions. With no exception, or only exceptions, there
    is nothing to test: ``LR_ind = 0`` and ``pvalue = 1``. ``exact=True`` uses the
    exact permutation law given the exception count (see module docstring).
    """
    h = _as_hits(hits)
    n, x = h.size, int(h.sum())
    if n < 2:
        raise ValueError("hits: the independence test needs at least 2 observations")
    n00, n01, n10, n11 = _transitions(h)
    lr = float(_lr_ind(n00, n01, n10, n11))
    p_asym = float(stats.chi2.sf(lr, 1))
    pvalue = p_asym
    note = ""
    if x in (0, n):
        lr, p_asym, pvalue = 0.0, 1.0, 1.0
        note = "no variation in exceptions: nothing to test"
    elif exact:
        log_count, a, b, c, d = _arrangements(n, x)
        log_w = log_count - _log_comb(n, x)
        pvalue = _tail_prob(log_w, _lr_ind(a, b, c, d), lr)
    return IndependenceResult(
        name="Christoffersen independence (LR_ind)", statistic=lr, pvalue=pvalue, df=1, n_obs=n,
        n_exceptions=x, n00=n00, n01=n01, n10=n10, n11=n11,
        pi01=float(_ratio(n01, n00 + n01)), pi11=float(_ratio(n11, n10 + n11)),
        pvalue_asymptotic=p_asym, exact=exact, note=note,
        distribution="exact (conditional on exceptions)" if exact else "chi2")


def christoffersen_conditional_coverage(hits, p: float, exact: bool = False) -> ConditionalCoverageResult:
    r"""Christoffersen (1998) conditional coverage: :math:`LR_{cc} = LR_{uc} + LR_{ind} \sim \chi^2_2`.

    LR_uc uses all n observations and LR_ind the n - 1 transitions (the
    convention of MATLAB's ``varbacktest``). ``exact=True`` gives the exact law
    of LR_cc under i.i.d. Bernoulli(p) exceptions.
    """
    h = _as_hits(hits)
    p = _check_p(p)
    n, x = h.size, int(h.sum())
    uc = kupiec_pof(h, p)
    ind = christoffersen_independence(h)
    lr = uc.statistic + ind.statistic
    p_asym = float(stats.chi2.sf(lr, 2))
    pvalue = p_asym
    if exact:
        # every count whose probability exceeds 1e-17 / (n + 1): the omitted mass is < 1e-17
        k_all = np.arange(n + 1)
        band = k_all[stats.binom.logpmf(k_all, n, p) > np.log(_TAIL_MASS / (n + 1))]
        xs = sorted(set(band.tolist()) | {x})
        log_w, stat = [], []
        for k in xs:
            log_count, a, b, c, d = _arrangements(n, k)
            log_w.append(log_count + special.xlogy(k, p) + special.xlogy(n - k, 1 - p))
            lr_ind = _lr_ind(a, b, c, d) if 0 < k < n else np.zeros_like(log_count)
            stat.append(_lr_uc(k, n, p) + lr_ind)
        pvalue = _tail_prob(np.concatenate(log_w), np.concatenate(stat), lr)
    return ConditionalCoverageResult(
        name="Christoffersen conditional coverage (LR_cc)", statistic=lr, pvalue=pvalue, df=2,
        n_obs=n, n_exceptions=x, lr_uc=uc.statistic, lr_ind=ind.statistic,
        pvalue_asymptotic=p_asym, exact=exact, distribution="exact" if exact else "chi2")


def binomial(hits, p: float) -> BinomialResult:
    r"""Binomial test of the exception count.

    ``statistic`` is :math:`z = (x - np)/\sqrt{np(1-p)}` with a two-sided normal
    p-value (as MATLAB ``varbacktest.bin``); ``pvalue_exact`` is the exact
    two-sided binomial p-value (``scipy.stats.binomtest``) and
    ``pvalue_exact_greater`` the one-sided P(X >= x).
    """
    h = _as_hits(hits)
    p = _check_p(p)
    n, x = h.size, int(h.sum())
    z = (x - n * p) / np.sqrt(n * p * (1 - p))
    pvalue = float(2.0 * stats.norm.sf(abs(z)))
    exact = stats.binomtest(x, n, p)
    return BinomialResult(name="Binomial z (normal approximation)", statistic=float(z), pvalue=pvalue, n_obs=n,
                          n_exceptions=x,
                          p=p, expected=n * p, pvalue_exact=float(exact.pvalue),
                          pvalue_exact_greater=_binom_upper_tail(x, n, p)[0], distribution="normal")


#: The Basel traffic-light zones (BCBS 1996), in order of severity.
ZONES = ("green", "yellow", "red")
#: Where the zones start on the cumulative probability P(X <= x) of the exception count (BCBS 1996): green
#: below the first bound, yellow from it to below the second, red from the second on.
ZONE_BOUNDS = (0.95, 0.9999)


def _zone(cum: float) -> str:
    """The zone of one cumulative probability (:func:`_zone_index`)."""
    return ZONES[int(_zone_index(cum))]


def _zone_index(cum) -> np.ndarray:
    """The zone of each cumulative probability as 0, 1, 2 (green, yellow, red): :func:`_zone` on an array.

    ``searchsorted`` on :data:`ZONE_BOUNDS` (right side: a probability equal to a bound is in the zone it
    starts), NaN sorting last (red), as ``_zone`` reads it.
    """
    return np.searchsorted(np.asarray(ZONE_BOUNDS), cum, side="right")


def _bonferroni_cum(upper, m: int):
    """The combined cumulative probability ``1 - min(1, m P(X > x))`` of m sub-samples (see :func:`backtest`)."""
    return 1.0 - np.minimum(1.0, m * upper)


def subsample_offsets(n: int, mpor_days: int) -> list[int]:
    """The non-overlapping sub-samples :func:`backtest` tests a series of n observations on, by first offset.

    One series (offset 0) when ``mpor_days`` is 1; else the offsets k = 0..h-1 (every h-th observation from
    the k-th) whose sub-sample has at least 2 observations. Their number is the Bonferroni ``m``.
    """
    if mpor_days == 1:
        return [0]
    return [k for k in range(mpor_days) if len(range(k, n, mpor_days)) >= 2]


def too_many_pvalue(hits, p: float, mpor_days: int = 1) -> float:
    """The one-sided too-many-breaches p-value :func:`backtest` reports for ``hits`` (its ``too_many_pvalue``).

    :func:`binomial_upper` on the series when ``mpor_days`` is 1; else on each non-overlapping sub-sample
    (:func:`subsample_offsets`), combined by :func:`backtest`'s Bonferroni rule, ``min(1, m * min_k p_k)``.
    NaN when no sub-sample has 2 observations (too few for the test). The cheap form of the verdict matrix's
    test, for many series at once (member accounts).
    """
    h = _as_hits(hits)
    if mpor_days == 1:
        return binomial_upper(h, p).pvalue
    offsets = subsample_offsets(h.size, mpor_days)
    if not offsets:
        return float("nan")
    return _bonferroni([binomial_upper(h[k::mpor_days], p) for k in offsets], len(offsets)).pvalue


def zone_bands(p: float, n, m: int = 1) -> tuple[Any, Any]:
    r"""Smallest exception counts in n observations whose traffic-light zone is yellow, and red.

    The zone of x exceptions in n observations is read off its cumulative probability (:data:`ZONE_BOUNDS`):
    :math:`P(X \le x)` under Binomial(n, p) for one series (``m = 1``, :func:`traffic_light`), and for ``m``
    non-overlapping sub-samples (an MPOR above one observation) the Bonferroni rule of :func:`backtest`,
    :math:`1 - \min(1, m P(X > x))`: yellow when one sub-sample's cumulative probability reaches
    1 - 0.05/m, red at 1 - 0.0001/m. The same numbers and zones as :func:`traffic_light` and :func:`backtest`
    read: ``x >= yellow`` is where the zone stops being green, ``x >= red`` where it is red.

    Parameters
    ----------
    p : float
        Tail probability.
    n : int or array-like of int
        Observations (>= 0); each distinct value is computed once.
    m : int
        Number of sub-samples combined (1: a single series).

    Returns
    -------
    (yellow, red) : ints when ``n`` is an int, else int64 arrays of n's shape.
    """
    p = _check_p(p)
    if not isinstance(m, int | np.integer) or isinstance(m, bool) or m < 1:
        raise ValueError(f"m (sub-samples) must be a positive integer, got {m!r}")
    sizes = np.asarray(n)
    if sizes.dtype.kind not in "iu" or (sizes < 0).any():
        raise ValueError(f"n (observations) must be integers >= 0, got {n!r}")
    values, inverse = np.unique(sizes, return_inverse=True)
    yellow = np.full(values.size, -1, dtype=np.int64)
    red = np.full(values.size, -1, dtype=np.int64)
    # every distinct n at once, on a grid of counts x (columns) from 0 in blocks until each n has met its red
    # count (at the latest x = n, cumulative 1): each cell is the binomial law of its own (x, n), as a call
    # per n computes it, and counts above n are red
    start, width = 0, 32
    todo = np.arange(values.size)
    while todo.size:
        x = np.arange(start, start + width)
        v = values[todo, None]
        cum = stats.binom.cdf(x, v, p) if m == 1 else _bonferroni_cum(stats.binom.sf(x, v, p), m)
        zone = np.where(x <= v, _zone_index(cum), 2)
        for band, level in ((yellow, 1), (red, 2)):
            hit = zone >= level
            new = (band[todo] < 0) & hit.any(axis=1)
            band[todo[new]] = start + np.argmax(hit[new], axis=1)
        todo = todo[red[todo] < 0]
        start, width = start + width, 2 * width
    if sizes.ndim == 0:
        return int(yellow[0]), int(red[0])
    return yellow[inverse].reshape(sizes.shape), red[inverse].reshape(sizes.shape)


def _plus_factor(x: int, p: float, window: int, zone: str) -> float:
    if zone == "green":
        return 0.0
    if np.isclose(p, 0.01) and window == 250:
        return BASEL_PLUS_FACTORS.get(x, 1.0)
    return float("nan")


def _worst_window_null(n: int, window: int, p: float, n_sims: int, seed) -> np.ndarray:
    """Largest exception count in any ``window`` consecutive observations, simulated under H0.

    Each of ``n_sims`` samples is a sequence of n i.i.d. Bernoulli(p) exceptions,
    drawn through its exception times (cumulated Geometric(p) gaps, which is the
    same law), so the cost grows with the number of exceptions, not with n. The
    count of the window starting at each exception is found with one
    ``searchsorted`` over all samples laid end to end (each sample shifted by
    n + window, so no window reaches the next one); the worst window of a
    sample starts at one of its exceptions. Samples are drawn in chunks of a
    fixed size from one generator, so the result depends only on the arguments:
    with an integer seed it is memoised, read-only (a study tests many model x
    book pairs of one length, each against the same simulated law); any other
    seed numpy accepts (None, a sequence, a generator) draws afresh.

    Returns
    -------
    ndarray of int64, shape (n_sims,)
    """
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        return _worst_window_null_memo(int(n), int(window), float(p), int(n_sims), int(seed))
    return _draw_worst_window_null(n, window, p, n_sims, seed)


def _draw_worst_window_null(n: int, window: int, p: float, n_sims: int, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = n * p
    width = int(np.ceil(mean + 8.0 * np.sqrt(mean * (1.0 - p)) + 10.0))
    chunk = max(1, min(n_sims, 4_000_000 // width))
    out = np.zeros(n_sims, dtype=np.int64)
    for lo in range(0, n_sims, chunk):
        m = min(chunk, n_sims - lo)
        t = np.cumsum(rng.geometric(p, size=(m, width)), axis=1)
        while (t[:, -1] <= n).any():  # a sample with more than `width` exceptions: draw further
            t = np.hstack([t, t[:, -1:] + np.cumsum(rng.geometric(p, size=(m, width)), axis=1)])
        keep = t <= n
        sample = np.broadcast_to(np.arange(m)[:, None], t.shape)[keep]
        flat = t[keep] + sample.astype(np.int64) * (n + window)
        if flat.size == 0:
            continue
        counts = np.searchsorted(flat, flat + window, side="left") - np.arange(flat.size)
        starts = np.flatnonzero(np.r_[True, sample[1:] != sample[:-1]])
        out[lo + sample[starts]] = np.maximum.reduceat(counts, starts)
    out.setflags(write=False)
    return out


_worst_window_null_memo = functools.lru_cache(maxsize=256)(_draw_worst_window_null)


def traffic_light(hits, p: float = 0.01, window: int = 250, n_sims: int = 20_000,
                  seed: int = 0) -> TrafficLightResult:
    r"""Basel (BCBS 1996) traffic light, with a calibrated statement on the worst window.

    The zone of a window with x exceptions follows the binomial cumulative
    probability P(X <= x) under Binomial(window, p): green below 0.95, yellow
    below 0.9999, red otherwise. The plus factor is the BCBS (1996) Table 2 value
    for the Basel setting (p = 0.01, 250 days) and NaN for other settings (0 in
    green). Returns the last window (or the whole sample when shorter), each
    non-overlapping block of ``window`` observations and every rolling window.

    Worst window. The largest count in any ``window`` consecutive observations,
    :math:`M = \max_s \sum_{t=s}^{s+w-1} I_t`, is compared with its law under H0
    (the n exceptions i.i.d. Bernoulli(p)):

    .. math::
        \text{worst\_window\_pvalue} = \frac{1 + \#\{j: M^{(j)} \ge M\}}{1 + N_{sim}},
        \qquad \text{s.e.} = \sqrt{\hat\pi(1-\hat\pi)/N_{sim}},

    from ``n_sims`` simulated samples of the same length (seed ``seed``; the
    default 20,000 gives a standard error below 0.0036). The exact law of this
    scan statistic needs a state for every arrangement of exceptions inside a
    window, beyond reach for w = 250; it is exact without simulation when the
    sample has a single window (n <= w: the binomial tail) or no exception
    (p-value 1). The zone of the worst rolling window is deliberately not
    reported: over 1,600 days a correct 99% model has some yellow 250-day
    window with probability 0.774 (Naus 1982 approximation 0.7744; simulation).

    Parameters
    ----------
    hits : array-like of bool, shape (n,)
    p : float
        Tail probability under H0.
    window : int
        Window length in observations (250 in BCBS 1996).
    n_sims : int
        Number of simulated H0 samples for the worst-window p-value.
    seed : int
        Seed of the generator of those samples.
    """
    h = _as_hits(hits)
    p = _check_p(p)
    if not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if not isinstance(n_sims, int | np.integer) or isinstance(n_sims, bool) or n_sims < 1:
        raise ValueError(f"n_sims must be a positive integer, got {n_sims!r}")
    index = hits.index if isinstance(hits, pd.Series) else pd.RangeIndex(h.size)
    w = min(window, h.size)
    x = int(h[-w:].sum())
    cum = float(stats.binom.cdf(x, w, p))
    zone = _zone(cum)
    blocks = []
    for start in range(0, h.size - window + 1, window):
        xb = int(h[start:start + window].sum())
        cb = float(stats.binom.cdf(xb, window, p))
        zb = _zone(cb)
        blocks.append({"start": index[start], "end": index[start + window - 1], "exceptions": xb,
                       "cumulative_probability": cb, "zone": zb,
                       "plus_factor": _plus_factor(xb, p, window, zb)})
    counts = np.convolve(h.astype(int), np.ones(w, dtype=int), mode="valid")
    rolling = pd.DataFrame(columns=["end", "exceptions", "cumulative_probability", "zone"])
    if h.size >= window:
        cums = stats.binom.cdf(counts, window, p)
        rolling = pd.DataFrame({"end": index[window - 1:], "exceptions": counts,
                                "cumulative_probability": cums,
                                "zone": np.asarray(ZONES, dtype=object)[_zone_index(cums)]})
    worst = int(counts.max())
    if worst == 0:
        worst_p, worst_se, sims, used_seed = 1.0, 0.0, 0, None
    elif h.size <= w:
        worst_p, worst_se, sims, used_seed = _binom_upper_tail(worst, w, p)[0], 0.0, 0, None
    else:
        null = _worst_window_null(h.size, w, p, int(n_sims), seed)
        hat = float(np.mean(null >= worst))
        worst_p = float((np.sum(null >= worst) + 1) / (n_sims + 1))
        worst_se, sims, used_seed = float(np.sqrt(hat * (1.0 - hat) / n_sims)), int(n_sims), seed
    note = "" if h.size >= window else f"sample shorter than window: last {w} observations used"
    return TrafficLightResult(
        name="Basel traffic light", statistic=float(x), pvalue=float(stats.binom.sf(x - 1, w, p)),
        n_obs=w, n_exceptions=x, df=None, distribution="binomial", zone=zone, p=p,
        cumulative_probability=cum, plus_factor=_plus_factor(x, p, w, zone), window=w,
        blocks=pd.DataFrame(blocks), rolling=rolling, note=note, worst_window_exceptions=worst,
        worst_window_pvalue=worst_p, worst_window_pvalue_se=worst_se, n_sims=sims, seed=used_seed)


# --------------------------------------------------------------------------- durations

def _geometric_lr(d, p):
    """Kupiec TUFF log-likelihood ratio for durations d (1 = breach on the next day)."""
    d = np.asarray(d, dtype=float)
    ll0 = np.log(p) + special.xlogy(d - 1, 1 - p)
    ll1 = -np.log(d) + special.xlogy(d - 1, 1 - 1.0 / d)
    return -2.0 * (ll0 - ll1)


def tuff(hits, p: float) -> DurationResult:
    r"""Kupiec (1995) time until first failure (TUFF).

    .. math::
        LR = -2\ln\frac{p(1-p)^{v-1}}{(1/v)(1-1/v)^{v-1}}\sim\chi^2_1

    with v the (1-based) index of the first exception. Without an exception v is
    taken as n + 1 (the first failure lies beyond the sample), as in MATLAB.
    """
    h = _as_hits(hits)
    p = _check_p(p)
    n = h.size
    first = int(np.argmax(h)) + 1 if h.any() else n + 1
    lr = float(max(_geometric_lr(first, p), 0.0)) if first > 0 else 0.0
    note = "" if h.any() else "no exception: first failure set to n + 1"
    return DurationResult(name="TUFF", statistic=lr, pvalue=float(stats.chi2.sf(lr, 1)), df=1, n_obs=n,
                          n_exceptions=int(h.sum()), first_failure=first, note=note)


def _mc_pvalue(null: np.ndarray, stat: float) -> float:
    r"""Monte Carlo p-value :math:`(1 + \#\{s^* \ge s\})/(1 + N)` of ``stat`` against the sorted ``null``.

    A simulated statistic within 1e-10 (relative) of the observed one counts as at least as large: the
    statistics of equal hit patterns may differ in their last bits (summation order).
    """
    edge = stat - 1e-10 * max(1.0, abs(stat))
    exceed = null.size - int(np.searchsorted(null, edge, side="left"))
    return (1 + exceed) / (1 + null.size)


def _chi2_note(stat: float, df: int) -> str:
    chi2_p = float(stats.chi2.sf(stat, df))
    return f"chi2({df}) p-value " + ("< 0.0001" if chi2_p < 1e-4 else f"{chi2_p:.4f}")


def _mc_note(what: str, n_null: int, n_sim: int, stat: float, df: int, note: str = "") -> str:
    kept = f"{n_null:,} of {n_sim:,} samples" if n_null < n_sim else f"{n_sim:,} samples"
    return "; ".join(x for x in (f"Monte Carlo p-value under {what} ({kept})", _chi2_note(stat, df), note) if x)


def _bernoulli_rows(rng: np.random.Generator, n_rows: int, n: int, p: float) -> np.ndarray:
    """``n_rows`` iid Bernoulli(p) hit sequences of length n (bool, one per row; :func:`_bernoulli_positions`)."""
    h = np.zeros((n_rows, n), dtype=bool)
    h[_bernoulli_positions(rng, n_rows, n, p)] = True
    return h


def _bernoulli_positions(rng: np.random.Generator, n_rows: int, n: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Exceptions of ``n_rows`` iid Bernoulli(p) sequences of length n as ``(rows, positions)``, sorted.

    The gaps between the successes of a Bernoulli(p) process are iid Geometric(p) on 1, 2, ...: each row
    draws L gaps (L above n p by 8 standard deviations) and keeps the cumulative positions below n; a row
    whose L gaps end inside the sample draws L more. Cost proportional to n p, not n.
    """
    width = int(np.ceil(n * p + 8 * np.sqrt(n * p) + 8))
    pos = np.cumsum(rng.geometric(p, size=(n_rows, width)), axis=1) - 1
    short = np.flatnonzero(pos[:, -1] < n)
    while short.size:  # rare: extend the rows whose gaps have not yet left the sample
        more = pos[short, -1:] + np.cumsum(rng.geometric(p, size=(short.size, width)), axis=1)
        pos = np.concatenate([pos, np.full((n_rows, width), n)], axis=1)
        pos[short, -width:] = more
        short = short[more[:, -1] < n]
    rows, k = np.nonzero(pos < n)
    return rows, pos[rows, k]


def _read_only(values: np.ndarray) -> np.ndarray:
    """A sorted copy over immutable bytes: a cached null cannot be made writable again by a caller."""
    return np.frombuffer(np.sort(values).tobytes())


def _exception_times(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exceptions of the (S, n) hit matrix ``h``: ``(rows, t, first)``, by row then time.

    ``t`` the 1-based time of each exception, ``first`` whether it is the first of its row.
    """
    rows, cols = np.nonzero(h)
    first = np.ones(rows.size, dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    return rows, cols + 1, first


def _tbfi_stats(h: np.ndarray, p: float) -> np.ndarray:
    """Haas TBFI statistic of each row of the (S, n) hit matrix ``h`` (see :func:`haas_tbfi`)."""
    rows, t, first = _exception_times(h)
    prev = np.zeros(t.size, dtype=t.dtype)
    prev[1:] = t[:-1]
    d = t - np.where(first, 0, prev)  # days since the previous exception of the row (from 0 for the first)
    # float even when no row has an exception (bincount of no rows is int64 and would truncate the LR below)
    out = np.bincount(rows, weights=np.maximum(_geometric_lr(d, p), 0.0), minlength=h.shape[0]).astype(float)
    out[~h.any(axis=1)] = max(float(_geometric_lr(h.shape[1] + 1, p)), 0.0)
    return out


@functools.lru_cache(maxsize=32)
def _haas_null(n: int, p: float, n_sim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(TBFI, TBF) of ``n_sim`` iid Bernoulli(p) sequences of length n, each sorted and read-only.

    Drawn from ``default_rng([seed, n, 1])`` in blocks of 256 rows; a pure function of its arguments, kept for
    the samples of the same length and level in a study.
    """
    rng = np.random.default_rng([seed, n, 1])
    tbfi, tbf = [], []
    for start in range(0, n_sim, 256):
        h = _bernoulli_rows(rng, min(256, n_sim - start), n, p)
        s = _tbfi_stats(h, p)
        tbfi.append(s)
        tbf.append(s + _lr_uc(h.sum(axis=1), n, p))
    return _read_only(np.concatenate(tbfi)), _read_only(np.concatenate(tbf))


def _durations(h: np.ndarray) -> np.ndarray:
    """Return the times between exceptions (the first counted from the start)."""
    t = np.flatnonzero(h) + 1
    return np.diff(np.concatenate(([0], t)))


def haas_tbfi(hits, p: float, *, n_sim: int = 2_000, seed: int = 0) -> DurationResult:
    r"""Haas (2001) time-between-failures independence test.

    :math:`LR_{TBFI} = \sum_{i=1}^{x} LR(d_i)`, the TUFF ratio of every
    duration: d_1 is the time to the first exception and d_i the days between
    exceptions i - 1 and i. Without an exception the single duration is taken as
    n + 1 (df 1), as for TUFF. The statistic matches MATLAB ``varbacktest.tbfi``.

    Haas refers it to :math:`\chi^2_x`; with a few exceptions of small probability that
    approximation over-rejects (10.3%, 9.8% and 12.9% at the 5% level for n = 1,000 and p = 1%,
    n = 500 and p = 1%, n = 1,000 and p = 2.5%; 1,000 iid Bernoulli(p) samples), so the p-value is
    the Monte Carlo one under H0, iid Bernoulli(p) exceptions (Christoffersen and Pelletier 2004;
    Berkowitz, Christoffersen and Pelletier 2011; Dufour 2006):
    :math:`(1 + \#\{LR^* \ge LR\})/(1 + N)` over ``n_sim`` sequences of the same length from
    ``default_rng([seed, n, 1])``. The :math:`\chi^2_x` p-value is in the note.
    """
    h = _as_hits(hits)
    p = _check_p(p)
    x = int(h.sum())
    d = _durations(h) if x else np.array([h.size + 1])
    lr = float(_tbfi_stats(h[None, :], p)[0])
    df = max(x, 1)
    null = _haas_null(h.size, p, int(n_sim), int(seed))[0]
    note = _mc_note(f"iid Bernoulli({p:g}) exceptions", null.size, int(n_sim), lr, df,
                    "" if x else "no exception: duration set to n + 1")
    return DurationResult(name="Haas TBFI", statistic=lr, pvalue=_mc_pvalue(null, lr), df=df,
                          n_obs=h.size, n_exceptions=x, durations=tuple(int(v) for v in d),
                          distribution="monte carlo", n_sims=int(n_sim), seed=int(seed), note=note)


def haas_tbf(hits, p: float, *, n_sim: int = 2_000, seed: int = 0) -> DurationResult:
    r"""Haas (2001) time-between-failures mixed test.

    :math:`LR_{TBF} = LR_{POF} + LR_{TBFI}` (frequency plus independence of the durations), as
    MATLAB ``varbacktest.tbf``. Haas refers it to :math:`\chi^2_{x+1}`, which over-rejects (11.9%,
    8.8% and 13.5% at 5%; the samples of :func:`haas_tbfi`): the p-value is the Monte Carlo one under
    iid Bernoulli(p) exceptions, from the same ``n_sim`` sequences as :func:`haas_tbfi`; the
    :math:`\chi^2_{x+1}` p-value is in the note.
    """
    tbfi = haas_tbfi(hits, p, n_sim=n_sim, seed=seed)
    pof = kupiec_pof(hits, p)
    lr = pof.statistic + tbfi.statistic
    df = tbfi.df + 1
    null = _haas_null(tbfi.n_obs, pof.p, int(n_sim), int(seed))[1]
    note = _mc_note(f"iid Bernoulli({pof.p:g}) exceptions", null.size, int(n_sim), lr, df,
                    "" if tbfi.n_exceptions else "no exception: duration set to n + 1")
    return DurationResult(name="Haas TBF", statistic=lr, pvalue=_mc_pvalue(null, lr), df=df,
                          n_obs=tbfi.n_obs, n_exceptions=tbfi.n_exceptions, durations=tbfi.durations,
                          distribution="monte carlo", n_sims=int(n_sim), seed=int(seed), note=note)


#: Bounds of the Weibull shape b in the duration test: rugarch ``VaRDurTest`` (and its
#: successor tstests ``var_cp_test``) maximise over b in [0.001, 10] with L-BFGS-B.
WEIBULL_SHAPE_BOUNDS = (1e-3, 10.0)


def _duration_samples(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Durations between exceptions of each row of the (S, n) hit matrix ``h`` (Christoffersen and Pelletier 2004).

    With exceptions at 1-based times t_1 < ... < t_x of n: the uncensored
    durations t_{i+1} - t_i; when the row does not start with an exception,
    a first duration t_1 (days until the first exception) censored; when it
    does not end with one, a last duration n - t_x censored. An exception on
    the first observation starts the first duration: nothing is counted from a
    "day 0" before the sample. Returns flat ``(row, duration, censored)`` arrays, by row and
    in time order within a row (rows without an exception have none).
    """
    n = h.shape[1]
    rows, t, first = _exception_times(h)
    last = np.ones(rows.size, dtype=bool)
    last[:-1] = rows[1:] != rows[:-1]
    lead = first & ~h[rows, 0]
    tail = last & ~h[rows, n - 1]
    row = np.concatenate([rows[lead], rows[~first], rows[tail]])
    d = np.concatenate([t[lead], t[~first] - t[:-1][~first[1:]], n - t[tail]])
    cens = np.concatenate([np.ones(lead.sum(), bool), np.zeros((~first).sum(), bool), np.ones(tail.sum(), bool)])
    end = np.concatenate([t[lead], t[~first], np.full(tail.sum(), n + 1)])  # time order within a row
    order = np.lexsort((end, row))
    return row[order], d[order].astype(float), cens[order]


def _weibull_profile(b: np.ndarray, log_d: np.ndarray, n_u: np.ndarray, sum_log_u: np.ndarray) -> np.ndarray:
    r"""Weibull log-likelihood maximised over a, for shape b (hazard a^b b D^(b-1)), one value per row.

    ``log_d`` is (S, K) with -inf padding. With right-censored durations the maximising scale is
    :math:`\hat a^b = n_u / \sum_i D_i^b` (n_u uncensored durations, the sum over all), which leaves
    :math:`n_u[\ln n_u - \ln\sum D_i^b] + n_u\ln b + (b-1)\sum_{unc}\ln D_i - n_u`.
    """
    x = b[:, None] * log_d
    top = x.max(axis=1)
    log_s = top + np.log(np.exp(x - top[:, None]).sum(axis=1))  # log sum D^b, overflow-safe
    return n_u * (np.log(n_u) - log_s) + n_u * np.log(b) + (b - 1) * sum_log_u - n_u


def _weibull_lr(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weibull duration LR, shape and at-bound flag of each row of the (S, n) hit matrix ``h``.

    Returns ``(lr, b_hat, at_bound, applicable)``; rows with fewer than two durations or none uncensored
    are not applicable (lr 0). The shape is maximised by a golden-section search on log b over
    :data:`WEIBULL_SHAPE_BOUNDS` (70 steps: log b to 3e-14), run on all rows at once, then compared
    with the two bounds (at_bound when a bound is higher).
    """
    n_rows = h.shape[0]
    row, d, cens = _duration_samples(h)
    count = np.bincount(row, minlength=n_rows)
    n_u = np.bincount(row, weights=~cens, minlength=n_rows)
    ok = (count >= 2) & (n_u >= 1)
    lr, b_hat, at_bound = np.zeros(n_rows), np.full(n_rows, np.nan), np.zeros(n_rows, dtype=bool)
    if not ok.any():
        return lr, b_hat, at_bound, ok
    keep = ok[row]
    row, d, cens = row[keep], d[keep], cens[keep]
    idx = np.cumsum(ok) - 1  # row -> packed row
    r = idx[row]
    starts = np.concatenate(([0], np.cumsum(count[ok])[:-1]))
    log_d = np.full((int(ok.sum()), int(count.max())), -np.inf)
    log_d[r, np.arange(r.size) - starts[r]] = np.log(d)
    n_u = n_u[ok]
    sum_log_u = np.bincount(r, weights=np.where(cens, 0.0, np.log(d)), minlength=n_u.size)

    def f(log_b):
        return _weibull_profile(np.exp(log_b), log_d, n_u, sum_log_u)

    g = (np.sqrt(5.0) - 1) / 2
    lo = np.full(n_u.size, np.log(WEIBULL_SHAPE_BOUNDS[0]))
    hi = np.full(n_u.size, np.log(WEIBULL_SHAPE_BOUNDS[1]))
    c, e = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fe = f(c), f(e)
    for _ in range(70):
        left = fc > fe  # the maximum lies in [lo, e]
        hi, lo = np.where(left, e, hi), np.where(left, lo, c)
        c, e = np.where(left, hi - g * (hi - lo), e), np.where(left, c, lo + g * (hi - lo))
        new = f(np.where(left, c, e))
        fc, fe = np.where(left, new, fe), np.where(left, fc, new)
    best = 0.5 * (lo + hi)
    # a search that converged onto a bound (within its own 3e-14 resolution) is at that bound
    log_bounds = np.log(np.asarray(WEIBULL_SHAPE_BOUNDS, dtype=float))
    near = np.abs(best[:, None] - log_bounds[None, :]) <= 1e-12
    best = np.where(near[:, 0], log_bounds[0], np.where(near[:, 1], log_bounds[1], best))
    candidates = np.column_stack([f(best)] + [f(np.full(n_u.size, np.log(b))) for b in WEIBULL_SHAPE_BOUNDS])
    k = np.argmax(candidates, axis=1)  # the first maximum: the search's optimum on a tie
    ll_w = candidates[np.arange(k.size), k]
    ll_exp = f(np.zeros(n_u.size))
    lr[ok] = np.maximum(2.0 * (np.maximum(ll_w, ll_exp) - ll_exp), 0.0)
    b_best = np.where(near[:, 0], WEIBULL_SHAPE_BOUNDS[0], np.where(near[:, 1], WEIBULL_SHAPE_BOUNDS[1], np.exp(best)))
    b_hat[ok] = np.column_stack([b_best, np.tile(WEIBULL_SHAPE_BOUNDS, (best.size, 1))])[np.arange(k.size), k]
    at_bound[ok] = (k > 0) | near.any(axis=1)
    return lr, b_hat, at_bound, ok


@functools.lru_cache(maxsize=32)
def _weibull_null(n: int, p: float, n_sim: int, seed: int) -> np.ndarray:
    """Weibull LR of the applicable ones of ``n_sim`` iid Bernoulli(p) sequences of length n, sorted, read-only.

    Drawn from ``default_rng([seed, n, 2])`` in blocks of 256 rows; a pure function of its arguments.
    """
    rng = np.random.default_rng([seed, n, 2])
    parts = []
    for start in range(0, n_sim, 256):
        lr, _, _, ok = _weibull_lr(_bernoulli_rows(rng, min(256, n_sim - start), n, p))
        parts.append(lr[ok])
    return _read_only(np.concatenate(parts))


def duration_weibull(hits, p: float | None = None, *, n_sim: int = 2_000, seed: int = 0) -> DurationResult:
    r"""Christoffersen and Pelletier (2004) duration-based independence test.

    Durations D_i between exceptions have a Weibull law with hazard
    :math:`\lambda(D) = a^b b D^{b-1}`; H0 (memoryless, independent exceptions)
    is b = 1 (exponential). Following the paper (section 3) and rugarch
    ``VaRDurTest``: D_i = t_{i+1} - t_i between exceptions; if the sample
    does not start with an exception, the first duration is the time to the
    first exception, censored (C_1 = 1); if it does not end with one, the last
    duration is the time after the last exception, censored (C_N = 1). A
    breach on the first observation creates no duration counted from "day 0".

    .. math::
        \ln L = C_1\ln S(D_1) + (1-C_1)\ln f(D_1) + \sum_{i=2}^{N-1}\ln f(D_i)
        + C_N\ln S(D_N) + (1-C_N)\ln f(D_N),

    :math:`LR = 2[\ln L(\hat a,\hat b) - \ln L(\tilde a, 1)]`. The
    scale is profiled out in closed form and b is maximised over
    :data:`WEIBULL_SHAPE_BOUNDS` = [0.001, 10], the bounds of rugarch (L-BFGS-B,
    ``lower = 0.001, upper = 10``); ``at_bound`` flags an estimate at a bound
    (e.g. two equal durations: the likelihood grows without limit in b). The
    test needs at least one uncensored duration and two durations in all
    (with one duration the shape is not identified); otherwise it is reported
    with ``applicable=False``, statistic 0 and p-value 1. With two durations
    rugarch's sum over ``D[2:(N-1)]`` runs backwards in R and counts both
    twice; the likelihood above does not.

    The :math:`\chi^2_1` approximation over-rejects on few durations (6.6%, 11.6% and 7.1% at the 5%
    level for n = 1,000 and p = 1%, n = 500 and p = 1%, n = 1,000 and p = 2.5%; 1,000 iid Bernoulli(p)
    samples), so, as in Christoffersen and Pelletier (2004, section 4), the p-value is the Monte
    Carlo one under H0, iid Bernoulli(p) exceptions: :math:`(1 + \#\{LR^* \ge LR\})/(1 + N)` over the
    applicable ones of ``n_sim`` sequences of the same length from ``default_rng([seed, n, 2])``.
    Without ``p`` the sample's breach rate x/n is used. The :math:`\chi^2_1` p-value is in the note.
    """
    h = _as_hits(hits)
    n, x = h.size, int(h.sum())
    name = "Weibull duration"
    mc = dict(distribution="monte carlo", n_sims=int(n_sim), seed=int(seed))
    if x == 0:
        return DurationResult(name=name, statistic=0.0, pvalue=1.0, df=1, n_obs=n,
                              n_exceptions=0, applicable=False, note="no exception: no duration", **mc)
    row, d, cens = _duration_samples(h[None, :])
    common = dict(name=name, df=1, n_obs=n, n_exceptions=x, durations=tuple(int(v) for v in d),
                  censored=tuple(bool(c) for c in cens), shape_bounds=WEIBULL_SHAPE_BOUNDS, **mc)
    lr, b_hat, at_bound, ok = (v[0] for v in _weibull_lr(h[None, :]))
    if not ok:
        return DurationResult(statistic=0.0, pvalue=1.0, applicable=False,
                              note="fewer than two durations or none uncensored: test not applicable",
                              **common)
    rate = x / n if p is None else _check_p(p)
    null = _weibull_null(n, rate, int(n_sim), int(seed))
    note = (f"shape at the bound {b_hat:g} of [{WEIBULL_SHAPE_BOUNDS[0]:g}, {WEIBULL_SHAPE_BOUNDS[1]:g}]: "
            "the statistic depends on the bound" if at_bound else "")
    what = f"iid Bernoulli({rate:g}) exceptions" + ("" if p is not None else " (the sample's breach rate)")
    return DurationResult(statistic=float(lr), pvalue=_mc_pvalue(null, float(lr)), weibull_b=float(b_hat),
                          at_bound=bool(at_bound), note=_mc_note(what, null.size, int(n_sim), float(lr), 1, note),
                          **common)


# --------------------------------------------------------------------------- regression / density tests

def _dq_stats(rows: np.ndarray, cols: np.ndarray, n_rows: int, n: int, var: np.ndarray, p: float,
              lags: int) -> np.ndarray:
    r"""DQ statistic of each of ``n_rows`` exception sequences of length n, all with the same VaR.

    The exceptions are given by position: ``rows`` and ``cols`` (sorted by row, then position).

    The regression of :math:`Hit_t = I_t - p` on :math:`X_t = (1, I_{t-1..t-K}, \tilde{VaR}_t)` has the
    fitted values of the one on the centred lags and raw VaR (the same column space with the constant;
    :math:`\tilde{VaR}` is the VaR standardised, for a well-conditioned X'X), so
    :math:`DQ = y'X(X'X)^{+}X'y / (p(1-p))` with :math:`X'y = X'I - p X'1`. Every entry of X'X and X'I is a
    count of exceptions (or of pairs of exceptions j <= K apart) or a sum of the VaR over exceptions, in
    the windows t = K..n-1: computed from the exceptions' positions only, for all rows at once. The
    pseudo-inverse (eigenvalues below 1e-12 of the largest dropped) gives the fitted values of a
    rank-deficient X (e.g. no exception), as ``pinv(X)`` does.
    """
    K, m = lags, n - lags
    v = var[lags:]
    sd = v.std()
    v = (v - v.mean()) / sd if sd > 0 else np.zeros_like(v)
    last = K + 1
    xtx = np.zeros((n_rows, K + 2, K + 2))
    xtb = np.zeros((n_rows, K + 2))
    xtx[:, 0, 0] = m
    xtx[:, 0, last] = xtx[:, last, 0] = v.sum()
    xtx[:, last, last] = v @ v
    key = rows * (n + K + 1) + cols  # sorted: one number per exception

    def in_window(rows, at, shift):
        t = at + shift  # the exception at position ``at`` is column ``shift``'s value at date t
        ok = (t >= K) & (t < n)
        return rows[ok], t[ok]

    for a in range(K + 1):  # a = 0: the regressand I_t; a >= 1: the lag column I_{t-a}
        r, t = in_window(rows, cols, a)
        count = np.bincount(r, minlength=n_rows)
        v_sum = np.bincount(r, weights=v[t - K], minlength=n_rows)
        if a == 0:
            xtb[:, 0], xtb[:, last] = count, v_sum
        else:
            xtx[:, 0, a] = xtx[:, a, 0] = xtx[:, a, a] = count
            xtx[:, a, last] = xtx[:, last, a] = v_sum
    for j in range(1, K + 1):  # pairs of exceptions j apart: I_{t-a} I_{t-a-j}
        later = cols + j
        paired = (later < n) & np.isin(key + j, key, assume_unique=True)
        for a in range(K + 1 - j):
            count = np.bincount(in_window(rows[paired], later[paired], a)[0], minlength=n_rows)
            if a == 0:
                xtb[:, j] = count
            else:
                xtx[:, a, a + j] = xtx[:, a + j, a] = count
    xty = xtb - p * xtx[:, :, 0]
    beta = np.linalg.pinv(xtx, rtol=1e-12, hermitian=True) @ xty[:, :, None]
    return np.einsum("sk,sk->s", xty, beta[:, :, 0]) / (p * (1 - p))


def dynamic_quantile(pnl, var, p: float, lags: int = 4, *, n_sim: int = 2_000, seed: int = 0) -> DQResult:
    r"""Engle and Manganelli (2004) dynamic quantile test.

    With :math:`Hit_t = 1[loss_t > VaR_t] - p` and regressors
    :math:`X_t = (1, Hit_{t-1}, \dots, Hit_{t-K}, VaR_t)`,

    .. math::
        DQ = \frac{Hit' X (X'X)^{-1} X' Hit}{p(1-p)}.

    The first K observations are used only as lags. A rank-deficient X (e.g. no
    exception at all) is handled with the pseudo-inverse and df = rank(X).

    The paper's :math:`\chi^2_{K+2}` over-rejects with few exceptions (11.4% at the 5% level for
    n = 1,000 and 18.0% for n = 500 at p = 1%; 1,000 iid Bernoulli(p) samples), so the p-value is
    the Monte Carlo one under H0 given the VaR series (Berkowitz, Christoffersen and Pelletier 2011;
    Dufour 2006): exceptions iid Bernoulli(p), the regression rerun on each of ``n_sim`` simulated
    sequences with the same VaR, :math:`(1 + \#\{DQ^* \ge DQ\})/(1 + N)`, drawn from
    ``default_rng([seed, n, lags, 3])``. The :math:`\chi^2` p-value is in the note.
    """
    arrays, _ = _aligned(pnl=pnl, var=var)
    pnl_a, var_a = arrays["pnl"], arrays["var"]
    p = _check_p(p)
    if not isinstance(lags, int | np.integer) or lags < 1:
        raise ValueError(f"lags must be a positive integer, got {lags!r}")
    n = pnl_a.size
    if n <= lags + 2:
        raise ValueError(f"dynamic_quantile needs more than lags + 2 = {lags + 2} observations, got {n}")
    hit = (-pnl_a > var_a).astype(float) - p
    y = hit[lags:]
    cols = [np.ones(n - lags)] + [hit[lags - k:n - k] for k in range(1, lags + 1)] + [var_a[lags:]]
    X = np.column_stack(cols)
    beta = np.linalg.pinv(X) @ y
    at = np.flatnonzero(hit > 0)
    dq = float(_dq_stats(np.zeros(at.size, dtype=np.intp), at, 1, n, var_a, p, lags)[0])
    df = int(np.linalg.matrix_rank(X))
    rng = np.random.default_rng([int(seed), n, int(lags), 3])
    null = _dq_stats(*_bernoulli_positions(rng, int(n_sim), n, p), int(n_sim), n, var_a, p, lags)
    return DQResult(name="Engle-Manganelli DQ", statistic=dq, pvalue=_mc_pvalue(np.sort(null), dq),
                    df=df, n_obs=int(y.size), n_exceptions=int((hit[lags:] > 0).sum()), lags=lags,
                    coefficients=tuple(float(b) for b in beta), distribution="monte carlo", n_sims=int(n_sim),
                    seed=int(seed), note=_mc_note(f"iid Bernoulli({p:g}) exceptions given the VaR", null.size,
                                                  int(n_sim), dq, df))


_NORM_LOG_C = 0.5 * np.log(2 * np.pi)


def _censored_normal_loglik(mu, sigma, z_tail, n_censored, c):
    # scipy's norm.logpdf and norm.logsf, term for term (the same numbers, without the generic argument checks
    # that cost most of the Nelder-Mead fit): logpdf = -x^2/2 - log sqrt(2 pi) - log sigma, logsf = log_ndtr(-x)
    x = (z_tail - mu) / sigma
    ll = np.sum((-x**2 / 2.0 - _NORM_LOG_C) - np.log(sigma))
    if n_censored:
        ll += n_censored * special.log_ndtr(-((c - mu) / sigma))
    return ll


def berkowitz_tail(pit, p: float, n_scenarios: int | None = None) -> TestResult:
    r"""Berkowitz (2001) censored likelihood-ratio test of the loss tail.

    ``pit`` are the forecast CDF values of the realised P&L (small = loss). With
    :math:`z_t = \Phi^{-1}(pit_t)` and threshold :math:`c = \Phi^{-1}(p)`,
    observations with z < c enter through the normal density and the others are
    censored at c. :math:`LR = -2[\ln L(0,1) - \ln L(\hat\mu,\hat\sigma)] \sim \chi^2_2`.
    With fewer than two tail observations the unrestricted fit is not
    identified: the test is reported with ``note`` and p-value from the LR with
    sigma fixed at 1 (df 1).

    **Discrete forecasts.** The engine's ``pit`` column (:meth:`marginlab.models.Forecast.pit`) is
    already the rank PIT of the realisation among the N scenarios, :math:`(k + 1/2)/(N + 1)` with k the
    scenarios at or beyond the realised loss (Czado, Gneiting and Held 2009, "Predictive model assessment
    for count data", Biometrics 65(4), non-randomised mid-PIT; the rank histogram of Anderson 1996 /
    Hamill 2001): uniform on its grid under a correct forecast and never 0 or 1, so pass it as it is
    (without ``n_scenarios``). A user-supplied empirical CDF k/N is 0 on a realisation beyond every
    scenario, where :math:`\Phi^{-1}` is infinite, so any clip constant (1e-300 gave z = -37) would set the
    statistic alone: given ``n_scenarios`` = N, such PITs are mapped to :math:`(k + 1/2)/(N + 1)` first;
    without it, a PIT of exactly 0 makes the test not applicable (statistic and p-value NaN, the reason
    in ``note``); other PITs are tested as they are (a PIT of 1 lies above p and is censored: its value
    never enters).
    """
    u = _as_array(pit, "pit")
    p = _check_p(p)
    if ((u < 0) | (u > 1)).any():
        raise ValueError("pit: values must lie in [0, 1]")
    if n_scenarios is not None:
        if int(n_scenarios) != n_scenarios or n_scenarios < 1:
            raise ValueError(f"n_scenarios: a positive whole number of scenarios, got {n_scenarios!r}")
        u = (u * n_scenarios + 0.5) / (n_scenarios + 1.0)  # mid-distribution PIT of the rank among N + 1
    else:
        edge = int((u == 0).sum())  # a PIT of 1 is above p: censored, its value never enters
        if edge:
            return TestResult(name="Berkowitz tail", statistic=float("nan"), pvalue=float("nan"), n_obs=int(u.size),
                              n_exceptions=int((u < p).sum()),
                              note=f"not applicable: {edge} PIT(s) of exactly 0 (losses beyond every scenario of "
                                   "a discrete forecast, where the normal quantile is infinite); the "
                                   "test needs the forecast's number of scenarios (n_scenarios: rank PIT)")
    # no PIT is 0 here: the clip only keeps Phi^-1 finite at 1, which is censored anyway (above p)
    z = stats.norm.ppf(np.clip(u, 1e-300, 1 - 1e-16))
    c = stats.norm.ppf(p)
    tail = z[z < c]
    n_c = int(z.size - tail.size)
    ll0 = _censored_normal_loglik(0.0, 1.0, tail, n_c, c)

    def neg(theta):
        return -_censored_normal_loglik(theta[0], np.exp(theta[1]), tail, n_c, c)

    if tail.size >= 2:
        res = optimize.minimize(neg, x0=np.array([0.0, 0.0]), method="Nelder-Mead",
                                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
        ll1, df, note = -res.fun, 2, ""
    else:
        res = optimize.minimize_scalar(lambda m: -_censored_normal_loglik(m, 1.0, tail, n_c, c),
                                       bounds=(-10, 10), method="bounded")
        ll1, df, note = -res.fun, 1, "fewer than 2 tail observations: sigma fixed at 1"
    lr = float(max(2.0 * (ll1 - ll0), 0.0))
    return TestResult(name="Berkowitz tail", statistic=lr, pvalue=float(stats.chi2.sf(lr, df)), df=df,
                      n_obs=int(u.size), n_exceptions=int(tail.size), note=note)


# --------------------------------------------------------------------------- ES tests

def mcneil_frey(pnl, var, es, sigma=None, n_boot: int = 10_000, seed: int = 0) -> ESTestResult:
    r"""McNeil and Frey (2000) exceedance-residual test of ES.

    On exception days the residuals :math:`e_t = (loss_t - ES_t)/\sigma_t` (sigma
    = 1 when not given) have mean zero under H0; H1: mean > 0 (ES too low).
    The statistic is the t-ratio :math:`\bar e / (s_e/\sqrt{k})`; its one-sided
    p-value is bootstrapped from the centred residuals (Efron and Tibshirani
    1993, section 16.4) with ``n_boot`` draws of a seeded generator.
    """
    arrays, _ = _aligned(pnl=pnl, var=var, es=_required(es, "es"), sigma=sigma)
    pnl_a, var_a, es_a = arrays["pnl"], arrays["var"], arrays["es"]
    sig = np.ones_like(pnl_a) if sigma is None else arrays["sigma"]
    hit = -pnl_a > var_a
    k = int(hit.sum())
    if k < 2:
        return ESTestResult(name="McNeil-Frey", statistic=0.0, pvalue=1.0, n_obs=pnl_a.size, n_exceptions=k,
                            distribution="bootstrap", note="fewer than 2 exceptions: not applicable")
    e = (-pnl_a[hit] - es_a[hit]) / sig[hit]
    sd = e.std(ddof=1)
    if sd == 0:
        t = np.inf * np.sign(e.mean()) if e.mean() != 0 else 0.0
        return ESTestResult(name="McNeil-Frey", statistic=float(t), pvalue=float(e.mean() <= 0) * 1.0,
                            n_obs=pnl_a.size, n_exceptions=k, distribution="bootstrap",
                            note="residuals constant")
    t = e.mean() / (sd / np.sqrt(k))
    rng = np.random.default_rng(seed)
    centred = e - e.mean()
    draws = centred[rng.integers(0, k, size=(n_boot, k))]
    t_star = draws.mean(axis=1) / (draws.std(axis=1, ddof=1) / np.sqrt(k) + 1e-300)
    pvalue = float((np.sum(t_star >= t) + 1) / (n_boot + 1))
    return ESTestResult(name="McNeil-Frey", statistic=float(t), pvalue=pvalue, n_obs=pnl_a.size,
                        n_exceptions=k, distribution="bootstrap", n_sims=n_boot, kind="one-sided")


def _as_z(pnl, var, es, p, kind):
    loss = -pnl
    hit = loss > var
    n = pnl.shape[-1]
    if kind == "z1":
        k = hit.sum(axis=-1)
        s = np.sum(np.where(hit, loss / es, 0.0), axis=-1)
        return np.where(k > 0, 1.0 - s / np.maximum(k, 1), 0.0)
    if kind == "z2":
        return 1.0 - np.sum(np.where(hit, loss / es, 0.0), axis=-1) / (n * p)
    raise ValueError(f"kind must be 'z1', 'z2' or 'z3', got {kind!r}")


#: Range of the Student-t degrees of freedom of the default Acerbi-Szekely null: an ES/VaR ratio above the
#: t's at the lower end (1,003 at p = 2.5%) keeps nu = 1.001, one at or below the t's at the upper end
#: (the normal's, 1.1928 at p = 2.5%) takes the normal; the excess rescaling then matches ES exactly.
AS_SHAPE_BOUNDS = (1.0 + 1e-3, 1e8)


def _t_es_over_var(nu, p: float) -> np.ndarray:
    r"""ES/VaR at tail probability p of the standard Student t with ``nu`` > 1 degrees of freedom.

    With :math:`q = -t_\nu^{-1}(p)`, :math:`ES = \frac{\nu + q^2}{\nu - 1}\frac{f_\nu(q)}{p}` (closed form,
    e.g. McNeil, Frey and Embrechts 2015, Example 2.15), so the ratio is :math:`ES / q`.
    """
    nu = np.asarray(nu, dtype=float)
    q = -special.stdtrit(nu, p)
    log_f = (special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)
             - (nu + 1) / 2 * np.log1p(q * q / nu))
    return (nu + q * q) / (nu - 1) * np.exp(log_f) / (p * q)


def _t_shape(ratio: np.ndarray, p: float) -> np.ndarray:
    """Degrees of freedom nu with ES/VaR of the t at p equal to ``ratio`` (inf: the normal), one per value.

    ES/VaR of the t falls strictly with nu, towards the normal's: a vectorised bisection on log(nu - 1)
    over :data:`AS_SHAPE_BOUNDS` (60 halvings of a width of 25: nu to 1e-15 relative), run once per
    distinct ratio. Ratios at or below the t's at the upper bound give inf, above the t's at the lower
    bound the lower bound.
    """
    lo_nu, hi_nu = AS_SHAPE_BOUNDS
    values, inverse = np.unique(np.asarray(ratio, dtype=float), return_inverse=True)
    lo = np.full(values.size, np.log(lo_nu - 1))  # ratio(lo) >= value
    hi = np.full(values.size, np.log(hi_nu - 1))  # ratio(hi) <= value
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = _t_es_over_var(1 + np.exp(mid), p) > values
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    nu = 1 + np.exp(0.5 * (lo + hi))
    nu[values >= _t_es_over_var(lo_nu, p)] = lo_nu
    nu[values <= _t_es_over_var(hi_nu, p)] = np.inf
    return nu[inverse.ravel()]


def _matched_tail(var: np.ndarray, es: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The default H0 of :func:`acerbi_szekely`: per date a tail law with the forecast's VaR AND ES.

    Returns ``(nu, c0, c1)``: an exception's loss over ES is :math:`c_0 + c_1 X`, X the loss of a standard
    t with nu degrees of freedom (the normal where nu is inf) beyond its p-quantile q, i.e.
    :math:`L_t = VaR_t + (ES_t - VaR_t)\frac{X - q}{m - q}` with m = E[X | X > q]: P(L > VaR) = p and
    E[L | L > VaR] = ES exactly. nu solves :math:`ES_\nu/q_\nu = ES_t/VaR_t` (:func:`_t_shape`), so
    without clamping :math:`L_t = VaR_t X / q`: the t scaled to the VaR (normal shape where VaR <= 0 or
    p = 0.5, where the ratio is not defined).
    """
    ok = (var > 0) & (p < 0.5)
    nu = np.full(var.size, np.inf)
    if ok.any():
        nu[ok] = _t_shape(es[ok] / var[ok], p)
    t_dates = np.isfinite(nu)
    z = -float(special.ndtri(p))
    q = np.full(var.size, z)
    m = np.full(var.size, stats.norm.pdf(z) / p)
    if t_dates.any():
        q[t_dates] = -special.stdtrit(nu[t_dates], p)
        m[t_dates] = _t_es_over_var(nu[t_dates], p) * q[t_dates]
    c1 = np.maximum(es - var, 0.0) / ((m - q) * es)
    return nu, var / es - c1 * q, c1


def _simulated_z(rng: np.random.Generator, p: float, n_sims: int, kinds: tuple[str, ...],
                 tail) -> list[np.ndarray]:
    r"""Z1 and/or Z2 (one array per kind) of ``n_sims`` P&L paths simulated under H0, drawing only the exceptions.

    Under H0 every (path, date) is an exception with probability p, independently, and given one its
    loss over ES is ``tail(dates, v)`` with v uniform on (0, 1) (the exception's tail probability over p:
    :math:`F(\epsilon) = p v`). The statistics depend on the exceptions only, so the simulation draws, per
    date, how many paths breach (Binomial(n_sims, p)), which ones (without replacement) and their v: the
    same law as simulating all ``n_sims x T`` draws, at a cost proportional to the ``n_sims T p``
    exceptions.
    """
    n = tail.n_dates
    counts = rng.binomial(n_sims, p, size=n)
    paths = np.concatenate([rng.choice(n_sims, size=c, replace=False) for c in counts]) if counts.any() \
        else np.zeros(0, dtype=np.int64)
    dates = np.repeat(np.arange(n), counts)
    loss_over_es = tail(dates, rng.random(paths.size))
    total = np.bincount(paths, weights=loss_over_es, minlength=n_sims)
    k = np.bincount(paths, minlength=n_sims)
    return [1.0 - total / (n * p) if kind == "z2" else np.where(k > 0, 1.0 - total / np.maximum(k, 1), 0.0)
            for kind in kinds]


@dataclass(frozen=True)
class _ScaledTail:
    """Exception losses over ES of ``scale_t * eps`` with eps ~ ``dist`` (the null of an explicit ``dist``)."""

    dist: Any
    p: float
    scale_over_es: np.ndarray

    @property
    def n_dates(self) -> int:
        return self.scale_over_es.size

    def __call__(self, dates: np.ndarray, v: np.ndarray) -> np.ndarray:
        return -self.dist.ppf(self.p * v) * self.scale_over_es[dates]


@dataclass(frozen=True)
class _MatchedTail:
    """Exception losses over ES under the default null :func:`_matched_tail` (c0 + c1 X, X a t or normal tail)."""

    p: float
    nu: np.ndarray
    c0: np.ndarray
    c1: np.ndarray

    @property
    def n_dates(self) -> int:
        return self.nu.size

    def __call__(self, dates: np.ndarray, v: np.ndarray) -> np.ndarray:
        nu = self.nu[dates]
        t = np.isfinite(nu)
        x = -special.ndtri(self.p * v)
        if t.any():
            x[t] = -special.stdtrit(nu[t], self.p * v[t])
        return self.c0[dates] + self.c1[dates] * x


def acerbi_szekely(pnl, var, es, p: float, kind: str = "z2", dist=None, scale=None,
                   n_sims: int = 10_000, seed: int = 0) -> ESTestResult:
    r"""Acerbi and Szekely (2014) ES backtests Z1, Z2, Z3 (positive-loss convention).

    .. math::
        Z_1 = 1 - \frac{1}{N_T}\sum_t \frac{L_t I_t}{ES_t},\qquad
        Z_2 = 1 - \frac{1}{T p}\sum_t \frac{L_t I_t}{ES_t},\qquad
        Z_3 = 1 - \frac{1}{T}\sum_t \frac{\widehat{ES}_T(U)_t}{E_V[\widehat{ES}_T(V)_t]}

    with :math:`I_t = 1[L_t > VaR_t]`, :math:`N_T=\sum I_t`. Negative values mean ES is too small; the
    p-value is P(Z_sim <= Z) from ``n_sims`` P&L paths simulated under H0 (Z3: from the first
    min(``n_sims``, 2,000), each needing n quantiles and a sort, as does its :math:`E_V`; the result's
    ``n_sims`` says how many) (Acerbi and Szekely 2014,
    section "Testing": the null is the forecast distribution, H0: :math:`P_t^{[p]} = F_t^{[p]}`).

    Null of Z1 and Z2 without ``dist`` (the forecast gives only VaR and ES): per date, losses exceed
    :math:`VaR_t` with probability p and an exception's loss is

    .. math::
        L_t = VaR_t + (ES_t - VaR_t)\,\frac{X - q_\nu}{m_\nu - q_\nu},

    X the loss of a standard Student t with :math:`\nu_t` degrees of freedom beyond its p-quantile
    :math:`q_\nu = -t_\nu^{-1}(p)` and :math:`m_\nu = E[X \mid X > q_\nu]
    = \frac{\nu + q_\nu^2}{\nu - 1}\frac{f_\nu(q_\nu)}{p}`. :math:`\nu_t` solves
    :math:`m_\nu / q_\nu = ES_t / VaR_t` (the t whose ES/VaR ratio is the forecast's; then
    :math:`L_t = VaR_t X / q_\nu`, the t scaled to the VaR), within :data:`AS_SHAPE_BOUNDS`; a ratio at
    or below the normal's (1.193 at p = 2.5%), a VaR <= 0 or p = 0.5 take the normal. So
    :math:`E[L_t \mid L_t > VaR_t] = ES_t` exactly on every date and E[Z1] = E[Z2] = 0 under H0 for any
    ES/VaR ratio (a normal scaled to the VaR alone rejected correct fat-tailed ES models: 99.5% of
    Z1 and 45% of Z2 tests at 5% for t(3) losses with their true VaR and ES, n = 1,000, p = 2.5%).
    ``ES_t < VaR_t`` is not a forecast of this null and raises a ValueError.

    With ``dist`` (a frozen scipy distribution) the null is :math:`pnl_t = scale_t\, \epsilon_t`,
    :math:`\epsilon \sim` ``dist``, and without ``scale`` it is implied from the VaR,
    :math:`scale_t = VaR_t / (-F^{-1}(p))`. Z3 needs the whole forecast distribution: ``dist`` (standard
    normal by default, scaled as above); :math:`\widehat{ES}_T` is the empirical ES of the T
    rank-ordered draws :math:`F_t^{-1}(U_s)` and its expectation is simulated with the same generator.
    """
    if kind not in ("z1", "z2", "z3"):
        raise ValueError(f"kind must be 'z1', 'z2' or 'z3', got {kind!r}")
    return _acerbi_szekely((kind,), pnl, var, es, p, dist, scale, n_sims, seed)[0]


def _es_below_var(var: np.ndarray, es: np.ndarray) -> np.ndarray:
    """Dates whose ES is below their VaR (beyond float noise): no tail law has them (the matched null's domain)."""
    return es < var - _TOL * np.abs(var)


def _acerbi_szekely(kinds: tuple[str, ...], pnl, var, es, p: float, dist, scale, n_sims: int,
                    seed: int) -> list[ESTestResult]:
    """:func:`acerbi_szekely` of each of ``kinds`` (z3 alone, or z1 and/or z2 from one simulation).

    Z1 and Z2 are functions of the same simulated exceptions: one simulation gives both, with the
    draws (and so the results) of separate calls with the same seed.
    """
    arrays, index = _aligned(pnl=pnl, var=var, es=_required(es, "es"), scale=scale)
    pnl_a, var_a, es_a = arrays["pnl"], arrays["var"], arrays["es"]
    p = _check_p(p)
    if (es_a <= 0).any():
        raise ValueError("es: values must be positive")
    matched = dist is None and kinds != ("z3",)
    if matched:
        low = _es_below_var(var_a, es_a)
        if low.any():
            i = int(np.argmax(low))
            at = f"date {index[i]}" if index is not None else f"position {i}"
            raise ValueError(f"es: below var at {at} (es {es_a[i]:g} < var {var_a[i]:g}); "
                             "ES is at least the VaR at its level")
    dist = stats.norm() if dist is None else dist
    q = float(dist.ppf(p))
    scale_a = var_a / (-q) if scale is None else arrays["scale"]
    n = pnl_a.size
    rng = np.random.default_rng(seed)
    hit = -pnl_a > var_a
    note = ""
    if kinds == ("z3",):
        sims = scale_a * dist.ppf(rng.random((n_sims, n)))
        m = int(np.floor(n * p))
        if m < 1:
            raise ValueError(f"z3 needs n * p >= 1 (n={n}, p={p})")
        u = dist.cdf(pnl_a / scale_a)

        def z3(u_row):
            # ES_hat of F_t^{-1}(u_s) over s, for each t: -(1/m) sum of m smallest
            qs = np.sort(dist.ppf(u_row))[:m]
            return -(scale_a * qs.mean())

        v = rng.random((min(n_sims, 2000), n))
        ev = np.mean([-(np.sort(dist.ppf(row))[:m].mean()) for row in v]) * scale_a
        stat = 1.0 - np.mean(z3(u) / ev)
        sim_u = dist.cdf(sims / scale_a)
        sim_stats = np.array([1.0 - np.mean(z3(row) / ev) for row in sim_u[: min(n_sims, 2000)]])
        results = [(stat, sim_stats)]
    else:
        if matched:
            tail = _MatchedTail(p, *_matched_tail(var_a, es_a, p))
            t_nu = tail.nu[np.isfinite(tail.nu)]
            note = (f"H0: per-date tails matching VaR and ES; Student t on {t_nu.size} of {n} dates"
                    + (f" (median nu {np.median(t_nu):.3g})" if t_nu.size else "") + ", normal on the others")
        else:
            tail = _ScaledTail(dist, p, scale_a / es_a)
        sims = _simulated_z(rng, p, n_sims, kinds, tail)
        results = [(float(_as_z(pnl_a, var_a, es_a, p, k)), z) for k, z in zip(kinds, sims, strict=True)]
    return [ESTestResult(name=f"Acerbi-Szekely {k.upper()}", statistic=float(stat),
                         pvalue=float((np.sum(z <= stat) + 1) / (z.size + 1)), n_obs=n,
                         n_exceptions=int(hit.sum()), distribution="simulated", kind=k, n_sims=int(z.size),
                         note=note) for k, (stat, z) in zip(kinds, results, strict=True)]


def du_escanciano(pit, p: float, lags: int = 5, n_sim: int = 2_000, seed: int = 0) -> tuple[TestResult, TestResult]:
    r"""Du and Escanciano (2017) unconditional and conditional ES backtests.

    Cumulative violations :math:`H_t = (p - u_t)/p \cdot 1[u_t \le p]` have mean p/2
    and variance :math:`p(1/3 - p/4)` under H0.
    Unconditional: :math:`U = \sqrt{n}(\bar H - p/2)/\sqrt{p(1/3-p/4)} \sim N(0,1)`
    (two-sided). Conditional: :math:`C = n\sum_{j=1}^{m}\hat\rho_j^2`
    with :math:`\hat\rho_j = \hat\gamma_j/\hat\gamma_0`,
    :math:`\hat\gamma_j = \frac{1}{n-j}\sum_{t=j+1}^{n}(H_t - p/2)(H_{t-j} - p/2)`.

    The paper refers C to :math:`\chi^2_m`; with most :math:`H_t` at 0 that approximation
    over-rejects (9.5% at the 5% level for n = 1,000 and p = 2.5%, measured: 2,000 samples of
    uniform PITs), so the conditional p-value here is the Monte Carlo one under H0 (PITs iid
    uniform): :math:`(1 + \#\{C^* \ge C\})/(1 + N)` over ``n_sim`` samples of n uniforms from
    ``default_rng([seed, n, lags])`` (the χ² p-value is in the note). With fewer than two tail
    observations (PITs strictly below p: only they make :math:`H_t > 0`) the autocorrelations of H are
    not estimable (none: H is constant and every
    :math:`\hat\rho_j = 1`): the conditional test is then not applicable (p-value 1, as
    :func:`mcneil_frey`).

    Returns
    -------
    (unconditional, conditional) : tuple of TestResult
    """
    u = _as_array(pit, "pit")
    p = _check_p(p)
    if ((u < 0) | (u > 1)).any():
        raise ValueError("pit: values must lie in [0, 1]")
    n = u.size
    if lags >= n:
        raise ValueError(f"lags ({lags}) must be smaller than the number of observations ({n})")
    h = (p - u) / p * (u <= p)
    x = int((u <= p).sum())
    stat_u = np.sqrt(n) * (h.mean() - p / 2) / np.sqrt(p * (1 / 3 - p / 4))
    uncond = TestResult(name="Du-Escanciano unconditional", statistic=float(stat_u),
                        pvalue=float(2 * stats.norm.sf(abs(stat_u))), n_obs=n, n_exceptions=x,
                        distribution="normal")
    name = "Du-Escanciano conditional"
    if int((u < p).sum()) < 2:  # H_t > 0 only below p: a PIT equal to p (k/N of the scenarios) is no tail value
        return uncond, TestResult(name=name, statistic=0.0, pvalue=1.0, df=lags, n_obs=n, n_exceptions=x,
                                  distribution="monte carlo", note="fewer than 2 tail observations: not applicable")
    stat_c = float(_du_escanciano_c(u[None, :], p, lags)[0])
    null = _du_escanciano_null(n, p, lags, int(n_sim), int(seed))
    cond = TestResult(name=name, statistic=stat_c, pvalue=_mc_pvalue(null, stat_c), df=lags, n_obs=n,
                      n_exceptions=x, distribution="monte carlo",
                      note=f"Monte Carlo p-value under iid uniform PITs ({null.size:,} of {int(n_sim):,} samples with "
                           f"2+ tail observations); " + _chi2_note(stat_c, lags))
    return uncond, cond


@functools.lru_cache(maxsize=32)
def _du_escanciano_null(n: int, p: float, lags: int, n_sim: int, seed: int) -> np.ndarray:
    """C of :func:`du_escanciano` on ``n_sim`` samples of n iid uniform PITs, those with 2+ tail observations, sorted.

    Drawn from ``default_rng([seed, n, lags])`` in blocks of 256 samples (the same stream as one draw);
    a pure function of its arguments, kept for the samples of the same size in a study (read-only).
    """
    rng = np.random.default_rng([seed, n, lags])
    parts = []
    for start in range(0, n_sim, 256):
        c = _du_escanciano_c(rng.random((min(256, n_sim - start), n)), p, lags)
        parts.append(c[np.isfinite(c)])
    return _read_only(np.concatenate(parts))


def _du_escanciano_c(u: np.ndarray, p: float, lags: int) -> np.ndarray:
    """The conditional statistic C of :func:`du_escanciano` for each row of ``u`` (nan without 2+ tail observations)."""
    n = u.shape[1]
    e = (p - u) / p * (u <= p) - p / 2
    gamma0 = np.mean(e * e, axis=1)
    rho = np.column_stack([np.sum(e[:, j:] * e[:, :-j], axis=1) / (n - j) for j in range(1, lags + 1)])
    rho = rho / gamma0[:, None]
    out = n * np.sum(rho ** 2, axis=1)
    out[(u < p).sum(axis=1) < 2] = np.nan
    return out


# --------------------------------------------------------------------------- disclosure & report

def disclosure_table(pnl, var, p: float | None = None, by: str | None = None) -> pd.DataFrame:
    """CPMI-IOSCO PQD 6.5-style back-testing disclosure.

    Columns: observations, exceptions, achieved coverage (1 - exceptions /
    observations), target coverage (1 - p) when given, largest and average
    breach size (loss - margin on exception days, in money) and the largest
    breach as a share of the margin held. ``by="year"`` adds one row per
    calendar year (needs a datetime index) before the total row.
    """
    arrays, index = _aligned(pnl=pnl, var=var)
    loss, margin = -arrays["pnl"], arrays["var"]

    def row(at) -> dict:
        # on arrays, the arithmetic of the pandas version (sums and means as pandas takes them, NaN skipped by
        # max as pandas does: filled with -inf), without a frame per year
        f_loss, f_margin = loss[at], margin[at]
        breach = f_loss > f_margin
        size = (f_loss - f_margin)[breach]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = size / f_margin[breach]
        rel[np.isinf(rel)] = np.nan
        kept = ~np.isnan(rel)
        n = f_loss.size
        out = {"observations": n, "exceptions": int(breach.sum()),
               "achieved_coverage": 1.0 - breach.sum(dtype=np.int64) / np.float64(n) if n else np.nan}
        if p is not None:
            out["target_coverage"] = 1.0 - p
        out.update({"largest_breach": float(size.max()) if size.size else 0.0,
                    "average_breach": float(size.sum() / np.float64(size.size)) if size.size else 0.0,
                    "largest_breach_pct_of_margin": float(np.where(kept, rel, -np.inf).max()) if kept.any()
                    else 0.0})
        return out

    rows, labels = [], []
    if by == "year":
        if not isinstance(index, pd.DatetimeIndex):
            raise ValueError("disclosure_table(by='year') needs pnl with a DatetimeIndex")
        years = index.year.to_numpy()
        for year in np.unique(years):
            rows.append(row(years == year))
            labels.append(str(year))
    elif by is not None:
        raise ValueError(f"by must be None or 'year', got {by!r}")
    rows.append(row(slice(None)))
    labels.append("total")
    return pd.DataFrame(rows, index=pd.Index(labels, name="period"))


@dataclass(frozen=True)
class CoverageReport:
    """Every applicable coverage/ES test of one VaR (margin) series.

    ``tests`` maps a short key to its result; for ``mpor_days > 1`` the results
    are the Bonferroni combination over the non-overlapping sub-samples (see
    :func:`backtest`) and ``subsamples`` holds each sub-sample's results.
    :meth:`headline` gives the numbers a report leads with; :meth:`to_frame`,
    :meth:`to_dict` and :meth:`summary` show the same results.
    """

    tests: dict[str, TestResult]
    disclosure: pd.DataFrame
    p: float
    mpor_days: int
    combination: str
    subsamples: dict[int, dict[str, TestResult]] = field(default_factory=dict, repr=False)
    es_p: float | None = None
    #: (observations, exceptions) of the tested VaR series, which the headline counts; the disclosure counts
    #: breaches of the margin held, which for an ES model is the ES, not that VaR (None: the disclosure's)
    counts: tuple[int, int] | None = None

    def headline(self) -> dict[str, Any]:
        """The key numbers of the backtest, as a flat dict.

        Keys: ``p`` (tail probability tested), ``mpor_days``, ``observations``,
        ``breaches``, ``expected_breaches`` (n p), ``breach_rate``,
        ``kupiec_pvalue`` (exact two-sided) and ``kupiec_direction`` ("too
        many", "too few", "as expected": a rejection with "too few" is
        over-margining), ``too_many_pvalue`` (exact one-sided P(X >= x)),
        ``christoffersen_cc_pvalue`` and ``christoffersen_ind_pvalue``
        (conditional coverage and independence, exact; NaN with fewer than 2
        observations), ``christoffersen_ind_direction`` ("clustered" when a
        breach is more likely after a breach, pi11 > pi01; "dispersed" when less;
        "" when equal or undefined: the independence test rejects either way),
        ``traffic_light_zone`` (last window),
        ``worst_window_breaches`` and ``worst_window_pvalue`` (calibrated, see
        :func:`traffic_light`). Counts are over all observations; for
        ``mpor_days > 1`` the p-values and the zone are the Bonferroni
        combinations over the sub-samples, the Kupiec direction is the one of
        the sub-sample with the smallest p-value (the one a rejection rests
        on) and the worst-window count the largest over the sub-samples.
        """
        if self.counts is not None:
            n, x = self.counts
        else:
            total = self.disclosure.loc["total"]
            n, x = int(total["observations"]), int(total["exceptions"])
        pof, tl = self.tests["pof_exact"], self.tests["traffic_light"]
        cc = self.tests.get("conditional_coverage_exact")
        ind = self.tests.get("independence_exact")
        return {"p": self.p, "mpor_days": self.mpor_days, "observations": n, "breaches": x,
                "expected_breaches": n * self.p, "breach_rate": x / n,
                "kupiec_pvalue": pof.pvalue, "kupiec_direction": pof.direction,
                "too_many_pvalue": self.tests["binomial_upper"].pvalue,
                "christoffersen_cc_pvalue": cc.pvalue if cc is not None else float("nan"),
                "christoffersen_ind_pvalue": ind.pvalue if ind is not None else float("nan"),
                "christoffersen_ind_direction": _ind_direction(ind),
                "traffic_light_zone": tl.zone, "worst_window_breaches": tl.worst_window_exceptions,
                "worst_window_pvalue": tl.worst_window_pvalue}

    def to_frame(self) -> pd.DataFrame:
        """One row per test: statistic, pvalue, df, n_obs, n_exceptions, distribution, note."""
        rows = []
        for key, r in self.tests.items():
            rows.append({"test": key, "name": r.name, "statistic": r.statistic, "pvalue": r.pvalue,
                         "df": r.df, "n_obs": r.n_obs, "n_exceptions": r.n_exceptions,
                         "distribution": r.distribution, "reject_5pct": r.reject(0.05), "note": r.note})
        return pd.DataFrame(rows).set_index("test")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the headline, every test and the disclosure table."""
        return {"p": self.p, "es_p": self.es_p, "mpor_days": self.mpor_days, "combination": self.combination,
                "headline": self.headline(),
                "tests": self.to_frame().reset_index().to_dict(orient="records"),
                "disclosure": self.disclosure.reset_index().to_dict(orient="records")}

    def summary(self) -> str:
        """Readable text: the headline, then a table (``statsmodels`` SimpleTable) of every test."""
        from statsmodels.iolib.table import SimpleTable

        frame = self.to_frame()
        data = [[r["name"] + (" (exact)" if getattr(self.tests[key], "exact", False) else ""),
                 f"{r['statistic']:.4f}", f"{r['pvalue']:.4g}",
                 "" if r["df"] is None or pd.isna(r["df"]) else str(int(r["df"])),
                 str(r["n_exceptions"]), "reject" if r["reject_5pct"] else "accept"]
                for key, r in frame.iterrows()]
        title = (f"Coverage backtest: p = {self.p:g}, MPOR = {self.mpor_days} day(s); "
                 f"{self.combination}")
        table = SimpleTable(data, headers=["test", "statistic", "p-value", "df", "exceptions", "at 5%"],
                            title=title)
        hl = self.headline()
        pof = self.tests["pof_exact"]
        tl = self.tests["traffic_light"]
        head = (f"Exceptions (loss > tested VaR) {hl['breaches']} of {hl['observations']} "
                f"({hl['breach_rate']:.2%}); expected "
                f"{hl['expected_breaches']:.4g} at p = {self.p:g}.\n"
                f"Kupiec (exact, two-sided) p = {hl['kupiec_pvalue']:.4g}: {hl['kupiec_direction']} "
                f"({pof.verdict(0.05)} at 5%); too many breaches (one-sided) p = {hl['too_many_pvalue']:.4g}; "
                f"Christoffersen cc (exact) p = {hl['christoffersen_cc_pvalue']:.4g}.\n"
                f"Traffic light (last {tl.window}) {hl['traffic_light_zone']}; worst {tl.window}-observation "
                f"window {hl['worst_window_breaches']} breaches, P(as bad under H0) = "
                f"{hl['worst_window_pvalue']:.4g}\n")
        d = self.disclosure.loc["total"]
        foot = (f"\nMargin held (CPMI-IOSCO PQD 6.5): observations {int(d['observations'])}, breaches of the "
                f"margin {int(d['exceptions'])}, achieved coverage {d['achieved_coverage']:.4%}, largest breach "
                f"{d['largest_breach']:.6g}, average breach {d['average_breach']:.6g}")
        notes = "".join(f"\n{key}: {_own_note(r.note)}" for key, r in self.tests.items() if _own_note(r.note))
        return head + table.as_text() + foot + notes

    def __str__(self) -> str:
        return self.summary()


def _run_tests(pnl: np.ndarray, var: np.ndarray, p: float, *, es, es_var, es_p: float, pit, window: int,
               seed: int) -> dict[str, TestResult]:
    """Every applicable test on one (sub-)sample of aligned arrays."""
    h = -pnl > var
    out: dict[str, TestResult] = {
        "pof": kupiec_pof(h, p),
        "pof_exact": kupiec_pof(h, p, exact=True),
        "binomial": binomial(h, p),
        "binomial_upper": binomial_upper(h, p),
        "traffic_light": traffic_light(h, p, window=window, seed=seed),
        "tuff": tuff(h, p),
    }
    if h.size >= 2:
        out["independence"] = christoffersen_independence(h)
        out["independence_exact"] = christoffersen_independence(h, exact=True)
        out["conditional_coverage"] = christoffersen_conditional_coverage(h, p)
        out["conditional_coverage_exact"] = christoffersen_conditional_coverage(h, p, exact=True)
    out["tbf"] = haas_tbf(h, p, seed=seed)
    out["tbfi"] = haas_tbfi(h, p, seed=seed)
    out["duration_weibull"] = duration_weibull(h, p, seed=seed)
    if h.size > 4 + 2:
        out["dynamic_quantile"] = dynamic_quantile(pnl, var, p, seed=seed)
    if pit is not None:
        out["berkowitz_tail"] = berkowitz_tail(pit, p)
        if pit.size > 5:
            u, c = du_escanciano(pit, es_p, seed=seed)
            out["du_escanciano_u"], out["du_escanciano_c"] = u, c
    if es is not None:
        out["mcneil_frey"] = mcneil_frey(pnl, es_var, es, seed=seed)
        # Z1/Z2 divide by the ES and match a tail law to (VaR, ES): not applicable when some ES is below its
        # VaR (no tail law has it) or is 0 (the models floor VaR and ES at 0: a book without a tail loss)
        low, zero = _es_below_var(es_var, es), es <= 0
        bad = low | zero
        z12 = _acerbi_szekely(("z1", "z2"), pnl, es_var, es, es_p, None, None, 10_000, seed) if not bad.any() \
            else None
        why = "; ".join(f"ES {what} on {int(mask.sum())} dates (first at observation {int(np.argmax(mask))})"
                        for what, mask in (("below the VaR", low), ("not positive", zero)) if mask.any())
        for i, kind in enumerate(("z1", "z2")):
            out[f"acerbi_szekely_{kind}"] = z12[i] if z12 is not None else ESTestResult(
                    name=f"Acerbi-Szekely {kind.upper()}", statistic=0.0, pvalue=1.0, n_obs=pnl.size,
                    n_exceptions=int((-pnl > es_var).sum()), distribution="simulated", kind=kind,
                    note=f"{why}: no tail law has them, not applicable")
    return out


_BONFERRONI_NOTE = "Bonferroni over {m} non-overlapping sub-samples; min sub-sample p {p:.4g}"


def _own_note(note: str) -> str:
    """A result's note without the Bonferroni preamble (which the report title states)."""
    if note.startswith(_BONFERRONI_NOTE[:15]):
        return note.split("; ", 2)[2] if note.count("; ") >= 2 else ""
    return note


def _ind_direction(ind: IndependenceResult | None) -> str:
    """Which way breaches depart from independence: "clustered" (pi11 > pi01), "dispersed" (pi11 < pi01) or ""."""
    if ind is None or not (np.isfinite(ind.pi01) and np.isfinite(ind.pi11)) or ind.pi11 == ind.pi01:
        return ""
    return "clustered" if ind.pi11 > ind.pi01 else "dispersed"


def _is_pvalue(name: str) -> bool:
    return name == "pvalue" or name.startswith("pvalue_") or name.endswith("_pvalue")


def _bonferroni(results: list[TestResult], m: int) -> TestResult:
    r"""Bonferroni combination of one test over m sub-samples.

    Every p-value field becomes ``min(1, m * min_k p_k)`` (``log_pvalue``:
    ``min(0, log m + min_k log p_k)``); the other fields are those of the
    sub-sample with the smallest p-value. For the traffic light the zone is the
    Basel zone of the combined cumulative probability
    :math:`1 - \min(1, m \min_k P(X > x_k))` (x_k the exceptions in the last
    window of sub-sample k), the worst-window count the largest over the
    sub-samples, and the plus factor NaN outside green (BCBS 1996 defines it
    for one daily series).
    """
    best = min(results, key=lambda r: r.pvalue)
    changes: dict[str, Any] = {}
    for f in fields(best):
        if _is_pvalue(f.name) and isinstance(getattr(best, f.name), float):
            changes[f.name] = min(1.0, m * min(getattr(r, f.name) for r in results))
    if isinstance(best, BinomialUpperResult):
        changes["log_pvalue"] = min(0.0, np.log(m) + min(r.log_pvalue for r in results))
    if isinstance(best, TrafficLightResult):
        upper = min(float(stats.binom.sf(r.n_exceptions, r.window, r.p)) for r in results)
        cum = float(_bonferroni_cum(upper, m))
        zone = _zone(cum)
        worst = min(results, key=lambda r: r.worst_window_pvalue)
        changes.update(zone=zone, cumulative_probability=cum,
                       plus_factor=0.0 if zone == "green" else float("nan"),
                       worst_window_exceptions=max(r.worst_window_exceptions for r in results),
                       worst_window_pvalue_se=min(1.0, m * worst.worst_window_pvalue_se))
    changes["note"] = _BONFERRONI_NOTE.format(m=m, p=best.pvalue) + (f"; {best.note}" if best.note else "")
    return replace(best, **changes)


def backtest(pnl, var, es=None, p: float = 0.01, pit=None, mpor_days: int = 1, *, es_var=None,
             es_p: float | None = None, window: int = 250, seed: int = 0, margin=None) -> CoverageReport:
    r"""Run every applicable coverage (and ES) test on one VaR/margin series.

    The one place where the full battery runs for a series: Kupiec (asymptotic
    and exact, with its direction), the one-sided binomial test of too many
    breaches, the binomial z test, the Basel traffic light with the calibrated
    worst-window p-value, TUFF, Christoffersen independence and conditional
    coverage (asymptotic and exact), Haas TBF/TBFI, the Weibull duration test,
    the dynamic quantile test; the PIT tests when ``pit`` is given and the ES
    tests when ``es`` is given.

    Parameters
    ----------
    pnl : array-like or Series of shape (n,)
        P&L over the MPOR after each forecast date (profit > 0).
    var : array-like or Series of shape (n,)
        VaR or margin (positive); a breach is ``-pnl > var``.
    es : array-like or Series of shape (n,), optional
        Expected shortfall at tail probability ``es_p`` (positive); enables
        McNeil–Frey and Acerbi–Szekely Z1/Z2.
    p : float
        Tail probability the breaches of ``var`` are tested at.
    pit : array-like or Series of shape (n,), optional
        PIT of the realised P&L under the forecast (small = loss; the engine's rank PIT
        (k + 1/2)/(N + 1) of a forecast of N scenarios, :meth:`marginlab.models.Forecast.pit`);
        enables Berkowitz (tail below p; not applicable on a PIT of exactly 0) and Du–Escanciano
        (at ``es_p``).
    mpor_days : int
        Horizon h of the P&L, in observations.
    es_var : array-like or Series of shape (n,), optional
        VaR at the ES level ``es_p`` (the threshold of the ES tests). Defaults
        to ``var`` when ``es_p`` equals ``p``; required otherwise.
    es_p : float, optional
        Tail probability of ``es`` (0.025 for ES 97.5%); defaults to ``p``.
    window : int
        Traffic-light window in observations (250).
    seed : int
        Seed of every simulated null distribution (worst window, duration tests, dynamic quantile,
        McNeil-Frey, Acerbi-Szekely, Du-Escanciano); 0 by default, as in each test.
    margin : array-like or Series of shape (n,), optional
        The margin (collateral) held, whose breaches the disclosure table counts. Defaults to ``es``
        when given (an ES margin model holds its ES), else to ``var``.

    Notes
    -----
    Disclosure: ``CoverageReport.disclosure`` (CPMI-IOSCO PQD 6.5: achieved coverage and the size of
    the uncovered exposure) and the last line of its summary count breaches of the *margin held*
    (``margin``), while the tests and the headline count exceptions of ``var``. They differ for an
    ES model, tested as its VaR at the ES level but holding its ES: the disclosure then shows no
    target coverage (NaN: an ES has no nominal coverage). ``target_coverage`` is ``1 - p`` when the
    margin is the tested ``var``.

    Pairing: Series inputs are paired by index label (a ValueError names the
    first labels that differ); arrays by position.

    Overlapping horizons (h > 1): the h-day exceptions overlap, so every test
    runs on each of the h non-overlapping sub-samples (offsets 0..h-1, every
    h-th observation, those with at least 2 observations) and the m p-values
    of a test are combined by Bonferroni, ``min(1, m * min_k p_k)``, valid
    under any dependence between sub-samples; the statistic shown is the one
    of the sub-sample with the smallest p-value. The traffic light follows the
    same rule, so its type I error is the one of a single series: its zone is
    the Basel zone of the combined cumulative probability
    :math:`1 - \min(1, m \min_k P(X > x_k))`, with x_k the exceptions in the
    last ``window`` observations of sub-sample k (equivalently: yellow when some
    sub-sample's last window has a cumulative probability of at least
    1 - 0.05/m, red at 1 - 0.0001/m). Taking one sub-sample (e.g. the first)
    would make the zone depend on an arbitrary offset; taking the worst one
    without correction would inflate the false-alarm rate about m-fold. Naive
    p-values on overlapping windows are never reported.
    """
    arrays, index = _aligned(pnl=pnl, var=var, es=es, es_var=es_var, pit=pit, margin=margin)
    pnl_a, var_a, es_a, pit_a = arrays["pnl"], arrays["var"], arrays["es"], arrays["pit"]
    p = _check_p(p)
    es_p = p if es_p is None else _check_p(es_p)
    if not isinstance(mpor_days, int | np.integer) or isinstance(mpor_days, bool) or mpor_days < 1:
        raise ValueError(f"mpor_days must be a positive integer, got {mpor_days!r}")
    exceptions(pnl_a, var_a)  # rejects negative margins, naming the position
    es_var_a = arrays["es_var"]
    if es_a is not None and es_var_a is None:
        if es_p != p:
            raise ValueError(f"es_var (the VaR at the ES level es_p = {es_p:g}) is required when es_p differs "
                             f"from p = {p:g}")
        es_var_a = var_a
    pnl_s = pd.Series(pnl_a, index=index)
    held = arrays["margin"] if arrays["margin"] is not None else es_a if es_a is not None else var_a
    # target coverage 1 - p only where the margin held is the VaR tested at p (an ES margin has none)
    is_var = held is var_a or np.array_equal(held, var_a)
    disclosure = disclosure_table(pnl_s, held, p if is_var else None,
                                  by="year" if isinstance(index, pd.DatetimeIndex) else None)
    if not is_var:
        disclosure.insert(3, "target_coverage", np.nan)
    counts = (int(pnl_a.size), int((-pnl_a > var_a).sum()))
    opts = dict(window=window, seed=seed, es_p=es_p)

    def cut(a, sl):
        return None if a is None else a[sl]

    if mpor_days == 1:
        tests = _run_tests(pnl_a, var_a, p, es=es_a, es_var=es_var_a, pit=pit_a, **opts)
        return CoverageReport(tests=tests, disclosure=disclosure, p=p, mpor_days=1, es_p=es_p,
                              combination="single sample (non-overlapping 1-day horizon)", counts=counts)
    subs: dict[int, dict[str, TestResult]] = {}
    for k in subsample_offsets(pnl_a.size, mpor_days):
        sl = slice(k, None, mpor_days)
        subs[k] = _run_tests(pnl_a[sl], var_a[sl], p, es=cut(es_a, sl), es_var=cut(es_var_a, sl),
                             pit=cut(pit_a, sl), **opts)
    if not subs:
        raise ValueError(f"mpor_days = {mpor_days}: no non-overlapping sub-sample has 2 observations "
                         f"(n = {pnl_a.size})")
    m = len(subs)
    first = next(iter(subs.values()))
    combined = {key: _bonferroni([s[key] for s in subs.values() if key in s], m) for key in first}
    return CoverageReport(tests=combined, disclosure=disclosure, p=p, mpor_days=int(mpor_days), es_p=es_p,
                          combination=f"Bonferroni over {m} non-overlapping sub-samples", subsamples=subs,
                          counts=counts)
