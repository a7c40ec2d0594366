"""The engine-model contract: run context, no process-wide state, keyed estimation, estimates table."""

import subprocess
import sys

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.models import RunContext
from marginlab.validation import Backtest

MARKET = ds.load_market(["BTC", "SOL"], start="2020-01-01", end="2021-06-30")
BTC = mm.ConstantNotionalBook("long BTC", ((mm.Spot("BTC"), 1e6),))
PAIR = mm.ConstantNotionalBook("BTC vs SOL", ((mm.Perpetual("BTC"), 1e6), (mm.Perpetual("SOL"), -1e6)))
FHS = {"fhs": mm.make_model("fhs_garch", lookback=200, min_obs=100, n_paths=500)}


def _margins(books, start="2020-09-01", seed=0):
    res = Backtest(MARKET, books, FHS, start=start, seed=seed).run()
    f = res.to_frame()
    return f[f["portfolio"] == "long BTC"].set_index("date")["margin"], res


def test_run_context_validates_its_settings():
    for kwargs, message in (({"mpor": 0}, "mpor must be >= 1"), ({"seed": -1}, "seed must be >= 0"),
                            ({"mpor": 1.5}, "mpor must be an integer"), ({"seed": True}, "seed must be an integer")):
        with pytest.raises(ValueError, match=message):
            RunContext(**kwargs)
    ctx = RunContext(seed=7)
    assert ctx.rng(3).random() == np.random.default_rng([7, 3]).random()
    assert ctx.shared("x", 1, lambda: [1]) is ctx.shared("x", 1, lambda: [2])


@pytest.mark.parametrize("name", ["ewma_var", "span", "fhs_garch"])
def test_a_run_context_belongs_to_one_market(name):
    """Found by a reviewer: caches in the run context are keyed by market row, so a context passed to a second
    market (loaded from a later start) gave that market the first one's values at the same row number, another
    date (EWMA 102,279.63 instead of 89,187.60). A context now binds to its market: another market is refused."""
    full = ds.load_market(["BTC"], start="2021-01-01", end="2021-12-31")
    later = ds.load_market(["BTC"], start="2021-03-01", end="2021-12-31")
    model = mm.make_model(name)
    book = mm.reference_portfolios()["long BTC spot"].positions_at(full.index[-1], full)
    ctx = RunContext()
    t = later.index[-1]
    alone = model.margin(model.fit(later, t, context=RunContext()), book, later, t)
    model.margin(model.fit(full, t, context=ctx), book, full, t)  # the context is now bound to `full`
    with pytest.raises(ValueError, match="a context belongs to one run on one market"):
        model.fit(later, t, context=ctx)
    assert model.margin(model.fit(later, t, context=RunContext()), book, later, t) == alone


def test_fhs_margins_do_not_depend_on_the_other_books_or_their_order():
    """The BTC window of the BTC/SOL book grows from SOL's listing (2020-08-11) until it equals the BTC
    book's rolling window (200 rows later): the fits' warm-start chain is defined by window content, so
    the BTC book's margins are the same alone, first or last (a worker given some books gets the same)."""
    alone, _ = _margins([BTC])
    first, _ = _margins([BTC, PAIR])
    last, res = _margins([PAIR, BTC])
    pd.testing.assert_series_equal(alone, first, check_exact=True)
    pd.testing.assert_series_equal(alone, last, check_exact=True)
    # the two windows meet inside the run: the chain switch is exercised
    est = res.estimates
    pair_rows = est[(est["asset"] == "BTC") & (est["window_start"] == pd.Timestamp("2020-08-12", tz="UTC"))]
    assert pair_rows["window_rows"].max() == 200


def test_two_backtests_in_one_process_do_not_influence_each_other():
    a1, _ = _margins([BTC], seed=1)
    _margins([PAIR, BTC], start="2021-01-01", seed=2)
    a2, _ = _margins([BTC], seed=1)
    pd.testing.assert_series_equal(a1, a2, check_exact=True)
    code = ("import sys; sys.path.insert(0, 'tests'); import test_contract as t; "
            "m, _ = t._margins([t.BTC], seed=1); print(repr(m.to_numpy().tobytes().hex()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert out.stdout.strip().strip("'") == a1.to_numpy().tobytes().hex()


def test_estimates_table_records_every_fit_with_its_likelihood():
    from marginlab.models.volatility import FilterSpec, backcast, loglik_and_grad

    _, res = _margins([BTC, PAIR])
    est = res.estimates
    assert {"date", "filter", "asset", "window_start", "window_rows", "omega", "alpha", "beta", "loglik",
            "status", "sigma2_next"} <= set(est.columns)
    assert set(est["asset"]) == {"BTC", "SOL"} and (est["filter"] == "garch-normal").all()
    assert res.diagnostics["fhs"]["fits"] == len(est)
    # one fit per (asset, window) and date: shared by the two books once their BTC windows coincide
    assert not est.duplicated(["date", "asset", "window_start"]).any()
    row = est.iloc[len(est) // 2]
    i, r0 = MARKET.loc_of(row["date"]), MARKET.loc_of(row["window_start"])
    r = MARKET.log_return_array[r0:i + 1, MARKET.asset_index[row["asset"]]] * 100
    theta = row[["omega", "alpha", "beta"]].to_numpy(float)
    spec = FilterSpec.from_names("garch", "normal")
    assert loglik_and_grad(theta, r, spec, backcast(r))[0] == pytest.approx(row["loglik"], rel=1e-12)


class ReversedExecutor:
    """Runs the tasks last to first (as a pool might finish them) and returns the results in order."""

    def map(self, function, items):
        return [function(x) for x in reversed(items)][::-1]


def test_results_do_not_depend_on_how_the_run_is_split_into_tasks():
    models = {"static": mm.make_model("static"), **FHS, "fhs es": mm.make_model("fhs_garch", measure="es",
                                                                               lookback=200, min_obs=100)}
    bt = Backtest(MARKET, [BTC, PAIR], models, start="2020-09-01", end="2021-03-31")
    assert [t.models for t in bt.tasks()] == [("static",), ("fhs", "fhs es")]  # FHS VaR and ES share their fits
    whole = bt.run()
    split = bt.run(executor=ReversedExecutor(), books_per_task=1)
    assert len(bt.tasks(books_per_task=1)) == 4
    pd.testing.assert_frame_equal(whole.frame, split.frame, check_exact=True)
    pd.testing.assert_frame_equal(whole.estimates, split.estimates, check_exact=True)
    assert whole.diagnostics == split.diagnostics and whole.diagnostics["fhs"]["fits"] == len(whole.estimates)


def test_the_costliest_tasks_go_to_the_executor_first():
    """Tasks are handed out costliest first (books x the models' relative_cost, a model sharing the estimation of
    one before it in the task at a tenth). The former weight (10 per risk model, 1 per rule) put the FHS group
    (three risk models) before EWMA (two), though EWMA costs twice as much per book (10,000 paths), and the
    portfolio-margin models (4-6 x a static rule per call) among the static rules, last: on the default study's
    two workers the run ended on a Deribit PM task while the other worker idled."""
    models = {"static": mm.make_model("static"), "pm": mm.make_model("deribit_pm"),
              "fhs": mm.make_model("fhs_garch"), "fhs es": mm.make_model("fhs_garch", measure="es"),
              "fhs apc": mm.make_overlay("apc_buffer")(mm.make_model("fhs_garch")),
              "ewma": mm.make_model("ewma_var"), "ewma apc": mm.make_overlay("apc_buffer")(mm.make_model("ewma_var"))}
    seen = []

    class Recording:
        def map(self, function, items):
            seen.extend(items)
            return [function(x) for x in items]

    Backtest(MARKET, [BTC, PAIR], models, start="2021-01-04", end="2021-01-05").run(executor=Recording())
    assert [t.models for t in seen] == [("ewma", "ewma apc"), ("fhs", "fhs es", "fhs apc"), ("pm",), ("static",)]
    assert mm.make_model("ewma_var", n_paths=1000).relative_cost == pytest.approx(2.4)


def test_rows_carry_the_notional_and_the_roll_dates():
    strangle = mm.reference_portfolios()["short BTC 25-delta strangle (30d, rolled at 7d)"]
    market = ds.load_market(["BTC"], start="2021-03-24", end="2021-06-30")
    f = Backtest(market, [BTC, strangle], [mm.make_model("static")]).run().to_frame()
    btc = f[f["portfolio"] == "long BTC"]
    assert np.allclose(btc["notional"], 1e6, rtol=1e-12) and not btc["book_changed"].any()
    opt = f[f["portfolio"] == strangle.name].reset_index(drop=True)
    rolls = opt.index[opt["book_changed"]]
    assert len(rolls) >= 3 and set(np.diff(rolls)) == {strangle.cycle_days}
    assert np.allclose(opt["notional"], 2e6, rtol=0.5)  # two legs of 1m notional at opening, spot moves since


def test_every_model_gives_the_same_bytes_whatever_books_share_its_task():
    """Every registered model (and an overlay) on option and linear books: one task for all books, or one per
    book, in reverse order, gives the same frame bit for bit. Found on the default study: SPAN's composite
    delta took another BLAS path when a contract's risk array was computed beside other contracts, so the
    local-cluster run (books split per worker) differed from the serial one by up to 3.5e-14 on 510 margins."""
    market = ds.load_market(["BTC", "ETH"], with_option_chains=True)
    refs = mm.reference_portfolios()
    books = [refs[n] for n in ("BTC protective put (25-delta, 30d)", "BTC covered call (25-delta, 30d)",
                               "short BTC 25-delta strangle (30d, rolled at 7d)", "long BTC / short ETH perpetuals")]
    models = {name: mm.make_model(name) for name in mm.MODELS}
    models["apc"] = mm.make_overlay("apc_buffer")(mm.make_model("historical_var"))
    bt = Backtest(market, books, models, start="2021-06-01", end="2021-06-20")
    whole = bt.run(books_per_task=len(books))
    split = bt.run(executor=ReversedExecutor(), books_per_task=1)
    assert set(whole.frame["model"]) >= {"span", "deribit_pm", "greeks_netting", "fhs_garch", "ewma_var", "apc"}
    pd.testing.assert_frame_equal(whole.frame, split.frame, check_exact=True)
