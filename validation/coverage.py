r"""Coverage and Expected-Shortfall backtests on exception series.

Pure functions usable on any VaR/margin series. Every test returns a frozen
dataclass that unpacks as ``(statistic, pvalue)`` and also carries ``n_obs``,
``n_exceptions``, ``df`` where it applies and what else the test has.

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

* Overlapping windows: for an MPOR of h > 1 days the h-day exceptions overlap
  and are autocorrelated by construction. :func:`backtest` then runs every test
  on each of the h non-overlapping sub-samples (offsets 0..h-1, every h-th
  observation) and combines their p-values with the Bonferroni rule
  ``min(1, h * min_k p_k)``, valid under any dependence between sub-samples.

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
CPMI-IOSCO (2015), "Public quantitative disclosure standards for CCPs", 6.5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
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
    "traffic_light",
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
    """Kupiec POF result; ``pvalue`` is exact when ``exact`` is True."""

    p: float
    expected: float
    exception_rate: float
    pvalue_asymptotic: float
    exact: bool = False


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
    """Basel traffic light on the last window, per block and for rolling windows.

    ``statistic`` is the number of exceptions in the last window, ``pvalue`` the
    probability of at least that many (the type I error of rejecting).
    """

    zone: str
    cumulative_probability: float
    plus_factor: float
    window: int
    blocks: pd.DataFrame = field(repr=False)
    rolling: pd.DataFrame = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class DurationResult(TestResult):
    """Duration-based tests (TUFF, Haas TBF/TBFI, Weibull)."""

    durations: tuple[int, ...] = ()
    first_failure: int | None = None
    weibull_b: float | None = None
    applicable: bool = True


@dataclass(frozen=True, kw_only=True)
class DQResult(TestResult):
    """Engle–Manganelli dynamic quantile test with the regression coefficients."""

    lags: int
    coefficients: tuple[float, ...]


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
    ndarray of bool or Series of bool (index kept when ``pnl`` is a Series).
    """
    pnl_a, var_a = _as_array(pnl, "pnl"), _as_array(var, "var")
    _same_length(pnl=pnl_a, var=var_a)
    if (var_a < 0).any():
        raise ValueError(f"var: negative values at {_labels(var, np.flatnonzero(var_a < 0))} "
                         "(VaR and margin are positive amounts)")
    hits = -pnl_a > var_a
    if isinstance(pnl, pd.Series):
        return pd.Series(hits, index=pnl.index, name="exception")
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
    return KupiecResult(name="Kupiec POF (LR_uc)", statistic=lr, pvalue=pvalue, df=1, n_obs=n,
                        n_exceptions=x, p=p, expected=n * p, exception_rate=x / n,
                        pvalue_asymptotic=p_asym, exact=exact,
                        distribution="exact binomial" if exact else "chi2")


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
    return BinomialResult(name="Binomial", statistic=float(z), pvalue=pvalue, n_obs=n, n_exceptions=x,
                          p=p, expected=n * p, pvalue_exact=float(exact.pvalue),
                          pvalue_exact_greater=float(stats.binom.sf(x - 1, n, p)), distribution="normal")


def _zone(cum: float) -> str:
    return "green" if cum < 0.95 else ("yellow" if cum < 0.9999 else "red")


def _plus_factor(x: int, p: float, window: int, zone: str) -> float:
    if zone == "green":
        return 0.0
    if np.isclose(p, 0.01) and window == 250:
        return BASEL_PLUS_FACTORS.get(x, 1.0)
    return float("nan")


def traffic_light(hits, p: float = 0.01, window: int = 250) -> TrafficLightResult:
    """Basel (BCBS 1996) traffic light.

    The zone of a window with x exceptions follows the binomial cumulative
    probability P(X <= x) under Binomial(window, p): green below 0.95, yellow
    below 0.9999, red otherwise. The plus factor is the BCBS (1996) Table 2 value
    for the Basel setting (p = 0.01, 250 days) and NaN for other settings (0 in
    green). Returns the last window (or the whole sample when shorter), each
    non-overlapping block of ``window`` observations and every rolling window.
    """
    h = _as_hits(hits)
    p = _check_p(p)
    if not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
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
    rolling = pd.DataFrame(columns=["end", "exceptions", "cumulative_probability", "zone"])
    if h.size >= window:
        counts = np.convolve(h.astype(int), np.ones(window, dtype=int), mode="valid")
        cums = stats.binom.cdf(counts, window, p)
        rolling = pd.DataFrame({"end": index[window - 1:], "exceptions": counts,
                                "cumulative_probability": cums,
                                "zone": [_zone(c) for c in cums]})
    note = "" if h.size >= window else f"sample shorter than window: last {w} observations used"
    return TrafficLightResult(
        name="Basel traffic light", statistic=float(x), pvalue=float(stats.binom.sf(x - 1, w, p)),
        n_obs=w, n_exceptions=x, df=None, distribution="binomial", zone=zone,
        cumulative_probability=cum, plus_factor=_plus_factor(x, p, w, zone), window=w,
        blocks=pd.DataFrame(blocks), rolling=rolling, note=note)


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


def _durations(h: np.ndarray) -> np.ndarray:
    """Return the times between exceptions (the first counted from the start)."""
    t = np.flatnonzero(h) + 1
    return np.diff(np.concatenate(([0], t)))


def haas_tbfi(hits, p: float) -> DurationResult:
    r"""Haas (2001) time-between-failures independence test.

    :math:`LR_{TBFI} = \sum_{i=1}^{x} LR(d_i) \sim \chi^2_x`, the TUFF ratio of every
    duration: d_1 is the time to the first exception and d_i the days between
    exceptions i - 1 and i. Without an exception the single duration is taken as
    n + 1 (df 1), as for TUFF. Matches MATLAB ``varbacktest.tbfi``.
    """
    h = _as_hits(hits)
    p = _check_p(p)
    x = int(h.sum())
    d = _durations(h) if x else np.array([h.size + 1])
    lr = float(np.sum(np.maximum(_geometric_lr(d, p), 0.0)))
    df = max(x, 1)
    return DurationResult(name="Haas TBFI", statistic=lr, pvalue=float(stats.chi2.sf(lr, df)), df=df,
                          n_obs=h.size, n_exceptions=x, durations=tuple(int(v) for v in d),
                          note="" if x else "no exception: duration set to n + 1")


def haas_tbf(hits, p: float) -> DurationResult:
    r"""Haas (2001) time-between-failures mixed test.

    :math:`LR_{TBF} = LR_{POF} + LR_{TBFI} \sim \chi^2_{x+1}` (frequency plus
    independence of the durations), as MATLAB ``varbacktest.tbf``.
    """
    tbfi = haas_tbfi(hits, p)
    pof = kupiec_pof(hits, p)
    lr = pof.statistic + tbfi.statistic
    df = tbfi.df + 1
    return DurationResult(name="Haas TBF", statistic=lr, pvalue=float(stats.chi2.sf(lr, df)), df=df,
                          n_obs=tbfi.n_obs, n_exceptions=tbfi.n_exceptions, durations=tbfi.durations,
                          note=tbfi.note)


def _weibull_profile(b: float, d: np.ndarray, censored: np.ndarray) -> float:
    """Weibull log-likelihood maximised over a, for shape b (hazard a^b b D^(b-1))."""
    n_u = float((~censored).sum())
    log_s = special.logsumexp(b * np.log(d))  # log sum D^b, overflow-safe
    return n_u * (np.log(n_u) - log_s) + n_u * np.log(b) + (b - 1) * np.sum(np.log(d[~censored])) - n_u


def duration_weibull(hits) -> DurationResult:
    r"""Christoffersen and Pelletier (2004) duration-based independence test.

    Durations D_i between exceptions have a Weibull law with hazard
    :math:`\lambda(D) = a^b b D^{b-1}`; H0 (memoryless, independent exceptions)
    is b = 1. The first duration is censored when the sample does not start
    with an exception and the last one (days after the last exception) is
    censored when it does not end with one. :math:`LR = 2[\ln L(\hat a,\hat b) -
    \ln L(\tilde a, 1)] \sim \chi^2_1`. The shape is profiled over
    b in [1e-3, 1e3]; with no uncensored duration the test does not apply
    (statistic 0, p-value 1, ``applicable=False``).
    """
    h = _as_hits(hits)
    n, x = h.size, int(h.sum())
    if x == 0:
        return DurationResult(name="Weibull duration", statistic=0.0, pvalue=1.0, df=1, n_obs=n,
                              n_exceptions=0, applicable=False, note="no exception: no duration")
    t = np.flatnonzero(h) + 1
    d = list(np.diff(np.concatenate(([0], t))).astype(float))
    censored = [not h[0]] + [False] * (len(d) - 1)
    if not h[-1]:
        d.append(float(n - t[-1]))
        censored.append(True)
    d_arr, c_arr = np.asarray(d), np.asarray(censored)
    if (~c_arr).sum() == 0:
        return DurationResult(name="Weibull duration", statistic=0.0, pvalue=1.0, df=1, n_obs=n,
                              n_exceptions=x, applicable=False, durations=tuple(int(v) for v in d),
                              note="no uncensored duration: test not applicable")
    ll_exp = _weibull_profile(1.0, d_arr, c_arr)
    res = optimize.minimize_scalar(lambda lb: -_weibull_profile(np.exp(lb), d_arr, c_arr),
                                   bounds=(np.log(1e-3), np.log(1e3)), method="bounded",
                                   options={"xatol": 1e-10})
    ll_w = max(-res.fun, ll_exp)
    lr = max(2.0 * (ll_w - ll_exp), 0.0)
    return DurationResult(name="Weibull duration", statistic=float(lr), pvalue=float(stats.chi2.sf(lr, 1)),
                          df=1, n_obs=n, n_exceptions=x, durations=tuple(int(v) for v in d),
                          weibull_b=float(np.exp(res.x)))


# --------------------------------------------------------------------------- regression / density tests

def dynamic_quantile(pnl, var, p: float, lags: int = 4) -> DQResult:
    r"""Engle and Manganelli (2004) dynamic quantile test.

    With :math:`Hit_t = 1[loss_t > VaR_t] - p` and regressors
    :math:`X_t = (1, Hit_{t-1}, \dots, Hit_{t-K}, VaR_t)`,

    .. math::
        DQ = \frac{Hit' X (X'X)^{-1} X' Hit}{p(1-p)} \sim \chi^2_{K+2}.

    The first K observations are used only as lags. A rank-deficient X (e.g. no
    exception at all) is handled with the pseudo-inverse and df = rank(X).
    """
    pnl_a, var_a = _as_array(pnl, "pnl"), _as_array(var, "var")
    _same_length(pnl=pnl_a, var=var_a)
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
    fitted = X @ beta
    dq = float(fitted @ fitted / (p * (1 - p)))
    df = int(np.linalg.matrix_rank(X))
    return DQResult(name="Engle-Manganelli DQ", statistic=dq, pvalue=float(stats.chi2.sf(dq, df)),
                    df=df, n_obs=int(y.size), n_exceptions=int((hit[lags:] > 0).sum()), lags=lags,
                    coefficients=tuple(float(b) for b in beta))


def _censored_normal_loglik(mu, sigma, z_tail, n_censored, c):
    ll = np.sum(stats.norm.logpdf(z_tail, mu, sigma))
    if n_censored:
        ll += n_censored * stats.norm.logsf(c, mu, sigma)
    return ll


def berkowitz_tail(pit, p: float) -> TestResult:
    r"""Berkowitz (2001) censored likelihood-ratio test of the loss tail.

    ``pit`` are the forecast CDF values of the realised P&L (small = loss). With
    :math:`z_t = \Phi^{-1}(pit_t)` and threshold :math:`c = \Phi^{-1}(p)`,
    observations with z < c enter through the normal density and the others are
    censored at c. :math:`LR = -2[\ln L(0,1) - \ln L(\hat\mu,\hat\sigma)] \sim \chi^2_2`.
    With fewer than two tail observations the unrestricted fit is not
    identified: the test is reported with ``note`` and p-value from the LR with
    sigma fixed at 1 (df 1).
    """
    u = _as_array(pit, "pit")
    p = _check_p(p)
    if ((u < 0) | (u > 1)).any():
        raise ValueError("pit: values must lie in [0, 1]")
    # 0 and 1 are clipped: a PIT of exactly 0 (loss beyond every scenario) enters at
    # Phi^-1(1e-300); values above p are censored anyway.
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
    pnl_a, var_a, es_a = _as_array(pnl, "pnl"), _as_array(var, "var"), _as_array(es, "es")
    _same_length(pnl=pnl_a, var=var_a, es=es_a)
    sig = np.ones_like(pnl_a) if sigma is None else _as_array(sigma, "sigma")
    _same_length(pnl=pnl_a, sigma=sig)
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


def acerbi_szekely(pnl, var, es, p: float, kind: str = "z2", dist=None, scale=None,
                   n_sims: int = 10_000, seed: int = 0) -> ESTestResult:
    r"""Acerbi and Szekely (2014) ES backtests Z1, Z2, Z3 (positive-loss convention).

    .. math::
        Z_1 = 1 - \frac{1}{N_T}\sum_t \frac{L_t I_t}{ES_t},\qquad
        Z_2 = 1 - \frac{1}{T p}\sum_t \frac{L_t I_t}{ES_t},\qquad
        Z_3 = 1 - \frac{1}{T}\sum_t \frac{\widehat{ES}_T(U)_t}{E_V[\widehat{ES}_T(V)_t]}

    with :math:`I_t = 1[L_t > VaR_t]`, :math:`N_T=\sum I_t`. E[Z] = 0 under H0 and
    negative values mean ES is too small; the p-value is P(Z_sim <= Z) from
    ``n_sims`` simulated P&L paths under H0: :math:`pnl_t = scale_t\, \epsilon_t`
    with :math:`\epsilon \sim` ``dist`` (a frozen scipy distribution, standard
    normal by default). Without ``scale`` it is implied from the VaR,
    :math:`scale_t = VaR_t / (-F^{-1}(p))`. For Z3, :math:`\widehat{ES}_T` is the
    empirical ES of the T rank-ordered draws :math:`F_t^{-1}(U_s)` and its
    expectation is simulated with the same generator.
    """
    pnl_a, var_a, es_a = _as_array(pnl, "pnl"), _as_array(var, "var"), _as_array(es, "es")
    _same_length(pnl=pnl_a, var=var_a, es=es_a)
    p = _check_p(p)
    if (es_a <= 0).any():
        raise ValueError("es: values must be positive")
    if kind not in ("z1", "z2", "z3"):
        raise ValueError(f"kind must be 'z1', 'z2' or 'z3', got {kind!r}")
    dist = stats.norm() if dist is None else dist
    q = float(dist.ppf(p))
    scale_a = var_a / (-q) if scale is None else _as_array(scale, "scale")
    n = pnl_a.size
    rng = np.random.default_rng(seed)
    sims = scale_a * dist.ppf(rng.random((n_sims, n)))
    hit = -pnl_a > var_a
    if kind == "z3":
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
    else:
        stat = float(_as_z(pnl_a, var_a, es_a, p, kind))
        sim_stats = _as_z(sims, var_a, es_a, p, kind)
    pvalue = float((np.sum(sim_stats <= stat) + 1) / (sim_stats.size + 1))
    return ESTestResult(name=f"Acerbi-Szekely {kind.upper()}", statistic=float(stat), pvalue=pvalue,
                        n_obs=n, n_exceptions=int(hit.sum()), distribution="simulated", kind=kind,
                        n_sims=int(sim_stats.size))


def du_escanciano(pit, p: float, lags: int = 5) -> tuple[TestResult, TestResult]:
    r"""Du and Escanciano (2017) unconditional and conditional ES backtests.

    Cumulative violations :math:`H_t = (p - u_t)/p \cdot 1[u_t \le p]` have mean p/2
    and variance :math:`p(1/3 - p/4)` under H0.
    Unconditional: :math:`U = \sqrt{n}(\bar H - p/2)/\sqrt{p(1/3-p/4)} \sim N(0,1)`
    (two-sided). Conditional: :math:`C = n\sum_{j=1}^{m}\hat\rho_j^2 \sim \chi^2_m`
    with :math:`\hat\rho_j = \hat\gamma_j/\hat\gamma_0`,
    :math:`\hat\gamma_j = \frac{1}{n-j}\sum_{t=j+1}^{n}(H_t - p/2)(H_{t-j} - p/2)`.

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
    e = h - p / 2
    gamma0 = np.mean(e * e)
    rho = np.array([np.sum(e[j:] * e[:-j]) / (n - j) for j in range(1, lags + 1)]) / gamma0
    stat_c = float(n * np.sum(rho ** 2))
    cond = TestResult(name="Du-Escanciano conditional", statistic=stat_c,
                      pvalue=float(stats.chi2.sf(stat_c, lags)), df=lags, n_obs=n, n_exceptions=x)
    return uncond, cond


# --------------------------------------------------------------------------- disclosure & report

def disclosure_table(pnl, var, p: float | None = None, by: str | None = None) -> pd.DataFrame:
    """CPMI-IOSCO PQD 6.5-style back-testing disclosure.

    Columns: observations, exceptions, achieved coverage (1 - exceptions /
    observations), target coverage (1 - p) when given, largest and average
    breach size (loss - margin on exception days, in money) and the largest
    breach as a share of the margin held. ``by="year"`` adds one row per
    calendar year (needs a datetime index) before the total row.
    """
    pnl_a, var_a = _as_array(pnl, "pnl"), _as_array(var, "var")
    _same_length(pnl=pnl_a, var=var_a)
    frame = pd.DataFrame({"loss": -pnl_a, "margin": var_a},
                         index=pnl.index if isinstance(pnl, pd.Series) else None)

    def row(f: pd.DataFrame) -> dict:
        breach = f["loss"] > f["margin"]
        size = (f["loss"] - f["margin"])[breach]
        rel = (size / f["margin"][breach]).replace([np.inf, -np.inf], np.nan)
        out = {"observations": len(f), "exceptions": int(breach.sum()),
               "achieved_coverage": 1.0 - breach.mean() if len(f) else np.nan}
        if p is not None:
            out["target_coverage"] = 1.0 - p
        out.update({"largest_breach": float(size.max()) if len(size) else 0.0,
                    "average_breach": float(size.mean()) if len(size) else 0.0,
                    "largest_breach_pct_of_margin": float(rel.max()) if rel.notna().any() else 0.0})
        return out

    rows, labels = [], []
    if by == "year":
        if not isinstance(frame.index, pd.DatetimeIndex):
            raise ValueError("disclosure_table(by='year') needs pnl with a DatetimeIndex")
        for year, f in frame.groupby(frame.index.year):
            rows.append(row(f))
            labels.append(str(year))
    elif by is not None:
        raise ValueError(f"by must be None or 'year', got {by!r}")
    rows.append(row(frame))
    labels.append("total")
    return pd.DataFrame(rows, index=pd.Index(labels, name="period"))


@dataclass(frozen=True)
class CoverageReport:
    """Every applicable coverage/ES test of one VaR (margin) series.

    ``tests`` maps a short key to its result; for ``mpor_days > 1`` the results
    are the Bonferroni combination over the non-overlapping sub-samples and
    ``subsamples`` holds each sub-sample's results.
    """

    tests: dict[str, TestResult]
    disclosure: pd.DataFrame
    p: float
    mpor_days: int
    combination: str
    subsamples: dict[int, dict[str, TestResult]] = field(default_factory=dict, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per test: statistic, pvalue, df, n_obs, n_exceptions, distribution, note."""
        rows = []
        for key, r in self.tests.items():
            rows.append({"test": key, "name": r.name, "statistic": r.statistic, "pvalue": r.pvalue,
                         "df": r.df, "n_obs": r.n_obs, "n_exceptions": r.n_exceptions,
                         "distribution": r.distribution, "reject_5pct": r.reject(0.05), "note": r.note})
        return pd.DataFrame(rows).set_index("test")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the tests and the disclosure table."""
        return {"p": self.p, "mpor_days": self.mpor_days, "combination": self.combination,
                "tests": self.to_frame().reset_index().to_dict(orient="records"),
                "disclosure": self.disclosure.reset_index().to_dict(orient="records")}

    def summary(self):
        """Readable table (``statsmodels`` SimpleTable) of every test."""
        from statsmodels.iolib.table import SimpleTable

        frame = self.to_frame()
        data = [[r["name"], f"{r['statistic']:.4f}", f"{r['pvalue']:.4g}",
                 "" if r["df"] is None or pd.isna(r["df"]) else str(int(r["df"])),
                 str(r["n_exceptions"]), "reject" if r["reject_5pct"] else "accept"]
                for _, r in frame.iterrows()]
        title = (f"Coverage backtest: p = {self.p:g}, MPOR = {self.mpor_days} day(s); "
                 f"{self.combination}")
        table = SimpleTable(data, headers=["test", "statistic", "p-value", "df", "exceptions", "at 5%"],
                            title=title)
        d = self.disclosure.loc["total"]
        foot = (f"\nObservations {int(d['observations'])}, exceptions {int(d['exceptions'])}, "
                f"achieved coverage {d['achieved_coverage']:.4%}, largest breach {d['largest_breach']:.6g}, "
                f"average breach {d['average_breach']:.6g}")
        return table.as_text() + foot

    def __str__(self) -> str:
        return self.summary()


def _run_tests(pnl, var, es, p, pit) -> dict[str, TestResult]:
    hits = exceptions(pnl, var)
    h = np.asarray(hits)
    out: dict[str, TestResult] = {
        "pof": kupiec_pof(h, p),
        "pof_exact": kupiec_pof(h, p, exact=True),
        "binomial": binomial(h, p),
        "traffic_light": traffic_light(h, p),
        "tuff": tuff(h, p),
    }
    if h.size >= 2:
        out["independence"] = christoffersen_independence(h)
        out["independence_exact"] = christoffersen_independence(h, exact=True)
        out["conditional_coverage"] = christoffersen_conditional_coverage(h, p)
        out["conditional_coverage_exact"] = christoffersen_conditional_coverage(h, p, exact=True)
    out["tbf"] = haas_tbf(h, p)
    out["tbfi"] = haas_tbfi(h, p)
    out["duration_weibull"] = duration_weibull(h)
    if h.size > 4 + 2:
        out["dynamic_quantile"] = dynamic_quantile(np.asarray(pnl, float), np.asarray(var, float), p)
    if pit is not None:
        out["berkowitz_tail"] = berkowitz_tail(pit, p)
        if len(pit) > 5:
            u, c = du_escanciano(pit, p)
            out["du_escanciano_u"], out["du_escanciano_c"] = u, c
    if es is not None:
        out["mcneil_frey"] = mcneil_frey(np.asarray(pnl, float), np.asarray(var, float), np.asarray(es, float))
        out["acerbi_szekely_z1"] = acerbi_szekely(pnl, var, es, p, kind="z1")
        out["acerbi_szekely_z2"] = acerbi_szekely(pnl, var, es, p, kind="z2")
    return out


def backtest(pnl, var, es=None, p: float = 0.01, pit=None, mpor_days: int = 1) -> CoverageReport:
    """Run every applicable coverage (and ES) test on one VaR/margin series.

    Parameters
    ----------
    pnl : array-like or Series of shape (n,)
        P&L over the MPOR after each forecast date (profit > 0).
    var : array-like of shape (n,)
        VaR or margin (positive).
    es : array-like of shape (n,), optional
        Expected shortfall (positive); enables McNeil–Frey and Acerbi–Szekely.
    p : float
        Tail probability of ``var``.
    pit : array-like of shape (n,), optional
        Forecast CDF at the realised P&L; enables Berkowitz and Du–Escanciano.
    mpor_days : int
        Horizon h of the P&L. For h > 1 the tests run on each of the h
        non-overlapping sub-samples and p-values are combined by Bonferroni,
        ``min(1, h * min_k p_k)``; statistics reported are those of the
        sub-sample with the smallest p-value. Naive p-values on overlapping
        windows are never reported.
    """
    pnl_a, var_a = _as_array(pnl, "pnl"), _as_array(var, "var")
    _same_length(pnl=pnl_a, var=var_a)
    p = _check_p(p)
    es_a = None if es is None else _as_array(es, "es")
    pit_a = None if pit is None else _as_array(pit, "pit")
    if es_a is not None:
        _same_length(pnl=pnl_a, es=es_a)
    if pit_a is not None:
        _same_length(pnl=pnl_a, pit=pit_a)
    if not isinstance(mpor_days, int | np.integer) or mpor_days < 1:
        raise ValueError(f"mpor_days must be a positive integer, got {mpor_days!r}")
    pnl_s = pnl if isinstance(pnl, pd.Series) else pd.Series(pnl_a)
    disclosure = disclosure_table(pnl_s, var_a, p, by="year" if isinstance(pnl_s.index, pd.DatetimeIndex)
                                  else None)
    if mpor_days == 1:
        tests = _run_tests(pnl_a, var_a, es_a, p, pit_a)
        return CoverageReport(tests=tests, disclosure=disclosure, p=p, mpor_days=1,
                              combination="single sample (non-overlapping 1-day horizon)")
    subs: dict[int, dict[str, TestResult]] = {}
    for k in range(mpor_days):
        sl = slice(k, None, mpor_days)
        if pnl_a[sl].size < 2:
            continue
        subs[k] = _run_tests(pnl_a[sl], var_a[sl], None if es_a is None else es_a[sl], p,
                             None if pit_a is None else pit_a[sl])
    h = len(subs)
    combined: dict[str, TestResult] = {}
    for key in subs[0]:
        results = [s[key] for s in subs.values() if key in s]
        best = min(results, key=lambda r: r.pvalue)
        pval = min(1.0, h * best.pvalue)
        base = {f.name: getattr(best, f.name) for f in fields(TestResult)}
        base.update(pvalue=pval, note=(f"Bonferroni over {h} non-overlapping sub-samples; "
                                       f"min sub-sample p {best.pvalue:.4g}"))
        combined[key] = TestResult(**base)
    return CoverageReport(tests=combined, disclosure=disclosure, p=p, mpor_days=int(mpor_days),
                          combination=f"Bonferroni over {h} non-overlapping sub-samples", subsamples=subs)
