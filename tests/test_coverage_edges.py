"""Edge cases where other tools fail, conventions and bad input."""

import numpy as np
import pandas as pd
import pytest
from marginlab.validation import coverage as cv
from scipy import stats


def test_exceptions_are_strict_and_keep_index():
    idx = pd.date_range("2021-01-01", periods=3, tz="UTC")
    pnl = pd.Series([-1.0, -1.0000001, 5.0], index=idx)
    hits = cv.exceptions(pnl, [1.0, 1.0, 1.0])
    assert hits.tolist() == [False, True, False]  # a loss equal to VaR is not a breach
    assert hits.index.equals(idx)


def test_zero_exceptions_finite_and_correct():
    h = np.zeros(250, dtype=bool)
    lr, pval = cv.kupiec_pof(h, 0.01)
    assert lr == pytest.approx(-2 * 250 * np.log(0.99))
    assert pval == pytest.approx(stats.chi2.sf(lr, 1))
    assert tuple(cv.christoffersen_independence(h)) == (0.0, 1.0)
    assert cv.christoffersen_independence(h, exact=True).pvalue == 1.0
    # exact: P(LR_uc(X) >= LR_uc(0)) under Binomial(250, 1%), summed directly
    k = np.arange(251)
    lr_k = np.array([cv.kupiec_pof(np.arange(250) < kk, 0.01).statistic for kk in k])
    expected = stats.binom.pmf(k, 250, 0.01)[lr_k >= lr - 1e-9].sum()
    assert cv.kupiec_pof(h, 0.01, exact=True).pvalue == pytest.approx(expected, rel=1e-9)
    # with no exception LR_ind = 0, so the exact LR_cc law reduces to LR_uc's plus the LR_ind mass
    cc = cv.christoffersen_conditional_coverage(h, 0.01, exact=True)
    assert cc.statistic == pytest.approx(lr) and expected <= cc.pvalue <= 1
    assert cv.haas_tbfi(h, 0.01).df == 1 and np.isfinite(cv.haas_tbf(h, 0.01).statistic)
    assert not cv.duration_weibull(h).applicable


def test_all_exceptions():
    h = np.ones(100, dtype=bool)
    lr, pval = cv.kupiec_pof(h, 0.01)
    assert lr == pytest.approx(-2 * 100 * np.log(0.01)) and pval < 1e-100 and pval > 0
    assert tuple(cv.christoffersen_independence(h)) == (0.0, 1.0)
    assert np.isfinite(cv.christoffersen_conditional_coverage(h, 0.01).statistic)


def test_long_sample_no_underflow_tiny_pvalues():
    h = np.zeros(20_000, dtype=bool)
    h[::25] = True  # 4% exceptions against 1%
    r = cv.kupiec_pof(h, 0.01)
    assert 0 < r.pvalue < 1e-200
    assert r.pvalue == pytest.approx(np.exp(stats.chi2.logsf(r.statistic, 1)), rel=1e-10)
    ex = cv.kupiec_pof(h, 0.01, exact=True)
    assert 0 < ex.pvalue < 1e-200
    assert cv.christoffersen_conditional_coverage(h, 0.01, exact=True).pvalue >= 0


def test_breach_on_first_and_last_day():
    h = np.zeros(100, dtype=bool)
    h[0] = h[-1] = True
    assert cv.tuff(h, 0.01).first_failure == 1
    r = cv.christoffersen_independence(h)
    assert (r.n00, r.n01, r.n10, r.n11) == (97, 1, 1, 0)
    w = cv.duration_weibull(h)
    # Christoffersen-Pelletier / rugarch: the breach on day 1 starts the first duration; no "day 0"
    assert w.durations == (99,) and w.censored == (False,)
    assert not w.applicable and (w.statistic, w.pvalue) == (0.0, 1.0)  # one duration: shape not identified


@pytest.mark.parametrize("positions, durations, censored, applicable", [
    ([50], (51, 49), (True, True), False),
    ([10, 60], (11, 50, 39), (True, False, True), True),
    ([0], (99,), (True,), False),
    ([99], (100,), (True,), False),
    ([0, 30, 99], (30, 69), (False, False), True),
])
def test_duration_test_with_one_or_two_durations(positions, durations, censored, applicable):
    h = np.zeros(100, dtype=bool)
    h[positions] = True
    r = cv.duration_weibull(h)
    assert (r.durations, r.censored, r.applicable) == (durations, censored, applicable)
    assert np.isfinite(r.statistic) and 0 <= r.pvalue <= 1


def test_exact_independence_single_exception():
    # one exception: the 248 interior positions share one LR, the 2 edge positions another (smaller)
    h = np.zeros(250, dtype=bool)
    h[100] = True
    assert cv.christoffersen_independence(h, exact=True).pvalue == pytest.approx(248 / 250)
    h = np.zeros(250, dtype=bool)
    h[0] = True
    assert cv.christoffersen_independence(h, exact=True).pvalue == pytest.approx(1.0)


def test_results_are_frozen_and_unpack():
    h = np.zeros(50, dtype=bool)
    h[5] = True
    r = cv.kupiec_pof(h, 0.05)
    stat, pval = r
    assert (stat, pval) == (r.statistic, r.pvalue)
    with pytest.raises(AttributeError):
        r.statistic = 1.0


@pytest.mark.parametrize("call, message", [
    (lambda: cv.kupiec_pof([0, 1, np.nan], 0.01), "NaN"),
    (lambda: cv.kupiec_pof([], 0.01), "empty"),
    (lambda: cv.kupiec_pof([0, 1], 0.6), r"p \(tail probability\) must be in \(0, 0.5\]"),
    (lambda: cv.kupiec_pof([0, 1], 0.0), r"must be in \(0, 0.5\]"),
    (lambda: cv.exceptions([1.0, 2.0], [1.0]), "different lengths"),
    (lambda: cv.exceptions([1.0, 2.0], [1.0, -1.0]), "negative"),
    (lambda: cv.kupiec_pof([0, 2], 0.01), "0/1"),
    (lambda: cv.traffic_light([0, 1], 0.01, window=0), "window"),
    (lambda: cv.backtest([1.0, 2.0], [1.0, 1.0], mpor_days=0), "mpor_days"),
    (lambda: cv.traffic_light([0, 1], 0.01, n_sims=0), "n_sims"),
    (lambda: cv.traffic_light([0, 1], 0.01, n_sims=True), "n_sims"),
    (lambda: cv.backtest([1.0, 2.0], [1.0, 1.0], es=[2.0, 2.0], es_p=0.7), r"p \(tail probability\)"),
    (lambda: cv.mcneil_frey([1.0, 2.0], [1.0, 1.0], None), "es: no data"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_nan_error_names_the_date():
    idx = pd.date_range("2021-01-01", periods=3, tz="UTC")
    with pytest.raises(ValueError, match="2021-01-02"):
        cv.exceptions(pd.Series([1.0, np.nan, 2.0], index=idx), [1.0, 1.0, 1.0])


def test_disclosure_table():
    idx = pd.date_range("2021-12-30", periods=4, tz="UTC")
    pnl = pd.Series([-3.0, 1.0, -1.5, -0.5], index=idx)
    margin = np.array([2.0, 2.0, 1.0, 1.0])
    t = cv.disclosure_table(pnl, margin, p=0.01, by="year")
    assert list(t.index) == ["2021", "2022", "total"]
    total = t.loc["total"]
    assert total["exceptions"] == 2 and total["achieved_coverage"] == 0.5
    assert total["largest_breach"] == 1.0 and total["average_breach"] == 0.75
    assert total["largest_breach_pct_of_margin"] == 0.5


def test_disclosure_of_an_es_margin_counts_breaches_of_the_margin_held():
    """PQD 6.5 discloses the coverage of the collateral held: for an ES margin, losses above the ES, not above the
    VaR at the ES level that the headline tests (which stays as it is)."""
    idx = pd.date_range("2021-01-01", periods=8, tz="UTC")
    loss = np.array([1.0, 2.5, 3.5, 0.0, -1.0, 2.2, 4.0, 0.5])
    var, es = np.full(8, 2.0), np.full(8, 3.0)
    for mpor in (1, 2):
        rep = cv.backtest(pd.Series(-loss, index=idx), var, es=es, p=0.25, mpor_days=mpor)
        total = rep.disclosure.loc["total"]
        # margin breaches: 3.5 and 4.0 above 3.0 -> sizes 0.5 and 1.0; VaR exceptions: 2.5, 3.5, 2.2, 4.0
        assert (total["exceptions"], total["observations"]) == (2, 8)
        assert total["achieved_coverage"] == 0.75 and np.isnan(total["target_coverage"])
        assert total["largest_breach"] == 1.0 and total["average_breach"] == 0.75
        assert total["largest_breach_pct_of_margin"] == pytest.approx(1.0 / 3.0)
        assert (rep.headline()["breaches"], rep.headline()["observations"]) == (4, 8)
        assert "breaches of the margin 2," in rep.summary()
    # a VaR margin (no es): the margin is the tested VaR and has a target coverage
    total = cv.backtest(-loss, var, p=0.25).disclosure.loc["total"]
    assert total["exceptions"] == 4 and total["target_coverage"] == 0.75
    # an explicit margin (e.g. an overlay above the tested VaR)
    total = cv.backtest(-loss, var, p=0.25, margin=np.full(8, 3.6)).disclosure.loc["total"]
    assert total["exceptions"] == 1 and total["largest_breach"] == pytest.approx(0.4)


def test_es_of_zero_makes_the_es_tests_not_applicable():
    """Models floor VaR and ES at 0 (a book with no tail loss): Z1/Z2 (which divide by the ES) are not applicable,
    the rest of the battery runs."""
    rep = cv.backtest(np.full(300, 0.1), np.zeros(300), es=np.zeros(300), p=0.025)
    for kind in ("z1", "z2"):
        r = rep.tests[f"acerbi_szekely_{kind}"]
        assert r.pvalue == 1.0 and "ES not positive on 300 dates" in r.note and "not applicable" in r.note
    es = np.r_[np.zeros(3), np.full(297, 2.0)]
    rep = cv.backtest(-np.r_[np.zeros(3), np.full(297, 1.0)], np.r_[np.zeros(3), np.full(297, 1.5)], es=es, p=0.025)
    assert "ES not positive on 3 dates (first at observation 0)" in rep.tests["acerbi_szekely_z2"].note
    assert rep.headline()["breaches"] == 0


def test_backtest_report_and_overlapping_windows():
    rng = np.random.default_rng(0)
    idx = pd.date_range("2020-01-01", periods=1000, tz="UTC")
    pnl = pd.Series(rng.standard_normal(1000), index=idx)
    var = np.full(1000, 2.326)
    es = np.full(1000, 2.665)
    pit = stats.norm.cdf(pnl.to_numpy())
    rep = cv.backtest(pnl, var, es=es, p=0.01, pit=pit)
    frame = rep.to_frame()
    for key in ["pof", "pof_exact", "independence_exact", "conditional_coverage_exact", "traffic_light",
                "tbf", "tbfi", "duration_weibull", "dynamic_quantile", "berkowitz_tail", "du_escanciano_u",
                "mcneil_frey", "acerbi_szekely_z2"]:
        assert key in frame.index
    text = rep.summary()
    assert "Kupiec POF" in text and "achieved coverage" in text
    # 10-day overlapping P&L: Bonferroni over 10 sub-samples of 100
    pnl10 = pnl.rolling(10).sum().dropna()
    rep10 = cv.backtest(pnl10, np.full(len(pnl10), 2.326 * np.sqrt(10)), p=0.01, mpor_days=10)
    assert rep10.mpor_days == 10 and len(rep10.subsamples) == 10
    sub_p = [s["pof"].pvalue for s in rep10.subsamples.values()]
    assert rep10.tests["pof"].pvalue == pytest.approx(min(1.0, 10 * min(sub_p)))
    assert "Bonferroni" in rep10.tests["pof"].note
    assert rep10.to_dict()["combination"].startswith("Bonferroni")


def test_worst_window_null_is_memoised_for_integer_seeds_only():
    """The simulated worst-window law is shared between calls with the same integer seed; a sequence seed (which
    numpy accepts) still works and None still draws afresh (the memo must not change what a seed means)."""
    import numpy as np
    from marginlab.validation import coverage as cv

    hits = np.zeros(1200, dtype=bool)
    hits[[5, 100, 400, 401, 402, 900]] = True
    first = cv.traffic_light(hits, seed=3, n_sims=4000)
    again = cv.traffic_light(hits, seed=np.int64(3), n_sims=4000)
    assert first.worst_window_pvalue == again.worst_window_pvalue
    assert cv.traffic_light(hits, seed=[1, 2], n_sims=4000).worst_window_pvalue > 0
    null = cv._worst_window_null(1200, 250, 0.01, 4000, 3)
    assert not null.flags.writeable
    fresh = {cv.traffic_light(hits, seed=None, n_sims=4000).worst_window_pvalue for _ in range(3)}
    assert len(fresh) > 1


def test_backtest_seed_reaches_every_simulated_null():
    """``backtest(seed=...)`` is documented as the seed of the simulated nulls, but the duration tests, the dynamic
    quantile test and Du-Escanciano always ran with seed 0: each must equal the test run alone with that seed."""
    rng = np.random.default_rng(7)
    n, p = 750, 0.025
    pnl = rng.standard_t(4, n)
    var = np.full(n, 2.3)
    pit = rng.random(n)
    report = cv.backtest(pnl, var, p=p, pit=pit, seed=11)
    hits = cv.exceptions(pnl, var)
    alone = {"tbf": cv.haas_tbf(hits, p, seed=11), "tbfi": cv.haas_tbfi(hits, p, seed=11),
             "duration_weibull": cv.duration_weibull(hits, p, seed=11),
             "dynamic_quantile": cv.dynamic_quantile(pnl, var, p, seed=11)}
    u, c = cv.du_escanciano(pit, p, seed=11)
    alone["du_escanciano_u"], alone["du_escanciano_c"] = u, c
    for name, res in alone.items():
        assert report.tests[name].pvalue == res.pvalue, name
    # and the seed matters: another seed gives another simulated p-value for at least one of them
    other = cv.backtest(pnl, var, p=p, pit=pit, seed=12)
    assert any(other.tests[k].pvalue != report.tests[k].pvalue for k in alone)
