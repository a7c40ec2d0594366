"""The Monte Carlo error of margins estimated from simulated scenarios (review volatility F4).

References: the asymptotic standard error of a sample quantile, sqrt(p(1-p)/N)/f(VaR), and of the sample
expected shortfall, sqrt((Var(L | L >= VaR) + alpha (ES - VaR)^2)/(N p)) (Chen 2008, J. Financial Econometrics
6(1)), in closed form for normal losses; and the spread of the estimates themselves over independent seeds.
"""

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.models import RunContext
from marginlab.models.simulation import monte_carlo_se, risk_measure
from marginlab.validation import Backtest
from marginlab.validation.compare import compare_backtests, read_backtest
from marginlab.validation.metrics import monte_carlo_rel_se
from scipy import stats

MARKET = ds.load_market(["BTC"], start="2019-01-01", end="2021-07-31")
SPOT = {"long BTC spot": mm.reference_portfolios()["long BTC spot"]}


def _normal_se(measure: str, level: float, n: int) -> float:
    """Closed-form asymptotic standard error of VaR or ES estimated from n standard normal draws."""
    p, z = 1.0 - level, stats.norm.ppf(level)
    phi = stats.norm.pdf(z)
    if measure == "var":
        return np.sqrt(p * (1 - p) / n) / phi
    tail_mean = phi / p  # ES of the standard normal
    tail_var = 1.0 + z * tail_mean - tail_mean**2  # Var(X | X >= z)
    return np.sqrt((tail_var + level * (tail_mean - z) ** 2) / (n * p))


@pytest.mark.parametrize("measure, level", [("var", 0.99), ("es", 0.975), ("var", 0.95), ("es", 0.99)])
def test_standard_error_matches_the_closed_form_and_the_spread_over_seeds(measure, level):
    """400 samples of 10,000 normal losses: the mean estimated SE is the closed form within 4%, and the standard
    deviation of the 400 estimates of the risk measure (the error another seed makes) is the mean SE within 10%
    (the sample SD of 400 has ~3.5% relative error)."""
    n, reps = 10_000, 400
    x = np.random.default_rng(11).standard_normal((reps, n))
    est = np.array([risk_measure(row, measure, level) for row in x])
    se = np.array([monte_carlo_se(row, measure, level) for row in x])
    closed = _normal_se(measure, level, n)
    assert se.mean() == pytest.approx(closed, rel=0.04)
    assert est.std(ddof=1) == pytest.approx(se.mean(), rel=0.10)


def test_standard_error_scales_with_the_losses_and_shrinks_as_one_over_root_n():
    x = np.random.default_rng(3).standard_normal(40_000)
    for measure, level in (("var", 0.99), ("es", 0.975)):
        assert monte_carlo_se(250.0 * x, measure, level) == pytest.approx(250.0 * monte_carlo_se(x, measure, level),
                                                                            rel=1e-12)
        ratio = monte_carlo_se(x[:10_000], measure, level) / monte_carlo_se(x, measure, level)
        assert 1.4 < ratio < 2.8  # ~2 = sqrt(40,000 / 10,000), up to the noise of the estimates
    assert np.isnan(monte_carlo_se(np.ones(1), "var", 0.99))


def test_no_error_is_stated_for_fewer_than_ten_tail_scenarios():
    """A reviewer: at the smallest path count (100 at 99%, one tail scenario) the ES error came out exactly 0 while
    the margin moved by 60% between seeds, and the VaR spacing used the two largest losses only (median 0.6x the
    spread). Below 10 tail scenarios no error is stated (NaN); from 10 on it is."""
    x = np.random.default_rng(4).standard_normal(2_000)
    for measure in ("var", "es"):
        assert np.isnan(monte_carlo_se(x[:100], measure, 0.99))  # k = 1
        assert np.isnan(monte_carlo_se(x[:900], measure, 0.99))  # k = 9
        assert np.isfinite(monte_carlo_se(x[:1000], measure, 0.99))  # k = 10
        assert monte_carlo_se(x[:1000], measure, 0.99) > 0
    model = mm.make_model("fhs_garch", measure="es", level=0.99, n_paths=100)
    t = pd.Timestamp("2021-06-01", tz="UTC")
    fc = model.forecast(model.fit(MARKET, t, context=RunContext(mpor=2)), [mm.Position(mm.Spot("BTC"), 1.0)],
                        MARKET, t)
    assert fc.margin > 0 and np.isnan(fc.mc_se)


def test_backtest_states_the_monte_carlo_error_of_simulated_margins_only():
    """EWMA (simulated moves) and FHS over 2 days (bootstrapped paths) carry mc_se; historical VaR and FHS at one
    day (every window row once) carry none; an APC buffer carries its inner model's relative error."""
    models = {"ewma": mm.make_model("ewma_var", n_paths=2000),
              "ewma + apc": mm.make_overlay("apc_buffer")(mm.make_model("ewma_var", n_paths=2000)),
              "hs": mm.make_model("historical_var"), "fhs": mm.make_model("fhs_garch", n_paths=2000),
              "static": mm.make_model("static")}
    one = Backtest(MARKET, SPOT, models, start="2021-06-01", end="2021-06-20").run().to_frame()
    two = Backtest(MARKET, SPOT, {"fhs": models["fhs"]}, mpor_days=2, start="2021-06-01",
                   end="2021-06-20").run().to_frame()
    by = dict(tuple(one.groupby("model")))
    assert "mc_se" in one.columns and (by["ewma"]["mc_se"] > 0).all() and (two["mc_se"] > 0).all()
    for name in ("hs", "fhs", "static"):
        assert by[name]["mc_se"].isna().all(), name
    ewma, apc = by["ewma"].set_index("date"), by["ewma + apc"].set_index("date")
    np.testing.assert_allclose(apc["mc_se"] / apc["margin"], ewma["mc_se"] / ewma["margin"], rtol=1e-12)
    # the metric: the median relative error, NaN without simulation noise
    assert monte_carlo_rel_se(by["ewma"]) == pytest.approx(float(np.median(ewma["mc_se"] / ewma["margin"])))
    assert np.isnan(monte_carlo_rel_se(by["hs"]))


def test_stated_error_is_what_another_seed_moves_the_margin_by():
    """The reviewer's measurement: EWMA VaR of long BTC spot under 40 seeds on 5 dates. The root-mean-square
    standard deviation over seeds agrees with the root-mean-square stated mc_se within 20% (the spread of 40
    seeds has ~11% relative error per date)."""
    model = mm.make_model("ewma_var", n_paths=2000)
    pos = [mm.Position(mm.Spot("BTC"), 1.0)]
    dates = pd.date_range("2021-06-01", periods=5, freq="7D", tz="UTC")
    margins, stated = np.empty((40, dates.size)), np.empty((40, dates.size))
    for s in range(40):
        ctx = RunContext(seed=s)
        for j, t in enumerate(dates):
            fc = model.forecast(model.fit(MARKET, t, context=ctx), pos, MARKET, t)
            margins[s, j], stated[s, j] = fc.margin, fc.mc_se
    spread = np.sqrt(np.mean(margins.std(axis=0, ddof=1) ** 2))
    assert spread == pytest.approx(np.sqrt(np.mean(stated**2)), rel=0.20)


def test_backtest_tables_with_empty_mc_se_are_read_and_older_tables_are_named(tmp_path):
    frame = pd.DataFrame({"date": ["2021-06-01", "2021-06-01"], "portfolio": ["b", "b"], "model": ["ewma", "hs"],
                          "margin": [10.0, 12.0], "breach": [False, False], "mc_se": [0.2, np.nan]})
    frame.to_csv(tmp_path / "new.csv", index=False)
    frame.drop(columns="mc_se").to_csv(tmp_path / "old.csv", index=False)
    new = read_backtest(tmp_path / "new.csv")
    assert new["mc_se"].iloc[0] == 0.2 and np.isnan(new["mc_se"].iloc[1])
    with pytest.raises(ValueError, match="old: no column 'mc_se'.*before marginlab stated the Monte Carlo error.*"
                                         "--ignore mc_se"):
        compare_backtests(read_backtest(tmp_path / "old.csv"), new, names=("old", "new"))


def test_diff_against_a_table_without_mc_se_leaves_the_column_out_on_request(tmp_path, capsys):
    """A reviewer: marginlab diff refused every table written before the mc_se column, so a run before this change
    could not be compared with one after it (the usual check that a change moved no margin). ``--ignore mc_se``
    compares the rest and says it did; a moved margin is still found; key, margin and breach cannot be ignored."""
    from marginlab.validation.cli import main

    new = pd.DataFrame({"date": ["2021-06-01", "2021-06-02"], "portfolio": "b", "model": "ewma",
                        "margin": [10.0, 12.0], "breach": [False, False], "mc_se": [0.2, 0.3]})
    new.to_csv(tmp_path / "new.csv", index=False)
    new.drop(columns="mc_se").to_csv(tmp_path / "old.csv", index=False)
    assert main(["diff", str(tmp_path / "old.csv"), str(tmp_path / "new.csv"), "--ignore", "mc_se"]) == 0
    assert "identical: every row and value bit for bit the same, not comparing mc_se" in capsys.readouterr().out
    new.assign(margin=[10.0, 12.5]).to_csv(tmp_path / "moved.csv", index=False)
    diff = compare_backtests(read_backtest(tmp_path / "old.csv"), read_backtest(tmp_path / "moved.csv"),
                             ignore=("mc_se",))
    assert not diff.identical and "1 margin(s) moved" in diff.summary() and "(not comparing mc_se)" in diff.summary()
    with pytest.raises(ValueError, match="cannot ignore 'margin'"):
        compare_backtests(new, new, ignore=("margin",))
    # a name neither table has (a typo) is refused: the summary would claim a column left out that was compared
    with pytest.raises(ValueError, match="cannot ignore 'mcse': neither backtest has that column"):
        compare_backtests(read_backtest(tmp_path / "old.csv"), read_backtest(tmp_path / "new.csv"), ignore=("mcse",))
