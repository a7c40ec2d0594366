"""Black-76 kernels: closed forms, finite differences, the Python twin, and Deribit's own Greeks."""

import marginlab.datasets as ds
import numpy as np
import pandas as pd
import pytest
from marginlab.models import pricing
from marginlab.models.pricing import black76_greeks, black76_price, strike_from_delta

RNG = np.random.default_rng(42)
F = RNG.uniform(1_000, 80_000, 500)
K = F * np.exp(RNG.normal(0, 0.3, 500))
T = RNG.uniform(1 / 365, 1.0, 500)
V = RNG.uniform(0.2, 1.5, 500)
C = RNG.random(500) < 0.5


def test_textbook_value():
    # closed form at the money with r = 0: F = K = 100, sigma = 20%, T = 1:
    # C = 100 (2 N(0.1) - 1) = 7.965567455405804
    assert float(black76_price(100.0, 100.0, 1.0, 0.2, True)) == pytest.approx(7.965567455405804, rel=1e-12)


def test_put_call_parity():
    call = black76_price(F, K, T, V, True)
    put = black76_price(F, K, T, V, False)
    np.testing.assert_allclose(call - put, F - K, rtol=0, atol=1e-8 * F.max())


def test_numba_kernel_matches_python_twin():
    if not pricing.NUMBA_ENABLED:
        pytest.skip("numba disabled")
    np.testing.assert_allclose(black76_price(F, K, T, V, C, use_numba=True),
                               black76_price(F, K, T, V, C, use_numba=False), rtol=1e-12, atol=1e-9)
    g1 = black76_greeks(F, K, T, V, C, use_numba=True)
    g2 = black76_greeks(F, K, T, V, C, use_numba=False)
    for key in g1:
        np.testing.assert_allclose(g1[key], g2[key], rtol=1e-10, atol=1e-12)


def test_greeks_against_finite_differences():
    g = black76_greeks(F, K, T, V, C)
    h = F * 1e-4
    up, dn = black76_price(F + h, K, T, V, C), black76_price(F - h, K, T, V, C)
    mid = black76_price(F, K, T, V, C)
    np.testing.assert_allclose(g["delta"], (up - dn) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(g["gamma"], (up - 2 * mid + dn) / h**2, rtol=1e-3, atol=1e-9)
    dv = 1e-5
    vega_fd = (black76_price(F, K, T, V + dv, C) - black76_price(F, K, T, V - dv, C)) / (2 * dv)
    np.testing.assert_allclose(g["vega"], vega_fd, rtol=1e-5, atol=1e-6 * F.max())
    dt = 1e-6
    theta_fd = -(black76_price(F, K, T + dt, V, C) - black76_price(F, K, T - dt, V, C)) / (2 * dt)
    np.testing.assert_allclose(g["theta"], theta_fd, rtol=1e-4, atol=1e-6 * F.max())


def test_expired_and_zero_vol_give_intrinsic():
    assert black76_price(110.0, 100.0, 0.0, 0.5, True) == 10.0
    assert black76_price(90.0, 100.0, -1.0, 0.5, False) == 10.0
    assert black76_price(90.0, 100.0, 1.0, 0.0, True) == 0.0
    g = black76_greeks(110.0, 100.0, 0.0, 0.5, True)
    assert g["delta"] == 1.0 and g["gamma"] == 0.0


def test_strike_from_delta_round_trip():
    for is_call, delta in [(True, 0.25), (False, -0.25), (True, 0.5)]:
        k = strike_from_delta(40_000.0, 30 / 365, 0.8, delta, is_call)
        assert black76_greeks(40_000.0, k, 30 / 365, 0.8, is_call)["delta"] == pytest.approx(delta, abs=1e-12)
    with pytest.raises(ValueError, match="call delta"):
        strike_from_delta(1.0, 1.0, 0.5, -0.2, True)


def test_against_deribit_greeks_in_bundled_chains():
    """Reprice every June-2021 quote with Deribit's MARK_IV, UNDERLYING_PRICE and DTE.

    Deribit reports delta, gamma (per USD) and vega (USD per 1 vol point) rounded to
    5 decimals; its theta includes a carry term, so theta is checked by finite
    differences above instead.
    """
    c = ds.load_option_chains("2021-06-01", "2021-06-30")
    c = c[c["dte"] > 1]
    g = black76_greeks(c["underlying_price"].to_numpy(), c["strike"].to_numpy(), c["dte"].to_numpy() / 365,
                       c["mark_iv"].to_numpy(), (c["kind"] == "call").to_numpy())
    assert np.quantile(np.abs(g["delta"] - c["delta"].to_numpy()), 0.99) < 1e-4
    assert np.abs(g["gamma"] - c["gamma"].to_numpy()).max() < 1e-5
    vega_err = np.abs(g["vega"] / 100 - c["vega"].to_numpy())
    assert np.quantile(vega_err, 0.99) < 0.01 and np.median(vega_err) < 1e-3


def test_smile_fit_reproduces_deribit_marks_better_than_flat_dvol():
    from marginlab.models.smile import fit_smile, smile_ratio

    market = ds.load_market(["BTC"], start="2021-06-01", end="2022-04-30", with_option_chains=True)
    chains = market.option_chains
    for day in ["2021-06-15", "2021-07-20", "2022-01-10", "2022-03-10"]:
        chain = chains[chains["date"] == pd.Timestamp(day, tz="UTC")]
        chain = chain[(chain["dte"] >= 2) & (chain["dte"] <= 365)]
        dvol = market.implied_vol.loc[day, "BTC"]
        coef = fit_smile(chain, dvol)
        lm = np.log(chain["strike"] / chain["underlying_price"]).to_numpy()
        t = chain["dte"].to_numpy() / 365
        near = np.abs(lm / np.sqrt(t)) < 1
        err = np.abs(dvol * smile_ratio(coef, lm, t) - chain["mark_iv"].to_numpy())[near]
        flat = np.abs(dvol - chain["mark_iv"].to_numpy())[near]
        assert np.median(err) < 0.03 and np.median(err) < np.median(flat)


def test_option_vols_flat_without_chains_and_smiled_with_them():
    from marginlab.models.revaluation import option_vols

    flat = ds.load_market(["BTC"], start="2021-06-01", end="2021-06-30")
    smiled = ds.load_market(["BTC"], start="2021-06-01", end="2021-06-30", with_option_chains=True)
    i = flat.loc_of("2021-06-15")
    atm = flat.implied_vol.loc["2021-06-15", "BTC"]
    assert float(option_vols(flat, "BTC", i, atm, 50_000.0, 40_000.0, 0.1)) == atm
    assert float(option_vols(smiled, "BTC", i, atm, 50_000.0, 40_000.0, 0.1)) != atm
