"""Portfolio margin: SPAN, the Deribit PM grid, greeks netting, the scenario kernel and offsets.

Reference values: direct Black-76 repricing (the pricing module's NumPy twin), hand computations of
the published methods in ``tests/results/portfolio_margin_worked_examples.py`` (scipy, no marginlab
code), and Deribit's own published risk vectors (``tests/results/deribit_pm_reference.json``).
"""

import json
import math

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from conftest import RESULTS
from marginlab.datasets import MarketData
from marginlab.models.context import RunContext
from marginlab.models.deribit_pm import DERIBIT_PM_VINTAGES, DeribitPMVintage, shocked_vols
from marginlab.models.pricing import black76_greeks, black76_price
from marginlab.models.scenarios import grid_values, revalue_grid
from marginlab.models.shocks import move_quantile
from marginlab.models.span import COMPOSITE_POINTS, SPAN_PRICE_FRACTIONS, SPAN_VOL_DIRECTIONS
from marginlab.validation import Backtest
from marginlab.validation.metrics import METRICS, offset_benefit
from marginlab.validation.study import load_study, parse_study

T = pd.Timestamp("2022-01-01", tz="UTC")  # observed 2022-01-02 00:00 UTC
E1 = pd.Timestamp("2022-01-28 08:00", tz="UTC")


def toy_market(prices=None, vols=None, freq="1d", start="2021-12-30", periods=5):
    prices = prices or {"BTC": 40000.0, "ETH": 2500.0}
    vols = vols or {"BTC": 0.8, "ETH": 0.9}
    idx = pd.date_range(start, periods=periods, freq="D" if freq == "1d" else "h", tz="UTC", name="time")
    p = pd.DataFrame({a: [float(v)] * periods for a, v in prices.items()}, index=idx)
    iv = pd.DataFrame({a: [float(v)] * periods for a, v in vols.items()}, index=idx)
    return MarketData(prices=p, implied_vol=iv, freq=freq)


def option(asset, strike, kind, expiry=E1):
    return mm.Option(asset, expiry, strike, kind)


@pytest.fixture(scope="module")
def market():
    return ds.load_market(["BTC", "ETH"], with_option_chains=True)


# ---------------------------------------------------------------------------------------------- kernel
def test_kernel_is_black76_on_every_scenario_and_the_same_source_without_numba():
    rng = np.random.default_rng(7)
    n, n_scen = 40, 16
    spot = rng.uniform(100, 200, n)
    strike = spot * rng.uniform(0.6, 1.5, n)
    is_call = rng.random(n) < 0.5
    asset = rng.integers(0, 2, n)
    taus = np.vstack([rng.uniform(0.001, 1.0, n), rng.uniform(-0.01, 0.5, n)])  # some expired at level 1
    vols = np.vstack([rng.uniform(0.2, 1.5, n), np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.2, 1.5, n))])
    log_moves = rng.normal(0, 0.2, (n_scen, 2))
    ti, vi = rng.integers(0, 2, n_scen), rng.integers(0, 2, n_scen)
    price, delta = grid_values(spot, strike, is_call, asset, taus, vols, log_moves, ti, vi)
    f = spot[None, :] * np.exp(log_moves[:, asset])
    t, v = taus[ti], vols[vi]
    expected = black76_price(f, strike, t, v, is_call, use_numba=False)
    np.testing.assert_allclose(price, expected, rtol=1e-12, atol=1e-10)
    live = (t > 0) & (v > 0)
    g = black76_greeks(f, strike, np.where(live, t, 1.0), np.where(live, v, 1.0), is_call, use_numba=False)
    np.testing.assert_allclose(delta[live], g["delta"][live], rtol=1e-12, atol=1e-13)
    # the pure-Python path is the kernel's own source (py_func), with the same numbers
    p2, d2 = np.empty_like(price), np.empty_like(delta)
    revalue_grid.py_func(spot, strike, is_call, asset.astype(np.int64), taus, vols, log_moves, ti.astype(np.int64),
                         vi.astype(np.int64), p2, d2)
    np.testing.assert_allclose(p2, price, rtol=1e-13, atol=1e-11)


def test_kernel_inputs_are_checked():
    with pytest.raises(ValueError, match="strike has shape"):
        grid_values([1.0, 2.0], [1.0], [True, True], [0, 0], [1.0, 1.0], [0.5, 0.5], [[0.0]], [0], [0])
    with pytest.raises(ValueError, match="vol_index must index the 1 levels"):
        grid_values([1.0], [1.0], [True], [0], [1.0], [0.5], [[0.0]], [0], [3])


# ------------------------------------------------------------------------------------------------ SPAN
@pytest.mark.parametrize("freq, step_years", [("1d", 1 / 365), ("1h", 1 / 8760)])
def test_span_risk_array_is_black76_repricing_aged_by_one_observation(freq, step_years):
    m = toy_market(freq=freq)
    t = m.index[2]
    opt = option("BTC", 43000.0, "put", expiry=pd.Timestamp("2022-02-25 08:00", tz="UTC"))
    model = mm.make_model("span", price_scan_range=0.12, vol_scan_range=0.3)
    state = model.fit(m, t)
    ra, cd, mark = model.risk_arrays(state, [mm.Position(opt, 1.0)], m, t)[0]
    tau0 = float(m.years_to(m.loc_of(t), np.array([opt.expiry.value]))[0])
    s, v = 40000.0, 0.8
    v0 = black76_price(s, 43000.0, tau0, v, False, use_numba=False)
    for k in range(16):
        f = SPAN_PRICE_FRACTIONS[k] * (3.0 if k >= 14 else 1.0)
        v1 = black76_price(s * (1 + f * 0.12), 43000.0, tau0 - step_years, v * (1 + SPAN_VOL_DIRECTIONS[k] * 0.3),
                           False, use_numba=False)
        assert ra[k] == pytest.approx(-(v1 - v0) * (0.35 if k >= 14 else 1.0), rel=1e-11, abs=1e-8), k
    weights = model.composite_weights
    deltas = [black76_greeks(s * (1 + p * 0.12), 43000.0, tau0 - step_years, v, False, use_numba=False)["delta"]
              for p in COMPOSITE_POINTS]
    assert cd == pytest.approx(float(np.dot(weights, deltas)), rel=1e-12)
    assert mark == pytest.approx(v0, rel=1e-12)


def _black76_scipy(f, k, tau, vol, call):
    """Black-76 (zero rate) from scipy's normal CDF: the reference, independent of marginlab's pricing kernel."""
    from scipy.stats import norm

    sd = vol * math.sqrt(tau)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    return f * norm.cdf(d1) - k * norm.cdf(d2) if call else k * norm.cdf(-d2) - f * norm.cdf(-d1)


@pytest.mark.parametrize("freq, mpor, look_ahead, aged_obs", [
    ("1d", 1, None, 1), ("1d", 2, None, 2), ("1d", 3, 1, 1),  # an explicit look_ahead overrides the MPOR
    ("1h", 1, None, 1), ("1h", 24, None, 24), ("1h", 24, 1, 1)])
def test_span_ages_options_by_the_runs_mpor(freq, mpor, look_ahead, aged_obs):
    """Default look-ahead = the run's MPOR (the horizon of the scan range): aged by MPOR x step (scipy Black-76)."""
    m = toy_market(freq=freq)
    t = m.index[2]
    opt = option("BTC", 43000.0, "put", expiry=pd.Timestamp("2022-02-25 08:00", tz="UTC"))
    model = mm.make_model("span", price_scan_range=0.12, vol_scan_range=0.3, look_ahead=look_ahead)
    state = model.fit(m, t, context=RunContext(mpor=mpor))
    ra = model.risk_arrays(state, [mm.Position(opt, 1.0)], m, t)[0][0]
    tau0 = (opt.expiry - m.observation_time[2]) / pd.Timedelta(days=365)
    tau1 = tau0 - aged_obs * (1 / 365 if freq == "1d" else 1 / 8760)
    v0 = _black76_scipy(40000.0, 43000.0, tau0, 0.8, False)
    want = [-(_black76_scipy(40000.0 * (1 + SPAN_PRICE_FRACTIONS[k] * (3.0 if k >= 14 else 1.0) * 0.12), 43000.0,
                             tau1, 0.8 * (1 + SPAN_VOL_DIRECTIONS[k] * 0.3), False) - v0) * (0.35 if k >= 14 else 1.0)
            for k in range(16)]
    np.testing.assert_allclose(ra, want, rtol=1e-9, atol=1e-8)


def test_span_look_ahead_parameter_is_checked():
    assert mm.make_model("span").look_ahead is None
    assert mm.make_model("span", look_ahead=5).look_ahead == 5
    with pytest.raises(ValueError, match="span: look_ahead must be"):
        mm.make_model("span", look_ahead=-1)
    with pytest.raises(ValueError, match="span: look_ahead must be"):
        mm.make_model("span", look_ahead=1.5)


def _worked_positions(data):
    out = []
    for x in data["positions"]:
        if x["kind"] in ("call", "put"):
            inst = option(x["asset"], x["strike"], x["kind"], pd.Timestamp(x["tier"] + " 08:00", tz="UTC"))
        elif x["kind"] == "perpetual":
            inst = mm.Perpetual(x["asset"])
        else:
            inst = mm.Future(x["asset"], pd.Timestamp(x["tier"] + " 08:00", tz="UTC"))
        out.append(mm.Position(inst, x["quantity"]))
    return out


def test_span_matches_the_hand_computed_worked_example():
    data = json.loads((RESULTS / "span_worked_example.json").read_text())
    p = data["params"]
    model = mm.make_model("span", price_scan_range=p["psr"], vol_scan_range=p["vsr"],
                          extreme_multiple=p["extreme_multiple"], cover_fraction=p["cover_fraction"],
                          intra_spread_rate=p["intra_spread_rate"], inter_spreads=p["inter_spreads"],
                          short_option_minimum=p["short_option_minimum"])
    m = toy_market()
    positions = _worked_positions(data)
    state = model.fit(m, T)
    arrays = model.risk_arrays(state, positions, m, T)
    for got, want in zip(arrays, data["positions"], strict=True):
        np.testing.assert_allclose(got[0], want["risk_array"], rtol=1e-9, atol=1e-7)
        assert got[1] == pytest.approx(want["composite_delta"], rel=1e-10)
    b = model.breakdown(state, positions, m, T)
    frame = b.to_frame()
    for asset, want in data["per_asset"].items():
        for key in ("scan", "scan_scenario", "long_tier_delta", "short_tier_delta", "net_delta", "intra", "inter",
                    "som", "nov", "risk"):
            assert frame.at[asset, key] == pytest.approx(want[key], rel=1e-9, abs=1e-7), (asset, key)
    assert b.total == pytest.approx(data["total"], rel=1e-10)
    # every part fires: calendar spread, inter-commodity credit and the short option minimum (BTC)
    assert frame.at["BTC", "intra"] > 0 and (frame["inter"] > 0).all()
    assert frame.at["BTC", "risk"] == frame.at["BTC", "som"] > frame.at["BTC", "scan"] + frame.at["BTC", "intra"] - \
        frame.at["BTC", "inter"]


def test_span_risk_arrays_are_computed_once_per_contract_and_date(market):
    model = mm.make_model("span")
    books = mm.reference_portfolios()
    t = pd.Timestamp("2022-03-01", tz="UTC")
    context = RunContext()
    state = model.fit(market, t, context=context)
    straddle = books["short BTC ATM straddle, delta-hedged daily"].positions_at(t, market)
    calendar = books["BTC ATM call calendar spread (short 30d / long 60d)"].positions_at(t, market)
    assert straddle[0].instrument == calendar[0].instrument  # the same 30-day ATM call
    model.margin(state, straddle, market, t)
    store = context.cache("span_risk_arrays")
    assert len(store) == 2
    cached = next(iter(store.values()))
    model.margin(state, calendar, market, t)
    assert len(store) == 3 and next(iter(store.values())) is cached  # only the 60-day call was added


def test_dynamic_scan_range_is_the_quantile_of_moves_known_at_t(market):
    i = market.loc_of(pd.Timestamp("2022-03-01", tz="UTC"))
    p = market.prices["BTC"].to_numpy()
    moves = np.abs(p[i - 364:i + 1] / p[i - 365:i] - 1.0)
    assert move_quantile(market, "BTC", i, 1, 365, 0.99, 60) == pytest.approx(np.quantile(moves, 0.99), rel=1e-14)
    two = np.abs(p[i - 364:i + 1] / p[i - 366:i - 1] - 1.0)
    assert move_quantile(market, "BTC", i, 2, 365, 0.99, 60) == pytest.approx(np.quantile(two, 0.99), rel=1e-14)
    # later data does not move it (the full no-look-ahead test runs every model through tests/test_lookahead.py)
    cut = market.truncate(market.index[i])
    assert move_quantile(cut, "BTC", i, 1, 365, 0.99, 60) == move_quantile(market, "BTC", i, 1, 365, 0.99, 60)
    assert np.isnan(move_quantile(market, "BTC", 30, 1, 365, 0.99, 60))  # fewer than min_obs moves: warm-up


# ------------------------------------------------------------------------------------------ Deribit PM
def _random_market(freq, rows, seed=7):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2020-01-01", periods=rows, freq="D" if freq == "1d" else "h", tz="UTC", name="time")
    p = pd.DataFrame({a: s0 * np.exp(np.cumsum(rng.normal(0, 0.01, rows))) for a, s0 in (("BTC", 4e4), ("ETH", 3e3))},
                     index=idx)
    iv = pd.DataFrame({a: 0.8 * np.exp(np.cumsum(rng.normal(0, 0.01, rows))) for a in ("BTC", "ETH")}, index=idx)
    return MarketData(prices=p, implied_vol=iv, freq=freq)


@pytest.mark.parametrize("freq, per_day", [("1d", 1), ("1h", 24)])
def test_default_calibration_windows_are_365_calendar_days(freq, per_day):
    """span and greeks_netting calibrate on 365 days of rows (365 daily, 8,760 hourly), warm up for 60 days."""
    h = per_day  # a one-day MPOR
    m = _random_market(freq, 400 * per_day)
    i = len(m.index) - 1
    context = RunContext(mpor=h)
    window = slice(i - 365 * per_day + 1, i + 1)
    p, v = m.prices["BTC"].to_numpy(), m.implied_vol["BTC"].to_numpy()
    lag = slice(window.start - h, window.stop - h)
    span = mm.make_model("span")
    state = span.fit(m, m.index[i], context=context)
    psr, vsr = span.scan_ranges(state, m, "BTC")
    assert psr == np.quantile(np.abs(p[window] / p[lag] - 1.0), 0.99)
    assert vsr == np.quantile(np.abs(v[window] / v[lag] - 1.0), 0.99)
    greeks = mm.make_model("greeks_netting")
    perps = [mm.Position(mm.Perpetual("BTC"), 1.0), mm.Position(mm.Perpetual("ETH"), 1.0)]
    b = greeks.breakdown(greeks.fit(m, m.index[i], context=context), perps, m, m.index[i])
    assert b.values["risk_weight"][0] == psr
    logs = np.log(m.prices[["BTC", "ETH"]].to_numpy())
    rho = np.corrcoef((logs[window] - logs[lag]).T)[0, 1]
    assert b.correlation[0, 1] == pytest.approx(rho, rel=1e-12)
    # warm-up: 60 days of h-observation moves (the first move is at row h)
    first = h + 60 * per_day - 1
    for model in (span, greeks):
        at = model.fit(m, m.index[first], context=context)
        before = model.fit(m, m.index[first - 1], context=context)
        book = [mm.Position(mm.Perpetual("BTC"), 1.0)]
        assert np.isfinite(model.margin(at, book, m, m.index[first]))
        assert np.isnan(model.margin(before, book, m, m.index[first - 1]))
    # an explicit integer is a number of observations, as before
    short = mm.make_model("span", lookback=365, min_obs=60)
    assert short.scan_ranges(short.fit(m, m.index[i], context=context), m, "BTC")[0] == np.quantile(
        np.abs(p[i - 364:i + 1] / p[i - 364 - h:i + 1 - h] - 1.0), 0.99)


def test_calibration_window_parameters_are_checked():
    with pytest.raises(ValueError, match=r"span: min_obs \(400\) must not exceed lookback \(None: 365 days"):
        mm.make_model("span", min_obs=400)
    with pytest.raises(ValueError, match=r"greeks_netting: min_obs \(100\) must not exceed lookback \(50\)"):
        mm.make_model("greeks_netting", lookback=50, min_obs=100)
    with pytest.raises(ValueError, match="greeks_netting: lookback must be an integer >= 20"):
        mm.make_model("greeks_netting", lookback=10)
    assert mm.make_model("span", lookback=30).lookback == 30  # a default min_obs is capped at the window


def test_deribit_pm_reproduces_deribits_published_btc_example_with_a_dated_future():
    """Deribit's own API example (private/pme/simulate, 2024-06-17): a BTC perpetual and a short dated future.
    The loss side of the published aggregated risk vector (coin, gains floored at 0) is marginlab's USD grid at
    S0 (1 + m); the published roll shock is |q| x a_min per contract with no netting between the perpetual and
    the future (0.314538364 x 1% + 0.001187534 x max(7.5% x T, 1%)). Found by a reviewer: an external check of
    futures in the PM model that no test held."""
    ref = json.loads((RESULTS / "deribit_pm_btc_reference.json").read_text())
    s0 = ref["index_price"]
    m = toy_market({"BTC": s0}, {"BTC": 0.5}, start="2024-06-14")
    t = m.index[2]  # observed 2024-06-17 00:00 UTC: the example's vintage is in force
    expiry = pd.Timestamp(ref["future_expiry"], tz="UTC")
    book = [mm.Position(mm.Perpetual("BTC"), ref["positions"]["BTC-PERPETUAL"]),
            mm.Position(mm.Future("BTC", expiry), ref["positions"]["BTC-28JUN24"])]
    model = mm.make_model("deribit_pm")
    b = model.breakdown(model.fit(m, t), book, m, t)
    grid = b.standard["BTC"].ravel()
    usd = np.array(ref["aggregated_standard_coin"]) * s0 * np.repeat(1 + np.arange(-4, 5) * 0.16 / 4, 3)
    loss = usd < 0
    assert loss.sum() == 12
    np.testing.assert_allclose(grid[loss], usd[loss], rtol=1e-12)
    assert np.all(grid[~loss] >= 0)  # gains, which Deribit's aggregated vector shows as 0
    assert np.all(b.extended["BTC"] == 0.0) and ref["aggregated_extended_coin"] == [0] * 8
    row = b.per_asset.loc["BTC"]
    assert row["roll_shock"] / s0 == pytest.approx(ref["roll_shock_coin"], rel=1e-9)  # 9 published digits
    assert row["worst_standard"] == pytest.approx(-usd.min(), rel=1e-12) and row["delta_shock"] == 0.0
    assert b.initial == pytest.approx(row["worst_standard"] + row["roll_shock"], rel=1e-15)


def test_deribit_pm_reproduces_deribits_published_risk_vector_of_a_perpetual():
    ref = json.loads((RESULTS / "deribit_pm_reference.json").read_text())
    s0 = ref["index_price"]
    q = ref["position"]["size"]
    m = toy_market({"ETH": s0}, {"ETH": 0.6}, start="2026-02-14")
    t = m.index[1]  # labelled 2026-02-15, observed 2026-02-16 00:00: the vintage of 2026-02-15 is in force
    model = mm.make_model("deribit_pm")
    assert model.vintage("ETH", m.observation_time[1]).price_range == 0.18
    b = model.breakdown(model.fit(m, t), [mm.Position(mm.Perpetual("ETH"), q)], m, t)
    grid = b.standard["ETH"]
    assert grid.shape == (9, 3)  # 4 buckets each side and zero, times vol up / same / down
    moves = np.arange(-4, 5) * 0.18 / 4
    coin = ref["risk_vector_coin"]["standard"]
    # a coin value at the shocked index S0 (1 + m) is the linear USD P&L of marginlab's grid
    np.testing.assert_allclose(grid.ravel(), np.array(coin) * s0 * np.repeat(1 + moves, 3), rtol=1e-12, atol=1e-9)
    # the extended table holds a linear position at the edge of the standard range (the rule marginlab applies),
    # and its losses, far below the dampener, count for nothing: as published
    assert ref["risk_vector_coin"]["extended"] == [coin[0]] * 2 + [coin[-1]] * 6
    assert np.all(b.extended["ETH"] == 0.0) and ref["risk_vector_coin"]["extended_aggregated"] == [0] * 8
    row = b.per_asset
    margins = ref["margins_coin"]
    assert row.at["ETH", "roll_shock"] / s0 == pytest.approx(margins["roll_shock"], rel=1e-12)
    assert row.at["ETH", "delta_shock"] == margins["delta_shock"] == 0
    assert b.maintenance == pytest.approx(0.8 * b.initial, rel=1e-15)
    assert margins["maintenance_margin"] == pytest.approx(0.8 * margins["risk_matrix_margin"], rel=1e-12)
    # initial = worst case + roll shock (+ delta shock), to Deribit's rounding of the published figures
    assert margins["risk_matrix_margin"] == pytest.approx(margins["worst_case"] + margins["roll_shock"], rel=1e-8)
    # the final margin: marginlab takes the worst case in USD (the loss at +18% of a linear short, 350.70), Deribit
    # in coin valued at the unshocked index (the same loss / 1.18, 297.21); with the roll shock (9.74) marginlab's IM
    # is 360.44 USD against Deribit's 0.157462 ETH x 1,949.34 = 306.95 USD (README: coin-margined vs USD)
    worst_usd = row.at["ETH", "worst_standard"]
    assert worst_usd == pytest.approx(-q * s0 * 0.18, rel=1e-12)
    assert b.initial == pytest.approx(worst_usd + row.at["ETH", "roll_shock"], rel=1e-15)
    assert round(b.initial, 2) == 360.44
    assert margins["initial_margin"] * s0 == pytest.approx(worst_usd / 1.18 + row.at["ETH", "roll_shock"], rel=1e-8)
    assert round(margins["initial_margin"] * s0, 2) == 306.95


@pytest.mark.parametrize("days", [10.0, 45.0])
def test_deribit_pm_grid_of_one_short_option(days):
    m = toy_market({"BTC": 50000.0}, {"BTC": 0.6}, start="2024-07-01")
    t = m.index[1]
    i = m.loc_of(t)
    expiry = m.observation_time[i] + pd.Timedelta(days=days)
    opt = mm.Option("BTC", expiry, 52000.0, "call")
    q = -40.0
    model = mm.make_model("deribit_pm")
    b = model.breakdown(model.fit(m, t), [mm.Position(opt, q)], m, t)
    v = DERIBIT_PM_VINTAGES["BTC"][0]
    tau = days / 365
    power = 0.3 if days < 30 else 0.13  # short- / long-term vega power
    scale = (30 / days) ** power
    vol_up = max(0.6 * (1 + 0.5 * scale), 0.5)
    vol_down = 0.6 * (1 - 0.25 * scale)
    np.testing.assert_allclose(shocked_vols(np.array([0.6]), np.array([tau]), v)[:, 0], [vol_up, 0.6, vol_down],
                               rtol=1e-14)
    p0 = black76_price(50000.0, 52000.0, tau, 0.6, True, use_numba=False)
    for bucket, mv in enumerate(np.arange(-4, 5) * 0.04):
        for col, vol in enumerate((vol_up, 0.6, vol_down)):
            want = q * (black76_price(50000.0 * (1 + mv), 52000.0, tau, vol, True, use_numba=False) - p0)
            assert b.standard["BTC"][bucket, col] == pytest.approx(want, rel=1e-10, abs=1e-6)
    for k, mv in enumerate(v.extended_moves):  # vol up only, a fraction 0.16 / |m|, less the dampener
        pnl = q * (black76_price(50000.0 * (1 + mv), 52000.0, tau, vol_up, True, use_numba=False) - p0)
        assert b.extended["BTC"][k] == pytest.approx(max(-pnl * 0.16 / abs(mv) - 100_000.0, 0.0), rel=1e-10, abs=1e-6)
    row = b.per_asset.loc["BTC"]
    assert row["worst"] == max(-b.standard["BTC"].min(), b.extended["BTC"].max())
    assert row["initial"] == pytest.approx(row["worst"] + row["roll_shock"] + row["delta_shock"], rel=1e-15)
    assert b.maintenance == pytest.approx(0.8 * b.initial, rel=1e-15)
    assert model.margin(model.fit(m, t), [mm.Position(opt, q)], m, t) == b.initial
    maint = mm.make_model("deribit_pm", level="maintenance")
    assert maint.margin(maint.fit(m, t), [mm.Position(opt, q)], m, t) == pytest.approx(0.8 * b.initial, rel=1e-15)


def test_deribit_pm_vintages_by_date():
    m = toy_market({"BTC": 30000.0}, {"BTC": 0.6}, start="2021-06-01")
    t = m.index[1]
    book = [mm.Position(mm.Perpetual("BTC"), 1.0)]
    backfill = mm.make_model("deribit_pm")
    assert backfill.vintage("BTC", m.observation_time[1]).start == "2024-06-17"  # before the first: backfilled
    assert backfill.margin(backfill.fit(m, t), book, m, t) == pytest.approx(30000.0 * (0.16 + 0.01), rel=1e-12)
    strict = mm.make_model("deribit_pm", before_first="none")
    assert np.isnan(strict.margin(strict.fit(m, t), book, m, t))
    base = DERIBIT_PM_VINTAGES["BTC"][0].parameters()
    old = DeribitPMVintage(**{**base, "start": "2021-01-01", "end": "2022-01-01", "price_range": 0.10})
    new = DeribitPMVintage(**{**base, "start": "2022-01-01", "end": None})
    two = mm.make_model("deribit_pm", vintages={"BTC": (old, new)})
    assert two.margin(two.fit(m, t), book, m, t) == pytest.approx(30000.0 * (0.10 + 0.01), rel=1e-12)
    assert not two.applies_to([mm.Position(mm.Perpetual("ETH"), 1.0)])  # no ETH table in this model


# --------------------------------------------------------------------------------------- greeks netting
def test_greeks_netting_agrees_with_full_revaluation_on_linear_books():
    m = toy_market()
    book = [mm.Position(mm.Perpetual("BTC"), 3.0), mm.Position(mm.Spot("BTC"), -1.25),
            mm.Position(mm.Perpetual("ETH"), -30.0)]
    model = mm.make_model("greeks_netting", risk_weights={"BTC": 1e-4, "ETH": 1e-4}, correlations={"BTC/ETH": 1.0})
    b = model.breakdown(model.fit(m, T), book, m, T)
    eps = 1e-6
    for a, asset in enumerate(("BTC", "ETH")):
        up, down = np.zeros(2), np.zeros(2)
        up[a], down[a] = eps, -eps
        fd = (mm.revalue(book, m, T, up, horizon=0) - mm.revalue(book, m, T, down, horizon=0)) / (2 * eps)
        assert b.per_asset.at[asset, "delta"] == pytest.approx(float(fd), rel=1e-9)
    # with equal risk weights and correlation 1 the delta margin is the loss of the joint shock, revalued in full
    joint = [float(mm.revalue(book, m, T, np.log1p([[s * 1e-4, s * 1e-4]]), horizon=0)[0]) for s in (1, -1)]
    assert b.total == pytest.approx(-min(joint), rel=1e-9)
    single = [mm.Position(mm.Perpetual("BTC"), 3.0)]
    b1 = model.breakdown(model.fit(m, T), single, m, T)
    assert b1.total == pytest.approx(-float(mm.revalue(single, m, T, np.log1p([-1e-4]), horizon=0)[0]), rel=1e-9)
    assert b1.curvature_margin == 0.0 and b1.vega_margin == 0.0


def test_greeks_netting_option_sensitivities_match_full_revaluation_for_small_shocks():
    m = toy_market()
    book = [mm.Position(option("BTC", 44000.0, "call"), -10.0), mm.Position(option("BTC", 36000.0, "put"), 4.0)]
    model = mm.make_model("greeks_netting", risk_weights=0.1, vol_risk_weights=0.2)
    b = model.breakdown(model.fit(m, T), book, m, T)
    eps, zero = 1e-5, np.zeros(1)
    fd = (mm.revalue(book, m, T, [eps], horizon=0) - mm.revalue(book, m, T, [-eps], horizon=0)) / (2 * eps)
    assert b.per_asset.at["BTC", "delta"] == pytest.approx(float(fd[0]), rel=1e-6)
    fv = (mm.revalue(book, m, T, zero, [eps], horizon=0) - mm.revalue(book, m, T, zero, [-eps], horizon=0)) / (2 * eps)
    assert b.per_asset.at["BTC", "vega_risk"] == pytest.approx(float(fv[0]) * 0.8, rel=1e-6)  # vega x sigma


def test_greeks_netting_equals_the_simm_formula_on_a_hand_computed_example():
    data = json.loads((RESULTS / "greeks_netting_worked_example.json").read_text())
    p = data["params"]
    model = mm.make_model("greeks_netting", risk_weights=p["risk_weights"], vol_risk_weights=p["vol_risk_weights"],
                          correlations={"BTC/ETH": p["correlation"]})
    book = []
    for x in data["positions"]:
        inst = mm.Perpetual(x["asset"]) if x["kind"] == "perpetual" else option(x["asset"], x["strike"], x["kind"])
        book.append(mm.Position(inst, x["quantity"]))
    b = model.breakdown(model.fit(toy_market(), T), book, toy_market(), T)
    for asset, want in data["per_asset"].items():
        for key in ("delta", "vega_risk", "ws_delta", "ws_vega", "cvr"):
            assert b.per_asset.at[asset, key] == pytest.approx(want[key], rel=1e-9), (asset, key)
    for key in ("delta_margin", "vega_margin", "curvature_margin", "total"):
        assert getattr(b, key) == pytest.approx(data[key], rel=1e-9), key
    np.testing.assert_array_equal(b.correlation, [[1.0, 0.8], [0.8, 1.0]])


def test_greeks_netting_estimates_correlation_from_data_up_to_t(market):
    model = mm.make_model("greeks_netting")
    t = pd.Timestamp("2022-03-01", tz="UTC")
    i = market.loc_of(t)
    rho = model.correlation(model.fit(market, t), market, ["BTC", "ETH"])
    r = np.log(market.prices[["BTC", "ETH"]].to_numpy())
    window = np.diff(r, axis=0)[i - 365:i]
    assert rho[0, 1] == pytest.approx(np.corrcoef(window.T)[0, 1], rel=1e-12)


# ------------------------------------------------------------------------------------------ offsets
HEDGED = ["short BTC ATM straddle, delta-hedged daily", "BTC covered call (25-delta, 30d)",
          "short BTC / long ETH ATM straddles, each delta-hedged with its perpetual",
          "BTC perpetual vs long 60d ATM call (delta-hedged daily, rolled at 30d)", "long BTC / short ETH perpetuals"]


@pytest.mark.parametrize("name, params", [("span", {"net_option_value": False}), ("span", {}), ("deribit_pm", {}),
                                          ("greeks_netting", {})])
def test_hedged_books_need_less_than_their_parts_and_at_least_the_short_option_minimum(market, name, params):
    model = mm.make_model(name, **params)
    books = mm.reference_portfolios()
    for date in ("2022-02-01", "2022-03-15", "2022-04-20"):
        t = pd.Timestamp(date, tz="UTC")
        state = model.fit(market, t, context=RunContext())
        for book_name in HEDGED:
            positions = books[book_name].positions_at(t, market)
            whole = model.margin(state, positions, market, t)
            parts = sum(model.margin(state, [p], market, t) for p in positions)
            if name == "deribit_pm" and book_name == "long BTC / short ETH perpetuals":
                # Deribit margins each currency alone (no BTC/ETH offset): the book costs its parts
                assert whole == pytest.approx(parts, rel=1e-14)
                continue
            assert 0 <= whole < parts, (name, book_name, date, whole, parts)
            if name == "span":
                frame = model.breakdown(state, positions, market, t).to_frame()
                nov = frame["nov"].sum() if model.net_option_value else 0.0
                # never below the short option minimum (net of the option value when it is counted)
                assert whole >= frame["som"].sum() - nov - 1e-9
                assert (frame["risk"] >= frame["som"]).all()


def test_a_fully_offset_book_gets_only_the_add_ons():
    m = toy_market()
    future = mm.Future("BTC", pd.Timestamp("2022-03-25 08:00", tz="UTC"))
    book = [mm.Position(mm.Perpetual("BTC"), 5.0), mm.Position(future, -5.0)]
    span = mm.make_model("span", price_scan_range=0.12, vol_scan_range=0.25)
    b = span.breakdown(span.fit(m, T), book, m, T)
    assert b.to_frame().at["BTC", "scan"] == 0.0
    assert b.total == pytest.approx(0.0175 * 40000.0 * 5.0, rel=1e-14)  # the calendar spread charge only
    pm = mm.make_model("deribit_pm", vintages={"BTC": DERIBIT_PM_VINTAGES["BTC"]}, before_first="backfill")
    d = pm.breakdown(pm.fit(m, T), book, m, T)
    years = float(m.years_to(m.loc_of(T), np.array([future.expiry.value]))[0])
    roll = 5.0 * 0.01 * 40000.0 + 5.0 * max(0.075 * years, 0.01) * 40000.0  # perpetual + dated future
    assert d.per_asset.at["BTC", "worst"] == 0.0
    assert d.initial == pytest.approx(roll, rel=1e-12)
    g = mm.make_model("greeks_netting", risk_weights=0.1)
    assert g.margin(g.fit(m, T), book, m, T) == 0.0  # SIMM has no add-on for a perfect hedge


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("name, params, message", [
    ("span", {"price_scan_range": -0.1}, r"span: price_scan_range must be in \[0"),
    ("span", {"price_scan_range": {"BTC": -0.1}}, r"span: price_scan_range\['BTC'\] must be in"),
    ("span", {"price_scan_range": 0.5}, r"price_scan_range must be in \[0.0, 0.333"),  # k PSR >= 100%
    ("span", {"vol_scan_range": 1.2}, r"span: vol_scan_range must be in"),
    ("span", {"cover_fraction": 1.5}, r"span: cover_fraction must be in \[0.0, 1.0\]"),
    ("span", {"cover_fraction": -0.1}, r"span: cover_fraction must be in \[0.0, 1.0\]"),
    ("span", {"composite_weights": (0.5, 0.5)}, "span: composite_weights must be 7"),
    ("span", {"inter_spreads": {"BTC-ETH": 0.5}}, "span: inter_spreads: key 'BTC-ETH'"),
    ("span", {"inter_spreads": {"BTC/ETH": 1.5}}, r"span: inter_spreads\['BTC/ETH'\] must be in \[0.0, 1.0\]"),
    ("span", {"price_scan_range": "wide"}, "span: price_scan_range must be"),
    ("greeks_netting", {"correlations": {"BTC/ETH": 0.9, "BTC/SOL": 0.9, "ETH/SOL": -0.9}},
     "greeks_netting: correlations .* not positive semi-definite"),
    ("greeks_netting", {"correlations": {"BTC/ETH": 1.2}}, r"greeks_netting: correlations\['BTC/ETH'\] must be"),
    ("greeks_netting", {"risk_weights": {"BTC": 0.0}}, r"greeks_netting: risk_weights\['BTC'\] must be in"),
    ("deribit_pm", {"level": "liquidation"}, "deribit_pm: level must be"),
])
def test_bad_parameters_name_the_parameter(name, params, message):
    with pytest.raises(ValueError, match=message):
        mm.make_model(name, **params)


def test_overlapping_vintages_are_rejected():
    base = DERIBIT_PM_VINTAGES["BTC"][0].parameters()
    a = DeribitPMVintage(**{**base, "start": "2023-01-01", "end": "2024-01-01"})
    b = DeribitPMVintage(**{**base, "start": "2023-06-01", "end": None})
    with pytest.raises(ValueError, match=r"deribit_pm: vintages\['BTC'\]: vintage 1 \(from 2023-06-01\) overlaps"):
        mm.make_model("deribit_pm", vintages={"BTC": (a, b)})
    with pytest.raises(ValueError, match=r"vintage 1 \(from 2024-01-01\) overlaps vintage 0 \(2023-01-01 .. open\)"):
        mm.make_model("deribit_pm", vintages={"BTC": (DeribitPMVintage(**{**base, "start": "2023-01-01"}),
                                                      DeribitPMVintage(**{**base, "start": "2024-01-01"}))})
    with pytest.raises(ValueError, match="end 2022-01-01 is not after start 2023-01-01"):
        DeribitPMVintage(**{**base, "start": "2023-01-01", "end": "2022-01-01"})
    with pytest.raises(ValueError, match="price_range must be a number"):
        DeribitPMVintage(**{**base, "price_range": -0.16})


# ------------------------------------------------------------------------------ engine, metric, study
def test_standalone_legs_and_the_offset_benefit_metric():
    m = toy_market()
    hedge = mm.FixedBook("hedged", (mm.Position(mm.Perpetual("BTC"), 2.0), mm.Position(mm.Perpetual("ETH"), -30.0)))
    models = {"static": mm.make_model("static", rate=0.1),
              "span": mm.make_model("span", price_scan_range=0.12, vol_scan_range=0.25)}
    res = Backtest(m, [hedge], models, standalone_legs=True, end=m.index[-2]).run()
    f = res.to_frame()
    assert "standalone_margin" in f.columns
    static = f[f["model"] == "static"]
    np.testing.assert_allclose(static["standalone_margin"], static["margin"], rtol=1e-15)  # additive: no offset
    span = f[f["model"] == "span"]
    parts = 2 * 40000 * 0.12 * 3 * 0.35 + 30 * 2500 * 0.12 * 3 * 0.35  # each leg alone: its extreme scenario
    np.testing.assert_allclose(span["standalone_margin"], parts, rtol=1e-12)
    eff = res.efficiency()
    assert eff.loc[("hedged", "static"), "offset_benefit"] == 1.0
    assert eff.loc[("hedged", "span"), "offset_benefit"] == pytest.approx(float((span["margin"] / parts).mean()))
    assert eff.loc[("hedged", "span"), "offset_benefit"] < 1.0
    assert "offset_benefit" in {x.key for x in METRICS}
    # without the column the metric is NaN, and the default run has no such column
    assert math.isnan(offset_benefit(static.drop(columns="standalone_margin")))
    assert "standalone_margin" not in Backtest(m, [hedge], models, end=m.index[-2]).run().to_frame()
    with pytest.raises(ValueError, match="standalone_legs must be true or false"):
        Backtest(m, [hedge], models, standalone_legs="yes")


def test_offset_benefit_hand_computed():
    rows = pd.DataFrame({"margin": [30.0, 50.0, 10.0, 5.0], "standalone_margin": [100.0, 100.0, 0.0, np.nan]})
    assert offset_benefit(rows) == pytest.approx((0.3 + 0.5) / 2)  # dates whose legs need no margin left out


def test_study_key_standalone_legs_and_default_study():
    cfg = load_study("studies/default.toml")
    assert cfg.standalone_legs is True
    assert {name for _, name, _ in cfg.models} >= {"span", "deribit_pm", "greeks_netting"}
    raw = {"study": {"standalone_legs": "yes"}, "market": {"assets": ["BTC"]}, "models": [{"name": "static"}]}
    with pytest.raises(ValueError, match="study.standalone_legs must be true or false"):
        parse_study(raw)
    raw["study"]["standalone_legs"] = True
    assert parse_study(raw).to_dict()["standalone_legs"] is True


def test_deribit_pm_methodology_names_the_backfilled_dates():
    """Backfill margins 2021-2024 BTC and every bundled ETH date with parameters published later: the methodology
    (shown in the report beside the model's results) says so and names each currency's first vintage (found by a
    reviewer: disclosed in the README only)."""
    said = mm.make_model("deribit_pm").methodology().limitations[-1]
    assert said.startswith("Dates before each currency's first parameter vintage (BTC 2024-06-17, ETH 2026-02-15) "
                           "use that vintage (before_first='backfill')")
    assert not any("backfill" in x for x in mm.make_model("deribit_pm", before_first="none").methodology().limitations)


def test_greeks_netting_never_charges_long_options_more_than_their_value():
    """A book of long options loses at most its mark value; the delta + vega + curvature charge of a far OTM call
    was 2.4x its premium (found by a reviewer). Capped for long-only option books; short or hedged books are not."""
    from marginlab.models.revaluation import option_mark

    m = toy_market()
    t = m.index[2]
    model = mm.make_model("greeks_netting", risk_weights=0.1, vol_risk_weights=0.2, correlations={})
    state = model.fit(m, t)
    expiry = pd.Timestamp("2022-01-28 08:00", tz="UTC")
    for strike, premium in ((44_000.0, 1939.67), (60_000.0, 119.84)):
        call = mm.Option("BTC", expiry, strike, "call")
        assert round(option_mark(call, m, t), 2) == premium  # Black-76 at S 40,000, vol 80%
        long = [mm.Position(call, 2.0)]
        b = model.breakdown(state, long, m, t)
        assert b.delta_margin + b.vega_margin + b.curvature_margin > 2 * premium  # the uncapped charge
        assert b.max_loss == pytest.approx(2 * option_mark(call, m, t), rel=1e-12) and b.total == b.max_loss
        short = model.breakdown(state, [mm.Position(call, -2.0)], m, t)
        assert short.max_loss is None and short.total == short.delta_margin + short.vega_margin + short.curvature_margin
        hedged = model.breakdown(state, long + [mm.Position(mm.Perpetual("BTC"), -0.5)], m, t)
        assert hedged.max_loss is None
