"""The Acerbi-Szekely ES backtests under the forecast's own scenarios (review coverage: the null was a Student-t tail
matched to VaR and ES, "the forecast only up to the tail shape").

References: the Acerbi-Tasche tail mean (the forecast's ES, exactly, by quadrature), the size of the test on data
drawn from the forecasts themselves (Monte Carlo), and an independent recomputation from the model's forecasts.
"""

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.models import RunContext
from marginlab.models.simulation import risk_measure
from marginlab.validation import Backtest
from marginlab.validation import coverage as cv


@pytest.mark.parametrize("n", [1000, 999, 400])
def test_an_exception_under_the_forecast_is_one_of_the_scenarios_above_its_var(n):
    """Under the scenario forecast a loss is one more draw from its N scenarios: an exception (strictly above the
    VaR, the k-th largest) has probability (k - 1)/N and is one of the k - 1 largest, equally likely: the tail
    maps v in [j, j + 1)/(k - 1) to the (j+1)-th largest, so its mean over v is their mean, checked by brute force
    (a million draws from the scenarios themselves, conditioned on exceeding the VaR)."""
    p = 0.025
    losses = np.random.default_rng(n).standard_t(4, size=n) * 100.0
    tail = cv.ScenarioTail.of(losses, p)
    k = tail.top.size
    assert k == int(np.ceil(n * p - 1e-9)) and tail.n == n
    np.testing.assert_array_equal(tail.top, np.sort(losses)[::-1][:k])
    es = risk_measure(losses, "es", 1 - p)
    draw = cv._ForecastTail.build([tail], p, np.array([es]))
    assert draw.exceed_prob[0] == (k - 1) / n
    mids = (np.arange(k - 1) + 0.5) / (k - 1)
    np.testing.assert_array_equal(draw(np.zeros(k - 1, dtype=np.int64), mids), tail.top[:-1] / es)
    sample = losses[np.random.default_rng(1).integers(0, n, 1_000_000)]
    above = sample[sample > tail.top[-1]]
    assert above.size / sample.size == pytest.approx((k - 1) / n, rel=0.03)
    assert above.mean() / es == pytest.approx(tail.top[:-1].mean() / es, rel=0.01)


def test_size_on_losses_drawn_from_the_forecasts():
    """300 samples of 250 dates, each date's forecast 400 scenarios of a heteroscedastic fat-tailed law and the
    realised loss one more draw from those scenarios (H0 exactly): Z1 and Z2 reject at 5% about 5% of the time
    (2-9% allowed: the rate of 300 has a standard error of 1.3%)."""
    rng = np.random.default_rng(7)
    p, n_dates, n_scen = 0.025, 250, 400
    rejected = {"z1": 0, "z2": 0}
    reps = 300
    for r in range(reps):
        scale = np.exp(rng.normal(0, 0.5, n_dates))[:, None]
        scen = scale * rng.standard_t(3, size=(n_dates, n_scen))
        realised = scen[np.arange(n_dates), rng.integers(0, n_scen, n_dates)]
        var = np.array([risk_measure(x, "var", 1 - p) for x in scen])
        es = np.array([risk_measure(x, "es", 1 - p) for x in scen])
        tails = [cv.ScenarioTail.of(x, p) for x in scen]
        for kind in rejected:
            res = cv.acerbi_szekely(-realised, var, es, p, kind=kind, n_sims=1000, seed=r, tails=tails)
            rejected[kind] += res.pvalue < 0.05
    for kind, count in rejected.items():
        assert 0.02 <= count / reps <= 0.09, (kind, count / reps)


def test_es_models_are_tested_under_their_own_scenarios_end_to_end():
    """FHS ES and historical ES on long BTC spot: the engine's Z1/Z2 equal acerbi_szekely called with tails built
    here from the models' own forecasts, date by date (an independent recomputation); at an MPOR of 2 the
    sub-samples take the same tails. Rule-based and VaR models keep the matched null (no ES test or no tails)."""
    market = ds.load_market(["BTC"], start="2018-01-01", end="2022-12-31")
    books = {"long BTC spot": mm.reference_portfolios()["long BTC spot"]}
    models = {"fhs es": mm.make_model("fhs_garch", measure="es"), "hs es": mm.make_model("historical_es")}
    res = Backtest(market, books, models, start="2021-01-01", end="2021-12-31").run()
    for label, model in models.items():
        report = res.coverage_report("long BTC spot", label)
        rows = res.frame[res.frame["model"] == label].set_index("date")
        ctx = RunContext(seed=0)
        tails = []
        for t in rows.index:
            book = res.portfolios["long BTC spot"].positions_at(t, market)
            fc = model.forecast(model.fit(market, t, context=ctx), book, market, t)
            tails.append(cv.ScenarioTail.of(fc.losses, 0.025))
        for kind in ("z1", "z2"):
            direct = cv.acerbi_szekely(rows["pnl"], rows["var"], rows["margin"], 0.025, kind=kind, seed=0,
                                       tails=tails)
            got = report.tests[f"acerbi_szekely_{kind}"]
            assert (got.statistic, got.pvalue) == (direct.statistic, direct.pvalue), (label, kind)
            assert "the forecast's own scenarios" in got.note
    two = Backtest(market, books, {"fhs es": models["fhs es"]}, mpor_days=2, start="2021-01-01",
                   end="2021-12-31").run()
    sub = two.coverage_report("long BTC spot", "fhs es")
    assert all("the forecast's own scenarios" in s["acerbi_szekely_z2"].note for s in sub.subsamples.values())


def test_tails_must_be_one_per_date_at_the_tested_p():
    losses = np.random.default_rng(1).standard_normal((5, 1000))
    tails = [cv.ScenarioTail.of(x, 0.01) for x in losses]
    var = np.array([risk_measure(x, "var", 0.975) for x in losses])
    es = np.array([risk_measure(x, "es", 0.975) for x in losses])
    with pytest.raises(ValueError, match=r"tails: date 0 holds 10 of 1000 scenarios, not the ceil\(n p\) = 25"):
        cv.acerbi_szekely(np.zeros(5), var, es, 0.025, tails=tails)
    with pytest.raises(ValueError, match="tails: 4 scenario tails for 5 dates"):
        cv.acerbi_szekely(np.zeros(5), var, es, 0.025, tails=[cv.ScenarioTail.of(x, 0.025) for x in losses[:4]])
    with pytest.raises(ValueError, match="for Z1 and Z2 without dist"):
        cv.acerbi_szekely(np.zeros(5), var, es, 0.025, kind="z3", tails=tails)
    assert isinstance(pd.Series(tails).iloc[0], cv.ScenarioTail)
