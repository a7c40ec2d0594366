"""The speed work changes no number: each fast path against the generic code it replaces."""

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.datasets.smile import T_REF, _design
from marginlab.validation import Backtest
from marginlab.validation import coverage as cv
from scipy import stats


def test_censored_normal_likelihood_equals_scipys_logpdf_and_logsf():
    rng = np.random.default_rng(0)
    for _ in range(500):
        z = rng.normal(-3, 1, size=int(rng.integers(0, 40)))
        mu, sigma, n = rng.normal(), float(np.exp(rng.normal())), int(rng.integers(0, 2000))
        generic = np.sum(stats.norm.logpdf(z, mu, sigma)) + (n * stats.norm.logsf(-2.33, mu, sigma) if n else 0.0)
        assert cv._censored_normal_loglik(mu, sigma, z, n, -2.33) == generic


def test_smile_design_matrix_is_the_column_stack():
    x, t = np.random.default_rng(4).normal(size=999), np.random.default_rng(5).random(999)
    expected = np.column_stack([np.ones_like(x), x, x * x, np.sqrt(t) - T_REF])
    got = _design(x, t)
    assert np.array_equal(got, expected) and got.flags.c_contiguous


def test_ewma_moves_shared_between_books_change_no_margin():
    """Books with the same assets share a date's simulated moves: a book's margins are those it has alone."""
    market = ds.load_market(["BTC", "ETH"], start="2021-01-01", end="2021-12-31")
    books = mm.reference_portfolios()
    names = ["short BTC 25-delta strangle (30d, rolled at 7d)", "BTC covered call (25-delta, 30d)", "long BTC spot"]
    model = {"ewma": mm.make_model("ewma_var", lookback=200, min_obs=100, n_paths=2000)}
    together = Backtest(market, [books[n] for n in names], model, start="2021-09-01", seed=9).run().frame
    for n in names:
        alone = Backtest(market, [books[n]], model, start="2021-09-01", seed=9).run().frame
        pd.testing.assert_frame_equal(alone.reset_index(drop=True),
                                      together[together["portfolio"] == n].reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize("dist", ["normal", "t"])
def test_ewma_moves_are_the_models_draws(dist):
    """The shared moves are exactly L z (z from the run's generator for the row) as documented."""
    market = ds.load_market(["BTC"], start="2021-01-01", end="2021-12-31")
    model = mm.make_model("ewma_var", lookback=200, min_obs=100, n_paths=500, dist=dist)
    ctx = mm.RunContext(seed=2, mpor=2)
    t = market.index[250]
    state = model.fit(market, t, context=ctx)
    book = mm.FixedBook("b", (mm.Position(mm.Spot("BTC"), 1.0),))
    fc = model.forecast(state, book.positions, market, t)
    i = market.loc_of(t)
    x = market.log_return_array[i - 199:i + 1, :1]
    chol = np.linalg.cholesky(model.covariance(x) + 1e-14 * np.eye(1))
    rng = np.random.default_rng([2, i])
    z = rng.standard_normal((2, 500, 1))
    if dist == "t":
        z = z * np.sqrt((model.nu - 2.0) / rng.chisquare(model.nu, size=(2, 500, 1)))
    moves = (z @ chol.T).sum(axis=0)
    expected = mm.revalue(book.positions, market, t, moves[:, 0], horizon=2)
    assert np.array_equal(np.sort(-expected), np.sort(fc.losses))


def test_compiled_option_scenarios_equal_the_numpy_revaluation_bit_for_bit(monkeypatch):
    """revalue_at's one compiled pass (smile + Black-76 per scenario) gives the NumPy path's P&L exactly,
    under each vol regime (BTC: fitted smile or flat b0; ETH: no smile), with and without vol shocks, on 1-d
    and 2-d grids."""
    from marginlab.models import revaluation as rv

    if not rv.NUMBA_ENABLED:
        pytest.skip("numba switched off: revalue_at runs the NumPy path only")
    market = ds.load_market(["BTC", "ETH"], start="2021-06-01", end="2023-06-30", with_option_chains=True)
    coefs = market.smile_coefficients("BTC")
    fitted = np.isfinite(coefs[:, 0]) & (coefs[:, 1:] != 0).any(axis=1)
    flat = np.isfinite(coefs[:, 0]) & ~fitted
    rows = [int(np.flatnonzero(fitted)[10]), int(np.flatnonzero(flat)[10])]  # ETH options: no smile (flat DVOL)
    book = mm.reference_portfolios()["short BTC / long ETH ATM straddles, each delta-hedged with its perpetual"]
    rng = np.random.default_rng(11)
    for i in rows:
        arrays = rv.book_arrays(book.positions_at(market.index[i], market))
        for shape in [(3000, 2), (40, 50, 2)]:
            spot, vol = rng.normal(0, 0.05, shape), rng.normal(0, 0.03, shape)
            for vol_shocks in (vol, None):
                monkeypatch.setattr(rv, "NUMBA_ENABLED", True)
                fast = rv.revalue_at(arrays, market, i, spot, vol_shocks)
                monkeypatch.setattr(rv, "NUMBA_ENABLED", False)
                generic = rv.revalue_at(arrays, market, i, spot, vol_shocks)
                assert fast.shape == shape[:-1] and np.array_equal(fast, generic)
