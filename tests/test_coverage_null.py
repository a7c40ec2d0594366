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


@pytest.mark.parametrize("n, p", [(500, 0.01), (1000, 0.025)])
def test_duration_tests_have_nominal_size_under_iid_bernoulli_hits(n, p):
    """Haas TBFI/TBF and the Weibull duration test reject ~5% of iid Bernoulli(p) samples at 5%.

    Their chi2 p-values rejected 9.8%/8.8%/11.6% (n = 500, p = 1%) and 12.9%/13.5%/7.1% (n = 1,000,
    p = 2.5%) of 1,000 such samples (TBFI/TBF/Weibull)."""
    samples = 300
    rng = np.random.default_rng(7)
    lo, hi = _band(samples)
    rej = {"tbfi": [], "tbf": [], "weibull": []}
    for _ in range(samples):
        h = rng.random(n) < p
        rej["tbfi"].append(cv.haas_tbfi(h, p).pvalue < 0.05)
        rej["tbf"].append(cv.haas_tbf(h, p).pvalue < 0.05)
        w = cv.duration_weibull(h, p)
        if w.applicable:
            rej["weibull"].append(w.pvalue < 0.05)
    for name, r in rej.items():
        lo, hi = _band(len(r))
        assert lo <= np.mean(r) <= hi, (name, np.mean(r))


def test_dynamic_quantile_has_nominal_size_given_the_var():
    """DQ with a time-varying VaR and iid Bernoulli(1%) exceptions, n = 500: the chi2(6) p-value rejected
    18.0% of 1,000 samples at 5%; the Monte Carlo one given the VaR rejects ~5%."""
    n, p, samples = 500, 0.01, 300
    rng = np.random.default_rng(8)
    rej = []
    for s in range(samples):
        scale = np.exp(rng.normal(0, 0.3, n))
        pnl = rng.standard_normal(n) * scale
        var = -stats.norm.ppf(p) * scale  # the true VaR: exceptions iid Bernoulli(p)
        rej.append(cv.dynamic_quantile(pnl, var, p, n_sim=500, seed=s).pvalue < 0.05)
    lo, hi = _band(samples)
    assert lo <= np.mean(rej) <= hi, np.mean(rej)


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.SingularMatrixWarning")
def test_dynamic_quantile_batch_statistic_against_statsmodels_ols():
    """The batched DQ (sparse counts, normal equations) of simulated rows equals statsmodels OLS row by row,
    rank-deficient rows included (no exception; exceptions only in the first lags)."""
    import statsmodels.api as sm

    rng = np.random.default_rng(4)
    n, p, k = 400, 0.02, 4
    var = 2.0 * np.exp(rng.normal(0, 0.2, n))
    h = rng.random((6, n)) < np.array([0.0, 0.02, 0.05, 0.1, 0.3, 0.0])[:, None]
    h[5, :3] = True
    rows, cols = np.nonzero(h)
    got = cv._dq_stats(rows, cols, 6, n, var, p, k)
    for i in range(6):
        hit = h[i] - p
        X = np.column_stack([np.ones(n - k)] + [hit[k - j:n - j] for j in range(1, k + 1)] + [var[k:]])
        fitted = sm.OLS(hit[k:], X).fit().fittedvalues
        assert got[i] == pytest.approx(fitted @ fitted / (p * (1 - p)), rel=1e-9, abs=1e-12), i


def test_monte_carlo_nulls_are_seeded_cached_and_read_only():
    h = np.zeros(300, dtype=bool)
    h[[20, 25, 140, 290]] = True
    a, b = cv.haas_tbf(h, 0.01), cv.haas_tbf(h, 0.01)
    assert a == b and a.distribution == "monte carlo" and "chi2(5) p-value" in a.note
    null = cv._haas_null(300, 0.01, 2000, 0)[0]
    assert not null.flags.writeable
    with pytest.raises(ValueError):
        null.setflags(write=True)
    assert not cv._weibull_null(300, 0.01, 2000, 0).flags.writeable
    # the Monte Carlo p-value: (1 + #{null >= stat}) / (1 + N), ties counted
    assert cv._mc_pvalue(np.array([1.0, 2.0, 3.0]), 2.0) == pytest.approx(3 / 4)
    assert cv._mc_pvalue(np.array([1.0, 2.0, 3.0]), 9.0) == pytest.approx(1 / 4)


def test_bernoulli_positions_are_iid_bernoulli():
    """Geometric gaps give Bernoulli(p) sequences: the count per row is Binomial(n, p) (chi-square test on
    its distribution) and the positions uniform; a row whose first gaps stay in the sample is extended."""
    rows, cols = cv._bernoulli_positions(np.random.default_rng(0), 4000, 200, 0.05)
    counts = np.bincount(rows, minlength=4000)
    k = np.arange(4, 18)
    observed = np.array([(counts == v).sum() for v in k] + [((counts < 4) | (counts >= 18)).sum()])
    expected = 4000 * np.append(stats.binom.pmf(k, 200, 0.05), 1 - stats.binom.pmf(k, 200, 0.05).sum())
    assert stats.chisquare(observed, expected).pvalue > 0.001
    assert stats.kstest(cols / 200, "uniform").pvalue > 0.001
    r, c = cv._bernoulli_positions(np.random.default_rng(1), 50, 1000, 0.5)  # extensions needed
    assert (np.diff(c)[np.diff(r) == 0] > 0).all() and c.max() < 1000
    assert abs(c.size / 50_000 - 0.5) < 0.01


def test_backtest_reports_acerbi_szekely_not_applicable_where_es_is_below_var():
    n, p = 400, 0.025
    rng = np.random.default_rng(2)
    var = np.full(n, 2.0)
    es = np.full(n, 2.4)
    es[[10, 50]] = 1.5
    rep = cv.backtest(rng.standard_normal(n), var, es=es, p=p, es_p=p)
    z2 = rep.tests["acerbi_szekely_z2"]
    assert z2.pvalue == 1.0 and "ES below the VaR on 2 dates (first at observation 10)" in z2.note
    assert np.isfinite(rep.tests["mcneil_frey"].pvalue)


def test_backtest_z1_and_z2_from_one_simulation_equal_separate_calls():
    n, p = 500, 0.025
    rng = np.random.default_rng(6)
    var = np.full(n, 2.0) * np.exp(rng.normal(0, 0.2, n))
    es = var * rng.uniform(1.3, 1.7, n)
    pnl = rng.standard_t(4, n) * var / 3
    rep = cv.backtest(pnl, var, es=es, p=p, es_p=p)
    for kind in ("z1", "z2"):
        assert rep.tests[f"acerbi_szekely_{kind}"] == cv.acerbi_szekely(pnl, var, es, p, kind=kind)


@pytest.mark.parametrize("n", [250, 500, 1000])
def test_haas_tests_without_an_exception_keep_the_whole_statistic(n):
    """No exception: TBFI is the LR of one censored duration n + 1 (= TUFF's); np.bincount of no rows is int64 and
    truncated it to a whole number (1.0 for 1.1886 at n = 250, a too-lenient p; found by a reviewer)."""
    z = np.zeros(n, dtype=bool)
    expected = cv.tuff(z, 0.01).statistic
    assert expected == pytest.approx(float(cv._geometric_lr(n + 1, 0.01)), rel=1e-14) and expected % 1 != 0
    assert cv.haas_tbfi(z, 0.01).statistic == pytest.approx(expected, rel=1e-14)
    assert cv.haas_tbf(z, 0.01).statistic == pytest.approx(cv.kupiec_pof(z, 0.01).statistic + expected, rel=1e-14)


def test_weibull_shape_at_the_upper_bound_is_flagged():
    """The golden-section search ends within 3e-14 of log(10): that is the bound (at_bound, b = 10, the note), as
    before the Monte Carlo change (it returned 9.9999999999999, at_bound False; found by a reviewer)."""
    h = np.zeros(199, dtype=bool)
    h[[14, 105, 180]] = True
    r = cv.duration_weibull(h, 0.01)
    assert r.weibull_b == 10.0 and r.at_bound and "the statistic depends on the bound" in r.note
    assert r.statistic == pytest.approx(8.31917988094591, rel=1e-10)
