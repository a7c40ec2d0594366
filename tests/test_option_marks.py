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
