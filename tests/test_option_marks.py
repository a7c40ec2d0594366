"""Option marks (issue 11 section 2): the smile is a market input fitted once at load against the
DVOL known at each snapshot, applies only after its snapshot, and one P&L is marked under one
vol regime. Each test fails on the code that fitted the smile inside the pricing module against
the same-day DVOL close."""

import functools

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.datasets import MarketData
from marginlab.datasets.smile import fit_smile, smile_ratio
from marginlab.models.revaluation import option_vols


@functools.cache
def daily():
    return ds.load_market(["BTC"], start="2021-05-01", end="2022-06-30", with_option_chains=True)


def test_smile_paired_with_the_dvol_known_at_the_snapshot():
    market = daily()
    chains, dvol = market.option_chains, ds.load_implied_vol("BTC")
    # the chain day with the largest DVOL move from the previous close
    dates = pd.DatetimeIndex(sorted(chains["date"].unique()))
    move = (dvol.reindex(dates).to_numpy() / dvol.reindex(dates - pd.Timedelta(days=1)).to_numpy())
    day = dates[np.nanargmax(np.abs(np.log(move)))]
    prev = day - pd.Timedelta(days=1)
    assert abs(np.log(dvol[day] / dvol[prev])) > 0.08  # 2022-01-22: DVOL +10%
    row = market.smile.set_index("date").loc[day]
    assert row["dvol"] == dvol[prev] and row["dvol_time"] == day  # DVOL of D-1, known at D 00:00
    assert row["quote_time"] < day + pd.Timedelta(hours=6)
    chain = chains[chains["date"] == day]
    coef = fit_smile(chain, dvol[prev])
    np.testing.assert_allclose(row[["b0", "b1", "b2", "b3"]].to_numpy(float), coef, rtol=1e-12)
    # at the row of D (observed at D 24:00) an option's vol moves with DVOL since the snapshot: DVOL_D x ratio
    i = market.loc_of(day)
    k, s, tau = 40_000.0, market.price_array[i, 0], 30 / 365
    expected = dvol[day] * smile_ratio(coef, np.log(k / s), tau)
    assert float(option_vols(market, "BTC", i, dvol[day], k, s, tau)) == pytest.approx(float(expected), rel=1e-12)


def test_smile_applies_only_after_its_snapshot():
    hourly = ds.load_market(["BTC"], freq="1h", start="2021-05-25", with_option_chains=True)
    coefs = hourly.smile_coefficients("BTC")
    table = hourly.smile.set_index("date")
    first = table.index[0]
    assert first == pd.Timestamp("2021-06-01", tz="UTC")
    q1, q2 = table.loc[first, "quote_time"], table.loc["2021-06-02", "quote_time"]
    for label in pd.date_range("2021-06-01 00:00", "2021-06-02 06:00", freq="h", tz="UTC"):
        i, obs = hourly.loc_of(label), label + pd.Timedelta(hours=1)
        if obs < q1:
            assert np.isnan(coefs[i]).all(), label  # no snapshot known yet: flat DVOL
        elif obs < q2:
            np.testing.assert_array_equal(coefs[i], table.loc[first, ["b0", "b1", "b2", "b3"]].to_numpy(float))
        else:
            np.testing.assert_array_equal(coefs[i], table.loc["2021-06-02", ["b0", "b1", "b2", "b3"]].to_numpy(float))
    # daily rows: the chain day and the three days after it (96 hours after the snapshot)
    market = daily()
    last = market.smile["quote_time"].max()
    assert last.normalize() == pd.Timestamp("2022-04-30", tz="UTC")
    fitted = market.smile_coefficients("BTC")
    in_force = [bool(np.isfinite(fitted[market.loc_of(d), 1]) and fitted[market.loc_of(d), 1] != 0)
                for d in ("2022-04-30", "2022-05-03", "2022-05-04")]
    assert in_force == [True, True, False]


def test_models_write_nothing_into_the_market():
    market = daily()
    t = pd.Timestamp("2022-02-14", tz="UTC")
    book = mm.reference_portfolios()["short BTC 25-delta strangle (30d, rolled at 7d)"]
    positions = book.positions_at(t, market)
    for name in ("static", "deribit_standard", "historical_var"):
        model = mm.make_model(name)
        model.margin(model.fit(market, t), positions, market, t)
    mm.realised_pnl(positions, market, t, 1)
    allowed = {f for f in MarketData.__dataclass_fields__} | {
        n for n, v in vars(MarketData).items() if isinstance(v, functools.cached_property)}
    assert set(vars(market)) <= allowed


def test_one_vol_regime_per_pnl_at_the_edge_of_smile_coverage():
    # 2022-05-03 is the last daily row under the 2022-04-30 smile; 2022-05-04 is past its 96 hours.
    # The realised P&L marks both ends under the regime of t: it equals the scenario revaluation at t
    # with the realised spot and DVOL moves (marking t + 1 under the flat regime jumped by -$12.1k).
    market = daily()
    book = mm.reference_portfolios()["short BTC ATM straddle, delta-hedged daily"]
    t = pd.Timestamp("2022-05-03", tz="UTC")
    i = market.loc_of(t)
    positions = book.positions_at(t, market)
    realised = mm.realised_pnl(positions, market, t, 1)
    shock = np.log(market.price_array[i + 1, 0] / market.price_array[i, 0])
    dvol = market.vol_array[i + 1, 0] - market.vol_array[i, 0]
    scenario = mm.revalue(positions, market, t, np.array([shock]), np.array([dvol]), horizon=1)[0]
    assert realised == pytest.approx(scenario, rel=1e-10, abs=1e-6)
    # marking t + 1 under its own (flat) regime instead would add an artificial jump of ~-$12k
    opts = [p for p in positions if isinstance(p.instrument, mm.Option)]
    s1, v1 = market.price_array[i + 1, 0], market.vol_array[i + 1, 0]
    assert market.smile_coefficients("BTC")[i + 1, 1:].tolist() in ([0.0, 0.0, 0.0], [np.nan] * 3) or \
        np.isnan(market.smile_coefficients("BTC")[i + 1]).all()  # no fitted smile in force at t + 1
    jump = 0.0
    for p in opts:
        tau1 = market.years_to(i + 1, pd.DatetimeIndex([p.instrument.expiry]))[0]
        flat = mm.black76_price(s1, p.instrument.strike, tau1, float(option_vols(
            market, "BTC", i + 1, v1, p.instrument.strike, s1, tau1)), p.instrument.is_call)
        smiled = mm.black76_price(s1, p.instrument.strike, tau1, float(option_vols(
            market, "BTC", i, v1, p.instrument.strike, s1, tau1)), p.instrument.is_call)
        jump += p.quantity * float(flat - smiled)
    assert jump < -5_000
