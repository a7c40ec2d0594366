"""Null distributions of the simulated coverage/ES tests: their size under H0 and their building blocks.

The Acerbi-Szekely default null matches each date's VaR AND ES (a per-date Student t); the duration and
dynamic-quantile tests take Monte Carlo p-values under iid Bernoulli(p) hits. Sizes are checked on seeded
samples against a binomial band of three standard deviations around 5%.
"""

import numpy as np
import pandas as pd
import pytest
from marginlab.validation import coverage as cv
from scipy import integrate, stats


def _band(n_samples: int, level: float = 0.05) -> tuple[float, float]:
    sd = np.sqrt(level * (1 - level) / n_samples)
    return level - 3 * sd, level + 3 * sd


def _t_es(nu: float, p: float) -> tuple[float, float]:
    """VaR and ES at p of scipy's t(nu), ES by numerical integration (independent of the closed form)."""
    d = stats.t(nu)
    var = -d.ppf(p)
    es = -integrate.quad(lambda u: d.ppf(u), 0, p, limit=200)[0] / p
    return var, es


def test_acerbi_szekely_default_null_has_nominal_size_for_a_correct_fat_tailed_es_model():
    """t(3) losses with their true 2.5% VaR and ES (ES/VaR 1.58, the normal's 1.19): a correct model.

    A normal null scaled to the VaR rejected it in 99.5% (Z1) and 45% (Z2) of samples at 5%."""
    nu, p, n, samples = 3, 0.025, 500, 200
    var, es = _t_es(nu, p)
    pnl = stats.t(nu).rvs((samples, n), random_state=np.random.default_rng(3))
    lo, hi = _band(samples)
    for kind in ("z1", "z2"):
        rej = np.mean([cv.acerbi_szekely(row, np.full(n, var), np.full(n, es), p, kind=kind, n_sims=300,
                                         seed=s).pvalue < 0.05 for s, row in enumerate(pnl)])
        assert lo <= rej <= hi, (kind, rej)


@pytest.mark.parametrize("nu", [1.5, 2.2, 3.0, 4.0, 7.5, 30.0, 400.0])
def test_t_shape_solves_the_es_over_var_ratio_of_scipys_t(nu):
    p = 0.025
    var, es = _t_es(nu, p)
    solved = cv._t_shape(np.array([es / var]), p)[0]
    assert solved == pytest.approx(nu, rel=1e-6)
    var_s, es_s = _t_es(solved, p)
    assert es_s / var_s == pytest.approx(es / var, rel=1e-9)
    assert cv._t_es_over_var(nu, p) == pytest.approx(es / var, rel=1e-9)


def test_t_shape_clamps_to_the_normal_and_to_the_lower_bound():
    p = 0.01
    normal = stats.norm.pdf(stats.norm.ppf(p)) / p / -stats.norm.ppf(p)
    nu = cv._t_shape(np.array([1.0, 1.1, normal, 5000.0]), p)
    assert np.isinf(nu[:3]).all() and nu[3] == cv.AS_SHAPE_BOUNDS[0]


@pytest.mark.parametrize("ratio", [1.0, 1.1, 1.3, 2.0, 2000.0])
def test_matched_tail_gives_the_forecast_var_and_es_exactly(ratio):
    """P(L > VaR) = p and E[L | L > VaR] = ES on every date, also where nu is clamped (1.0, 1.1, 2000)."""
    p = 0.025
    var = np.array([2.0])
    es = var * ratio
    nu, c0, c1 = cv._matched_tail(var, es, p)
    tail = cv._MatchedTail(p, nu, c0, c1)
    # E[loss / ES | exception] = integral over the exception's tail probability v of the quantile
    mean = integrate.quad(lambda v: tail(np.zeros(1, dtype=int), np.array([v]))[0], 0, 1, limit=400,
                          points=[1e-6, 1e-3])[0]
    assert mean == pytest.approx(1.0, rel=1e-6)
    assert tail(np.zeros(1, dtype=int), np.array([1.0]))[0] * es[0] == pytest.approx(var[0], rel=1e-12)


def test_acerbi_szekely_names_the_date_where_es_is_below_var():
    idx = pd.date_range("2024-01-01", periods=5)
    var = pd.Series(2.0, idx)
    es = pd.Series([2.5, 2.5, 1.9, 2.5, 2.5], idx)
    with pytest.raises(ValueError, match="es: below var at date 2024-01-03"):
        cv.acerbi_szekely(pd.Series(0.0, idx), var, es, 0.2)
    # an explicit dist keeps its own null (scaled to the VaR): no check of ES against VaR
    assert np.isfinite(cv.acerbi_szekely(pd.Series(0.0, idx), var, es, 0.2, dist=stats.norm(), n_sims=50).pvalue)
