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
    # marking t + 1 under its own regime (flat: DVOL mapped to ATM) instead would add an artificial jump
    # (-$12.1k when the flat regime was the raw DVOL, -$2.8k with DVOL mapped to the ATM level)
    opts = [p for p in positions if isinstance(p.instrument, mm.Option)]
    s1, v1 = market.price_array[i + 1, 0], market.vol_array[i + 1, 0]
    assert (market.smile_coefficients("BTC")[i + 1, 1:] == 0).all()  # no fitted smile in force at t + 1
    jump = 0.0
    for p in opts:
        tau1 = market.years_to(i + 1, pd.DatetimeIndex([p.instrument.expiry]))[0]
        flat = mm.black76_price(s1, p.instrument.strike, tau1, float(option_vols(
            market, "BTC", i + 1, v1, p.instrument.strike, s1, tau1)), p.instrument.is_call)
        smiled = mm.black76_price(s1, p.instrument.strike, tau1, float(option_vols(
            market, "BTC", i, v1, p.instrument.strike, s1, tau1)), p.instrument.is_call)
        jump += p.quantity * float(flat - smiled)
    assert jump < -2_000


def atm_30d(chain):
    """30-day ATM implied vol of one snapshot, measured from the quotes (independent of the smile fit).

    Per expiry: out-of-the-money mark IVs interpolated linearly in ln(K/F) at 0; then total variance
    interpolated linearly between the expiries around 30 days.
    """
    points = []
    for _, g in chain[(chain["dte"] >= 2) & (chain["dte"] <= 120)].groupby("expiry"):
        f, t = g["underlying_price"].iloc[0], g["dte"].iloc[0] / 365
        otm = g[np.where(g["kind"] == "call", g["strike"] >= f, g["strike"] <= f)]
        x, iv = np.log(otm["strike"] / f).to_numpy(), otm["mark_iv"].to_numpy()
        if x.min() <= 0 <= x.max():
            order = np.argsort(x)
            points.append((t, np.interp(0.0, x[order], iv[order])))
    p = np.array(points)
    t0 = 30 / 365
    (t1, v1), (t2, v2) = p[p[:, 0] <= t0][-1], p[p[:, 0] >= t0][0]
    w = v1**2 * t1 + (v2**2 * t2 - v1**2 * t1) * ((t0 - t1) / (t2 - t1) if t2 > t1 else 0.0)
    return float(np.sqrt(w / t0))


def test_dvol_mapped_to_atm_on_held_out_chain_months():
    market = daily()
    smile = market.smile.copy()
    smile["atm"] = [atm_30d(g) for _, g in market.option_chains.groupby("quote_time")]
    smile["month"] = smile["date"].dt.strftime("%Y-%m")
    gap = 100 * (smile["dvol"] - smile["atm"])
    assert 6.5 < np.median(gap) < 8.5  # DVOL sits ~7.4 vol points above the 30-day ATM vol
    errors, raw = [], []
    for month in smile["month"].unique():  # leave one chain month out
        train, test = smile[smile["month"] != month], smile[smile["month"] == month]
        errors.append(100 * np.abs(train["b0"].mean() * test["dvol"] - test["atm"]))
        raw.append(100 * np.abs(test["dvol"] - test["atm"]))
    held_out, flat = np.median(np.concatenate(errors)), np.median(np.concatenate(raw))
    assert held_out < 2.5 and held_out < flat / 3, (held_out, flat)
    # fitted on 2021 (what a participant knew in 2022), tested on 2022
    train, test = smile[smile["date"].dt.year == 2021], smile[smile["date"].dt.year == 2022]
    assert np.median(100 * np.abs(train["b0"].mean() * test["dvol"] - test["atm"])) < 2.0
    # the regime: before the first snapshot flat DVOL; after a smile's 96 hours, DVOL x mean b0 of the
    # snapshots known, flat across strikes
    coefs = market.smile_coefficients("BTC")
    assert np.isnan(coefs[market.loc_of("2021-05-31")]).all()
    np.testing.assert_allclose(coefs[market.loc_of("2022-05-04")], [smile["b0"].mean(), 0, 0, 0], rtol=1e-14)
    july = smile[smile["date"] <= "2021-07-31"]["b0"].mean()
    np.testing.assert_allclose(coefs[market.loc_of("2021-09-01")], [july, 0, 0, 0], rtol=1e-14)
    i = market.loc_of("2022-05-04")
    level = market.vol_array[i, 0]
    assert float(option_vols(market, "BTC", i, level, 20_000.0, 38_000.0, 0.1)) == pytest.approx(
        level * smile["b0"].mean(), rel=1e-14)


def test_inside_smile_coverage_each_end_is_marked_under_its_own_smile():
    # 2022-02-14 and 2022-02-15 both have a fitted smile: the realised P&L is the change of the marks a
    # participant saw (each row's own snapshot), so skew changes between snapshots are P&L
    market = daily()
    book = mm.reference_portfolios()["short BTC 25-delta strangle (30d, rolled at 7d)"]
    t = pd.Timestamp("2022-02-14", tz="UTC")
    positions = book.positions_at(t, market)
    marks = mm.mark_to_market(positions, market, t + pd.Timedelta(days=1)) - mm.mark_to_market(positions, market, t)
    assert mm.realised_pnl(positions, market, t, 1) == pytest.approx(marks.sum(), rel=1e-12)
    shock = np.log(market.price_array[market.loc_of(t) + 1, 0] / market.price_array[market.loc_of(t), 0])
    dvol = market.vol_array[market.loc_of(t) + 1, 0] - market.vol_array[market.loc_of(t), 0]
    sticky = mm.revalue(positions, market, t, np.array([shock]), np.array([dvol]), horizon=1)[0]
    assert abs(sticky - marks.sum()) > 100  # the smile moved between the two snapshots
