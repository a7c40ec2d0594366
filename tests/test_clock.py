"""One clock for every observation (issue 11 section 1): a row is observed at its close.

A daily row labelled D is the close at D 24:00 UTC; an hourly row labelled H the close at
H + 1 h. Time to expiry, settlement, strategy openings and delta hedges run on those times.
Each test here fails on the code that used the label as the valuation time.
"""

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.datasets import DataError, MarketData
from marginlab.datasets.conventions import YEAR, breach, date_format, observation_times, utc, year_fraction
from marginlab.validation import Backtest

HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)


def toy(prices, vols=None, start="2021-01-01", freq="1d"):
    idx = pd.date_range(start, periods=len(prices), freq="D" if freq == "1d" else "h", tz="UTC", name="time")
    p = pd.DataFrame({"BTC": prices}, index=idx, dtype=float)
    iv = pd.DataFrame({"BTC": vols if vols is not None else [0.5] * len(prices)}, index=idx, dtype=float)
    return MarketData(prices=p, implied_vol=iv, freq=freq)


def test_conventions():
    assert utc("2021-01-01") == pd.Timestamp("2021-01-01", tz="UTC")
    assert utc(pd.Timestamp("2021-01-01 02:00", tz="Europe/Paris")) == pd.Timestamp("2021-01-01 01:00", tz="UTC")
    assert utc(None) is None
    assert year_fraction(pd.Timestamp("2021-01-01", tz="UTC"), pd.Timestamp("2022-01-01", tz="UTC")) == 1.0
    idx = pd.date_range("2021-01-01", periods=3, freq="D", tz="UTC")
    np.testing.assert_allclose(year_fraction(idx, idx[-1]) * 365, [2.0, 1.0, 0.0])
    assert list(observation_times(idx, "1d")) == list(idx + DAY)
    assert list(observation_times(idx, "1h")) == list(idx + HOUR)
    np.testing.assert_array_equal(breach([1.0, 2.0, 3.0, 1.0], [2.0, 2.0, 2.0, np.nan]), [False, False, True, False])
    assert [date_format(f) for f in ("1d", "1h")] == ["%Y-%m-%d", "%Y-%m-%d %H:%M"]


def test_market_observation_time_and_helpers():
    daily = toy([100.0, 101.0, 102.0])
    assert daily.observation_time[0] == pd.Timestamp("2021-01-02", tz="UTC")
    assert daily.horizon_years(2) == 2 / 365
    assert daily.years_to(0, pd.DatetimeIndex([pd.Timestamp("2021-01-03 08:00", tz="UTC")]))[0] == \
        pytest.approx((1 + 8 / 24) / 365, rel=1e-15)
    # the last row observed at or before 2021-01-03 08:00 is the one labelled 2021-01-02 (close at 01-03 00:00)
    assert daily.last_observed("2021-01-03 08:00") == 1
    assert daily.last_observed("2021-01-01 23:00") == -1
    hourly = toy([100.0] * 10, freq="1h")
    assert hourly.observation_time[0] == pd.Timestamp("2021-01-01 01:00", tz="UTC")
    assert hourly.horizon_years(24) == pytest.approx(1 / 365, rel=1e-15)
    assert hourly.periods_per_year == 8760
    assert hourly.last_observed("2021-01-01 08:00") == 7


def test_time_to_expiry_runs_from_the_close():
    # an option marked on the row labelled 2021-01-01 is marked at its close, 2021-01-02 00:00:
    # 24 hours less to run than from the label
    market = toy([100.0, 100.0, 100.0])
    expiry = pd.Timestamp("2021-01-10 08:00", tz="UTC")
    book = [mm.Position(mm.Option("BTC", expiry, 100.0, "call"), 1.0)]
    tau = (8 + 8 / 24) / 365
    assert mm.mark_to_market(book, market, market.index[0])[0] == pytest.approx(
        mm.black76_price(100.0, 100.0, tau, 0.5, True), rel=1e-14)
    model = mm.make_model("static")
    assert model.margin(None, book, market, market.index[0]) == pytest.approx(
        mm.black76_price(100.0, 100.0, tau, 0.5, True), rel=1e-14)


def test_settlement_on_last_close_at_or_before_the_fixing():
    # expiry 2021-01-03 08:00. Daily: the last close at or before it is 2021-01-03 00:00 (row labelled
    # 2021-01-02, price 90), not the close of 2021-01-03 (at 01-04 00:00, price 130, 16 hours later)
    market = toy([100.0, 90.0, 130.0, 140.0])
    expiry = pd.Timestamp("2021-01-03 08:00", tz="UTC")
    book = [mm.Position(mm.Option("BTC", expiry, 100.0, "put"), 1.0)]
    p0 = mm.black76_price(100.0, 100.0, (1 + 8 / 24) / 365, 0.5, False)
    assert mm.realised_pnl(book, market, market.index[0], 2) == pytest.approx(10.0 - p0, rel=1e-12)
    # hourly: the close observed at 08:00 itself (the row labelled 07:00)
    prices = [100.0] * 7 + [95.0, 80.0, 70.0]  # rows 00:00 .. 09:00; row 07:00 closes at 08:00 at 95
    hourly = toy(prices, start="2021-01-03", freq="1h")
    p0 = mm.black76_price(100.0, 100.0, 7 / 8760, 0.5, False)
    assert mm.realised_pnl(book, hourly, hourly.index[0], 9) == pytest.approx(5.0 - p0, rel=1e-12)


def test_option_strategy_opens_at_the_observation_time():
    market = ds.load_market(["BTC"], start="2021-03-24", end="2021-05-31")
    book = mm.reference_portfolios()["short BTC 25-delta strangle (30d, rolled at 7d)"]
    positions = book.positions_at(market.index[0], market)
    opened = pd.Timestamp("2021-03-25", tz="UTC")  # close of 2021-03-24
    for p in positions:
        assert p.instrument.expiry == opened + pd.Timedelta(days=30, hours=8)
    call = next(p.instrument for p in positions if p.instrument.is_call)
    spot, vol = market.prices["BTC"].iloc[0], market.implied_vol["BTC"].iloc[0]
    strike = mm.strike_from_delta(spot, (30 + 8 / 24) / 365, vol, 0.25, True)
    assert call.strike == pytest.approx(strike, abs=0.006)
    # rolled after 23 days: the next options are opened at the close of 2021-04-16
    later = book.positions_at(pd.Timestamp("2021-04-16", tz="UTC"), market)
    assert later[0].instrument.expiry == pd.Timestamp("2021-05-17 08:00", tz="UTC")
    # the frozen strategy keeps no mutable cache
    assert not any(isinstance(v, dict) for v in vars(book).values())


def test_delta_hedge_from_the_observation_time():
    market = ds.load_market(["BTC"], start="2021-03-24", end="2021-05-31")
    book = mm.reference_portfolios()["short BTC ATM straddle, delta-hedged daily"]
    t = pd.Timestamp("2021-04-02", tz="UTC")
    positions = book.positions_at(t, market)
    opts = [p for p in positions if isinstance(p.instrument, mm.Option)]
    i = market.loc_of(t)
    spot = market.price_array[i, 0]
    tau = np.array([(p.instrument.expiry - (t + DAY)) / YEAR for p in opts])
    vols = np.array([mm.revaluation.option_vols(market, "BTC", i, market.vol_array[i, 0], p.instrument.strike,
                                                spot, tau[k]) for k, p in enumerate(opts)]).ravel()
    g = mm.black76_greeks(spot, np.array([p.instrument.strike for p in opts]), tau, vols,
                          np.array([p.instrument.is_call for p in opts]))
    hedge = positions[-1]
    assert isinstance(hedge.instrument, mm.Perpetual)
    assert hedge.quantity == pytest.approx(-np.sum(g["delta"] * [p.quantity for p in opts]), rel=1e-12)


def test_revalue_ages_by_observations_through_the_step():
    # one observation = one hour on an hourly panel (the old code aged by one day: 24x the decay)
    rng = np.random.default_rng(3)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    hourly = toy(prices, start="2021-01-01", freq="1h")
    expiry = pd.Timestamp("2021-01-20 08:00", tz="UTC")
    book = [mm.Position(mm.Option("BTC", expiry, 100.0, "call"), -1.0),
            mm.Position(mm.Option("BTC", expiry, 100.0, "put"), -1.0)]
    i = 59
    t, s0 = hourly.index[i], prices[i]
    tau0 = (expiry - (t + HOUR)) / YEAR

    def value(s, tau):
        return -(mm.black76_price(s, 100.0, tau, 0.5, True) + mm.black76_price(s, 100.0, tau, 0.5, False))

    theta_1h = value(s0, tau0 - 1 / 8760) - value(s0, tau0)
    assert mm.revalue(book, hourly, t, np.zeros(1), horizon=1)[0] == pytest.approx(theta_1h, rel=1e-10)
    assert mm.revalue(book, hourly, t, np.zeros(1), horizon=24)[0] == pytest.approx(
        value(s0, tau0 - 1 / 365) - value(s0, tau0), rel=1e-10)
    with pytest.raises(ValueError, match="horizon_days is ambiguous"):
        mm.revalue(book, hourly, t, np.zeros(1), horizon_days=1)
    daily = toy(prices[:30])
    assert mm.revalue(book, daily, daily.index[5], np.zeros(1), horizon_days=2)[0] == \
        mm.revalue(book, daily, daily.index[5], np.zeros(1), horizon=2)[0]

    # historical VaR of the hourly option book: the book revalued on each of the window's hourly moves,
    # aged one hour (reference computed here with Black-76 directly)
    model = mm.make_model("historical_var", lookback=40, min_obs=20)
    margin = model.margin(model.fit(hourly, t), book, hourly, t)
    moves = np.log(prices[i - 39:i + 1] / prices[i - 40:i])  # the last 40 hourly log returns (constant vol)
    losses = -np.array([value(s0 * np.exp(r), tau0 - 1 / 8760) - value(s0, tau0) for r in moves])
    k = int(np.ceil(40 * 0.01))
    assert margin == pytest.approx(max(np.sort(losses)[::-1][k - 1], 0.0), rel=1e-10)


def test_hourly_dvol_only_after_it_is_published():
    # DVOL of 2021-05-19 (the crash day, close 124.83) is known at 2021-05-19 24:00: the hours of
    # 2021-05-19 carry DVOL of 2021-05-18 (117.01), except the last one, observed at 24:00 with the daily row
    hourly = ds.load_market(["BTC"], freq="1h", start="2021-05-18", end="2021-05-20 23:00")
    dvol = ds.load_implied_vol("BTC")
    day = hourly.implied_vol["BTC"].loc["2021-05-19"]
    assert (day.iloc[:23] == dvol.loc["2021-05-18"]).all()
    assert day.iloc[23] == dvol.loc["2021-05-19"]
    daily = ds.load_market(["BTC"], start="2021-05-18", end="2021-05-20")
    # the hour closing at D 24:00 and the daily row D are the same observation
    assert daily.implied_vol.loc["2021-05-19", "BTC"] == hourly.implied_vol.loc["2021-05-19 23:00", "BTC"]
    assert daily.observation_time[daily.loc_of("2021-05-19")] == \
        hourly.observation_time[hourly.loc_of("2021-05-19 23:00")]


def test_funding_accrual_window_daily_and_hourly():
    # a day's funding (3 x the Binance daily mean print) is booked at the row observed at the day's end;
    # the P&L from t to t + h charges what was paid over [observation of t, observation of t + h)
    daily = ds.load_market(["BTC"], start="2021-01-01", end="2021-01-31")
    hourly = ds.load_market(["BTC"], freq="1h", start="2021-01-01", end="2021-01-31 23:00")
    daily_rate = 3 * ds.load_funding("binance", "2021-01-01", "2021-01-31")["funding_mean"]
    np.testing.assert_allclose(daily.funding["BTC"].to_numpy(), daily_rate.to_numpy(), rtol=1e-15)
    per_day = hourly.funding["BTC"].fillna(0.0).groupby(hourly.index.floor("D")).sum()
    np.testing.assert_allclose(per_day.to_numpy(), daily_rate.to_numpy(), rtol=1e-15)
    book = [mm.Position(mm.Perpetual("BTC"), -2.0)]
    t = pd.Timestamp("2021-01-10 20:00", tz="UTC")  # observed 21:00; 24 hours later: 2021-01-11 21:00
    i = hourly.loc_of(t)
    price = hourly.price_array[:, 0]
    with_funding = mm.realised_pnl(book, hourly, t, 24, include_funding=True)
    expected = -2.0 * (price[i + 24] - price[i]) + 2.0 * price[i] * daily_rate.loc["2021-01-10"]
    assert with_funding == pytest.approx(expected, rel=1e-12)
    # the daily panel charges the funding of the days after t's close
    t = pd.Timestamp("2021-01-10", tz="UTC")
    i = daily.loc_of(t)
    expected = -2.0 * (daily.price_array[i + 2, 0] - daily.price_array[i, 0]) + \
        2.0 * daily.price_array[i, 0] * daily_rate.loc["2021-01-11":"2021-01-12"].sum()
    assert mm.realised_pnl(book, daily, t, 2, include_funding=True) == pytest.approx(expected, rel=1e-12)


def test_load_market_as_of_keeps_what_was_known():
    t = pd.Timestamp("2021-06-02 02:00", tz="UTC")
    known = ds.load_market(["BTC"], freq="1h", start="2021-05-01", with_option_chains=True, as_of=t)
    assert known.index[-1] == pd.Timestamp("2021-06-02 01:00", tz="UTC")  # the bar closing at 02:00
    assert known.implied_vol["BTC"].iloc[-1] == ds.load_implied_vol("BTC").loc["2021-06-01"]
    assert known.option_chains["quote_time"].max() < t
    assert known.funding["BTC"].last_valid_index() == pd.Timestamp("2021-06-01 23:00", tz="UTC")
    with pytest.raises(ds.DataError, match="before the first price close"):
        ds.load_market(["BTC"], as_of="2010-01-01")


def test_funding_missing_over_the_mpor_is_an_error_never_zero():
    """include_funding on perpetuals without funding data (ETH; BTC before 2019-09-10): one line naming the book,
    the asset, the first date affected and the coverage, never a silent 0 (found by a reviewer)."""
    market = ds.load_market(["BTC", "ETH"], start="2019-08-01", end="2022-03-31")
    pair = mm.ConstantNotionalBook("pair", ((mm.Perpetual("BTC"), 1e6), (mm.Perpetual("ETH"), -1e6)))
    with pytest.raises(DataError, match=r"^portfolio 'pair': include_funding is set but the ETH perpetual has no "
                                        r"funding data over the MPOR after 2022-02-01 \(funding data covers BTC from "
                                        r"2019-09-10 to 2022-03-31\): set include_funding = false or restrict"):
        Backtest(market, [pair], [mm.make_model("static")], start="2022-02-01", include_funding=True).run()
    btc = mm.FixedBook("btc", (mm.Position(mm.Perpetual("BTC"), 1.0),))
    # the window after 2019-09-07 (MPOR 3: rows 09-08 .. 09-10) straddles the start of the funding series
    with pytest.raises(DataError, match=r"^portfolio 'btc': .* BTC perpetual .* after 2019-09-07 \(funding data covers "
                                        r"BTC from 2019-09-10"):
        Backtest(market, [btc], [mm.make_model("static")], mpor_days=3, start="2019-09-07",
                 include_funding=True).run()
    ok = Backtest(market, [btc], [mm.make_model("static")], mpor_days=3, start="2019-09-09", end="2019-09-30",
                  include_funding=True).run().frame
    assert ok["date"].iloc[0] == pd.Timestamp("2019-09-09", tz="UTC") and ok["pnl"].notna().all()
    # a market without any funding table
    toy = MarketData(prices=market.prices.iloc[:5], implied_vol=market.implied_vol.iloc[:5])
    with pytest.raises(DataError, match=r"BTC perpetual has no funding data .* \(the market has no funding data\)"):
        mm.realised_pnl([mm.Position(mm.Perpetual("BTC"), 1.0)], toy, toy.index[0], 1, include_funding=True)
    # hourly panels: the hours between two daily bookings paid nothing yet (0), outside the series NaN
    hourly = ds.load_market(["BTC"], freq="1h", start="2019-09-09", end="2019-09-11 23:00")
    funding = hourly.funding["BTC"]
    assert funding.loc[:"2019-09-09 23:00"].isna().all() and funding.loc["2019-09-10":].notna().all()
    assert (funding.loc["2019-09-10 00:00":"2019-09-10 22:00"] == 0.0).all() and funding.loc["2019-09-10 23:00"] > 0
