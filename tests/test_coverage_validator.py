"""What a validator asks of a coverage backtest (issue 11, section 4).

One-sided test of too many breaches, the direction of a Kupiec rejection, a calibrated
statement on the worst window, the Christoffersen-Pelletier duration conventions and the
one report per series that the engine delegates to.
"""

import itertools
import json
from fractions import Fraction
from math import comb

import numpy as np
import pandas as pd
import pytest
from conftest import RESULTS
from marginlab.validation import coverage as cv
from scipy import optimize, special, stats

SCAN = json.loads((RESULTS / "worst_window_scan.json").read_text())
RUGARCH = json.loads((RESULTS / "rugarch_vardurtest.json").read_text())


def hits_with(n, positions):
    h = np.zeros(n, dtype=bool)
    h[list(positions)] = True
    return h


# --------------------------------------------------------------------------- one-sided test, direction

@pytest.mark.parametrize("n, x, p", [(250, 0, 0.01), (250, 4, 0.01), (250, 9, 0.01), (1043, 57, 0.05),
                                     (1600, 30, 0.01), (500, 20, 0.025), (40, 40, 0.5)])
def test_binomial_upper_equals_scipy_binomtest_greater(n, x, p):
    r = cv.binomial_upper(hits_with(n, range(x)), p)
    ref = stats.binomtest(x, n, p, alternative="greater").pvalue
    assert r.pvalue == ref  # the same survival function: equal to the last bit
    assert r.statistic == x and r.expected == pytest.approx(n * p)
    assert r.log_pvalue == pytest.approx(np.log(ref), rel=1e-12, abs=1e-12)


def test_binomial_upper_closed_form_in_exact_rationals():
    n, p = 30, Fraction(1, 20)
    for x in range(0, 8):
        exact = sum(comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(x, n + 1))
        assert cv.binomial_upper(hits_with(n, range(x)), 0.05).pvalue == pytest.approx(float(exact), rel=1e-13)


def test_binomial_upper_log_pvalue_does_not_underflow():
    n, x, p = 20_000, 1_000, 0.01  # P(X >= 1000) ~ 1e-360: below the smallest double
    r = cv.binomial_upper(hits_with(n, range(x)), p)
    lead = stats.binom.logpmf(x, n, p)
    ratio = (n - x) / (x + 1) * p / (1 - p)  # pmf(k+1)/pmf(k), decreasing in k: geometric bound
    assert lead <= r.log_pvalue <= lead - np.log1p(-ratio)
    assert r.log_pvalue < np.log(np.finfo(float).tiny)  # the p-value itself is below any double
    assert cv.binomial(hits_with(n, range(x)), p).pvalue_exact_greater == r.pvalue


def test_kupiec_direction_says_which_rejection_is_over_margining():
    n, p = 1000, 0.01
    too_few = cv.kupiec_pof(np.zeros(n, bool), p, exact=True)
    too_many = cv.kupiec_pof(hits_with(n, range(25)), p, exact=True)
    as_expected = cv.kupiec_pof(hits_with(n, range(10)), p, exact=True)
    near = cv.kupiec_pof(hits_with(n, range(12)), p, exact=True)
    assert (too_few.direction, too_many.direction, as_expected.direction, near.direction) == (
        "too few", "too many", "as expected", "too many")
    assert too_few.pvalue < 0.05 and too_few.verdict(0.05) == "over-margining"
    assert too_many.pvalue < 0.05 and too_many.verdict(0.05) == "under-margining"
    assert near.verdict(0.05) == "not rejected" and as_expected.verdict() == "not rejected"
    # the one-sided test does not flag over-margining: P(X >= 0) = 1
    assert cv.binomial_upper(np.zeros(n, bool), p).pvalue == 1.0


# --------------------------------------------------------------------------- calibrated worst window

def brute_force_worst(n, w, p):
    """Exact law of the worst rolling count over all 2^n sequences: P(max >= k) for k = 0..w."""
    seqs = np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.int8)
    c = np.concatenate([np.zeros((len(seqs), 1), int), np.cumsum(seqs, axis=1)], axis=1)
    worst = (c[:, w:] - c[:, :-w]).max(axis=1)
    x = seqs.sum(axis=1)
    prob = p ** x * (1 - p) ** (n - x)
    return np.array([prob[worst >= k].sum() for k in range(w + 1)])


@pytest.mark.parametrize("n, w, p", [(14, 5, 0.2), (12, 4, 0.35), (13, 13, 0.1)])
def test_worst_window_pvalue_against_brute_force_enumeration(n, w, p):
    exact = brute_force_worst(n, w, p)
    n_sims = 40_000
    for k in range(1, w + 1):
        h = hits_with(n, range(k))  # worst window holds exactly k exceptions
        r = cv.traffic_light(h, p, window=w, n_sims=n_sims, seed=3)
        assert r.worst_window_exceptions == k
        if n <= w:  # a single window: the exact binomial tail, no simulation
            assert r.n_sims == 0 and r.worst_window_pvalue == pytest.approx(exact[k], rel=1e-12)
            continue
        se = np.sqrt(exact[k] * (1 - exact[k]) / n_sims)
        assert abs(r.worst_window_pvalue - exact[k]) < 4 * se + 2 / n_sims
        assert r.worst_window_pvalue_se == pytest.approx(se, abs=5e-4)


def test_worst_window_pvalue_at_issue_settings_against_large_simulation_and_naus():
    # reference: 200,000 dense simulated samples and the Naus (1982) approximation
    n, w, p = SCAN["n"], SCAN["window"], SCAN["p"]
    h = np.zeros(n, dtype=bool)
    for row in SCAN["rows"]:
        k = row["at_least"]
        h[:] = False
        h[700:700 + k] = True
        r = cv.traffic_light(h, p, window=w)
        assert r.worst_window_exceptions == k and r.n_sims == 20_000
        tol = 4 * np.hypot(row["standard_error"], r.worst_window_pvalue_se) + 1e-4
        assert abs(r.worst_window_pvalue - row["probability_simulated"]) < tol
        assert abs(r.worst_window_pvalue - row["probability_naus_1982"]) < tol + 2e-3
    # the issue's number: a correct 99% model shows some yellow 250-day window in 1,600 days
    yellow = next(row for row in SCAN["rows"] if row["at_least"] == 5)
    assert stats.binom.cdf(4, 250, 0.01) < 0.95 <= stats.binom.cdf(5, 250, 0.01)
    assert yellow["probability_simulated"] == pytest.approx(0.774, abs=0.003)


def test_worst_window_against_an_independent_dense_simulation():
    n, w, p = 1600, 250, 0.01
    rng = np.random.default_rng(99)
    sims = rng.random((20_000, n)) < p
    c = np.concatenate([np.zeros((len(sims), 1), np.int32), np.cumsum(sims, axis=1, dtype=np.int32)], axis=1)
    worst = (c[:, w:] - c[:, :-w]).max(axis=1)
    for k in (6, 8):
        q = np.mean(worst >= k)
        r = cv.traffic_light(hits_with(n, range(100, 100 + k)), p, window=w)
        assert abs(r.worst_window_pvalue - q) < 4 * np.hypot(np.sqrt(q * (1 - q) / len(sims)),
                                                             r.worst_window_pvalue_se)


def test_worst_window_is_deterministic_and_exact_in_degenerate_cases():
    h = hits_with(1000, [10, 200, 201, 640])
    a, b = cv.traffic_light(h, 0.01, seed=5), cv.traffic_light(h, 0.01, seed=5)
    assert a.worst_window_pvalue == b.worst_window_pvalue and a.seed == 5
    none = cv.traffic_light(np.zeros(1000, bool), 0.01)
    assert (none.worst_window_exceptions, none.worst_window_pvalue, none.n_sims) == (0, 1.0, 0)
    short = cv.traffic_light(hits_with(100, [3, 50]), 0.01)  # shorter than the window: one window
    assert short.worst_window_pvalue == pytest.approx(stats.binom.sf(1, 100, 0.01), rel=1e-12)
    # more exceptions than the generator's first block of gaps: drawn further, still exact in law
    dense = cv.traffic_light(np.ones(300, bool), 0.5, window=20, n_sims=500)
    assert dense.worst_window_exceptions == 20 and dense.worst_window_pvalue <= 2 / 501


# --------------------------------------------------------------------------- Weibull duration test

def rugarch_durations(h):
    """Durations and censoring as rugarch VaRDurTest builds them (1-based times)."""
    t = np.flatnonzero(h) + 1
    d, c = list(np.diff(t)), [0] * (len(t) - 1)
    if h[0] == 0:
        d, c = [t[0]] + d, [1] + c
    if h[-1] == 0:
        d, c = d + [len(h) - t[-1]], c + [1]
    return np.array(d, float), np.array(c, bool)


def scipy_weibull_lr(d, cens, bounds):
    """Censored Weibull (shape, scale) by L-BFGS-B on scipy's logpdf/logsf; exponential at shape 1."""
    def loglik(shape, scale):
        return (stats.weibull_min.logpdf(d[~cens], shape, scale=scale).sum()
                + stats.weibull_min.logsf(d[cens], shape, scale=scale).sum())

    scale0 = d.sum() / (~cens).sum()
    fits = [optimize.minimize(lambda th: -loglik(th[0], np.exp(th[1])), x0=[b0, np.log(scale0)],
                              method="L-BFGS-B", bounds=[bounds, (None, None)]) for b0 in (0.5, 2.0)]
    best = min(fits, key=lambda f: f.fun)
    ll_exp = stats.expon.logpdf(d[~cens], scale=scale0).sum() + stats.expon.logsf(d[cens], scale=scale0).sum()
    return best.x[0], 2 * (-best.fun - ll_exp)


def test_shape_bounds_are_rugarchs():
    assert cv.WEIBULL_SHAPE_BOUNDS == tuple(RUGARCH["shape_bounds"])


@pytest.mark.parametrize("seed, first, last", [(1, True, False), (2, True, True), (3, False, False),
                                               (4, False, True), (5, True, False)])
def test_duration_weibull_against_scipy_censored_fit_with_rugarch_durations(seed, first, last):
    rng = np.random.default_rng(seed)
    h = rng.random(1200) < 0.02 * (1 + (np.arange(1200) // 300) % 2)  # some clustering
    h[0], h[-1] = first, last
    r = cv.duration_weibull(h)
    d, cens = rugarch_durations(h)
    assert r.durations == tuple(int(v) for v in d) and r.censored == tuple(cens)
    if first:  # a breach on day 1 starts the first duration: nothing counted from "day 0"
        assert r.durations[0] == np.flatnonzero(h)[1] - np.flatnonzero(h)[0] and not r.censored[0]
    b, lr = scipy_weibull_lr(d, cens, cv.WEIBULL_SHAPE_BOUNDS)
    assert r.weibull_b == pytest.approx(b, rel=1e-4)
    assert r.statistic == pytest.approx(lr, rel=1e-6, abs=1e-6)
    # the p-value is the Monte Carlo one (tests/test_coverage_null.py); the chi2(1) one stays in the note
    assert f"chi2(1) p-value {stats.chi2.sf(lr, 1):.4f}" in r.note and r.distribution == "monte carlo"
    assert not r.at_bound and r.applicable


def test_duration_weibull_flags_a_shape_at_the_bound():
    h = np.zeros(201, dtype=bool)
    h[::20] = True  # 10 equal durations of 20 days: the likelihood rises without limit in b
    r = cv.duration_weibull(h)
    assert r.durations == (20,) * 10 and not any(r.censored)
    assert r.at_bound and r.weibull_b == cv.WEIBULL_SHAPE_BOUNDS[1] and "bound" in r.note
    b, lr = scipy_weibull_lr(*rugarch_durations(h), cv.WEIBULL_SHAPE_BOUNDS)
    assert b == pytest.approx(10.0) and r.statistic == pytest.approx(lr, rel=1e-6)


# --------------------------------------------------------------------------- backtest / report

def normal_sample(n, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2020-01-01", periods=n, tz="UTC")
    return pd.Series(rng.standard_normal(n) * scale, index=idx)


def test_headline_matches_the_individual_tests():
    pnl = normal_sample(1200, seed=4, scale=1.15)
    var = np.full(1200, stats.norm.ppf(0.99))
    rep = cv.backtest(pnl, var, p=0.01)
    hits = (-pnl > var).to_numpy()
    hl = rep.headline()
    assert set(hl) == {"p", "mpor_days", "observations", "breaches", "expected_breaches", "breach_rate",
                       "kupiec_pvalue", "kupiec_direction", "too_many_pvalue", "christoffersen_cc_pvalue",
                       "christoffersen_ind_pvalue", "christoffersen_ind_direction", "traffic_light_zone",
                       "worst_window_breaches",
                       "worst_window_pvalue"}
    assert (hl["observations"], hl["breaches"], hl["p"]) == (1200, int(hits.sum()), 0.01)
    assert hl["expected_breaches"] == pytest.approx(12.0)
    assert hl["kupiec_pvalue"] == cv.kupiec_pof(hits, 0.01, exact=True).pvalue
    assert hl["kupiec_direction"] == "too many"
    assert hl["too_many_pvalue"] == pytest.approx(stats.binomtest(int(hits.sum()), 1200, 0.01,
                                                                  alternative="greater").pvalue)
    assert hl["christoffersen_cc_pvalue"] == cv.christoffersen_conditional_coverage(hits, 0.01, exact=True).pvalue
    assert hl["christoffersen_ind_pvalue"] == cv.christoffersen_independence(hits, exact=True).pvalue
    tl = cv.traffic_light(hits, 0.01)
    assert (hl["traffic_light_zone"], hl["worst_window_breaches"], hl["worst_window_pvalue"]) == (
        tl.zone, tl.worst_window_exceptions, tl.worst_window_pvalue)
    assert rep.to_dict()["headline"] == hl
    assert "binomial_upper" in rep.to_frame().index
    text = rep.summary()
    assert "too many breaches (one-sided)" in text and "worst 250-observation window" in text


def test_mpor_traffic_light_is_the_bonferroni_zone_over_sub_samples():
    h, n = 10, 3000
    pnl = normal_sample(n, seed=8)
    var = np.full(n, 2.326)
    # sub-sample 3 (every 10th observation from offset 3) breaches 8 times in its last 250 observations
    pos = np.arange(3, n, h)[-250:][::31][:8]
    pnl.iloc[pos] = -10.0
    rep = cv.backtest(pnl, var, p=0.01, mpor_days=h)
    subs = [(-pnl.to_numpy()[k::h] > var[k::h]) for k in range(h)]
    upper = min(stats.binom.sf(s[-250:].sum(), 250, 0.01) for s in subs)
    cum = 1 - min(1.0, h * upper)
    expected_zone = "green" if cum < 0.95 else "yellow" if cum < 0.9999 else "red"
    tl = rep.tests["traffic_light"]
    assert tl.zone == expected_zone == "yellow"
    assert cv.traffic_light(subs[0], 0.01).zone == "green"  # the first sub-sample alone would miss it
    assert tl.worst_window_exceptions == max(cv.traffic_light(s, 0.01).worst_window_exceptions for s in subs)
    assert tl.worst_window_pvalue == pytest.approx(
        min(1.0, h * min(cv.traffic_light(s, 0.01).worst_window_pvalue for s in subs)))
    hl = rep.headline()
    assert hl["observations"] == n and hl["traffic_light_zone"] == "yellow" and hl["mpor_days"] == h
    pof = rep.tests["pof_exact"]
    assert pof.pvalue == pytest.approx(min(1.0, h * min(cv.kupiec_pof(s, 0.01, exact=True).pvalue for s in subs)))
    assert pof.direction == "too many"


def test_es_tests_run_at_the_es_level_with_the_var_at_that_level():
    n, p_es = 600, 0.025
    pnl = normal_sample(n, seed=12, scale=1.2)
    var_es, es = np.full(n, -stats.norm.ppf(p_es)), np.full(n, stats.norm.pdf(stats.norm.ppf(p_es)) / p_es)
    margin = es  # an ES model's margin is its ES; its breaches are tested at its own level
    rep = cv.backtest(pnl, margin, es=es, p=p_es, es_var=var_es, es_p=p_es, pit=stats.norm.cdf(pnl))
    z2 = cv.acerbi_szekely(pnl, var_es, es, p_es, kind="z2")
    assert rep.tests["acerbi_szekely_z2"].statistic == pytest.approx(z2.statistic)
    assert rep.tests["acerbi_szekely_z2"].pvalue == pytest.approx(z2.pvalue)
    assert rep.tests["mcneil_frey"].n_exceptions == int((-pnl > var_es).sum())
    assert rep.tests["du_escanciano_u"].statistic == pytest.approx(
        cv.du_escanciano(stats.norm.cdf(pnl), p_es)[0].statistic)
    assert rep.es_p == p_es and rep.to_dict()["es_p"] == p_es
    with pytest.raises(ValueError, match="es_var"):
        cv.backtest(pnl, np.full(n, 2.326), es=es, p=0.01, es_p=p_es)


def test_backtest_bad_input():
    with pytest.raises(ValueError, match="mpor_days"):
        cv.backtest([1.0, 2.0], [1.0, 1.0], mpor_days=True)
    with pytest.raises(ValueError, match="no non-overlapping sub-sample"):
        cv.backtest([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], mpor_days=5)
    with pytest.raises(ValueError, match="negative"):
        cv.backtest([1.0, 2.0, 3.0], [1.0, -1.0, 1.0])


def test_log_tail_helper_against_logsumexp():
    for n, x, p in [(100, 3, 0.01), (5000, 400, 0.02), (20000, 2000, 0.01)]:
        ref = special.logsumexp(stats.binom.logpmf(np.arange(x, n + 1), n, p))
        assert cv._binom_upper_tail(x, n, p)[1] == pytest.approx(ref, rel=1e-10)
