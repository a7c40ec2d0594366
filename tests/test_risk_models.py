"""FHS, historical and EWMA margin models: properties, closed forms, determinism."""

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.models import RunContext
from marginlab.models.simulation import risk_measure, weighted_risk_measure
from marginlab.validation import Backtest

MARKET = ds.load_market(["BTC", "ETH"], start="2019-01-01", end="2022-06-30")
BOOKS = mm.reference_portfolios()
SEL = {k: BOOKS[k] for k in ["long BTC spot", "long BTC / short ETH perpetuals",
                             "short BTC 25-delta strangle (30d, rolled at 7d)"]}


def test_risk_measure_closed_forms():
    losses = np.arange(1.0, 101.0)  # 1..100
    assert risk_measure(losses, "var", 0.99) == 100.0
    assert risk_measure(losses, "var", 0.95) == 96.0
    assert risk_measure(losses, "es", 0.95) == pytest.approx(np.mean([96, 97, 98, 99, 100]))


def test_var_is_the_upper_empirical_quantile():
    """VaR = the k-th largest loss, k = ceil(N (1 - alpha)): numpy's "higher" quantile at N = 1000 and 99%, one
    scenario above the lower ("inverted_cdf") quantile, whose exceedance probability is already 1 - alpha."""
    x = np.random.default_rng(8).standard_normal(1000)
    var = risk_measure(x, "var", 0.99)
    assert var == np.sort(x)[-10] == np.quantile(x, 0.99, method="higher")
    assert np.quantile(x, 0.99, method="inverted_cdf") == np.sort(x)[-11] < var
    assert np.mean(x > np.sort(x)[-11]) == 0.01 and np.mean(x >= var) == 0.01
    assert weighted_risk_measure(x, np.ones(1000), "var", 0.99) == var


def test_historical_var_closed_form_for_linear_book():
    t = pd.Timestamp("2021-06-01", tz="UTC")
    model = mm.make_model("historical_var", lookback=500)
    pos = [mm.Position(mm.Spot("BTC"), 2.0)]
    m = model.margin(model.fit(MARKET, t), pos, MARKET, t)
    p = MARKET.prices["BTC"].loc[:t]
    r = np.log(p).diff().dropna().to_numpy()[-500:]
    losses = -2.0 * p.iloc[-1] * (np.exp(r) - 1)
    assert m == pytest.approx(np.sort(losses)[-5], rel=1e-12)  # ceil(500 x 1%) = 5th largest


def test_historical_es_is_the_tail_mean_when_n_times_the_tail_is_not_an_integer():
    """250 scenarios at 97.5%: the tail holds 6.25 scenarios. ES = the mean of the 25 largest of the sample with
    every loss 4 times (tail mass exactly 25), i.e. the 6 largest and a quarter of the 7th; the mean of the 7
    largest (before the fix) is 2.2% low for the reviewer's book. VaR (7th largest) is unchanged."""
    t = pd.Timestamp("2021-06-01", tz="UTC")
    model = mm.make_model("historical_es", lookback=250)
    pos = [mm.Position(mm.Spot("BTC"), 2.0)]
    fc = model.forecast(model.fit(MARKET, t), pos, MARKET, t)
    p = MARKET.prices["BTC"].loc[:t]
    losses = -2.0 * p.iloc[-1] * np.expm1(np.log(p).diff().dropna().to_numpy()[-250:])
    assert fc.margin == pytest.approx(np.sort(np.repeat(losses, 4))[-25:].mean(), rel=1e-12)
    assert fc.var == pytest.approx(np.sort(losses)[-7], rel=1e-12)
    assert risk_measure(losses, "es", 0.975) == pytest.approx(fc.margin, rel=1e-12)
    # N (1 - alpha) an integer: the mean of the k largest, bit for bit
    x = np.random.default_rng(4).standard_normal(1000)
    assert risk_measure(x, "es", 0.975) == float(-np.partition(-x, 24)[:25].mean())


def test_fhs_one_day_is_the_exact_filtered_empirical_distribution():
    """At a one-day MPOR FHS uses every window row once (no bootstrap): VaR 99% = the ceil(n x 1%)-th largest
    loss of sigma_{t+1} z_s over the window, independent of the seed and of n_paths."""
    t = pd.Timestamp("2021-06-01", tz="UTC")
    model = mm.make_model("fhs_garch", n_paths=2000)
    pos = [mm.Position(mm.Perpetual("BTC"), -1.5)]
    st = model.fit(MARKET, t, context=RunContext(seed=3))
    m = model.margin(st, pos, MARKET, t)
    i = MARKET.loc_of(t)
    fit = st.estimates.fit(MARKET, "BTC", max(1, i - 999), i)  # the (up to) 1,000-row window ending at t
    r = np.sqrt(fit.sigma2_next) * fit.std_resids / 100
    losses = 1.5 * MARKET.prices["BTC"].iloc[i] * np.expm1(r)  # short: loses when the price rises
    k = int(np.ceil(r.size * 0.01))
    assert m == pytest.approx(np.sort(losses)[-k], rel=1e-12)
    other = mm.make_model("fhs_garch", n_paths=500)
    assert other.margin(other.fit(MARKET, t, context=RunContext(seed=99)), pos, MARKET, t) == m


def test_fhs_long_run_floor_is_ten_years_of_calendar_time_on_hourly_data():
    """vol_floor="long_run" floors sigma^2_{t+1} at the variance of every return of the last ten years (87,600
    hours: all 27,603 known at 2020-10-10 12:00 here), not of the last 3,650 rows (152 days of hours): 0.956 %^2
    binds where the 3,650-row floor (0.258) lies below the fitted 0.294 and left the margin unfloored.
    Reference at a one-hour MPOR: the 10th largest loss of sigma_floor z_s over the window's residuals."""
    market = ds.load_market(["BTC"], freq="1h", end="2020-10-11")
    t = pd.Timestamp("2020-10-10 12:00", tz="UTC")
    i = market.loc_of(t)
    pos = [mm.Position(mm.Spot("BTC"), 1.0)]
    model = mm.make_model("fhs_garch", vol_floor="long_run")
    st = model.fit(market, t, context=RunContext(seed=3))
    fit = st.estimates.fit(market, "BTC", i - 999, i)
    r = market.log_return_array[1:i + 1, 0]
    floor = np.mean(r[np.isfinite(r)] ** 2) * 1e4  # zero mean, as the filter
    assert i > 3650 and floor > 3 * fit.sigma2_next and np.nanmean(r[-3650:] ** 2) * 1e4 < fit.sigma2_next
    losses = -market.prices["BTC"].iloc[i] * np.expm1(np.sqrt(floor) * fit.std_resids / 100)
    assert model.margin(st, pos, market, t) == pytest.approx(np.sort(losses)[-10], rel=1e-12)


def test_margins_on_a_date_do_not_depend_on_where_the_loaded_market_starts():
    """The same dates, books, seed and MPOR (5: Monte Carlo draws) on markets loaded from 2019-01-01 and from
    2020-06-01: every scenario model and overlay gives the same margins bit for bit. Draws and FHS's refit
    schedule were keyed by the row's position in the panel (FHS VaR moved 7%, EWMA 0.03%, by the reviewer)."""
    books = {k: BOOKS[k] for k in ["long BTC spot", "long BTC / short ETH perpetuals",
                                   "short BTC 25-delta strangle (30d, rolled at 7d)"]}
    fast = dict(lookback=300, n_paths=1000)
    fhs = mm.make_model("fhs_garch", **fast)
    ewma = mm.make_model("ewma_var", **fast)
    hs = mm.make_model("historical_var", lookback=300)
    models = {"fhs var": fhs, "fhs es": mm.make_model("fhs_garch", measure="es", **fast),
              "fhs refit 3": mm.make_model("fhs_garch", refit_every=3, **fast), "ewma": ewma,
              "ewma t": mm.make_model("ewma_var", dist="t", **fast), "hs var": hs,
              "hs es": mm.make_model("historical_es", lookback=300),
              "fhs apc": mm.make_overlay("apc_buffer", buffer=0.25)(fhs),
              "ewma stressed": mm.make_overlay("stressed_weight", stress_start="2021-05-10",
                                               stress_end="2021-05-25")(ewma),
              "hs floor 1y": mm.make_overlay("lookback_floor", years=1.0)(hs)}
    frames = []
    for start in ("2019-01-01", "2020-06-01"):
        market = ds.load_market(["BTC", "ETH"], start=start, end="2022-01-20")
        res = Backtest(market, books, models, mpor_days=5, start="2022-01-03", end="2022-01-12", seed=11).run()
        frames.append(res.to_frame().sort_values(["portfolio", "model", "date"]).reset_index(drop=True))
    a, b = frames
    assert len(a) == 3 * 10 * len(models) and a["margin"].notna().all()
    assert a[["date", "portfolio", "model"]].equals(b[["date", "portfolio", "model"]])
    for col in ("margin", "var", "es", "pit"):
        assert a[col].to_numpy().tobytes() == b[col].to_numpy().tobytes(), col


def test_fhs_margins_on_a_date_do_not_depend_on_where_the_run_starts():
    """Review volatility F1: BTC's GARCH likelihood has two optima in 2023-09..2024-01 and the warm-started daily
    fits followed whichever the chain started on; the chain was anchored at the run's first margin date, so runs
    started on 2023-09-01 and 2023-10-10 gave 52,755 and 76,350 USD on 2023-10-16. Chains now start with a cold
    fit on the first row of each calendar year: every margin on the common dates is the same bit for bit."""
    market = ds.load_market(["BTC"], end="2023-10-25")
    book = {"long BTC spot": BOOKS["long BTC spot"]}
    frames = []
    for start in ("2023-09-01", "2023-10-10"):
        res = Backtest(market, book, {"fhs": mm.make_model("fhs_garch")}, start=start, end="2023-10-20",
                       seed=7).run()
        frames.append(res.to_frame().set_index("date"))
    a, b = frames
    common = b.index
    assert len(common) == 11 and a.loc[common, "margin"].notna().all()
    for col in ("margin", "var", "es", "pit"):
        assert a.loc[common, col].to_numpy().tobytes() == b[col].to_numpy().tobytes(), col


def test_fhs_chains_start_on_the_first_row_of_a_year_daily_and_of_a_month_intraday():
    """A chain restarts (cold fit, no predecessor) on the first row of each calendar year of a daily panel and of
    each calendar month of an hourly one (by observation time: the hourly row labelled 2021-05-31 23:00 closes at
    06-01 00:00), so a margin asked for on one hourly date costs at most a month of fits (it cost up to a year:
    2,950 fits on 2021-06-05 10:00 from the panel's start, and the look-ahead test, which asks for single dates on
    truncated markets, took 25 minutes of CI)."""
    from marginlab.models.estimates import FilterEstimates
    from marginlab.models.volatility import FilterSpec

    est = FilterEstimates(FilterSpec.from_names("garch", "normal"), lookback=1000, min_obs=250)
    daily = ds.load_market(["BTC"], start="2019-01-01", end="2021-03-31")
    for label, cold in (("2020-12-31", True), ("2021-01-01", False), ("2021-02-28", False), ("2021-03-01", False)):
        i = daily.loc_of(pd.Timestamp(label, tz="UTC"))
        assert (est.predecessor(daily, "BTC", i - 999 if i >= 999 else 1, i) is None) is cold, label
    hourly = ds.load_market(["BTC"], freq="1h", start="2021-02-01")
    for label, cold in (("2021-05-31 22:00", False), ("2021-05-31 23:00", True), ("2021-06-01 00:00", False)):
        i = hourly.loc_of(pd.Timestamp(label, tz="UTC"))
        assert (est.predecessor(hourly, "BTC", i - 999, i) is None) is cold, label
    t = pd.Timestamp("2021-06-05 10:00", tz="UTC")
    i = hourly.loc_of(t)
    est.fit(hourly, "BTC", i - 999, i)
    assert est.counts["fits"] == i - hourly.loc_of(pd.Timestamp("2021-05-31 23:00", tz="UTC")) + 1 <= 745


def test_es_at_least_var_every_date_and_deterministic():
    models = {"var": mm.make_model("fhs_garch", measure="var", level=0.975, n_paths=2000),
              "es": mm.make_model("fhs_garch", measure="es", level=0.975, n_paths=2000)}
    res = Backtest(MARKET, {k: SEL[k] for k in ["long BTC spot"]}, models, start="2021-01-01",
                   end="2021-03-31").run()
    f = res.to_frame().pivot(index="date", columns="model", values="margin")
    assert (f["es"] >= f["var"]).all()
    again = Backtest(MARKET, {k: SEL[k] for k in ["long BTC spot"]}, models, start="2021-01-01",
                     end="2021-03-31").run().to_frame().pivot(index="date", columns="model", values="margin")
    pd.testing.assert_frame_equal(f, again)  # bit-for-bit repeatable


def test_seed_changes_draws():
    t = pd.Timestamp("2021-06-01", tz="UTC")
    pos = [mm.Position(mm.Spot("BTC"), 1.0)]
    m = mm.make_model("fhs_garch", n_paths=1000)
    a = m.margin(m.fit(MARKET, t, context=RunContext(seed=1, mpor=2)), pos, MARKET, t)
    b = m.margin(m.fit(MARKET, t, context=RunContext(seed=2, mpor=2)), pos, MARKET, t)
    assert a != b  # two-day paths are bootstrapped from the seed's draws
    assert a == m.margin(m.fit(MARKET, t, context=RunContext(seed=1, mpor=2)), pos, MARKET, t)


@pytest.mark.parametrize("name", ["fhs_garch", "historical_var", "historical_es", "ewma_var"])
def test_margin_rises_with_position_size(name):
    model = mm.make_model(name, **({"n_paths": 1000} if name in ("fhs_garch", "ewma_var") else {}))
    t = pd.Timestamp("2022-01-10", tz="UTC")
    for book in SEL.values():
        pos = book.positions_at(t, MARKET)
        bigger = [mm.Position(p.instrument, 3 * p.quantity) for p in pos]
        st = model.fit(MARKET, t)
        small = model.margin(st, pos, MARKET, t)
        big = model.margin(model.fit(MARKET, t), bigger, MARKET, t)
        assert big == pytest.approx(3 * small, rel=1e-9) and small > 0


def test_option_book_warmup_and_vol_window():
    """Option books need implied-vol changes: FHS gives no margin before 250 DVOL observations."""
    book = SEL["short BTC 25-delta strangle (30d, rolled at 7d)"]
    model = mm.make_model("fhs_garch", n_paths=1000)
    early = pd.Timestamp("2021-06-01", tz="UTC")
    assert np.isnan(model.margin(model.fit(MARKET, early), book.positions_at(early, MARKET), MARKET, early))
    late = pd.Timestamp("2022-03-01", tz="UTC")
    assert model.margin(model.fit(MARKET, late), book.positions_at(late, MARKET), MARKET, late) > 0


def test_mpor_comes_from_the_run_context():
    """Models carry no MPOR of their own: sqrt-time historical VaR at an MPOR of 4 scales the moves by 2."""
    t = pd.Timestamp("2021-06-01", tz="UTC")
    model = mm.make_model("historical_var", lookback=500, scaling="sqrt_time")
    pos = [mm.Position(mm.Spot("BTC"), 1.0)]
    m = model.margin(model.fit(MARKET, t, context=RunContext(mpor=4)), pos, MARKET, t)
    p = MARKET.prices["BTC"].loc[:t]
    r = np.log(p).diff().dropna().to_numpy()[-500:]
    assert m == pytest.approx(np.sort(-p.iloc[-1] * np.expm1(2.0 * r))[-5], rel=1e-12)
    assert "mpor_days" not in mm.model_parameters("historical_var") and "seed" not in mm.model_parameters("fhs_garch")


def test_ten_day_fhs_and_historical_run():
    models = {"fhs": mm.make_model("fhs_garch", n_paths=1000),
              "hs": mm.make_model("historical_var"),
              "hs_sqrt": mm.make_model("historical_var", scaling="sqrt_time")}
    res = Backtest(MARKET, {"long BTC spot": SEL["long BTC spot"]}, models, mpor_days=10,
                   start="2021-01-01", end="2021-06-30").run()
    f = res.to_frame()
    assert set(f["model"]) == {"fhs", "hs", "hs_sqrt"} and (f["margin"] > 0).all()


@pytest.mark.parametrize("name, kwargs, message", [
    ("fhs_garch", {"measure": "cvar"}, "measure must be 'var' or 'es'"),
    ("fhs_garch", {"vol": "figarch"}, r"vol must be one of \['egarch', 'ewma', 'garch', 'gjr'\]"),
    ("fhs_garch", {"n_paths": 10}, "n_paths must be an integer >= 100"),
    ("fhs_garch", {"level": 1.2}, r"level must be in \[0.5, 1.0\)"),
    ("historical_var", {"scaling": "linear"}, "scaling must be 'overlapping' or 'sqrt_time'"),
    ("ewma_var", {"lam": 1.5}, r"lam must be in \(0.0, 1.0\)"),
])
def test_bad_parameters(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mm.make_model(name, **kwargs)


def test_ewma_covariance_matches_recursion():
    model = mm.make_model("ewma_var", lam=0.9)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 2))
    cov = np.cov(x[:30].T, ddof=0)
    for row in x[30:]:
        cov = 0.9 * cov + 0.1 * np.outer(row, row)
    np.testing.assert_allclose(model.covariance(x), cov, rtol=1e-12)


def test_ewma_var_matches_normal_closed_form_for_one_asset():
    """Long 1 BTC, normal EWMA: VaR = S (1 - exp(-z_99 sigma)), sigma^2 the EWMA forecast."""
    from scipy.stats import norm

    t = pd.Timestamp("2021-06-01", tz="UTC")
    model = mm.make_model("ewma_var", n_paths=200_000, lookback=500)
    pos = [mm.Position(mm.Spot("BTC"), 1.0)]
    m = model.margin(model.fit(MARKET, t), pos, MARKET, t)
    r = np.log(MARKET.prices["BTC"].loc[:t]).diff().dropna().to_numpy()[-500:]
    var0 = np.mean((r[:30] - r[:30].mean()) ** 2)
    for x in r[30:]:
        var0 = 0.94 * var0 + 0.06 * x * x
    s = MARKET.prices["BTC"].loc[t]
    expected = s * (1 - np.exp(-norm.ppf(0.99) * np.sqrt(var0)))
    assert m == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("book", ["long BTC / short ETH perpetuals", "short BTC 25-delta strangle (30d, rolled at 7d)"])
def test_fhs_multi_day_revalues_every_bootstrap_path(book):
    """Over h > 1 days FHS bootstraps window rows jointly, propagates each asset's variance and revalues every
    path (with the implied-vol changes of the same rows for option books): rebuilt here from its pieces."""
    from marginlab.models.simulation import _book_history, _draws
    from marginlab.models.volatility import simulate_paths

    t = pd.Timestamp("2022-03-15", tz="UTC")
    model = mm.make_model("fhs_garch", n_paths=3000)
    pos = SEL[book].positions_at(t, MARKET)
    st = model.fit(MARKET, t, context=RunContext(seed=5, mpor=3))
    m = model.margin(st, pos, MARKET, t)
    bk, rows, rets, dvol = _book_history(pos, MARKET, st.i, model.lookback, model.min_obs)
    fits = [st.estimates.fit(MARKET, a, int(rows[0]), st.i) for a in bk.assets]
    z = np.column_stack([f.std_resids for f in fits])
    draws = _draws(5, int((t + pd.Timedelta(days=1)).timestamp()), rows.size, 3000, 3)  # the close of t, in s
    spot = simulate_paths(fits, z, draws) / 100
    vol_shocks = None
    if dvol is not None:
        cols = [MARKET.asset_index[a] for a in bk.assets]
        vol_shocks = MARKET.vol_array[st.i, cols] * (np.exp(dvol[draws].sum(axis=1)) - 1.0)
    pnl = mm.revalue(pos, MARKET, t, spot, vol_shocks, horizon_days=3)
    assert m == max(risk_measure(-pnl, "var", 0.99), 0.0)
    assert m > 0


def test_forecast_records_var_es_and_pit_of_the_scenario_distribution():
    """An ES model records its ES (the margin) and its VaR at the ES level; the PIT of the realised loss is
    its rank PIT (k + 1/2)/(N + 1), k the scenario losses at or above it (hand-computed from the window's moves)."""
    book = {"long BTC spot": mm.FixedBook("one BTC", (mm.Position(mm.Spot("BTC"), 1.0),))}
    res = Backtest(MARKET, book, {"hs es": mm.make_model("historical_es", lookback=500)}, start="2021-06-01",
                   end="2021-06-10").run()
    f = res.to_frame().set_index("date")
    t = pd.Timestamp("2021-06-05", tz="UTC")
    p = MARKET.prices["BTC"].loc[:t]
    losses = -p.iloc[-1] * np.expm1(np.log(p).diff().dropna().to_numpy()[-500:])
    top = np.sort(losses)[::-1][:13]  # k = ceil(500 x 2.5%) = 13; the tail holds 12.5 scenarios
    row = f.loc[t]
    assert row["var"] == pytest.approx(top[-1], rel=1e-12)
    assert row["es"] == pytest.approx((top[:12].sum() + 0.5 * top[12]) / 12.5, rel=1e-12)  # Acerbi-Tasche
    assert row["margin"] == row["es"]
    k = np.count_nonzero(losses >= row["loss"])  # rank PIT of the realisation among the N = 500 scenarios
    assert row["pit"] == pytest.approx((k + 0.5) / 501, abs=1e-15)
    assert mm.make_model("historical_es").tail_prob == pytest.approx(0.025)
    assert mm.make_model("fhs_garch").tail_prob == pytest.approx(0.01) and mm.make_model("static").tail_prob is None


def test_fhs_long_run_floor_is_the_zero_mean_variance():
    """The long-run floor is the mean squared return (zero mean, like the filter, its backcast and the README's
    formulas), not the demeaned sample variance: on BTC at 2020-10-10 (the 1.8 years of this panel) the
    floor binds and the margin is the 10th largest loss of sqrt(mean r^2) z_s; the demeaned variance differs."""
    t = pd.Timestamp("2020-10-10", tz="UTC")
    i = MARKET.loc_of(t)
    pos = [mm.Position(mm.Spot("BTC"), 1.0)]
    model = mm.make_model("fhs_garch", vol_floor="long_run")
    st = model.fit(MARKET, t, context=RunContext(seed=3))
    fit = st.estimates.fit(MARKET, "BTC", max(1, i - 999), i)
    r = MARKET.log_return_array[1:i + 1, MARKET.asset_index["BTC"]]
    floor = float(np.mean(r ** 2)) * 1e4
    assert floor > fit.sigma2_next and abs(np.var(r) * 1e4 / floor - 1) > 1e-3
    losses = -MARKET.prices["BTC"].iloc[i] * np.expm1(np.sqrt(floor) * fit.std_resids / 100)
    k = int(np.ceil(fit.std_resids.size * 0.01))
    assert model.margin(st, pos, MARKET, t) == pytest.approx(np.sort(losses)[-k], rel=1e-12)


def test_fhs_ewma_lambda_is_a_parameter():
    """FHS vol="ewma" takes lam (e.g. 0.94^(1/24) on hourly panels): the filter's one-step variance is the
    RiskMetrics recursion sigma2_t = lam sigma2_{t-1} + (1 - lam) r_{t-1}^2 from arch's backcast, written out
    here by hand; lam with another process is refused."""
    model = mm.make_model("fhs_garch", vol="ewma", lam=0.99)
    assert model.spec.lam == 0.99 and mm.make_model("fhs_garch", vol="ewma").spec.lam == 0.94
    t = pd.Timestamp("2022-06-01", tz="UTC")
    st = model.fit(MARKET, t, context=RunContext(seed=3))
    i = MARKET.loc_of(t)
    fit = st.estimates.fit(MARKET, "BTC", i - 999, i)
    r = MARKET.log_return_array[i - 999:i + 1, MARKET.asset_index["BTC"]] * 100
    w = 0.94 ** np.arange(75)
    s2 = float(np.sum(w * r[:75] ** 2) / w.sum())  # arch's backcast (its own 0.94 weights)
    for x in r:
        s2 = 0.99 * s2 + 0.01 * x * x
    assert fit.sigma2_next == pytest.approx(s2, rel=1e-12)
    with pytest.raises(ValueError, match="lam"):
        mm.make_model("fhs_garch", vol="garch", lam=0.97)


def test_fhs_long_run_floor_records_the_observations_it_uses():
    """vol_floor="long_run" uses the loaded panel's history only: on 2024-03-01 the BTC floor uses 3,381 returns
    (10 years would be 3,650; the data start 2014-11-28) on the full panel and 1,369 on a panel loaded from
    2020-06-01, and the margins differ. The estimates table records both the floor and its observation count,
    counted here from the loaded prices."""
    t = pd.Timestamp("2024-03-01", tz="UTC")
    model = mm.make_model("fhs_garch", vol_floor="long_run")
    out = {}
    for start in (None, "2020-06-01"):
        market = ds.load_market(["BTC"], start=start, end="2024-03-05")
        res = Backtest(market, {"long BTC spot": mm.reference_portfolios()["long BTC spot"]}, {"floor": model},
                       mpor_days=1, start=t,
                       end=t, seed=1).run()
        row = res.estimates.iloc[-1]
        r = np.diff(np.log(market.prices["BTC"].loc[:t].to_numpy()))[-3650:]
        assert row["long_run_obs"] == np.isfinite(r).sum()
        assert row["long_run_var"] == pytest.approx(np.nanmean(r ** 2) * 1e4, rel=1e-12)
        out[start] = (row["long_run_obs"], res.to_frame()["margin"].iloc[-1])
    assert out[None][0] == 3381 and out["2020-06-01"][0] == 1369
    assert out[None][1] != out["2020-06-01"][1]
