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
def test_ewma_draws_shared_between_keys_with_as_many_factors_change_no_margin(dist):
    """Books with other assets but as many factors (BTC and ETH returns; BTC return and vol) draw z once per
    date: each book's margins, VaR, ES and PIT are bit for bit those it has alone."""
    market = ds.load_market(["BTC", "ETH"], start="2021-01-01", end="2021-12-31", with_option_chains=True)
    books = mm.reference_portfolios()
    names = ["long BTC / short ETH perpetuals", "short BTC 25-delta strangle (30d, rolled at 7d)", "long BTC spot",
             "short ETH 25-delta strangle (30d, rolled at 7d)"]
    model = {"ewma": mm.make_model("ewma_var", lookback=200, min_obs=100, n_paths=2000, dist=dist)}
    together = Backtest(market, [books[n] for n in names], model, start="2021-09-01", seed=9, mpor_days=2,
                        standalone_legs=True).run().frame
    for n in names:
        alone = Backtest(market, [books[n]], model, start="2021-09-01", seed=9, mpor_days=2,
                         standalone_legs=True).run().frame
        mine = together[together["portfolio"] == n].reset_index(drop=True)
        assert len(alone) == len(mine) > 0
        for col in ("margin", "var", "es", "pit", "standalone_margin"):
            a, b = alone[col].to_numpy(), mine[col].to_numpy()
            assert np.array_equal(a.view(np.int64), b.view(np.int64)), (n, col)


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
    rng = np.random.default_rng([2, int((t + pd.Timedelta(days=1)).timestamp())])  # keyed by t's close (s)
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
        for shape, scale in [((3000, 2), 0.05), ((40, 50, 2), 0.05), ((20000, 2), 0.3)]:
            # large moves too: NumPy's vectorised log and libm's differ in the last bit on ~0.5% of inputs
            spot, vol = rng.normal(0, scale, shape), rng.normal(0, 0.03, shape)
            spot.reshape(-1, 2)[:2] = [[-800.0, 0.0], [np.nan, 0.1]]  # a zero and a missing spot: NaN P&L
            for vol_shocks in (vol, None):
                monkeypatch.setattr(rv, "NUMBA_ENABLED", True)
                with np.errstate(divide="ignore", invalid="ignore"):
                    fast = rv.revalue_at(arrays, market, i, spot, vol_shocks)
                monkeypatch.setattr(rv, "NUMBA_ENABLED", False)
                with np.errstate(divide="ignore", invalid="ignore"):
                    generic = rv.revalue_at(arrays, market, i, spot, vol_shocks)
                assert fast.shape == shape[:-1]
                np.testing.assert_array_equal(fast, generic)  # bit for bit, NaN where NaN


@pytest.mark.parametrize("name, params", [("fhs_garch", {"lookback": 300, "min_obs": 100}),
                                          ("historical_var", {"lookback": 300, "min_obs": 100}),
                                          ("ewma_var", {"lookback": 300, "min_obs": 100, "n_paths": 3000})])
def test_option_legs_taken_from_the_book_equal_the_legs_revalued_alone(name, params):
    """A one-asset book's option legs have the book's scenarios: their standalone losses come from the book's
    revaluation (ScenarioSet.leg_losses), equal bit for bit (signed zeros included) to each leg's own."""
    from marginlab.models.context import RunContext
    from marginlab.models.revaluation import Book

    market = ds.load_market(["BTC"], start="2021-01-01", end="2022-12-31", with_option_chains=True)
    book = mm.reference_portfolios()["short BTC ATM straddle, delta-hedged daily"]
    model = mm.make_model(name, **params)
    for day, mpor in (("2022-01-20", 1), ("2022-06-15", 2), ("2022-11-09", 1), ("2022-11-10", 3)):
        t = pd.Timestamp(day, tz="UTC")
        positions = Book(book.positions_at(t, market))
        shared = RunContext(mpor=mpor, seed=5)
        found = model.scenarios(model.fit(market, t, context=shared), positions, market, t)
        options = [p for p in positions if p.instrument.family == "option"]
        assert len(options) == 2 and set(found.leg_losses) == set(options)
        for pos in positions:
            alone = RunContext(mpor=mpor, seed=5)  # a fresh run: the leg revalued on its own
            own = model.scenarios(model.fit(market, t, context=alone), Book((pos,)), market, t)
            memo = model.scenarios(model.fit(market, t, context=shared), Book((pos,)), market, t)
            assert np.array_equal(own.losses, memo.losses) and np.array_equal(np.signbit(own.losses),
                                                                               np.signbit(memo.losses))
            assert np.array_equal(own.rows, memo.rows)


def _margins_in_one_context_equal_alone(model, market, dates, books, alone) -> int:
    """Every book's and leg's margin on ``dates`` in one run context equals, bit for bit, its margin from the
    state ``alone(t)``; returns how many finite margins of groups holding options were compared."""
    ctx = mm.RunContext()
    checked = 0
    for t in dates:
        state = model.fit(market, t, context=ctx)
        for b in books:
            positions = b.positions_at(t, market)
            if not model.applies_to(positions):
                continue
            for group in [positions, *[(p,) for p in positions]]:
                fast, slow = model.margin(state, group, market, t), model.margin(alone(t), group, market, t)
                assert np.array_equal(np.float64(fast).view(np.int64), np.float64(slow).view(np.int64)), (b.name, t)
                checked += np.isfinite(fast) and any(isinstance(p.instrument, mm.Option) for p in group)
    return checked


@pytest.mark.parametrize("name", ["static", "deribit_standard"])
def test_option_marks_memoised_per_row_equal_the_marks_priced_alone(name):
    """Static and Deribit standard price each option once per date in a run (books and their legs share the
    memo): every book's and leg's margin is bit for bit the one priced without a run context."""
    market = ds.load_market(["BTC", "ETH"], start="2022-01-01", end="2022-12-31", with_option_chains=True)
    model = mm.make_model(name)
    books = [b for n, b in mm.reference_portfolios().items() if "SOL" not in n]
    assert _margins_in_one_context_equal_alone(model, market, market.index[280:320], books, lambda t: None) > 100


@pytest.mark.parametrize("name", ["span", "deribit_pm", "greeks_netting"])
def test_portfolio_margins_with_the_runs_caches_equal_each_computed_alone(name):
    """SPAN (risk arrays and price moves cached per run, mark vols only for contracts not cached yet), Deribit PM
    (vintages and grids built once) and greeks netting: every book's and leg's margin in one run context is bit
    for bit the margin computed in a fresh context of its own."""
    market = ds.load_market(["BTC", "ETH"], start="2021-01-01", end="2022-12-31", with_option_chains=True)
    model = mm.make_model(name)
    books = [b for n, b in mm.reference_portfolios().items() if "SOL" not in n]
    assert _margins_in_one_context_equal_alone(model, market, market.index[560:575], books,
                                               lambda t: model.fit(market, t, context=mm.RunContext())) > 100


def test_ewma_models_with_other_min_obs_sharing_a_context_keep_their_own_warm_up():
    """The date's window and moves are shared by EWMA models differing only in min_obs (one run context):
    each keeps its own warm-up and its margins alone, bit for bit."""
    market = ds.load_market(["BTC"], start="2021-01-01", end="2021-08-31")
    book = mm.reference_portfolios()["long BTC spot"]
    models = {"late": mm.make_model("ewma_var", lookback=200, min_obs=160, n_paths=500),
              "early": mm.make_model("ewma_var", lookback=200, min_obs=120, n_paths=500)}
    together = Backtest(market, [book], models, start="2021-04-15", seed=3).run(split_models=False).frame
    for label, model in models.items():
        alone = Backtest(market, [book], {label: model}, start="2021-04-15", seed=3).run().frame
        mine = together[together["model"] == label].reset_index(drop=True)
        assert len(alone) == len(mine) > 0
        assert np.array_equal(alone["margin"].to_numpy().view(np.int64), mine["margin"].to_numpy().view(np.int64))
    assert (together["model"] == "early").sum() > (together["model"] == "late").sum()


def test_pit_of_equal_weights_is_the_unit_weighted_pit():
    """Forecast.pit without weights ((k + 1/2)/(N + 1) from a count) equals the same forecast with unit weights
    ((W_ge + w/2)/(W + w), w = W/N = 1), bit for bit."""
    rng = np.random.default_rng(8)
    for n in (1, 2, 7, 100, 10_000):
        losses = np.round(rng.normal(size=n), 1)  # ties with the realised loss
        for pnl in (*rng.normal(size=5), -losses[0], 0.0, -0.0, 50.0, -50.0):
            fast = mm.Forecast(margin=0.0, losses=losses).pit(pnl)
            slow = mm.Forecast(margin=0.0, losses=losses, weights=np.ones(n)).pit(pnl)
            assert np.array_equal(np.float64(fast).view(np.int64), np.float64(slow).view(np.int64))


def test_pricing_inputs_of_one_shape_skip_the_broadcast_and_give_the_same_arrays():
    """Black-76 inputs of one shape (the models' case) are not broadcast: the kernel gets the same flat arrays."""
    from marginlab.models.pricing import _broadcast

    rng = np.random.default_rng(5)
    base = rng.random((6, 4)) + 0.5
    cases = [(base, base * 1.1, base[:, ::-1], base.T.copy().T, base > 1.0),  # 2-d, one non-contiguous
             (base[0], base[1], base[2], base[3], base[4] > 1.0), (1.0, 2.0, 0.5, 0.3, True),
             (base, base[0], 0.5, base[:, :1], True)]  # broadcasting
    for args in cases:
        ref = np.broadcast_arrays(*(np.asarray(a, float) for a in args[:4]), np.asarray(args[4], bool))
        shape, got = _broadcast(*args)
        assert shape == ref[0].shape
        for g, r in zip(got, ref, strict=True):
            want = np.ascontiguousarray(r).ravel()
            assert g.dtype == want.dtype and g.flags.c_contiguous and np.array_equal(g, want)
    assert np.array_equal(mm.black76_price(base, base * 1.1, base, base, True),
                          mm.black76_price(base, base * 1.1, base, base, np.full(base.shape, True)))


def _bands_one_by_one(p, n, m):
    """The bands as the report's figure computed them before ``zone_bands``: ``_zone`` on each count."""
    x = np.arange(n + 1)
    cum = stats.binom.cdf(x, n, p) if m == 1 else 1.0 - np.minimum(1.0, m * stats.binom.sf(x, n, p))
    zones = np.array([cv._zone(float(c)) for c in cum])
    return int(x[zones != "green"][0]), int(x[zones == "red"][0])


def test_zone_bands_equal_the_zone_of_every_count():
    """``zone_bands`` (one binomial grid, ``searchsorted`` on the zone bounds) gives the smallest yellow and red
    counts ``_zone`` gives count by count, on a grid of (p, n, m) with its edges: n = 0 and 1, a window of
    250 and around it, p from 1e-6 to 0.5, m up to 20; for an array of n (repeated values) the same as one
    n at a time."""
    ns = [0, 1, 2, 3, 7, 40, 100, 249, 250, 251, 1000]
    for p in (1e-6, 0.001, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5):
        for m in (1, 2, 3, 5, 10, 20):
            expected = [_bands_one_by_one(p, n, m) for n in ns]
            assert [cv.zone_bands(p, n, m) for n in ns] == expected
            many = np.array(ns + ns[::-1])
            yellow, red = cv.zone_bands(p, many, m)
            assert yellow.tolist() == [y for y, _ in expected + expected[::-1]]
            assert red.tolist() == [r for _, r in expected + expected[::-1]]
    # the Basel table (BCBS 1996): 250 days at 99%, yellow from 5 exceptions, red from 10
    assert cv.zone_bands(0.01, 250) == (5, 10)
    yellow, red = cv.zone_bands(0.01, np.arange(1, 251).reshape(10, 25), 4)
    assert yellow.shape == red.shape == (10, 25)


def test_zone_index_is_zone_on_the_bounds_and_beyond():
    eps = [np.nextafter(b, d) for b in cv.ZONE_BOUNDS for d in (0.0, 1.0)]
    cum = np.array([0.0, -0.0, 0.5, *cv.ZONE_BOUNDS, *eps, 1.0, 1.5, -1.0, np.nan, np.inf, -np.inf])
    assert [cv.ZONES[k] for k in cv._zone_index(cum)] == [cv._zone(float(c)) for c in cum]


def test_traffic_light_rolling_zones_are_zone_of_each_window():
    h = np.random.default_rng(8).random(900) < 0.03
    r = cv.traffic_light(h, p=0.01, window=250)
    assert r.rolling["zone"].tolist() == [cv._zone(float(c)) for c in r.rolling["cumulative_probability"]]
    assert set(r.rolling["zone"]) == {"green", "yellow", "red"}


def _disclosure_with_pandas(pnl, var, p, by):
    """The disclosure table as pandas computed it before (one frame per year): the reference of the array path."""
    frame = pd.DataFrame({"loss": -pnl.to_numpy(float), "margin": np.asarray(var, float)}, index=pnl.index)

    def row(f):
        breach = f["loss"] > f["margin"]
        size = (f["loss"] - f["margin"])[breach]
        rel = (size / f["margin"][breach]).replace([np.inf, -np.inf], np.nan)
        out = {"observations": len(f), "exceptions": int(breach.sum()),
               "achieved_coverage": 1.0 - breach.mean() if len(f) else np.nan}
        if p is not None:
            out["target_coverage"] = 1.0 - p
        out.update({"largest_breach": float(size.max()) if len(size) else 0.0,
                    "average_breach": float(size.mean()) if len(size) else 0.0,
                    "largest_breach_pct_of_margin": float(rel.max()) if rel.notna().any() else 0.0})
        return out

    rows, labels = [], []
    if by == "year":
        for year, f in frame.groupby(frame.index.year):
            rows.append(row(f))
            labels.append(str(year))
    rows.append(row(frame))
    labels.append("total")
    return pd.DataFrame(rows, index=pd.Index(labels, name="period"))


def test_disclosure_table_on_arrays_is_the_pandas_table_bit_for_bit():
    """Random books (heavy tails, zero and negative margins: infinite and negative breach ratios, years without a
    breach, unsorted dates) against the pandas computation it replaces, compared by the bytes of every float."""
    rng = np.random.default_rng(11)
    for trial in range(60):
        n = int(rng.integers(1, 1500))
        dates = pd.date_range("2019-06-01", periods=n, freq="D", tz="UTC")
        if trial % 7 == 3:
            dates = dates[rng.permutation(n)]
        pnl = pd.Series(rng.standard_t(3, n) * 10 ** rng.uniform(0, 6), index=dates)
        var = np.abs(rng.normal(2, 1, n)) * 10 ** rng.uniform(0, 6) * (0 if trial % 11 == 5 else 1)
        if trial % 5 == 1:
            var[rng.random(n) < 0.05] = 0.0
        if trial % 9 == 2:
            var[rng.random(n) < 0.05] *= -1.0
        if trial % 13 == 4:
            var[:] = 1e12  # no breach at all
        for p, by in ((0.01, "year"), (None, None), (0.025, None)):
            got = cv.disclosure_table(pnl, var, p, by=by)
            want = _disclosure_with_pandas(pnl, var, p, by)
            pd.testing.assert_frame_equal(got, want, check_exact=True)
            for col in got.columns:
                a, b = got[col].to_numpy(), want[col].to_numpy()
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (trial, col)
