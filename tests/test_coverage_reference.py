"""Coverage statistics against independent references (tests/results/ names each source)."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from conftest import RESULTS
from marginlab.validation import coverage as cv
from scipy import stats

MATLAB = json.loads((RESULTS / "matlab_varbacktest.json").read_text())


def matlab_hits() -> np.ndarray:
    """A hit sequence with MATLAB's example counts: n=1043, 57 failures, first at 58,
    transitions N00=932, N01=53, N10=53, N11=4 (4 runs of two hits, 49 single hits)."""
    n = MATLAB["observations"]
    h = np.zeros(n, dtype=bool)
    pos = MATLAB["first_failure"] - 1
    runs = [2] * 4 + [1] * 49
    for length in runs:
        h[pos:pos + length] = True
        pos += length + 17
    assert pos < n
    return h


def test_matlab_sequence_has_the_published_counts():
    h = matlab_hits()
    r = cv.christoffersen_independence(h)
    t = MATLAB["transitions"]
    assert (r.n00, r.n01, r.n10, r.n11) == (t["N00"], t["N01"], t["N10"], t["N11"])
    assert h.sum() == MATLAB["failures"] and np.argmax(h) + 1 == MATLAB["first_failure"]


@pytest.mark.parametrize("fn, key, fields", [
    (lambda h: cv.kupiec_pof(h, 0.05), "pof", ("lr", "pvalue")),
    (lambda h: cv.binomial(h, 0.05), "bin", ("z", "pvalue")),
    (lambda h: cv.tuff(h, 0.05), "tuff", ("lr", "pvalue")),
    (lambda h: cv.christoffersen_independence(h), "cci", ("lr", "pvalue")),
    (lambda h: cv.christoffersen_conditional_coverage(h, 0.05), "cc", ("lr", "pvalue")),
])
def test_against_matlab_varbacktest(fn, key, fields):
    stat, pvalue = fn(matlab_hits())
    ref = MATLAB[key]
    assert stat == pytest.approx(ref[fields[0]], abs=5e-5)
    assert pvalue == pytest.approx(ref[fields[1]], abs=5e-5)


def test_traffic_light_against_matlab():
    r = cv.traffic_light(matlab_hits(), p=0.05, window=1043)
    ref = MATLAB["tl"]
    assert r.zone == ref["zone"] and r.plus_factor == ref["increase"]
    assert r.cumulative_probability == pytest.approx(ref["probability"], abs=5e-6)
    assert r.pvalue == pytest.approx(ref["type1"], abs=5e-6)


def test_tbf_decomposition_and_degrees_of_freedom_match_matlab():
    # MATLAB: TBF = POF + TBFI with df x + 1 and x; check our convention reproduces its p-values.
    ref = MATLAB
    assert ref["tbf"]["lr"] - ref["pof"]["lr"] == pytest.approx(ref["tbfi"]["lr"], abs=2e-3)
    assert stats.chi2.sf(ref["tbf"]["lr"], ref["failures"] + 1) == pytest.approx(ref["tbf"]["pvalue"], rel=1e-3)
    assert stats.chi2.sf(ref["tbfi"]["lr"], ref["failures"]) == pytest.approx(ref["tbfi"]["pvalue"], rel=1e-3)
    h = matlab_hits()
    tbf, tbfi, pof = cv.haas_tbf(h, 0.05), cv.haas_tbfi(h, 0.05), cv.kupiec_pof(h, 0.05)
    assert tbf.statistic == pytest.approx(tbfi.statistic + pof.statistic)
    assert (tbf.df, tbfi.df) == (58, 57)
    # closed form of one duration term: d = 58 for the first failure equals the TUFF ratio
    assert cv.haas_tbfi(np.eye(1, 58, 57, dtype=bool).ravel(), 0.05).statistic == pytest.approx(
        MATLAB["tuff"]["lr"], abs=5e-5)


def test_basel_traffic_light_table():
    table = pd.read_csv(RESULTS / "bcbs_1996_traffic_light.csv", comment="#")
    for row in table.itertuples():
        h = np.zeros(250, dtype=bool)
        h[:row.exceptions] = True
        r = cv.traffic_light(h, p=0.01, window=250)
        assert round(100 * r.cumulative_probability, 2) == pytest.approx(row.cumulative_pct, abs=0.006)
        assert r.zone == row.zone
        assert r.plus_factor == pytest.approx(row.plus_factor)


def test_traffic_light_blocks_and_rolling():
    h = np.zeros(750, dtype=bool)
    h[260:266] = True  # 6 in the second block
    idx = pd.date_range("2020-01-01", periods=750, tz="UTC")
    r = cv.traffic_light(pd.Series(h, index=idx), p=0.01, window=250)
    assert list(r.blocks["zone"]) == ["green", "yellow", "green"]
    assert r.blocks["exceptions"].tolist() == [0, 6, 0]
    assert len(r.rolling) == 501 and r.rolling["exceptions"].max() == 6
    assert r.rolling["end"].iloc[0] == idx[249]


def test_independence_equals_g_test_of_scipy():
    rng = np.random.default_rng(3)
    for _ in range(20):
        h = rng.random(400) < 0.08
        r = cv.christoffersen_independence(h)
        table = np.array([[r.n00, r.n01], [r.n10, r.n11]])
        g, pval, dof, _ = stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
        assert r.statistic == pytest.approx(g, rel=1e-10, abs=1e-12)
        assert r.pvalue == pytest.approx(pval, rel=1e-8)


def test_exact_pvalues_equal_brute_force_enumeration():
    n, p = 12, 0.1
    seqs = np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)
    prob = np.array([p ** s.sum() * (1 - p) ** (n - s.sum()) for s in seqs])
    lr_uc = np.array([cv.kupiec_pof(s, p).statistic for s in seqs])
    lr_cc = np.array([cv.christoffersen_conditional_coverage(s, p).statistic for s in seqs])
    lr_ind = np.array([cv.christoffersen_independence(s).statistic for s in seqs])
    counts = seqs.sum(axis=1)
    for i in [1, 5, 37, 300, 1365, 2730, 4000]:
        s = seqs[i]
        assert cv.kupiec_pof(s, p, exact=True).pvalue == pytest.approx(
            prob[lr_uc >= lr_uc[i] - 1e-9].sum(), rel=1e-9)
        assert cv.christoffersen_conditional_coverage(s, p, exact=True).pvalue == pytest.approx(
            prob[lr_cc >= lr_cc[i] - 1e-9].sum(), rel=1e-9)
        same = counts == counts[i]
        if 0 < counts[i] < n:
            assert cv.christoffersen_independence(s, exact=True).pvalue == pytest.approx(
                np.mean(lr_ind[same] >= lr_ind[i] - 1e-9), rel=1e-9)


def test_exact_cc_against_simulation_at_250_days():
    """The exact law vs 200,000 simulated 250-day samples at p = 1% (where chi2 is poor)."""
    n, p = 250, 0.01
    h = np.zeros(n, dtype=bool)
    h[[40, 41, 200]] = True
    exact = cv.christoffersen_conditional_coverage(h, p, exact=True)
    rng = np.random.default_rng(7)
    sims = rng.random((200_000, n)) < p
    x = sims.sum(axis=1)
    prev, cur = sims[:, :-1], sims[:, 1:]
    n01 = (~prev & cur).sum(1)
    n10 = (prev & ~cur).sum(1)
    n11 = (prev & cur).sum(1)
    n00 = (n - 1) - n01 - n10 - n11
    lr = cv._lr_uc(x, n, p) + cv._lr_ind(n00, n01, n10, n11)
    sim_p = np.mean(lr >= exact.statistic - 1e-9)
    se = np.sqrt(sim_p * (1 - sim_p) / sims.shape[0])
    assert abs(exact.pvalue - sim_p) < 4 * se
    assert abs(exact.pvalue - exact.pvalue_asymptotic) > 10 * se  # chi2(2) is visibly off here


def test_arrangement_counts_sum_to_binomial_coefficient():
    from scipy.special import comb
    for n, x in [(10, 3), (30, 1), (30, 29), (50, 25), (250, 4)]:
        log_count = cv._arrangements(n, x)[0]
        assert np.exp(np.logaddexp.reduce(log_count)) == pytest.approx(comb(n, x, exact=True), rel=1e-9)


def test_duration_weibull_against_scipy_censored_fit():
    rng = np.random.default_rng(11)
    h = rng.random(1500) < 0.03
    h[0] = False
    h[-1] = False
    r = cv.duration_weibull(h)
    d = np.array(r.durations, dtype=float)
    censored = np.zeros(d.size, dtype=bool)
    censored[0] = censored[-1] = True
    data = stats.CensoredData(uncensored=d[~censored], right=d[censored])
    c, loc, scale = stats.weibull_min.fit(data, floc=0)
    ll_w = stats.weibull_min.logpdf(d[~censored], c, 0, scale).sum() + stats.weibull_min.logsf(
        d[censored], c, 0, scale).sum()
    scale_e = stats.expon.fit(data, floc=0)[1]
    ll_e = stats.expon.logpdf(d[~censored], 0, scale_e).sum() + stats.expon.logsf(d[censored], 0, scale_e).sum()
    assert r.weibull_b == pytest.approx(c, rel=1e-3)
    assert r.statistic == pytest.approx(2 * (ll_w - ll_e), abs=1e-4)


def test_dynamic_quantile_against_statsmodels_ols():
    import statsmodels.api as sm
    rng = np.random.default_rng(5)
    n, p, k = 600, 0.05, 4
    var = 1.645 * (1 + 0.3 * rng.random(n))
    pnl = rng.standard_normal(n) * 1.1
    r = cv.dynamic_quantile(pnl, var, p, lags=k)
    hit = (-pnl > var).astype(float) - p
    X = np.column_stack([np.ones(n - k)] + [hit[k - j:n - j] for j in range(1, k + 1)] + [var[k:]])
    fit = sm.OLS(hit[k:], X).fit()
    assert r.statistic == pytest.approx(np.sum(fit.fittedvalues ** 2) / (p * (1 - p)), rel=1e-9)
    assert np.allclose(r.coefficients, fit.params)
    assert r.df == k + 2


def test_berkowitz_tail_against_scipy_censored_normal_fit():
    rng = np.random.default_rng(2)
    p = 0.05
    z = rng.standard_t(4, size=2000) * 0.9
    pit = stats.norm.cdf(z)
    r = cv.berkowitz_tail(pit, p)
    z = stats.norm.ppf(np.clip(pit, 1e-300, 1 - 1e-16))
    c = stats.norm.ppf(p)
    tail = z[z < c]
    data = stats.CensoredData(uncensored=tail, right=np.full((z >= c).sum(), c))
    mu, sigma = stats.norm.fit(data)
    ll1 = stats.norm.logpdf(tail, mu, sigma).sum() + (z >= c).sum() * stats.norm.logsf(c, mu, sigma)
    ll0 = stats.norm.logpdf(tail).sum() + (z >= c).sum() * stats.norm.logsf(c)
    assert r.statistic == pytest.approx(2 * (ll1 - ll0), rel=1e-5)
    assert r.df == 2


def test_du_escanciano_against_statsmodels_acf():
    from statsmodels.tsa.stattools import acovf
    rng = np.random.default_rng(9)
    p, m = 0.025, 5
    u = rng.random(1000)
    unc, cond = cv.du_escanciano(u, p, lags=m)
    h = (p - u) / p * (u <= p)
    gamma = acovf(h - p / 2, adjusted=True, demean=False, fft=False, nlag=m)
    rho = gamma[1:] / gamma[0]
    assert cond.statistic == pytest.approx(len(u) * np.sum(rho ** 2), rel=1e-10)
    assert unc.statistic == pytest.approx(np.sqrt(1000) * (h.mean() - p / 2) / np.sqrt(p * (1 / 3 - p / 4)))


def test_du_escanciano_conditional_p_value_is_the_monte_carlo_one_under_the_null():
    """The conditional p-value is (1 + #{C* >= C}) / (1 + N) over the null samples with 2+ tail observations, each
    C* recomputed here with statsmodels' autocovariances from the documented draws. The chi2(5) approximation of
    the paper rejected 9.5% of correct models at the 5% level (n = 1,000, p = 2.5%); the Monte Carlo p-value
    rejects ~5% (checked on 200 samples). Without 2+ tail observations H is constant, every rho_j was 1 and
    C = n x lags rejected at p < 1e-10 (the report flagged correct VaR models with no breach): now not applicable."""
    from statsmodels.tsa.stattools import acovf

    def c_stat(u, p, m):
        h = (p - u) / p * (u <= p)
        gamma = acovf(h - p / 2, adjusted=True, demean=False, fft=False, nlag=m)
        return len(u) * np.sum((gamma[1:] / gamma[0]) ** 2)

    p, m, n, n_sim = 0.025, 5, 300, 60
    u = np.random.default_rng(3).random(n)
    _, cond = cv.du_escanciano(u, p, lags=m, n_sim=n_sim, seed=11)
    draws = np.random.default_rng([11, n, m]).random((n_sim, n))
    null = np.array([c_stat(row, p, m) for row in draws if (row <= p).sum() >= 2])
    assert cond.statistic == pytest.approx(c_stat(u, p, m), rel=1e-10)
    assert cond.pvalue == (1 + np.sum(null >= cond.statistic)) / (1 + null.size)
    assert "chi2(5) p-value" in cond.note

    rng = np.random.default_rng(5)
    rejected = [cv.du_escanciano(rng.random(500), p)[1].pvalue < 0.05 for _ in range(200)]
    assert 0.01 <= np.mean(rejected) <= 0.10

    no_tail = cv.du_escanciano(np.random.default_rng(0).uniform(0.02, 1, 90), 0.01)[1]
    assert no_tail.pvalue == 1.0 and not no_tail.reject() and "not applicable" in no_tail.note
    at_p = np.random.default_rng(1).uniform(0.03, 1, 500)
    at_p[[100, 300]] = 0.025  # a PIT of k/N scenarios can equal p exactly: H_t = 0 there (reviewer: C = n x lags)
    assert "not applicable" in cv.du_escanciano(at_p, 0.025)[1].note


def test_mcneil_frey_t_ratio_equals_scipy_and_bootstrap_close_to_t():
    rng = np.random.default_rng(4)
    n = 5000
    pnl = -np.abs(rng.standard_normal(n)) * 2.0
    var = np.full(n, 1.0)
    es = np.full(n, 2.0)
    r = cv.mcneil_frey(pnl, var, es, n_boot=4000)
    e = -pnl[-pnl > var] - 2.0
    t = stats.ttest_1samp(e, 0.0, alternative="greater")
    assert r.statistic == pytest.approx(t.statistic, rel=1e-12)
    assert abs(r.pvalue - t.pvalue) < 0.03


def test_acerbi_szekely_closed_forms_and_size():
    pnl = np.array([-3.0, 0.5, -1.0, -2.5, 1.0])
    var = np.full(5, 2.0)
    es = np.full(5, 2.5)
    # breaches: losses 3.0 and 2.5 -> Z1 = 1 - (3/2.5 + 2.5/2.5)/2 ; Z2 = 1 - (2.2)/(5*0.2)
    z1 = cv.acerbi_szekely(pnl, var, es, 0.2, kind="z1", n_sims=100)
    z2 = cv.acerbi_szekely(pnl, var, es, 0.2, kind="z2", n_sims=100)
    assert z1.statistic == pytest.approx(1 - 2.2 / 2)
    assert z2.statistic == pytest.approx(1 - 2.2 / 1.0)
    # under a correct normal model Z2 has mean ~0; a too-small ES is rejected
    rng = np.random.default_rng(1)
    p, n = 0.025, 1000
    q = stats.norm.ppf(p)
    var_n, es_n = np.full(n, -q), np.full(n, stats.norm.pdf(q) / p)
    pnl_n = rng.standard_normal(n)
    good = cv.acerbi_szekely(pnl_n, var_n, es_n, p, kind="z2", n_sims=2000)
    bad = cv.acerbi_szekely(pnl_n * 1.6, var_n, es_n, p, kind="z2", n_sims=2000)
    assert good.pvalue > 0.05 and bad.pvalue < 0.01
    z3 = cv.acerbi_szekely(pnl_n * 1.6, var_n, es_n, p, kind="z3", n_sims=500)
    assert z3.statistic < 0 and z3.pvalue < 0.01


def test_acerbi_szekely_sparse_simulation_has_the_law_of_the_dense_one():
    """Z1/Z2 under H0 drawn exception by exception (binomial counts, uniform tail draws) match, in law, the
    brute-force simulation of every scale x N(0, 1) draw (two-sample KS at 10,000 paths each)."""
    from marginlab.validation.coverage import _as_z, _ScaledTail, _simulated_z

    rng = np.random.default_rng(5)
    n, p = 300, 0.025
    q = stats.norm.ppf(p)
    var = rng.uniform(1.0, 3.0, n)
    scale = var / -q
    es = scale * stats.norm.pdf(q) / p * rng.uniform(0.9, 1.1, n)  # ES off the model's by +-10%
    dense_pnl = scale * rng.standard_normal((10_000, n))
    for kind in ("z1", "z2"):
        dense = _as_z(dense_pnl, var, es, p, kind)
        sparse = _simulated_z(np.random.default_rng(9), p, 10_000, (kind,), _ScaledTail(stats.norm(), p, scale / es))[0]
        assert stats.ks_2samp(dense, sparse).pvalue > 0.01, kind
        assert sparse.mean() == pytest.approx(dense.mean(), abs=4 * dense.std() / 100)


def test_berkowitz_tail_of_a_correct_discrete_forecast_is_not_set_by_a_clip_constant():
    """A reviewer: a PIT of exactly 0 (a loss beyond every scenario of an empirical forecast) was clipped to 1e-300,
    z = -37, and the statistic (6,747-8,128, p = 0) came from that constant. A correct 1,000-scenario forecast:
    PITs on the 1/1000 grid, 5 of them 0 (a correct model sees a loss beyond all 1,000 scenarios on ~0.1% of dates)."""
    rng = np.random.default_rng(5)
    n = 1000
    pit = np.floor(rng.random(579) * (n + 1)) / n  # k/N, k uniform on 0..N: the rank of a correct forecast
    pit = np.minimum(pit, 1.0)
    pit[[10, 100, 200, 300, 400]] = 0.0
    r = cv.berkowitz_tail(pit, 0.01, n_scenarios=n)
    assert r.pvalue > 1e-6 and np.isfinite(r.statistic)
    # the mid-distribution PIT (Czado, Gneiting and Held 2009): (k + 1/2) / (N + 1), checked against scipy's fit
    u = (pit * n + 0.5) / (n + 1)
    assert u.min() == pytest.approx(0.5 / 1001) and u.max() < 1
    z, c = stats.norm.ppf(u), stats.norm.ppf(0.01)
    tail = z[z < c]
    mu, sigma = stats.norm.fit(stats.CensoredData(uncensored=tail, right=np.full((z >= c).sum(), c)))
    ll1 = stats.norm.logpdf(tail, mu, sigma).sum() + (z >= c).sum() * stats.norm.logsf(c, mu, sigma)
    ll0 = stats.norm.logpdf(tail).sum() + (z >= c).sum() * stats.norm.logsf(c)
    assert r.statistic == pytest.approx(2 * (ll1 - ll0), rel=1e-5)
    # without the number of scenarios a PIT of 0 makes the test not applicable, with the reason
    na = cv.berkowitz_tail(pit, 0.01)
    assert np.isnan(na.pvalue) and np.isnan(na.statistic) and not na.reject(1e-6)
    zeros = int((pit == 0).sum())
    assert zeros >= 5 and na.note.startswith(f"not applicable: {zeros} PIT(s) of exactly 0 (losses beyond every")
    # PITs inside (0, 1) (a continuous forecast) are tested as before
    inner = np.clip(pit, 0.5 / n, 1 - 0.5 / n)
    assert np.isfinite(cv.berkowitz_tail(inner, 0.01).pvalue)
    with pytest.raises(ValueError, match="n_scenarios"):
        cv.berkowitz_tail(pit, 0.01, n_scenarios=0)
    # the drill-down's table says so, not "accept" (a NaN p-value is no acceptance)
    from marginlab.reports.sections import _coverage_tests

    pnl = np.r_[-5.0, np.random.default_rng(1).normal(size=300)]
    rows = _coverage_tests(cv.backtest(pnl, np.full(301, 2.3), p=0.01, pit=np.r_[0.0, np.full(300, 0.5)]))
    berkowitz = next(r for r in rows if r["test"] == "Berkowitz tail")
    assert berkowitz["reject_5pct"] == "n/a" and berkowitz["note"].startswith("not applicable")


def test_forecast_pit_is_the_rank_pit_of_the_realisation_among_the_scenarios():
    """Forecast.pit is (k + 1/2)/(N + 1), k the scenarios with a loss at or above the realised loss (the rank
    histogram of Anderson 1996 / Hamill 2001 as a PIT): never 0, even on a loss beyond every scenario (it was k/N = 0,
    where the Berkowitz test's normal quantile is infinite). Weighted: (W_ge + w/2)/(W + w), w = W/N."""
    import marginlab.models as mm

    fc = mm.Forecast(margin=0.0, losses=np.arange(1000.0))
    assert fc.pit(-2000.0) == 0.5 / 1001  # the realised loss 2,000 is above all 1,000 scenarios: k = 0
    assert fc.pit(2000.0) == 1000.5 / 1001  # a profit beyond every scenario: k = N
    assert fc.pit(-500.0) == 500.5 / 1001  # losses 500..999 are >= 500: k = 500 (a tie counts)
    assert np.isnan(fc.pit(np.nan)) and np.isnan(mm.Forecast(margin=1.0).pit(0.0))
    w = mm.Forecast(margin=0.0, losses=np.array([1.0, 2.0, 3.0, 4.0]), weights=np.array([0.1, 0.2, 0.3, 0.4]))
    assert w.pit(-2.5) == pytest.approx((0.3 + 0.4 + 0.25 / 2) / (1.0 + 0.25), abs=1e-15)  # = 0.66
    assert w.pit(-9.0) == pytest.approx(0.125 / 1.25, abs=1e-15) and w.pit(9.0) == pytest.approx(1.125 / 1.25)


def test_berkowitz_tail_does_not_reject_a_correct_scenario_forecast_on_the_engines_pit():
    """Size: a correct 1,000-scenario model over 1,000 dates (scenarios and realisation iid from one Student t(4)
    law), its PITs from Forecast.pit as the engine computes them: the Berkowitz tail test rejects at 1% in at most
    1 of 20 seeds (binomial(20, 1%): P(X >= 2) = 1.7%). With PITs k/N a loss beyond every scenario (a date in ~1,000
    for a correct model) gave PIT 0: clipped to 1e-300 the test rejected, then it was not applicable."""
    import marginlab.models as mm

    n_scen, n_dates, pvalues = 1000, 1000, []
    for seed in range(20):
        rng = np.random.default_rng([2026, seed])
        scen = rng.standard_t(4, size=(n_dates, n_scen))
        real = rng.standard_t(4, size=n_dates)
        pit = np.array([mm.Forecast(margin=0.0, losses=scen[t]).pit(-real[t]) for t in range(n_dates)])
        assert pit.min() >= 0.5 / (n_scen + 1) and pit.max() <= 1 - 0.5 / (n_scen + 1)
        pvalues.append(cv.berkowitz_tail(pit, 0.01).pvalue)
    pvalues = np.array(pvalues)
    assert np.isfinite(pvalues).all() and (pvalues >= 0.01).sum() >= 19, pvalues
